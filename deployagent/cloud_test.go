package deployagent_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/deployagent"
	"github.com/evergreen-edge/evergreen/deployagent/artifact"
	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/clouddeploy"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
)

// cloudSide plays the broker's half of cloud deployments on the bus:
// requests in on evergreen.broker.cloud.deploy, statuses out of
// evergreen.deploy.cloud.
type cloudSide struct {
	t  *testing.T
	nc *nats.Conn
	mu sync.Mutex
	st []clouddeploy.Status
}

func newCloudSide(t *testing.T, bus string) *cloudSide {
	nc, err := nats.Connect(bus)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c := &cloudSide{t: t, nc: nc}
	nc.Subscribe(subjects.DeployCloud, func(m *nats.Msg) {
		rm := &brokerv1.RoutedMessage{}
		proto.Unmarshal(m.Data, rm)
		if rm.GetTopic() != clouddeploy.StatusTopic(config.DefaultCoreThingName) {
			t.Errorf("status on topic %q", rm.GetTopic())
		}
		var s clouddeploy.Status
		if err := json.Unmarshal(rm.GetPayload(), &s); err != nil {
			t.Errorf("status %q: %v", rm.GetPayload(), err)
		}
		c.mu.Lock()
		c.st = append(c.st, s)
		c.mu.Unlock()
	})
	nc.Flush()
	return c
}

func (c *cloudSide) request(body string) {
	b, _ := proto.Marshal(&brokerv1.RoutedMessage{Topic: clouddeploy.RequestTopic(config.DefaultCoreThingName), Payload: []byte(body)})
	if err := c.nc.Publish(subjects.BrokerCloudDeploy, b); err != nil {
		c.t.Fatal(err)
	}
	c.nc.Flush()
}

// final waits for id's Success or Failure and returns every status of id.
func (c *cloudSide) final(id string) []clouddeploy.Status { return c.finals(id, 1) }

// finals waits for n final statuses of id.
func (c *cloudSide) finals(id string, n int) []clouddeploy.Status {
	c.t.Helper()
	var got []clouddeploy.Status
	bustest.CheckFor(c.t, 20*time.Second, 20*time.Millisecond, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		got = got[:0]
		for _, s := range c.st {
			if s.DeploymentID == id {
				got = append(got, s)
			}
		}
		finals := 0
		for _, s := range got {
			if s.Status == clouddeploy.Success || s.Status == clouddeploy.Failure {
				finals++
			}
		}
		if finals < n || got[len(got)-1].Status != clouddeploy.Success && got[len(got)-1].Status != clouddeploy.Failure {
			return fmt.Errorf("statuses of %s: %+v", id, got)
		}
		return nil
	})
	return got
}

// Cloud deployments: statuses from InProgress to Success; a refused group
// reports Failure with the reasons; a redelivered request reports the
// outcome again without deploying twice; a group from a URL whose
// download the deployagent's restart cut short resumes and succeeds.
func TestCloudDeployments(t *testing.T) {
	group := groupJSON("fromurl")
	sum := sha256.Sum256(group)
	var mu sync.Mutex
	var ranges []string
	stall := make(chan struct{})
	first := true
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ranges = append(ranges, r.Header.Get("Range"))
		cut := first
		first = false
		mu.Unlock()
		if cut {
			// Half the file, then nothing until the client goes away.
			w.Header().Set("Content-Length", fmt.Sprint(len(group)))
			w.Write(group[:len(group)/2])
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-stall:
			}
			return
		}
		http.ServeContent(w, r, "g.json", time.Time{}, strings.NewReader(string(group)))
	}))
	defer ts.Close()
	defer close(stall)

	alpha := &consumer{name: "alpha"}
	s := newSuite(t, []*consumer{alpha}, deployagent.WithArtifactOptions(artifact.WithHTTPClient(ts.Client())))
	cloud := newCloudSide(t, s.bus)

	cloud.request(`{"deploymentId":"c-1","group":` + string(groupJSON("hello")) + `}`)
	st := cloud.final("c-1")
	if st[0].Status != clouddeploy.InProgress || st[len(st)-1].Status != clouddeploy.Success {
		t.Fatalf("statuses of c-1: %+v", st)
	}
	if cur := readRecord(t, s.root, deployment.CurrentFile); cur.DeploymentID != "c-1" {
		t.Fatalf("current.json names %s", cur.DeploymentID)
	}

	cloud.request(`{"deploymentId":"c-2","group":{"Core":{}}}`)
	st = cloud.final("c-2")
	if last := st[len(st)-1]; last.Status != clouddeploy.Failure || len(last.Reasons) == 0 || !strings.Contains(strings.Join(last.Reasons, ";"), "Core") {
		t.Fatalf("an invalid group: %+v", st)
	}
	cloud.request(`{"deploymentId":"bad id!"}`)
	cloud.request(`{"deploymentId":"c-1","group":` + string(groupJSON("hello")) + `}`)
	st = cloud.finals("c-1", 2)
	if n := len(st); st[n-1].Status != clouddeploy.Success || st[n-2].Status != clouddeploy.Success {
		t.Fatalf("redelivered c-1: %+v", st)
	}
	if calls := alpha.received(); len(calls) != 1 {
		t.Fatalf("alpha applied %d groups; a redelivery must not deploy again", len(calls))
	}

	// A group by URL; the deployagent stops mid-download and starts again.
	cloud.request(fmt.Sprintf(`{"deploymentId":"c-3","groupUrl":"%s/g.json","sha256":"%s","size":%d}`, ts.URL, hex.EncodeToString(sum[:]), len(group)))
	bustest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(ranges) == 0 {
			return fmt.Errorf("no download yet")
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond)
	stopDaemon(t, s.agent)
	s.startAgent()
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(layout.Root(s.root).LogFile(deployagent.Name))
			t.Logf("deployagent log:\n%s", b)
		}
	})
	st = cloud.final("c-3")
	if last := st[len(st)-1]; last.Status != clouddeploy.Success {
		t.Fatalf("c-3 after a restart mid-download: %+v", st)
	}
	mu.Lock()
	if len(ranges) != 2 || ranges[0] != "" || ranges[1] != fmt.Sprintf("bytes=%d-", len(group)/2) {
		t.Errorf("requests' Range headers %q: the second must resume at %d", ranges, len(group)/2)
	}
	mu.Unlock()
	if got := recordFunctions(t, readRecord(t, s.root, deployment.CurrentFile)); len(got) != 1 || got[0] != "fromurl" {
		t.Fatalf("group in force after c-3: %v", got)
	}
}

package broker

import (
	"path/filepath"
	"sync"
	"testing"

	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	"github.com/evergreen-edge/evergreen/services/kit/clouddeploy"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
)

// A daemon that answers the broker's first cloud-ready event by
// publishing for the cloud (the deployagent publishes its last deployment
// status again) finds the broker listening: the event is held back until
// the broker follows the bus, however fast the cloud connects.
func TestCloudReadyComesAfterBusSubscriptions(t *testing.T) {
	up := newUpstream(t)
	status := `{"deploymentId":"d-9","status":"Success","stage":"done","timestamp":1}`
	var obsIn inbox
	newSuiteWith(t, suiteOptions{
		config: func(c *config.Config) {
			c.CoreThing.ThingArn = thingARN("test-core")
			c.CoreThing.IotHost = "127.0.0.1"
			c.CoreThing.IotMqttPort = up.port
			c.CoreThing.KeepAlive = 30
			c.MqttMaxConnectionRetryInterval = 1
			c.Crypto = &config.Crypto{CaPath: "file://" + filepath.Join(up.dir, "ca.pem")}
		},
		beforeBroker: func(s *suite) {
			up.start(t, s.root.GroupCACert())
			c, in := up.client(t, "observer")
			if tok := c.Subscribe(clouddeploy.StatusTopic("test-core"), 1, nil); !tok.WaitTimeout(within) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
			obsIn = in
			nc, err := nats.Connect(s.busURL)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close)
			var once sync.Once
			nc.Subscribe(subjects.BrokerCloudReady, func(*nats.Msg) {
				once.Do(func() {
					b, _ := proto.Marshal(&brokerv1.RoutedMessage{Topic: clouddeploy.StatusTopic("test-core"), Payload: []byte(status), Qos: 1})
					nc.Publish(subjects.DeployCloud, b)
				})
			})
			nc.Flush()
		},
	})
	obsIn.expect(t, clouddeploy.StatusTopic("test-core"), status)
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// deployBench times deployments of a group at v1's limits (200 functions,
// 10,000 subscriptions, 2,500 devices) through `ggctl deploy`, reads the
// deployagent's peak PSS meanwhile, and times the way back after a power
// cut (the whole suite SIGKILLed) in the middle of one: until every daemon
// is healthy, and until the interrupted deployment is settled.
func deployBench(ggd string, runs int) {
	ggctl := filepath.Join(filepath.Dir(ggd), "ggctl")
	dir, err := os.MkdirTemp("", "ggb-group-")
	must(err)
	defer os.RemoveAll(dir)
	code := filepath.Join(dir, "code")
	must(os.MkdirAll(code, 0o755))
	must(os.WriteFile(filepath.Join(code, "main.py"), []byte("def handler(event, context):\n    return event\n"), 0o644))
	groups := []string{filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json")}
	for i, g := range groups {
		b := bigGroup(code, i)
		must(os.WriteFile(g, b, 0o644))
		if i == 0 {
			fmt.Printf("deployment of a group at v1's limits: 200 functions, 10000 subscriptions, 2500 devices (%.1f MB of JSON)\n", mb(int64(len(b))))
		}
	}

	root := tempRoot()
	defer os.RemoveAll(root)
	_, stop := startSuite(ggd, root)
	var took []time.Duration
	var peak int64
	for i := 0; i < runs; i++ {
		// Alternate two groups so that each run changes every table.
		d, p := timedDeploy(ggctl, root, groups[i%2])
		took = append(took, d)
		peak = max(peak, p)
	}
	fmt.Printf("  %-30s median %8s   (%d runs, alternating two groups)\n", "ggctl deploy to SUCCESS", median(took).Round(time.Millisecond), runs)
	fmt.Printf("  %-30s %8.1f MB   (PSS, sampled every 5 ms)\n", "deployagent peak", mb(peak))
	stop()

	// A power cut in the middle of a deployment: every process of the
	// suite SIGKILLed while the deployment is fetching its artifacts or
	// its daemons are preparing (alternately), seen through the
	// deployagent's event stream, then ggd started again: the time until
	// every daemon is healthy, and until the interrupted deployment is
	// recorded as settled with one group in force on every daemon.
	fmt.Printf("  power cut: the whole suite SIGKILLed during a deployment's artifacts or prepare stage, then restarted\n")
	var healthy, settled []time.Duration
	inForce := (runs - 1) % 2 // the group the timed runs left in force
	for i := 0; i < max(runs/2, 2); i++ {
		target := []string{"artifacts", "prepare"}[i%2]
		_, stop := startSuite(ggd, root)
		next := 1 - inForce
		id, stage := cutDuring(root, groups[next], target)
		stop() // reaps ggd, already dead
		start := time.Now()
		h, stop := startSuite(ggd, root)
		status, why := waitSettled(root, id)
		s := time.Since(start)
		stop()
		if status == "SUCCESS" {
			inForce = next
		}
		healthy, settled = append(healthy, h), append(settled, s)
		fmt.Printf("    run %d: cut in the %-9s stage  healthy %8s  settled %8s  (%s: %s)\n", i+1, stage, h.Round(time.Millisecond), s.Round(time.Millisecond), status, why)
	}
	fmt.Printf("  %-30s median %8s   (%d runs)\n", "power cut to healthy", median(healthy).Round(time.Millisecond), len(healthy))
	fmt.Printf("  %-30s median %8s   (recorded SUCCESS or FAILURE, one group in force on every daemon)\n\n", "power cut to settled", median(settled).Round(time.Millisecond))
}

// cutDuring deploys group through the deployagent's API and, when its
// event stream shows the target stage under way, cuts the power: every
// process of the suite's tree is stopped, then killed. target is
// "artifacts" (cut on the "validated" event: artifacts are being fetched
// next) or "prepare" (cut when the first daemon has prepared, the others
// still preparing). It returns the deployment id and the stage staged.json
// says was under way when the power went.
func cutDuring(root, group, target string) (id, stage string) {
	gj, err := os.ReadFile(group)
	must(err)
	cc, err := grpc.NewClient("unix://"+filepath.Join(root, "run", "deployagent.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(err)
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := deployv1.NewDeployerClient(cc).Deploy(ctx, &deployv1.DeployRequest{GroupJson: gj})
	must(err)
	for {
		ev, err := st.Recv()
		if err != nil {
			fail("deployment %s ended before the %s stage: %v", id, target, err)
		}
		id = ev.GetDeploymentId()
		if s := ev.GetStatus(); s != deployv1.DeploymentStatus_DEPLOYMENT_STATUS_IN_PROGRESS && s != deployv1.DeploymentStatus_DEPLOYMENT_STATUS_UNSPECIFIED {
			fail("deployment %s finished (%s) before the power cut", id, s)
		}
		at := ev.GetStage()
		if target == "artifacts" && at == deployment.StageValidated ||
			target == "prepare" && (at == deployment.StageArtifacts && strings.HasSuffix(ev.GetMessage(), " prepared") || at == deployment.StagePrepared) {
			break
		}
	}
	supervisor := suitePids(root)["supervisor"]
	if supervisor <= 0 {
		fail("no supervisor pid in %s/run", root)
	}
	powerCut(supervisor)
	staged, err := deployment.ReadState(layout.Root(root))
	if err != nil || staged == nil || staged.DeploymentID != id {
		fail("staged.json after the power cut: %v %+v", err, staged)
	}
	return id, underWay(staged.Stage)
}

// underWay names the work that follows a recorded stage.
func underWay(recorded string) string {
	switch recorded {
	case deployment.StageValidated:
		return "artifacts"
	case deployment.StageArtifacts:
		return "prepare"
	case deployment.StagePrepared:
		return "commit"
	case deployment.StageCommitted:
		return "apply"
	}
	return "after-" + recorded
}

// powerCut stops every process of the tree rooted at pid (so that none
// reacts to another's death: no restart, no fork), then SIGKILLs them all
// and waits until each is gone or a zombie.
func powerCut(pid int) {
	stopped := map[int]bool{}
	for {
		added := false
		for _, p := range processTree(pid) {
			if !stopped[p] {
				syscall.Kill(p, syscall.SIGSTOP)
				stopped[p] = true
				added = true
			}
		}
		if !added {
			break
		}
	}
	for p := range stopped {
		syscall.Kill(p, syscall.SIGKILL)
	}
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		alive := 0
		for p := range stopped {
			if st := procState(p); st != 0 && st != 'Z' && st != 'X' {
				alive++
			}
		}
		if alive == 0 {
			return
		}
		if time.Now().After(end) {
			fail("%d processes of the suite still alive 10 s after SIGKILL", alive)
		}
	}
}

// processTree is pid and its descendants, from /proc.
func processTree(pid int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp := procPPid(p); pp > 0 {
			children[pp] = append(children[pp], p)
		}
	}
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i]]...)
	}
	return tree
}

// procStat is the fields of /proc/PID/stat after the command name.
func procStat(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

func procPPid(pid int) int {
	f := procStat(pid)
	if len(f) < 2 {
		return 0
	}
	pp, _ := strconv.Atoi(f[1])
	return pp
}

// procState is the process's state letter, 0 when it does not exist.
func procState(pid int) byte {
	f := procStat(pid)
	if len(f) < 1 || f[0] == "" {
		return 0
	}
	return f[0][0]
}

// waitSettled waits until deployment id is recorded SUCCESS or FAILURE,
// exactly one deployment is in force, and every daemon runs it; it returns
// the status and the recorded error (or "in force").
func waitSettled(root, id string) (status, why string) {
	cc, err := grpc.NewClient("unix://"+filepath.Join(root, "run", "deployagent.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(err)
	defer cc.Close()
	dc := deployv1.NewDeployerClient(cc)
	last := "no answer"
	for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		list, err := dc.ListDeployments(ctx, &deployv1.ListDeploymentsRequest{})
		if err != nil {
			cancel()
			last = err.Error()
			continue
		}
		var dep *deployv1.Deployment
		var current []string
		for _, d := range list.GetDeployments() {
			if d.GetDeploymentId() == id {
				dep = d
			}
			if d.GetCurrent() {
				current = append(current, d.GetDeploymentId())
			}
		}
		switch {
		case dep == nil:
			last = "deployment " + id + " not in the history"
		case dep.GetStatus() != deployv1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCESS && dep.GetStatus() != deployv1.DeploymentStatus_DEPLOYMENT_STATUS_FAILURE:
			last = "deployment " + id + " " + dep.GetStatus().String()
		case len(current) != 1:
			last = fmt.Sprintf("%d deployments in force %v", len(current), current)
		default:
			applied, err := dc.GetApplied(ctx, &deployv1.GetAppliedRequest{})
			if err != nil {
				last = "GetApplied: " + err.Error()
				break
			}
			off := applied.GetDeploymentId() != current[0]
			for _, dm := range applied.GetDaemons() {
				if dm.GetError() != "" || dm.GetDeploymentId() != current[0] {
					off = true
				}
			}
			if off {
				last = fmt.Sprintf("daemons do not all run %s: %v", current[0], applied.GetDaemons())
				break
			}
			cancel()
			why = dep.GetError()
			if why == "" {
				why = "in force"
			}
			return strings.TrimPrefix(dep.GetStatus().String(), "DEPLOYMENT_STATUS_"), why
		}
		cancel()
	}
	fail("deployment %s not settled 1 min after the restart: %s", id, last)
	return "", ""
}

// timedDeploy runs ggctl deploy and samples the deployagent's PSS.
func timedDeploy(ggctl, root, group string) (time.Duration, int64) {
	pid := suitePids(root)["deployagent"]
	var peak atomic.Int64
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
				if p := pss(pid); p > peak.Load() {
					peak.Store(p)
				}
			}
		}
	}()
	start := time.Now()
	out, err := exec.Command(ggctl, "--root", root, "deploy", group).CombinedOutput()
	d := time.Since(start)
	close(done)
	if err != nil {
		fail("ggctl deploy %s: %v\n%s", group, err, out)
	}
	return d, peak.Load()
}

// bigGroup is a valid group at v1's limits; variant changes every name so
// that two variants share nothing.
func bigGroup(code string, variant int) []byte {
	const acct = "arn:aws:iot:us-east-1:123456789012:"
	cert := func(i int) string { return acct + fmt.Sprintf("cert/%064x", i+1) }
	thing := func(n string) string { return acct + "thing/" + n }
	fnARN := func(i int) string {
		return fmt.Sprintf("arn:aws:lambda:us-east-1:123456789012:function:f%d-%d:1", variant, i)
	}
	var devs, fns, subs []any
	for i := 0; i < 2500; i++ {
		devs = append(devs, map[string]any{"Id": fmt.Sprintf("d%d", i), "ThingArn": thing(fmt.Sprintf("dev-%d-%d", variant, i)), "CertificateArn": cert(i + 10)})
	}
	for i := 0; i < 200; i++ {
		fns = append(fns, map[string]any{"Id": fmt.Sprintf("f%d", i), "FunctionArn": fnARN(i),
			"FunctionConfiguration": map[string]any{"Pinned": false, "Timeout": 3, "EncodingType": "json"},
			"Evergreen":             map[string]any{"Runtime": "python3.8", "Handler": "main.handler", "CodeUri": code}})
	}
	for i := 0; i < 10000; i++ {
		dev := thing(fmt.Sprintf("dev-%d-%d", variant, i%2500))
		var s map[string]any
		switch i % 4 {
		case 0:
			s = map[string]any{"Source": dev, "Subject": fmt.Sprintf("sensors/%d/#", i), "Target": fnARN(i % 200)}
		case 1:
			s = map[string]any{"Source": fnARN(i % 200), "Subject": fmt.Sprintf("cmd/%d", i), "Target": dev}
		case 2:
			s = map[string]any{"Source": dev, "Subject": fmt.Sprintf("peer/%d/+", i), "Target": thing(fmt.Sprintf("dev-%d-%d", variant, (i+1)%2500))}
		default:
			s = map[string]any{"Source": "GGShadowService", "Subject": fmt.Sprintf("$aws/things/dev-%d-%d/shadow/#", variant, i%2500), "Target": dev}
		}
		s["Id"] = fmt.Sprintf("s%d", i)
		subs = append(subs, s)
	}
	g := map[string]any{
		"Core":          map[string]any{"Cores": []any{map[string]any{"Id": "core", "ThingArn": thing("bench-core"), "CertificateArn": cert(0)}}},
		"Devices":       map[string]any{"Devices": devs},
		"Functions":     map[string]any{"DefaultConfig": map[string]any{"Execution": map[string]any{"IsolationMode": "NoContainer"}}, "Functions": fns},
		"Subscriptions": map[string]any{"Subscriptions": subs},
	}
	b, err := json.Marshal(g)
	must(err)
	return b
}

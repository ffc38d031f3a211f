package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"
)

// deployBench times deployments of a group at v1's limits (200 functions,
// 10,000 subscriptions, 2,500 devices) through `ggctl deploy`, reads the
// deployagent's peak PSS meanwhile, and times the way back to a healthy
// core after the whole suite is SIGKILLed in the middle of one.
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

	// A power cut in the middle of a deployment: SIGKILL every process
	// of the suite, start again, time until healthy.
	var back []time.Duration
	for i := 0; i < max(runs/2, 1); i++ {
		_, _ = startSuite(ggd, root) // stopped by the SIGKILL below
		cmd := exec.Command(ggctl, "--root", root, "deploy", groups[i%2])
		must(cmd.Start())
		time.Sleep(150 * time.Millisecond) // into the deployment
		killSuite(root)
		cmd.Wait()
		d, stop := startSuite(ggd, root)
		back = append(back, d)
		stop()
	}
	fmt.Printf("  %-30s median %8s   (suite SIGKILLed 150 ms into a deployment, %d runs)\n\n", "restart to healthy", median(back).Round(time.Millisecond), len(back))
}

// killSuite SIGKILLs every process of the suite on root, the supervisor
// first so that nothing is restarted, and its workers (the runtime's
// process group members die with their pipes or are reaped on restart).
func killSuite(root string) {
	pids := suitePids(root)
	if p := pids["supervisor"]; p > 0 {
		syscall.Kill(p, syscall.SIGKILL)
	}
	for _, p := range pids {
		syscall.Kill(p, syscall.SIGKILL)
	}
	time.Sleep(50 * time.Millisecond)
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

// Command ggbench runs the `make bench` scenarios against the real binaries
// and prints each figure next to a named peer measured in the same run
// (mosquitto: a small, well-known C daemon that starts fast and idles small).
// The machine is noisy: figures are medians of repeated runs.
//
//	ggbench --bin ./bin [--runs 10]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	bin := flag.String("bin", "./bin", "folder with ggd and ggctl")
	runs := flag.Int("runs", 10, "runs per timed scenario")
	idle := flag.Duration("idle", 5*time.Second, "how long the suite idles before PSS is read")
	mqttOnly := flag.Bool("mqtt", false, "run only the MQTT load scenarios")
	devices := flag.Int("devices", 50, "devices in the MQTT fan-in/fan-out scenarios")
	loadFor := flag.Duration("load", 5*time.Second, "duration of each MQTT load scenario")
	shadowOnly := flag.Bool("shadow", false, "run only the shadow scenarios")
	runtimeOnly := flag.Bool("runtime", false, "run only the runtime (function) scenarios")
	things := flag.Int("things", 100, "things (devices) in the shadow round-trip scenario")
	deployOnly := flag.Bool("deploy", false, "run only the deployment scenarios")
	streamsOnly := flag.Bool("streams", false, "run only the stream manager scenarios")
	flag.Parse()
	ggd, err := filepath.Abs(filepath.Join(*bin, "ggd"))
	must(err)
	if _, err := os.Stat(ggd); err != nil {
		fail("%s missing: run make build", ggd)
	}
	mosq, _ := exec.LookPath("mosquitto")
	if mosq == "" {
		for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
			if _, err := os.Stat(p); err == nil {
				mosq = p
			}
		}
	}

	fmt.Printf("ggbench: %s, %d runs per scenario, peer: %s\n\n", ggd, *runs, peerName(mosq))
	if *mqttOnly {
		mqttBench(ggd, mosq, *devices, *loadFor)
		return
	}
	if *shadowOnly {
		shadowBench(ggd, *things, *loadFor)
		return
	}
	if *runtimeOnly {
		runtimeBench(ggd, *loadFor)
		return
	}
	if *streamsOnly {
		streamsBench(ggd, *loadFor)
		return
	}
	if *deployOnly {
		deployBench(ggd, min(*runs, 6))
		return
	}

	// 1. Cold start to all daemons healthy.
	var first, warm []time.Duration
	warmRoot := tempRoot()
	defer os.RemoveAll(warmRoot)
	for i := 0; i < *runs; i++ {
		root := tempRoot()
		d, stop := startSuite(ggd, root)
		stop()
		os.RemoveAll(root)
		first = append(first, d)
		d, stop = startSuite(ggd, warmRoot)
		stop()
		warm = append(warm, d)
	}
	var peer []time.Duration
	if mosq != "" {
		for i := 0; i < *runs; i++ {
			d, stop := startMosquitto(mosq)
			stop()
			peer = append(peer, d)
		}
	}
	fmt.Println("cold start of `ggd --root DIR` until /healthz is 200 (all daemons SERVING)")
	row("first start (new CAs, certs)", median(first), median(peer))
	row("restart on an existing root", median(warm), median(peer))
	fmt.Println()

	// 2. Idle PSS of every process of the suite.
	root := tempRoot()
	defer os.RemoveAll(root)
	_, stop := startSuite(ggd, root)
	time.Sleep(*idle)
	pids := suitePids(root)
	var total int64
	fmt.Printf("idle PSS after %v (from /proc/<pid>/smaps_rollup)\n", *idle)
	names := make([]string, 0, len(pids))
	for n := range pids {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := pss(pids[n])
		total += p
		fmt.Printf("  %-14s pid %-7d %6.1f MB\n", n, pids[n], mb(p))
	}
	stop()
	var peerPSS int64
	if mosq != "" {
		_, stopM := startMosquitto(mosq)
		time.Sleep(*idle)
		peerPSS = pss(mosqPid)
		stopM()
	}
	fmt.Printf("  %-14s %14.1f MB", "suite total", mb(total))
	if peerPSS > 0 {
		fmt.Printf("   peer mosquitto %.1f MB   ratio %.2fx", mb(peerPSS), float64(total)/float64(peerPSS))
	}
	fmt.Printf("   (v1 floor: 128 MB)\n\n")

	// 3. Binary size.
	fmt.Println("binary size")
	for _, b := range []string{ggd, filepath.Join(filepath.Dir(ggd), "ggctl"), mosq} {
		if b == "" {
			continue
		}
		if st, err := os.Stat(b); err == nil {
			fmt.Printf("  %-28s %6.1f MB\n", filepath.Base(b), mb(st.Size()))
		}
	}
	fmt.Println()

	// 4. MQTT load against the broker and mosquitto.
	mqttBench(ggd, mosq, *devices, *loadFor)

	// 5. The shadow service against raw badger.
	shadowBench(ggd, *things, *loadFor)

	// 6. Functions: round trips, cold starts, invocations per second.
	runtimeBench(ggd, *loadFor)

	// 7. The stream manager against NATS JetStream's file store.
	streamsBench(ggd, *loadFor)

	// 8. Deployments at v1's limits.
	deployBench(ggd, min(*runs, 6))
}

func peerName(m string) string {
	if m == "" {
		return "mosquitto not installed (apt-get install mosquitto); peer columns empty"
	}
	out, _ := exec.Command(m, "-h").CombinedOutput()
	first := strings.SplitN(string(out), "\n", 2)[0]
	return m + " (" + strings.TrimSpace(first) + ")"
}

func row(name string, d, peer time.Duration) {
	fmt.Printf("  %-30s median %8s", name, d.Round(time.Millisecond/10))
	if peer > 0 {
		fmt.Printf("   peer mosquitto %8s   ratio %.1fx", peer.Round(time.Millisecond/10), float64(d)/float64(peer))
	}
	fmt.Println()
}

func tempRoot() string {
	d, err := os.MkdirTemp("", "ggb-")
	must(err)
	cfg := `{"evergreen":{"listen":{"mqtt":"127.0.0.1:0","ipc":"127.0.0.1:0","streams":"127.0.0.1:0","bus":"127.0.0.1:0","http":"127.0.0.1:0","discovery":"127.0.0.1:0"}}}`
	must(os.MkdirAll(filepath.Join(d, "config"), 0o700))
	must(os.WriteFile(filepath.Join(d, "config", "config.json"), []byte(cfg), 0o600))
	return d
}

// startSuite starts `ggd --root root` and returns the time until /healthz
// answered 200, and a function that stops it.
func startSuite(ggd, root string) (time.Duration, func()) {
	os.Remove(filepath.Join(root, "run", "endpoints.json"))
	cmd := exec.Command(ggd, "--root", root)
	start := time.Now()
	must(cmd.Start())
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
	client := &http.Client{Timeout: time.Second}
	deadline := start.Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if addr := httpAddr(root); addr != "" {
			if resp, err := client.Get("http://" + addr + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return time.Since(start), stop
				}
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	stop()
	fail("suite on %s not healthy in 30s", root)
	return 0, nil
}

func httpAddr(root string) string {
	b, err := os.ReadFile(filepath.Join(root, "run", "endpoints.json"))
	if err != nil {
		return ""
	}
	var e struct{ HTTP string }
	if json.Unmarshal(b, &e) != nil {
		return ""
	}
	return strings.Replace(e.HTTP, "0.0.0.0", "127.0.0.1", 1)
}

func suitePids(root string) map[string]int {
	pids := map[string]int{}
	files, _ := filepath.Glob(filepath.Join(root, "run", "*.pid"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			pids[strings.TrimSuffix(filepath.Base(f), ".pid")] = p
		}
	}
	return pids
}

var mosqPid int

func startMosquitto(path string) (time.Duration, func()) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(path, "-p", strconv.Itoa(port))
	start := time.Now()
	must(cmd.Start())
	mosqPid = cmd.Process.Pid
	stop := func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }
	for time.Since(start) < 10*time.Second {
		if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			c.Close()
			return time.Since(start), stop
		}
		time.Sleep(time.Millisecond)
	}
	stop()
	fail("mosquitto did not listen in 10s")
	return 0, nil
}

func pss(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Pss:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func must(err error) {
	if err != nil {
		fail("%v", err)
	}
}

func fail(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "ggbench: "+f+"\n", a...)
	os.Exit(1)
}

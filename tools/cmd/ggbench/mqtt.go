package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	"github.com/evergreen-edge/evergreen/tools/loadgen"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// mqttBench runs fan-in (n devices to 1) and fan-out (1 to n) at QoS 0 and
// 1 against the Evergreen broker and against mosquitto configured the same
// way: TLS with required client certificates from the same CAs, and an ACL
// that allows exactly what the group's subscription table allows.
func mqttBench(ggd, mosq string, n int, dur time.Duration) {
	root := tempRoot()
	defer os.RemoveAll(root)
	_, stop := startSuite(ggd, root)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	conn := func(daemon string) *grpc.ClientConn {
		c, err := grpc.NewClient("unix://"+filepath.Join(root, "run", daemon+".sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
		must(err)
		return c
	}
	cm := certmgrv1.NewCertManagerClient(conn("certmgr"))
	devDir := filepath.Join(root, "bench-devices")
	must(os.MkdirAll(devDir, 0o700))
	names := []string{"src", "sink"}
	for i := 0; i < n; i++ {
		names = append(names, fmt.Sprintf("dev-%02d", i))
	}
	ids := map[string]string{}
	var caPEM string
	for _, name := range names {
		r, err := cm.CreateDevice(ctx, &certmgrv1.CreateDeviceRequest{Name: name})
		must(err)
		must(os.WriteFile(filepath.Join(devDir, name+".cert.pem"), []byte(r.Device.CertificatePem), 0o600))
		must(os.WriteFile(filepath.Join(devDir, name+".key.pem"), []byte(r.KeyPem), 0o600))
		blk, _ := pem.Decode([]byte(r.Device.CertificatePem))
		sum := sha256.Sum256(blk.Bytes)
		ids[name] = hex.EncodeToString(sum[:])
		caPEM = r.ServerCaPem
	}
	caFile := filepath.Join(devDir, "ca.pem")
	must(os.WriteFile(caFile, []byte(caPEM), 0o600))

	// The group: fan-in dev-i -> sink on load/in/dev-i; fan-out src -> dev-i on load/out.
	thing := func(n string) string { return "arn:aws:iot:us-east-1:123456789012:thing/" + n }
	type sub struct{ Id, Source, Subject, Target string }
	type dev struct{ Id, ThingArn, CertificateArn string }
	var subs []sub
	var devs []dev
	for i, name := range names {
		devs = append(devs, dev{fmt.Sprintf("d%d", i), thing(name), "arn:aws:iot:us-east-1:123456789012:cert/" + ids[name]})
		if strings.HasPrefix(name, "dev-") {
			subs = append(subs, sub{"in-" + name, thing(name), "load/in/" + name, thing("sink")})
			subs = append(subs, sub{"out-" + name, thing("src"), "load/out", thing(name)})
		}
	}
	group := map[string]any{
		"Core":          map[string]any{"Cores": []any{map[string]any{"Id": "core", "ThingArn": thing("evergreen-core"), "CertificateArn": "arn:aws:iot:us-east-1:123456789012:cert/" + strings.Repeat("0", 64)}}},
		"Devices":       map[string]any{"Devices": devs},
		"Subscriptions": map[string]any{"Subscriptions": subs},
	}
	gj, _ := json.Marshal(group)
	dc := deployv1.NewDeployerClient(conn("deployagent"))
	st, err := dc.Deploy(ctx, &deployv1.DeployRequest{GroupJson: gj})
	must(err)
	for {
		ev, err := st.Recv()
		if err != nil {
			break
		}
		if ev.Status == deployv1.DeploymentStatus_DEPLOYMENT_STATUS_FAILURE {
			fail("bench group refused: %s", ev.Message)
		}
	}

	load := func(name string) loadgen.Device {
		d, err := loadgen.LoadDevice(devDir, name, caFile)
		must(err)
		return d
	}
	var workers []loadgen.Device
	for _, name := range names[2:] {
		workers = append(workers, load(name))
	}
	scenarios := func(addr string) map[string]loadgen.Scenario {
		m := map[string]loadgen.Scenario{}
		for _, q := range []byte{0, 1} {
			m[fmt.Sprintf("fan-in  %d->1  QoS %d", n, q)] = loadgen.Scenario{Addr: addr, QoS: q, Publishers: workers, Subscribers: []loadgen.Device{load("sink")},
				Topic: func(i int) string { return "load/in/" + workers[i].Name }, Filter: "load/in/#", Duration: dur}
			m[fmt.Sprintf("fan-out 1->%d  QoS %d", n, q)] = loadgen.Scenario{Addr: addr, QoS: q, Publishers: []loadgen.Device{load("src")}, Subscribers: workers,
				Topic: func(int) string { return "load/out" }, Filter: "load/out", Duration: dur}
		}
		return m
	}
	eps := readEndpoints(root)
	egAddr := strings.Replace(eps["mqtt"], "0.0.0.0", "127.0.0.1", 1)

	var mqAddr string
	if mosq != "" {
		var stopM func()
		mqAddr, stopM = startTLSMosquitto(mosq, root, names)
		defer stopM()
	}
	fmt.Printf("MQTT over mutual TLS, %v per scenario, 64-byte payloads (delivered msg/s; latency publish -> subscriber)\n", dur)
	egS, mqS := scenarios(egAddr), scenarios(mqAddr)
	keys := []string{fmt.Sprintf("fan-in  %d->1  QoS 0", n), fmt.Sprintf("fan-in  %d->1  QoS 1", n), fmt.Sprintf("fan-out 1->%d  QoS 0", n), fmt.Sprintf("fan-out 1->%d  QoS 1", n)}
	for _, k := range keys {
		eg, egErr := loadgen.Run(egS[k])
		if egErr != nil {
			fmt.Printf("  %-22s evergreen: %v\n", k, egErr)
		} else {
			fmt.Printf("  %-22s evergreen %s\n", k, eg)
		}
		if mosq == "" {
			continue
		}
		mq, err := loadgen.Run(mqS[k])
		switch {
		case err != nil:
			fmt.Printf("  %-22s mosquitto: %v\n", "", err)
		case egErr != nil:
			fmt.Printf("  %-22s mosquitto %s\n", "", mq)
		default:
			fmt.Printf("  %-22s mosquitto %s   ratio %.2fx msg/s, p99 %.2fx\n", "", mq, eg.MsgsPerSec/mq.MsgsPerSec, float64(eg.P99)/float64(max(mq.P99, 1)))
		}
	}

	// Memory per idle connected device.
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var idle []loadgen.Device
	for i := 0; i < idleConns; i++ {
		name := fmt.Sprintf("idle-%04d", i)
		r, err := cm.CreateDevice(ctx, &certmgrv1.CreateDeviceRequest{Name: name})
		must(err)
		must(os.WriteFile(filepath.Join(devDir, name+".cert.pem"), []byte(r.Device.CertificatePem), 0o600))
		must(os.WriteFile(filepath.Join(devDir, name+".key.pem"), []byte(r.KeyPem), 0o600))
		idle = append(idle, load(name))
	}
	fmt.Printf("\nidle mutual-TLS connections: PSS added by %d connected devices\n", idleConns)
	egPid := pidOf(filepath.Join(root, "run", "broker.pid"))
	if per, err := pssPerConnection(egAddr, egPid, idle); err != nil {
		fmt.Printf("  evergreen broker: %v\n", err)
	} else {
		fmt.Printf("  evergreen broker  %6.1f KB per connection\n", per/1024)
		if mosq != "" {
			if mper, err := pssPerConnection(mqAddr, mosqPid, idle); err == nil {
				fmt.Printf("  mosquitto         %6.1f KB per connection   ratio %.2fx\n", mper/1024, per/mper)
			} else {
				fmt.Printf("  mosquitto: %v\n", err)
			}
		}
	}
}

const idleConns = 1000

func pidOf(pidFile string) int {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return p
}

// pssPerConnection connects every device, waits for the server to settle,
// and returns the PSS it gained divided by the number of connections.
func pssPerConnection(addr string, pid int, devs []loadgen.Device) (float64, error) {
	if pid == 0 {
		return 0, fmt.Errorf("no pid")
	}
	time.Sleep(time.Second)
	before := pss(pid)
	conns, err := loadgen.ConnectIdle(addr, devs)
	defer loadgen.DisconnectAll(conns)
	if err != nil {
		return 0, err
	}
	time.Sleep(3 * time.Second)
	after := pss(pid)
	return float64(after-before) / float64(len(devs)), nil
}

func readEndpoints(root string) map[string]string {
	b, err := os.ReadFile(filepath.Join(root, "run", "endpoints.json"))
	must(err)
	m := map[string]string{}
	must(json.Unmarshal(b, &m))
	return m
}

// startTLSMosquitto runs mosquitto with the suite's MQTT server certificate,
// client certificates required (device CA), the certificate CN as user name
// and an ACL equal to the bench group's table.
func startTLSMosquitto(path, root string, names []string) (string, func()) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := filepath.Join(root, "mosquitto")
	must(os.MkdirAll(dir, 0o700))
	certs := filepath.Join(root, "certs")
	ca := filepath.Join(dir, "clients-ca.pem")
	var chain []byte
	for _, f := range []string{"device-ca.pem", "group-ca.pem"} {
		b, err := os.ReadFile(filepath.Join(certs, f))
		must(err)
		chain = append(chain, b...)
	}
	must(os.WriteFile(ca, chain, 0o600))
	var acl strings.Builder
	acl.WriteString("user src\ntopic write load/out\n\nuser sink\ntopic read load/in/#\n\n")
	for _, n := range names {
		if strings.HasPrefix(n, "dev-") {
			fmt.Fprintf(&acl, "user %s\ntopic write load/in/%s\ntopic read load/out\n\n", n, n)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "acl"), []byte(acl.String()), 0o600))
	// user root: mosquitto would otherwise drop to its own user and lose
	// access to the suite's 0700 certificate folder.
	conf := fmt.Sprintf(`user root
per_listener_settings false
allow_anonymous false
acl_file %s
max_queued_messages 1000
listener %d 127.0.0.1
cafile %s
certfile %s
keyfile %s
require_certificate true
use_identity_as_username true
`, filepath.Join(dir, "acl"), port, ca, filepath.Join(certs, "server.cert.pem"), filepath.Join(certs, "server.key.pem"))
	must(os.WriteFile(filepath.Join(dir, "mosquitto.conf"), []byte(conf), 0o600))
	cmd := exec.Command(path, "-c", filepath.Join(dir, "mosquitto.conf"))
	cmd.Stderr = nil
	must(cmd.Start())
	mosqPid = cmd.Process.Pid
	stop := func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }
	for i := 0; i < 200; i++ {
		if c, err := tls.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port), &tls.Config{InsecureSkipVerify: true}); err == nil {
			c.Close()
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return "127.0.0.1:" + strconv.Itoa(port), stop
}

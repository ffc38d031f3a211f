package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	mqtt "github.com/eclipse/paho.mqtt.golang"
	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	shadowv1 "github.com/evergreen-edge/evergreen/proto/evergreen/shadow/v1"
	supervisorv1 "github.com/evergreen-edge/evergreen/proto/evergreen/supervisor/v1"
	"github.com/evergreen-edge/evergreen/shadow/store"
	"github.com/evergreen-edge/evergreen/tools/loadgen"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// shadowBench measures the shadow service: the update round trip through
// MQTT (a device publishes /update, receives /update/accepted) with one
// device per thing, each keeping one update in flight; the same number of
// writers doing the same work as raw badger transactions with the same
// durability (SyncWrites, the store's options) as the peer; and the PSS of
// the shadow daemon holding 2,500 shadows of 4 KB.
func shadowBench(ggd string, things int, dur time.Duration) {
	root := tempRoot()
	defer os.RemoveAll(root)
	_, stop := startSuite(ggd, root)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	conn := func(daemon string) *grpc.ClientConn {
		c, err := grpc.NewClient("unix://"+filepath.Join(root, "run", daemon+".sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
		must(err)
		return c
	}
	cm := certmgrv1.NewCertManagerClient(conn("certmgr"))
	devDir := filepath.Join(root, "bench-devices")
	must(os.MkdirAll(devDir, 0o700))
	thing := func(n string) string { return "arn:aws:iot:us-east-1:123456789012:thing/" + n }
	type sub struct{ Id, Source, Subject, Target string }
	type dev struct{ Id, ThingArn, CertificateArn string }
	var subs []sub
	var devs []dev
	var names []string
	var caFile string
	for i := 0; i < things; i++ {
		name := fmt.Sprintf("thing-%03d", i)
		names = append(names, name)
		r, err := cm.CreateDevice(ctx, &certmgrv1.CreateDeviceRequest{Name: name})
		must(err)
		must(os.WriteFile(filepath.Join(devDir, name+".cert.pem"), []byte(r.Device.CertificatePem), 0o600))
		must(os.WriteFile(filepath.Join(devDir, name+".key.pem"), []byte(r.KeyPem), 0o600))
		blk, _ := pem.Decode([]byte(r.Device.CertificatePem))
		sum := sha256.Sum256(blk.Bytes)
		devs = append(devs, dev{name, thing(name), "arn:aws:iot:us-east-1:123456789012:cert/" + hex.EncodeToString(sum[:])})
		pre := "$aws/things/" + name + "/shadow/"
		subs = append(subs, sub{"u" + name, thing(name), pre + "update", "GGShadowService"},
			sub{"a" + name, "GGShadowService", pre + "update/accepted", thing(name)})
		caFile = filepath.Join(devDir, "ca.pem")
		must(os.WriteFile(caFile, []byte(r.ServerCaPem), 0o600))
	}
	group := map[string]any{
		"Core":          map[string]any{"Cores": []any{map[string]any{"Id": "core", "ThingArn": thing("evergreen-core"), "CertificateArn": "arn:aws:iot:us-east-1:123456789012:cert/" + strings.Repeat("0", 64)}}},
		"Devices":       map[string]any{"Devices": devs},
		"Subscriptions": map[string]any{"Subscriptions": subs},
	}
	gj, _ := json.Marshal(group)
	st, err := deployv1.NewDeployerClient(conn("deployagent")).Deploy(ctx, &deployv1.DeployRequest{GroupJson: gj})
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
	addr := strings.Replace(readEndpoints(root)["mqtt"], "0.0.0.0", "127.0.0.1", 1)

	// 1. Round trips through MQTT: one thing alone (latency), then all.
	payload := func(n int) []byte {
		return fmt.Appendf(nil, `{"state":{"reported":{"seq":%d,"temperature":21.5,"mode":"auto","fan":{"speed":3,"on":true}}}}`, n)
	}
	roundTrips := func(names []string) (float64, time.Duration, time.Duration) {
		var lat []time.Duration
		var latMu sync.Mutex
		var done atomic.Int64
		var wg sync.WaitGroup
		var deadline time.Time
		begin := make(chan struct{})
		for _, name := range names {
			d, err := loadgen.LoadDevice(devDir, name, caFile)
			must(err)
			accepted := make(chan struct{}, 1)
			c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("ssl://" + addr).SetClientID(name).SetTLSConfig(d.TLS).
				SetCleanSession(true).SetAutoReconnect(false).SetOrderMatters(false))
			if t := c.Connect(); !t.WaitTimeout(15*time.Second) || t.Error() != nil {
				fail("connect %s: %v", name, t.Error())
			}
			pre := "$aws/things/" + name + "/shadow/"
			if t := c.Subscribe(pre+"update/accepted", 0, func(mqtt.Client, mqtt.Message) {
				select {
				case accepted <- struct{}{}:
				default:
				}
			}); !t.WaitTimeout(15*time.Second) || t.Error() != nil {
				fail("subscribe %s: %v", name, t.Error())
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Disconnect(0)
				<-begin
				var mine []time.Duration
				for i := 0; time.Now().Before(deadline); i++ {
					t0 := time.Now()
					c.Publish(pre+"update", 0, false, payload(i))
					select {
					case <-accepted:
						mine = append(mine, time.Since(t0))
						done.Add(1)
					case <-time.After(5 * time.Second):
					}
				}
				latMu.Lock()
				lat = append(lat, mine...)
				latMu.Unlock()
			}()
		}
		start := time.Now()
		deadline = start.Add(dur)
		close(begin)
		wg.Wait()
		return float64(done.Load()) / time.Since(start).Seconds(), percentile(lat, 50), percentile(lat, 99)
	}
	oneRate, oneP50, oneP99 := roundTrips(names[:1])
	svcRate, svcP50, svcP99 := roundTrips(names)

	// 2. Raw badger, same writers, same durability, same value sizes.
	bdir := filepath.Join(root, "raw-badger")
	db, err := badger.Open(store.BadgerOptions(bdir))
	must(err)
	rawWrites := func(names []string) (float64, time.Duration, time.Duration) {
		var wg sync.WaitGroup
		var latMu sync.Mutex
		var blat []time.Duration
		var bdone atomic.Int64
		deadline := time.Now().Add(dur)
		for _, name := range names {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []time.Duration
				for i := 0; time.Now().Before(deadline); i++ {
					t0 := time.Now()
					// A read and a write per update, as the service does.
					err := db.Update(func(txn *badger.Txn) error {
						if it, err := txn.Get([]byte(name)); err == nil {
							it.ValueCopy(nil)
						}
						return txn.Set([]byte(name), slices.Concat(payload(i), make([]byte, 400)))
					})
					if err != nil {
						fail("raw badger: %v", err)
					}
					mine = append(mine, time.Since(t0))
					bdone.Add(1)
				}
				latMu.Lock()
				blat = append(blat, mine...)
				latMu.Unlock()
			}()
		}
		start := time.Now()
		wg.Wait()
		return float64(bdone.Load()) / time.Since(start).Seconds(), percentile(blat, 50), percentile(blat, 99)
	}
	rawOne, rawOneP50, rawOneP99 := rawWrites(names[:1])
	rawRate, rawP50, rawP99 := rawWrites(names)
	db.Close()

	fmt.Printf("shadow update round trip (device publishes /update, receives /update/accepted; one update in flight per thing), %v each\n", dur)
	line := func(what string, rate float64, p50, p99 time.Duration) {
		fmt.Printf("  %-44s %8.0f /s  p50 %9s  p99 %9s\n", what, rate, p50.Round(time.Microsecond), p99.Round(time.Microsecond))
	}
	line("1 thing: MQTT round trip", oneRate, oneP50, oneP99)
	line("1 thing: peer raw badger read+write, SyncWrites", rawOne, rawOneP50, rawOneP99)
	line(fmt.Sprintf("%d things: MQTT round trip", things), svcRate, svcP50, svcP99)
	line(fmt.Sprintf("%d things: peer raw badger, SyncWrites", things), rawRate, rawP50, rawP99)
	fmt.Printf("  ratio service/raw badger: 1 thing %.2fx, %d things %.2fx (aim: within 3x, i.e. >= 0.33x; p50 under 1 ms)\n\n", oneRate/rawOne, things, svcRate/rawRate)

	// 3. PSS with 2,500 shadows of 4 KB: 25 named shadows per thing.
	api := shadowv1.NewShadowClient(conn("shadow"))
	per := max(1, 2500/things)
	big := `"` + strings.Repeat("x", 4000) + `"`
	for i, name := range names {
		for j := 0; j < per && i*per+j < 2500; j++ {
			_, err := api.Update(ctx, &shadowv1.UpdateRequest{Thing: name, Name: fmt.Sprintf("s%02d", j), Document: []byte(`{"state":{"reported":{"blob":` + big + `}}}`)})
			must(err)
		}
	}
	time.Sleep(3 * time.Second)
	loaded := pss(suitePids(root)["shadow"])
	restartDaemon(root, "shadow")
	time.Sleep(3 * time.Second)
	fresh := pss(suitePids(root)["shadow"])
	fmt.Printf("shadow daemon PSS with 2,500 shadows of 4 KB: %.1f MB after writing them, %.1f MB after a restart (aim: under 24 MB)\n\n", mb(loaded), mb(fresh))
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

// restartDaemon asks the supervisor to restart one daemon and waits until
// it is healthy again.
func restartDaemon(root, name string) {
	c, err := grpc.NewClient("unix://"+filepath.Join(root, "run", "supervisor.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(err)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err = supervisorv1.NewSupervisorClient(c).RestartDaemon(ctx, &supervisorv1.RestartDaemonRequest{Name: name})
	must(err)
}

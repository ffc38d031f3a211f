package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// HTTPAddr is the address /healthz and /metrics are served on.
func (s *Supervisor) HTTPAddr() string { return s.httpAddr }

func (s *Supervisor) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /metrics", s.metrics)
	return mux
}

type daemonHealth struct {
	State     string  `json:"state"`
	Healthy   bool    `json:"healthy"`
	Pid       int32   `json:"pid"`
	Restarts  uint32  `json:"restarts"`
	Uptime    float64 `json:"uptimeSeconds"`
	LastError string  `json:"lastError,omitempty"`
}

func (s *Supervisor) healthz(w http.ResponseWriter, r *http.Request) {
	body := struct {
		Healthy bool                    `json:"healthy"`
		Daemons map[string]daemonHealth `json:"daemons"`
	}{Healthy: true, Daemons: map[string]daemonHealth{}}
	for _, p := range s.procs {
		d := p.snapshot()
		body.Daemons[d.Name] = daemonHealth{
			State: strings.TrimPrefix(d.State.String(), "DAEMON_STATE_"), Healthy: d.Healthy, Pid: d.Pid,
			Restarts: d.Restarts, Uptime: d.UptimeSeconds, LastError: d.LastError,
		}
		body.Healthy = body.Healthy && d.Healthy
	}
	w.Header().Set("Content-Type", "application/json")
	if !body.Healthy {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	json.NewEncoder(w).Encode(body)
}

func (s *Supervisor) metrics(w http.ResponseWriter, r *http.Request) {
	var b bytes.Buffer
	help := func(name, typ, text string) { fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, typ) }

	type row struct {
		name string
		pid  int
		up   bool
		rst  uint32
	}
	snaps := []row{{Name, os.Getpid(), true, 0}}
	for _, p := range s.procs {
		d := p.snapshot()
		snaps = append(snaps, row{d.Name, int(d.Pid), d.Healthy, d.Restarts})
	}
	help("evergreen_daemon_up", "gauge", "1 when the daemon is running and its gRPC health is SERVING.")
	for _, d := range snaps {
		fmt.Fprintf(&b, "evergreen_daemon_up{daemon=%q} %d\n", d.name, btoi(d.up))
	}
	help("evergreen_daemon_restarts_total", "counter", "Restarts since the supervisor started.")
	for _, d := range snaps[1:] {
		fmt.Fprintf(&b, "evergreen_daemon_restarts_total{daemon=%q} %d\n", d.name, d.rst)
	}
	help("evergreen_daemon_pss_bytes", "gauge", "Proportional set size from /proc/<pid>/smaps_rollup.")
	var total int64
	for _, d := range snaps {
		if d.pid == 0 {
			continue
		}
		if pss, err := PSS(d.pid); err == nil {
			total += pss
			fmt.Fprintf(&b, "evergreen_daemon_pss_bytes{daemon=%q} %d\n", d.name, pss)
		}
	}
	help("evergreen_suite_pss_bytes", "gauge", "Sum of the PSS of the supervisor and every daemon.")
	fmt.Fprintf(&b, "evergreen_suite_pss_bytes %d\n", total)
	help("evergreen_daemon_open_fds", "gauge", "Open file descriptors.")
	for _, d := range snaps {
		if d.pid == 0 {
			continue
		}
		if ents, err := os.ReadDir("/proc/" + strconv.Itoa(d.pid) + "/fd"); err == nil {
			fmt.Fprintf(&b, "evergreen_daemon_open_fds{daemon=%q} %d\n", d.name, len(ents))
		}
	}
	s.certMetrics(r.Context(), &b, help)
	s.runtimeMetrics(r.Context(), &b, help)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	w.Write(b.Bytes())
}

// certMetrics asks certmgr for every certificate's expiry. Missing certmgr
// (stopped, not enabled) just leaves the series out.
func (s *Supervisor) certMetrics(ctx context.Context, b *bytes.Buffer, help func(string, string, string)) {
	if s.byName["certmgr"] == nil || !s.byName["certmgr"].isHealthy() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+s.o.Root.Socket("certmgr"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return
	}
	defer conn.Close()
	c := certmgrv1.NewCertManagerClient(conn)
	help("evergreen_certificate_expiry_seconds", "gauge", "Seconds until the certificate expires (negative once expired).")
	if a, err := c.GetAuthorities(ctx, &certmgrv1.GetAuthoritiesRequest{}); err == nil {
		for _, x := range []struct {
			name string
			info *certmgrv1.CertificateInfo
		}{{"group-ca", a.GroupCa}, {"device-ca", a.DeviceCa}, {"core", a.Core}} {
			if x.info != nil {
				fmt.Fprintf(b, "evergreen_certificate_expiry_seconds{certificate=%q} %.0f\n", x.name, x.info.ExpiresInSeconds)
			}
		}
	}
	if sc, err := c.GetServerCertificate(ctx, &certmgrv1.GetServerCertificateRequest{}); err == nil && sc.Info != nil {
		fmt.Fprintf(b, "evergreen_certificate_expiry_seconds{certificate=\"mqtt-server\"} %.0f\n", sc.Info.ExpiresInSeconds)
	}
	if ds, err := c.ListDevices(ctx, &certmgrv1.ListDevicesRequest{}); err == nil {
		help("evergreen_device_certificate_expiry_seconds", "gauge", "Seconds until a registered device's certificate expires.")
		for _, d := range ds.Devices {
			if d.Certificate != nil {
				fmt.Fprintf(b, "evergreen_device_certificate_expiry_seconds{device=%q} %.0f\n", d.Name, d.Certificate.ExpiresInSeconds)
			}
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// PSS returns a process's proportional set size in bytes, read from
// /proc/<pid>/smaps_rollup.
func PSS(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "Pss:") {
			fields := strings.Fields(line)
			if len(fields) >= 2 {
				kb, err := strconv.ParseInt(fields[1], 10, 64)
				return kb * 1024, err
			}
		}
	}
	return 0, fmt.Errorf("no Pss line in /proc/%d/smaps_rollup", pid)
}

package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
	supervisorv1 "github.com/evergreen-edge/evergreen/proto/evergreen/supervisor/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Where a status report's daemon list came from.
const (
	sourceSupervisor  = "supervisor"
	sourceHealthCheck = "health-check"
)

// statusReport is `ggctl status --json`.
type statusReport struct {
	// Healthy is true when every daemon is RUNNING and healthy (exit 0).
	Healthy bool `json:"healthy"`
	// Source is "supervisor" (ListDaemons) or "health-check" (no supervisor
	// socket: grpc.health.v1 Check on each DIR/run/*.sock).
	Source            string         `json:"source"`
	SupervisorVersion string         `json:"supervisorVersion,omitempty"`
	Daemons           []daemonStatus `json:"daemons"`
	Certificates      []certStatus   `json:"certificates"`
	// CertificatesError says why certificates could not be read.
	CertificatesError string `json:"certificatesError,omitempty"`
}

type daemonStatus struct {
	Name string `json:"name"`
	// State is the supervisor's state without its prefix (RUNNING,
	// STARTING, BACKOFF, CRASH_LOOP, STOPPING, STOPPED); from health checks:
	// RUNNING, NOT_SERVING, UNREACHABLE or DOWN (pid file but no socket).
	State         string  `json:"state"`
	Pid           int32   `json:"pid"`
	Restarts      *uint32 `json:"restarts"` // null when unknown (no supervisor)
	UptimeSeconds float64 `json:"uptimeSeconds"`
	Healthy       bool    `json:"healthy"`
	LastError     string  `json:"lastError"`
	Socket        string  `json:"socket"`
}

type certStatus struct {
	Name             string    `json:"name"` // "group CA", "device CA", "core", "MQTT server cert"
	Subject          string    `json:"subject"`
	Serial           string    `json:"serial"`
	NotAfter         time.Time `json:"notAfter"`
	ExpiresInSeconds float64   `json:"expiresInSeconds"`
	Expired          bool      `json:"expired"`
}

func cmdStatus(a *app, args []string) error {
	if _, err := a.parse(a.flags(), args, 0, 0); err != nil {
		return err
	}
	rep := &statusReport{Daemons: []daemonStatus{}, Certificates: []certStatus{}}
	var err error
	if _, serr := os.Stat(a.root.Socket(supervisorDaemon)); errors.Is(serr, fs.ErrNotExist) {
		err = a.statusFromHealth(rep)
	} else {
		err = a.statusFromSupervisor(rep)
	}
	if err != nil {
		return err
	}
	a.certificateStatus(rep)

	var unhealthy []string
	for _, d := range rep.Daemons {
		if d.State != "RUNNING" || !d.Healthy {
			unhealthy = append(unhealthy, fmt.Sprintf("%s (%s)", d.Name, strings.ToLower(d.State)))
		}
	}
	rep.Healthy = len(rep.Daemons) > 0 && len(unhealthy) == 0

	if a.g.json {
		if err := a.printJSON(rep); err != nil {
			return err
		}
	} else if err := a.printStatus(rep); err != nil {
		return err
	}
	switch {
	case len(rep.Daemons) == 0:
		return failf("not healthy: the supervisor reports no daemons")
	case len(unhealthy) > 0:
		return failf("not healthy: %s", strings.Join(unhealthy, ", "))
	}
	return nil
}

func (a *app) statusFromSupervisor(rep *statusReport) error {
	c, err := a.supervisor()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	resp, err := c.ListDaemons(ctx, &supervisorv1.ListDaemonsRequest{})
	if err != nil {
		return a.rpcError(supervisorDaemon, err)
	}
	rep.Source = sourceSupervisor
	rep.SupervisorVersion = resp.GetVersion()
	now := time.Now()
	for _, d := range resp.GetDaemons() {
		restarts := d.GetRestarts()
		ds := daemonStatus{
			Name:      d.GetName(),
			State:     enumName(d.GetState().String(), "DAEMON_STATE_"),
			Pid:       d.GetPid(),
			Restarts:  &restarts,
			Healthy:   d.GetHealthy(),
			LastError: d.GetLastError(),
			Socket:    d.GetSocket(),
		}
		if d.GetState() == supervisorv1.DaemonState_DAEMON_STATE_RUNNING || d.GetState() == supervisorv1.DaemonState_DAEMON_STATE_STARTING {
			ds.UptimeSeconds = d.GetUptimeSeconds()
			if d.GetStartedAt() != nil {
				ds.UptimeSeconds = now.Sub(d.GetStartedAt().AsTime()).Seconds()
			}
		}
		rep.Daemons = append(rep.Daemons, ds)
	}
	return nil
}

// statusFromHealth is the view without a supervisor (each daemon run by
// systemd or compose): every socket in DIR/run answers grpc.health.v1, and
// a pid file without a socket marks a daemon that went away.
func (a *app) statusFromHealth(rep *statusReport) error {
	rep.Source = sourceHealthCheck
	run := a.root.RunDir()
	seen := map[string]bool{}
	for _, pattern := range []string{"*.sock", "*.pid"} {
		matches, _ := filepath.Glob(filepath.Join(run, pattern))
		for _, m := range matches {
			name := strings.TrimSuffix(filepath.Base(m), filepath.Ext(m))
			if name != supervisorDaemon {
				seen[name] = true
			}
		}
	}
	if len(seen) == 0 {
		return a.unreachable("the suite", fmt.Sprintf("no supervisor socket and no daemon socket in %s", run))
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	rep.Daemons = make([]daemonStatus, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep.Daemons[i] = a.checkHealth(n)
		}()
	}
	wg.Wait()
	return nil
}

func (a *app) checkHealth(name string) daemonStatus {
	sock := a.root.Socket(name)
	ds := daemonStatus{Name: name, Socket: sock}
	pidFile := a.root.PidFile(name)
	var pidTime time.Time
	if b, err := os.ReadFile(pidFile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			ds.Pid = int32(pid)
		}
		if st, err := os.Stat(pidFile); err == nil {
			pidTime = st.ModTime()
		}
	}
	if _, err := os.Stat(sock); err != nil {
		ds.State, ds.LastError = "DOWN", "no socket at "+sock
		return ds
	}
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		ds.State, ds.LastError = "UNREACHABLE", err.Error()
		return ds
	}
	defer cc.Close()
	ctx, cancel := a.unary()
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		ds.State, ds.LastError = "UNREACHABLE", a.rpcError(name, err).Error()
		return ds
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		ds.State = "NOT_SERVING"
		ds.LastError = "health " + resp.GetStatus().String()
		return ds
	}
	ds.State, ds.Healthy = "RUNNING", true
	if !pidTime.IsZero() {
		// The daemon writes its pid file once it is ready.
		ds.UptimeSeconds = time.Since(pidTime).Seconds()
	}
	return ds
}

// certificateStatus adds certmgr's certificates to rep. A certmgr that
// cannot be reached is a note here: the daemon table already shows it.
func (a *app) certificateStatus(rep *statusReport) {
	c, err := a.certmgr()
	if err != nil {
		rep.CertificatesError = err.Error()
		return
	}
	now := time.Now()
	add := func(name string, info *certmgrv1.CertificateInfo) {
		if info == nil {
			return
		}
		cs := certStatus{Name: name, Subject: info.GetSubject(), Serial: info.GetSerial(), ExpiresInSeconds: info.GetExpiresInSeconds()}
		if info.GetNotAfter() != nil {
			cs.NotAfter = info.GetNotAfter().AsTime()
			cs.ExpiresInSeconds = cs.NotAfter.Sub(now).Seconds()
		} else {
			cs.NotAfter = now.Add(time.Duration(cs.ExpiresInSeconds * float64(time.Second)))
		}
		cs.Expired = cs.ExpiresInSeconds <= 0
		rep.Certificates = append(rep.Certificates, cs)
	}
	ctx, cancel := a.unary()
	defer cancel()
	auth, err := c.GetAuthorities(ctx, &certmgrv1.GetAuthoritiesRequest{})
	if err != nil {
		rep.CertificatesError = a.rpcError(certmgrDaemon, err).Error()
		return
	}
	add("group CA", auth.GetGroupCa())
	add("device CA", auth.GetDeviceCa())
	add("core", auth.GetCore())
	srv, err := c.GetServerCertificate(ctx, &certmgrv1.GetServerCertificateRequest{})
	if err != nil {
		rep.CertificatesError = "MQTT server cert: " + a.rpcError(certmgrDaemon, err).Error()
		return
	}
	add("MQTT server cert", srv.GetInfo())
}

func (a *app) printStatus(rep *statusReport) error {
	w := a.stdout
	if rep.Source == sourceHealthCheck {
		fmt.Fprintf(w, "supervisor not running (no %s): health checked on each daemon's socket\n\n", a.root.Socket(supervisorDaemon))
	}
	t := newTable(w, "NAME", "STATE", "PID", "RESTARTS", "UPTIME", "HEALTHY", "LAST-ERROR")
	for _, d := range rep.Daemons {
		pid, restarts, uptime := "", "", ""
		if d.Pid > 0 {
			pid = strconv.Itoa(int(d.Pid))
		}
		if d.Restarts != nil {
			restarts = strconv.FormatUint(uint64(*d.Restarts), 10)
		}
		if d.UptimeSeconds > 0 {
			uptime = humanDuration(time.Duration(d.UptimeSeconds * float64(time.Second)))
		}
		t.row(d.Name, d.State, pid, restarts, uptime, yesNo(d.Healthy), d.LastError)
	}
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	now := time.Now()
	if len(rep.Certificates) > 0 {
		t = newTable(w)
		for _, c := range rep.Certificates {
			t.row(c.Name+":", expiry(c.NotAfter, now), "(not after "+c.NotAfter.Local().Format("2006-01-02 15:04:05")+")")
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if rep.CertificatesError != "" {
		fmt.Fprintf(w, "certificates: %s\n", oneLine(rep.CertificatesError))
	}
	if rep.SupervisorVersion != "" {
		fmt.Fprintf(w, "supervisor: ggd %s\n", rep.SupervisorVersion)
	}
	return nil
}

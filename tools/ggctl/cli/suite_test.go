package cli

// The daemons ggctl talks to, served for real over gRPC on unix sockets in
// a temporary DIR/run: ggctl is tested at its socket boundary. These small
// servers answer the way the .proto comments say the real daemons do (codes
// and messages through errdefs); the daemons themselves are tested in their
// own modules.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	supervisorv1 "github.com/evergreen-edge/evergreen/proto/evergreen/supervisor/v1"
	"github.com/evergreen-edge/evergreen/services/kit/arn"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/evergreen-edge/evergreen/services/kit/topic"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// suite is one temporary root with the servers a test started on it.
type suite struct {
	t    *testing.T
	root string
}

func newSuite(t *testing.T) *suite {
	t.Helper()
	// Unix socket paths are limited to 107 bytes: keep the root short
	// rather than under t.TempDir's long names.
	root, err := os.MkdirTemp("", "ggctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.MkdirAll(filepath.Join(root, "run"), 0o750); err != nil {
		t.Fatal(err)
	}
	return &suite{t: t, root: root}
}

func (s *suite) socket(daemon string) string { return layout.Root(s.root).Socket(daemon) }

// serve starts a gRPC server on DIR/run/<daemon>.sock with grpc.health.v1
// reporting SERVING, and returns the health server so a test can change it.
func (s *suite) serve(daemon string, register func(*grpc.Server)) *health.Server {
	s.t.Helper()
	lis, err := net.Listen("unix", s.socket(daemon))
	if err != nil {
		s.t.Fatal(err)
	}
	srv := grpc.NewServer()
	h := health.NewServer()
	h.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, h)
	if register != nil {
		register(srv)
	}
	go srv.Serve(lis)
	s.t.Cleanup(srv.Stop)
	return h
}

// staleSocket leaves a socket file nobody listens on, as a killed daemon
// does: connecting to it is refused.
func (s *suite) staleSocket(daemon string) {
	s.t.Helper()
	lis, err := net.Listen("unix", s.socket(daemon))
	if err != nil {
		s.t.Fatal(err)
	}
	lis.(*net.UnixListener).SetUnlinkOnClose(false)
	lis.Close()
}

func (s *suite) supervisor(f *fakeSupervisor) *fakeSupervisor {
	s.serve(supervisorDaemon, func(g *grpc.Server) { supervisorv1.RegisterSupervisorServer(g, f) })
	return f
}

func (s *suite) certmgr(f *fakeCertManager) *fakeCertManager {
	s.serve(certmgrDaemon, func(g *grpc.Server) { certmgrv1.RegisterCertManagerServer(g, f) })
	return f
}

func (s *suite) deployer(f *fakeDeployer) *fakeDeployer {
	s.serve(deployagentDaemon, func(g *grpc.Server) { deployv1.RegisterDeployerServer(g, f) })
	return f
}

func (s *suite) broker(f *fakeBroker) *fakeBroker {
	s.serve(brokerDaemon, func(g *grpc.Server) { brokerv1.RegisterBrokerServer(g, f) })
	return f
}

// result is one ggctl run.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// ggctl runs ggctl in-process with --root set to the suite's root.
func (s *suite) ggctl(args ...string) result {
	s.t.Helper()
	return runGgctl(context.Background(), append([]string{"--root", s.root}, args...)...)
}

func runGgctl(ctx context.Context, args ...string) result {
	var out, errb bytes.Buffer
	code := RunContext(ctx, args, &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// ggctlStdin is ggctl with stdin as its standard input.
func (s *suite) ggctlStdin(stdin string, args ...string) result {
	s.t.Helper()
	var out, errb bytes.Buffer
	code := RunIO(context.Background(), append([]string{"--root", s.root}, args...), strings.NewReader(stdin), &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// wantExit fails the test unless r ended with code.
func wantExit(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("want exit %d, got %s", code, r)
	}
}

func wantOneErrorLine(t *testing.T, r result, contains ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "ggctl: ") {
		t.Fatalf("want one \"ggctl: \" line on stderr, got %s", r)
	}
	for _, c := range contains {
		if !strings.Contains(lines[0], c) {
			t.Fatalf("stderr line lacks %q: %s", c, r)
		}
	}
}

// checkFor polls fn until it returns nil or total passes.
func checkFor(t *testing.T, total, every time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(every)
	}
}

// syncBuffer is a bytes.Buffer that a test reads while ggctl writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// ---- supervisor ----

type fakeSupervisor struct {
	supervisorv1.UnimplementedSupervisorServer
	mu      sync.Mutex
	version string
	daemons []*supervisorv1.Daemon
	logs    map[string][]string
	// follow feeds lines to FollowLog calls with follow set.
	follow chan string
	// hold, when set, makes ListDaemons wait for it (or the caller's
	// deadline).
	hold chan struct{}
}

func runningDaemon(name string, pid int32, uptime time.Duration) *supervisorv1.Daemon {
	return &supervisorv1.Daemon{
		Name: name, State: supervisorv1.DaemonState_DAEMON_STATE_RUNNING, Pid: pid, Healthy: true,
		StartedAt: timestamppb.New(time.Now().Add(-uptime)), UptimeSeconds: uptime.Seconds(),
	}
}

func newFakeSupervisor() *fakeSupervisor {
	return &fakeSupervisor{
		version: "v0.1.0-test",
		daemons: []*supervisorv1.Daemon{
			runningDaemon("bus", 101, 3*time.Hour+5*time.Minute),
			runningDaemon("certmgr", 102, 3*time.Hour),
			runningDaemon("deployagent", 103, 90*time.Second),
		},
		logs: map[string][]string{
			"certmgr": {"line 1", "line 2", "line 3", "line 4"},
		},
		follow: make(chan string, 16),
	}
}

func (f *fakeSupervisor) find(name string) (*supervisorv1.Daemon, error) {
	if name == "" {
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("name", "must not be empty"))
	}
	for _, d := range f.daemons {
		if d.Name == name {
			return d, nil
		}
	}
	return nil, errdefs.ToGRPC(errdefs.NotFound("daemon", name))
}

func (f *fakeSupervisor) ListDaemons(ctx context.Context, _ *supervisorv1.ListDaemonsRequest) (*supervisorv1.ListDaemonsResponse, error) {
	if f.hold != nil {
		select {
		case <-f.hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return &supervisorv1.ListDaemonsResponse{Daemons: f.daemons, Version: f.version}, nil
}

func (f *fakeSupervisor) GetDaemon(_ context.Context, r *supervisorv1.GetDaemonRequest) (*supervisorv1.Daemon, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.find(r.Name)
}

func (f *fakeSupervisor) StartDaemon(_ context.Context, r *supervisorv1.StartDaemonRequest) (*supervisorv1.Daemon, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.find(r.Name)
	if err != nil {
		return nil, err
	}
	if d.State != supervisorv1.DaemonState_DAEMON_STATE_RUNNING {
		d.State, d.Healthy, d.Pid = supervisorv1.DaemonState_DAEMON_STATE_RUNNING, true, d.Pid+1000
		d.StartedAt = timestamppb.Now()
	}
	return d, nil
}

func (f *fakeSupervisor) StopDaemon(_ context.Context, r *supervisorv1.StopDaemonRequest) (*supervisorv1.Daemon, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.find(r.Name)
	if err != nil {
		return nil, err
	}
	if d.Name == "bus" {
		return nil, errdefs.ToGRPC(fmt.Errorf("daemon \"bus\" cannot be stopped: every daemon needs it: %w", errdefs.ErrFailedPrecondition))
	}
	d.State, d.Healthy, d.Pid, d.StartedAt, d.UptimeSeconds = supervisorv1.DaemonState_DAEMON_STATE_STOPPED, false, 0, nil, 0
	return d, nil
}

func (f *fakeSupervisor) RestartDaemon(_ context.Context, r *supervisorv1.RestartDaemonRequest) (*supervisorv1.Daemon, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.find(r.Name)
	if err != nil {
		return nil, err
	}
	d.State, d.Healthy, d.Pid = supervisorv1.DaemonState_DAEMON_STATE_RUNNING, true, d.Pid+1000
	d.Restarts++
	d.StartedAt, d.UptimeSeconds, d.LastError = timestamppb.Now(), 0, ""
	return d, nil
}

func (f *fakeSupervisor) FollowLog(r *supervisorv1.FollowLogRequest, stream grpc.ServerStreamingServer[supervisorv1.LogLine]) error {
	f.mu.Lock()
	if _, err := f.find(r.Name); err != nil {
		f.mu.Unlock()
		return err
	}
	if r.TailLines < 0 {
		f.mu.Unlock()
		return errdefs.ToGRPC(errdefs.InvalidArgument("tail_lines", "must not be negative"))
	}
	lines, ok := f.logs[r.Name]
	f.mu.Unlock()
	if !ok {
		return errdefs.ToGRPC(fmt.Errorf("no log written yet for daemon %q: %w", r.Name, errdefs.ErrNotFound))
	}
	n := int(r.TailLines)
	if n == 0 {
		n = 10
	}
	if n < len(lines) {
		lines = lines[len(lines)-n:]
	}
	for _, l := range lines {
		if err := stream.Send(&supervisorv1.LogLine{Line: l}); err != nil {
			return err
		}
	}
	if !r.Follow {
		return nil
	}
	for {
		select {
		case <-stream.Context().Done():
			return stream.Context().Err()
		case l := <-f.follow:
			if err := stream.Send(&supervisorv1.LogLine{Line: l}); err != nil {
				return err
			}
		}
	}
}

// ---- certmgr ----

var thingName = regexp.MustCompile(`^[a-zA-Z0-9:_-]{1,128}$`)

type issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
}

type fakeCertManager struct {
	certmgrv1.UnimplementedCertManagerServer
	t                 *testing.T
	mu                sync.Mutex
	groupCA, deviceCA issuer
	core, server      *x509.Certificate
	devices           map[string]*certmgrv1.Device
	serverUnavailable bool
	// keyless makes CreateDevice answer without the key, as a broken
	// certmgr might.
	keyless bool
}

func newFakeCertManager(t *testing.T) *fakeCertManager {
	f := &fakeCertManager{t: t, devices: map[string]*certmgrv1.Device{}}
	now := time.Now()
	f.groupCA = selfSigned(t, "Evergreen group CA", now.Add(10*365*24*time.Hour))
	f.deviceCA = selfSigned(t, "Evergreen device CA", now.Add(10*365*24*time.Hour))
	f.core, _, _ = issue(t, "core", f.groupCA, now.Add(365*24*time.Hour))
	// Issued 30 minutes ago with the default 7-day validity.
	f.server, _, _ = issue(t, "mqtt-server", f.groupCA, now.Add(7*24*time.Hour-30*time.Minute))
	return f
}

func selfSigned(t *testing.T, cn string, notAfter time.Time) issuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return issuer{cert: cert, key: key, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

func issue(t *testing.T, cn string, ca issuer, notAfter time.Time) (*x509.Certificate, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return cert,
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
}

func certInfo(c *x509.Certificate) *certmgrv1.CertificateInfo {
	sum := sha256.Sum256(c.Raw)
	return &certmgrv1.CertificateInfo{
		Subject: c.Subject.String(), Serial: c.SerialNumber.Text(16),
		NotBefore: timestamppb.New(c.NotBefore), NotAfter: timestamppb.New(c.NotAfter),
		ExpiresInSeconds: time.Until(c.NotAfter).Seconds(), Sha256Fingerprint: hex.EncodeToString(sum[:]),
		KeyAlgorithm: certmgrv1.KeyAlgorithm_KEY_ALGORITHM_ECDSA_P256,
	}
}

func (f *fakeCertManager) GetAuthorities(context.Context, *certmgrv1.GetAuthoritiesRequest) (*certmgrv1.GetAuthoritiesResponse, error) {
	return &certmgrv1.GetAuthoritiesResponse{
		GroupCaPem: f.groupCA.pem, GroupCa: certInfo(f.groupCA.cert),
		DeviceCaPem: f.deviceCA.pem, DeviceCa: certInfo(f.deviceCA.cert),
		Core: certInfo(f.core),
	}, nil
}

func (f *fakeCertManager) GetServerCertificate(context.Context, *certmgrv1.GetServerCertificateRequest) (*certmgrv1.ServerCertificate, error) {
	if f.serverUnavailable {
		return nil, errdefs.ToGRPC(fmt.Errorf("no server certificate issued yet: %w", errdefs.ErrUnavailable))
	}
	return &certmgrv1.ServerCertificate{Info: certInfo(f.server), DnsNames: []string{"localhost"}}, nil
}

func (f *fakeCertManager) CreateDevice(_ context.Context, r *certmgrv1.CreateDeviceRequest) (*certmgrv1.CreateDeviceResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !thingName.MatchString(r.Name) {
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("name", "%q breaks AWS IoT thing-name rules (1-128 chars of [a-zA-Z0-9:_-])", r.Name))
	}
	if _, ok := f.devices[r.Name]; ok {
		return nil, errdefs.ToGRPC(errdefs.AlreadyExists("device", r.Name))
	}
	cert, certPEM, keyPEM := issue(f.t, r.Name, f.deviceCA, time.Now().Add(365*24*time.Hour))
	d := &certmgrv1.Device{Name: r.Name, Certificate: certInfo(cert), IssuedHere: true, RegisteredAt: timestamppb.Now(), CertificatePem: certPEM}
	f.devices[r.Name] = d
	if f.keyless {
		keyPEM = ""
	}
	return &certmgrv1.CreateDeviceResponse{Device: d, KeyPem: keyPEM, ServerCaPem: f.groupCA.pem}, nil
}

func (f *fakeCertManager) RegisterDevice(_ context.Context, r *certmgrv1.RegisterDeviceRequest) (*certmgrv1.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !thingName.MatchString(r.Name) {
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("name", "%q breaks AWS IoT thing-name rules", r.Name))
	}
	block, rest := pem.Decode([]byte(r.CertificatePem))
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("certificate_pem", "want exactly one PEM certificate"))
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("certificate_pem", "%v", err))
	}
	if _, ok := f.devices[r.Name]; ok {
		return nil, errdefs.ToGRPC(errdefs.AlreadyExists("device", r.Name))
	}
	d := &certmgrv1.Device{Name: r.Name, Certificate: certInfo(cert), RegisteredAt: timestamppb.Now(), CertificatePem: r.CertificatePem}
	f.devices[r.Name] = d
	return d, nil
}

func (f *fakeCertManager) ListDevices(context.Context, *certmgrv1.ListDevicesRequest) (*certmgrv1.ListDevicesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &certmgrv1.ListDevicesResponse{}
	for _, d := range f.devices {
		resp.Devices = append(resp.Devices, d)
	}
	sort.Slice(resp.Devices, func(i, j int) bool { return resp.Devices[i].Name < resp.Devices[j].Name })
	return resp, nil
}

func (f *fakeCertManager) RemoveDevice(_ context.Context, r *certmgrv1.RemoveDeviceRequest) (*certmgrv1.RemoveDeviceResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Name == "" {
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("name", "must not be empty"))
	}
	if _, ok := f.devices[r.Name]; !ok {
		return nil, errdefs.ToGRPC(errdefs.NotFound("device", r.Name))
	}
	delete(f.devices, r.Name)
	return &certmgrv1.RemoveDeviceResponse{}, nil
}

func (f *fakeCertManager) device(name string) *certmgrv1.Device {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.devices[name]
}

// ---- deployagent ----

type fakeDeployer struct {
	deployv1.UnimplementedDeployerServer
	mu          sync.Mutex
	requests    []*deployv1.DeployRequest
	deployments []*deployv1.Deployment
	// deploy decides how a Deploy call goes; nil means every daemon accepts.
	deploy func(r *deployv1.DeployRequest, send func(deployv1.DeploymentStatus, string, ...*deployv1.DaemonResult)) error
}

func newFakeDeployer() *fakeDeployer {
	created := time.Date(2025, 11, 20, 9, 30, 0, 0, time.UTC)
	return &fakeDeployer{deployments: []*deployv1.Deployment{
		{DeploymentId: "dep-2", Type: deployv1.DeploymentType_DEPLOYMENT_TYPE_NEW, Status: deployv1.DeploymentStatus_DEPLOYMENT_STATUS_FAILURE,
			CreatedAt: timestamppb.New(created.Add(time.Hour)), FinishedAt: timestamppb.New(created.Add(time.Hour + time.Second)),
			Error:   "certmgr refused: subscription target unknown",
			Results: []*deployv1.DaemonResult{{Daemon: "certmgr", Reason: "subscription target unknown"}, {Daemon: "broker", Ok: true}}},
		{DeploymentId: "dep-1", Type: deployv1.DeploymentType_DEPLOYMENT_TYPE_NEW, Status: deployv1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCESS,
			CreatedAt: timestamppb.New(created), FinishedAt: timestamppb.New(created.Add(2 * time.Second)), Current: true, GroupSha256: "abc123",
			Results: []*deployv1.DaemonResult{{Daemon: "certmgr", Ok: true}, {Daemon: "broker", Ok: true}}},
	}}
}

func acceptAll(r *deployv1.DeployRequest, send func(deployv1.DeploymentStatus, string, ...*deployv1.DaemonResult)) error {
	send(deployv1.DeploymentStatus_DEPLOYMENT_STATUS_IN_PROGRESS, "validated")
	send(deployv1.DeploymentStatus_DEPLOYMENT_STATUS_BUILDING, "certmgr applied")
	send(deployv1.DeploymentStatus_DEPLOYMENT_STATUS_SUCCESS, "deployed",
		&deployv1.DaemonResult{Daemon: "certmgr", Ok: true}, &deployv1.DaemonResult{Daemon: "broker", Ok: true})
	return nil
}

func (f *fakeDeployer) Deploy(r *deployv1.DeployRequest, stream grpc.ServerStreamingServer[deployv1.DeployEvent]) error {
	if (len(r.GroupJson) == 0) == !r.Reset_ {
		return errdefs.ToGRPC(errdefs.InvalidArgument("group_json", "give group_json or reset, not both or neither"))
	}
	f.mu.Lock()
	f.requests = append(f.requests, r)
	script := f.deploy
	f.mu.Unlock()
	if script == nil {
		script = acceptAll
	}
	id := r.DeploymentId
	if id == "" {
		id = "dep-new"
	}
	var sendErr error
	send := func(st deployv1.DeploymentStatus, msg string, results ...*deployv1.DaemonResult) {
		if sendErr == nil {
			sendErr = stream.Send(&deployv1.DeployEvent{DeploymentId: id, Status: st, Message: msg, Results: results, Time: timestamppb.Now()})
		}
	}
	if err := script(r, send); err != nil {
		return err
	}
	return sendErr
}

func (f *fakeDeployer) lastRequest() *deployv1.DeployRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) == 0 {
		return nil
	}
	return f.requests[len(f.requests)-1]
}

func (f *fakeDeployer) GetDeployment(_ context.Context, r *deployv1.GetDeploymentRequest) (*deployv1.Deployment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.deployments {
		if (r.DeploymentId == "" && d.Current) || (r.DeploymentId != "" && d.DeploymentId == r.DeploymentId) {
			return d, nil
		}
	}
	if r.DeploymentId == "" {
		return nil, errdefs.ToGRPC(fmt.Errorf("no group deployed: %w", errdefs.ErrNotFound))
	}
	return nil, errdefs.ToGRPC(errdefs.NotFound("deployment", r.DeploymentId))
}

func (f *fakeDeployer) ListDeployments(context.Context, *deployv1.ListDeploymentsRequest) (*deployv1.ListDeploymentsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &deployv1.ListDeploymentsResponse{Deployments: f.deployments}, nil
}

// ---- broker ----

// The group the fake broker routes by, as a group definition writes its
// endpoints.
const (
	sensorARN    = "arn:aws:iot:eu-west-1:123456789012:thing/sensor-1"
	helloARN     = "arn:aws:lambda:eu-west-1:123456789012:function:hello:1"
	connectorARN = "arn:aws:greengrass:eu-west-1::/connectors/TwilioNotifications/versions/4"
)

// fakeMaxPayload is the broker's payload limit (broker.proto: 128 KB).
const fakeMaxPayload = 128 * 1024

type fakeBroker struct {
	brokerv1.UnimplementedBrokerServer
	mu            sync.Mutex
	deploymentID  string // "" when no group is deployed
	subscriptions []*brokerv1.Subscription
	clients       []*brokerv1.Client
	cloud         *brokerv1.CloudStatus
	requests      []*brokerv1.PublishRequest
	taps          map[*fakeTap]bool
	maxTaps       int
}

// fakeTap is one open Subscribe stream.
type fakeTap struct {
	filter string
	msgs   chan *brokerv1.RoutedMessage
	end    chan struct{} // closed: the broker ends the stream (shutdown)
}

func newFakeBroker() *fakeBroker {
	connected := time.Now().Add(-(2*time.Hour + 5*time.Minute))
	return &fakeBroker{
		deploymentID: "dep-1",
		subscriptions: []*brokerv1.Subscription{
			{Id: "temp-up", Source: sensorARN, Subject: "sensors/+/temp", Target: arn.Cloud},
			{Id: "cmd-down", Source: arn.Cloud, Subject: "commands/#", Target: sensorARN},
			// Overlaps cmd-down for the same target: the sensor gets one copy.
			{Id: "cmd-sensor", Source: arn.Cloud, Subject: "commands/sensor-1/+", Target: sensorARN},
			{Id: "cmd-hello", Source: arn.Cloud, Subject: "commands/sensor-1/+", Target: helloARN},
			{Id: "hello-shadow", Source: helloARN, Subject: "hello/out", Target: arn.ShadowService},
			{Id: "alerts", Source: connectorARN, Subject: "alerts", Target: sensorARN},
			{Id: "shadow-sensor", Source: arn.ShadowService, Subject: "$aws/things/sensor-1/shadow/#", Target: sensorARN},
		},
		clients: []*brokerv1.Client{
			{ClientId: "sensor-2", RemoteAddress: "192.0.2.12:51002", ProtocolVersion: 5, ConnectedAt: timestamppb.New(connected.Add(time.Hour)),
				MessagesIn: 7, MessagesOut: 0},
			{ClientId: "sensor-1", RemoteAddress: "192.0.2.11:50001", ProtocolVersion: 4, ConnectedAt: timestamppb.New(connected), CleanSession: true,
				Subscriptions: []string{"commands/#", "$aws/things/sensor-1/shadow/#", "alerts", "config/+", "time"}, MessagesIn: 1234, MessagesOut: 56},
		},
		cloud: &brokerv1.CloudStatus{
			State: brokerv1.CloudState_CLOUD_STATE_CONNECTED, Endpoint: "abc123-ats.iot.eu-west-1.amazonaws.com:8883",
			LastError: "connection lost: EOF", Reconnects: 3, StorageType: "FileSystem",
			QueueMessages: 12, QueueBytes: 4096, QueueMaxBytes: 2621440, Sent: 98765, Dropped: 2, InFlight: 5,
			CloudSubscriptions: []string{"commands/#", "commands/sensor-1/+"},
		},
		taps:    map[*fakeTap]bool{},
		maxTaps: 16,
	}
}

// groupEndpoint is the broker's Endpoint for a Source or Target of the
// group.
func groupEndpoint(s string) *brokerv1.Endpoint {
	switch arn.Classify(s) {
	case arn.KindCloud:
		return &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_CLOUD}
	case arn.KindShadowService:
		return &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_SHADOW}
	case arn.KindThing:
		name, _ := arn.ThingName(s)
		return &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_DEVICE, Name: name}
	case arn.KindFunction:
		return &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_FUNCTION, Name: s}
	case arn.KindConnector:
		return &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_CONNECTOR, Name: s}
	}
	return &brokerv1.Endpoint{}
}

func (f *fakeBroker) Publish(_ context.Context, r *brokerv1.PublishRequest) (*brokerv1.PublishResponse, error) {
	if err := topic.ValidateTopic(r.Topic); err != nil {
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("topic", "%v", err))
	}
	if len(r.Payload) > fakeMaxPayload {
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("payload", "%d bytes, the limit is %d (128 KB)", len(r.Payload), fakeMaxPayload))
	}
	switch r.GetSource().GetKind() {
	case brokerv1.EndpointKind_ENDPOINT_KIND_UNSPECIFIED:
		return nil, errdefs.ToGRPC(errdefs.InvalidArgument("source.kind", "unspecified"))
	case brokerv1.EndpointKind_ENDPOINT_KIND_DEVICE, brokerv1.EndpointKind_ENDPOINT_KIND_FUNCTION, brokerv1.EndpointKind_ENDPOINT_KIND_CONNECTOR:
		if r.GetSource().GetName() == "" {
			return nil, errdefs.ToGRPC(errdefs.InvalidArgument("source.name", "missing for %s", r.GetSource().GetKind()))
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r)
	if f.deploymentID == "" {
		return nil, errdefs.ToGRPC(fmt.Errorf("no group is deployed: %w", errdefs.ErrFailedPrecondition))
	}
	targets := []*brokerv1.Endpoint{}
	for _, s := range f.subscriptions {
		if !proto.Equal(groupEndpoint(s.Source), r.Source) || !topic.Match(s.Subject, r.Topic) {
			continue
		}
		t := groupEndpoint(s.Target)
		if !slices.ContainsFunc(targets, func(e *brokerv1.Endpoint) bool { return proto.Equal(e, t) }) {
			targets = append(targets, t)
		}
	}
	f.tap(&brokerv1.RoutedMessage{Topic: r.Topic, Payload: r.Payload, Source: r.Source, Targets: targets, Qos: r.Qos, Time: timestamppb.Now()})
	return &brokerv1.PublishResponse{Targets: targets}, nil
}

// tap hands m to every open Subscribe whose filter matches; f.mu is held.
func (f *fakeBroker) tap(m *brokerv1.RoutedMessage) {
	for t := range f.taps {
		if topic.Match(t.filter, m.Topic) {
			t.msgs <- m
		}
	}
}

// inject routes m to the taps as if a device or daemon had sent it.
func (f *fakeBroker) inject(m *brokerv1.RoutedMessage) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tap(m)
}

func (f *fakeBroker) openTaps() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.taps)
}

// endTaps ends every open Subscribe stream, as a broker shutting down does.
func (f *fakeBroker) endTaps() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for t := range f.taps {
		close(t.end)
		delete(f.taps, t)
	}
}

func (f *fakeBroker) lastRequest() *brokerv1.PublishRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) == 0 {
		return nil
	}
	return f.requests[len(f.requests)-1]
}

func (f *fakeBroker) Subscribe(r *brokerv1.SubscribeRequest, stream grpc.ServerStreamingServer[brokerv1.RoutedMessage]) error {
	if err := topic.ValidateFilter(r.Filter); err != nil {
		return errdefs.ToGRPC(errdefs.InvalidArgument("filter", "%v", err))
	}
	f.mu.Lock()
	if len(f.taps) >= f.maxTaps {
		f.mu.Unlock()
		return errdefs.ToGRPC(fmt.Errorf("%d taps are already open: %w", f.maxTaps, errdefs.ErrResourceExhausted))
	}
	t := &fakeTap{filter: r.Filter, msgs: make(chan *brokerv1.RoutedMessage, 64), end: make(chan struct{})}
	f.taps[t] = true
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.taps, t)
		f.mu.Unlock()
	}()
	for {
		select {
		case <-stream.Context().Done():
			return stream.Context().Err()
		case <-t.end:
			return nil
		case m := <-t.msgs:
			if err := stream.Send(m); err != nil {
				return err
			}
		}
	}
}

func (f *fakeBroker) ListClients(context.Context, *brokerv1.ListClientsRequest) (*brokerv1.ListClientsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &brokerv1.ListClientsResponse{Clients: f.clients}, nil
}

func (f *fakeBroker) ListSubscriptions(context.Context, *brokerv1.ListSubscriptionsRequest) (*brokerv1.ListSubscriptionsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.deploymentID == "" {
		return &brokerv1.ListSubscriptionsResponse{}, nil
	}
	return &brokerv1.ListSubscriptionsResponse{DeploymentId: f.deploymentID, Subscriptions: f.subscriptions}, nil
}

func (f *fakeBroker) GetCloudStatus(context.Context, *brokerv1.GetCloudStatusRequest) (*brokerv1.CloudStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cloud, nil
}

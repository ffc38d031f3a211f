package daemon

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// probe is a daemon with two RPCs: one panics, one returns a domain error.
type probe struct{ stopped bool }

func (p *probe) Start(ctx context.Context, env *Env) error {
	env.GRPC.RegisterService(&grpc.ServiceDesc{
		ServiceName: "test.Probe",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{
			{MethodName: "Panic", Handler: func(srv any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
				return in(ctx, &emptypb.Empty{}, &grpc.UnaryServerInfo{FullMethod: "/test.Probe/Panic"}, func(context.Context, any) (any, error) {
					panic("boom")
				})
			}},
			{MethodName: "Missing", Handler: func(srv any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
				return in(ctx, &emptypb.Empty{}, &grpc.UnaryServerInfo{FullMethod: "/test.Probe/Missing"}, func(context.Context, any) (any, error) {
					return nil, errdefs.NotFound("device", "x")
				})
			}},
		},
	}, p)
	return nil
}

func (p *probe) Stop(context.Context) error { p.stopped = true; return nil }

func testConfig() *config.Config {
	c := config.Default()
	c.Evergreen.Listen = config.Listen{MQTT: "127.0.0.1:0", IPC: "127.0.0.1:0", Streams: "127.0.0.1:0", Bus: "127.0.0.1:0", HTTP: "127.0.0.1:0"}
	return c
}

func shortDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "kd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func TestLifecycleSocketHealthAndErrors(t *testing.T) {
	root := layout.Root(shortDir(t))
	p := &probe{}
	r, err := Start(context.Background(), Spec{Name: "probe", New: func() Service { return p }}, Options{Root: root.Dir(), Config: testConfig(), LogStderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(root.Socket("probe"))
	if err != nil || st.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode: %v %v", st, err)
	}
	conn, err := grpc.NewClient("unix://"+root.Socket("probe"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "probe"})
	if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", h, err)
	}
	err = conn.Invoke(ctx, "/test.Probe/Panic", &emptypb.Empty{}, &emptypb.Empty{})
	if status.Code(err) != codes.Internal {
		t.Fatalf("a panicking handler must answer Internal and keep the daemon up: %v", err)
	}
	err = conn.Invoke(ctx, "/test.Probe/Missing", &emptypb.Empty{}, &emptypb.Empty{})
	if status.Code(err) != codes.NotFound || status.Convert(err).Message() != `device "x"` {
		t.Fatalf("domain error mapping: %v", err)
	}
	if !errors.Is(errdefs.FromGRPC(err), errdefs.ErrNotFound) {
		t.Fatal("client side lost the sentinel")
	}
	if _, err := os.Stat(root.LogFile("probe")); err != nil {
		t.Fatalf("log file: %v", err)
	}
	// A second instance on the same root is refused: the socket is live.
	if _, err := Start(ctx, Spec{Name: "probe", New: func() Service { return &probe{} }}, Options{Root: root.Dir(), Config: testConfig(), LogStderr: io.Discard}); err == nil {
		t.Fatal("second instance started on a live socket")
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := r.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if !p.stopped {
		t.Fatal("service Stop not called")
	}
	if _, err := os.Stat(root.Socket("probe")); !os.IsNotExist(err) {
		t.Fatal("socket left behind")
	}
}

func TestStartFailureCleansUp(t *testing.T) {
	root := layout.Root(shortDir(t))
	_, err := Start(context.Background(), Spec{Name: "bad", New: func() Service { return failing{} }}, Options{Root: root.Dir(), Config: testConfig(), LogStderr: io.Discard})
	if err == nil || err.Error() != "bad: cannot start" {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(root.Socket("bad")); !os.IsNotExist(err) {
		t.Fatal("socket left behind after a failed start")
	}
}

type failing struct{}

func (failing) Start(context.Context, *Env) error { return errors.New("cannot start") }
func (failing) Stop(context.Context) error        { return nil }

// The optional TCP listener demands a client certificate signed by the
// group CA.
func TestMutualTLSListener(t *testing.T) {
	root := layout.Root(shortDir(t))
	root.Create()
	ca, caKey := newCert(t, nil, nil, "group-ca", true)
	writePEM(t, root.GroupCACert(), "CERTIFICATE", ca.Raw)
	core, coreKey := newCert(t, ca, caKey, "core", false)
	writePEM(t, root.CoreCert(), "CERTIFICATE", core.Raw)
	kb, _ := x509.MarshalECPrivateKey(coreKey)
	writePEM(t, root.CoreKey(), "EC PRIVATE KEY", kb)

	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	r, err := Start(context.Background(), Spec{Name: "probe", New: func() Service { return &probe{} }}, Options{Root: root.Dir(), Config: testConfig(), LogStderr: io.Discard, GRPCListen: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown(context.Background())

	caPEM, _ := os.ReadFile(root.GroupCACert())
	client, clientKey := newCert(t, ca, caKey, "ggctl", false)
	good, err := TLSCredentials(tls.Certificate{Certificate: [][]byte{client.Raw}, PrivateKey: clientKey}, caPEM, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	conn, _ := grpc.NewClient(addr, grpc.WithTransportCredentials(good))
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("client with a group-CA certificate refused: %v", err)
	}
	// No client certificate: the handshake fails.
	noCert, _ := TLSCredentials(tls.Certificate{}, caPEM, "localhost")
	bad, _ := grpc.NewClient(addr, grpc.WithTransportCredentials(noCert))
	defer bad.Close()
	if _, err := healthpb.NewHealthClient(bad).Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
		t.Fatal("client without a certificate was served")
	}
}

func newCert(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, cn string, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IsCA: isCA, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

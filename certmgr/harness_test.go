package certmgr

import (
	"context"
	"crypto/x509"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/nats-io/nats.go"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/evergreen-edge/evergreen/certmgr/pki"
	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// suite is one certmgr root with a bus, started and stopped like the
// supervisor does it.
type suite struct {
	t      *testing.T
	root   layout.Root
	busURL string
	// cfg, when set, replaces DIR/config/config.json.
	cfg  *config.Config
	opts Options
	run  *daemon.Running
	svc  *Service
}

func newSuite(t *testing.T) *suite {
	t.Helper()
	s := &suite{t: t, root: layout.Root(t.TempDir()), busURL: bustest.Start(t)}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			if b, err := os.ReadFile(s.root.LogFile(Name)); err == nil {
				t.Logf("certmgr log:\n%s", b)
			}
		}
	})
	return s
}

// start runs certmgr in process; the test bus has no auth, so any
// credentials pass.
func (s *suite) start() {
	s.t.Helper()
	if err := s.tryStart(); err != nil {
		s.t.Fatalf("start certmgr: %v", err)
	}
}

func (s *suite) tryStart() error {
	bustest.WriteCreds(s.t, s.root, Name)
	spec := SpecWithOptions(s.opts)
	spec.New = func() daemon.Service {
		s.svc = New(s.opts)
		return s.svc
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run, err := daemon.Start(ctx, spec, daemon.Options{Root: s.root.Dir(), BusURL: s.busURL, Config: s.cfg, LogStderr: io.Discard})
	if err != nil {
		return err
	}
	s.run = run
	return nil
}

func (s *suite) stop() {
	if s.run == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.run.Shutdown(ctx); err != nil {
		s.t.Errorf("shutdown: %v", err)
	}
	s.run = nil
}

// dial connects to certmgr's real gRPC socket.
func (s *suite) dial() certmgrv1.CertManagerClient {
	s.t.Helper()
	cc, err := grpc.NewClient("unix://"+s.root.Socket(Name), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { cc.Close() })
	return certmgrv1.NewCertManagerClient(cc)
}

// subscribe collects the bus messages on subject.
func (s *suite) subscribe(subject string) chan *nats.Msg {
	s.t.Helper()
	nc, err := nats.Connect(s.busURL)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(nc.Close)
	ch := make(chan *nats.Msg, 64)
	if _, err := nc.ChanSubscribe(subject, ch); err != nil {
		s.t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		s.t.Fatal(err)
	}
	return ch
}

// receive waits for the next message on ch and decodes it into m.
func receive(t *testing.T, ch chan *nats.Msg, m proto.Message, within time.Duration) {
	t.Helper()
	select {
	case msg := <-ch:
		if err := proto.Unmarshal(msg.Data, m); err != nil {
			t.Fatalf("decode %s: %v", msg.Subject, err)
		}
	case <-time.After(within):
		t.Fatalf("no %T on the bus within %v", m, within)
	}
}

// readChain reads a PEM chain file.
func readChain(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCerts(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return certs
}

// foreignCA is a CA certmgr knows nothing of, standing in for a device
// maker's or AWS IoT's CA.
func foreignCA(t *testing.T) *pki.KeyPair {
	t.Helper()
	key, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.Issue(pki.Template{CommonName: "Foreign CA", CA: true, Validity: 24 * time.Hour}, key, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &pki.KeyPair{Cert: c, Key: key}
}

// foreignCert issues a client certificate from ca, valid from now+from for
// validity.
func foreignCert(t *testing.T, ca *pki.KeyPair, cn string, from, validity time.Duration) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.Issue(pki.Template{CommonName: cn, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, Validity: validity},
		key, ca, time.Now().Add(from))
	if err != nil {
		t.Fatal(err)
	}
	kp, err := pki.EncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pki.EncodeCert(c), kp
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func fileURI(path string) string { return "file://" + filepath.ToSlash(path) }

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// result carries a call's value and error to get, which fails the test on
// an error: must(c.ListDevices(ctx, req)).get(t).
type result[T any] struct {
	v   T
	err error
}

func must[T any](v T, err error) result[T] { return result[T]{v, err} }

func (r result[T]) get(t *testing.T) T {
	t.Helper()
	if r.err != nil {
		t.Fatalf("unexpected error: %v", r.err)
	}
	return r.v
}

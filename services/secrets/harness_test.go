package secrets_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	deployv1 "github.com/evergreen-edge/evergreen/proto/evergreen/deploy/v1"
	secretsv1 "github.com/evergreen-edge/evergreen/proto/evergreen/secrets/v1"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/evergreen-edge/evergreen/services/kit/subjects"
	"github.com/evergreen-edge/evergreen/services/secrets"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const (
	acct      = "123456789012"
	coreArn   = "arn:aws:iot:us-east-1:" + acct + ":thing/core-1"
	dbARN     = "arn:aws:secretsmanager:us-east-1:" + acct + ":secret:db-AbCdEf"
	certARN   = "arn:aws:secretsmanager:us-east-1:" + acct + ":secret:cert-XyZ123"
	readerFn  = "arn:aws:lambda:us-east-1:" + acct + ":function:reader:1"
	otherFn   = "arn:aws:lambda:us-east-1:" + acct + ":function:other:1"
	twilioArn = "arn:aws:greengrass:us-east-1::/connectors/TwilioNotifications/versions/4"
)

// harness is the secrets daemon in process on a real NATS server, with a
// real key on disk, reached over its unix socket like ggctl and the
// runtime reach it.
type harness struct {
	t      *testing.T
	root   layout.Root
	cfg    *config.Config
	busURL string
	run    *daemon.Running
	c      secretsv1.SecretsClient
	opts   secrets.Options
}

type keyKind int

const (
	coreEC        keyKind = iota // certmgr's DIR/certs/core.key.pem, ECDSA P-256
	secretsMgrRSA                // crypto.principals.SecretsManager, RSA 2048
	noKey                        // no key file yet
)

func newHarness(t *testing.T, kind keyKind) *harness {
	t.Helper()
	h := &harness{t: t, root: layout.Root(t.TempDir()), busURL: bustest.Start(t)}
	if err := h.root.Create(); err != nil {
		t.Fatal(err)
	}
	bustest.WriteCreds(t, h.root, secrets.Name)
	h.cfg = config.Default()
	h.cfg.CoreThing.ThingArn = coreArn
	h.cfg.Evergreen.Logging.Level = "debug"
	switch kind {
	case coreEC:
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		writeKey(t, h.root.CoreKey(), k)
	case secretsMgrRSA:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "secrets-manager.key")
		writeKey(t, p, k)
		h.cfg.Crypto = &config.Crypto{Principals: config.Principals{SecretsManager: &config.KeyOnly{PrivateKeyPath: "file://" + p}}}
	}
	h.start()
	return h
}

func writeKey(t *testing.T, path string, k crypto.Signer) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) start() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run, err := daemon.Start(ctx, secrets.SpecWithOptions(h.opts), daemon.Options{Root: h.root.Dir(), BusURL: h.busURL, Config: h.cfg, LogStderr: io.Discard})
	if err != nil {
		h.t.Fatal(err)
	}
	h.run = run
	cc, err := grpc.NewClient("unix://"+h.root.Socket(secrets.Name), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		h.t.Fatal(err)
	}
	h.c = secretsv1.NewSecretsClient(cc)
	h.t.Cleanup(func() {
		cc.Close()
		h.stop()
	})
}

func (h *harness) stop() {
	if h.run != nil {
		h.run.Shutdown(context.Background())
		h.run = nil
	}
}

func (h *harness) restart() {
	h.t.Helper()
	h.stop()
	h.start()
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func (h *harness) put(name, value string, labels ...string) *secretsv1.PutSecretResponse {
	h.t.Helper()
	r, err := h.c.PutSecret(ctx(h.t), &secretsv1.PutSecretRequest{Name: name, Source: &secretsv1.PutSecretRequest_Value{Value: []byte(value)}, Labels: labels})
	if err != nil {
		h.t.Fatalf("put %s: %v", name, err)
	}
	return r
}

// apply sends an ApplyGroup over the real bus, as the deployagent does,
// and returns the daemon's answer.
func (h *harness) apply(group string, rollback bool) *deployv1.ApplyResult {
	h.t.Helper()
	nc, err := nats.Connect(h.busURL)
	if err != nil {
		h.t.Fatal(err)
	}
	defer nc.Close()
	req, _ := proto.Marshal(&deployv1.ApplyGroup{DeploymentId: "d-1", GroupJson: []byte(group), Rollback: rollback})
	msg, err := nc.Request(subjects.DeployApply(secrets.Name), req, 5*time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	res := &deployv1.ApplyResult{}
	if err := proto.Unmarshal(msg.Data, res); err != nil {
		h.t.Fatal(err)
	}
	return res
}

// deploy applies group and fails the test unless it is accepted; it also
// commits it as current.json, as the deployagent would.
func (h *harness) deploy(group string) {
	h.t.Helper()
	if res := h.apply(group, false); !res.GetOk() {
		h.t.Fatalf("deployment refused: %s", res.GetReason())
	}
	if err := deployment.Commit(h.root, &deployment.Record{DeploymentID: "d-1", DeployedAt: time.Now().UTC(), Group: []byte(group)}); err != nil {
		h.t.Fatal(err)
	}
}

// get calls GetSecretValue as the runtime would, with the function's body.
func (h *harness) get(caller, body string) (int32, map[string]any) {
	h.t.Helper()
	r, err := h.c.GetSecretValue(ctx(h.t), &secretsv1.GetSecretValueRequest{FunctionArn: caller, Request: []byte(body)})
	if err != nil {
		h.t.Fatalf("GetSecretValue(%s, %s): %v", caller, body, err)
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(r.GetPayload()))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		h.t.Fatalf("payload %q: %v", r.GetPayload(), err)
	}
	if st, ok := m["Status"]; ok && st != json.Number(strconv.Itoa(int(r.GetStatus()))) {
		h.t.Fatalf("status %d but payload %s", r.GetStatus(), r.GetPayload())
	}
	return r.GetStatus(), m
}

// wantRefusal checks a refusal's status and message.
func (h *harness) wantRefusal(caller, body string, status int32, message string) {
	h.t.Helper()
	st, m := h.get(caller, body)
	if st != status || m["Message"] != message || len(m) != 2 {
		h.t.Fatalf("GetSecretValue(%s, %s) = %d %v; want %d %q", caller, body, st, m, status, message)
	}
}

// wantCode checks a gRPC error's code and that its message starts with
// prefix (the field at fault).
func wantCode(t *testing.T, err error, code codes.Code, prefix string) {
	t.Helper()
	if status.Code(err) != code || !strings.HasPrefix(status.Convert(err).Message(), prefix) {
		t.Fatalf("error %v; want %s starting %q", err, code, prefix)
	}
}

// group builds a group: the secret resources db (dbARN) and cert (certARN,
// with the label beta deployed), reader granted both, other granted
// nothing, and the Twilio connector granted db through its parameters.
func group() string {
	return `{
  "Core": {"Cores": [{"Id": "c", "ThingArn": "` + coreArn + `", "CertificateArn": "arn:aws:iot:us-east-1:` + acct + `:cert/` + strings.Repeat("a", 64) + `"}]},
  "Functions": {"Functions": [
    {"Id": "reader", "FunctionArn": "` + readerFn + `",
     "FunctionConfiguration": {"Environment": {"ResourceAccessPolicies": [{"ResourceId": "db-res", "Permission": "ro"}, {"ResourceId": "cert-res", "Permission": "ro"}]}},
     "Evergreen": {"Runtime": "python3.8", "Handler": "main.handler", "CodeUri": "functions/reader"}},
    {"Id": "other", "FunctionArn": "` + otherFn + `",
     "Evergreen": {"Runtime": "python3.8", "Handler": "main.handler", "CodeUri": "functions/other"}}
  ]},
  "Connectors": {"Connectors": [
    {"Id": "twilio", "ConnectorArn": "` + twilioArn + `",
     "Parameters": {"TwilioAccountSid": "AC1", "TwilioAuthTokenSecretArn": "` + dbARN + `", "TwilioAuthTokenSecretArn-ResourceId": "db-res"}}
  ]},
  "Resources": {"Resources": [
    {"Id": "db-res", "Name": "db", "ResourceDataContainer": {"SecretsManagerSecretResourceData": {"ARN": "` + dbARN + `"}}},
    {"Id": "cert-res", "Name": "cert", "ResourceDataContainer": {"SecretsManagerSecretResourceData": {"ARN": "` + certARN + `", "AdditionalStagingLabelsToDownload": ["beta"]}}}
  ]}
}`
}

// noPlaintext fails when any file under dir holds any of values.
func noPlaintext(t *testing.T, dir string, values ...string) {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		for _, v := range values {
			if bytes.Contains(b, []byte(v)) {
				t.Errorf("%s holds the plaintext %q", p, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatal("no files looked at")
	}
}

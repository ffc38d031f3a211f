package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	secretsv1 "github.com/evergreen-edge/evergreen/proto/evergreen/secrets/v1"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/daemon"
	"github.com/evergreen-edge/evergreen/services/kit/deployment"
	"github.com/evergreen-edge/evergreen/services/kit/layout"
	"github.com/evergreen-edge/evergreen/services/secrets"
	"github.com/evergreen-edge/evergreen/services/secrets/envelope"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const secretTestARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"

// secretsDaemon runs the real secrets daemon on the suite's root with a
// real EC core key and a group deploying secret db to function reader.
func (s *suite) secretsDaemon() {
	s.t.Helper()
	root := layout.Root(s.root)
	if err := root.Create(); err != nil {
		s.t.Fatal(err)
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	if err := os.WriteFile(root.CoreKey(), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		s.t.Fatal(err)
	}
	bus := bustest.Start(s.t)
	bustest.WriteCreds(s.t, root, secrets.Name)
	g := `{"Core":{"Cores":[{"Id":"c","ThingArn":"arn:aws:iot:us-east-1:123456789012:thing/core-1","CertificateArn":"arn:aws:iot:us-east-1:123456789012:cert/` + strings.Repeat("a", 64) + `"}]},` +
		`"Functions":{"Functions":[{"Id":"reader","FunctionArn":"arn:aws:lambda:us-east-1:123456789012:function:reader:1",` +
		`"FunctionConfiguration":{"Environment":{"ResourceAccessPolicies":[{"ResourceId":"db-res","Permission":"ro"}]}},` +
		`"Evergreen":{"Runtime":"python3.8","Handler":"main.handler","CodeUri":"functions/reader"}}]},` +
		`"Resources":{"Resources":[{"Id":"db-res","Name":"db","ResourceDataContainer":{"SecretsManagerSecretResourceData":{"ARN":"` + secretTestARN + `"}}}]}}`
	if err := deployment.Commit(root, &deployment.Record{DeploymentID: "d-1", DeployedAt: time.Now().UTC(), Group: []byte(g)}); err != nil {
		s.t.Fatal(err)
	}
	cfg := config.Default()
	cfg.CoreThing.ThingArn = "arn:aws:iot:us-east-1:123456789012:thing/core-1"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run, err := daemon.Start(ctx, secrets.Spec(), daemon.Options{Root: s.root, BusURL: bus, Config: cfg, LogStderr: io.Discard})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { run.Shutdown(context.Background()) })
}

// secretValue reads a secret as function reader would, through the API
// the runtime uses.
func (s *suite) secretValue(t *testing.T, secretID string) (int32, map[string]any) {
	t.Helper()
	cc, err := grpc.NewClient("unix://"+s.socket("secrets"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := secretsv1.NewSecretsClient(cc).GetSecretValue(ctx, &secretsv1.GetSecretValueRequest{
		FunctionArn: "arn:aws:lambda:us-east-1:123456789012:function:reader:1", SecretId: secretID})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(r.GetPayload(), &m); err != nil {
		t.Fatal(err)
	}
	return r.GetStatus(), m
}

func TestSecretCommands(t *testing.T) {
	s := newSuite(t)
	s.secretsDaemon()

	// Nothing stored yet: the deployed secret is listed as not stored.
	r := s.ggctl("secret", "list")
	wantExit(t, r, ExitOK)
	for _, re := range []string{
		`(?m)^NAME +LABELS +VERSIONS +BYTES +UPDATED +DEPLOYED +READERS$`,
		`(?m)^db +- +0 +0 +- +yes, NOT STORED +arn:aws:lambda:us-east-1:123456789012:function:reader:1$`,
		`(?m)^0 of 64 secrets, 0 of 4194304 bytes; sealing key sha256:[0-9a-f]{64} \(EC-P256, certmgr's core key: /.*/certs/core.key.pem\)$`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Fatalf("list lacks %s:\n%s", re, r.stdout)
		}
	}

	// From a file, by ARN, with a label.
	file := filepath.Join(t.TempDir(), "db.txt")
	os.WriteFile(file, []byte("pl41n-from-file"), 0o600)
	r = s.ggctl("secret", "put", secretTestARN, "--file", file, "--label", "beta")
	wantExit(t, r, ExitOK)
	if !regexp.MustCompile(`^stored secret db version [0-9a-f-]{36} \(string, 15 bytes, labels AWSCURRENT,beta\)\n$`).MatchString(r.stdout) {
		t.Fatalf("put printed %q", r.stdout)
	}
	if st, m := s.secretValue(t, "db"); st != 200 || m["SecretString"] != "pl41n-from-file" {
		t.Fatalf("read back: %d %v", st, m)
	}
	// From standard input (no --file, then --file -), binary, --json.
	r = s.ggctlStdin("pl41n-from-stdin", "secret", "put", "db")
	wantExit(t, r, ExitOK)
	r = s.ggctlStdin("\x00\x01binary", "secret", "put", "blob", "--file", "-", "--binary", "--json")
	wantExit(t, r, ExitOK)
	var put struct {
		Secret struct {
			Name     string `json:"name"`
			Versions []struct {
				Size   int  `json:"size"`
				Binary bool `json:"binary"`
			} `json:"versions"`
		} `json:"secret"`
		VersionID string `json:"versionId"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &put); err != nil || put.Secret.Name != "blob" || put.VersionID == "" ||
		len(put.Secret.Versions) != 1 || put.Secret.Versions[0].Size != 8 || !put.Secret.Versions[0].Binary {
		t.Fatalf("put --json printed %s (%v)", r.stdout, err)
	}

	r = s.ggctl("secret", "list")
	wantExit(t, r, ExitOK)
	for _, re := range []string{
		`(?m)^blob +AWSCURRENT +1 +8 +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +no +-$`,
		`(?m)^db +AWSCURRENT,AWSPREVIOUS,beta +2 +31 +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +yes +arn:aws:lambda:us-east-1:123456789012:function:reader:1$`,
		`(?m)^2 of 64 secrets, 39 of 4194304 bytes; `,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Fatalf("list lacks %s:\n%s", re, r.stdout)
		}
	}
	r = s.ggctl("secret", "list", "--json")
	wantExit(t, r, ExitOK)
	if strings.Contains(r.stdout, "pl41n") || strings.Contains(r.stdout, "YmluYXJ5") || !strings.Contains(r.stdout, `"sealingPublicKeyPem": "-----BEGIN PUBLIC KEY-----`) {
		t.Fatalf("list --json: %s", r.stdout)
	}
	var list struct {
		SealingPublicKeyPem string `json:"sealingPublicKeyPem"`
	}
	json.Unmarshal([]byte(r.stdout), &list)

	// A value sealed to the core's key, from a file.
	blk, _ := pem.Decode([]byte(list.SealingPublicKeyPem))
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	env, _ := envelope.Seal(pub, []byte("pl41n-sealed"))
	sealedFile := filepath.Join(t.TempDir(), "db.sealed")
	os.WriteFile(sealedFile, env, 0o600)
	r = s.ggctl("secret", "put", "db", "--sealed", "--file", sealedFile)
	wantExit(t, r, ExitOK)
	if st, m := s.secretValue(t, secretTestARN); st != 200 || m["SecretString"] != "pl41n-sealed" {
		t.Fatalf("sealed value read back: %d %v", st, m)
	}

	// Errors: one line, precise, with the exit codes of the contract.
	big := filepath.Join(t.TempDir(), "big")
	os.WriteFile(big, make([]byte, 64<<10+1), 0o600)
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, nil, 0o600)
	for _, tc := range []struct {
		stdin string
		args  []string
		code  int
		msg   string
	}{
		{"", []string{"secret", "put", "db", "--file", "/nonexistent/f"}, ExitUsage, "secret put: --file: open /nonexistent/f: no such file or directory"},
		{"", []string{"secret", "put", "db", "--file", big}, ExitUsage, "holds more than 65536 bytes"},
		{"", []string{"secret", "put", "db", "--file", empty}, ExitUsage, "secret put: " + empty + " is empty"},
		{"", []string{"secret", "put", "db"}, ExitUsage, "secret put: standard input is empty"},
		{"x", []string{"secret", "put", "bad name"}, ExitUsage, `name: secret name "bad name": only letters, digits and /_+=.@- are allowed`},
		{"x", []string{"secret", "put", "db", "--label", "AWSPREVIOUS"}, ExitUsage, "labels: AWSPREVIOUS is managed by the store"},
		{"\xff\xfe", []string{"secret", "put", "db"}, ExitUsage, "value: is not UTF-8 text; store it as binary"},
		{"not sealed", []string{"secret", "put", "db", "--sealed"}, ExitUsage, "sealed_value: not an envelope"},
		{"", []string{"secret", "put"}, ExitUsage, "missing argument: usage: ggctl secret put NAME"},
		{"", []string{"secret", "rm", "nope"}, ExitNotFound, `secret "nope": not found`},
		{"", []string{"secret", "rm", "db"}, ExitFailed, `name: secret "db" is used by the deployed group (resource "db-res"); deploy a group without it first, or delete it with force (ggctl secret rm --force): failed precondition`},
		{"", []string{"secret", "list", "extra"}, ExitUsage, `unexpected argument "extra"`},
	} {
		r := s.ggctlStdin(tc.stdin, tc.args...)
		wantExit(t, r, tc.code)
		wantOneErrorLine(t, r, tc.msg)
	}

	r = s.ggctl("secret", "rm", "blob")
	wantExit(t, r, ExitOK)
	if r.stdout != "deleted secret blob (1 versions)\n" {
		t.Fatalf("rm printed %q", r.stdout)
	}
	r = s.ggctl("secret", "rm", "db", "--force", "--json")
	wantExit(t, r, ExitOK)
	if !strings.Contains(r.stdout, `"versions": 3`) {
		t.Fatalf("rm --json printed %s", r.stdout)
	}
	if st, m := s.secretValue(t, "db"); st != 404 || m["Message"] != "Secrets Manager can't find the specified secret." {
		t.Fatalf("after rm: %d %v", st, m)
	}
	r = s.ggctl("help", "secret", "put")
	wantExit(t, r, ExitOK)
	if !strings.Contains(r.stdout, "--sealed") || !strings.Contains(r.stdout, "--label L") {
		t.Fatalf("help: %s", r.stdout)
	}
}

func TestSecretUnreachable(t *testing.T) {
	s := newSuite(t)
	r := s.ggctl("secret", "list")
	wantExit(t, r, ExitUnreachable)
	wantOneErrorLine(t, r, "cannot reach secrets: no socket at "+s.socket("secrets"))
}

package secrets_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	secretsv1 "github.com/evergreen-edge/evergreen/proto/evergreen/secrets/v1"
	"github.com/evergreen-edge/evergreen/services/kit/bustest"
	"github.com/evergreen-edge/evergreen/services/secrets/envelope"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
)

const dbValue = `{"username":"admin","password":"pl41n-db-p4ssw0rd"}`

func TestGetSecretValueAnswersGrantedCallers(t *testing.T) {
	h := newHarness(t, coreEC)
	before := time.Now().UnixMilli()
	dbVer := h.put("db", dbValue).GetVersionId()
	certBytes := []byte{0x30, 0x82, 0x00, 0xff, 'c', 'e', 'r', 't', '-', 'b', 'l', 'o', 'b'}
	r, err := h.c.PutSecret(ctx(t), &secretsv1.PutSecretRequest{Name: certARN, Source: &secretsv1.PutSecretRequest_Value{Value: certBytes}, Binary: true, Labels: []string{"beta"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetSecret().GetName() != "cert" || r.GetSecret().GetArn() != certARN {
		t.Fatalf("put by ARN stored %v", r.GetSecret())
	}
	h.put("cert", "not-this-one")
	h.deploy(group())

	// The v1 SDK sends SecretId as the user wrote it: the name, the full
	// ARN, or the ARN without the random suffix.
	for _, id := range []string{"db", dbARN, strings.TrimSuffix(dbARN, "-AbCdEf"), "db-AbCdEf"} {
		st, m := h.get(readerFn, `{"SecretId":"`+id+`"}`)
		if st != 200 {
			t.Fatalf("SecretId %s: %d %v", id, st, m)
		}
		keys := []string{}
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, []string{"ARN", "CreatedDate", "Name", "SecretString", "VersionId", "VersionStages"}) {
			t.Fatalf("keys %v", keys)
		}
		created, err := m["CreatedDate"].(json.Number).Int64()
		if err != nil || created < before || created > time.Now().UnixMilli() {
			t.Fatalf("CreatedDate %v (epoch ms between %d and now)", m["CreatedDate"], before)
		}
		if m["ARN"] != dbARN || m["Name"] != "db" || m["VersionId"] != dbVer || m["SecretString"] != dbValue ||
			!slices.Equal(m["VersionStages"].([]any), []any{"AWSCURRENT"}) {
			t.Fatalf("answer %v", m)
		}
	}
	// The request's fields instead of the body: the same answer.
	resp, err := h.c.GetSecretValue(ctx(t), &secretsv1.GetSecretValueRequest{FunctionArn: readerFn, SecretId: "db", VersionStage: "AWSCURRENT"})
	if err != nil || resp.GetStatus() != 200 || !bytes.Contains(resp.GetPayload(), []byte(`"SecretString":"{\"username\":\"admin\"`)) {
		t.Fatalf("fields form: %v %s", err, resp.GetPayload())
	}

	// Binary values come as SecretBinary (base64); additional labels are
	// deployed; AWSCURRENT of cert is the string put last.
	st, m := h.get(readerFn, `{"SecretId":"`+certARN+`","VersionStage":"beta"}`)
	if st != 200 || m["SecretBinary"] != base64.StdEncoding.EncodeToString(certBytes) || m["SecretString"] != nil ||
		!slices.Equal(m["VersionStages"].([]any), []any{"beta"}) {
		t.Fatalf("beta: %d %v", st, m)
	}
	if st, m := h.get(readerFn, `{"SecretId":"cert"}`); st != 200 || m["SecretString"] != "not-this-one" {
		t.Fatalf("cert current: %d %v", st, m)
	}
	// The connector reads what its parameters name.
	if st, m := h.get(twilioArn, `{"SecretId":"`+dbARN+`"}`); st != 200 || m["SecretString"] != dbValue {
		t.Fatalf("connector: %d %v", st, m)
	}
}

func TestGetSecretValueRefusals(t *testing.T) {
	h := newHarness(t, coreEC)
	h.put("db", dbValue)
	h.put("cert", "c1", "beta")
	h.put("cert", "c2", "beta") // beta now on c2, c1 is AWSPREVIOUS
	h.put("loose", "stored but not in the group")

	// No group deployed: nothing is found.
	h.wantRefusal(readerFn, `{"SecretId":"db"}`, 404, "Secrets Manager can't find the specified secret.")
	h.deploy(group())

	for _, c := range []struct {
		caller, body string
		status       int32
		message      string
	}{
		{otherFn, `{"SecretId":"db"}`, 403, `Access denied: ` + otherFn + ` has no resource access policy for the secret resource "db-res"`},
		{"arn:aws:lambda:us-east-1:" + acct + ":function:stranger:1", `{"SecretId":"db"}`, 403, "Access denied: arn:aws:lambda:us-east-1:" + acct + ":function:stranger:1 is not a function or connector of the deployed group"},
		{twilioArn, `{"SecretId":"cert"}`, 403, `Access denied: ` + twilioArn + ` has no resource access policy for the secret resource "cert-res"`},
		{readerFn, `{"SecretId":"nope"}`, 404, "Secrets Manager can't find the specified secret."},
		{readerFn, `{"SecretId":"loose"}`, 404, "Secrets Manager can't find the specified secret."},
		{readerFn, `{"SecretId":"arn:aws:secretsmanager:us-east-1:` + acct + `:secret:db-ZZZZZZ"}`, 404, "Secrets Manager can't find the specified secret."},
		// Stored, but AWSPREVIOUS is not among the labels the group deploys.
		{readerFn, `{"SecretId":"cert","VersionStage":"AWSPREVIOUS"}`, 404, "Secrets Manager can't find the specified secret value for staging label: AWSPREVIOUS"},
		{readerFn, `{"SecretId":"db","VersionStage":"beta"}`, 404, "Secrets Manager can't find the specified secret value for staging label: beta"},
		{readerFn, `{"SecretId":"db","VersionId":"` + "0d4a1b52-0000-4000-8000-000000000000" + `"}`, 400, "Query by VersionId is not yet supported"},
		{readerFn, `{"VersionStage":"AWSCURRENT"}`, 400, "Invalid request: SecretId is required"},
		{readerFn, `{"SecretId":42}`, 400, "Invalid request: the body is not a JSON object with a string SecretId"},
		{readerFn, `not json`, 400, "Invalid request: the body is not a JSON object with a string SecretId"},
	} {
		h.wantRefusal(c.caller, c.body, c.status, c.message)
	}

	// The runtime's own mistakes are gRPC errors naming the field.
	_, err := h.c.GetSecretValue(ctx(t), &secretsv1.GetSecretValueRequest{Request: []byte(`{"SecretId":"db"}`)})
	wantCode(t, err, codes.InvalidArgument, "function_arn: is required")
	_, err = h.c.GetSecretValue(ctx(t), &secretsv1.GetSecretValueRequest{FunctionArn: readerFn, Request: []byte(`{"SecretId":"db"}`), SecretId: "db"})
	wantCode(t, err, codes.InvalidArgument, "request: give either")

	// A secret deleted (forced) while deployed: 404 until put again.
	if _, err := h.c.DeleteSecret(ctx(t), &secretsv1.DeleteSecretRequest{Name: "db", Force: true}); err != nil {
		t.Fatal(err)
	}
	h.wantRefusal(readerFn, `{"SecretId":"db"}`, 404, "Secrets Manager can't find the specified secret.")
	h.put("db", "back")
	if st, m := h.get(readerFn, `{"SecretId":"db"}`); st != 200 || m["SecretString"] != "back" {
		t.Fatalf("after put again: %d %v", st, m)
	}
}

func TestDeploymentNeedsItsSecretsStored(t *testing.T) {
	h := newHarness(t, coreEC)
	res := h.apply(group(), false)
	if res.GetOk() || !strings.Contains(res.GetReason(), `Resources[0] (Id "db-res"): secret `+dbARN+` is not in the local store`) ||
		!strings.Contains(res.GetReason(), `Resources[1] (Id "cert-res")`) {
		t.Fatalf("group without stored secrets: %v", res)
	}
	h.put("db", dbValue)
	h.put("cert", "no beta yet")
	res = h.apply(group(), false)
	if res.GetOk() || !strings.Contains(res.GetReason(), `Resources[1] (Id "cert-res"): secret "cert" has no version labelled beta`) || strings.Contains(res.GetReason(), "db-res") {
		t.Fatalf("group with a label missing: %v", res)
	}
	// A rollback is always accepted (the deployagent restores the group
	// that was in force).
	if res := h.apply(group(), true); !res.GetOk() {
		t.Fatalf("rollback refused: %v", res)
	}
	h.put("cert", "with beta", "beta")
	h.deploy(group())

	// The deployed secrets cannot be deleted without force.
	_, err := h.c.DeleteSecret(ctx(t), &secretsv1.DeleteSecretRequest{Name: dbARN})
	wantCode(t, err, codes.FailedPrecondition, `name: secret "db" is used by the deployed group (resource "db-res")`)
	_, err = h.c.DeleteSecret(ctx(t), &secretsv1.DeleteSecretRequest{Name: "missing"})
	wantCode(t, err, codes.NotFound, `secret "missing"`)

	list, err := h.c.ListSecrets(ctx(t), &secretsv1.ListSecretsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	db := list.GetSecrets()[1]
	if db.GetName() != "db" || !db.GetDeployed() || !db.GetStored() || db.GetArn() != dbARN ||
		!slices.Equal(db.GetReaders(), []string{twilioArn, readerFn}) || !slices.Equal(db.GetResourceIds(), []string{"db-res"}) {
		t.Fatalf("db listed as %v", db)
	}
	if _, err := h.c.DeleteSecret(ctx(t), &secretsv1.DeleteSecretRequest{Name: "db", Force: true}); err != nil {
		t.Fatal(err)
	}
	// A secret the group names and the store lacks is listed, not stored.
	list, _ = h.c.ListSecrets(ctx(t), &secretsv1.ListSecretsRequest{})
	db = list.GetSecrets()[1]
	if db.GetName() != "db" || db.GetStored() || !db.GetDeployed() || !slices.Equal(db.GetMissingLabels(), []string{"AWSCURRENT"}) {
		t.Fatalf("deleted deployed secret listed as %v", db)
	}
}

func TestNoPlaintextOnDiskOrInLogs(t *testing.T) {
	h := newHarness(t, coreEC)
	values := []string{"pl41n-db-p4ssw0rd", "b3ta-v4lue-xyz", "bin\x00ary-s3cret", "sealed-pl41ntext"}
	// Everything on the bus while the secrets are put, deployed and read.
	watcher, err := nats.Connect(h.busURL)
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	var busMu sync.Mutex
	var onBus [][]byte
	if _, err := watcher.Subscribe(">", func(m *nats.Msg) {
		busMu.Lock()
		onBus = append(onBus, append([]byte(m.Subject+" "), m.Data...))
		busMu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	watcher.Flush()
	h.put("db", `{"password":"`+values[0]+`"}`)
	h.put("cert", values[1], "beta")
	if _, err := h.c.PutSecret(ctx(t), &secretsv1.PutSecretRequest{Name: "blob", Source: &secretsv1.PutSecretRequest_Value{Value: []byte(values[2])}, Binary: true}); err != nil {
		t.Fatal(err)
	}
	list, err := h.c.ListSecrets(ctx(t), &secretsv1.ListSecretsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode([]byte(list.GetSealingPublicKeyPem()))
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	env, err := envelope.Seal(pub, []byte(values[3]))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.c.PutSecret(ctx(t), &secretsv1.PutSecretRequest{Name: "sealed", Source: &secretsv1.PutSecretRequest_SealedValue{SealedValue: env}}); err != nil {
		t.Fatal(err)
	}
	h.deploy(group())
	for _, body := range []string{`{"SecretId":"db"}`, `{"SecretId":"cert","VersionStage":"beta"}`, `{"SecretId":"nope"}`} {
		h.get(readerFn, body)
	}
	h.get(otherFn, `{"SecretId":"db"}`)
	for _, s := range list.GetSecrets() {
		for _, v := range values {
			if strings.Contains(s.String(), v) {
				t.Fatalf("ListSecrets shows a value: %v", s)
			}
		}
	}
	h.restart() // the log is flushed and closed; the store read again
	if st, m := h.get(readerFn, `{"SecretId":"db"}`); st != 200 || !strings.Contains(m["SecretString"].(string), values[0]) {
		t.Fatalf("after restart: %d %v", st, m)
	}
	h.stop()
	noPlaintext(t, h.root.Dir(), values...)
	watcher.Flush()
	busMu.Lock()
	t.Logf("%d bus messages watched", len(onBus))
	if len(onBus) == 0 {
		t.Errorf("nothing seen on the bus: the watch proves nothing")
	}
	for _, m := range onBus {
		for _, v := range values {
			if bytes.Contains(m, []byte(v)) {
				t.Errorf("a bus message holds a secret in clear: %.120q", m)
			}
		}
	}
	busMu.Unlock()
	if b, _ := os.ReadFile(h.root.LogFile("secrets")); !bytes.Contains(b, []byte(`secret put`)) || !bytes.Contains(b, []byte(`secret read`)) {
		t.Fatalf("the log was not written at debug level:\n%s", b)
	}
}

func TestSealedValueAndRSAKey(t *testing.T) {
	h := newHarness(t, secretsMgrRSA)
	list, err := h.c.ListSecrets(ctx(t), &secretsv1.ListSecretsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if list.GetSealingKeyAlgorithm() != "RSA-2048" || !strings.HasPrefix(list.GetSealingKeySource(), "crypto.principals.SecretsManager.privateKeyPath: ") ||
		!strings.HasPrefix(list.GetSealingKeyId(), "sha256:") || list.GetSealingKeyError() != "" {
		t.Fatalf("sealing key: %v", list)
	}
	blk, _ := pem.Decode([]byte(list.GetSealingPublicKeyPem()))
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	env, _ := envelope.Seal(pub, []byte(dbValue))
	r, err := h.c.PutSecret(ctx(t), &secretsv1.PutSecretRequest{Name: dbARN, Source: &secretsv1.PutSecretRequest_SealedValue{SealedValue: env}, VersionId: "cloud-version-1"})
	if err != nil || r.GetVersionId() != "cloud-version-1" {
		t.Fatalf("sealed put: %v %v", r, err)
	}
	// The same envelope again: the same version, nothing new.
	if r, err := h.c.PutSecret(ctx(t), &secretsv1.PutSecretRequest{Name: dbARN, Source: &secretsv1.PutSecretRequest_SealedValue{SealedValue: env}, VersionId: "cloud-version-1"}); err != nil || len(r.GetSecret().GetVersions()) != 1 {
		t.Fatalf("idempotent sealed put: %v %v", r, err)
	}
	h.put("cert", "x", "beta")
	h.deploy(group())
	h.restart()
	if st, m := h.get(readerFn, `{"SecretId":"db"}`); st != 200 || m["SecretString"] != dbValue || m["VersionId"] != "cloud-version-1" {
		t.Fatalf("sealed value read back: %d %v", st, m)
	}

	// Envelopes for another key, damaged or not envelopes at all.
	ok, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	foreign, _ := envelope.Seal(ok.Public(), []byte("x"))
	otherID, _ := envelope.KeyIDString(ok.Public())
	damaged := bytes.Clone(env)
	damaged[len(damaged)-1] ^= 1
	for _, c := range []struct {
		sealed []byte
		msg    string
	}{
		{foreign, "sealed_value: sealed to another key: the envelope is for key " + otherID + ", this key is " + list.GetSealingKeyId()},
		{damaged, "sealed_value: does not decrypt"},
		{[]byte("plain text"), "sealed_value: not an envelope"},
		{nil, "sealed_value: is empty"},
	} {
		_, err := h.c.PutSecret(ctx(t), &secretsv1.PutSecretRequest{Name: "x", Source: &secretsv1.PutSecretRequest_SealedValue{SealedValue: c.sealed}})
		wantCode(t, err, codes.InvalidArgument, c.msg)
	}
}

func TestPutSecretBadInput(t *testing.T) {
	h := newHarness(t, coreEC)
	val := func(s string) *secretsv1.PutSecretRequest_Value {
		return &secretsv1.PutSecretRequest_Value{Value: []byte(s)}
	}
	for _, c := range []struct {
		req    *secretsv1.PutSecretRequest
		code   codes.Code
		prefix string
	}{
		{&secretsv1.PutSecretRequest{Source: val("x")}, codes.InvalidArgument, "name: secret name is empty"},
		{&secretsv1.PutSecretRequest{Name: "has space", Source: val("x")}, codes.InvalidArgument, `name: secret name "has space": only letters, digits and /_+=.@- are allowed`},
		{&secretsv1.PutSecretRequest{Name: strings.Repeat("n", 513), Source: val("x")}, codes.InvalidArgument, "name: secret name of 513 bytes is over the 512-byte limit"},
		{&secretsv1.PutSecretRequest{Name: "arn:aws:s3:::bucket", Source: val("x")}, codes.InvalidArgument, "name: \"arn:aws:s3:::bucket\" is not a Secrets Manager secret ARN"},
		{&secretsv1.PutSecretRequest{Name: "arn:aws:secretsmanager:us-east-1:12:secret:x", Source: val("x")}, codes.InvalidArgument, "name: ARN"},
		{&secretsv1.PutSecretRequest{Name: "ok"}, codes.InvalidArgument, "value: is required"},
		{&secretsv1.PutSecretRequest{Name: "ok", Source: val("")}, codes.InvalidArgument, "value: is empty"},
		{&secretsv1.PutSecretRequest{Name: "ok", Source: &secretsv1.PutSecretRequest_Value{Value: []byte{0xff, 0xfe}}}, codes.InvalidArgument, "value: is not UTF-8 text"},
		{&secretsv1.PutSecretRequest{Name: "ok", Source: val(strings.Repeat("v", 64<<10+1))}, codes.InvalidArgument, "value: 65537 bytes is over the 65536-byte limit"},
		{&secretsv1.PutSecretRequest{Name: "ok", Source: val("x"), Labels: []string{"fine", "not fine"}}, codes.InvalidArgument, `labels[1]: staging label "not fine"`},
		{&secretsv1.PutSecretRequest{Name: "ok", Source: val("x"), Labels: []string{""}}, codes.InvalidArgument, "labels[0]: staging label is empty"},
		{&secretsv1.PutSecretRequest{Name: "ok", Source: val("x"), Labels: []string{"AWSPREVIOUS"}}, codes.InvalidArgument, "labels: AWSPREVIOUS is managed by the store"},
		{&secretsv1.PutSecretRequest{Name: "ok", Source: val("x"), VersionId: "no/slash"}, codes.InvalidArgument, `version_id: "no/slash"`},
	} {
		_, err := h.c.PutSecret(ctx(t), c.req)
		wantCode(t, err, c.code, c.prefix)
	}
	// The same name under two ARNs.
	h.put(dbARN, "v")
	_, err := h.c.PutSecret(ctx(t), &secretsv1.PutSecretRequest{Name: "arn:aws:secretsmanager:eu-west-1:" + acct + ":secret:db-QqQqQq", Source: val("v")})
	wantCode(t, err, codes.InvalidArgument, `name: secret "db" is stored for `+dbARN)
	// Nothing bad was stored.
	list, _ := h.c.ListSecrets(ctx(t), &secretsv1.ListSecretsRequest{})
	if len(list.GetSecrets()) != 1 || list.GetStoredBytes() != 1 || list.GetMaxStoredBytes() != 64*64<<10 || list.GetMaxSecrets() != 64 || list.GetMaxValueBytes() != 64<<10 {
		t.Fatalf("list %v", list)
	}
}

func TestKeyArrivesAfterStart(t *testing.T) {
	h := newHarness(t, noKey)
	_, err := h.c.PutSecret(ctx(t), &secretsv1.PutSecretRequest{Name: "db", Source: &secretsv1.PutSecretRequest_Value{Value: []byte("v")}})
	wantCode(t, err, codes.Unavailable, "sealing key "+h.root.CoreKey()+" (certmgr's core key): stat ")
	list, err := h.c.ListSecrets(ctx(t), &secretsv1.ListSecretsRequest{})
	if err != nil || list.GetSealingKeyError() == "" {
		t.Fatalf("list without key: %v %v", list, err)
	}
	// certmgr writes the core key: the next put works.
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	writeKey(t, h.root.CoreKey(), k)
	h.put("db", "v")
}

func TestSealingKeyReplacedWhileRunning(t *testing.T) {
	h := newHarness(t, coreEC)
	h.opts.KeyCheckInterval = 20 * time.Millisecond
	h.restart()
	h.put("db", dbValue)
	// certmgr issues a new core key (temp file and rename): the daemon
	// reseals its data key to it.
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmp := h.root.CoreKey() + ".new"
	writeKey(t, tmp, k)
	if err := os.Rename(tmp, h.root.CoreKey()); err != nil {
		t.Fatal(err)
	}
	newID, _ := envelope.KeyIDString(k.Public())
	bustest.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		l, err := h.c.ListSecrets(ctx(t), &secretsv1.ListSecretsRequest{})
		if err != nil || l.GetSealingKeyId() != newID {
			return fmt.Errorf("sealing key %s, want %s (%v)", l.GetSealingKeyId(), newID, err)
		}
		for _, slot := range []string{"store.a", "store.b"} {
			raw, _ := os.ReadFile(filepath.Join(h.root.DataDir("secrets"), slot))
			if bytes.Contains(raw, []byte(`"keyId":"`+newID+`"`)) {
				return nil
			}
		}
		return errors.New("the data key is not resealed to the new key yet")
	})
	h.restart()
	h.put("cert", "c", "beta")
	h.deploy(group())
	if st, m := h.get(readerFn, `{"SecretId":"db"}`); st != 200 || m["SecretString"] != dbValue {
		t.Fatalf("after the key change: %d %v", st, m)
	}
}

package cli

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	secretsv1 "github.com/evergreen-edge/evergreen/proto/evergreen/secrets/v1"
)

const secretsDaemon = "secrets"

// maxSecretValue is Secrets Manager's limit on a value; ggctl reads one
// byte more to tell the user before sending anything.
const maxSecretValue = 64 << 10

// secretCommands are the `secret` verbs, appended to the command table.
var secretCommands = []command{
	{"secret put", "NAME [--file F] [--label L]... [--binary] [--sealed] [--version-id ID]", "Store a new version of secret NAME (a name, or its Secrets Manager ARN) from file F,\nor from standard input without --file or with --file -; the bytes are kept\nexactly (printf, not echo, avoids a trailing newline). The new version gets\nAWSCURRENT and every --label; the version it replaces becomes AWSPREVIOUS.\n--binary stores the value as SecretBinary (else it must be UTF-8 text, the\nSecretString). --sealed sends F as a value sealed to the core's key (see\n'secret list --json', sealingPublicKeyPem). Values are at most 64 KiB.", cmdSecretPut},
	{"secret list", "", "List the stored secrets and those the deployed group names: labels, bytes,\nwhen the newest version was put, and whether the group deploys it (and which\nlabels it lacks). Never shows values.", cmdSecretList},
	{"secret rm", "NAME [--force]", "Delete secret NAME and all its versions. A secret the deployed group uses\nneeds --force (its functions then get 404 until it is put again).", cmdSecretRm},
}

func (a *app) secrets() (secretsv1.SecretsClient, error) {
	cc, err := a.dial(secretsDaemon)
	if err != nil {
		return nil, err
	}
	return secretsv1.NewSecretsClient(cc), nil
}

// labelFlags collects repeated --label flags; a comma-separated list works
// too.
type labelFlags []string

func (l *labelFlags) String() string { return strings.Join(*l, ",") }
func (l *labelFlags) Set(v string) error {
	for _, x := range strings.Split(v, ",") {
		*l = append(*l, strings.TrimSpace(x))
	}
	return nil
}

func cmdSecretPut(a *app, args []string) error {
	fs := a.flags()
	file := fs.String("file", "", "read the value from file `F` (- or absent: standard input)")
	var labels labelFlags
	fs.Var(&labels, "label", "staging `L`abel besides AWSCURRENT (repeatable, or comma-separated)")
	binary := fs.Bool("binary", false, "store the value as SecretBinary (any bytes) rather than SecretString (UTF-8)")
	sealed := fs.Bool("sealed", false, "the input is a value sealed to the core's key (an EGS1 envelope)")
	versionID := fs.String("version-id", "", "the version's `ID` (default: a random UUID)")
	pos, err := a.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	value, err := a.readSecretValue(*file, *sealed)
	if err != nil {
		return err
	}
	defer clear(value)
	req := &secretsv1.PutSecretRequest{Name: pos[0], Binary: *binary, Labels: labels, VersionId: *versionID}
	if *sealed {
		req.Source = &secretsv1.PutSecretRequest_SealedValue{SealedValue: value}
	} else {
		req.Source = &secretsv1.PutSecretRequest_Value{Value: value}
	}
	c, err := a.secrets()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	resp, err := c.PutSecret(ctx, req)
	if err != nil {
		return a.rpcError(secretsDaemon, err)
	}
	if a.g.json {
		return a.printProto(resp)
	}
	sec := resp.GetSecret()
	var ver *secretsv1.VersionInfo
	for _, v := range sec.GetVersions() {
		if v.GetVersionId() == resp.GetVersionId() {
			ver = v
		}
	}
	kind := "string"
	if ver.GetBinary() {
		kind = "binary"
	}
	_, err = fmt.Fprintf(a.stdout, "stored secret %s version %s (%s, %d bytes, labels %s)\n",
		sec.GetName(), resp.GetVersionId(), kind, ver.GetSize(), strings.Join(ver.GetStages(), ","))
	return err
}

// readSecretValue reads the value from file, or standard input for "" and
// "-", refusing more than a value may hold.
func (a *app) readSecretValue(file string, sealed bool) ([]byte, error) {
	var r io.Reader = a.stdin
	what := "standard input"
	if file != "" && file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, usageErrorf("secret put: --file: %v", err)
		}
		defer f.Close()
		r, what = f, file
	}
	// A sealed value is larger than the value by its header and key.
	limit := int64(maxSecretValue)
	if sealed {
		limit += 4096
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, usageErrorf("secret put: read %s: %v", what, err)
	}
	if int64(len(b)) > limit {
		clear(b)
		return nil, usageErrorf("secret put: %s holds more than %d bytes (a secret value is at most %d)", what, limit, maxSecretValue)
	}
	if len(b) == 0 {
		return nil, usageErrorf("secret put: %s is empty", what)
	}
	return b, nil
}

func cmdSecretList(a *app, args []string) error {
	if _, err := a.parse(a.flags(), args, 0, 0); err != nil {
		return err
	}
	c, err := a.secrets()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	resp, err := c.ListSecrets(ctx, &secretsv1.ListSecretsRequest{})
	if err != nil {
		return a.rpcError(secretsDaemon, err)
	}
	if a.g.json {
		return a.printProto(resp)
	}
	if len(resp.GetSecrets()) == 0 {
		fmt.Fprintln(a.stdout, "no secrets")
	} else {
		t := newTable(a.stdout, "NAME", "LABELS", "VERSIONS", "BYTES", "UPDATED", "DEPLOYED", "READERS")
		for _, s := range resp.GetSecrets() {
			var labels []string
			var bytes uint64
			var newest int64
			for _, v := range s.GetVersions() {
				labels = append(labels, v.GetStages()...)
				bytes += uint64(v.GetSize())
				newest = max(newest, v.GetCreatedMs())
			}
			slices.Sort(labels)
			updated := ""
			if newest > 0 {
				updated = time.UnixMilli(newest).Local().Format("2006-01-02 15:04:05")
			}
			deployed := yesNo(s.GetDeployed())
			switch {
			case s.GetDeployed() && !s.GetStored():
				deployed = "yes, NOT STORED"
			case len(s.GetMissingLabels()) > 0:
				deployed = "yes, lacks " + strings.Join(s.GetMissingLabels(), ",")
			}
			t.row(s.GetName(), strings.Join(labels, ","), strconv.Itoa(len(s.GetVersions())), strconv.FormatUint(bytes, 10),
				updated, deployed, strings.Join(s.GetReaders(), ","))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	key := resp.GetSealingKeyId() + " (" + resp.GetSealingKeyAlgorithm() + ", " + resp.GetSealingKeySource() + ")"
	if resp.GetSealingKeyError() != "" {
		key = "unusable: " + resp.GetSealingKeyError()
	}
	_, err = fmt.Fprintf(a.stdout, "%d of %d secrets, %d of %d bytes; sealing key %s\n",
		countStored(resp), resp.GetMaxSecrets(), resp.GetStoredBytes(), resp.GetMaxStoredBytes(), key)
	return err
}

func countStored(r *secretsv1.ListSecretsResponse) int {
	n := 0
	for _, s := range r.GetSecrets() {
		if s.GetStored() {
			n++
		}
	}
	return n
}

func cmdSecretRm(a *app, args []string) error {
	fs := a.flags()
	force := fs.Bool("force", false, "delete it even though the deployed group uses it")
	pos, err := a.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	c, err := a.secrets()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	resp, err := c.DeleteSecret(ctx, &secretsv1.DeleteSecretRequest{Name: pos[0], Force: *force})
	if err != nil {
		return a.rpcError(secretsDaemon, err)
	}
	if a.g.json {
		return a.printProto(resp)
	}
	_, err = fmt.Fprintf(a.stdout, "deleted secret %s (%d versions)\n", pos[0], resp.GetVersions())
	return err
}

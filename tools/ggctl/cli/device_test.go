package cli

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestDeviceCreateWritesCertKeyAndCA(t *testing.T) {
	s := newSuite(t)
	cm := s.certmgr(newFakeCertManager(t))
	out := filepath.Join(t.TempDir(), "certs") // created by ggctl

	r := s.ggctl("device", "create", "sensor-1", "--out", out)
	wantExit(t, r, ExitOK)
	certFile, keyFile, caFile := filepath.Join(out, "sensor-1.cert.pem"), filepath.Join(out, "sensor-1.key.pem"), filepath.Join(out, "ca.pem")
	for _, want := range []string{"device sensor-1 created: certificate serial ", "expires in 364d23h", certFile, keyFile + "  ", "private key (0600)", caFile, `MQTT client id "sensor-1"`} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("output lacks %q:\n%s", want, r)
		}
	}
	for file, mode := range map[string]os.FileMode{certFile: 0o644, keyFile: 0o600, caFile: 0o644} {
		st, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Fatalf("%s: mode %v, want %v", file, st.Mode().Perm(), mode)
		}
	}
	// The files are what certmgr issued, and they fit together: the
	// certificate is the registered one, the key is its key, ca.pem is the
	// CA of the MQTT server certificate.
	dev := cm.device("sensor-1")
	certPEM, _ := os.ReadFile(certFile)
	if dev == nil || string(certPEM) != dev.CertificatePem {
		t.Fatalf("certificate file differs from the registered certificate")
	}
	caPEM, _ := os.ReadFile(caFile)
	if string(caPEM) != cm.groupCA.pem {
		t.Fatalf("ca.pem is not the group CA")
	}
	keyPEM, _ := os.ReadFile(keyFile)
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		t.Fatal("key file holds no PEM")
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	cb, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Fatal("key file does not match the certificate")
	}
	// Nothing but the three files is left behind (no temp or probe files).
	entries, _ := os.ReadDir(out)
	if len(entries) != 3 {
		t.Fatalf("out dir holds %d entries, want 3: %v", len(entries), entries)
	}

	// The same name again: certmgr refuses; the files are not replaced.
	r = s.ggctl("device", "create", "sensor-2", "--out", out)
	wantExit(t, r, ExitOK)
	r = s.ggctl("device", "create", "sensor-2", "--out", t.TempDir())
	wantExit(t, r, ExitFailed)
	wantOneErrorLine(t, r, `device "sensor-2": already exists`)
}

func TestDeviceCreateRefusesToOverwrite(t *testing.T) {
	s := newSuite(t)
	cm := s.certmgr(newFakeCertManager(t))
	out := t.TempDir()
	if err := os.WriteFile(filepath.Join(out, "cam.key.pem"), []byte("old key"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := s.ggctl("device", "create", "cam", "--out", out)
	wantExit(t, r, ExitFailed)
	wantOneErrorLine(t, r, filepath.Join(out, "cam.key.pem")+" already exists; pass --force")
	if cm.device("cam") != nil {
		t.Fatal("device registered although its files could not be written")
	}
	r = s.ggctl("device", "create", "cam", "--out", out, "--force")
	wantExit(t, r, ExitOK)
	if b, _ := os.ReadFile(filepath.Join(out, "cam.key.pem")); !strings.Contains(string(b), "PRIVATE KEY") {
		t.Fatalf("--force did not replace the key: %q", b)
	}
}

// A device whose key never reached the disk is useless and must not stay
// registered.
func TestDeviceCreateUndoneWhenFilesCannotBeWritten(t *testing.T) {
	s := newSuite(t)
	cm := newFakeCertManager(t)
	cm.keyless = true
	s.certmgr(cm)
	out := t.TempDir()
	r := s.ggctl("device", "create", "cam", "--out", out)
	wantExit(t, r, ExitFailed)
	wantOneErrorLine(t, r, "certmgr returned no PEM for "+filepath.Join(out, "cam.key.pem"), "device cam was removed again")
	if cm.device("cam") != nil {
		t.Fatal("device left registered without its key")
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Fatalf("files left behind: %v", entries)
	}
}

func TestDeviceCreateInvalidName(t *testing.T) {
	s := newSuite(t)
	s.certmgr(newFakeCertManager(t))
	out := t.TempDir()
	r := s.ggctl("device", "create", "bad name!", "--out", out)
	wantExit(t, r, ExitUsage)
	wantOneErrorLine(t, r, "name:", "thing-name rules", "invalid argument")
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Fatalf("files written for a refused device: %v", entries)
	}
}

func TestDeviceCreateJSON(t *testing.T) {
	s := newSuite(t)
	s.certmgr(newFakeCertManager(t))
	out := t.TempDir()
	r := s.ggctl("--json", "device", "create", "gw", "--out", out)
	wantExit(t, r, ExitOK)
	var got struct {
		Device struct {
			Name       string `json:"name"`
			IssuedHere bool   `json:"issuedHere"`
		} `json:"device"`
		Files deviceFiles `json:"files"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("%v\n%s", err, r)
	}
	if got.Device.Name != "gw" || !got.Device.IssuedHere || got.Files.Key != filepath.Join(out, "gw.key.pem") {
		t.Fatalf("device create --json: %+v", got)
	}
	if strings.Contains(r.stdout, "PRIVATE KEY") {
		t.Fatal("device create --json printed the private key")
	}
}

func TestDeviceRegisterListRemove(t *testing.T) {
	s := newSuite(t)
	cm := s.certmgr(newFakeCertManager(t))
	dir := t.TempDir()

	// A certificate made elsewhere.
	_, certPEM, _ := issue(t, "thermo", selfSigned(t, "factory CA", time.Now().Add(time.Hour*24*100)), time.Now().Add(30*24*time.Hour))
	certFile := filepath.Join(dir, "thermo.pem")
	os.WriteFile(certFile, []byte(certPEM), 0o644)
	r := s.ggctl("device", "register", "thermo", "--cert", certFile)
	wantExit(t, r, ExitOK)
	if !strings.Contains(r.stdout, "device thermo registered: certificate serial ") || !strings.Contains(r.stdout, "expires in 29d23h") {
		t.Fatalf("register output:\n%s", r)
	}
	if d := cm.device("thermo"); d == nil || d.CertificatePem != certPEM {
		t.Fatal("certmgr did not receive the certificate")
	}

	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not a certificate"), 0o644)
	r = s.ggctl("device", "register", "other", "--cert", garbage)
	wantExit(t, r, ExitUsage)
	wantOneErrorLine(t, r, "certificate_pem: want exactly one PEM certificate: invalid argument")

	wantExit(t, s.ggctl("device", "create", "sensor-1", "--out", dir), ExitOK)
	r = s.ggctl("device", "list")
	wantExit(t, r, ExitOK)
	for _, re := range []string{
		`^NAME +ORIGIN +EXPIRES +REGISTERED +SERIAL\n`,
		`(?m)^sensor-1 +issued +in 364d23h +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +[0-9a-f]+$`,
		`(?m)^thermo +registered +in 29d23h `,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Fatalf("device list lacks %s:\n%s", re, r.stdout)
		}
	}
	r = s.ggctl("device", "list", "--json")
	wantExit(t, r, ExitOK)
	var list struct {
		Devices []struct{ Name string } `json:"devices"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list.Devices) != 2 || list.Devices[0].Name != "sensor-1" {
		t.Fatalf("device list --json: %v %s", err, r)
	}

	r = s.ggctl("device", "remove", "thermo")
	wantExit(t, r, ExitOK)
	if !strings.Contains(r.stdout, "device thermo removed; its certificate is revoked") || cm.device("thermo") != nil {
		t.Fatalf("remove: %s", r)
	}
	r = s.ggctl("device", "remove", "thermo")
	wantExit(t, r, ExitNotFound)
	wantOneErrorLine(t, r, `device "thermo": not found`)

	r = s.ggctl("--json", "device", "remove", "sensor-1")
	wantExit(t, r, ExitOK)
	if strings.TrimSpace(r.stdout) != "{\n  \"name\": \"sensor-1\",\n  \"removed\": true\n}" {
		t.Fatalf("remove --json: %q", r.stdout)
	}
	r = s.ggctl("device", "list")
	wantExit(t, r, ExitOK)
	if strings.TrimSpace(r.stdout) != "no devices registered" {
		t.Fatalf("empty list: %s", r)
	}
}

func TestDeviceCommandsUnreachable(t *testing.T) {
	s := newSuite(t)
	for _, args := range [][]string{
		{"device", "list"},
		{"device", "remove", "x"},
		{"device", "create", "x", "--out", t.TempDir()},
	} {
		r := s.ggctl(args...)
		wantExit(t, r, ExitUnreachable)
		wantOneErrorLine(t, r, "cannot reach certmgr: no socket at "+s.socket("certmgr"), "is the suite running? (ggd --root "+s.root+")")
	}
	s.staleSocket("certmgr")
	r := s.ggctl("device", "list")
	wantExit(t, r, ExitUnreachable)
	wantOneErrorLine(t, r, "cannot reach certmgr: connection refused", "is the suite running?")
}

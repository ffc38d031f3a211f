package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
)

// deviceCreated is `ggctl device create --json`. The private key is never
// printed: it is only in the key file.
type deviceCreated struct {
	Device json.RawMessage `json:"device"`
	Files  deviceFiles     `json:"files"`
}

type deviceFiles struct {
	Certificate string `json:"certificate"`
	Key         string `json:"key"`
	CA          string `json:"ca"`
}

func cmdDeviceCreate(a *app, args []string) error {
	fset := a.flags()
	out := fset.String("out", ".", "write NAME.cert.pem, NAME.key.pem and ca.pem in folder `DIR` (created if missing)")
	force := fset.Bool("force", false, "overwrite NAME.cert.pem and NAME.key.pem when they exist")
	pos, err := a.parse(fset, args, 1, 1)
	if err != nil {
		return err
	}
	name := pos[0]
	// The name becomes part of file names; certmgr refuses such names too,
	// but only after it would have issued nothing, so say it here.
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) {
		return usageErrorf("device create: invalid device name %q (AWS IoT thing-name rules: 1-128 of [a-zA-Z0-9:_-])", name)
	}
	if *out == "" {
		return usageErrorf("device create: --out is empty")
	}
	dir, err := filepath.Abs(*out)
	if err != nil {
		return usageErrorf("device create: --out %s: %v", *out, err)
	}
	files := deviceFiles{
		Certificate: filepath.Join(dir, name+".cert.pem"),
		Key:         filepath.Join(dir, name+".key.pem"),
		CA:          filepath.Join(dir, "ca.pem"),
	}
	if !*force {
		for _, p := range []string{files.Certificate, files.Key} {
			if _, err := os.Stat(p); err == nil {
				return failf("%s already exists; pass --force to overwrite it", p)
			}
		}
	}
	// Fail before certmgr issues anything when the files cannot be written.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return failf("create %s: %v", dir, err)
	}
	probe, err := os.CreateTemp(dir, ".ggctl-probe-*")
	if err != nil {
		return failf("cannot write in %s: %v", dir, err)
	}
	probe.Close()
	os.Remove(probe.Name())

	c, err := a.certmgr()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	resp, err := c.CreateDevice(ctx, &certmgrv1.CreateDeviceRequest{Name: name})
	if err != nil {
		return a.rpcError(certmgrDaemon, err)
	}
	caPEM := resp.GetServerCaPem()
	if caPEM == "" {
		auth, err := c.GetAuthorities(ctx, &certmgrv1.GetAuthoritiesRequest{})
		if err != nil {
			return a.undoCreate(c, name, a.rpcError(certmgrDaemon, err))
		}
		caPEM = auth.GetGroupCaPem()
	}
	for _, f := range []struct {
		path string
		data string
		mode os.FileMode
	}{
		{files.Key, resp.GetKeyPem(), 0o600},
		{files.Certificate, resp.GetDevice().GetCertificatePem(), 0o644},
		{files.CA, caPEM, 0o644},
	} {
		if f.data == "" {
			return a.undoCreate(c, name, failf("certmgr returned no PEM for %s", f.path))
		}
		if err := writeFileAtomic(f.path, []byte(f.data), f.mode); err != nil {
			return a.undoCreate(c, name, failf("write %s: %v", f.path, err))
		}
	}

	if a.g.json {
		dev, err := protoJSON(resp.GetDevice())
		if err != nil {
			return err
		}
		return a.printJSON(deviceCreated{Device: dev, Files: files})
	}
	fmt.Fprintf(a.stdout, "device %s created: %s\n", name, certSummary(resp.GetDevice().GetCertificate()))
	t := newTable(a.stdout)
	t.row(files.Certificate, "certificate")
	t.row(files.Key, "private key (0600)")
	t.row(files.CA, "CA of the core's MQTT server certificate")
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "The device must connect with MQTT client id %q.\n", name)
	return nil
}

// undoCreate removes a device whose files could not be written, so no
// registered certificate is left without its key.
func (a *app) undoCreate(c certmgrv1.CertManagerClient, name string, cause error) error {
	ctx, cancel := a.unary()
	defer cancel()
	if _, err := c.RemoveDevice(ctx, &certmgrv1.RemoveDeviceRequest{Name: name}); err != nil {
		return failf("%v; removing device %s again failed too: %v", cause, name, a.rpcError(certmgrDaemon, err))
	}
	return failf("%v; device %s was removed again", cause, name)
}

func cmdDeviceRegister(a *app, args []string) error {
	fset := a.flags()
	certFile := fset.String("cert", "", "the device's certificate: `FILE` with one PEM certificate")
	pos, err := a.parse(fset, args, 1, 1)
	if err != nil {
		return err
	}
	if *certFile == "" {
		return usageErrorf("device register: --cert FILE is required")
	}
	pem, err := os.ReadFile(*certFile)
	if err != nil {
		return usageErrorf("device register: read certificate: %v", err)
	}
	c, err := a.certmgr()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	dev, err := c.RegisterDevice(ctx, &certmgrv1.RegisterDeviceRequest{Name: pos[0], CertificatePem: string(pem)})
	if err != nil {
		return a.rpcError(certmgrDaemon, err)
	}
	if a.g.json {
		return a.printProto(dev)
	}
	fmt.Fprintf(a.stdout, "device %s registered: %s\n", dev.GetName(), certSummary(dev.GetCertificate()))
	return nil
}

func cmdDeviceList(a *app, args []string) error {
	if _, err := a.parse(a.flags(), args, 0, 0); err != nil {
		return err
	}
	c, err := a.certmgr()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	resp, err := c.ListDevices(ctx, &certmgrv1.ListDevicesRequest{})
	if err != nil {
		return a.rpcError(certmgrDaemon, err)
	}
	if a.g.json {
		return a.printProto(resp)
	}
	if len(resp.GetDevices()) == 0 {
		fmt.Fprintln(a.stdout, "no devices registered")
		return nil
	}
	now := time.Now()
	t := newTable(a.stdout, "NAME", "ORIGIN", "EXPIRES", "REGISTERED", "SERIAL")
	for _, d := range resp.GetDevices() {
		origin := "registered"
		if d.GetIssuedHere() {
			origin = "issued"
		}
		exp := ""
		if na := d.GetCertificate().GetNotAfter(); na != nil {
			exp = strings.TrimPrefix(expiry(na.AsTime(), now), "expires ")
		}
		t.row(d.GetName(), origin, exp, humanTime(d.GetRegisteredAt()), d.GetCertificate().GetSerial())
	}
	return t.flush()
}

func cmdDeviceRemove(a *app, args []string) error {
	pos, err := a.parse(a.flags(), args, 1, 1)
	if err != nil {
		return err
	}
	c, err := a.certmgr()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	if _, err := c.RemoveDevice(ctx, &certmgrv1.RemoveDeviceRequest{Name: pos[0]}); err != nil {
		return a.rpcError(certmgrDaemon, err)
	}
	if a.g.json {
		return a.printJSON(map[string]any{"name": pos[0], "removed": true})
	}
	fmt.Fprintf(a.stdout, "device %s removed; its certificate is revoked\n", pos[0])
	return nil
}

func certSummary(info *certmgrv1.CertificateInfo) string {
	if info == nil {
		return "no certificate details returned"
	}
	s := "certificate serial " + info.GetSerial()
	if na := info.GetNotAfter(); na != nil {
		s += ", " + expiry(na.AsTime(), time.Now())
	}
	return s
}

// writeFileAtomic writes data to path through a temp file in the same
// folder, so a crash leaves the old file or the new one, never half of it.
// The temp file is created 0600, so a key is never readable by others.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

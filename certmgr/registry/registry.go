// Package registry is certmgr's device registry: which certificate belongs
// to which device, and which certificates were revoked. It lives in one
// JSON file rewritten atomically on every change, so a power cut leaves
// the old registry or the new one. The registry is not safe for concurrent
// use; certmgr serialises access.
package registry

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"time"

	"github.com/evergreen-edge/evergreen/certmgr/pki"
	"github.com/evergreen-edge/evergreen/services/kit/atomicfile"
)

// FormatVersion is the version of the file layout written by Save.
const FormatVersion = 1

// Device is one registered device.
type Device struct {
	Name           string    `json:"name"`
	CertificatePEM string    `json:"certificatePem"`
	Fingerprint    string    `json:"sha256Fingerprint"`
	IssuedHere     bool      `json:"issuedHere"`
	RegisteredAt   time.Time `json:"registeredAt"`
	// Cert is CertificatePEM parsed.
	Cert *x509.Certificate `json:"-"`
}

// Revocation is a certificate removed with its device. It is kept until
// the certificate expires, after which nothing would accept it anyway.
type Revocation struct {
	Name        string    `json:"name"`
	Serial      string    `json:"serial"`
	Fingerprint string    `json:"sha256Fingerprint"`
	NotAfter    time.Time `json:"notAfter"`
	RevokedAt   time.Time `json:"revokedAt"`
}

type file struct {
	Version int          `json:"version"`
	Devices []*Device    `json:"devices"`
	Revoked []Revocation `json:"revoked"`
}

// Registry is the loaded registry file.
type Registry struct {
	path    string
	devices map[string]*Device
	byPrint map[string]*Device
	revoked map[string]Revocation
}

// Load reads the registry at path; a missing file is an empty registry. A
// file that exists but cannot be read whole is an error, never a silent
// wipe: devices would lose their access.
func Load(path string) (*Registry, error) {
	r := &Registry{path: path, devices: map[string]*Device{}, byPrint: map[string]*Device{}, revoked: map[string]Revocation{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("device registry: %w", err)
	}
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("device registry %s is damaged (%s); restore it from a backup, or move it away to start with no devices",
			path, fmt.Sprintf(format, args...))
	}
	var f file
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, corrupt("%v", err)
	}
	if f.Version != FormatVersion {
		return nil, corrupt("format version %d, this certmgr reads %d", f.Version, FormatVersion)
	}
	for i, d := range f.Devices {
		if d == nil || d.Name == "" {
			return nil, corrupt("device %d has no name", i)
		}
		certs, err := pki.ParseCerts([]byte(d.CertificatePEM))
		if err != nil || len(certs) != 1 {
			return nil, corrupt("device %q: certificate: %v", d.Name, err)
		}
		d.Cert = certs[0]
		if fp := pki.Fingerprint(d.Cert); fp != d.Fingerprint {
			return nil, corrupt("device %q: fingerprint %s does not match its certificate (%s)", d.Name, d.Fingerprint, fp)
		}
		if _, dup := r.devices[d.Name]; dup {
			return nil, corrupt("device %q is listed twice", d.Name)
		}
		if other, dup := r.byPrint[d.Fingerprint]; dup {
			return nil, corrupt("devices %q and %q share a certificate", other.Name, d.Name)
		}
		r.devices[d.Name] = d
		r.byPrint[d.Fingerprint] = d
	}
	for _, v := range f.Revoked {
		if v.Fingerprint == "" {
			return nil, corrupt("a revocation of %q has no fingerprint", v.Name)
		}
		r.revoked[v.Fingerprint] = v
	}
	return r, nil
}

// Get returns the device called name.
func (r *Registry) Get(name string) (*Device, bool) {
	d, ok := r.devices[name]
	return d, ok
}

// ByFingerprint returns the device whose certificate has fingerprint fp.
func (r *Registry) ByFingerprint(fp string) (*Device, bool) {
	d, ok := r.byPrint[fp]
	return d, ok
}

// Revoked returns the revocation of the certificate with fingerprint fp.
func (r *Registry) Revoked(fp string) (Revocation, bool) {
	v, ok := r.revoked[fp]
	return v, ok
}

// List returns every device sorted by name.
func (r *Registry) List() []*Device {
	out := make([]*Device, 0, len(r.devices))
	for _, d := range r.devices {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Len is the number of registered devices.
func (r *Registry) Len() int { return len(r.devices) }

// Add registers d (Cert set) and saves. On a failed save the registry is
// left as it was. The caller has checked name and certificate for clashes.
func (r *Registry) Add(d *Device) error {
	d.Fingerprint = pki.Fingerprint(d.Cert)
	d.CertificatePEM = string(pki.EncodeCert(d.Cert))
	r.devices[d.Name] = d
	r.byPrint[d.Fingerprint] = d
	if err := r.save(); err != nil {
		delete(r.devices, d.Name)
		delete(r.byPrint, d.Fingerprint)
		return err
	}
	return nil
}

// Remove deletes the device called name, revokes its certificate and
// saves, dropping revocations of certificates expired before now. On a
// failed save the registry is left as it was.
func (r *Registry) Remove(name string, now time.Time) (Revocation, error) {
	d, ok := r.devices[name]
	if !ok {
		return Revocation{}, fmt.Errorf("device %q is not registered", name)
	}
	v := Revocation{Name: name, Serial: pki.Serial(d.Cert), Fingerprint: d.Fingerprint, NotAfter: d.Cert.NotAfter, RevokedAt: now}
	prev, hadPrev := r.revoked[v.Fingerprint]
	delete(r.devices, name)
	delete(r.byPrint, d.Fingerprint)
	r.revoked[v.Fingerprint] = v
	var expired []Revocation
	for fp, old := range r.revoked {
		if old.NotAfter.Before(now) {
			expired = append(expired, old)
			delete(r.revoked, fp)
		}
	}
	if err := r.save(); err != nil {
		for _, old := range expired {
			r.revoked[old.Fingerprint] = old
		}
		delete(r.revoked, v.Fingerprint)
		if hadPrev {
			r.revoked[v.Fingerprint] = prev
		}
		r.devices[name] = d
		r.byPrint[d.Fingerprint] = d
		return Revocation{}, err
	}
	return v, nil
}

func (r *Registry) save() error {
	f := file{Version: FormatVersion, Devices: r.List(), Revoked: make([]Revocation, 0, len(r.revoked))}
	for _, v := range r.revoked {
		f.Revoked = append(f.Revoked, v)
	}
	sort.Slice(f.Revoked, func(i, j int) bool { return f.Revoked[i].Fingerprint < f.Revoked[j].Fingerprint })
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(r.path, append(b, '\n'), 0o600)
}

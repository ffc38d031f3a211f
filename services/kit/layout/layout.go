// Package layout names the files and folders under the suite's root DIR.
// Every daemon and tool finds its paths here, so the on-disk contract lives
// in one place (see docs/ARCHITECTURE.md, "Files on disk").
package layout

import (
	"fmt"
	"os"
	"path/filepath"
)

// Root is the suite's root directory (`--root DIR`).
type Root string

func (r Root) Dir() string                  { return string(r) }
func (r Root) ConfigDir() string            { return filepath.Join(string(r), "config") }
func (r Root) ConfigFile() string           { return filepath.Join(string(r), "config", "config.json") }
func (r Root) CertsDir() string             { return filepath.Join(string(r), "certs") }
func (r Root) RunDir() string               { return filepath.Join(string(r), "run") }
func (r Root) BusDir() string               { return filepath.Join(string(r), "run", "bus") }
func (r Root) DataDir(daemon string) string { return filepath.Join(string(r), "data", daemon) }
func (r Root) LogsDir() string              { return filepath.Join(string(r), "logs") }
func (r Root) SystemLogDir() string         { return filepath.Join(string(r), "logs", "system") }
func (r Root) DeploymentsDir() string       { return filepath.Join(string(r), "deployments") }
func (r Root) FunctionsDir() string         { return filepath.Join(string(r), "functions") }
func (r Root) EndpointsFile() string        { return filepath.Join(string(r), "run", "endpoints.json") }

// Socket is the unix socket of a daemon's gRPC API.
func (r Root) Socket(daemon string) string { return filepath.Join(string(r), "run", daemon+".sock") }

// PidFile is where a daemon records its pid while it runs.
func (r Root) PidFile(daemon string) string { return filepath.Join(string(r), "run", daemon+".pid") }

// LogFile is a daemon's own log file.
func (r Root) LogFile(daemon string) string {
	return filepath.Join(string(r), "logs", "system", daemon+".log")
}

// BusCreds is the credentials file a daemon uses to connect to the bus.
func (r Root) BusCreds(daemon string) string {
	return filepath.Join(string(r), "run", "bus", daemon+".creds")
}

// Create makes the layout's folders. Secrets-bearing folders are 0700.
func (r Root) Create() error {
	if string(r) == "" {
		return fmt.Errorf("root directory is empty")
	}
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{
		{string(r), 0o755},
		{r.ConfigDir(), 0o700},
		{r.CertsDir(), 0o700},
		{r.RunDir(), 0o750},
		{r.BusDir(), 0o700},
		{filepath.Join(string(r), "data"), 0o750},
		{r.LogsDir(), 0o750},
		{r.SystemLogDir(), 0o750},
		{r.DeploymentsDir(), 0o700},
		{r.FunctionsDir(), 0o750},
	} {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			return fmt.Errorf("create %s: %w", d.path, err)
		}
	}
	return nil
}

// Certificate files certmgr owns under DIR/certs (keys 0600).
func (r Root) GroupCACert() string  { return filepath.Join(string(r), "certs", "group-ca.pem") }
func (r Root) GroupCAKey() string   { return filepath.Join(string(r), "certs", "group-ca.key") }
func (r Root) DeviceCACert() string { return filepath.Join(string(r), "certs", "device-ca.pem") }
func (r Root) DeviceCAKey() string  { return filepath.Join(string(r), "certs", "device-ca.key") }
func (r Root) CoreCert() string     { return filepath.Join(string(r), "certs", "core.cert.pem") }
func (r Root) CoreKey() string      { return filepath.Join(string(r), "certs", "core.key.pem") }
func (r Root) ServerCert() string   { return filepath.Join(string(r), "certs", "server.cert.pem") }
func (r Root) ServerKey() string    { return filepath.Join(string(r), "certs", "server.key.pem") }

// Package config loads and strictly validates DIR/config/config.json: the
// AWS IoT Greengrass v1 core's config.json keys plus an "evergreen" block for
// what v1 lacks. Absent keys take their defaults; an unknown key, a wrong JSON
// type or an out-of-range value is rejected with one line that names the full
// key path (docs/configuration.md lists every key).
package config

import (
	_ "embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Config is the whole of config.json.
type Config struct {
	CoreThing      CoreThing `json:"coreThing"`
	Runtime        Runtime   `json:"runtime"`
	ManagedRespawn bool      `json:"managedRespawn"`
	Crypto         *Crypto   `json:"crypto,omitempty"`
	// WriteDirectory and PidFileDirectory are v1 keys; Evergreen keeps its
	// state, logs and pid files under DIR (see docs/configuration.md).
	WriteDirectory   string `json:"writeDirectory,omitempty"`
	PidFileDirectory string `json:"pidFileDirectory,omitempty"`
	// MqttMaxConnectionRetryInterval is the cloud reconnect backoff cap in
	// seconds: default 60, 1..3600.
	MqttMaxConnectionRetryInterval int       `json:"mqttMaxConnectionRetryInterval"`
	System                         System    `json:"system"`
	Evergreen                      Evergreen `json:"evergreen"`
}

// CoreThing is v1's "coreThing" block: the core's cloud identity and ports.
type CoreThing struct {
	// CaPath, CertPath and KeyPath are the legacy (<1.7) credential paths,
	// relative to DIR/certs; ignored when crypto is present.
	CaPath   string `json:"caPath,omitempty"`
	CertPath string `json:"certPath,omitempty"`
	KeyPath  string `json:"keyPath,omitempty"`
	// ThingArn is arn:<partition>:iot:<region>:<account>:thing/<name>.
	ThingArn string `json:"thingArn,omitempty"`
	// IotHost is the upstream MQTT endpoint; empty means no cloud.
	IotHost string `json:"iotHost,omitempty"`
	GgHost  string `json:"ggHost,omitempty"`
	// IotMqttPort is 8883 or 443.
	IotMqttPort int `json:"iotMqttPort"`
	// IotHttpPort and GgHttpPort are 8443 or 443.
	IotHttpPort int `json:"iotHttpPort"`
	GgHttpPort  int `json:"ggHttpPort"`
	// GgMqttPort is the local MQTT server port (1024..65535), used for
	// evergreen.listen.mqtt when that key is absent and this one is set.
	GgMqttPort int `json:"ggMqttPort"`
	// KeepAlive is the cloud MQTT keepalive in seconds, 30..1200.
	KeepAlive    int           `json:"keepAlive"`
	NetworkProxy *NetworkProxy `json:"networkProxy,omitempty"`
	// MqttOperationTimeout is seconds, 5..300.
	MqttOperationTimeout int `json:"mqttOperationTimeout"`
	// GgDaemonPort is the Lambda IPC port (1024..65535), used for
	// evergreen.listen.ipc when that key is absent and this one is set.
	GgDaemonPort int `json:"ggDaemonPort"`
	// SystemComponentAuthTimeout is milliseconds, 500..5000.
	SystemComponentAuthTimeout int `json:"systemComponentAuthTimeout"`
}

// NetworkProxy routes the core's outbound cloud traffic through an HTTP(S)
// proxy.
type NetworkProxy struct {
	// NoProxyAddresses is a comma-separated list of hosts, as in no_proxy.
	NoProxyAddresses string `json:"noProxyAddresses,omitempty"`
	Proxy            Proxy  `json:"proxy"`
}

// Proxy is the proxy endpoint and its basic-auth credentials.
type Proxy struct {
	// URL is http://host[:port] or https://host[:port].
	URL      string `json:"url"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// Runtime is v1's "runtime" block: the Lambda runtime's limits.
type Runtime struct {
	MaxWorkItemCount int `json:"maxWorkItemCount"`
	// MaxConcurrentLimit must be at least LruSize.
	MaxConcurrentLimit int `json:"maxConcurrentLimit"`
	LruSize            int `json:"lruSize"`
	// MountAllBlockDevices and AllowFunctionsToRunAsRoot are "yes" or "no".
	MountAllBlockDevices      string `json:"mountAllBlockDevices"`
	AllowFunctionsToRunAsRoot string `json:"allowFunctionsToRunAsRoot"`
	Cgroup                    struct {
		// UseSystemd is "yes" or "no".
		UseSystemd string `json:"useSystemd"`
	} `json:"cgroup"`
	// PostStartHealthCheckTimeout is milliseconds.
	PostStartHealthCheckTimeout int `json:"postStartHealthCheckTimeout"`
}

// Crypto is v1's "crypto" block (1.7+): credential locations as URIs.
type Crypto struct {
	// CaPath is a file:///absolute/path (or pkcs11:) URI.
	CaPath     string     `json:"caPath,omitempty"`
	PKCS11     *PKCS11    `json:"PKCS11,omitempty"`
	Principals Principals `json:"principals"`
}

// PKCS11 names the hardware security module holding pkcs11: keys.
type PKCS11 struct {
	OpenSSLEngine string `json:"OpenSSLEngine,omitempty"`
	P11Provider   string `json:"P11Provider"`
	SlotLabel     string `json:"slotLabel"`
	SlotUserPin   string `json:"slotUserPin"`
}

// Principals are the core's keys and certificates, by use.
type Principals struct {
	IoTCertificate        *KeyCert `json:"IoTCertificate,omitempty"`
	MQTTServerCertificate *KeyOnly `json:"MQTTServerCertificate,omitempty"`
	SecretsManager        *KeyOnly `json:"SecretsManager,omitempty"`
}

// KeyCert is a private key and its certificate, each a file:/// or pkcs11:
// URI.
type KeyCert struct {
	PrivateKeyPath  string `json:"privateKeyPath"`
	CertificatePath string `json:"certificatePath"`
}

// KeyOnly is a private key as a file:/// or pkcs11: URI.
type KeyOnly struct {
	PrivateKeyPath string `json:"privateKeyPath"`
}

// System is v1's "system" block.
type System struct {
	// ShadowSyncTimeout is seconds: default 5, 1..60.
	ShadowSyncTimeout int `json:"shadowSyncTimeout"`
}

// Evergreen holds the settings v1 has no key for.
type Evergreen struct {
	Listen     Listen           `json:"listen"`
	Certmgr    Certmgr          `json:"certmgr"`
	IPDetector IPDetector       `json:"ipdetector"`
	Shadow     Shadow           `json:"shadow"`
	Streams    Streams          `json:"streams"`
	Runtime    EvergreenRuntime `json:"runtime"`
	// Connectivity are manual connectivity entries, offered to devices in
	// discovery before the detected addresses (v1's UpdateConnectivityInfo).
	Connectivity []ConnectivityEntry `json:"connectivity,omitempty"`
	Logging      Logging             `json:"logging"`
	Supervisor   Supervisor          `json:"supervisor"`
	// OTA configures over-the-air updates of the core (docs/ota.md).
	OTA OTA `json:"ota"`
	// Daemons restricts the daemons the supervisor runs; empty runs all of
	// KnownDaemons.
	Daemons []string `json:"daemons,omitempty"`
}

// Listen holds every listen address as host:port; port 0 picks a free port
// (the chosen one is recorded in DIR/run/endpoints.json).
type Listen struct {
	MQTT    string `json:"mqtt"`
	IPC     string `json:"ipc"`
	Streams string `json:"streams"`
	Bus     string `json:"bus"`
	HTTP    string `json:"http"`
	// Discovery is the ipdetector's HTTPS discovery API (mutual TLS).
	Discovery string `json:"discovery"`
	// GRPC is the optional mutual-TLS gRPC TCP listener; empty is off.
	GRPC string `json:"grpc"`
}

// IPDetector configures the detection of the core's addresses.
type IPDetector struct {
	// AutoDetect offers the core's own addresses (AUTOIP_<ip>_<n>) to
	// devices besides the manual connectivity entries.
	AutoDetect bool `json:"autoDetect"`
}

// EvergreenRuntime configures the runtime beyond v1's runtime block.
type EvergreenRuntime struct {
	// ContainerdAddress is the containerd socket GreengrassContainer
	// functions run through (default /run/containerd/containerd.sock;
	// $EVERGREEN_CONTAINERD_SOCKET overrides it).
	ContainerdAddress string `json:"containerdAddress"`
}

// Shadow configures the local shadow service.
type Shadow struct {
	// MaxStateBytes limits a shadow's desired and reported state (metadata
	// excluded): default 8192 (AWS IoT's), 1024..30720.
	MaxStateBytes int `json:"maxStateBytes"`
}

// Streams configures the stream manager.
type Streams struct {
	// AuthenticateClient is v1's STREAM_MANAGER_AUTHENTICATE_CLIENT: only
	// clients whose Connect carries a token the runtime issued to a running
	// function are served (default true); false serves any local process.
	AuthenticateClient bool `json:"authenticateClient"`
	// ExporterMaxBandwidthKbps is v1's STREAM_MANAGER_EXPORTER_MAX_BANDWIDTH:
	// the exports' combined upload rate in kbit/s; 0 (default) is unlimited.
	ExporterMaxBandwidthKbps int64 `json:"exporterMaxBandwidthKbps"`
	// ExporterThreadPoolSize is v1's STREAM_MANAGER_EXPORTER_THREAD_POOL_SIZE:
	// how many exports send at once (default 5); the others wait, highest
	// priority first.
	ExporterThreadPoolSize int `json:"exporterThreadPoolSize"`
	// S3MultipartMinPartSizeBytes is v1's
	// STREAM_MANAGER_EXPORTER_S3_DESTINATION_MULTIPART_UPLOAD_MIN_PART_SIZE_BYTES
	// (default and minimum 5242880).
	S3MultipartMinPartSizeBytes int64 `json:"s3MultipartMinPartSizeBytes"`
	// AWS configures the S3, Kinesis, IoT Analytics and SiteWise exports.
	AWS StreamsAWS `json:"aws,omitzero"`
}

// StreamsAWS is where the AWS exports send. Credentials come from the
// standard chain (environment, the shared files' profile, the container
// endpoint, EC2 instance metadata); SSO, web-identity, assume-role and
// credential_process profiles are refused.
type StreamsAWS struct {
	// Region defaults to the core thing ARN's region.
	Region string `json:"region,omitempty"`
	// Endpoint URLs override a service's (an S3-compatible store, a VPC
	// endpoint); empty means AWS's own.
	S3Endpoint           string `json:"s3Endpoint,omitempty"`
	KinesisEndpoint      string `json:"kinesisEndpoint,omitempty"`
	IoTAnalyticsEndpoint string `json:"iotAnalyticsEndpoint,omitempty"`
	IoTSiteWiseEndpoint  string `json:"iotSiteWiseEndpoint,omitempty"`
	// S3ForcePathStyle addresses buckets by path (most S3-compatible stores
	// need it).
	S3ForcePathStyle bool `json:"s3ForcePathStyle,omitempty"`
}

// ConnectivityEntry is one way for devices to reach the core's MQTT server,
// in v1's ConnectivityInfo shape.
type ConnectivityEntry struct {
	// ID is 1..128 of [a-zA-Z0-9:_-]; AUTOIP_ is reserved for detected
	// addresses.
	ID string `json:"id"`
	// HostAddress is an IP address or a DNS name.
	HostAddress string `json:"hostAddress"`
	// PortNumber is 1..65535.
	PortNumber int `json:"portNumber"`
	// Metadata is free text for devices, at most MaxConnectivityMetadata
	// bytes.
	Metadata string `json:"metadata,omitempty"`
}

// MaxConnectivityMetadata bounds evergreen.connectivity[].metadata.
const MaxConnectivityMetadata = 1024

// AutoIPPrefix starts the ids of detected connectivity entries.
const AutoIPPrefix = "AUTOIP_"

// Certmgr configures the group CA and the certificates it issues.
type Certmgr struct {
	// KeyAlgorithm is "ecdsa-p256" or "rsa-2048".
	KeyAlgorithm           string `json:"keyAlgorithm"`
	ServerCertValidityDays int    `json:"serverCertValidityDays"`
	CAValidityDays         int    `json:"caValidityDays"`
	DeviceCertValidityDays int    `json:"deviceCertValidityDays"`
	// HostNames are the DNS names and IP addresses in the MQTT server
	// certificate.
	HostNames []string `json:"hostNames"`
}

// Logging configures every daemon's log.
type Logging struct {
	// Level is debug, info, warn or error.
	Level        string `json:"level"`
	MaxFileBytes int64  `json:"maxFileBytes"`
	// MaxFiles is how many rotated files are kept.
	MaxFiles int `json:"maxFiles"`
}

// Supervisor configures how ggd starts, restarts and stops daemons.
type Supervisor struct {
	RestartBackoffInitialMs int `json:"restartBackoffInitialMs"`
	RestartBackoffMaxMs     int `json:"restartBackoffMaxMs"`
	// CrashLoopRestarts restarts within CrashLoopWindowSeconds mark a
	// daemon as crash-looping.
	CrashLoopRestarts      int `json:"crashLoopRestarts"`
	CrashLoopWindowSeconds int `json:"crashLoopWindowSeconds"`
	StartTimeoutMs         int `json:"startTimeoutMs"`
	StopTimeoutMs          int `json:"stopTimeoutMs"`
}

// OTA configures the ota daemon: which keys may sign update bundles and how
// large a bundle may be.
type OTA struct {
	// TrustedKeys are the public keys whose signatures the core accepts,
	// each "ed25519:<base64 of the 32-byte key>" (`ggctl ota keygen`
	// prints one). Empty: every update is refused.
	TrustedKeys []string `json:"trustedKeys,omitempty"`
	// MaxBundleBytes caps a bundle, downloaded or local: default 256 MiB,
	// 1 MiB..4 GiB.
	MaxBundleBytes int64 `json:"maxBundleBytes"`
	// AllowDowngrade installs an older version than the one running
	// without --force (the same version and broken versions still need it).
	AllowDowngrade bool `json:"allowDowngrade"`
}

// DefaultMaxBundleBytes is evergreen.ota.maxBundleBytes's default.
const DefaultMaxBundleBytes = 256 << 20

// DefaultCoreThingName is the core's name when coreThing.thingArn is absent.
const DefaultCoreThingName = "evergreen-core"

// MaxFileSize bounds config.json; anything larger is not a config file.
const MaxFileSize = 1 << 20

// Default listen addresses.
const (
	DefaultListenMQTT    = "0.0.0.0:8883"
	DefaultListenIPC     = "127.0.0.1:8000"
	DefaultListenStreams = "127.0.0.1:8088"
	DefaultListenBus     = "127.0.0.1:4222"
	DefaultListenHTTP    = "127.0.0.1:8090"
	// DefaultListenDiscovery is v1's discovery port (greengrass-ats...:8443).
	DefaultListenDiscovery = "0.0.0.0:8443"
)

var knownDaemons = []string{
	"bus", "certmgr", "broker", "shadow", "runtime", "streammgr",
	"deployagent", "ota", "secrets", "ipdetector",
}

// KnownDaemons returns the daemon names evergreen.daemons may list.
func KnownDaemons() []string { return append([]string(nil), knownDaemons...) }

//go:embed default.json
var defaultJSON []byte

// DefaultJSON returns the default config.json, the file written on first
// start. It parses to exactly Default().
func DefaultJSON() []byte { return append([]byte(nil), defaultJSON...) }

// Default returns a configuration with every default filled in.
func Default() *Config {
	c := &Config{
		CoreThing: CoreThing{
			IotMqttPort:                8883,
			IotHttpPort:                8443,
			GgHttpPort:                 8443,
			GgMqttPort:                 8883,
			KeepAlive:                  600,
			MqttOperationTimeout:       5,
			GgDaemonPort:               8000,
			SystemComponentAuthTimeout: 5000,
		},
		Runtime: Runtime{
			MaxWorkItemCount:            1024,
			MaxConcurrentLimit:          25,
			LruSize:                     25,
			MountAllBlockDevices:        "no",
			AllowFunctionsToRunAsRoot:   "no",
			PostStartHealthCheckTimeout: 30000,
		},
		MqttMaxConnectionRetryInterval: 60,
		System:                         System{ShadowSyncTimeout: 5},
		Evergreen: Evergreen{
			Listen: Listen{
				MQTT:      DefaultListenMQTT,
				IPC:       DefaultListenIPC,
				Streams:   DefaultListenStreams,
				Bus:       DefaultListenBus,
				HTTP:      DefaultListenHTTP,
				Discovery: DefaultListenDiscovery,
			},
			Certmgr: Certmgr{
				KeyAlgorithm:           "ecdsa-p256",
				ServerCertValidityDays: 7,
				CAValidityDays:         3650,
				DeviceCertValidityDays: 365,
				HostNames:              []string{"localhost"},
			},
			IPDetector: IPDetector{AutoDetect: true},
			Shadow:     Shadow{MaxStateBytes: 8192},
			Streams: Streams{AuthenticateClient: true, ExporterThreadPoolSize: 5,
				S3MultipartMinPartSizeBytes: 5242880},
			Runtime: EvergreenRuntime{ContainerdAddress: "/run/containerd/containerd.sock"},
			Logging: Logging{
				Level:        "info",
				MaxFileBytes: 1 << 20,
				MaxFiles:     3,
			},
			Supervisor: Supervisor{
				RestartBackoffInitialMs: 100,
				RestartBackoffMaxMs:     10000,
				CrashLoopRestarts:       5,
				CrashLoopWindowSeconds:  60,
				StartTimeoutMs:          10000,
				StopTimeoutMs:           5000,
			},
			OTA: OTA{MaxBundleBytes: DefaultMaxBundleBytes},
		},
	}
	c.Runtime.Cgroup.UseSystemd = "no"
	return c
}

// Parse decodes a config.json document: absent keys take their defaults,
// then every value is validated. The error, if any, is one line naming the
// offending key path.
func Parse(data []byte) (*Config, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("config is %d bytes, larger than the %d-byte limit", len(data), MaxFileSize)
	}
	root, err := parseTree(data)
	if err != nil {
		return nil, err
	}
	c := Default()
	d := &decoder{present: map[string]bool{}}
	if err := schemaFor(c).decode(d, root, ""); err != nil {
		return nil, err
	}
	derived := c.applyV1Ports(d.present)
	if err := c.Validate(); err != nil {
		for _, k := range derived {
			if strings.Contains(err.Error(), k.listen) {
				return nil, fmt.Errorf("%w (%s is set from %s)", err, k.listen, k.v1)
			}
		}
		return nil, err
	}
	return c, nil
}

type derivedPort struct{ listen, v1 string }

// applyV1Ports keeps v1 files working: an explicit coreThing.ggMqttPort or
// ggDaemonPort moves the matching listener unless evergreen.listen names it.
// It returns the listeners it moved.
func (c *Config) applyV1Ports(present map[string]bool) []derivedPort {
	var moved []derivedPort
	if present["coreThing.ggMqttPort"] && !present["evergreen.listen.mqtt"] {
		c.Evergreen.Listen.MQTT = withPort(c.Evergreen.Listen.MQTT, c.CoreThing.GgMqttPort)
		moved = append(moved, derivedPort{"evergreen.listen.mqtt", "coreThing.ggMqttPort"})
	}
	if present["coreThing.ggDaemonPort"] && !present["evergreen.listen.ipc"] {
		c.Evergreen.Listen.IPC = withPort(c.Evergreen.Listen.IPC, c.CoreThing.GgDaemonPort)
		moved = append(moved, derivedPort{"evergreen.listen.ipc", "coreThing.ggDaemonPort"})
	}
	return moved
}

func withPort(addr string, port int) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// Validate checks every value of c, as Parse does after decoding. Use it on
// a Config built or changed in code.
func (c *Config) Validate() error {
	return schemaFor(c).check("")
}

// Load reads and parses the config file at path and checks that every
// file:/// URI in crypto names an existing file. Errors start with path.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileError(path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fileError(path, err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := c.checkFiles("", false); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// fileError prefixes an os error with path once (os errors repeat the path).
func fileError(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", path, pe.Err)
	}
	return fmt.Errorf("%s: %w", path, err)
}

// CheckFiles checks that every credential file the config names exists:
// the file:/// URIs in crypto and, when crypto is absent, the legacy
// coreThing.caPath, certPath and keyPath, which are relative to certsDir
// (DIR/certs) unless absolute.
func (c *Config) CheckFiles(certsDir string) error {
	return c.checkFiles(certsDir, true)
}

func (c *Config) checkFiles(certsDir string, legacy bool) error {
	if cr := c.Crypto; cr != nil {
		uris := []struct{ path, uri string }{{"crypto.caPath", cr.CaPath}}
		if p := cr.Principals.IoTCertificate; p != nil {
			uris = append(uris,
				struct{ path, uri string }{"crypto.principals.IoTCertificate.privateKeyPath", p.PrivateKeyPath},
				struct{ path, uri string }{"crypto.principals.IoTCertificate.certificatePath", p.CertificatePath})
		}
		if p := cr.Principals.MQTTServerCertificate; p != nil {
			uris = append(uris, struct{ path, uri string }{"crypto.principals.MQTTServerCertificate.privateKeyPath", p.PrivateKeyPath})
		}
		if p := cr.Principals.SecretsManager; p != nil {
			uris = append(uris, struct{ path, uri string }{"crypto.principals.SecretsManager.privateKeyPath", p.PrivateKeyPath})
		}
		for _, u := range uris {
			if p, ok := FileURIPath(u.uri); ok {
				if err := checkFile(u.path, p); err != nil {
					return err
				}
			}
		}
		if p := cr.PKCS11; p != nil {
			if err := checkFile("crypto.PKCS11.P11Provider", p.P11Provider); err != nil {
				return err
			}
			if p.OpenSSLEngine != "" {
				if err := checkFile("crypto.PKCS11.OpenSSLEngine", p.OpenSSLEngine); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if !legacy {
		return nil
	}
	for _, l := range []struct{ path, file string }{
		{"coreThing.caPath", c.CoreThing.CaPath},
		{"coreThing.certPath", c.CoreThing.CertPath},
		{"coreThing.keyPath", c.CoreThing.KeyPath},
	} {
		if l.file == "" {
			continue
		}
		p := l.file
		if !filepath.IsAbs(p) {
			p = filepath.Join(certsDir, p)
		}
		if err := checkFile(l.path, p); err != nil {
			return err
		}
	}
	return nil
}

func checkFile(key, path string) error {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &fieldError{path: key, msg: "file " + path + " does not exist", err: err}
	case err != nil:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return &fieldError{path: key, msg: "file " + path + ": " + err.Error(), err: err}
	case st.IsDir():
		return &fieldError{path: key, msg: "file " + path + " is a directory"}
	}
	return nil
}

// FileURIPath returns the local path of a file:///absolute/path URI.
func FileURIPath(uri string) (string, bool) {
	if !strings.HasPrefix(uri, "file://") {
		return "", false
	}
	p, ok := parseFileURI(uri)
	if !ok {
		return "", false
	}
	return filepath.FromSlash(p), true
}

// WriteDefault writes DefaultJSON to path atomically (temp file in the same
// directory, fsync, publish, fsync the directory) with mode 0600, creating
// the parent directory with mode 0700. It never replaces an existing file:
// the error then wraps fs.ErrExist.
func WriteDefault(path string) error {
	return writeNew(path, defaultJSON)
}

func writeNew(path string, data []byte) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s: %w", path, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fileError(path, err)
	}
	dir := filepath.Dir(path)
	if err := mkdirDurable(dir); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fileError(path, err)
	}
	name := tmp.Name()
	if err := writeSync(tmp, data); err != nil {
		os.Remove(name)
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := publish(name, path); err != nil {
		os.Remove(name)
		return err
	}
	// Drop the temp name before the directory fsync so that it is not left
	// behind by a power cut.
	os.Remove(name)
	return syncDir(dir)
}

// publish gives the complete temp file its final name without replacing
// anything already there.
func publish(name, path string) error {
	// A hard link publishes the complete file under its name and, unlike
	// rename, fails when the name already exists, so a concurrent writer
	// can never be overwritten.
	if err := os.Link(name, path); err != nil {
		var le *os.LinkError
		if errors.As(err, &le) && errors.Is(le.Err, fs.ErrExist) {
			return fmt.Errorf("%s: %w", path, fs.ErrExist)
		}
		// The file system has no hard links: rename after a last check.
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("%s: %w", path, fs.ErrExist)
		}
		if err := os.Rename(name, path); err != nil {
			return fileError(path, err)
		}
	}
	return nil
}

// mkdirDurable creates dir and any missing parents with mode 0700 and
// fsyncs the parent of each one created, so the new entries survive a power
// cut.
func mkdirDurable(dir string) error {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fileError(d, err)
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fileError(dir, err)
	}
	for _, d := range missing {
		if err := syncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}

func writeSync(f *os.File, data []byte) error {
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync: %w", err)
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fileError(dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("%s: fsync: %w", dir, err)
	}
	return nil
}

// CoreThingName is the thing name in coreThing.thingArn, or
// DefaultCoreThingName when no ARN is configured.
func (c *Config) CoreThingName() string {
	if name, ok := thingName(c.CoreThing.ThingArn); ok {
		return name
	}
	return DefaultCoreThingName
}

// CloudEnabled reports whether a cloud endpoint (coreThing.iotHost) is set.
func (c *Config) CloudEnabled() bool { return c.CoreThing.IotHost != "" }

// StreamsRegion is the AWS region of the stream manager's AWS exports:
// evergreen.streams.aws.region, else the core thing ARN's region, else "".
func (c *Config) StreamsRegion() string {
	if r := c.Evergreen.Streams.AWS.Region; r != "" {
		return r
	}
	// arn:<partition>:iot:<region>:<account>:thing/<name>
	if parts := strings.SplitN(c.CoreThing.ThingArn, ":", 6); len(parts) == 6 && parts[2] == "iot" {
		return parts[3]
	}
	return ""
}

package config_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/evergreen-edge/evergreen/services/kit/config"
)

func TestParseRejects(t *testing.T) {
	// Each case names the key path the single-line error must contain and,
	// where the wording matters to users, the exact message.
	tests := []struct {
		name  string
		json  string
		path  string
		exact string
	}{
		{"unknown top-level key", `{"coreThin":{}}`, "coreThin", "unknown key coreThin (allowed: coreThing, runtime, managedRespawn, crypto, writeDirectory, pidFileDirectory, mqttMaxConnectionRetryInterval, system, evergreen)"},
		{"unknown nested key", `{"evergreen":{"listen":{"mqt":"0.0.0.0:1"}}}`, "evergreen.listen.mqt", "unknown key evergreen.listen.mqt (allowed: mqtt, ipc, streams, bus, http, discovery, grpc)"},
		{"unknown key differing in case", `{"coreThing":{"KeepAlive":600}}`, "coreThing.KeepAlive", `unknown key coreThing.KeepAlive (did you mean "keepAlive"?)`},
		{"unknown key with a newline", "{\"evergreen\":{\"listen\":{\"a\\nb\":\"x\"}}}", `evergreen.listen."a\nb"`, ""},
		{"duplicate key", `{"coreThing":{"keepAlive":600,"keepAlive":60}}`, "coreThing.keepAlive", "duplicate key coreThing.keepAlive"},
		{"string for integer", `{"coreThing":{"keepAlive":"600"}}`, "coreThing.keepAlive", `coreThing.keepAlive: "600" has the wrong type: want integer`},
		{"fraction for integer", `{"coreThing":{"keepAlive":600.5}}`, "coreThing.keepAlive", `coreThing.keepAlive: 600.5 has the wrong type: want integer`},
		{"exponent for integer", `{"coreThing":{"keepAlive":6e2}}`, "coreThing.keepAlive", `coreThing.keepAlive: 6e2 has the wrong type: want integer`},
		{"integer overflow", `{"coreThing":{"keepAlive":99999999999999999999}}`, "coreThing.keepAlive", `coreThing.keepAlive: 99999999999999999999 is out of range 30..1200`},
		{"keepAlive low", `{"coreThing":{"keepAlive":29}}`, "coreThing.keepAlive", "coreThing.keepAlive: 29 is out of range 30..1200"},
		{"keepAlive high", `{"coreThing":{"keepAlive":1201}}`, "coreThing.keepAlive", ""},
		{"keepAlive null", `{"coreThing":{"keepAlive":null}}`, "coreThing.keepAlive", "coreThing.keepAlive: null has the wrong type: want integer"},
		{"streams part size", `{"evergreen":{"streams":{"s3MultipartMinPartSizeBytes":1024}}}`, "evergreen.streams.s3MultipartMinPartSizeBytes", "evergreen.streams.s3MultipartMinPartSizeBytes: 1024 is out of range 5242880..5368709120"},
		{"streams pool", `{"evergreen":{"streams":{"exporterThreadPoolSize":0}}}`, "evergreen.streams.exporterThreadPoolSize", "evergreen.streams.exporterThreadPoolSize: 0 is out of range 1..64"},
		{"streams region", `{"evergreen":{"streams":{"aws":{"region":"US East"}}}}`, "evergreen.streams.aws.region", ""},
		{"streams endpoint", `{"evergreen":{"streams":{"aws":{"s3Endpoint":"minio:9000"}}}}`, "evergreen.streams.aws.s3Endpoint", ""},
		{"iotMqttPort", `{"coreThing":{"iotMqttPort":70000}}`, "coreThing.iotMqttPort", "coreThing.iotMqttPort: 70000 is out of range 1..65535"},
		{"iotHttpPort", `{"coreThing":{"iotHttpPort":80}}`, "coreThing.iotHttpPort", "coreThing.iotHttpPort: 80 is not one of 8443, 443"},
		{"ggHttpPort", `{"coreThing":{"ggHttpPort":8883}}`, "coreThing.ggHttpPort", ""},
		{"ggMqttPort privileged", `{"coreThing":{"ggMqttPort":883}}`, "coreThing.ggMqttPort", "coreThing.ggMqttPort: 883 is out of range 1024..65535"},
		{"ggDaemonPort high", `{"coreThing":{"ggDaemonPort":70000}}`, "coreThing.ggDaemonPort", ""},
		{"mqttOperationTimeout", `{"coreThing":{"mqttOperationTimeout":4}}`, "coreThing.mqttOperationTimeout", "coreThing.mqttOperationTimeout: 4 is out of range 5..300"},
		{"systemComponentAuthTimeout", `{"coreThing":{"systemComponentAuthTimeout":499}}`, "coreThing.systemComponentAuthTimeout", ""},
		{"thingArn not an ARN", `{"coreThing":{"thingArn":"core"}}`, "coreThing.thingArn", ""},
		{"thingArn bad account", `{"coreThing":{"thingArn":"arn:aws:iot:us-east-1:1234:thing/core"}}`, "coreThing.thingArn", ""},
		{"thingArn not a thing", `{"coreThing":{"thingArn":"arn:aws:iot:us-east-1:123456789012:policy/core"}}`, "coreThing.thingArn", ""},
		{"iotHost empty", `{"coreThing":{"iotHost":""}}`, "coreThing.iotHost", `coreThing.iotHost: "" is empty: give a value or leave the key out`},
		{"iotHost not a host", `{"coreThing":{"iotHost":"a b.example.com"}}`, "coreThing.iotHost", `coreThing.iotHost: "a b.example.com" is not a host name or IP address`},
		{"iotHost with newline", "{\"coreThing\":{\"iotHost\":\"a\\nb\"}}", "coreThing.iotHost", `coreThing.iotHost: "a\nb" is not a host name or IP address`},
		{"iotHost without identity", `{"coreThing":{"iotHost":"127.0.0.1"}}`, "coreThing.caPath", ""},
		{"iotHost with crypto but no IoTCertificate", `{"coreThing":{"iotHost":"127.0.0.1"},"crypto":{"caPath":"file:///ca.pem"}}`, "crypto.principals.IoTCertificate", ""},
		{"ggHost", `{"coreThing":{"ggHost":"-bad.example.com"}}`, "coreThing.ggHost", ""},
		{"legacy certPath empty", `{"coreThing":{"certPath":""}}`, "coreThing.certPath", ""},
		{"networkProxy without proxy", `{"coreThing":{"networkProxy":{}}}`, "coreThing.networkProxy.proxy.url", "coreThing.networkProxy.proxy.url: is missing or empty: want an http:// or https:// URL"},
		{"proxy url scheme", `{"coreThing":{"networkProxy":{"proxy":{"url":"socks5://p:1080"}}}}`, "coreThing.networkProxy.proxy.url", `coreThing.networkProxy.proxy.url: "socks5://p:1080" is not an http:// or https:// URL`},
		{"proxy url port", `{"coreThing":{"networkProxy":{"proxy":{"url":"http://p:99999"}}}}`, "coreThing.networkProxy.proxy.url", ""},
		{"proxy unknown key", `{"coreThing":{"networkProxy":{"proxy":{"url":"http://p","user":"x"}}}}`, "coreThing.networkProxy.proxy.user", ""},
		{"coreThing null", `{"coreThing":null}`, "coreThing", "coreThing: null has the wrong type: want object"},
		{"coreThing array", `{"coreThing":[1]}`, "coreThing", "coreThing: [...] has the wrong type: want object"},
		{"maxWorkItemCount", `{"runtime":{"maxWorkItemCount":0}}`, "runtime.maxWorkItemCount", "runtime.maxWorkItemCount: 0 is out of range 1..1000000"},
		{"lruSize", `{"runtime":{"lruSize":1001}}`, "runtime.lruSize", ""},
		{"maxConcurrentLimit below lruSize", `{"runtime":{"maxConcurrentLimit":10}}`, "runtime.maxConcurrentLimit", "runtime.maxConcurrentLimit: 10 is less than runtime.lruSize (25)"},
		{"mountAllBlockDevices", `{"runtime":{"mountAllBlockDevices":"true"}}`, "runtime.mountAllBlockDevices", `runtime.mountAllBlockDevices: "true" is not one of yes, no`},
		{"allowFunctionsToRunAsRoot bool", `{"runtime":{"allowFunctionsToRunAsRoot":true}}`, "runtime.allowFunctionsToRunAsRoot", "runtime.allowFunctionsToRunAsRoot: true has the wrong type: want string"},
		{"useSystemd case", `{"runtime":{"cgroup":{"useSystemd":"Yes"}}}`, "runtime.cgroup.useSystemd", ""},
		{"useSystemd empty", `{"runtime":{"cgroup":{"useSystemd":""}}}`, "runtime.cgroup.useSystemd", ""},
		{"cgroup unknown", `{"runtime":{"cgroup":{"useSystem":"yes"}}}`, "runtime.cgroup.useSystem", ""},
		{"postStartHealthCheckTimeout", `{"runtime":{"postStartHealthCheckTimeout":0}}`, "runtime.postStartHealthCheckTimeout", ""},
		{"managedRespawn string", `{"managedRespawn":"false"}`, "managedRespawn", `managedRespawn: "false" has the wrong type: want boolean`},
		{"writeDirectory relative", `{"writeDirectory":"gg/write"}`, "writeDirectory", `writeDirectory: "gg/write" is not an absolute path`},
		{"pidFileDirectory number", `{"pidFileDirectory":5}`, "pidFileDirectory", ""},
		{"mqttMaxConnectionRetryInterval", `{"mqttMaxConnectionRetryInterval":0}`, "mqttMaxConnectionRetryInterval", "mqttMaxConnectionRetryInterval: 0 is out of range 1..3600"},
		{"shadowSyncTimeout", `{"system":{"shadowSyncTimeout":61}}`, "system.shadowSyncTimeout", "system.shadowSyncTimeout: 61 is out of range 1..60"},
		{"crypto caPath plain path", `{"crypto":{"caPath":"/greengrass/certs/root.ca.pem"}}`, "crypto.caPath", `crypto.caPath: "/greengrass/certs/root.ca.pem" is not a file:///absolute/path or pkcs11: URI`},
		{"crypto caPath relative URI", `{"crypto":{"caPath":"file://certs/root.ca.pem"}}`, "crypto.caPath", ""},
		{"crypto principal missing certificate", `{"crypto":{"principals":{"IoTCertificate":{"privateKeyPath":"file:///k.pem"}}}}`, "crypto.principals.IoTCertificate.certificatePath", ""},
		{"crypto principal unknown", `{"crypto":{"principals":{"GGCertificate":{}}}}`, "crypto.principals.GGCertificate", ""},
		{"crypto pkcs11 without module", `{"crypto":{"principals":{"SecretsManager":{"privateKeyPath":"pkcs11:object=k;type=private"}}}}`, "crypto.principals.SecretsManager.privateKeyPath", ""},
		{"crypto P11Provider relative", `{"crypto":{"PKCS11":{"P11Provider":"libsofthsm2.so","slotLabel":"l","slotUserPin":"1"}}}`, "crypto.PKCS11.P11Provider", ""},
		{"crypto PKCS11 without pin", `{"crypto":{"PKCS11":{"P11Provider":"/usr/lib/softhsm/libsofthsm2.so","slotLabel":"l"}}}`, "crypto.PKCS11.slotUserPin", ""},
		{"listen without port", `{"evergreen":{"listen":{"mqtt":"localhost"}}}`, "evergreen.listen.mqtt", `evergreen.listen.mqtt: "localhost" is not host:port`},
		{"listen port too high", `{"evergreen":{"listen":{"ipc":"127.0.0.1:65536"}}}`, "evergreen.listen.ipc", `evergreen.listen.ipc: "127.0.0.1:65536" has port 65536, out of range 0..65535`},
		{"listen named port", `{"evergreen":{"listen":{"http":"127.0.0.1:http"}}}`, "evergreen.listen.http", ""},
		{"listen empty", `{"evergreen":{"listen":{"bus":""}}}`, "evergreen.listen.bus", ""},
		{"listen grpc bad", `{"evergreen":{"listen":{"grpc":"x:y"}}}`, "evergreen.listen.grpc", ""},
		{"listen clash", `{"evergreen":{"listen":{"streams":"127.0.0.1:8000"}}}`, "evergreen.listen.streams", `evergreen.listen.streams: "127.0.0.1:8000" uses the same port as evergreen.listen.ipc ("127.0.0.1:8000")`},
		{"listen clash with wildcard", `{"evergreen":{"listen":{"http":"127.0.0.1:8883"}}}`, "evergreen.listen.http", ""},
		{"listen discovery bad", `{"evergreen":{"listen":{"discovery":"8443"}}}`, "evergreen.listen.discovery", `evergreen.listen.discovery: "8443" is not host:port`},
		{"listen discovery empty", `{"evergreen":{"listen":{"discovery":""}}}`, "evergreen.listen.discovery", "evergreen.listen.discovery: is missing or empty: want host:port"},
		{"listen discovery clash", `{"evergreen":{"listen":{"discovery":"0.0.0.0:8883"}}}`, "evergreen.listen.discovery", `evergreen.listen.discovery: "0.0.0.0:8883" uses the same port as evergreen.listen.mqtt ("0.0.0.0:8883")`},
		{"autoDetect string", `{"evergreen":{"ipdetector":{"autoDetect":"yes"}}}`, "evergreen.ipdetector.autoDetect", `evergreen.ipdetector.autoDetect: "yes" has the wrong type: want boolean`},
		{"ipdetector unknown", `{"evergreen":{"ipdetector":{"autodetect":true}}}`, "evergreen.ipdetector.autodetect", `unknown key evergreen.ipdetector.autodetect (did you mean "autoDetect"?)`},
		{"shadow maxStateBytes low", `{"evergreen":{"shadow":{"maxStateBytes":100}}}`, "evergreen.shadow.maxStateBytes", `evergreen.shadow.maxStateBytes: 100 is out of range 1024..30720`},
		{"shadow unknown", `{"evergreen":{"shadow":{"maxBytes":9000}}}`, "evergreen.shadow.maxBytes", ""},
		{"connectivity object", `{"evergreen":{"connectivity":{"id":"a"}}}`, "evergreen.connectivity", `evergreen.connectivity: {...} has the wrong type: want array of objects`},
		{"connectivity element string", `{"evergreen":{"connectivity":["10.0.0.1"]}}`, "evergreen.connectivity[0]", `evergreen.connectivity[0]: "10.0.0.1" has the wrong type: want object`},
		{"connectivity unknown key", `{"evergreen":{"connectivity":[{"id":"a","hostAddress":"10.0.0.1","portNumber":8883,"Metadata":""}]}}`, "evergreen.connectivity[0].Metadata", `unknown key evergreen.connectivity[0].Metadata (did you mean "metadata"?)`},
		{"connectivity id missing", `{"evergreen":{"connectivity":[{"hostAddress":"10.0.0.1","portNumber":8883}]}}`, "evergreen.connectivity[0].id", "evergreen.connectivity[0].id: is missing or empty: want 1..128 characters of a-z A-Z 0-9 : _ - ."},
		{"connectivity id chars", `{"evergreen":{"connectivity":[{"id":"lan ip","hostAddress":"10.0.0.1","portNumber":8883}]}}`, "evergreen.connectivity[0].id", `evergreen.connectivity[0].id: "lan ip" is not 1..128 characters of a-z A-Z 0-9 : _ - .`},
		{"connectivity id too long", `{"evergreen":{"connectivity":[{"id":"` + strings.Repeat("a", 129) + `","hostAddress":"10.0.0.1","portNumber":8883}]}}`, "evergreen.connectivity[0].id", ""},
		{"connectivity id reserved", `{"evergreen":{"connectivity":[{"id":"AUTOIP_10.0.0.1_0","hostAddress":"10.0.0.1","portNumber":8883}]}}`, "evergreen.connectivity[0].id", ""},
		{"connectivity id repeated", `{"evergreen":{"connectivity":[{"id":"a","hostAddress":"10.0.0.1","portNumber":8883},{"id":"a","hostAddress":"10.0.0.2","portNumber":8883}]}}`, "evergreen.connectivity[1].id", `evergreen.connectivity[1].id: "a" repeats evergreen.connectivity[0].id`},
		{"connectivity host missing", `{"evergreen":{"connectivity":[{"id":"a","portNumber":8883}]}}`, "evergreen.connectivity[0].hostAddress", "evergreen.connectivity[0].hostAddress: is missing or empty: want an IP address or a DNS name"},
		{"connectivity host bad", `{"evergreen":{"connectivity":[{"id":"a","hostAddress":"http://gw","portNumber":8883}]}}`, "evergreen.connectivity[0].hostAddress", `evergreen.connectivity[0].hostAddress: "http://gw" is not a host name or IP address`},
		{"connectivity host with zone", `{"evergreen":{"connectivity":[{"id":"a","hostAddress":"fe80::1%eth0","portNumber":8883}]}}`, "evergreen.connectivity[0].hostAddress", ""},
		{"connectivity port missing", `{"evergreen":{"connectivity":[{"id":"a","hostAddress":"10.0.0.1"}]}}`, "evergreen.connectivity[0].portNumber", "evergreen.connectivity[0].portNumber: is missing: want a port number 1..65535"},
		{"connectivity port zero", `{"evergreen":{"connectivity":[{"id":"a","hostAddress":"10.0.0.1","portNumber":0}]}}`, "evergreen.connectivity[0].portNumber", "evergreen.connectivity[0].portNumber: 0 is out of range 1..65535"},
		{"connectivity port high", `{"evergreen":{"connectivity":[{"id":"a","hostAddress":"10.0.0.1","portNumber":65536}]}}`, "evergreen.connectivity[0].portNumber", "evergreen.connectivity[0].portNumber: 65536 is out of range 1..65535"},
		{"connectivity port string", `{"evergreen":{"connectivity":[{"id":"a","hostAddress":"10.0.0.1","portNumber":"8883"}]}}`, "evergreen.connectivity[0].portNumber", ""},
		{"connectivity metadata long", `{"evergreen":{"connectivity":[{"id":"a","hostAddress":"10.0.0.1","portNumber":8883,"metadata":"` + strings.Repeat("m", 1025) + `"}]}}`, "evergreen.connectivity[0].metadata", ""},
		{"ota key no prefix", `{"evergreen":{"ota":{"trustedKeys":["AAAA"]}}}`, "evergreen.ota.trustedKeys[0]", `evergreen.ota.trustedKeys[0]: "AAAA" is not "ed25519:<base64 of a 32-byte public key>"`},
		{"ota key short", `{"evergreen":{"ota":{"trustedKeys":["ed25519:AAAA"]}}}`, "evergreen.ota.trustedKeys[0]", ""},
		{"ota key repeated", `{"evergreen":{"ota":{"trustedKeys":["ed25519:` + otaKey + `","ed25519:` + otaKey + `"]}}}`, "evergreen.ota.trustedKeys[1]", ""},
		{"ota maxBundleBytes", `{"evergreen":{"ota":{"maxBundleBytes":1000}}}`, "evergreen.ota.maxBundleBytes", "evergreen.ota.maxBundleBytes: 1000 is out of range 1048576..4294967296"},
		{"ota allowDowngrade", `{"evergreen":{"ota":{"allowDowngrade":"yes"}}}`, "evergreen.ota.allowDowngrade", ""},
		{"keyAlgorithm", `{"evergreen":{"certmgr":{"keyAlgorithm":"rsa-4096"}}}`, "evergreen.certmgr.keyAlgorithm", `evergreen.certmgr.keyAlgorithm: "rsa-4096" is not one of ecdsa-p256, rsa-2048`},
		{"serverCertValidityDays", `{"evergreen":{"certmgr":{"serverCertValidityDays":6}}}`, "evergreen.certmgr.serverCertValidityDays", "evergreen.certmgr.serverCertValidityDays: 6 is out of range 7..30"},
		{"caValidityDays", `{"evergreen":{"certmgr":{"caValidityDays":7301}}}`, "evergreen.certmgr.caValidityDays", ""},
		{"deviceCertValidityDays", `{"evergreen":{"certmgr":{"deviceCertValidityDays":0}}}`, "evergreen.certmgr.deviceCertValidityDays", ""},
		{"hostNames empty", `{"evergreen":{"certmgr":{"hostNames":[]}}}`, "evergreen.certmgr.hostNames", "evergreen.certmgr.hostNames: is empty: want at least one entry"},
		{"hostNames bad name", `{"evergreen":{"certmgr":{"hostNames":["localhost","bad name"]}}}`, "evergreen.certmgr.hostNames[1]", `evergreen.certmgr.hostNames[1]: "bad name" is not a DNS name or IP address`},
		{"hostNames number", `{"evergreen":{"certmgr":{"hostNames":[1]}}}`, "evergreen.certmgr.hostNames[0]", "evergreen.certmgr.hostNames[0]: 1 has the wrong type: want string"},
		{"hostNames repeated", `{"evergreen":{"certmgr":{"hostNames":["a","a"]}}}`, "evergreen.certmgr.hostNames[1]", ""},
		{"hostNames string", `{"evergreen":{"certmgr":{"hostNames":"localhost"}}}`, "evergreen.certmgr.hostNames", ""},
		{"logging level", `{"evergreen":{"logging":{"level":"verbose"}}}`, "evergreen.logging.level", `evergreen.logging.level: "verbose" is not one of debug, info, warn, error`},
		{"maxFileBytes", `{"evergreen":{"logging":{"maxFileBytes":1000}}}`, "evergreen.logging.maxFileBytes", "evergreen.logging.maxFileBytes: 1000 is out of range 65536..1073741824"},
		{"maxFiles", `{"evergreen":{"logging":{"maxFiles":21}}}`, "evergreen.logging.maxFiles", ""},
		{"crashLoopRestarts", `{"evergreen":{"supervisor":{"crashLoopRestarts":500}}}`, "evergreen.supervisor.crashLoopRestarts", "evergreen.supervisor.crashLoopRestarts: 500 is out of range 2..100"},
		{"restartBackoffInitialMs", `{"evergreen":{"supervisor":{"restartBackoffInitialMs":9}}}`, "evergreen.supervisor.restartBackoffInitialMs", ""},
		{"restartBackoffMaxMs below initial", `{"evergreen":{"supervisor":{"restartBackoffInitialMs":5000,"restartBackoffMaxMs":1000}}}`, "evergreen.supervisor.restartBackoffMaxMs", "evergreen.supervisor.restartBackoffMaxMs: 1000 is less than restartBackoffInitialMs (5000)"},
		{"crashLoopWindowSeconds", `{"evergreen":{"supervisor":{"crashLoopWindowSeconds":0}}}`, "evergreen.supervisor.crashLoopWindowSeconds", ""},
		{"startTimeoutMs", `{"evergreen":{"supervisor":{"startTimeoutMs":300001}}}`, "evergreen.supervisor.startTimeoutMs", ""},
		{"stopTimeoutMs", `{"evergreen":{"supervisor":{"stopTimeoutMs":99}}}`, "evergreen.supervisor.stopTimeoutMs", ""},
		{"daemons unknown", `{"evergreen":{"daemons":["brokr"]}}`, "evergreen.daemons[0]", `evergreen.daemons[0]: "brokr" is not one of bus, certmgr, broker, shadow, runtime, streammgr, deployagent, ota, secrets, ipdetector`},
		{"daemons repeated", `{"evergreen":{"daemons":["broker","bus","broker"]}}`, "evergreen.daemons[2]", `evergreen.daemons[2]: "broker" repeats evergreen.daemons[0]`},
		{"daemons string", `{"evergreen":{"daemons":"broker"}}`, "evergreen.daemons", `evergreen.daemons: "broker" has the wrong type: want array of strings`},
		{"top level array", `[]`, "top level", "top level: [...] has the wrong type: want object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.Parse([]byte(tc.json))
			if err == nil {
				t.Fatalf("Parse(%s) = %+v, want an error naming %s", tc.json, c, tc.path)
			}
			msg := err.Error()
			if strings.ContainsAny(msg, "\r\n") {
				t.Errorf("error spans lines: %q", msg)
			}
			if !strings.Contains(msg, tc.path) {
				t.Errorf("error %q does not name %s", msg, tc.path)
			}
			if tc.exact != "" && msg != tc.exact {
				t.Errorf("error\n got %s\nwant %s", msg, tc.exact)
			}
		})
	}
}

func TestParseSyntaxErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"{\n  \"coreThing\": {\"keepAlive\": 600,}\n}", "line 2, column"},
		{`{"coreThing": {`, "unexpected end of input"},
		{`{} {}`, "line 1, column"},
		{``, "config is empty"},
		{"  \n ", "config is empty"},
		{`{"a" 1}`, "line 1, column"},
	} {
		_, err := config.Parse([]byte(tc.in))
		if err == nil {
			t.Errorf("Parse(%q) succeeded", tc.in)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Parse(%q) = %q, want one line containing %q", tc.in, err, tc.want)
		}
	}
}

// otaKey is a 32-byte key in base64 (all zero bytes).
const otaKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

func TestOTATrustedKeyAccepted(t *testing.T) {
	c, err := config.Parse([]byte(`{"evergreen":{"ota":{"trustedKeys":["ed25519:` + otaKey + `"],"maxBundleBytes":1048576,"allowDowngrade":true}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if o := c.Evergreen.OTA; len(o.TrustedKeys) != 1 || o.MaxBundleBytes != 1<<20 || !o.AllowDowngrade {
		t.Fatalf("evergreen.ota = %+v", o)
	}
}

func TestParseTooLarge(t *testing.T) {
	big := append([]byte(`{"writeDirectory":"/`), bytes.Repeat([]byte("a"), config.MaxFileSize)...)
	big = append(big, `"}`...)
	if _, err := config.Parse(big); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("Parse of an oversized file: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	d := config.Default()
	if err := d.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"keepAlive", d.CoreThing.KeepAlive, 600},
		{"iotMqttPort", d.CoreThing.IotMqttPort, 8883},
		{"ggMqttPort", d.CoreThing.GgMqttPort, 8883},
		{"ggDaemonPort", d.CoreThing.GgDaemonPort, 8000},
		{"mqttOperationTimeout", d.CoreThing.MqttOperationTimeout, 5},
		{"systemComponentAuthTimeout", d.CoreThing.SystemComponentAuthTimeout, 5000},
		{"maxWorkItemCount", d.Runtime.MaxWorkItemCount, 1024},
		{"maxConcurrentLimit", d.Runtime.MaxConcurrentLimit, 25},
		{"lruSize", d.Runtime.LruSize, 25},
		{"postStartHealthCheckTimeout", d.Runtime.PostStartHealthCheckTimeout, 30000},
		{"allowFunctionsToRunAsRoot", d.Runtime.AllowFunctionsToRunAsRoot, "no"},
		{"mqttMaxConnectionRetryInterval", d.MqttMaxConnectionRetryInterval, 60},
		{"shadowSyncTimeout", d.System.ShadowSyncTimeout, 5},
		{"listen.mqtt", d.Evergreen.Listen.MQTT, "0.0.0.0:8883"},
		{"listen.ipc", d.Evergreen.Listen.IPC, "127.0.0.1:8000"},
		{"listen.streams", d.Evergreen.Listen.Streams, "127.0.0.1:8088"},
		{"listen.bus", d.Evergreen.Listen.Bus, "127.0.0.1:4222"},
		{"listen.http", d.Evergreen.Listen.HTTP, "127.0.0.1:8090"},
		{"listen.grpc", d.Evergreen.Listen.GRPC, ""},
		{"listen.discovery", d.Evergreen.Listen.Discovery, "0.0.0.0:8443"},
		{"ipdetector.autoDetect", d.Evergreen.IPDetector.AutoDetect, true},
		{"shadow.maxStateBytes", d.Evergreen.Shadow.MaxStateBytes, 8192},
		{"connectivity", d.Evergreen.Connectivity == nil, true},
		{"keyAlgorithm", d.Evergreen.Certmgr.KeyAlgorithm, "ecdsa-p256"},
		{"serverCertValidityDays", d.Evergreen.Certmgr.ServerCertValidityDays, 7},
		{"caValidityDays", d.Evergreen.Certmgr.CAValidityDays, 3650},
		{"deviceCertValidityDays", d.Evergreen.Certmgr.DeviceCertValidityDays, 365},
		{"hostNames", d.Evergreen.Certmgr.HostNames, []string{"localhost"}},
		{"level", d.Evergreen.Logging.Level, "info"},
		{"maxFileBytes", d.Evergreen.Logging.MaxFileBytes, int64(1048576)},
		{"maxFiles", d.Evergreen.Logging.MaxFiles, 3},
		{"restartBackoffInitialMs", d.Evergreen.Supervisor.RestartBackoffInitialMs, 100},
		{"restartBackoffMaxMs", d.Evergreen.Supervisor.RestartBackoffMaxMs, 10000},
		{"crashLoopRestarts", d.Evergreen.Supervisor.CrashLoopRestarts, 5},
		{"crashLoopWindowSeconds", d.Evergreen.Supervisor.CrashLoopWindowSeconds, 60},
		{"startTimeoutMs", d.Evergreen.Supervisor.StartTimeoutMs, 10000},
		{"stopTimeoutMs", d.Evergreen.Supervisor.StopTimeoutMs, 5000},
		{"ota.maxBundleBytes", d.Evergreen.OTA.MaxBundleBytes, int64(256 << 20)},
		{"ota.trustedKeys", d.Evergreen.OTA.TrustedKeys == nil, true},
		{"ota.allowDowngrade", d.Evergreen.OTA.AllowDowngrade, false},
		{"cloud", d.CloudEnabled(), false},
		{"crypto", d.Crypto == nil, true},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("default %s = %v, want %v", c.name, c.got, c.want)
		}
	}
	// Each call is independent: changing one result leaves the next alone.
	d.Evergreen.Certmgr.HostNames[0] = "changed"
	if config.Default().Evergreen.Certmgr.HostNames[0] != "localhost" {
		t.Error("Default shares its hostNames slice between calls")
	}
}

func TestDefaultJSONParsesToDefault(t *testing.T) {
	c, err := config.Parse(config.DefaultJSON())
	if err != nil {
		t.Fatalf("Parse(DefaultJSON()) = %v", err)
	}
	if want := config.Default(); !reflect.DeepEqual(c, want) {
		t.Fatalf("Parse(DefaultJSON()) =\n%+v\nwant Default() =\n%+v", c, want)
	}
	empty, err := config.Parse([]byte(`{}`))
	if err != nil {
		t.Fatalf("Parse({}) = %v", err)
	}
	if !reflect.DeepEqual(empty, config.Default()) {
		t.Fatalf("Parse({}) = %+v, want Default()", empty)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	dir := t.TempDir()
	full := config.Default()
	full.CoreThing.ThingArn = "arn:aws:iot:eu-west-1:123456789012:thing/gw-1"
	full.CoreThing.IotHost = "abc123-ats.iot.eu-west-1.amazonaws.com"
	full.CoreThing.NetworkProxy = &config.NetworkProxy{
		NoProxyAddresses: "localhost,10.0.0.0/8",
		Proxy:            config.Proxy{URL: "https://proxy.example.com:3128", Username: "u", Password: "p"},
	}
	full.Crypto = &config.Crypto{
		CaPath: "file://" + dir + "/ca.pem",
		Principals: config.Principals{
			IoTCertificate:        &config.KeyCert{PrivateKeyPath: "file://" + dir + "/k.pem", CertificatePath: "file://" + dir + "/c.pem"},
			MQTTServerCertificate: &config.KeyOnly{PrivateKeyPath: "file://" + dir + "/k.pem"},
		},
	}
	full.Evergreen.Listen.GRPC = "0.0.0.0:0"
	full.Evergreen.Listen.Discovery = "127.0.0.1:0"
	full.Evergreen.IPDetector.AutoDetect = false
	full.Evergreen.Connectivity = []config.ConnectivityEntry{
		{ID: "lan", HostAddress: "192.168.1.5", PortNumber: 8883},
		{ID: "dns", HostAddress: "gw.example.com", PortNumber: 443, Metadata: "via the reverse proxy"},
	}
	full.Evergreen.Daemons = []string{"bus", "certmgr", "broker"}
	for name, c := range map[string]*config.Config{"default": config.Default(), "full": full} {
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := config.Parse(b)
		if err != nil {
			t.Fatalf("%s: Parse(Marshal(c)) = %v\n%s", name, err, b)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("%s: round trip changed the config:\n got %+v\nwant %+v", name, got, c)
		}
	}
}

func TestParseAccepts(t *testing.T) {
	for _, in := range []string{
		`{"evergreen":{"listen":{"mqtt":"[::1]:0","ipc":":0","http":"localhost:0","grpc":"0.0.0.0:9443"}}}`,
		`{"evergreen":{"listen":{"mqtt":"[fe80::1%eth0]:8883"}}}`,
		`{"evergreen":{"listen":{"discovery":"127.0.0.1:0","http":"127.0.0.1:0"}}}`,
		`{"evergreen":{"listen":{"discovery":"127.0.0.1:8443","http":"127.0.0.2:8443"}}}`,
		`{"evergreen":{"certmgr":{"hostNames":["localhost","127.0.0.1","::1","*.local.example","gw_1.lan"]}}}`,
		`{"evergreen":{"daemons":null}}`,
		`{"crypto":null}`,
		`{"coreThing":{"networkProxy":null}}`,
		`{"coreThing":{"networkProxy":{"noProxyAddresses":"localhost","proxy":{"url":"http://user:pw@10.0.0.1:3128"}}}}`,
		`{"coreThing":{"thingArn":"arn:aws-cn:iot:cn-north-1:123456789012:thing/a:b_c-d"}}`,
		`{"coreThing":{"iotHost":"mosquitto","certPath":"core.pem","keyPath":"core.key","caPath":"ca.pem"}}`,
		`{"crypto":{"PKCS11":{"P11Provider":"/usr/lib/softhsm/libsofthsm2.so","slotLabel":"gg","slotUserPin":"1234"},"principals":{"IoTCertificate":{"privateKeyPath":"pkcs11:object=core;type=private","certificatePath":"file:///gg/core.pem"}}}}`,
		`{"runtime":{"lruSize":50,"maxConcurrentLimit":50}}`,
		"\xEF\xBB\xBF{}",
	} {
		if _, err := config.Parse([]byte(in)); err != nil {
			t.Errorf("Parse(%s) = %v", in, err)
		}
	}
}

// Manual connectivity entries keep their order and values; autoDetect can
// be turned off; null and [] mean no entries.
func TestConnectivityEntries(t *testing.T) {
	c, err := config.Parse([]byte(`{"evergreen":{"ipdetector":{"autoDetect":false},"connectivity":[
		{"id":"localhost_127.0.0.1_0","hostAddress":"127.0.0.1","portNumber":8883,"metadata":""},
		{"id":"site:gw-1","hostAddress":"gw-1.site.example","portNumber":1,"metadata":"` + strings.Repeat("m", 1024) + `"},
		{"id":"v6","hostAddress":"2001:db8::5","portNumber":65535}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []config.ConnectivityEntry{
		{ID: "localhost_127.0.0.1_0", HostAddress: "127.0.0.1", PortNumber: 8883},
		{ID: "site:gw-1", HostAddress: "gw-1.site.example", PortNumber: 1, Metadata: strings.Repeat("m", 1024)},
		{ID: "v6", HostAddress: "2001:db8::5", PortNumber: 65535},
	}
	if !reflect.DeepEqual(c.Evergreen.Connectivity, want) {
		t.Fatalf("connectivity = %+v\nwant %+v", c.Evergreen.Connectivity, want)
	}
	if c.Evergreen.IPDetector.AutoDetect {
		t.Error("autoDetect false was not kept")
	}
	for _, in := range []string{`{"evergreen":{"connectivity":null}}`, `{"evergreen":{"connectivity":[]}}`} {
		c, err := config.Parse([]byte(in))
		if err != nil || c.Evergreen.Connectivity != nil {
			t.Errorf("Parse(%s) = %+v, %v; want no entries", in, c.Evergreen.Connectivity, err)
		}
	}
	// A config built in code is checked the same way.
	c = config.Default()
	c.Evergreen.Connectivity = []config.ConnectivityEntry{{ID: "a", HostAddress: "10.0.0.1"}}
	if err := c.Validate(); err == nil || err.Error() != "evergreen.connectivity[0].portNumber: is missing: want a port number 1..65535" {
		t.Fatalf("Validate = %v", err)
	}
}

// v1Example is the console-generated 1.11 file of ggv1-compat.md section 4.1
// with its placeholders filled in; CERTS is replaced by a folder that holds
// the files.
const v1Example = `{"coreThing":{"caPath":"root.ca.pem","certPath":"hash.cert.pem","keyPath":"hash.private.key","thingArn":"arn:aws:iot:us-west-2:123456789012:thing/core","iotHost":"a1b2c3d4e5f6g7-ats.iot.us-west-2.amazonaws.com","ggHost":"greengrass-ats.iot.us-west-2.amazonaws.com","keepAlive":600,"ggDaemonPort":8000,"systemComponentAuthTimeout":5000},"runtime":{"maxWorkItemCount":1024,"maxConcurrentLimit":25,"lruSize":25,"mountAllBlockDevices":"no","cgroup":{"useSystemd":"yes"}},"managedRespawn":false,"crypto":{"principals":{"SecretsManager":{"privateKeyPath":"file://CERTS/hash.private.key"},"IoTCertificate":{"privateKeyPath":"file://CERTS/hash.private.key","certificatePath":"file://CERTS/hash.cert.pem"}},"caPath":"file://CERTS/root.ca.pem"},"writeDirectory":"/var/greengrass/write","pidFileDirectory":"/var/run"}`

func writeV1Example(t *testing.T, certs []string) (path, certsDir string) {
	t.Helper()
	root := t.TempDir()
	certsDir = filepath.Join(root, "certs")
	if err := os.MkdirAll(certsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range certs {
		if err := os.WriteFile(filepath.Join(certsDir, name), []byte("pem"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path = filepath.Join(root, "config", "config.json")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	data := strings.ReplaceAll(v1Example, "CERTS", certsDir)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, certsDir
}

func TestLoadV1Example(t *testing.T) {
	path, certsDir := writeV1Example(t, []string{"root.ca.pem", "hash.cert.pem", "hash.private.key"})
	c, err := config.Load(path)
	if err != nil {
		t.Fatalf("Load(v1 example) = %v", err)
	}
	if err := c.CheckFiles(certsDir); err != nil {
		t.Fatalf("CheckFiles = %v", err)
	}
	if got := c.CoreThingName(); got != "core" {
		t.Errorf("CoreThingName() = %q, want core", got)
	}
	if !c.CloudEnabled() {
		t.Error("CloudEnabled() = false with iotHost set")
	}
	if c.Runtime.Cgroup.UseSystemd != "yes" || c.Runtime.AllowFunctionsToRunAsRoot != "no" {
		t.Errorf("runtime = %+v", c.Runtime)
	}
	if c.Crypto == nil || c.Crypto.Principals.IoTCertificate == nil || c.Crypto.Principals.MQTTServerCertificate != nil {
		t.Fatalf("crypto = %+v", c.Crypto)
	}
	if p, ok := config.FileURIPath(c.Crypto.Principals.IoTCertificate.CertificatePath); !ok || p != filepath.Join(certsDir, "hash.cert.pem") {
		t.Errorf("FileURIPath(certificatePath) = %q, %v", p, ok)
	}
	if c.Evergreen.Listen.IPC != "127.0.0.1:8000" || c.Evergreen.Listen.MQTT != "0.0.0.0:8883" {
		t.Errorf("listen = %+v", c.Evergreen.Listen)
	}
	if c.CoreThing.IotMqttPort != 8883 || c.MqttMaxConnectionRetryInterval != 60 {
		t.Errorf("absent keys did not take defaults: %+v", c)
	}
}

func TestLoadMissingCredential(t *testing.T) {
	path, certsDir := writeV1Example(t, []string{"root.ca.pem", "hash.private.key"})
	_, err := config.Load(path)
	want := path + ": crypto.principals.IoTCertificate.certificatePath: file " + filepath.Join(certsDir, "hash.cert.pem") + " does not exist"
	if err == nil || err.Error() != want {
		t.Fatalf("Load = %v\nwant %s", err, want)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error does not wrap fs.ErrNotExist: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "config.json")
	_, err := config.Load(missing)
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), missing+": ") {
		t.Fatalf("Load(missing) = %v, want fs.ErrNotExist prefixed with the path", err)
	}

	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"evergreen":{"supervisor":{"crashLoopRestarts":500}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = config.Load(bad)
	if want := bad + ": evergreen.supervisor.crashLoopRestarts: 500 is out of range 2..100"; err == nil || err.Error() != want {
		t.Fatalf("Load(bad) = %v, want %s", err, want)
	}

	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, bytes.Repeat([]byte(" "), config.MaxFileSize+10), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err = config.Load(big); err == nil || !strings.HasPrefix(err.Error(), big+": ") || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("Load(big) = %v", err)
	}
}

func TestCheckFilesLegacy(t *testing.T) {
	certs := t.TempDir()
	c, err := config.Parse([]byte(`{"coreThing":{"caPath":"root.ca.pem","certPath":"core.cert.pem","keyPath":"` + filepath.Join(certs, "abs.key") + `","iotHost":"127.0.0.1"}}`))
	if err != nil {
		t.Fatal(err)
	}
	err = c.CheckFiles(certs)
	if want := "coreThing.caPath: file " + filepath.Join(certs, "root.ca.pem") + " does not exist"; err == nil || err.Error() != want {
		t.Fatalf("CheckFiles = %v, want %s", err, want)
	}
	for _, name := range []string{"root.ca.pem", "core.cert.pem"} {
		if err := os.WriteFile(filepath.Join(certs, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	err = c.CheckFiles(certs)
	if want := "coreThing.keyPath: file " + filepath.Join(certs, "abs.key") + " does not exist"; err == nil || err.Error() != want {
		t.Fatalf("CheckFiles = %v, want %s", err, want)
	}
	if err := os.Mkdir(filepath.Join(certs, "abs.key"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckFiles(certs); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("CheckFiles with a directory = %v", err)
	}
	if err := os.Remove(filepath.Join(certs, "abs.key")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certs, "abs.key"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.CheckFiles(certs); err != nil {
		t.Fatalf("CheckFiles with every file present = %v", err)
	}
	// Load checks only absolute file:/// URIs: legacy paths need DIR/certs.
	cfgPath := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(cfgPath, []byte(`{"coreThing":{"caPath":"nope.pem","certPath":"nope.pem","keyPath":"nope.key","iotHost":"127.0.0.1"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(cfgPath); err != nil {
		t.Fatalf("Load with legacy relative paths = %v", err)
	}
}

func TestEffectivePorts(t *testing.T) {
	tests := []struct {
		name, json, mqtt, ipc string
	}{
		{"defaults", `{}`, "0.0.0.0:8883", "127.0.0.1:8000"},
		{"v1 ports move the listeners", `{"coreThing":{"ggMqttPort":9883,"ggDaemonPort":9000}}`, "0.0.0.0:9883", "127.0.0.1:9000"},
		{"listen wins", `{"coreThing":{"ggMqttPort":9883,"ggDaemonPort":9000},"evergreen":{"listen":{"mqtt":"127.0.0.1:0","ipc":"127.0.0.1:0"}}}`, "127.0.0.1:0", "127.0.0.1:0"},
		{"each key on its own", `{"coreThing":{"ggMqttPort":9883,"ggDaemonPort":9000},"evergreen":{"listen":{"ipc":"127.0.0.1:7000"}}}`, "0.0.0.0:9883", "127.0.0.1:7000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.Parse([]byte(tc.json))
			if err != nil {
				t.Fatal(err)
			}
			if c.Evergreen.Listen.MQTT != tc.mqtt || c.Evergreen.Listen.IPC != tc.ipc {
				t.Fatalf("listen mqtt=%s ipc=%s, want %s %s", c.Evergreen.Listen.MQTT, c.Evergreen.Listen.IPC, tc.mqtt, tc.ipc)
			}
		})
	}
	// A derived port is validated like a written one.
	_, err := config.Parse([]byte(`{"coreThing":{"ggDaemonPort":8088}}`))
	if want := `evergreen.listen.streams: "127.0.0.1:8088" uses the same port as evergreen.listen.ipc ("127.0.0.1:8088") (evergreen.listen.ipc is set from coreThing.ggDaemonPort)`; err == nil || err.Error() != want {
		t.Fatalf("ggDaemonPort clashing with streams: %v", err)
	}
}

func TestWriteDefault(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "var", "config", "config.json")
	if err := config.WriteDefault(path); err != nil {
		t.Fatalf("WriteDefault = %v", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", st.Mode().Perm())
	}
	dst, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if dst.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v, want 0700", dst.Mode().Perm())
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, config.DefaultJSON()) {
		t.Error("written file differs from DefaultJSON()")
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, config.Default()) {
		t.Error("Load(written default) != Default()")
	}

	// An existing file, whatever it holds, is never replaced.
	if err := os.WriteFile(path, []byte(`{"managedRespawn":true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := config.WriteDefault(path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("WriteDefault over an existing file = %v, want fs.ErrExist", err)
	}
	if got, _ := os.ReadFile(path); string(got) != `{"managedRespawn":true}` {
		t.Fatalf("existing file changed to %s", got)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("directory holds %v, want only config.json (no temp files)", entries)
	}
}

func TestWriteDefaultConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config", "config.json")
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = config.WriteDefault(path)
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, fs.ErrExist):
			t.Errorf("WriteDefault = %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d concurrent writers succeeded, want exactly 1", ok)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("directory holds %v, want only config.json", entries)
	}
}

func TestCoreThingName(t *testing.T) {
	for _, tc := range []struct{ arn, want string }{
		{"", "evergreen-core"},
		{"arn:aws:iot:us-east-1:123456789012:thing/MyCore", "MyCore"},
		{"arn:aws-us-gov:iot:us-gov-west-1:123456789012:thing/core_1-a", "core_1-a"},
		{"arn:aws:iot:eu-central-1:123456789012:thing/site:7", "site:7"},
		{"not an arn", "evergreen-core"},
	} {
		c := config.Default()
		c.CoreThing.ThingArn = tc.arn
		if got := c.CoreThingName(); got != tc.want {
			t.Errorf("CoreThingName(%q) = %q, want %q", tc.arn, got, tc.want)
		}
	}
	long := "arn:aws:iot:us-east-1:123456789012:thing/" + strings.Repeat("x", 125)
	if _, err := config.Parse([]byte(`{"coreThing":{"thingArn":"` + long + `"}}`)); err == nil || !strings.Contains(err.Error(), "124") {
		t.Errorf("thing name of 125 bytes: %v", err)
	}
}

func TestValidateBuiltConfig(t *testing.T) {
	c := config.Default()
	c.Evergreen.Supervisor.CrashLoopRestarts = 1
	if err := c.Validate(); err == nil || err.Error() != "evergreen.supervisor.crashLoopRestarts: 1 is out of range 2..100" {
		t.Fatalf("Validate = %v", err)
	}
	c = config.Default()
	c.Crypto = &config.Crypto{Principals: config.Principals{SecretsManager: &config.KeyOnly{}}}
	if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "crypto.principals.SecretsManager.privateKeyPath: is missing") {
		t.Fatalf("Validate = %v", err)
	}
}

func TestFileURIPath(t *testing.T) {
	for _, tc := range []struct {
		uri, path string
		ok        bool
	}{
		{"file:///greengrass/certs/root.ca.pem", "/greengrass/certs/root.ca.pem", true},
		{"file://localhost/etc/x.pem", "/etc/x.pem", true},
		{"file:///with%20space.pem", "/with space.pem", true},
		{"file://certs/x.pem", "", false},
		{"file:/x.pem", "", false},
		{"/x.pem", "", false},
		{"pkcs11:object=x", "", false},
		{"file:///", "", false},
	} {
		p, ok := config.FileURIPath(tc.uri)
		if p != tc.path || ok != tc.ok {
			t.Errorf("FileURIPath(%q) = %q, %v; want %q, %v", tc.uri, p, ok, tc.path, tc.ok)
		}
	}
}

func TestKnownDaemonsCopy(t *testing.T) {
	k := config.KnownDaemons()
	k[0] = "changed"
	if config.KnownDaemons()[0] == "changed" {
		t.Fatal("KnownDaemons exposes its backing array")
	}
}

// The stream manager's AWS region is the configured one, else the core
// thing ARN's.
func TestStreamsRegion(t *testing.T) {
	c, err := config.Parse([]byte(`{"coreThing":{"thingArn":"arn:aws:iot:eu-west-1:123456789012:thing/core"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.StreamsRegion(); got != "eu-west-1" {
		t.Fatalf("region from the thing ARN: %q", got)
	}
	c.Evergreen.Streams.AWS.Region = "us-west-2"
	if got := c.StreamsRegion(); got != "us-west-2" {
		t.Fatalf("configured region: %q", got)
	}
	if d := config.Default(); d.Evergreen.Streams.ExporterThreadPoolSize != 5 || d.Evergreen.Streams.S3MultipartMinPartSizeBytes != 5242880 {
		t.Fatalf("defaults: %+v", d.Evergreen.Streams)
	}
}

package config

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// The schema binds every key of config.json to a field of a Config and to
// its rule. decode type-checks the document and stores values in document
// order; check validates the stored values in schema order. Both use the
// same tree, so a rule is written once.

type value interface {
	decode(d *decoder, n *node, path string) error
	check(path string) error
}

type field struct {
	name string
	v    value
}

// object is a JSON object bound to a struct. Optional objects (pointer
// fields) have present, alloc and clear; required ones leave them nil.
type object struct {
	fields  func() []field
	present func() bool
	alloc   func()
	clear   func()
	post    func(path string) error
}

func (o *object) decode(d *decoder, n *node, path string) error {
	if n.kind == kindNull && o.clear != nil {
		o.clear()
		return nil
	}
	if n.kind != kindObject {
		return wrongType(path, n, "object")
	}
	if o.alloc != nil {
		o.alloc()
	}
	fields := o.fields()
	seen := make(map[string]bool, len(n.keys))
	for i, k := range n.keys {
		p := keyPath(path, k)
		if seen[k] {
			return errors.New("duplicate key " + p)
		}
		seen[k] = true
		j := slices.IndexFunc(fields, func(f field) bool { return f.name == k })
		if j < 0 {
			return errors.New(unknownKey(p, k, fields))
		}
		if err := fields[j].v.decode(d, n.elems[i], p); err != nil {
			return err
		}
		d.present[p] = true
	}
	return nil
}

// unknownKey is "unknown key a.b.c", with the nearest spelling when only
// the case differs, else the keys that are allowed there.
func unknownKey(path, key string, fields []field) string {
	names := make([]string, len(fields))
	for i, f := range fields {
		if strings.EqualFold(f.name, key) {
			return fmt.Sprintf("unknown key %s (did you mean %q?)", path, f.name)
		}
		names[i] = f.name
	}
	return fmt.Sprintf("unknown key %s (allowed: %s)", path, strings.Join(names, ", "))
}

func (o *object) check(path string) error {
	if o.present != nil && !o.present() {
		return nil
	}
	for _, f := range o.fields() {
		if err := f.v.check(keyPath(path, f.name)); err != nil {
			return err
		}
	}
	if o.post != nil {
		return o.post(path)
	}
	return nil
}

// integer is a JSON integer within lo..hi, or one of oneOf when set.
type integer[T int | int64] struct {
	p      *T
	lo, hi T
	oneOf  []T
}

func (v *integer[T]) decode(_ *decoder, n *node, path string) error {
	if n.kind != kindNumber {
		return wrongType(path, n, "integer")
	}
	i, err := strconv.ParseInt(n.s, 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return errorf(path, "%s %s", n, v.allowed())
	}
	if err != nil {
		return wrongType(path, n, "integer")
	}
	if int64(T(i)) != i {
		return errorf(path, "%s %s", n, v.allowed())
	}
	*v.p = T(i)
	return nil
}

func (v *integer[T]) allowed() string {
	if len(v.oneOf) > 0 {
		s := make([]string, len(v.oneOf))
		for i, x := range v.oneOf {
			s[i] = strconv.FormatInt(int64(x), 10)
		}
		return "is not one of " + strings.Join(s, ", ")
	}
	return fmt.Sprintf("is out of range %d..%d", v.lo, v.hi)
}

func (v *integer[T]) check(path string) error {
	x := *v.p
	if len(v.oneOf) > 0 {
		if slices.Contains(v.oneOf, x) {
			return nil
		}
	} else if x >= v.lo && x <= v.hi {
		return nil
	}
	return errorf(path, "%d %s", x, v.allowed())
}

func intRange(p *int, lo, hi int) *integer[int] { return &integer[int]{p: p, lo: lo, hi: hi} }
func intOneOf(p *int, xs ...int) *integer[int]  { return &integer[int]{p: p, oneOf: xs} }

type boolean struct{ p *bool }

func (v *boolean) decode(_ *decoder, n *node, path string) error {
	if n.kind != kindBool {
		return wrongType(path, n, "boolean")
	}
	*v.p = n.b
	return nil
}

func (v *boolean) check(string) error { return nil }

// text is a JSON string. An empty value is "not set": it is rejected when
// written in the file if notEmpty, and when stored if required. Otherwise
// valid returns what is wrong with a set value ("" when nothing is).
type text struct {
	p        *string
	notEmpty bool
	required string // the rule, shown when the value is missing
	valid    func(string) string
}

func (v *text) decode(_ *decoder, n *node, path string) error {
	if n.kind != kindString {
		return wrongType(path, n, "string")
	}
	if n.s == "" && v.notEmpty {
		return errorf(path, `"" is empty: give a value or leave the key out`)
	}
	*v.p = n.s
	return nil
}

func (v *text) check(path string) error {
	s := *v.p
	if s == "" {
		if v.required != "" {
			return errorf(path, "is missing or empty: want %s", v.required)
		}
		return nil
	}
	if v.valid == nil {
		return nil
	}
	if problem := v.valid(s); problem != "" {
		return errorf(path, "%s %s", quote(s), problem)
	}
	return nil
}

// optionalText is a string that may be absent but not empty when written.
func optionalText(p *string, valid func(string) string) *text {
	return &text{p: p, notEmpty: true, valid: valid}
}

// requiredText must be set, in the file or by default.
func requiredText(p *string, rule string, valid func(string) string) *text {
	return &text{p: p, required: rule, valid: valid}
}

// textList is an array of strings; null or [] stores nil.
type textList struct {
	p        *[]string
	nonEmpty bool
	valid    func(string) string
}

func (v *textList) decode(_ *decoder, n *node, path string) error {
	if n.kind == kindNull {
		*v.p = nil
		return nil
	}
	if n.kind != kindArray {
		return wrongType(path, n, "array of strings")
	}
	var out []string
	for i, e := range n.elems {
		if e.kind != kindString {
			return wrongType(indexPath(path, i), e, "string")
		}
		out = append(out, e.s)
	}
	*v.p = out
	return nil
}

func (v *textList) check(path string) error {
	xs := *v.p
	if v.nonEmpty && len(xs) == 0 {
		return errorf(path, "is empty: want at least one entry")
	}
	for i, s := range xs {
		if j := slices.Index(xs[:i], s); j >= 0 {
			return errorf(indexPath(path, i), "%s repeats %s", quote(s), indexPath(path, j))
		}
		if problem := v.valid(s); problem != "" {
			return errorf(indexPath(path, i), "%s %s", quote(s), problem)
		}
	}
	return nil
}

// objectList is an array of objects of one shape; null or [] stores nil.
// fields binds the keys of one element; post checks the list as a whole.
type objectList[T any] struct {
	p      *[]T
	fields func(*T) []field
	post   func(xs []T, path string) error
}

func (v *objectList[T]) decode(d *decoder, n *node, path string) error {
	if n.kind == kindNull {
		*v.p = nil
		return nil
	}
	if n.kind != kindArray {
		return wrongType(path, n, "array of objects")
	}
	var out []T
	if len(n.elems) > 0 {
		out = make([]T, len(n.elems))
	}
	for i, e := range n.elems {
		x := &out[i]
		o := &object{fields: func() []field { return v.fields(x) }}
		if err := o.decode(d, e, indexPath(path, i)); err != nil {
			return err
		}
	}
	*v.p = out
	return nil
}

func (v *objectList[T]) check(path string) error {
	xs := *v.p
	for i := range xs {
		x := &xs[i]
		o := &object{fields: func() []field { return v.fields(x) }}
		if err := o.check(indexPath(path, i)); err != nil {
			return err
		}
	}
	if v.post != nil {
		return v.post(xs, path)
	}
	return nil
}

// port is a required TCP port, 1..65535; 0 means the key is missing.
type port struct{ p *int }

func (v *port) decode(d *decoder, n *node, path string) error {
	if err := intRange(v.p, 0, 65535).decode(d, n, path); err != nil {
		return err
	}
	if *v.p == 0 {
		return errorf(path, "0 is out of range 1..65535")
	}
	return nil
}

func (v *port) check(path string) error {
	if *v.p == 0 {
		return errorf(path, "is missing: want a port number 1..65535")
	}
	return intRange(v.p, 1, 65535).check(path)
}

func oneOf(xs ...string) func(string) string {
	return func(s string) string {
		if slices.Contains(xs, s) {
			return ""
		}
		return "is not one of " + strings.Join(xs, ", ")
	}
}

var yesNo = oneOf("yes", "no")

const (
	credentialRule = "a file:///absolute/path or pkcs11: URI"
	listenRule     = "host:port"
	// connectivityIDRule is v1's Id rule plus the '.' of its own ids.
	connectivityIDRule = "1..128 characters of a-z A-Z 0-9 : _ - ."
)

func schemaFor(c *Config) *object {
	ct := &c.CoreThing
	rt := &c.Runtime
	eg := &c.Evergreen
	return &object{
		fields: func() []field {
			return []field{
				{"coreThing", &object{fields: func() []field { return coreThingFields(ct) }}},
				{"runtime", &object{
					fields: func() []field {
						return []field{
							{"maxWorkItemCount", intRange(&rt.MaxWorkItemCount, 1, 1000000)},
							{"maxConcurrentLimit", intRange(&rt.MaxConcurrentLimit, 1, 10000)},
							{"lruSize", intRange(&rt.LruSize, 1, 1000)},
							{"mountAllBlockDevices", requiredText(&rt.MountAllBlockDevices, "yes or no", yesNo)},
							{"allowFunctionsToRunAsRoot", requiredText(&rt.AllowFunctionsToRunAsRoot, "yes or no", yesNo)},
							{"cgroup", &object{fields: func() []field {
								return []field{{"useSystemd", requiredText(&rt.Cgroup.UseSystemd, "yes or no", yesNo)}}
							}}},
							{"postStartHealthCheckTimeout", intRange(&rt.PostStartHealthCheckTimeout, 1, 3600000)},
						}
					},
					post: func(path string) error {
						if rt.MaxConcurrentLimit < rt.LruSize {
							return errorf(keyPath(path, "maxConcurrentLimit"),
								"%d is less than runtime.lruSize (%d)", rt.MaxConcurrentLimit, rt.LruSize)
						}
						return nil
					},
				}},
				{"managedRespawn", &boolean{&c.ManagedRespawn}},
				{"crypto", cryptoObject(c)},
				{"writeDirectory", optionalText(&c.WriteDirectory, absolutePath)},
				{"pidFileDirectory", optionalText(&c.PidFileDirectory, absolutePath)},
				{"mqttMaxConnectionRetryInterval", intRange(&c.MqttMaxConnectionRetryInterval, 1, 3600)},
				{"system", &object{fields: func() []field {
					return []field{{"shadowSyncTimeout", intRange(&c.System.ShadowSyncTimeout, 1, 60)}}
				}}},
				{"evergreen", &object{fields: func() []field { return evergreenFields(eg) }}},
			}
		},
		post: func(string) error { return checkCloudIdentity(c) },
	}
}

func coreThingFields(ct *CoreThing) []field {
	return []field{
		{"caPath", optionalText(&ct.CaPath, nil)},
		{"certPath", optionalText(&ct.CertPath, nil)},
		{"keyPath", optionalText(&ct.KeyPath, nil)},
		{"thingArn", optionalText(&ct.ThingArn, thingArnProblem)},
		{"iotHost", optionalText(&ct.IotHost, hostProblem)},
		{"ggHost", optionalText(&ct.GgHost, hostProblem)},
		{"iotMqttPort", intRange(&ct.IotMqttPort, 1, 65535)}, // v1: 8883 or 443; any port, since the upstream may be any MQTT broker
		{"iotHttpPort", intOneOf(&ct.IotHttpPort, 8443, 443)},
		{"ggHttpPort", intOneOf(&ct.GgHttpPort, 8443, 443)},
		{"ggMqttPort", intRange(&ct.GgMqttPort, 1024, 65535)},
		{"keepAlive", intRange(&ct.KeepAlive, 30, 1200)},
		{"networkProxy", &object{
			present: func() bool { return ct.NetworkProxy != nil },
			alloc:   func() { ct.NetworkProxy = &NetworkProxy{} },
			clear:   func() { ct.NetworkProxy = nil },
			fields: func() []field {
				np := ct.NetworkProxy
				return []field{
					{"noProxyAddresses", &text{p: &np.NoProxyAddresses}},
					{"proxy", &object{fields: func() []field {
						return []field{
							{"url", requiredText(&np.Proxy.URL, "an http:// or https:// URL", proxyURLProblem)},
							{"username", &text{p: &np.Proxy.Username}},
							{"password", &text{p: &np.Proxy.Password}},
						}
					}}},
				}
			},
		}},
		{"mqttOperationTimeout", intRange(&ct.MqttOperationTimeout, 5, 300)},
		{"ggDaemonPort", intRange(&ct.GgDaemonPort, 1024, 65535)},
		{"systemComponentAuthTimeout", intRange(&ct.SystemComponentAuthTimeout, 500, 5000)},
	}
}

func cryptoObject(c *Config) *object {
	return &object{
		present: func() bool { return c.Crypto != nil },
		alloc:   func() { c.Crypto = &Crypto{} },
		clear:   func() { c.Crypto = nil },
		fields: func() []field {
			cr := c.Crypto
			pr := &cr.Principals
			return []field{
				{"caPath", optionalText(&cr.CaPath, credentialProblem)},
				{"PKCS11", &object{
					present: func() bool { return cr.PKCS11 != nil },
					alloc:   func() { cr.PKCS11 = &PKCS11{} },
					clear:   func() { cr.PKCS11 = nil },
					fields: func() []field {
						p := cr.PKCS11
						return []field{
							{"OpenSSLEngine", optionalText(&p.OpenSSLEngine, absolutePath)},
							{"P11Provider", requiredText(&p.P11Provider, "the absolute path of the PKCS#11 library", absolutePath)},
							{"slotLabel", requiredText(&p.SlotLabel, "the token's slot label", nil)},
							{"slotUserPin", requiredText(&p.SlotUserPin, "the token's user PIN", nil)},
						}
					},
				}},
				{"principals", &object{fields: func() []field {
					return []field{
						{"IoTCertificate", &object{
							present: func() bool { return pr.IoTCertificate != nil },
							alloc:   func() { pr.IoTCertificate = &KeyCert{} },
							clear:   func() { pr.IoTCertificate = nil },
							fields: func() []field {
								kc := pr.IoTCertificate
								return []field{
									{"privateKeyPath", requiredText(&kc.PrivateKeyPath, credentialRule, credentialProblem)},
									{"certificatePath", requiredText(&kc.CertificatePath, credentialRule, credentialProblem)},
								}
							},
						}},
						{"MQTTServerCertificate", keyOnlyObject(&pr.MQTTServerCertificate)},
						{"SecretsManager", keyOnlyObject(&pr.SecretsManager)},
					}
				}}},
			}
		},
		post: func(path string) error { return checkPKCS11Needed(c.Crypto, path) },
	}
}

func keyOnlyObject(pp **KeyOnly) *object {
	return &object{
		present: func() bool { return *pp != nil },
		alloc:   func() { *pp = &KeyOnly{} },
		clear:   func() { *pp = nil },
		fields: func() []field {
			return []field{{"privateKeyPath", requiredText(&(*pp).PrivateKeyPath, credentialRule, credentialProblem)}}
		},
	}
}

// checkPKCS11Needed: a pkcs11: URI means nothing without the module that
// serves it.
func checkPKCS11Needed(cr *Crypto, path string) error {
	if cr.PKCS11 != nil {
		return nil
	}
	uris := []struct{ key, uri string }{{"caPath", cr.CaPath}}
	if p := cr.Principals.IoTCertificate; p != nil {
		uris = append(uris,
			struct{ key, uri string }{"principals.IoTCertificate.privateKeyPath", p.PrivateKeyPath},
			struct{ key, uri string }{"principals.IoTCertificate.certificatePath", p.CertificatePath})
	}
	if p := cr.Principals.MQTTServerCertificate; p != nil {
		uris = append(uris, struct{ key, uri string }{"principals.MQTTServerCertificate.privateKeyPath", p.PrivateKeyPath})
	}
	if p := cr.Principals.SecretsManager; p != nil {
		uris = append(uris, struct{ key, uri string }{"principals.SecretsManager.privateKeyPath", p.PrivateKeyPath})
	}
	for _, u := range uris {
		if strings.HasPrefix(u.uri, "pkcs11:") {
			return errorf(path+"."+u.key, "%s needs crypto.PKCS11 (P11Provider, slotLabel, slotUserPin)", quote(u.uri))
		}
	}
	return nil
}

// checkCloudIdentity: the cloud connection is mutual TLS, so a core with
// iotHost needs a CA, a certificate and its key, from crypto when present
// (the legacy coreThing paths are then ignored, as in v1), else from the
// legacy paths.
func checkCloudIdentity(c *Config) error {
	if !c.CloudEnabled() {
		return nil
	}
	const why = "required when coreThing.iotHost is set"
	if cr := c.Crypto; cr != nil {
		if cr.CaPath == "" {
			return errorf("crypto.caPath", "is missing: %s (coreThing.caPath is ignored when crypto is present)", why)
		}
		if cr.Principals.IoTCertificate == nil {
			return errorf("crypto.principals.IoTCertificate", "is missing: %s (coreThing.certPath and keyPath are ignored when crypto is present)", why)
		}
		return nil
	}
	for _, k := range []struct{ key, v string }{
		{"caPath", c.CoreThing.CaPath},
		{"certPath", c.CoreThing.CertPath},
		{"keyPath", c.CoreThing.KeyPath},
	} {
		if k.v == "" {
			return errorf("coreThing."+k.key, "is missing: %s (or configure crypto.caPath and crypto.principals.IoTCertificate)", why)
		}
	}
	return nil
}

func connectivityFields(e *ConnectivityEntry) []field {
	return []field{
		{"id", requiredText(&e.ID, connectivityIDRule, connectivityIDProblem)},
		{"hostAddress", requiredText(&e.HostAddress, "an IP address or a DNS name", hostProblem)},
		{"portNumber", &port{&e.PortNumber}},
		{"metadata", &text{p: &e.Metadata, valid: metadataProblem}},
	}
}

// checkConnectivityIDs: devices tell the entries apart by id.
func checkConnectivityIDs(xs []ConnectivityEntry, path string) error {
	for i, e := range xs {
		for j := range i {
			if xs[j].ID == e.ID {
				return errorf(keyPath(indexPath(path, i), "id"), "%s repeats %s", quote(e.ID), keyPath(indexPath(path, j), "id"))
			}
		}
	}
	return nil
}

func evergreenFields(eg *Evergreen) []field {
	l := &eg.Listen
	cm := &eg.Certmgr
	lg := &eg.Logging
	sv := &eg.Supervisor
	return []field{
		{"listen", &object{
			fields: func() []field {
				return []field{
					{"mqtt", requiredText(&l.MQTT, listenRule, listenProblem)},
					{"ipc", requiredText(&l.IPC, listenRule, listenProblem)},
					{"streams", requiredText(&l.Streams, listenRule, listenProblem)},
					{"bus", requiredText(&l.Bus, listenRule, listenProblem)},
					{"http", requiredText(&l.HTTP, listenRule, listenProblem)},
					{"discovery", requiredText(&l.Discovery, listenRule, listenProblem)},
					{"grpc", &text{p: &l.GRPC, valid: listenProblem}},
				}
			},
			post: func(path string) error { return checkListenClash(l, path) },
		}},
		{"certmgr", &object{fields: func() []field {
			return []field{
				{"keyAlgorithm", requiredText(&cm.KeyAlgorithm, "ecdsa-p256 or rsa-2048", oneOf("ecdsa-p256", "rsa-2048"))},
				{"serverCertValidityDays", intRange(&cm.ServerCertValidityDays, 7, 30)},
				{"caValidityDays", intRange(&cm.CAValidityDays, 365, 7300)},
				{"deviceCertValidityDays", intRange(&cm.DeviceCertValidityDays, 1, 3650)},
				{"hostNames", &textList{p: &cm.HostNames, nonEmpty: true, valid: certNameProblem}},
			}
		}}},
		{"ipdetector", &object{fields: func() []field {
			return []field{{"autoDetect", &boolean{&eg.IPDetector.AutoDetect}}}
		}}},
		{"runtime", &object{fields: func() []field {
			return []field{{"containerdAddress", requiredText(&eg.Runtime.ContainerdAddress, "an absolute path to a unix socket", absolutePath)}}
		}}},
		{"shadow", &object{fields: func() []field {
			return []field{{"maxStateBytes", intRange(&eg.Shadow.MaxStateBytes, 1024, 30720)}}
		}}},
		{"streams", &object{fields: func() []field {
			st := &eg.Streams
			return []field{
				{"authenticateClient", &boolean{&st.AuthenticateClient}},
				{"exporterMaxBandwidthKbps", &integer[int64]{p: &st.ExporterMaxBandwidthKbps, lo: 0, hi: 100 << 20}},
				{"exporterThreadPoolSize", intRange(&st.ExporterThreadPoolSize, 1, 64)},
				{"s3MultipartMinPartSizeBytes", &integer[int64]{p: &st.S3MultipartMinPartSizeBytes, lo: 5242880, hi: 5 << 30}},
				{"aws", &object{fields: func() []field {
					a := &st.AWS
					return []field{
						{"region", optionalText(&a.Region, regionProblem)},
						{"s3Endpoint", optionalText(&a.S3Endpoint, endpointURLProblem)},
						{"kinesisEndpoint", optionalText(&a.KinesisEndpoint, endpointURLProblem)},
						{"iotAnalyticsEndpoint", optionalText(&a.IoTAnalyticsEndpoint, endpointURLProblem)},
						{"iotSiteWiseEndpoint", optionalText(&a.IoTSiteWiseEndpoint, endpointURLProblem)},
						{"s3ForcePathStyle", &boolean{&a.S3ForcePathStyle}},
					}
				}}},
			}
		}}},
		{"connectivity", &objectList[ConnectivityEntry]{
			p:      &eg.Connectivity,
			fields: connectivityFields,
			post:   checkConnectivityIDs,
		}},
		{"logging", &object{fields: func() []field {
			return []field{
				{"level", requiredText(&lg.Level, "debug, info, warn or error", oneOf("debug", "info", "warn", "error"))},
				{"maxFileBytes", &integer[int64]{p: &lg.MaxFileBytes, lo: 64 << 10, hi: 1 << 30}},
				{"maxFiles", intRange(&lg.MaxFiles, 1, 20)},
			}
		}}},
		{"supervisor", &object{
			fields: func() []field {
				return []field{
					{"restartBackoffInitialMs", intRange(&sv.RestartBackoffInitialMs, 10, 60000)},
					{"restartBackoffMaxMs", intRange(&sv.RestartBackoffMaxMs, 100, 600000)},
					{"crashLoopRestarts", intRange(&sv.CrashLoopRestarts, 2, 100)},
					{"crashLoopWindowSeconds", intRange(&sv.CrashLoopWindowSeconds, 1, 3600)},
					{"startTimeoutMs", intRange(&sv.StartTimeoutMs, 500, 300000)},
					{"stopTimeoutMs", intRange(&sv.StopTimeoutMs, 100, 300000)},
				}
			},
			post: func(path string) error {
				if sv.RestartBackoffMaxMs < sv.RestartBackoffInitialMs {
					return errorf(keyPath(path, "restartBackoffMaxMs"),
						"%d is less than restartBackoffInitialMs (%d)", sv.RestartBackoffMaxMs, sv.RestartBackoffInitialMs)
				}
				return nil
			},
		}},
		{"ota", &object{fields: func() []field {
			o := &eg.OTA
			return []field{
				{"trustedKeys", &textList{p: &o.TrustedKeys, valid: trustedKeyProblem}},
				{"maxBundleBytes", &integer[int64]{p: &o.MaxBundleBytes, lo: 1 << 20, hi: 4 << 30}},
				{"allowDowngrade", &boolean{&o.AllowDowngrade}},
			}
		}}},
		{"daemons", &textList{p: &eg.Daemons, valid: oneOf(knownDaemons...)}},
	}
}

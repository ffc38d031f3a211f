// Package endpoints records the addresses the suite actually listens on.
// Listen addresses in config.json may use port 0 ("pick a free one"); the
// supervisor picks the ports once, writes them to DIR/run/endpoints.json, and
// every daemon and tool reads the chosen addresses from there, so several
// suites can run side by side.
package endpoints

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"

	"github.com/evergreen-edge/evergreen/services/kit/atomicfile"
	"github.com/evergreen-edge/evergreen/services/kit/config"
)

// Endpoints are resolved listen addresses (host:port, port never 0).
type Endpoints struct {
	MQTT    string `json:"mqtt"`
	IPC     string `json:"ipc"`
	Streams string `json:"streams"`
	Bus     string `json:"bus"`
	HTTP    string `json:"http"`
	// Discovery is the ipdetector's HTTPS discovery API.
	Discovery string `json:"discovery"`
	// GRPC is the optional mutual-TLS gRPC listener; empty when off.
	GRPC string `json:"grpc,omitempty"`
}

// binding ties one configured listen address to its resolved field.
type binding struct {
	key string
	in  string
	out *string
}

func bindings(l config.Listen, e *Endpoints) []binding {
	return []binding{
		{"mqtt", l.MQTT, &e.MQTT},
		{"ipc", l.IPC, &e.IPC},
		{"streams", l.Streams, &e.Streams},
		{"bus", l.Bus, &e.Bus},
		{"http", l.HTTP, &e.HTTP},
		{"discovery", l.Discovery, &e.Discovery},
		{"grpc", l.GRPC, &e.GRPC},
	}
}

// Resolve replaces every port 0 in the configured listen addresses with a
// port that is free now. The probe listeners stay open until every port is
// picked, so two listeners never get the same port (closing each probe
// before the next let the kernel hand the same port out twice).
func Resolve(l config.Listen) (Endpoints, error) {
	var e Endpoints
	var probes []net.Listener
	defer func() {
		for _, p := range probes {
			p.Close()
		}
	}()
	for _, x := range bindings(l, &e) {
		if x.in == "" {
			continue
		}
		a, probe, err := resolveOne(x.in)
		if err != nil {
			return Endpoints{}, fmt.Errorf("evergreen.listen.%s: %w", x.key, err)
		}
		if probe != nil {
			probes = append(probes, probe)
		}
		*x.out = a
	}
	return e, nil
}

// resolveOne returns addr with port 0 replaced and the open listener that
// holds the port (nil when addr names its port).
func resolveOne(addr string) (string, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", nil, err
	}
	if port != "0" {
		return addr, nil, nil
	}
	probe := host
	if probe == "" || probe == "0.0.0.0" || probe == "::" {
		probe = ""
	}
	l, err := net.Listen("tcp", net.JoinHostPort(probe, "0"))
	if err != nil {
		return "", nil, fmt.Errorf("pick a free port for %s: %w", addr, err)
	}
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return net.JoinHostPort(host, p), l, nil
}

// Write stores e atomically at path.
func Write(path string, e Endpoints) error {
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(b, '\n'), 0o644)
}

// Read loads path; fs.ErrNotExist when absent.
func Read(path string) (Endpoints, error) {
	var e Endpoints
	b, err := os.ReadFile(path)
	if err != nil {
		return e, err
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return e, fmt.Errorf("%s: %w", path, err)
	}
	return e, nil
}

// Ensure returns the endpoints at path, resolving and writing them from l
// first when the file does not exist (a daemon started without the
// supervisor, e.g. by systemd). A file written before a listener existed
// (an upgrade added one) gets the missing addresses resolved and added;
// the ones it has are kept.
func Ensure(path string, l config.Listen) (Endpoints, error) {
	e, err := Read(path)
	if errors.Is(err, fs.ErrNotExist) {
		if e, err = Resolve(l); err != nil {
			return e, err
		}
		return e, Write(path, e)
	}
	if err != nil {
		return e, err
	}
	added := false
	var probes []net.Listener
	defer func() {
		for _, p := range probes {
			p.Close()
		}
	}()
	for _, x := range bindings(l, &e) {
		if x.in == "" || *x.out != "" {
			continue
		}
		a, probe, err := resolveOne(x.in)
		if err != nil {
			return Endpoints{}, fmt.Errorf("evergreen.listen.%s: %w", x.key, err)
		}
		if probe != nil {
			probes = append(probes, probe)
		}
		*x.out, added = a, true
	}
	if !added {
		return e, nil
	}
	return e, Write(path, e)
}

// Dialable turns a listen address into one a client can dial: a wildcard
// host becomes loopback.
func Dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

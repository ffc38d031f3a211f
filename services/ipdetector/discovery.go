package ipdetector

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	certmgrv1 "github.com/evergreen-edge/evergreen/proto/evergreen/certmgr/v1"
	ipdetectorv1 "github.com/evergreen-edge/evergreen/proto/evergreen/ipdetector/v1"
	"github.com/evergreen-edge/evergreen/services/kit/arn"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
)

// DiscoverPath prefixes the discovery request: GET DiscoverPath<thingName>.
const DiscoverPath = "/greengrass/discover/thing/"

// verifyTimeout bounds one VerifyDevice call to certmgr.
const verifyTimeout = 3 * time.Second

// revokedReason is certmgr's VerifyDevice reason for a removed device.
const revokedReason = "revoked"

// The v1 discovery response. The key spelling is what every device SDK
// parses: capitalised, except thingArn (ggv1-compat.md section 5).
type discoverResponse struct {
	GGGroups []discoverGroup `json:"GGGroups"`
}

type discoverGroup struct {
	GGGroupID string         `json:"GGGroupId"`
	Cores     []discoverCore `json:"Cores"`
	CAs       []string       `json:"CAs"`
}

type discoverCore struct {
	ThingArn     string                 `json:"thingArn"`
	Connectivity []discoverConnectivity `json:"Connectivity"`
}

type discoverConnectivity struct {
	ID          string `json:"Id"`
	HostAddress string `json:"HostAddress"`
	PortNumber  uint32 `json:"PortNumber"`
	Metadata    string `json:"Metadata"`
}

// discoveryServer is the HTTPS listener. Every response is written by hand
// on the hijacked connection (see writeResponse).
type discoveryServer struct {
	ln   net.Listener
	http *http.Server
	done chan struct{}
}

func startDiscovery(s *Service, addr string) (*discoveryServer, error) {
	root := s.env.Root
	cert := &reloadingPair{certFile: root.ServerCert(), keyFile: root.ServerKey(), log: s.env.Log}
	tcp, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("discovery listener: %w", err)
	}
	tlsCfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: cert.get,
		// Client certificates are checked per request, against certmgr's
		// registry and the group's certificate ids: devices with
		// certificates from AWS IoT or their maker's CA must get through
		// the handshake.
		ClientAuth: tls.RequireAnyClientCert,
		// x-amzn-http-ca is what SDKs offer when they reach discovery on
		// port 443.
		NextProtos: []string{"http/1.1", "x-amzn-http-ca"},
	}
	d := &discoveryServer{ln: tls.NewListener(tcp, tlsCfg), done: make(chan struct{})}
	d.http = &http.Server{
		Handler:           &discoveryHandler{s: s, caFile: &cachedFile{path: root.GroupCACert()}},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		// HTTP/1.1 only: HTTP/2 has no hijacking, and the legacy device
		// SDK speaks only HTTP/1.1.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		// Failed handshakes (devices without a certificate, scanners) are
		// the client's problem: debug level.
		ErrorLog: slog.NewLogLogger(s.env.Log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(d.done)
		if err := d.http.Serve(d.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.env.Log.Error("discovery server stopped", "err", err)
		}
	}()
	return d, nil
}

func (d *discoveryServer) addr() string { return d.ln.Addr().String() }

func (d *discoveryServer) shutdown(ctx context.Context) error {
	err := d.http.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		err = d.http.Close()
	}
	<-d.done
	return err
}

type discoveryHandler struct {
	s      *Service
	caFile *cachedFile
}

// answer is a status and its JSON body.
type answer struct {
	status int
	body   []byte
	// why is logged, never sent: the body says only what a device may
	// know.
	why string
}

func errorAnswer(status int, message, why string) answer {
	b, _ := json.Marshal(struct {
		Message string `json:"message"`
	}{message})
	return answer{status: status, body: b, why: why}
}

func (h *discoveryHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a := h.discover(r)
	log := h.s.env.Log.With("remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "status", a.status)
	if a.status == http.StatusOK {
		log.Info("discovery answered")
	} else {
		log.Info("discovery refused", "why", a.why)
	}
	if err := writeResponse(w, a.status, a.body); err != nil {
		log.Warn("discovery response not delivered", "err", err)
	}
}

func (h *discoveryHandler) discover(r *http.Request) answer {
	thing, ok := strings.CutPrefix(r.URL.Path, DiscoverPath)
	if !ok || thing == "" || strings.Contains(thing, "/") {
		return errorAnswer(http.StatusNotFound, "Not found", "no such path")
	}
	if r.Method != http.MethodGet {
		return errorAnswer(http.StatusMethodNotAllowed, "Method not allowed: use GET", "method")
	}
	if err := arn.ValidThingName(thing); err != nil {
		return errorAnswer(http.StatusBadRequest, "Invalid thing name", err.Error())
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return errorAnswer(http.StatusUnauthorized, "A client certificate is required", "no client certificate")
	}
	leaf := r.TLS.PeerCertificates[0]
	// The handshake proved the key but, with certificates from any CA
	// accepted, not the dates.
	if now := time.Now(); now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return errorAnswer(http.StatusForbidden, "Forbidden", "client certificate is expired or not yet valid")
	}
	g, conn := h.s.current()

	// Who the certificate belongs to: certmgr knows the devices registered
	// here (and the revoked ones); the group names its devices'
	// certificates by id, the SHA-256 of the DER.
	ctx, cancel := context.WithTimeout(r.Context(), verifyTimeout)
	defer cancel()
	verdict, verr := h.s.certmgr.VerifyDevice(ctx, &certmgrv1.VerifyDeviceRequest{
		CertificatePem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})),
	})
	if verr != nil {
		h.s.env.Log.Warn("certmgr VerifyDevice failed; only the group's certificate ids are checked", "err", verr)
	}
	if verr == nil && !verdict.GetAllowed() && verdict.GetReason() == revokedReason {
		return errorAnswer(http.StatusForbidden, "Forbidden", "certificate of device "+verdict.GetDeviceName()+" is revoked")
	}
	registered := verr == nil && verdict.GetAllowed()
	groupNames := groupDevicesWithCert(g, leaf)
	if !registered && len(groupNames) == 0 {
		if verr != nil {
			return errorAnswer(http.StatusServiceUnavailable, "Service unavailable: the certificate cannot be checked now", verr.Error())
		}
		return errorAnswer(http.StatusForbidden, "Forbidden", "certificate is neither a registered device's nor one of the group's ("+verdict.GetReason()+")")
	}
	if g == nil {
		return errorAnswer(http.StatusNotFound, "No discovery data found", "no group is deployed")
	}
	if !slices.Contains(g.DeviceThingNames(), thing) {
		return errorAnswer(http.StatusNotFound, "No discovery data found", "thing "+thing+" is not a device of the deployed group")
	}
	if !(registered && verdict.GetDeviceName() == thing) && !slices.Contains(groupNames, thing) {
		return errorAnswer(http.StatusForbidden, "Forbidden", "certificate is not thing "+thing+"'s")
	}
	caPEM, err := h.caFile.read()
	if err != nil {
		return errorAnswer(http.StatusServiceUnavailable, "Service unavailable: the group CA cannot be read now", err.Error())
	}
	body, err := discoveryJSON(g, conn, string(caPEM))
	if err != nil {
		return errorAnswer(http.StatusInternalServerError, "Internal error", err.Error())
	}
	return answer{status: http.StatusOK, body: body, why: "ok"}
}

// discoveryJSON renders the v1 response for the group in force.
func discoveryJSON(g *groupdef.Group, c *ipdetectorv1.Connectivity, caPEM string) ([]byte, error) {
	core := discoverCore{Connectivity: make([]discoverConnectivity, 0, len(c.GetInfo()))}
	if g.Core != nil && len(g.Core.Cores) > 0 {
		core.ThingArn = g.Core.Cores[0].ThingArn
	}
	for _, i := range c.GetInfo() {
		core.Connectivity = append(core.Connectivity, discoverConnectivity{
			ID: i.GetId(), HostAddress: i.GetHostAddress(), PortNumber: i.GetPortNumber(), Metadata: i.GetMetadata(),
		})
	}
	resp := discoverResponse{GGGroups: []discoverGroup{{
		GGGroupID: GroupID(g),
		Cores:     []discoverCore{core},
		CAs:       []string{caPEM},
	}}}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(resp); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// GroupID is the GGGroupId devices see: the group file's GroupId when it
// has one, otherwise a UUID derived from the core's thing ARN and the
// group's name, so that it stays the same across deployments of the same
// group (device SDKs file the group's CAs under this id).
func GroupID(g *groupdef.Group) string {
	if g.GroupId != "" {
		return g.GroupId
	}
	core := ""
	if g.Core != nil && len(g.Core.Cores) > 0 {
		core = g.Core.Cores[0].ThingArn
	}
	sum := sha256.Sum256([]byte("evergreen-group\x00" + core + "\x00" + g.Name))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x80 // version 8: a UUID derived by our own hash
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// groupDevicesWithCert returns the group's devices whose CertificateArn
// names the certificate: an AWS IoT certificate id is the lower-case hex
// SHA-256 of the DER.
func groupDevicesWithCert(g *groupdef.Group, c *x509.Certificate) []string {
	if g == nil || g.Devices == nil {
		return nil
	}
	sum := sha256.Sum256(c.Raw)
	id := hex.EncodeToString(sum[:])
	var names []string
	for _, d := range g.Devices.Devices {
		ca, err := arn.ParseCertificate(d.CertificateArn)
		if err != nil || !strings.EqualFold(ca.ID, id) {
			continue
		}
		if name, err := arn.ThingName(d.ThingArn); err == nil {
			names = append(names, name)
		}
	}
	return names
}

// writeResponse writes the whole response itself on the hijacked
// connection and closes it. The legacy Python device SDK parses raw bytes:
// it wants "HTTP/1.1 <code> ", the header spelled exactly
// "content-length: <n>\r\n", and exactly n bytes of body, never chunks.
// net/http would canonicalise the header to Content-Length and may chunk.
func writeResponse(w http.ResponseWriter, status int, body []byte) error {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return errors.New("connection cannot be hijacked")
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	bw := rw.Writer
	if bw == nil {
		bw = bufio.NewWriter(conn)
	}
	bw.WriteString("HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n")
	bw.WriteString("content-type: application/json\r\n")
	bw.WriteString("content-length: " + strconv.Itoa(len(body)) + "\r\n")
	bw.WriteString("connection: close\r\n\r\n")
	bw.Write(body)
	return bw.Flush()
}

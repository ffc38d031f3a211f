package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	brokerv1 "github.com/evergreen-edge/evergreen/proto/evergreen/broker/v1"
	"github.com/evergreen-edge/evergreen/services/kit/arn"
	"github.com/evergreen-edge/evergreen/services/kit/topic"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The prefixes of --as SOURCE that name an endpoint by kind, the way
// ggctl prints endpoints ("device:sensor-1").
const (
	devicePrefix    = "device:"
	functionPrefix  = "function:"
	connectorPrefix = "connector:"
)

// sourceForms lists what --as accepts, for error messages.
const sourceForms = "cloud, GGShadowService, device:NAME, function:ARN, connector:ARN, or a thing, function or connector ARN"

// parseSource turns `pub --as SOURCE` into the broker's Endpoint: cloud,
// GGShadowService, device:NAME, function:ARN, connector:ARN, or a Source
// exactly as a group's subscription writes it (a device's thing ARN becomes
// the device's thing name; function and connector ARNs stay as they are).
func parseSource(s string) (*brokerv1.Endpoint, error) {
	switch s {
	case arn.Cloud:
		return &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_CLOUD}, nil
	case arn.ShadowService:
		return &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_SHADOW}, nil
	case "":
		return nil, errors.New("source is empty; want " + sourceForms)
	}
	if name, ok := strings.CutPrefix(s, devicePrefix); ok {
		if err := arn.ValidThingName(name); err != nil {
			return nil, fmt.Errorf("%s: %w", s, err)
		}
		return &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_DEVICE, Name: name}, nil
	}
	if fn, ok := strings.CutPrefix(s, functionPrefix); ok {
		if _, err := arn.ParseFunction(fn); err != nil {
			return nil, err
		}
		return &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_FUNCTION, Name: fn}, nil
	}
	if conn, ok := strings.CutPrefix(s, connectorPrefix); ok {
		if _, err := arn.ParseConnector(conn); err != nil {
			return nil, err
		}
		return &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_CONNECTOR, Name: conn}, nil
	}
	if !strings.HasPrefix(s, "arn:") {
		return nil, fmt.Errorf("%q is not a source; want %s", s, sourceForms)
	}
	kind, err := arn.ParseEndpoint(s)
	if err != nil {
		return nil, err
	}
	switch kind {
	case arn.KindThing:
		name, err := arn.ThingName(s)
		if err != nil {
			return nil, err
		}
		return &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_DEVICE, Name: name}, nil
	case arn.KindFunction:
		return &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_FUNCTION, Name: s}, nil
	case arn.KindConnector:
		return &brokerv1.Endpoint{Kind: brokerv1.EndpointKind_ENDPOINT_KIND_CONNECTOR, Name: s}, nil
	}
	return nil, fmt.Errorf("%q is not a source; want %s", s, sourceForms)
}

// endpointString is how ggctl shows an endpoint, in the form --as takes:
// cloud, GGShadowService, device:NAME, function:ARN, connector:ARN.
func endpointString(e *brokerv1.Endpoint) string {
	if e == nil {
		return "-"
	}
	switch e.GetKind() {
	case brokerv1.EndpointKind_ENDPOINT_KIND_CLOUD:
		return arn.Cloud
	case brokerv1.EndpointKind_ENDPOINT_KIND_SHADOW:
		return arn.ShadowService
	case brokerv1.EndpointKind_ENDPOINT_KIND_DEVICE:
		return devicePrefix + e.GetName()
	case brokerv1.EndpointKind_ENDPOINT_KIND_FUNCTION:
		return functionPrefix + e.GetName()
	case brokerv1.EndpointKind_ENDPOINT_KIND_CONNECTOR:
		return connectorPrefix + e.GetName()
	}
	// A kind newer than ggctl, or UNSPECIFIED: say what was received.
	kind := strings.ToLower(enumName(e.GetKind().String(), "ENDPOINT_KIND_"))
	if e.GetName() == "" {
		return kind
	}
	return kind + ":" + e.GetName()
}

func endpointList(es []*brokerv1.Endpoint, sep string) string {
	names := make([]string, len(es))
	for i, e := range es {
		names[i] = endpointString(e)
	}
	return strings.Join(names, sep)
}

func cmdPub(a *app, args []string) error {
	fset := a.flags()
	as := fset.String("as", arn.Cloud, "publish as `SOURCE`: cloud, GGShadowService, device:NAME, function:ARN, connector:ARN or an ARN")
	qos := fset.Int("qos", 0, "MQTT QoS `0|1` of the message")
	file := fset.String("file", "", "read the payload from file `F` instead of PAYLOAD (- for standard input)")
	pos, err := a.parse(fset, args, 1, 2)
	if err != nil {
		return err
	}
	name := pos[0]
	if err := topic.ValidateTopic(name); err != nil {
		return usageErrorf("pub: %v", err)
	}
	src, err := parseSource(*as)
	if err != nil {
		return usageErrorf("pub: --as: %v", err)
	}
	if *qos != 0 && *qos != 1 {
		return usageErrorf("pub: --qos must be 0 or 1, got %d", *qos)
	}
	payload, err := a.payload(pos[1:], *file)
	if err != nil {
		return err
	}

	c, err := a.broker()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	resp, err := c.Publish(ctx, &brokerv1.PublishRequest{Source: src, Topic: name, Payload: payload, Qos: uint32(*qos)})
	if err != nil {
		return a.publishError(err)
	}
	if a.g.json {
		return a.printProto(resp)
	}
	targets := resp.GetTargets()
	switch len(targets) {
	case 0:
		_, err = fmt.Fprintln(a.stdout, "no subscription matches: nothing delivered")
	case 1:
		_, err = fmt.Fprintf(a.stdout, "delivered to 1 target: %s\n", endpointString(targets[0]))
	default:
		_, err = fmt.Fprintf(a.stdout, "delivered to %d targets: %s\n", len(targets), endpointList(targets, ", "))
	}
	return err
}

// payloadUsage is the short usage of the commands that take a body.
var payloadUsage = map[string]string{
	"pub":           "pub TOPIC PAYLOAD",
	"shadow update": "shadow update THING DOCUMENT",
	"fn invoke":     "fn invoke NAME PAYLOAD",
	"stream append": "stream append NAME PAYLOAD",
}

func (a *app) payloadName() string {
	if a.cmd.name == "shadow update" {
		return "DOCUMENT"
	}
	return "PAYLOAD"
}

// payload is pub's message body: the PAYLOAD argument, or the contents of
// --file; "-" as either reads standard input.
func (a *app) payload(arg []string, file string) ([]byte, error) {
	switch {
	case len(arg) == 1 && file != "":
		return nil, usageErrorf("%s: give %s or --file F, not both", a.cmd.name, a.payloadName())
	case len(arg) == 0 && file == "":
		return nil, usageErrorf("%s: missing argument: usage: ggctl %s (or --file F; - reads standard input)", a.cmd.name, payloadUsage[a.cmd.name])
	case len(arg) == 1 && arg[0] != "-":
		return []byte(arg[0]), nil
	case len(arg) == 1 || file == "-":
		if a.stdin == nil {
			return nil, usageErrorf("%s: no standard input to read the %s from", a.cmd.name, a.payloadName())
		}
		b, err := io.ReadAll(a.stdin)
		if err != nil {
			return nil, usageErrorf("%s: read the %s from standard input: %v", a.cmd.name, a.payloadName(), err)
		}
		return b, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, usageErrorf("%s: read the %s: %v", a.cmd.name, a.payloadName(), err)
	}
	return b, nil
}

// publishError is rpcError with a hint for the one precondition Publish
// has: a deployed group.
func (a *app) publishError(err error) error {
	rerr := a.rpcError(brokerDaemon, err)
	var e *exitError
	if status.Code(err) == codes.FailedPrecondition && errors.As(rerr, &e) {
		e.msg += " (deploy a group first: ggctl deploy FILE)"
	}
	return rerr
}

func cmdSub(a *app, args []string) error {
	fset := a.flags()
	count := fset.Int("n", 0, "stop after `COUNT` messages (0: until interrupted)")
	pos, err := a.parse(fset, args, 1, 1)
	if err != nil {
		return err
	}
	if *count < 0 {
		return usageErrorf("sub: -n must not be negative, got %d", *count)
	}
	filter := pos[0]
	if err := topic.ValidateFilter(filter); err != nil {
		return usageErrorf("sub: %v", err)
	}
	c, err := a.broker()
	if err != nil {
		return err
	}
	// A tap runs until Ctrl-C or COUNT messages: no --timeout.
	ctx, cancel := context.WithCancel(a.ctx)
	defer cancel()
	stream, err := c.Subscribe(ctx, &brokerv1.SubscribeRequest{Filter: filter})
	if err != nil {
		return a.streamError(brokerDaemon, err)
	}
	for n := 0; *count == 0 || n < *count; n++ {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return failf("the broker ended the subscription to %s after %d messages (is it shutting down?)", filter, n)
		}
		if err != nil {
			return a.streamError(brokerDaemon, err)
		}
		if a.g.json {
			err = a.printProtoLine(m)
		} else {
			_, err = fmt.Fprintln(a.stdout, routedLine(m))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// routedLine is one message of `sub`: TIME SOURCE -> TARGETS TOPIC PAYLOAD.
func routedLine(m *brokerv1.RoutedMessage) string {
	at := time.Now()
	if ts := m.GetTime(); ts != nil {
		at = ts.AsTime()
	}
	targets := "-"
	if len(m.GetTargets()) > 0 {
		targets = endpointList(m.GetTargets(), ",")
	}
	return fmt.Sprintf("%s %s -> %s %s %s", at.Local().Format("15:04:05.000"), endpointString(m.GetSource()),
		targets, escapeControls(m.GetTopic()), payloadText(m.GetPayload()))
}

// maxPayloadChars is where `sub` cuts a text payload.
const maxPayloadChars = 200

// payloadText shows a payload on one line: as text when it is valid UTF-8
// of printable characters (tab, CR and LF allowed, written \t, \r and \n),
// cut at maxPayloadChars with "…"; anything else, and the empty payload,
// as <N bytes>.
func payloadText(p []byte) string {
	if len(p) == 0 || !utf8.Valid(p) {
		return byteCount(len(p))
	}
	for _, r := range string(p) {
		if !unicode.IsGraphic(r) && r != '\t' && r != '\n' && r != '\r' {
			return byteCount(len(p))
		}
	}
	s := string(p)
	cut := false
	if utf8.RuneCountInString(s) > maxPayloadChars {
		n := 0
		for i := range s {
			if n == maxPayloadChars {
				s, cut = s[:i], true
				break
			}
			n++
		}
	}
	s = escapeControls(s)
	if cut {
		s += "…"
	}
	return s
}

func byteCount(n int) string {
	if n == 1 {
		return "<1 byte>"
	}
	return fmt.Sprintf("<%d bytes>", n)
}

// escapeControls keeps text on one line: tab, CR and LF become \t, \r and
// \n, other control characters \x.. or \u.....
func escapeControls(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case unicode.IsControl(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func cmdSubscriptions(a *app, args []string) error {
	if _, err := a.parse(a.flags(), args, 0, 0); err != nil {
		return err
	}
	c, err := a.broker()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	resp, err := c.ListSubscriptions(ctx, &brokerv1.ListSubscriptionsRequest{})
	if err != nil {
		return a.rpcError(brokerDaemon, err)
	}
	if a.g.json {
		return a.printProto(resp)
	}
	subs := resp.GetSubscriptions()
	id := resp.GetDeploymentId()
	switch {
	case id == "" && len(subs) == 0:
		_, err := fmt.Fprintln(a.stdout, "no group is deployed: no subscriptions, nothing is routed")
		return err
	case id == "":
		id = "-"
	}
	if len(subs) == 0 {
		_, err := fmt.Fprintf(a.stdout, "deployment %s: no subscriptions, nothing is routed\n", id)
		return err
	}
	noun := "subscriptions"
	if len(subs) == 1 {
		noun = "subscription"
	}
	fmt.Fprintf(a.stdout, "deployment %s: %d %s\n", id, len(subs), noun)
	t := newTable(a.stdout, "ID", "SOURCE", "SUBJECT", "TARGET")
	for _, s := range subs {
		t.row(s.GetId(), s.GetSource(), s.GetSubject(), s.GetTarget())
	}
	return t.flush()
}

// maxListed is how many of a client's subscriptions `clients` shows.
const maxListed = 3

func cmdClients(a *app, args []string) error {
	if _, err := a.parse(a.flags(), args, 0, 0); err != nil {
		return err
	}
	c, err := a.broker()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	resp, err := c.ListClients(ctx, &brokerv1.ListClientsRequest{})
	if err != nil {
		return a.rpcError(brokerDaemon, err)
	}
	if a.g.json {
		return a.printProto(resp)
	}
	if len(resp.GetClients()) == 0 {
		_, err := fmt.Fprintln(a.stdout, "no devices connected")
		return err
	}
	clients := slices.Clone(resp.GetClients())
	slices.SortStableFunc(clients, func(x, y *brokerv1.Client) int { return strings.Compare(x.GetClientId(), y.GetClientId()) })
	now := time.Now()
	t := newTable(a.stdout, "CLIENT-ID", "ADDRESS", "PROTOCOL", "CONNECTED-SINCE", "SUBSCRIPTIONS", "IN", "OUT")
	for _, cl := range clients {
		since := humanTime(cl.GetConnectedAt())
		if since != "" {
			since += " (" + humanDuration(now.Sub(cl.GetConnectedAt().AsTime())) + ")"
		}
		t.row(cl.GetClientId(), cl.GetRemoteAddress(), mqttVersion(cl.GetProtocolVersion()), since,
			listSummary(cl.GetSubscriptions(), maxListed),
			strconv.FormatUint(cl.GetMessagesIn(), 10), strconv.FormatUint(cl.GetMessagesOut(), 10))
	}
	return t.flush()
}

// mqttVersion names an MQTT protocol level: 4 is MQTT 3.1.1, 5 is MQTT 5.
func mqttVersion(level uint32) string {
	switch level {
	case 0:
		return ""
	case 3:
		return "3.1"
	case 4:
		return "3.1.1"
	}
	return strconv.FormatUint(uint64(level), 10)
}

// listSummary joins the first n items and counts the rest.
func listSummary(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ",")
	}
	return fmt.Sprintf("%s (+%d more)", strings.Join(items[:n], ","), len(items)-n)
}

func cmdCloud(a *app, args []string) error {
	if _, err := a.parse(a.flags(), args, 0, 0); err != nil {
		return err
	}
	c, err := a.broker()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	st, err := c.GetCloudStatus(ctx, &brokerv1.GetCloudStatusRequest{})
	if err != nil {
		return a.rpcError(brokerDaemon, err)
	}
	if a.g.json {
		return a.printProto(st)
	}
	state := enumName(st.GetState().String(), "CLOUD_STATE_")
	if st.GetState() == brokerv1.CloudState_CLOUD_STATE_DISABLED {
		state += " (no coreThing.iotHost: the core runs offline)"
	}
	queue := fmt.Sprintf("%d messages, %s", st.GetQueueMessages(), humanBytes(st.GetQueueBytes()))
	if limit := st.GetQueueMaxBytes(); limit > 0 {
		queue += fmt.Sprintf(" of %s (%.1f%% full)", humanBytes(limit), 100*float64(st.GetQueueBytes())/float64(limit))
	}
	subs := st.GetCloudSubscriptions()
	t := newTable(a.stdout)
	t.row("State:", state)
	t.row("Endpoint:", st.GetEndpoint())
	t.row("Last error:", st.GetLastError())
	t.row("Reconnects:", strconv.FormatUint(st.GetReconnects(), 10))
	t.row("Storage:", st.GetStorageType())
	t.row("Queue:", queue)
	t.row("Sent:", strconv.FormatUint(st.GetSent(), 10))
	t.row("Dropped:", strconv.FormatUint(st.GetDropped(), 10))
	t.row("In flight:", strconv.FormatUint(uint64(st.GetInFlight()), 10))
	t.row("Cloud subscriptions:", strconv.Itoa(len(subs)))
	if err := t.flush(); err != nil {
		return err
	}
	for _, s := range subs {
		if _, err := fmt.Fprintf(a.stdout, "  %s\n", escapeControls(s)); err != nil {
			return err
		}
	}
	return nil
}

// humanBytes is a size in binary units: "512 B", "4.0 KiB", "2.5 MiB".
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
)

// The group's loggers (LoggerDefinitionVersion) reach a running daemon
// through its Control: ApplyGroup puts the GreengrassSystem FileSystem
// logger's level and space on the log file, and remembers the
// AWSCloudWatch loggers. While forwarding is allowed (AllowForward: a cloud
// is configured and the daemon can publish on the bus), records at or
// above an AWSCloudWatch logger's level are copied, as JSON, into a small
// ring that the kit drains in batches onto the bus (Batches); the broker
// sends them to the cloud. The ring is bounded by records and bytes: when
// it is full the oldest record goes and is counted, so a chatty daemon or
// an absent bus never grows memory.

// Bounds of what forwarding holds in memory.
const (
	// MaxRecordBytes bounds one record: longer strings are cut.
	MaxRecordBytes = 2048
	// maxValueBytes bounds one string in a record.
	maxValueBytes = 512
	// BatchBytes bounds one batch (well under MQTT's 128 KB payload).
	BatchBytes = 64 << 10
	// ringRecords and ringBytes bound the records waiting for a batch.
	ringRecords = 512
	ringBytes   = 256 << 10
)

// Components of forwarded records, as v1 names CloudWatch log groups.
const (
	ComponentSystem = "GreengrassSystem"
	ComponentLambda = "Lambda"
)

// Cloud is what one AWSCloudWatch logger of the group asks: forward the
// records at or above Level, when On.
type Cloud struct {
	On    bool
	Level slog.Level
}

// forwarding is the Control's part for AWSCloudWatch loggers.
type forwarding struct {
	// Fast paths for every log call.
	sysOn, lamOn       atomic.Bool
	sysLevel, lamLevel atomic.Int64

	mu       sync.Mutex
	allowed  bool
	system   Cloud
	lambda   Cloud
	watchers []func(system, lambda Cloud)
	ring     ring
}

type entry struct {
	component string
	rec       []byte
}

// ring keeps the newest records waiting for a batch.
type ring struct {
	buf     []entry // allocated when forwarding is first allowed
	head, n int
	bytes   int
	dropped uint64
	wake    chan struct{}
}

func (r *ring) add(component string, rec []byte) {
	if r.buf == nil {
		return
	}
	for r.n > 0 && (r.n == len(r.buf) || r.bytes+len(rec) > ringBytes) {
		old := &r.buf[r.head]
		r.bytes -= len(old.rec)
		*old = entry{}
		r.head = (r.head + 1) % len(r.buf)
		r.n--
		r.dropped++
	}
	r.buf[(r.head+r.n)%len(r.buf)] = entry{component, rec}
	r.n++
	r.bytes += len(rec)
	if r.n == 1 || r.bytes >= BatchBytes {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// ApplyGroup puts the group's loggers in force (nil: the group has none):
// the GreengrassSystem FileSystem logger's Level and Space (KB) on the
// log, or the configured level and size when there is none; and the
// AWSCloudWatch loggers of GreengrassSystem and Lambda for forwarding.
// The watchers (OnCloud) hear the AWSCloudWatch loggers every time. It
// returns a one-line summary for the daemon's log.
func (c *Control) ApplyGroup(ls *groupdef.LoggerDefinitionVersion) string {
	var sys, lam Cloud
	var file *groupdef.Logger
	if ls != nil {
		for i := range ls.Loggers {
			l := &ls.Loggers[i]
			lvl, err := ParseGroupLevel(l.Level)
			if err != nil {
				continue // validated at deployment; an older record is skipped
			}
			switch {
			case l.Component == ComponentSystem && l.Type == "FileSystem" && file == nil:
				file = l
			case l.Component == ComponentSystem && l.Type == "AWSCloudWatch" && !sys.On:
				sys = Cloud{On: true, Level: lvl}
			case l.Component == ComponentLambda && l.Type == "AWSCloudWatch" && !lam.On:
				lam = Cloud{On: true, Level: lvl}
			}
		}
	}
	var summary string
	if file != nil {
		lvl, _ := ParseGroupLevel(file.Level)
		var space int64
		if file.Space != nil {
			space = int64(*file.Space) << 10
		}
		c.Set(lvl, space)
		summary = "system log: group logger " + file.Level
		if space > 0 {
			summary += ", " + strconv.FormatInt(c.Space()>>10, 10) + " KB"
		}
	} else {
		c.Reset()
		summary = "system log: config.json's evergreen.logging"
	}
	c.SetCloud(sys, lam)
	if sys.On {
		summary += "; GreengrassSystem to the cloud at " + LevelName(sys.Level)
	}
	if lam.On {
		summary += "; Lambda to the cloud at " + LevelName(lam.Level)
	}
	return summary
}

// Space is the bytes the log file and its rotated copies may hold
// together; 0 without a file.
func (c *Control) Space() int64 {
	if c.file == nil {
		return 0
	}
	c.file.mu.Lock()
	defer c.file.mu.Unlock()
	return c.file.max * int64(c.file.keep+1)
}

// SetCloud puts AWSCloudWatch loggers in force for this daemon's records
// (system) and for function records it forwards (lambda, the runtime's).
func (c *Control) SetCloud(system, lambda Cloud) {
	f := &c.fwd
	f.mu.Lock()
	f.system, f.lambda = system, lambda
	f.sysLevel.Store(int64(system.Level))
	f.lamLevel.Store(int64(lambda.Level))
	f.sysOn.Store(system.On && f.allowed)
	f.lamOn.Store(lambda.On && f.allowed)
	ws := f.watchers
	f.mu.Unlock()
	for _, w := range ws {
		w(system, lambda)
	}
}

// Cloud returns the AWSCloudWatch loggers in force, whether or not
// forwarding is allowed.
func (c *Control) Cloud() (system, lambda Cloud) {
	c.fwd.mu.Lock()
	defer c.fwd.mu.Unlock()
	return c.fwd.system, c.fwd.lambda
}

// OnCloud calls fn now and after every ApplyGroup or SetCloud with the
// AWSCloudWatch loggers in force (no lock of the Control held: fn may log).
func (c *Control) OnCloud(fn func(system, lambda Cloud)) {
	c.fwd.mu.Lock()
	c.fwd.watchers = append(c.fwd.watchers, fn)
	sys, lam := c.fwd.system, c.fwd.lambda
	c.fwd.mu.Unlock()
	fn(sys, lam)
}

// AllowForward lets records be forwarded: the kit calls it when a cloud is
// configured and the daemon may publish its batches. It returns the
// channel that says a batch is waiting (Batches).
func (c *Control) AllowForward() <-chan struct{} {
	f := &c.fwd
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.allowed {
		f.allowed = true
		f.ring.buf = make([]entry, ringRecords)
		f.ring.wake = make(chan struct{}, 1)
		f.sysOn.Store(f.system.On)
		f.lamOn.Store(f.lambda.On)
	}
	return f.ring.wake
}

// Forwarding reports whether this daemon's records go to the cloud now.
func (c *Control) Forwarding() bool { return c.fwd.sysOn.Load() }

// ForwardLambda offers one line of a function's log (fn is the function's
// name) for the Lambda AWSCloudWatch logger; it reports whether the line
// was kept.
func (c *Control) ForwardLambda(fn string, t time.Time, level slog.Level, msg string) bool {
	f := &c.fwd
	if !f.lamOn.Load() || int64(level) < f.lamLevel.Load() {
		return false
	}
	b := make([]byte, 0, 128+len(msg))
	b = appendHead(b, t, level, msg)
	b = append(b, `,"function":`...)
	b = appendString(b, fn)
	b = append(b, '}')
	f.mu.Lock()
	f.ring.add(ComponentLambda+"/"+fn, b)
	f.mu.Unlock()
	return true
}

// CountDropped adds n records lost on the way (a failed bus publish) to
// the count the next batch reports.
func (c *Control) CountDropped(n int) {
	c.fwd.mu.Lock()
	c.fwd.ring.dropped += uint64(n)
	c.fwd.mu.Unlock()
}

// Batch is one component's records as JSON:
//
//	{"component":"GreengrassSystem/broker","dropped":0,"records":[{...},...]}
//
// dropped counts records lost (ring full, failed publish) since the
// batch before.
type Batch struct {
	Data    []byte
	Records int
}

// Batches takes every waiting record and returns them in batches of at
// most BatchBytes, one component each, in order of first appearance.
func (c *Control) Batches() []Batch {
	f := &c.fwd
	f.mu.Lock()
	r := &f.ring
	taken := make([]entry, r.n)
	for i := range taken {
		j := (r.head + i) % len(r.buf)
		taken[i], r.buf[j] = r.buf[j], entry{}
	}
	dropped := r.dropped
	r.head, r.n, r.bytes, r.dropped = 0, 0, 0, 0
	f.mu.Unlock()

	if len(taken) == 0 && dropped == 0 {
		return nil
	}
	var order []string
	byComp := map[string][][]byte{}
	for _, e := range taken {
		if _, ok := byComp[e.component]; !ok {
			order = append(order, e.component)
		}
		byComp[e.component] = append(byComp[e.component], e.rec)
	}
	if len(order) == 0 { // only losses to report
		order = append(order, ComponentSystem+"/"+c.name)
	}
	var out []Batch
	for _, comp := range order {
		var cur Batch
		open := func() {
			b := append(make([]byte, 0, 1024), `{"component":`...)
			b = appendString(b, comp)
			b = append(b, `,"dropped":`...)
			b = strconv.AppendUint(b, dropped, 10)
			dropped = 0
			cur = Batch{Data: append(b, `,"records":[`...)}
		}
		open()
		for _, rec := range byComp[comp] {
			if cur.Records > 0 && len(cur.Data)+len(rec)+3 > BatchBytes {
				cur.Data = append(cur.Data, "]}"...)
				out = append(out, cur)
				open()
			}
			if cur.Records > 0 {
				cur.Data = append(cur.Data, ',')
			}
			cur.Data = append(cur.Data, rec...)
			cur.Records++
		}
		cur.Data = append(cur.Data, "]}"...)
		out = append(out, cur)
	}
	return out
}

// LevelName is the v1 name of a record's level: DEBUG, INFO, WARN or
// ERROR (nothing is logged as FATAL; see ParseGroupLevel).
func LevelName(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "ERROR"
	case l >= slog.LevelWarn:
		return "WARN"
	case l >= slog.LevelInfo:
		return "INFO"
	}
	return "DEBUG"
}

// ControlOf returns the Control of a logger made by New (or derived from
// one with With), nil for any other logger.
func ControlOf(l *slog.Logger) *Control {
	if l == nil {
		return nil
	}
	if h, ok := l.Handler().(*handler); ok {
		return h.c
	}
	return nil
}

// handler writes records through the text handler and copies those the
// GreengrassSystem AWSCloudWatch logger asks for into the ring.
type handler struct {
	inner slog.Handler
	c     *Control
	// pre is the JSON of the attributes added by With (",\"k\":v...");
	// group is the key prefix of WithGroup ("g.").
	pre   []byte
	group string
}

func (h *handler) forwards(l slog.Level) bool {
	f := &h.c.fwd
	return f.sysOn.Load() && int64(l) >= f.sysLevel.Load()
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l) || h.forwards(l)
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	if h.forwards(r.Level) {
		b := make([]byte, 0, 256)
		b = appendHead(b, r.Time, r.Level, r.Message)
		b = append(b, h.pre...)
		r.Attrs(func(a slog.Attr) bool {
			b = appendAttr(b, h.group, a)
			return len(b) < MaxRecordBytes
		})
		if len(b) > MaxRecordBytes-1 {
			// Attributes past the bound are left out; the head is
			// always there.
			b = appendHead(b[:0], r.Time, r.Level, r.Message)
			b = append(b, `,"truncated":true`...)
		}
		b = append(b, '}')
		f := &h.c.fwd
		f.mu.Lock()
		f.ring.add(ComponentSystem+"/"+h.c.name, b)
		f.mu.Unlock()
	}
	if h.inner.Enabled(ctx, r.Level) {
		return h.inner.Handle(ctx, r)
	}
	return nil
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	pre := append([]byte(nil), h.pre...)
	for _, a := range as {
		pre = appendAttr(pre, h.group, a)
	}
	return &handler{inner: h.inner.WithAttrs(as), c: h.c, pre: pre, group: h.group}
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &handler{inner: h.inner.WithGroup(name), c: h.c, pre: h.pre, group: h.group + name + "."}
}

func appendHead(b []byte, t time.Time, l slog.Level, msg string) []byte {
	if t.IsZero() {
		t = time.Now()
	}
	b = append(b, `{"time":`...)
	b = appendString(b, t.UTC().Format(time.RFC3339Nano))
	b = append(b, `,"level":`...)
	b = appendString(b, LevelName(l))
	b = append(b, `,"msg":`...)
	return appendString(b, msg)
}

func appendAttr(b []byte, prefix string, a slog.Attr) []byte {
	v := a.Value.Resolve()
	if a.Key == "" && v.Kind() != slog.KindGroup {
		return b
	}
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range v.Group() {
			b = appendAttr(b, p, g)
		}
		return b
	}
	b = append(b, ',')
	b = appendString(b, prefix+a.Key)
	b = append(b, ':')
	switch v.Kind() {
	case slog.KindInt64:
		return strconv.AppendInt(b, v.Int64(), 10)
	case slog.KindUint64:
		return strconv.AppendUint(b, v.Uint64(), 10)
	case slog.KindBool:
		return strconv.AppendBool(b, v.Bool())
	case slog.KindFloat64:
		if f := v.Float64(); !math.IsNaN(f) && !math.IsInf(f, 0) {
			return strconv.AppendFloat(b, f, 'g', -1, 64)
		}
	case slog.KindTime:
		return appendString(b, v.Time().UTC().Format(time.RFC3339Nano))
	}
	return appendString(b, v.String())
}

// appendString appends s as a JSON string, cut to maxValueBytes.
func appendString(b []byte, s string) []byte {
	if len(s) > maxValueBytes {
		s = strings.ToValidUTF8(s[:maxValueBytes], "") + "…"
	}
	if !needsEscape(s) {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(s)
	return append(b, bytes.TrimRight(buf.Bytes(), "\n")...)
}

func needsEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			return true
		}
	}
	return false
}

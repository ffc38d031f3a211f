package cli

import (
	"fmt"
	"strconv"
	"time"

	streamv1 "github.com/evergreen-edge/evergreen/proto/evergreen/streammgr/v1"
)

const streamsDaemon = "streammgr"

// streamCommands are the `stream` verbs, appended to the command table.
var streamCommands = []command{
	{"stream list", "", "List the message streams with their sequence range, messages and bytes.", cmdStreamList},
	{"stream describe", "NAME", "Show a stream's definition and storage (and any damage found at start-up).", cmdStreamDescribe},
	{"stream create", "NAME [--max-size N] [--segment-size N] [--ttl D] [--strategy reject|overwrite] [--memory] [--flush-on-write]",
		"Create a message stream (v1 CreateMessageStream). Sizes are bytes; --ttl is a\nduration (1m at least); --strategy says what a full stream does: reject new\ndata (the default) or overwrite the oldest segments.", cmdStreamCreate},
	{"stream append", "NAME PAYLOAD [--file F]", "Append one message and print its sequence number. PAYLOAD - (or --file -)\nreads standard input.", cmdStreamAppend},
	{"stream read", "NAME [--from SEQ] [-n COUNT] [--wait D]", "Print up to COUNT messages from sequence number SEQ (default: the oldest),\none a line: SEQ TIME PAYLOAD. --wait long-polls for the first message.", cmdStreamRead},
	{"stream delete", "NAME", "Delete a stream and its messages.", cmdStreamDelete},
}

func (a *app) streams() (streamv1.StreamManagerClient, error) {
	cc, err := a.dial(streamsDaemon)
	if err != nil {
		return nil, err
	}
	return streamv1.NewStreamManagerClient(cc), nil
}

func cmdStreamList(a *app, args []string) error {
	if _, err := a.parse(a.flags(), args, 0, 0); err != nil {
		return err
	}
	c, err := a.streams()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	resp, err := c.ListStreams(ctx, &streamv1.ListStreamsRequest{})
	if err != nil {
		return a.rpcError(streamsDaemon, err)
	}
	infos := make([]*streamv1.StreamInfo, 0, len(resp.GetStreams()))
	for _, n := range resp.GetStreams() {
		info, err := c.DescribeStream(ctx, &streamv1.DescribeStreamRequest{Name: n})
		if err != nil {
			return a.rpcError(streamsDaemon, err)
		}
		infos = append(infos, info)
	}
	if a.g.json {
		return a.printJSON(map[string]any{"streams": protoList(infos)})
	}
	t := newTable(a.stdout, "NAME", "OLDEST", "NEWEST", "MESSAGES", "BYTES", "PERSISTENCE", "WHEN FULL", "DAMAGE")
	for _, in := range infos {
		d := in.GetDefinition()
		damage := ""
		if n := len(in.GetDamage()); n > 0 {
			damage = fmt.Sprintf("%d reported", n)
		}
		t.row(d.GetName(), seqText(in.GetOldestSequenceNumber(), in.GetMessageCount()), seqText(in.GetNewestSequenceNumber(), in.GetMessageCount()),
			strconv.FormatInt(in.GetMessageCount(), 10), humanBytes(uint64(max(in.GetTotalBytes(), 0))),
			enumName(d.GetPersistence().String(), "PERSISTENCE_"), enumName(d.GetStrategyOnFull().String(), "STRATEGY_ON_FULL_"), damage)
	}
	return t.flush()
}

func seqText(seq, count int64) string {
	if count == 0 {
		return ""
	}
	return strconv.FormatInt(seq, 10)
}

func protoList(infos []*streamv1.StreamInfo) []any {
	out := make([]any, 0, len(infos))
	for _, in := range infos {
		if b, err := protoJSON(in); err == nil {
			out = append(out, b)
		}
	}
	return out
}

func cmdStreamDescribe(a *app, args []string) error {
	pos, err := a.parse(a.flags(), args, 1, 1)
	if err != nil {
		return err
	}
	c, err := a.streams()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	in, err := c.DescribeStream(ctx, &streamv1.DescribeStreamRequest{Name: pos[0]})
	if err != nil {
		return a.rpcError(streamsDaemon, err)
	}
	if a.g.json {
		return a.printProto(in)
	}
	d := in.GetDefinition()
	ttl := "none"
	if d.GetTimeToLiveMillis() > 0 {
		ttl = (time.Duration(d.GetTimeToLiveMillis()) * time.Millisecond).String()
	}
	fmt.Fprintf(a.stdout, "name:            %s\n", d.GetName())
	fmt.Fprintf(a.stdout, "persistence:     %s (flush on write: %v)\n", enumName(d.GetPersistence().String(), "PERSISTENCE_"), d.GetFlushOnWrite())
	fmt.Fprintf(a.stdout, "max size:        %s in segments of %s; when full: %s\n", humanBytes(uint64(d.GetMaxSize())), humanBytes(uint64(d.GetStreamSegmentSize())),
		enumName(d.GetStrategyOnFull().String(), "STRATEGY_ON_FULL_"))
	fmt.Fprintf(a.stdout, "time to live:    %s\n", ttl)
	if in.GetMessageCount() > 0 {
		fmt.Fprintf(a.stdout, "messages:        %d (sequence numbers %d to %d), %s\n", in.GetMessageCount(), in.GetOldestSequenceNumber(), in.GetNewestSequenceNumber(), humanBytes(uint64(in.GetTotalBytes())))
	} else {
		fmt.Fprintf(a.stdout, "messages:        none\n")
	}
	for _, dm := range in.GetDamage() {
		fmt.Fprintf(a.stdout, "damage:          %s\n", oneLine(dm))
	}
	return nil
}

func cmdStreamCreate(a *app, args []string) error {
	fs := a.flags()
	maxSize := fs.Int64("max-size", 256<<20, "the stream's size limit in `bytes`")
	segment := fs.Int64("segment-size", 16<<20, "the size of a segment in `bytes` (data goes a segment at a time)")
	ttl := fs.Duration("ttl", 0, "keep messages at least this `long` (0: no time to live; else 1m at least)")
	strategy := fs.String("strategy", "reject", "what a full stream does: `reject` new data or `overwrite` the oldest")
	memory := fs.Bool("memory", false, "keep the stream in memory only (lost at restart)")
	flush := fs.Bool("flush-on-write", false, "fsync every message before acknowledging it")
	pos, err := a.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	def := &streamv1.StreamDefinition{Name: pos[0], MaxSize: *maxSize, StreamSegmentSize: *segment, TimeToLiveMillis: ttl.Milliseconds(),
		Persistence: streamv1.Persistence_PERSISTENCE_FILE, FlushOnWrite: *flush}
	switch *strategy {
	case "reject":
		def.StrategyOnFull = streamv1.StrategyOnFull_STRATEGY_ON_FULL_REJECT_NEW_DATA
	case "overwrite":
		def.StrategyOnFull = streamv1.StrategyOnFull_STRATEGY_ON_FULL_OVERWRITE_OLDEST_DATA
	default:
		return usageErrorf("stream create: --strategy %q: want reject or overwrite", *strategy)
	}
	if *memory {
		def.Persistence = streamv1.Persistence_PERSISTENCE_MEMORY
	}
	c, err := a.streams()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	in, err := c.CreateStream(ctx, &streamv1.CreateStreamRequest{Definition: def})
	if err != nil {
		return a.rpcError(streamsDaemon, err)
	}
	if a.g.json {
		return a.printProto(in)
	}
	_, err = fmt.Fprintf(a.stdout, "created stream %s\n", in.GetDefinition().GetName())
	return err
}

func cmdStreamAppend(a *app, args []string) error {
	fs := a.flags()
	file := fs.String("file", "", "read the payload from file `F` (- reads standard input)")
	pos, err := a.parse(fs, args, 1, 2)
	if err != nil {
		return err
	}
	payload, err := a.payload(pos[1:], *file)
	if err != nil {
		return err
	}
	if len(payload) == 0 {
		return usageErrorf("stream append: the payload is empty (a message holds at least one byte)")
	}
	c, err := a.streams()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	resp, err := c.AppendMessage(ctx, &streamv1.AppendMessageRequest{Name: pos[0], Payload: payload})
	if err != nil {
		return a.rpcError(streamsDaemon, err)
	}
	if a.g.json {
		return a.printProto(resp)
	}
	_, err = fmt.Fprintf(a.stdout, "appended to %s: sequence number %d\n", pos[0], resp.GetSequenceNumber())
	return err
}

func cmdStreamRead(a *app, args []string) error {
	fs := a.flags()
	from := fs.Int64("from", 0, "the first sequence `number` (below the oldest: from the oldest)")
	count := fs.Int64("n", 10, "at most `COUNT` messages")
	wait := fs.Duration("wait", 0, "wait this `long` for a first message (0: answer at once)")
	pos, err := a.parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if *count < 1 {
		return usageErrorf("stream read: -n %d: at least 1", *count)
	}
	c, err := a.streams()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	resp, err := c.ReadMessages(ctx, &streamv1.ReadMessagesRequest{Name: pos[0], StartSequenceNumber: *from,
		MinMessageCount: 1, MaxMessageCount: *count, ReadTimeoutMillis: wait.Milliseconds()})
	if err != nil {
		return a.rpcError(streamsDaemon, err)
	}
	if a.g.json {
		return a.printProto(resp)
	}
	for _, m := range resp.GetMessages() {
		when := time.UnixMilli(m.GetIngestTimeMillis()).UTC().Format(time.RFC3339Nano)
		fmt.Fprintf(a.stdout, "%d %s %s\n", m.GetSequenceNumber(), when, payloadText(m.GetPayload()))
	}
	return nil
}

func cmdStreamDelete(a *app, args []string) error {
	pos, err := a.parse(a.flags(), args, 1, 1)
	if err != nil {
		return err
	}
	c, err := a.streams()
	if err != nil {
		return err
	}
	ctx, cancel := a.unary()
	defer cancel()
	if _, err := c.DeleteStream(ctx, &streamv1.DeleteStreamRequest{Name: pos[0]}); err != nil {
		return a.rpcError(streamsDaemon, err)
	}
	if a.g.json {
		return a.printJSON(map[string]any{"name": pos[0], "deleted": true})
	}
	_, err = fmt.Fprintf(a.stdout, "deleted stream %s\n", pos[0])
	return err
}

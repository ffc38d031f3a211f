package cloud

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
)

// Message is one cloud-bound message in the spool.
type Message struct {
	// Seq orders the spool: every Put takes the next number, and it never
	// goes back, even across restarts of a FileSystem spool.
	Seq     uint64
	Topic   string
	Payload []byte
	// QoS is the QoS it is published upstream with (1).
	QoS byte
}

// Spool is the outbound queue: FIFO, bounded in bytes (topic plus payload of
// every queued message), in memory or on disk.
type Spool interface {
	// Put appends a message. With FileSystem storage it returns once the
	// message is on stable storage. When the spool is full it drops the
	// oldest messages to make room (DropOldest) or fails with an error
	// wrapping errdefs.ErrResourceExhausted (RefuseNew). A message larger
	// than the whole spool wraps errdefs.ErrInvalidArgument.
	Put(topic string, payload []byte) error
	// Peek returns up to n of the oldest messages, oldest first, without
	// removing them.
	Peek(n int) []Message
	// Ack removes a message once the cloud has it. Acking a message that is
	// no longer queued (acked before, or dropped) wraps errdefs.ErrNotFound.
	Ack(seq uint64) error
	// Len and Bytes are the queued messages and their size.
	Len() int
	Bytes() int64
	// Dropped counts the messages dropped to make room since the spool was
	// opened (v1's CloudSpooler DroppedMessageCount).
	Dropped() uint64
	// Close flushes what is pending (FileSystem) and releases the spool.
	Close() error
}

// maxMessageBytes bounds one message (topic plus payload) whatever the spool
// size: AWS IoT takes 128 KB, and the local broker refuses more.
const maxMessageBytes = 16 << 20

// ackSyncInterval bounds how long an ack may stay unsynced on disk. A power
// cut loses at most this much of the acks, so those messages are delivered
// again (at least once), never lost. A crash of the process loses none.
const ackSyncInterval = time.Second

// OpenSpool opens the spool the settings describe. Memory ignores dir.
// FileSystem keeps the queue in dir (created if missing, locked against a
// second opener) and recovers what a previous run left there.
func OpenSpool(dir string, s SpoolerSettings) (Spool, error) {
	return openSpool(dir, s)
}

// spool implements Spool for both storages: the index of queued messages
// lives in memory; with FileSystem storage the records live in a segment
// log and the index points into it.
//
// Lock order: syncMu, then mu. mu guards everything but the fsync itself,
// which runs under syncMu only so that Puts can go on appending meanwhile
// (group commit).
type spool struct {
	syncMu sync.Mutex
	mu     sync.Mutex

	max     int64
	refuse  bool
	next    uint64
	q       index
	dropped uint64
	closed  bool

	log       *segmentLog // nil for Memory
	stopFlush chan struct{}
	flushDone chan struct{}
}

func openSpool(dir string, s SpoolerSettings) (*spool, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	sp := &spool{max: s.MaxBytes, refuse: s.WhenFull == WhenFullRefuseNew, next: 1}
	if s.Storage == StorageMemory {
		return sp, nil
	}
	if dir == "" {
		return nil, errdefs.InvalidArgument("dir", "FileSystem storage needs a directory")
	}
	l, q, next, err := openSegmentLog(dir, segmentSizeFor(s.MaxBytes))
	if err != nil {
		return nil, err
	}
	sp.log, sp.q, sp.next = l, q, next
	// The previous run may have had a larger spool: keep the newest.
	sp.mu.Lock()
	err = sp.trimLocked(sp.max)
	sp.mu.Unlock()
	if err != nil {
		l.close()
		return nil, err
	}
	sp.stopFlush, sp.flushDone = make(chan struct{}), make(chan struct{})
	go sp.flushAcks()
	return sp, nil
}

func errClosed() error {
	return fmt.Errorf("cloud spool is closed: %w", errdefs.ErrFailedPrecondition)
}

func (s *spool) Put(topic string, payload []byte) error {
	pos, err := s.put([]Message{{Topic: topic, Payload: payload}})
	if err != nil {
		return err
	}
	return s.syncTo(pos)
}

// putMany appends msgs in order with one fsync; it stops at the first
// refusal and returns how many it took.
func (s *spool) putMany(msgs []Message) (int, error) {
	var pos int64
	n := 0
	for n < len(msgs) {
		// Batches bound the time mu is held against concurrent Puts.
		end := min(n+256, len(msgs))
		p, err := s.put(msgs[n:end])
		if p > 0 {
			pos = p
		}
		if err != nil {
			var taken *partialPut
			if errors.As(err, &taken) {
				n += taken.n
				err = taken.err
			}
			if serr := s.syncTo(pos); serr != nil {
				return 0, serr
			}
			return n, err
		}
		n = end
	}
	return n, s.syncTo(pos)
}

type partialPut struct {
	n   int
	err error
}

func (p *partialPut) Error() string { return p.err.Error() }
func (p *partialPut) Unwrap() error { return p.err }

// put appends msgs under one hold of mu and returns the log position that
// must be synced before they count as stored (0 for Memory).
func (s *spool) put(msgs []Message) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errClosed()
	}
	var pos int64
	for i, m := range msgs {
		p, err := s.putLocked(m.Topic, m.Payload)
		if err != nil {
			if i > 0 {
				return pos, &partialPut{n: i, err: err}
			}
			return pos, err
		}
		pos = p
	}
	return pos, nil
}

func (s *spool) putLocked(topic string, payload []byte) (int64, error) {
	size := int64(len(topic) + len(payload))
	switch {
	case len(topic) > 65535:
		return 0, errdefs.InvalidArgument("topic", "%d bytes is more than 65535", len(topic))
	case size > s.max || size > maxMessageBytes:
		return 0, errdefs.InvalidArgument("payload", "a %d-byte message cannot fit a spool of %d bytes", size, min(s.max, maxMessageBytes))
	}
	if s.q.bytes+size > s.max {
		if s.refuse {
			return 0, fmt.Errorf("cloud spool is full (%d messages, %d of %d bytes; %s is %s): %w",
				s.q.live, s.q.bytes, s.max, EnvWhenFull, WhenFullRefuseNew, errdefs.ErrResourceExhausted)
		}
		if err := s.trimLocked(s.max - size); err != nil {
			return 0, err
		}
	}
	e := entry{seq: s.next, size: size}
	var pos int64
	if s.log != nil {
		var err error
		if pos, err = s.log.appendPut(&e, topic, payload); err != nil {
			return 0, err
		}
	} else {
		e.topic, e.payload = topic, append([]byte(nil), payload...)
	}
	s.next++
	s.q.push(e)
	return pos, nil
}

// room reports whether putLocked would take a message of size bytes now.
func (s *spool) room(size int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return errClosed()
	case size > s.max || size > maxMessageBytes:
		return errdefs.InvalidArgument("payload", "a %d-byte message cannot fit a spool of %d bytes", size, min(s.max, maxMessageBytes))
	case s.refuse && s.q.bytes+size > s.max:
		return fmt.Errorf("cloud spool is full (%d messages, %d of %d bytes; %s is %s): %w",
			s.q.live, s.q.bytes, s.max, EnvWhenFull, WhenFullRefuseNew, errdefs.ErrResourceExhausted)
	}
	return nil
}

// trimLocked drops the oldest messages until the queue holds at most limit
// bytes, and records the drops as one ack range.
func (s *spool) trimLocked(limit int64) error {
	if s.q.bytes <= limit {
		return nil
	}
	first := s.q.e[s.q.head].seq
	var last uint64
	for s.q.bytes > limit {
		e := s.q.removeAt(s.q.head)
		last = e.seq
		s.dropped++
		if s.log != nil {
			e.seg.live--
		}
	}
	if s.log == nil {
		return nil
	}
	_, err := s.log.appendAck(first, last)
	s.log.collect()
	return err
}

// syncTo returns once the log is on stable storage up to pos. Whoever holds
// syncMu syncs everything written so far, so Puts that arrive during an
// fsync share the next one.
func (s *spool) syncTo(pos int64) error {
	if s.log == nil || pos == 0 {
		return nil
	}
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	if s.log.synced >= pos {
		s.mu.Unlock()
		return nil
	}
	if s.closed {
		s.mu.Unlock()
		return errClosed()
	}
	target, seg := s.log.written, s.log.active()
	s.log.syncing = seg
	s.mu.Unlock()

	err := seg.f.Sync()

	s.mu.Lock()
	defer s.mu.Unlock()
	s.log.syncing = nil
	if err != nil {
		// After a failed fsync the kernel may have dropped the dirty
		// pages: write on in a fresh segment rather than trust this one.
		s.log.needRotate = true
		return fmt.Errorf("cloud spool: fsync %s: %w", seg.path, err)
	}
	s.log.synced = max(s.log.synced, target)
	s.log.collect()
	return nil
}

// flushAcks makes acks durable in the background; Puts make them durable
// sooner whenever they sync.
func (s *spool) flushAcks() {
	defer close(s.flushDone)
	t := time.NewTicker(ackSyncInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopFlush:
			return
		case <-t.C:
			s.mu.Lock()
			pos := s.log.written
			s.mu.Unlock()
			s.syncTo(pos)
		}
	}
}

func (s *spool) Peek(n int) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.collectLocked(s.q.head, n)
}

// peekAfter returns up to n queued messages with Seq greater than after,
// oldest first: the sender's cursor, so that it does not re-read what it has
// in flight.
func (s *spool) peekAfter(after uint64, n int) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.collectLocked(s.q.search(after+1), n)
}

func (s *spool) collectLocked(from, n int) []Message {
	if s.closed || n <= 0 {
		return nil
	}
	var out []Message
	for i := from; i < len(s.q.e) && len(out) < n; i++ {
		e := &s.q.e[i]
		if e.done {
			continue
		}
		topic, payload := e.topic, e.payload
		if s.log != nil {
			var err error
			topic, payload, err = s.log.readMessage(e)
			if err != nil {
				// The disk no longer holds what was written there: drop
				// the message rather than wedge the queue behind it.
				seq := e.seq
				s.removeLocked(i)
				s.dropped++
				i = s.q.search(seq+1) - 1 // removal may have moved the entries
				continue
			}
		}
		out = append(out, Message{Seq: e.seq, Topic: topic, Payload: payload, QoS: 1})
	}
	return out
}

func (s *spool) Ack(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed()
	}
	i := s.q.find(seq)
	if i < 0 {
		return fmt.Errorf("message %d is not in the spool: %w", seq, errdefs.ErrNotFound)
	}
	return s.removeLocked(i)
}

// removeLocked takes e[i] out of the queue and, on disk, records it.
func (s *spool) removeLocked(i int) error {
	e := s.q.removeAt(i)
	if s.log == nil {
		return nil
	}
	e.seg.live--
	_, err := s.log.appendAck(e.seq, e.seq)
	s.log.collect()
	return err
}

func (s *spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.q.live
}

func (s *spool) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.q.bytes
}

func (s *spool) Dropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// resize applies new limits; a smaller spool drops its oldest messages,
// whatever WhenFull says, because they were accepted under the old limit.
func (s *spool) resize(maxBytes int64, whenFull string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed()
	}
	s.max, s.refuse = maxBytes, whenFull == WhenFullRefuseNew
	if s.log != nil {
		s.log.segSize = segmentSizeFor(maxBytes)
	}
	return s.trimLocked(maxBytes)
}

func (s *spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	if s.log == nil {
		s.closed = true
		s.q = index{}
		s.mu.Unlock()
		return nil
	}
	pos := s.log.written
	s.mu.Unlock()
	close(s.stopFlush)
	<-s.flushDone
	err := s.syncTo(pos)

	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.q = index{}
	if cerr := s.log.close(); err == nil {
		err = cerr
	}
	return err
}

// destroy closes the spool and deletes its files: the messages now live
// elsewhere (storage type changed).
func (s *spool) destroy() error {
	if err := s.Close(); err != nil {
		return err
	}
	if s.log == nil {
		return nil
	}
	return s.log.removeFiles()
}

// entry is one message in the index.
type entry struct {
	seq  uint64
	size int64
	// topic and payload hold the message with Memory storage.
	topic   string
	payload []byte
	// seg, off and n locate the record with FileSystem storage.
	seg *segment
	off int64
	n   int32
	// done marks an entry acked out of order, kept until the head passes.
	done bool
}

// index is the queue in Seq order. e[head] is always the oldest queued
// message (the head skips done entries), so FIFO operations are O(1) and an
// ack anywhere is a binary search.
type index struct {
	e     []entry
	head  int
	live  int
	bytes int64
}

func (x *index) push(e entry) {
	x.e = append(x.e, e)
	x.live++
	x.bytes += e.size
}

// search returns the position of the first entry with seq >= seq.
func (x *index) search(seq uint64) int {
	return x.head + sort.Search(len(x.e)-x.head, func(i int) bool { return x.e[x.head+i].seq >= seq })
}

// find returns the position of the queued message seq, or -1.
func (x *index) find(seq uint64) int {
	i := x.search(seq)
	if i < len(x.e) && x.e[i].seq == seq && !x.e[i].done {
		return i
	}
	return -1
}

// removeAt marks e[i] done and returns a copy of it.
func (x *index) removeAt(i int) entry {
	e := x.e[i]
	x.e[i].done = true
	x.e[i].topic, x.e[i].payload = "", nil
	x.live--
	x.bytes -= e.size
	x.advance()
	return e
}

func (x *index) advance() {
	for x.head < len(x.e) && x.e[x.head].done {
		x.e[x.head] = entry{}
		x.head++
	}
	if x.head == len(x.e) {
		x.e, x.head = x.e[:0], 0
		return
	}
	if x.head >= 1024 && x.head*2 >= len(x.e) {
		n := copy(x.e, x.e[x.head:])
		clear(x.e[n:])
		x.e, x.head = x.e[:n], 0
	}
}

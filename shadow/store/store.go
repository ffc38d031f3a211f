// Package store is the durable store of the shadow daemon: one opaque value
// (a serialized shadow document) per (thing, shadow name), kept in badger on
// the device's flash.
//
// A Put or Delete is on disk (msynced) when it returns; concurrent writers
// share one commit and its syncs. Every value travels in a checksummed
// envelope that also names its key, so damage is reported, never served.
// Open never refuses a damaged directory: torn log tails are reported and
// cut, damaged entries are reported (and stay readable as errors until they
// are overwritten or deleted), and a directory badger cannot open at all is
// moved aside, its intact values salvaged into a fresh one.
package store

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Key names one shadow. Name "" is the thing's classic shadow. Both may hold
// any bytes; their encoded length is bounded (ErrTooLarge).
type Key struct{ Thing, Name string }

func (k Key) String() string {
	if k.Name == "" {
		return fmt.Sprintf("thing %q classic shadow", k.Thing)
	}
	return fmt.Sprintf("thing %q shadow %q", k.Thing, k.Name)
}

// Options configure Open.
type Options struct {
	Dir    string       // badger directory (created 0700)
	Logger *slog.Logger // nil = discard
	// GCInterval is how often value-log GC runs; 0 means every 10 minutes,
	// negative disables it.
	GCInterval time.Duration
}

// Report tells what Open found damaged and what it did about it.
type Report struct {
	// Corrupt has one human-readable line per damaged entry or file that
	// Open skipped, cut or quarantined.
	Corrupt []string
	// Damaged are the entries whose stored value failed its check. They stay
	// in the store: Get returns an error wrapping ErrCorrupt for them and
	// List skips them, until they are Put again or Deleted.
	Damaged []Key
	// Quarantined is the directory the whole badger directory was moved to
	// because badger could not open it; "" if it opened.
	Quarantined string
	// Salvaged are the entries copied from the quarantined directory into the
	// fresh one: the newest intact copy found of each. That copy is older
	// than the last write if the last write's only copy was in the damaged
	// bytes, and badger's delete markers are not recovered, so a deleted
	// shadow may come back: the caller should reconcile these with the cloud.
	Salvaged []Key
}

var (
	// ErrCorrupt is wrapped by the error for a value that failed its check.
	ErrCorrupt = errors.New("corrupt value")
	// ErrClosed is returned by calls on a closed Store.
	ErrClosed = errors.New("store closed")
	// ErrTooLarge is returned for a value over MaxValueSize or a key whose
	// encoding is over 1 KiB.
	ErrTooLarge = errors.New("too large")
	// ErrSyncFailed is returned by every write once badger has reported a
	// failed sync: the kernel may have dropped the dirty pages, so no later
	// write can be trusted to be durable until the process restarts.
	ErrSyncFailed = errors.New("sync failed earlier; restart to recover")
)

// CorruptError is a damaged entry.
type CorruptError struct {
	Key    Key
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("store: %s: corrupt value: %s", e.Key, e.Reason)
}

func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

const (
	defaultGCInterval = 10 * time.Minute
	// A value-log file is rewritten once half of it is garbage, which keeps
	// the value log under about twice the live data plus what the memtable
	// has not yet told GC about.
	gcDiscardRatio = 0.5
	// gcMaxFiles bounds one GC run to this many 1 MiB files rewritten; a run
	// that hits the bound schedules the next one sooner.
	gcMaxFiles = 16
	// maxGroup bounds the writes one commit carries.
	maxGroup = 256
)

// Store is the shadow store. Its methods are safe for concurrent use.
type Store struct {
	dir  string
	log  *slog.Logger
	db   *badger.DB
	lock *os.File // flocked "<dir>.lock", held while open

	// life: callers in flight, and the closed flag.
	lifeMu  sync.Mutex
	idle    *sync.Cond
	active  int
	closed  bool
	closeFn sync.Once

	// Group commit. The first writer to find no leader leads: it commits
	// everything queued (up to maxGroup) in one badger transaction, then
	// hands the lead to the first writer queued behind it. Followers sleep
	// until their write is committed or the lead is handed to them. No
	// goroutine exists while nobody writes.
	qmu     sync.Mutex
	queue   []*write
	leading bool
	seq     uint64 // last sequence assigned; under qmu

	syncFailed atomic.Pointer[string]
	commits    atomic.Uint64 // badger commits, each two syncs

	gcStop chan struct{}
	gcDone chan struct{}
}

type write struct {
	key  []byte
	env  envelope // unsealed envelope; none for a delete
	val  []byte   // sealed envelope; nil deletes
	err  error
	wake chan bool // true: lead; false: committed, err is set
}

// Open opens or creates the store in opts.Dir. It fails only when the
// directory cannot be used at all (permissions, no space, another process
// holds it); damage is repaired as described in Report and never fails Open.
func Open(opts Options) (*Store, Report, error) {
	var rep Report
	if opts.Dir == "" {
		return nil, rep, errors.New("store: Options.Dir is empty")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := filepath.Clean(opts.Dir)
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return nil, rep, fmt.Errorf("store: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, rep, err
	}
	if note := finishSwap(dir); note != "" {
		rep.Corrupt = append(rep.Corrupt, note)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		_ = lock.Close()
		return nil, rep, fmt.Errorf("store: %w", err)
	}
	s := &Store{dir: dir, log: log, lock: lock}
	s.idle = sync.NewCond(&s.lifeMu)
	blog := &badgerLogger{log: log, syncFailed: s.markSyncFailed}

	rep.Corrupt = append(rep.Corrupt, guardLogTails(dir)...)
	var db *badger.DB
	var scan scanResult
	err = verifyTables(dir, blog)
	if err == nil {
		db, scan, err = openAndScan(dir, blog)
	}
	if err != nil {
		if environmental(err) {
			_ = s.lock.Close()
			return nil, rep, fmt.Errorf("store: open %s: %w", dir, err)
		}
		db, scan, err = s.quarantine(&rep, blog, err)
		if err != nil {
			_ = s.lock.Close()
			return nil, rep, err
		}
	}
	s.db = db
	s.seq = scan.maxSeq
	rep.Corrupt = append(rep.Corrupt, scan.corrupt...)
	rep.Damaged = scan.damaged
	for _, line := range rep.Corrupt {
		log.Warn("shadow store damage", "dir", dir, "what", line)
	}
	log.Debug("shadow store open", "dir", dir, "entries", scan.entries)

	interval := opts.GCInterval
	if interval == 0 {
		interval = defaultGCInterval
	}
	if interval > 0 {
		s.gcStop, s.gcDone = make(chan struct{}), make(chan struct{})
		go s.gcLoop(interval)
	}
	return s, rep, nil
}

// scanResult is what the open-time integrity scan found.
type scanResult struct {
	entries int
	maxSeq  uint64
	corrupt []string
	damaged []Key
}

// openAndScan opens badger and checks every entry. A panic inside badger
// (it asserts on much of what it reads) counts as badger refusing the
// directory.
//
// The check reads every value through badger's mappings of its files, and
// the pages it faults in stay charged to the process (its PSS) for as long
// as the files stay mapped: some 10 MB for 2,500 documents of 4 KB, on a
// device that budgets the whole suite at 40 MB. So the check runs on a
// first badger instance, which is closed, and the store serves from a
// second one, whose mappings hold only what is read later. Badger's own
// recovery (cutting torn tails) happens in the first.
func openAndScan(dir string, blog *badgerLogger) (db *badger.DB, res scanResult, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("badger panicked: %v", p)
			if db != nil {
				closeQuietly(db)
				db = nil
			}
		}
	}()
	db, err = badger.Open(badgerOptions(dir, blog))
	if err != nil {
		return nil, res, err
	}
	res, err = scan(db)
	if err != nil {
		closeQuietly(db)
		return nil, res, err
	}
	err = db.Close()
	db = nil
	if err != nil {
		return nil, res, fmt.Errorf("closing after the check: %w", err)
	}
	db, err = badger.Open(badgerOptions(dir, blog))
	if err != nil {
		return nil, res, fmt.Errorf("reopening after the check: %w", err)
	}
	return db, res, nil
}

func closeQuietly(db *badger.DB) {
	defer func() { _ = recover() }()
	_ = db.Close()
}

// scan reads every entry, checks its key and envelope, and notes the
// highest sequence so new writes continue after it.
func scan(db *badger.DB) (res scanResult, err error) {
	err = db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			res.entries++
			k, kerr := decodeKey(item.Key())
			if kerr != nil {
				res.corrupt = append(res.corrupt, fmt.Sprintf("badger key %q: %v; skipped", item.Key(), kerr))
				continue
			}
			_, seq, err := readValue(item, false)
			if err != nil {
				res.corrupt = append(res.corrupt, fmt.Sprintf("%s: %v; Get returns ErrCorrupt until it is rewritten", k, err))
				res.damaged = append(res.damaged, k)
				continue
			}
			res.maxSeq = max(res.maxSeq, seq)
		}
		return nil
	})
	return res, err
}

// readValue reads item's envelope, checks it and returns a copy of the value
// inside (if copyValue) and its sequence. Any failure, including a panic in
// badger reading damaged data, is returned as the reason the entry is
// damaged.
func readValue(item *badger.Item, copyValue bool) (value []byte, seq uint64, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("badger panicked reading it: %v", p)
		}
	}()
	verr := item.Value(func(env []byte) error {
		v, sq, err := checkEnvelope(item.Key(), env)
		if err != nil {
			return err
		}
		if copyValue {
			value = append(make([]byte, 0, len(v)), v...)
		}
		seq = sq
		return nil
	})
	return value, seq, verr
}

// checkEnvelope checks that env is intact and belongs to key, and returns
// the value inside it (aliasing env).
func checkEnvelope(key, env []byte) (value []byte, seq uint64, err error) {
	k, value, seq, err := openEnvelope(env)
	if err != nil {
		return nil, 0, err
	}
	if !bytes.Equal(k, key) {
		return nil, 0, fmt.Errorf("envelope belongs to badger key %q", k)
	}
	return value, seq, nil
}

func (s *Store) enter() error {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.active++
	return nil
}

func (s *Store) leave() {
	s.lifeMu.Lock()
	s.active--
	if s.active == 0 {
		s.idle.Broadcast()
	}
	s.lifeMu.Unlock()
}

// Get returns the value stored for k. ok is false if there is none. A
// damaged value is an error wrapping ErrCorrupt (a *CorruptError).
func (s *Store) Get(k Key) (value []byte, ok bool, err error) {
	if err := s.enter(); err != nil {
		return nil, false, err
	}
	defer s.leave()
	key := encodeKey(k)
	if len(key) > maxKeySize {
		return nil, false, nil // never stored
	}
	defer func() {
		if p := recover(); p != nil {
			value, ok, err = nil, false, fmt.Errorf("store: get %s: badger panicked: %v", k, p)
		}
	}()
	err = s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("store: get %s: %w", k, err)
		}
		value, _, err = readValue(item, true)
		if err != nil {
			return &CorruptError{Key: k, Reason: err.Error()}
		}
		ok = true
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return value, ok, nil
}

// Put stores value for k. It returns once the write is synced to disk.
func (s *Store) Put(k Key, value []byte) error {
	if len(value) > MaxValueSize {
		return fmt.Errorf("store: put %s: value of %d bytes: %w (max %d)", k, len(value), ErrTooLarge, MaxValueSize)
	}
	key := encodeKey(k)
	if len(key) > maxKeySize {
		return fmt.Errorf("store: put %s: key: %w", k, ErrTooLarge)
	}
	// The checksum of the bulk is computed here, outside the queue lock.
	w := &write{key: key, env: newEnvelope(key, value), wake: make(chan bool, 1)}
	if err := s.submit(w); err != nil {
		return fmt.Errorf("store: put %s: %w", k, err)
	}
	return nil
}

// Delete removes k; deleting a missing key is not an error. It returns once
// the delete is synced to disk.
func (s *Store) Delete(k Key) error {
	key := encodeKey(k)
	if len(key) > maxKeySize {
		return nil // never stored
	}
	if err := s.submit(&write{key: key, wake: make(chan bool, 1)}); err != nil {
		return fmt.Errorf("store: delete %s: %w", k, err)
	}
	return nil
}

func (s *Store) submit(w *write) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()

	s.qmu.Lock()
	if w.env.buf != nil {
		s.seq++
		w.val = w.env.seal(s.seq)
	}
	s.queue = append(s.queue, w)
	lead := !s.leading
	s.leading = true
	s.qmu.Unlock()

	if !lead && !<-w.wake {
		return w.err
	}
	// Leading: w is at the head of the queue.
	s.qmu.Lock()
	n := min(len(s.queue), maxGroup)
	group := make([]*write, n)
	copy(group, s.queue)
	rest := copy(s.queue, s.queue[n:])
	clear(s.queue[rest:])
	s.queue = s.queue[:rest]
	s.qmu.Unlock()

	s.commitGroup(group)

	s.qmu.Lock()
	if len(s.queue) > 0 {
		s.queue[0].wake <- true
	} else {
		s.leading = false
	}
	s.qmu.Unlock()
	for _, g := range group[1:] {
		g.wake <- false
	}
	return w.err
}

// commitGroup writes group in as few badger transactions as badger's
// transaction size limit allows, each synced before Commit returns, and sets
// every write's err.
func (s *Store) commitGroup(group []*write) {
	// A panic here would leave the lead taken and every later writer
	// waiting; it fails this group instead.
	defer func() {
		if p := recover(); p != nil {
			for _, w := range group {
				w.err = fmt.Errorf("badger panicked committing: %v", p)
			}
		}
	}()
	if msg := s.syncFailed.Load(); msg != nil {
		for _, w := range group {
			w.err = ErrSyncFailed
		}
		return
	}
	commitWrites(s.db, group, func() {
		s.commits.Add(1)
	})
	if msg := s.syncFailed.Load(); msg != nil {
		for _, w := range group {
			if w.err == nil {
				w.err = ErrSyncFailed
			}
		}
	}
}

// commitWrites commits ws (a nil val deletes) and sets each write's err.
// committed is called after every badger commit.
func commitWrites(db *badger.DB, ws []*write, committed func()) {
	var txn *badger.Txn
	var staged []*write
	commit := func() {
		err := txn.Commit()
		committed()
		for _, w := range staged {
			w.err = err
		}
		staged, txn = staged[:0], nil
	}
	stage := func(w *write) error {
		if txn == nil {
			txn = db.NewTransaction(true)
		}
		if w.val == nil {
			return txn.Delete(w.key)
		}
		return txn.Set(w.key, w.val)
	}
	for _, w := range ws {
		err := stage(w)
		if errors.Is(err, badger.ErrTxnTooBig) && len(staged) > 0 {
			commit()
			err = stage(w)
		}
		if err != nil {
			w.err = err
			continue
		}
		staged = append(staged, w)
	}
	if len(staged) > 0 {
		commit()
	}
	if txn != nil {
		txn.Discard()
	}
}

func (s *Store) markSyncFailed(msg string) {
	s.syncFailed.CompareAndSwap(nil, &msg)
}

// List calls fn for every intact entry of thing ("" = every thing), ordered
// by thing then name, and stops at the first error fn returns, returning it.
// fn owns the value it is given and may call the Store. Damaged entries are
// skipped and logged, not returned as an error, so that one damaged shadow
// cannot stop a daemon that lists at start; Open reports them
// (Report.Damaged) and Get returns ErrCorrupt for them.
func (s *Store) List(thing string, fn func(k Key, value []byte) error) (err error) {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	prefix := []byte{keyspaceShadow}
	if thing != "" {
		prefix = thingPrefix(thing)
	}
	var fnErr error
	inFn := false
	defer func() {
		if p := recover(); p != nil {
			if inFn {
				panic(p) // fn's, not badger's
			}
			err = fmt.Errorf("store: list: badger panicked: %v", p)
		}
	}()
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k, kerr := decodeKey(item.Key())
			if kerr != nil {
				s.log.Warn("shadow store: list skips a foreign key", "dir", s.dir, "key", fmt.Sprintf("%q", item.Key()))
				continue
			}
			value, _, verr := readValue(item, true)
			if verr != nil {
				s.log.Warn("shadow store: list skips a damaged entry", "dir", s.dir, "err", (&CorruptError{Key: k, Reason: verr.Error()}).Error())
				continue
			}
			inFn = true
			fnErr = fn(k, value)
			inFn = false
			if fnErr != nil {
				return fnErr
			}
		}
		return nil
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("store: list: %w", err)
	}
	return nil
}

// Close waits for calls in flight, stops GC and closes badger. Later calls
// return ErrClosed.
func (s *Store) Close() error {
	err := ErrClosed
	s.closeFn.Do(func() {
		if s.gcStop != nil {
			close(s.gcStop)
			<-s.gcDone
		}
		s.lifeMu.Lock()
		s.closed = true
		for s.active > 0 {
			s.idle.Wait()
		}
		s.lifeMu.Unlock()
		err = s.db.Close()
		if lerr := s.lock.Close(); err == nil {
			err = lerr
		}
		if err != nil {
			err = fmt.Errorf("store: close %s: %w", s.dir, err)
		}
	})
	return err
}

func (s *Store) gcLoop(interval time.Duration) {
	defer close(s.gcDone)
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-s.gcStop:
			return
		case <-t.C:
		}
		next := interval
		if s.collectGarbage() == gcMaxFiles {
			next = interval / 10 // more garbage than one run may take: come back sooner
		}
		t.Reset(next)
	}
}

// collectGarbage rewrites value-log files that are at least half garbage,
// at most gcMaxFiles of them, and returns how many it rewrote.
func (s *Store) collectGarbage() (rewritten int) {
	for rewritten < gcMaxFiles {
		select {
		case <-s.gcStop:
			return rewritten
		default:
		}
		err := s.db.RunValueLogGC(gcDiscardRatio)
		if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
			return rewritten
		}
		if err != nil {
			s.log.Warn("shadow store value-log GC failed", "dir", s.dir, "err", err)
			return rewritten
		}
		rewritten++
	}
	s.log.Debug("shadow store value-log GC hit its bound", "dir", s.dir, "files", rewritten)
	return rewritten
}

// quarantineName is a fresh "<dir>.corrupt-<unix time>[-n]", n above any
// already used in that second, so names sort by age.
func quarantineName(dir string, now time.Time) string {
	base := dir + ".corrupt-" + strconv.FormatInt(now.Unix(), 10)
	matches, _ := filepath.Glob(base + "*")
	if len(matches) == 0 {
		return base
	}
	n := 0
	for _, m := range matches {
		if rest, ok := strings.CutPrefix(m, base+"-"); ok {
			if i, err := strconv.Atoi(rest); err == nil {
				n = max(n, i)
			}
		}
	}
	return base + "-" + strconv.Itoa(n+1)
}

// Sizes calls fn with every key of thing ("" = all) and the stored size of
// its value, without reading values (no value-log reads, nothing decoded):
// what a caller needs to account for the store's bytes at start. Sizes
// include the envelope, so they are a few bytes above the values'.
func (s *Store) Sizes(thing string, fn func(k Key, size int)) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	prefix := []byte{keyspaceShadow}
	if thing != "" {
		prefix = thingPrefix(thing)
	}
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k, err := decodeKey(item.Key())
			if err != nil {
				continue
			}
			fn(k, int(item.ValueSize()))
		}
		return nil
	})
}

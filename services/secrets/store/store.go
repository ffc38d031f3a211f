// Package store is the secrets daemon's store: secrets and their versions
// on disk under DIR/data/secrets/, every value encrypted with AES-256-GCM
// under one random data key, the data key sealed to the sealing key
// (package envelope). See file.go for the file format and README.md for the
// policies.
//
// Nothing in clear leaves this package except through Value. The store
// keeps the ciphertexts in memory (bounded by its byte limit) and the
// data key once it has been unsealed.
package store

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/evergreen-edge/evergreen/services/kit/atomicfile"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/secrets/envelope"
)

// Staging labels with a meaning of their own.
const (
	Current  = "AWSCURRENT"
	Previous = "AWSPREVIOUS"
)

// Limits. The defaults hold 64 secrets of Secrets Manager's largest value.
const (
	// MaxValueBytes is Secrets Manager's limit on a value.
	MaxValueBytes = 64 << 10
	// DefaultMaxSecrets bounds the number of secrets.
	DefaultMaxSecrets = 64
	// DefaultMaxStoredBytes bounds the bytes of every stored version's
	// value, all secrets together.
	DefaultMaxStoredBytes = DefaultMaxSecrets * MaxValueBytes
	// MaxLabelsPerSecret bounds the staging labels of one secret (Secrets
	// Manager's limit), and so its versions: a version without a label is
	// dropped.
	MaxLabelsPerSecret = 20
)

const (
	dataKeySize = 32
	nonceSize   = 12
	tagSize     = 16
	aadPrefix   = "evergreen-secrets-v1"
)

// Options configure Open.
type Options struct {
	// Dir holds the slot files (DIR/data/secrets).
	Dir string
	// Key returns the sealing key; it is called when the data key must be
	// unsealed or sealed, and by CheckKey. It should be cheap when the key
	// has not changed.
	Key func() (crypto.Signer, error)
	// Limits; zero means the default.
	MaxSecrets     int
	MaxStoredBytes int64
	Now            func() time.Time
	Log            *slog.Logger
}

// Report says what Open found.
type Report struct {
	// Slot is the file the store was loaded from ("" for a new store).
	Slot       string
	Generation uint64
	// Damaged lists slot files that could not be used, with why.
	Damaged []string
}

// Version describes one version of a secret, without its value.
type Version struct {
	ID      string
	Stages  []string
	Created time.Time
	Size    int
	Binary  bool
}

// HasStage says whether v carries label.
func (v Version) HasStage(label string) bool { return slices.Contains(v.Stages, label) }

// Secret describes a secret, without values. Versions are newest first.
type Secret struct {
	Name     string
	ARN      string
	Versions []Version
}

// Bytes is the size of all its versions' values.
func (s Secret) Bytes() int64 {
	var n int64
	for _, v := range s.Versions {
		n += int64(v.Size)
	}
	return n
}

// Labels returns every label of every version.
func (s Secret) Labels() []string {
	var out []string
	for _, v := range s.Versions {
		out = append(out, v.Stages...)
	}
	return out
}

// Store is the open store. Its methods are safe for concurrent use; one
// mutex serialises them (writes are rare and small).
type Store struct {
	o   Options
	log *slog.Logger

	mu      sync.Mutex
	gen     uint64
	slot    int // slot of generation gen; -1 before the first write
	secrets map[string]*secret
	sealed  *sealedKey
	dataKey []byte // nil until unsealed or created
}

type secret struct {
	name, arn string
	versions  []*version
}

type version struct {
	id             string
	stages         []string
	created        int64
	binary         bool
	nonce, ct      []byte
	plaintextBytes int
}

// Open loads the newest good generation from o.Dir, creating the directory
// (0700) if needed. Damaged slots are reported, not fatal; only an
// unreadable directory is.
func Open(o Options) (*Store, Report, error) {
	if o.MaxSecrets <= 0 {
		o.MaxSecrets = DefaultMaxSecrets
	}
	if o.MaxStoredBytes <= 0 {
		o.MaxStoredBytes = DefaultMaxStoredBytes
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Key == nil {
		return nil, Report{}, errors.New("store: no sealing key source")
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, Report{}, fmt.Errorf("store: %w", err)
	}
	// Temp files of a write a crash interrupted (atomicfile's names).
	if leftovers, err := filepath.Glob(filepath.Join(o.Dir, ".store.*.tmp-*")); err == nil {
		for _, f := range leftovers {
			os.Remove(f)
		}
	}
	s := &Store{o: o, log: o.Log, slot: -1, secrets: map[string]*secret{}}
	var rep Report
	var best *body
	for i, name := range slotNames {
		p := filepath.Join(o.Dir, name)
		gen, b, err := readSlot(p)
		if err == nil {
			err = s.check(b)
		}
		switch {
		case errors.Is(err, os.ErrNotExist):
			continue
		case err != nil:
			rep.Damaged = append(rep.Damaged, fmt.Sprintf("%s: %v", p, err))
			continue
		}
		if best == nil || gen > s.gen {
			best, s.gen, s.slot = b, gen, i
		}
	}
	if best != nil {
		s.load(best)
		rep.Slot, rep.Generation = filepath.Join(o.Dir, slotNames[s.slot]), s.gen
	}
	return s, rep, nil
}

// check validates a decoded generation beyond its checksum.
func (s *Store) check(b *body) error {
	names := map[string]bool{}
	for i, sec := range b.Secrets {
		if sec.Name == "" || names[sec.Name] {
			return fmt.Errorf("secrets[%d]: empty or repeated name", i)
		}
		names[sec.Name] = true
		if len(sec.Versions) == 0 {
			return fmt.Errorf("secrets[%d] (%s): no versions", i, sec.Name)
		}
		for j, v := range sec.Versions {
			if v.ID == "" || len(v.Nonce) != nonceSize || len(v.Ciphertext) < tagSize || len(v.Stages) == 0 {
				return fmt.Errorf("secrets[%d] (%s): versions[%d] is incomplete", i, sec.Name, j)
			}
		}
	}
	if len(b.Secrets) > 0 && (b.DataKey == nil || len(b.DataKey.Envelope) == 0) {
		return errors.New("secrets without a sealed data key")
	}
	return nil
}

func (s *Store) load(b *body) {
	s.sealed = b.DataKey
	for _, fs := range b.Secrets {
		sec := &secret{name: fs.Name, arn: fs.ARN}
		for _, fv := range fs.Versions {
			sec.versions = append(sec.versions, &version{
				id: fv.ID, stages: fv.Stages, created: fv.Created, binary: fv.Binary,
				nonce: fv.Nonce, ct: fv.Ciphertext, plaintextBytes: len(fv.Ciphertext) - tagSize,
			})
		}
		s.secrets[fs.Name] = sec
	}
}

// Generation is the number of the generation in force (0: never written).
func (s *Store) Generation() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

// Usage returns the number of secrets and the bytes of their values.
func (s *Store) Usage() (int, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.secrets), s.storedBytes(s.secrets)
}

// Limits returns the store's limits.
func (s *Store) Limits() (maxSecrets int, maxStoredBytes int64) {
	return s.o.MaxSecrets, s.o.MaxStoredBytes
}

func (s *Store) storedBytes(m map[string]*secret) int64 {
	var n int64
	for _, sec := range m {
		for _, v := range sec.versions {
			n += int64(v.plaintextBytes)
		}
	}
	return n
}

// List returns every secret, by name.
func (s *Store) List() []Secret {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Secret, 0, len(s.secrets))
	for _, sec := range s.secrets {
		out = append(out, sec.describe())
	}
	slices.SortFunc(out, func(a, b Secret) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Get describes the secret called name.
func (s *Store) Get(name string) (Secret, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, ok := s.secrets[name]
	if !ok {
		return Secret{}, false
	}
	return sec.describe(), true
}

func (sec *secret) describe() Secret {
	d := Secret{Name: sec.name, ARN: sec.arn}
	for _, v := range sec.versions {
		d.Versions = append(d.Versions, Version{
			ID: v.id, Stages: slices.Clone(v.stages), Created: time.UnixMilli(v.created),
			Size: v.plaintextBytes, Binary: v.binary,
		})
	}
	return d
}

// Put is one PutSecret.
type Put struct {
	Name string
	// ARN, when not empty, is recorded with the secret.
	ARN    string
	Value  []byte
	Binary bool
	// Labels besides AWSCURRENT (validated by the caller; AWSCURRENT and
	// repeats are ignored, AWSPREVIOUS is refused).
	Labels []string
	// VersionID, when not empty, names the version (else a random UUID).
	VersionID string
}

// Put stores a new version of a secret and commits the store: the new
// version gets AWSCURRENT and p.Labels, the version that was AWSCURRENT gets
// AWSPREVIOUS, the labels move away from older versions, and versions left
// without a label are dropped. It returns the secret as stored and the
// version id.
func (s *Store) Put(p Put) (Secret, string, error) {
	if len(p.Value) > MaxValueBytes {
		return Secret{}, "", errdefs.InvalidArgument("value", "%d bytes is over the %d-byte limit of a secret value", len(p.Value), MaxValueBytes)
	}
	labels := []string{Current}
	for _, l := range p.Labels {
		if l == Previous {
			return Secret{}, "", errdefs.InvalidArgument("labels", "%s is managed by the store (it marks the version that was %s before)", Previous, Current)
		}
		if !slices.Contains(labels, l) {
			labels = append(labels, l)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()

	old := s.secrets[p.Name]
	if old == nil && len(s.secrets) >= s.o.MaxSecrets {
		return Secret{}, "", fmt.Errorf("name: the store holds %d secrets, its limit; delete one first: %w", len(s.secrets), errdefs.ErrResourceExhausted)
	}
	if old != nil && p.ARN != "" && old.arn != "" && old.arn != p.ARN {
		return Secret{}, "", errdefs.InvalidArgument("name", "secret %q is stored for %s, not %s; delete it first or put it under that ARN", p.Name, old.arn, p.ARN)
	}
	if err := s.unlock(); err != nil {
		return Secret{}, "", err
	}

	next := &secret{name: p.Name, arn: p.ARN}
	if old != nil {
		if next.arn == "" {
			next.arn = old.arn
		}
		for _, v := range old.versions {
			c := *v
			c.stages = slices.Clone(v.stages)
			next.versions = append(next.versions, &c)
		}
	}

	// The version the labels go to: an existing one put again with the
	// same value, or a new one.
	var target *version
	if p.VersionID != "" {
		for _, v := range next.versions {
			if v.id != p.VersionID {
				continue
			}
			plain, err := s.decrypt(p.Name, v)
			if err != nil {
				return Secret{}, "", err
			}
			if !bytes.Equal(plain, p.Value) || v.binary != p.Binary {
				clear(plain)
				return Secret{}, "", fmt.Errorf("version_id: secret %q already has version %q with another value: %w", p.Name, p.VersionID, errdefs.ErrAlreadyExists)
			}
			clear(plain)
			target = v
		}
	}
	if target == nil {
		id := p.VersionID
		if id == "" {
			id = newUUID()
		}
		nonce, ct, err := s.encrypt(p.Name, id, p.Binary, p.Value)
		if err != nil {
			return Secret{}, "", err
		}
		target = &version{id: id, created: s.o.Now().UnixMilli(), binary: p.Binary, nonce: nonce, ct: ct, plaintextBytes: len(p.Value)}
		next.versions = append([]*version{target}, next.versions...)
	}

	// AWSPREVIOUS follows AWSCURRENT when AWSCURRENT moves.
	var wasCurrent *version
	for _, v := range next.versions {
		if v != target && slices.Contains(v.stages, Current) {
			wasCurrent = v
		}
	}
	if wasCurrent != nil {
		for _, v := range next.versions {
			v.stages = slices.DeleteFunc(v.stages, func(l string) bool { return l == Previous })
		}
		wasCurrent.stages = append(wasCurrent.stages, Previous)
	}
	for _, v := range next.versions {
		if v != target {
			v.stages = slices.DeleteFunc(v.stages, func(l string) bool { return slices.Contains(labels, l) })
		}
	}
	for _, l := range labels {
		if !slices.Contains(target.stages, l) {
			target.stages = append(target.stages, l)
		}
	}
	next.versions = slices.DeleteFunc(next.versions, func(v *version) bool { return len(v.stages) == 0 })

	n := 0
	for _, v := range next.versions {
		n += len(v.stages)
	}
	if n > MaxLabelsPerSecret {
		return Secret{}, "", errdefs.InvalidArgument("labels", "secret %q would carry %d staging labels, over the limit of %d", p.Name, n, MaxLabelsPerSecret)
	}

	m := s.cloneMap()
	m[p.Name] = next
	if used := s.storedBytes(m); used > s.o.MaxStoredBytes {
		return Secret{}, "", fmt.Errorf("value: storing it would take the store to %d bytes, over its limit of %d; delete secrets first: %w",
			used, s.o.MaxStoredBytes, errdefs.ErrResourceExhausted)
	}
	if err := s.commit(m, s.sealed); err != nil {
		return Secret{}, "", err
	}
	return next.describe(), target.id, nil
}

// Delete deletes the secret called name and returns how many versions it
// had.
func (s *Store) Delete(name string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, ok := s.secrets[name]
	if !ok {
		return 0, errdefs.NotFound("secret", name)
	}
	m := s.cloneMap()
	delete(m, name)
	sealed := s.sealed
	if len(m) == 0 && s.dataKey == nil {
		// Nothing left that needs the old data key: a store whose key is
		// lost becomes usable again once emptied.
		sealed = nil
	}
	if err := s.commit(m, sealed); err != nil {
		return 0, err
	}
	return len(sec.versions), nil
}

// Value decrypts the version of secret name that carries stage. The
// caller must clear the returned bytes when done.
func (s *Store) Value(name, stage string) (Version, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, ok := s.secrets[name]
	if !ok {
		return Version{}, nil, errdefs.NotFound("secret", name)
	}
	for i, v := range sec.versions {
		if !slices.Contains(v.stages, stage) {
			continue
		}
		if err := s.unlock(); err != nil {
			return Version{}, nil, err
		}
		plain, err := s.decrypt(name, v)
		if err != nil {
			return Version{}, nil, err
		}
		return sec.describe().Versions[i], plain, nil
	}
	return Version{}, nil, fmt.Errorf("secret %q has no version labelled %s: %w", name, stage, errdefs.ErrNotFound)
}

// Unlock unseals the data key now (at start), so that a later change of
// the sealing key can be followed by CheckKey. An empty store needs no key.
func (s *Store) Unlock() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sealed == nil {
		return nil
	}
	return s.unlock()
}

// CheckKey reseals the data key when the sealing key has changed since it
// was sealed (certmgr made a new core key, config.json names another key).
// It does nothing unless the data key is unsealed.
func (s *Store) CheckKey() (resealed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dataKey == nil || s.sealed == nil {
		return false, nil
	}
	k, err := s.o.Key()
	if err != nil {
		return false, err
	}
	id, err := envelope.KeyIDString(k.Public())
	if err != nil {
		return false, err
	}
	if id == s.sealed.KeyID {
		return false, nil
	}
	sealed, err := s.seal(k)
	if err != nil {
		return false, err
	}
	if err := s.commit(s.secrets, sealed); err != nil {
		return false, err
	}
	s.log.Info("data key resealed to the new sealing key", "key", id)
	return true, nil
}

// unlock makes s.dataKey available: unsealed from the store, or new when
// the store has none (or holds no secret that needs the old one). Callers
// hold mu.
func (s *Store) unlock() error {
	if s.dataKey != nil {
		return nil
	}
	k, err := s.o.Key()
	if err != nil {
		return err
	}
	if s.sealed != nil {
		dk, err := envelope.Open(k, s.sealed.Envelope)
		switch {
		case err == nil && len(dk) == dataKeySize:
			s.dataKey = dk
			if id, _ := envelope.KeyIDString(k.Public()); id != s.sealed.KeyID {
				// The key id recorded beside the envelope is only for
				// messages; the envelope's own header is what counts.
				s.sealed = &sealedKey{KeyID: id, Envelope: s.sealed.Envelope}
			}
			return nil
		case len(s.secrets) > 0:
			id, _ := envelope.KeyIDString(k.Public())
			if err == nil {
				err = fmt.Errorf("data key of %d bytes", len(dk))
			}
			return fmt.Errorf("the store's data key is sealed to %s and the sealing key is now %s (%v); put the old key back, or delete every secret (ggctl secret rm) and put them again: %w",
				s.sealed.KeyID, id, err, errdefs.ErrFailedPrecondition)
		}
	}
	dk := make([]byte, dataKeySize)
	rand.Read(dk)
	s.dataKey = dk
	sealed, err := s.seal(k)
	if err != nil {
		s.dataKey = nil
		return err
	}
	s.sealed = sealed
	return nil
}

func (s *Store) seal(k crypto.Signer) (*sealedKey, error) {
	id, err := envelope.KeyIDString(k.Public())
	if err != nil {
		return nil, err
	}
	env, err := envelope.Seal(k.Public(), s.dataKey)
	if err != nil {
		return nil, fmt.Errorf("seal the data key to %s: %w", id, err)
	}
	return &sealedKey{KeyID: id, Envelope: env}, nil
}

func aad(name, id string, binary bool) []byte {
	kind := "string"
	if binary {
		kind = "binary"
	}
	return []byte(aadPrefix + "\x00" + name + "\x00" + id + "\x00" + kind)
}

func (s *Store) gcm() (cipher.AEAD, error) {
	b, err := aes.NewCipher(s.dataKey)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func (s *Store) encrypt(name, id string, binary bool, plain []byte) (nonce, ct []byte, err error) {
	g, err := s.gcm()
	if err != nil {
		return nil, nil, err
	}
	nonce = make([]byte, nonceSize)
	rand.Read(nonce)
	return nonce, g.Seal(nil, nonce, plain, aad(name, id, binary)), nil
}

func (s *Store) decrypt(name string, v *version) ([]byte, error) {
	g, err := s.gcm()
	if err != nil {
		return nil, err
	}
	plain, err := g.Open(nil, v.nonce, v.ct, aad(name, v.id, v.binary))
	if err != nil {
		return nil, fmt.Errorf("secret %q version %q does not decrypt with the store's data key (damaged or moved): %w", name, v.id, errdefs.ErrInternal)
	}
	return plain, nil
}

func (s *Store) cloneMap() map[string]*secret {
	m := make(map[string]*secret, len(s.secrets)+1)
	for k, v := range s.secrets {
		m[k] = v
	}
	return m
}

// commit writes m as the next generation to the other slot and, once it is
// durable, makes it the state in memory. Callers hold mu; on error nothing
// changes.
func (s *Store) commit(m map[string]*secret, sealed *sealedKey) error {
	b := body{DataKey: sealed, Secrets: []fileSecret{}}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		sec := m[n]
		fs := fileSecret{Name: sec.name, ARN: sec.arn}
		for _, v := range sec.versions {
			fs.Versions = append(fs.Versions, fileVersion{ID: v.id, Stages: v.stages, Created: v.created, Binary: v.binary, Nonce: v.nonce, Ciphertext: v.ct})
		}
		b.Secrets = append(b.Secrets, fs)
	}
	data, err := marshal(&b)
	if err != nil {
		return err
	}
	slot := 0
	if s.slot == 0 {
		slot = 1
	}
	if err := atomicfile.WriteFile(filepath.Join(s.o.Dir, slotNames[slot]), encodeFile(s.gen+1, data), 0o600); err != nil {
		return fmt.Errorf("secret store: %v: %w", err, errdefs.ErrInternal)
	}
	s.gen++
	s.slot = slot
	s.secrets = m
	s.sealed = sealed
	return nil
}

func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

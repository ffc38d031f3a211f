package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// The store is two slot files, written in turn; each holds a whole
// generation of the store:
//
//	EGSTORE 1 gen=<generation> len=<body bytes> sha256=<hex of body>\n
//	<body: JSON>
//
// A write goes to the slot that does not hold the newest generation
// (atomicfile: temp file, fsync, rename, fsync dir), so the newest good
// generation is never the file being written. Loading reads both slots and
// takes the highest generation whose length and checksum hold; a damaged
// newest slot (a torn or corrupted write, a bad sector) falls back to the
// generation before it.
var slotNames = [2]string{"store.a", "store.b"}

const fileMagic = "EGSTORE 1"

// maxFileBytes bounds what Open reads from one slot: far above any store
// within the limits (values are base64 in JSON), far below trouble.
const maxFileBytes = 64 << 20

// body is the JSON of one generation. Values are never in it in clear: each
// version holds its AES-256-GCM ciphertext under the data key, and the data
// key is sealed to the sealing key (package envelope).
type body struct {
	DataKey *sealedKey   `json:"dataKey,omitempty"`
	Secrets []fileSecret `json:"secrets"`
}

type sealedKey struct {
	// KeyID is the sealing key's id ("sha256:<hex>"), for messages.
	KeyID    string `json:"keyId"`
	Envelope []byte `json:"envelope"`
}

type fileSecret struct {
	Name     string        `json:"name"`
	ARN      string        `json:"arn,omitempty"`
	Versions []fileVersion `json:"versions"`
}

type fileVersion struct {
	ID         string   `json:"id"`
	Stages     []string `json:"stages"`
	Created    int64    `json:"createdMs"`
	Binary     bool     `json:"binary,omitempty"`
	Nonce      []byte   `json:"nonce"`
	Ciphertext []byte   `json:"ciphertext"`
}

func marshal(b *body) ([]byte, error) {
	data, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("secret store: encode: %w", err)
	}
	return data, nil
}

func encodeFile(gen uint64, b []byte) []byte {
	sum := sha256.Sum256(b)
	var out bytes.Buffer
	out.Grow(len(b) + 128)
	fmt.Fprintf(&out, "%s gen=%d len=%d sha256=%s\n", fileMagic, gen, len(b), hex.EncodeToString(sum[:]))
	out.Write(b)
	return out.Bytes()
}

// readSlot reads and checks one slot file.
func readSlot(path string) (uint64, *body, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return 0, nil, err
	}
	if len(data) > maxFileBytes {
		return 0, nil, fmt.Errorf("larger than %d bytes", maxFileBytes)
	}
	nl := bytes.IndexByte(data, '\n')
	if nl < 0 {
		return 0, nil, errors.New("no header line (torn write?)")
	}
	fields := strings.Fields(string(data[:nl]))
	if len(fields) != 5 || fields[0]+" "+fields[1] != fileMagic {
		return 0, nil, fmt.Errorf("header %q is not %q", truncate(string(data[:nl]), 80), fileMagic+" gen=N len=N sha256=HEX")
	}
	num := func(f, key string) (uint64, error) {
		v, ok := strings.CutPrefix(f, key+"=")
		if !ok {
			return 0, fmt.Errorf("header lacks %s=", key)
		}
		return strconv.ParseUint(v, 10, 64)
	}
	gen, err := num(fields[2], "gen")
	if err != nil {
		return 0, nil, err
	}
	n, err := num(fields[3], "len")
	if err != nil {
		return 0, nil, err
	}
	sum, ok := strings.CutPrefix(fields[4], "sha256=")
	if !ok {
		return 0, nil, errors.New("header lacks sha256=")
	}
	b := data[nl+1:]
	if uint64(len(b)) != n {
		return 0, nil, fmt.Errorf("body is %d bytes, header says %d (torn write?)", len(b), n)
	}
	got := sha256.Sum256(b)
	if hex.EncodeToString(got[:]) != sum {
		return 0, nil, errors.New("checksum mismatch (corrupted)")
	}
	var bd body
	if err := json.Unmarshal(b, &bd); err != nil {
		return 0, nil, fmt.Errorf("body: %v", err)
	}
	return gen, &bd, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

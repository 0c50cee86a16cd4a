package integrity

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"math"

	"github.com/transparency-dev/merkle/rfc6962"

	ledger "github.com/stanceledger/ledger"
)

// LeafDomain begins the bytes of every leaf. It names the layout, so a future layout
// can never produce the bytes of this one.
const LeafDomain = "stanceledger/leaf/v1"

// HashSize is the size of every node hash in the tree (SHA-256).
const HashSize = sha256.Size

// Leaf is one ledger record as the tree sees it: exactly the bytes the ledger stores,
// never a re-encoding.
type Leaf struct {
	EventID string
	// Stream is the stream that holds the record, "party-<party>".
	Stream string
	// Type is the stored event type, e.g. "StatementIssued".
	Type     string
	Data     []byte
	Metadata []byte
}

// Bytes returns the leaf bytes of l:
//
//	"stanceledger/leaf/v1"
//	u32be(len(event_id)) event_id
//	u32be(len(stream))   stream
//	u32be(len(type))     type
//	u32be(len(data))     data
//	u32be(len(metadata)) metadata
//
// where u32be is a 4-byte big-endian unsigned length. It fails with an error matching
// ledger.ErrInvalid when a field is longer than 2³²−1 bytes.
func (l Leaf) Bytes() ([]byte, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	n := len(LeafDomain) + 5*4 + len(l.EventID) + len(l.Stream) + len(l.Type) + len(l.Data) + len(l.Metadata)
	b := make([]byte, 0, n)
	b = append(b, LeafDomain...)
	b = appendField(b, l.EventID)
	b = appendField(b, l.Stream)
	b = appendField(b, l.Type)
	b = appendField(b, l.Data)
	b = appendField(b, l.Metadata)
	return b, nil
}

// Hash returns the RFC 6962 leaf hash of l: SHA-256(0x00 || l.Bytes()). It fails like
// Bytes.
func (l Leaf) Hash() ([]byte, error) {
	var h [HashSize]byte
	if err := l.HashInto(&h); err != nil {
		return nil, err
	}
	return h[:], nil
}

// HashInto writes the leaf hash of l to dst without building the leaf bytes, for
// verifiers that hash millions of leaves. It fails like Bytes.
func (l Leaf) HashInto(dst *[HashSize]byte) error {
	if err := l.check(); err != nil {
		return err
	}
	h := sha256.New()
	var buf [1 + len(LeafDomain)]byte
	buf[0] = rfc6962.RFC6962LeafHashPrefix
	copy(buf[1:], LeafDomain)
	h.Write(buf[:])
	writeString(h, l.EventID)
	writeString(h, l.Stream)
	writeString(h, l.Type)
	writeBytes(h, l.Data)
	writeBytes(h, l.Metadata)
	h.Sum(dst[:0])
	return nil
}

func (l Leaf) check() error {
	for _, f := range []struct {
		name string
		n    int
	}{{"event_id", len(l.EventID)}, {"stream", len(l.Stream)}, {"type", len(l.Type)}, {"data", len(l.Data)}, {"metadata", len(l.Metadata)}} {
		if uint64(f.n) > math.MaxUint32 {
			return ledger.Invalid(f.name, "%d bytes; a leaf field holds at most %d", f.n, uint64(math.MaxUint32))
		}
	}
	return nil
}

func appendField[T string | []byte](b []byte, f T) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
	return append(b, f...)
}

// writeString and writeBytes write one length-prefixed field; hash.Hash writes never fail.
func writeString(h hash.Hash, f string) {
	writeLen(h, len(f))
	io.WriteString(h, f)
}

func writeBytes(h hash.Hash, f []byte) {
	writeLen(h, len(f))
	h.Write(f)
}

func writeLen(h hash.Hash, n int) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(n))
	h.Write(b[:])
}

// String describes l for error messages: its event_id and stream.
func (l Leaf) String() string { return fmt.Sprintf("event_id %q in %s", l.EventID, l.Stream) }

package integrity

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"

	ledger "github.com/stanceledger/ledger"
)

// Sentinel errors of checkpoint and proof verification; test with errors.Is.
var (
	// ErrMalformedCheckpoint: the text is not a signed note holding a tlog-checkpoint.
	ErrMalformedCheckpoint = errors.New("malformed checkpoint")
	// ErrBadSignature: the checkpoint carries no valid signature by the trusted key
	// (it is unsigned, signed by another key, or its signature does not verify).
	ErrBadSignature = errors.New("checkpoint not signed by the trusted key")
	// ErrOriginMismatch: the checkpoint's origin is not the name of the trusted key.
	ErrOriginMismatch = errors.New("checkpoint origin does not match the key")
	// ErrInvalidProof: an inclusion proof does not lead from the leaf to the root.
	ErrInvalidProof = errors.New("invalid inclusion proof")
	// ErrInconsistent: two checkpoints cannot both describe one append-only log. Every
	// *InconsistencyError matches it.
	ErrInconsistent = errors.New("checkpoints are inconsistent")
	// ErrRollback: a log presented a checkpoint smaller than one already verified as
	// its latest (it is consistent with it, but the log went back in time).
	ErrRollback = errors.New("log rolled back")
	// ErrBadKey: a signing or verifier key is not a valid note key.
	ErrBadKey = errors.New("invalid note key")
)

// Checkpoint is a commitment to the first Size records of a log: the C2SP
// tlog-checkpoint body "<origin>\n<size>\n<base64 root>\n", signed as a C2SP signed note.
type Checkpoint struct {
	// Origin names the log; it is also the name of the key that signs it.
	Origin string
	// Size is the number of leaves (ledger records) covered.
	Size uint64
	// Root is the RFC 6962 root hash of those leaves.
	Root []byte
	// Note is the signed note exactly as signed and served; nil for a checkpoint that
	// was not opened from or signed into a note.
	Note []byte
}

// Body returns the tlog-checkpoint body of c: the signed text.
func (c *Checkpoint) Body() []byte {
	return log.Checkpoint{Origin: c.Origin, Size: c.Size, Hash: c.Root}.Marshal()
}

// String formats c as "<origin> size <n> root <base64>".
func (c *Checkpoint) String() string {
	return fmt.Sprintf("%s size %d root %s", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root))
}

// GenerateKey makes a new ed25519 note key pair named origin. The signer key
// ("PRIVATE+KEY+<origin>+…") must be kept secret; the verifier key ("<origin>+…") is
// published. It fails with ErrBadKey when origin is not a valid key name (it must be
// non-empty with no spaces and no '+').
func GenerateKey(origin string) (signerKey, verifierKey string, err error) {
	return generateKey(rand.Reader, origin)
}

func generateKey(r io.Reader, origin string) (string, string, error) {
	skey, vkey, err := note.GenerateKey(r, origin)
	if err != nil {
		return "", "", fmt.Errorf("%w: origin %q: %v", ErrBadKey, origin, err)
	}
	return skey, vkey, nil
}

// Signer signs checkpoints of one log.
type Signer struct {
	s    note.Signer
	vkey string
}

// NewSigner parses an ed25519 signer key made by GenerateKey
// ("PRIVATE+KEY+<name>+<hash>+<base64>"). Its name is the origin of every checkpoint it
// signs. A malformed key is an error matching ErrBadKey.
func NewSigner(signerKey string) (*Signer, error) {
	signerKey = strings.TrimSpace(signerKey)
	s, err := note.NewSigner(signerKey)
	if err != nil {
		return nil, fmt.Errorf("%w: signer key: %v", ErrBadKey, err)
	}
	// note.NewSigner has checked the layout; derive the public half for VerifierKey.
	// The base64 key may itself hold '+': it is what follows the fourth '+'.
	rest := signerKey
	for range 4 {
		_, rest, _ = strings.Cut(rest, "+")
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil || len(key) != 1+ed25519.SeedSize {
		return nil, fmt.Errorf("%w: signer key is not an ed25519 key", ErrBadKey)
	}
	pub := ed25519.NewKeyFromSeed(key[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(s.Name(), pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	return &Signer{s: s, vkey: vkey}, nil
}

// VerifierKey returns the verifier key of s in note format ("<origin>+<hash>+<base64>"):
// what verifiers of its checkpoints must trust.
func (s *Signer) VerifierKey() string { return s.vkey }

// Origin is the name of the key: the origin line of every checkpoint it signs.
func (s *Signer) Origin() string { return s.s.Name() }

// Sign returns the signed checkpoint committing to size leaves with the given root.
// Ed25519 signatures are deterministic, so the same key, size and root always give
// the same note. It fails with an error matching ledger.ErrInvalid when root is not
// HashSize bytes.
func (s *Signer) Sign(size uint64, root []byte) (*Checkpoint, error) {
	if len(root) != HashSize {
		return nil, ledger.Invalid("root", "%d bytes, want %d", len(root), HashSize)
	}
	cp := &Checkpoint{Origin: s.s.Name(), Size: size, Root: append([]byte(nil), root...)}
	signed, err := note.Sign(&note.Note{Text: string(cp.Body())}, s.s)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	cp.Note = signed
	return cp, nil
}

// ParseVerifierKey parses a verifier key in note format ("<name>+<hash>+<base64>"),
// given either as the key text itself or as the name of a file holding it. A key that
// is neither is an error matching ErrBadKey.
func ParseVerifierKey(keyOrFile string) (note.Verifier, error) {
	text := strings.TrimSpace(keyOrFile)
	if v, err := note.NewVerifier(text); err == nil {
		return v, nil
	}
	b, ferr := os.ReadFile(keyOrFile)
	if ferr != nil {
		return nil, fmt.Errorf("%w: %q is neither a verifier key nor a readable file", ErrBadKey, keyOrFile)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%w: verifier key in %s: %v", ErrBadKey, keyOrFile, err)
	}
	return v, nil
}

// NewVerifier parses a verifier key text in note format; a malformed key is an error
// matching ErrBadKey.
func NewVerifier(verifierKey string) (note.Verifier, error) {
	v, err := note.NewVerifier(strings.TrimSpace(verifierKey))
	if err != nil {
		return nil, fmt.Errorf("%w: verifier key: %v", ErrBadKey, err)
	}
	return v, nil
}

// OpenCheckpoint parses a signed checkpoint and checks it against the trusted key v.
// It succeeds only when the note is well formed, carries a valid signature by v, and
// its body is exactly a tlog-checkpoint (origin, size, base64 root of HashSize bytes;
// no extension lines) whose origin is v's name. Signatures by other keys (witness
// cosignatures) are allowed and ignored.
//
// Errors: ErrMalformedCheckpoint, ErrBadSignature or ErrOriginMismatch, wrapped with
// what was found.
func OpenCheckpoint(signed []byte, v note.Verifier) (*Checkpoint, error) {
	if v == nil {
		return nil, fmt.Errorf("%w: no verifier key", ErrBadKey)
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			return nil, fmt.Errorf("%w: no signature by %s+%08x (signed by %s)", ErrBadSignature, v.Name(), v.KeyHash(), signers(unverified.Note))
		case errors.As(err, &invalid):
			return nil, fmt.Errorf("%w: signature by %s+%08x does not verify", ErrBadSignature, invalid.Name, invalid.Hash)
		}
		return nil, fmt.Errorf("%w: %v", ErrMalformedCheckpoint, err)
	}
	var lc log.Checkpoint
	rest, err := lc.Unmarshal([]byte(n.Text))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedCheckpoint, err)
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("%w: unexpected extension lines after the root", ErrMalformedCheckpoint)
	}
	if len(lc.Hash) != HashSize {
		return nil, fmt.Errorf("%w: root hash is %d bytes, want %d", ErrMalformedCheckpoint, len(lc.Hash), HashSize)
	}
	cp := &Checkpoint{Origin: lc.Origin, Size: lc.Size, Root: lc.Hash, Note: append([]byte(nil), signed...)}
	// Reject bodies that parse but are not what Marshal writes (leading zeros, "+5"),
	// so one checkpoint has exactly one text.
	if !bytes.Equal(cp.Body(), []byte(n.Text)) {
		return nil, fmt.Errorf("%w: body is not in canonical form", ErrMalformedCheckpoint)
	}
	if cp.Origin != v.Name() {
		return nil, fmt.Errorf("%w: origin %q, key %q", ErrOriginMismatch, cp.Origin, v.Name())
	}
	return cp, nil
}

func signers(n *note.Note) string {
	if n == nil || len(n.UnverifiedSigs) == 0 {
		return "nobody"
	}
	names := make([]string, len(n.UnverifiedSigs))
	for i, s := range n.UnverifiedSigs {
		names[i] = fmt.Sprintf("%s+%08x", s.Name, s.Hash)
	}
	return strings.Join(names, ", ")
}

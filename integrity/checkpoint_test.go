package integrity

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// fixedKey returns a key pair derived from seed, so golden files are reproducible.
func fixedKey(t testing.TB, origin, seed string) (*Signer, string) {
	t.Helper()
	s := sha256.Sum256([]byte(seed))
	skey, vkey, err := generateKey(bytes.NewReader(s[:]), origin)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return signer, vkey
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from golden file:\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// goldenLeaf is the fixed record of testdata/leaf.golden and docs/integrity.md.
var goldenLeaf = Leaf{
	EventID:  "e-1",
	Stream:   "party-dprk",
	Type:     "StatementIssued",
	Data:     []byte(`{"statement_id":"s1"}`),
	Metadata: []byte(`{"schema":1,"event_id":"e-1","party":"dprk"}`),
}

func TestLeafGolden(t *testing.T) {
	b, err := goldenLeaf.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	h, err := goldenLeaf.Hash()
	if err != nil {
		t.Fatal(err)
	}
	if want := hasher.HashLeaf(b); !bytes.Equal(h, want) {
		t.Fatalf("Hash = %x, RFC 6962 HashLeaf(Bytes) = %x", h, want)
	}
	golden(t, "leaf.golden", fmt.Appendf(nil, "leaf bytes (hex):\n%s\nleaf hash (hex):\n%x\n", hex.EncodeToString(b), h))
}

func TestLeafFieldsAreDelimited(t *testing.T) {
	// Moving bytes between adjacent fields must change the hash.
	a := Leaf{EventID: "ab", Stream: "c", Type: "T"}
	b := Leaf{EventID: "a", Stream: "bc", Type: "T"}
	ha, _ := a.Hash()
	hb, _ := b.Hash()
	if bytes.Equal(ha, hb) {
		t.Fatal("leaves that differ only in field boundaries hash alike")
	}
}

func goldenCheckpoint(t *testing.T) (*Signer, string, *Checkpoint) {
	t.Helper()
	signer, vkey := fixedKey(t, "stanceledger.example/test-log", "golden")
	tr := NewTree()
	for i := range 5 {
		l := goldenLeaf
		l.EventID = fmt.Sprintf("e-%d", i+1)
		h, err := l.Hash()
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.Append(h, nil); err != nil {
			t.Fatal(err)
		}
	}
	cp, err := signer.Sign(tr.Size(), tr.Root())
	if err != nil {
		t.Fatal(err)
	}
	return signer, vkey, cp
}

func TestCheckpointGolden(t *testing.T) {
	signer, vkey, cp := goldenCheckpoint(t)
	golden(t, "checkpoint.golden", cp.Note)
	golden(t, "verifier.key", []byte(vkey+"\n"))
	if got := signer.VerifierKey(); got != vkey {
		t.Errorf("Signer.VerifierKey = %q, want %q", got, vkey)
	}

	v, err := ParseVerifierKey(filepath.Join("testdata", "verifier.key"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenCheckpoint(cp.Note, v)
	if err != nil {
		t.Fatal(err)
	}
	if got.Origin != cp.Origin || got.Size != 5 || !bytes.Equal(got.Root, cp.Root) {
		t.Fatalf("OpenCheckpoint = %s, want %s", got, cp)
	}
}

func TestOpenCheckpointRejects(t *testing.T) {
	_, vkey, cp := goldenCheckpoint(t)
	other, _ := fixedKey(t, "stanceledger.example/test-log", "another key")
	byOther, err := other.Sign(cp.Size, cp.Root)
	if err != nil {
		t.Fatal(err)
	}
	wrongOrigin, wrongOriginKey := fixedKey(t, "stanceledger.example/other-log", "golden")
	// A body whose origin is not the name of the key that signed it.
	mislabelled, err := note.Sign(&note.Note{Text: "stanceledger.example/test-log\n5\n" + base64.StdEncoding.EncodeToString(cp.Root) + "\n"}, wrongOrigin.s)
	if err != nil {
		t.Fatal(err)
	}
	byWrongOrigin, err := wrongOrigin.Sign(cp.Size, cp.Root)
	if err != nil {
		t.Fatal(err)
	}
	text := string(cp.Note)
	body, sigs, _ := strings.Cut(text, "\n\n")
	tests := []struct {
		name string
		note string
		v    string
		want error
		msg  string
	}{
		{"signed by another key", string(byOther.Note), vkey, ErrBadSignature, "signed by stanceledger.example/test-log+"},
		{"size changed", strings.Replace(text, "\n5\n", "\n6\n", 1), vkey, ErrBadSignature, "does not verify"},
		{"root changed", strings.Replace(body, "\n5\n", "\n5\n", 1)[:len(body)-2] + "A=\n\n" + sigs, vkey, ErrBadSignature, "does not verify"},
		{"unsigned", body + "\n", vkey, ErrMalformedCheckpoint, ""},
		{"no signature line", body + "\n\n", vkey, ErrMalformedCheckpoint, ""},
		{"signature truncated", text[:len(text)-6] + "\n", vkey, ErrMalformedCheckpoint, ""},
		{"key of another log", string(byWrongOrigin.Note), vkey, ErrBadSignature, ""},
		{"origin not the key name", string(mislabelled), wrongOriginKey, ErrOriginMismatch, `origin "stanceledger.example/test-log", key "stanceledger.example/other-log"`},
		{"extension line", signWith(t, wrongOrigin, "stanceledger.example/other-log\n5\n"+base64.StdEncoding.EncodeToString(cp.Root)+"\nextra\n"), wrongOriginKey, ErrMalformedCheckpoint, "extension"},
		{"short root", signWith(t, wrongOrigin, "stanceledger.example/other-log\n5\nAAAA\n"), wrongOriginKey, ErrMalformedCheckpoint, "3 bytes"},
		{"size with leading zero", signWith(t, wrongOrigin, "stanceledger.example/other-log\n05\n"+base64.StdEncoding.EncodeToString(cp.Root)+"\n"), wrongOriginKey, ErrMalformedCheckpoint, "canonical"},
		{"own key of another log", string(byWrongOrigin.Note), wrongOriginKey, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := NewVerifier(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			_, err = OpenCheckpoint([]byte(tc.note), v)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("OpenCheckpoint = %v, want success", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("OpenCheckpoint = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %q does not say %q", err, tc.msg)
			}
		})
	}
}

func signWith(t *testing.T, s *Signer, body string) string {
	t.Helper()
	b, err := note.Sign(&note.Note{Text: body}, s.s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stanceledger/ledger/integrity"
)

func TestLoadSigner(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	data := t.TempDir()

	first, err := loadSigner(data, integrityConfig{Origin: "stanceledger.example/test"}, log)
	if err != nil {
		t.Fatal(err)
	}
	if first.Origin() != "stanceledger.example/test" {
		t.Fatalf("origin %q", first.Origin())
	}
	st, err := os.Stat(filepath.Join(data, "keys", signerKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("signing key mode %v, want 0600", st.Mode().Perm())
	}
	pub, err := os.ReadFile(filepath.Join(data, "keys", verifierKeyFile))
	if err != nil || strings.TrimSpace(string(pub)) != first.VerifierKey() {
		t.Fatalf("verifier key file %q, %v; want %q", pub, err, first.VerifierKey())
	}

	again, err := loadSigner(data, integrityConfig{}, log)
	if err != nil {
		t.Fatal(err)
	}
	if again.VerifierKey() != first.VerifierKey() {
		t.Fatal("second start generated another key")
	}
	if _, err := loadSigner(data, integrityConfig{Origin: "stanceledger.example/other"}, log); err == nil {
		t.Fatal("a key of one origin was accepted for another")
	}

	skey, vkey, err := integrity.GenerateKey("stanceledger.example/from-file")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "signing.key")
	if err := os.WriteFile(file, []byte(skey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fromFile, err := loadSigner(data, integrityConfig{SigningKey: file}, log)
	if err != nil {
		t.Fatal(err)
	}
	if fromFile.VerifierKey() != vkey {
		t.Fatalf("--signing-key: verifier key %q, want %q", fromFile.VerifierKey(), vkey)
	}
	if _, err := loadSigner(data, integrityConfig{SigningKey: filepath.Join(t.TempDir(), "missing")}, log); err == nil {
		t.Fatal("a missing --signing-key file was not an error")
	}

	fresh := t.TempDir()
	gen, err := loadSigner(fresh, integrityConfig{}, log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(gen.Origin(), "stanceledger.example/") {
		t.Fatalf("default origin %q", gen.Origin())
	}
}

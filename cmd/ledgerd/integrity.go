package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stanceledger/ledger/integrity"
)

// integrityConfig is the integrity projection's part of the configuration.
type integrityConfig struct {
	// SigningKey is a file holding the checkpoint signer key; "" means the key in
	// <data>/keys/, generated on first start.
	SigningKey string
	// Origin names the log in its checkpoints; "" means the signing key's name, or
	// for a new key "stanceledger.example/<random log id>".
	Origin string
	// Every and Interval: publish a checkpoint at least every Every records or Interval;
	// zero means the integrity view's defaults (1000 records, 10 s).
	Every    uint64
	Interval time.Duration
}

// Key files under <data>/keys/.
const (
	signerKeyFile   = "checkpoint.key"
	verifierKeyFile = "checkpoint.pub"
)

// loadSigner returns the checkpoint signer: from cfg.SigningKey, or from <data>/keys/,
// generating and saving a key pair there (signer 0600, verifier 0644) on first start.
// A key whose name is not cfg.Origin (when given) is refused: the origin is part of
// every checkpoint, so it cannot silently change.
func loadSigner(data string, cfg integrityConfig, log *slog.Logger) (*integrity.Signer, error) {
	path := cfg.SigningKey
	if path == "" {
		path = filepath.Join(data, "keys", signerKeyFile)
	}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && cfg.SigningKey == "":
		return generateSigner(filepath.Dir(path), cfg.Origin, log)
	case err != nil:
		return nil, fmt.Errorf("signing key: %w", err)
	}
	s, err := integrity.NewSigner(string(b))
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	if cfg.Origin != "" && s.Origin() != cfg.Origin {
		return nil, fmt.Errorf("--origin %q, but the signing key %s is for origin %q", cfg.Origin, path, s.Origin())
	}
	return s, nil
}

func generateSigner(dir, origin string, log *slog.Logger) (*integrity.Signer, error) {
	if origin == "" {
		id := make([]byte, 8)
		if _, err := rand.Read(id); err != nil {
			return nil, err
		}
		origin = "stanceledger.example/" + hex.EncodeToString(id)
	}
	skey, vkey, err := integrity.GenerateKey(origin)
	if err != nil {
		return nil, fmt.Errorf("--origin: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keys directory: %w", err)
	}
	// O_EXCL: never overwrite a key another process wrote meanwhile.
	f, err := os.OpenFile(filepath.Join(dir, signerKeyFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("save signing key: %w", err)
	}
	if _, err := f.WriteString(skey + "\n"); err != nil {
		f.Close()
		return nil, fmt.Errorf("save signing key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("save signing key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("save signing key: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, verifierKeyFile), []byte(vkey+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("save verifier key: %w", err)
	}
	log.Info("generated a checkpoint signing key", "dir", dir, "origin", origin)
	return integrity.NewSigner(strings.TrimSpace(skey))
}

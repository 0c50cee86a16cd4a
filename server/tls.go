package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLSFiles name the PEM files of the server's TLS: its certificate chain and key, and,
// for mutual TLS, the CA bundle that client certificates must chain to.
type TLSFiles struct {
	Cert, Key string
	// ClientCA, when set, asks every client for a certificate and verifies one that is
	// given against these CAs (a client with an untrusted certificate fails the
	// handshake). A client without a certificate may still connect and authenticate
	// with a bearer token.
	ClientCA string
}

// ServerTLS loads files into a TLS 1.2+ configuration for the gRPC server (wrap it with
// credentials.NewTLS). Errors name the file at fault.
func ServerTLS(files TLSFiles) (*tls.Config, error) {
	if files.Cert == "" || files.Key == "" {
		return nil, errors.New("TLS needs both a certificate and a key")
	}
	cert, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s / key %s: %w", files.Cert, files.Key, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if files.ClientCA != "" {
		pool, err := LoadCertPool(files.ClientCA)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

// LoadCertPool reads a PEM bundle of CA certificates. It fails when the file holds none.
func LoadCertPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA bundle %s: no PEM certificate in it", path)
	}
	return pool, nil
}

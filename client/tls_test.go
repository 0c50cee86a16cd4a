package client_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/client"
	"github.com/stanceledger/ledger/server"
	"github.com/stanceledger/ledger/store/embedded"
)

// writeCert makes a key and a certificate signed by parent (self-signed when parent is
// nil) and writes both as PEM to dir. Nothing with a private key is committed.
func writeCert(t *testing.T, dir, name string, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key, certFile, keyFile
}

// TestTLSTokenAndClientCert dials a server with TLS, tokens and client certificates:
// a token names its principal, a client certificate names its subject, and a call
// without either is Unauthenticated.
func TestTLSTokenAndClientCert(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca, caKey, caFile, _ := writeCert(t, dir, "ca", &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, nil, nil)
	_, _, srvCert, srvKey := writeCert(t, dir, "server", &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "ledgerd"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}, ca, caKey)
	_, _, cliCert, cliKey := writeCert(t, dir, "client", &x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "importer", OrganizationalUnit: []string{"writer"}}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, caKey)

	const token = "cl1ent-test-t0ken-ffffffffffffffffff"
	sum := sha256.Sum256([]byte(token))
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("ops-writer writer "+hex.EncodeToString(sum[:])+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	auth, err := server.NewAuth(server.AuthOptions{TokensFile: tokens, ClientCerts: true})
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := server.ServerTLS(server.TLSFiles{Cert: srvCert, Key: srvKey, ClientCA: caFile})
	if err != nil {
		t.Fatal(err)
	}
	st, err := embedded.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv, err := server.New(server.Config{Store: st, Auth: auth, GRPCOptions: []grpc.ServerOption{grpc.Creds(credentials.NewTLS(tlsCfg))}})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{store: st, srv: srv, done: make(chan error, 1)}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.addr = lis.Addr().String()
	go func() { ts.done <- srv.Serve(lis) }()
	t.Cleanup(ts.stop)

	for _, tc := range []struct {
		name string
		opts []client.Option
		want string // recorded_by, or "" for Unauthenticated
	}{
		{"token", []client.Option{client.WithTLS(client.TLSOptions{CAFile: caFile}), client.WithToken(token)}, "ops-writer"},
		{"client certificate", []client.Option{client.WithTLS(client.TLSOptions{CAFile: caFile, CertFile: cliCert, KeyFile: cliKey})}, "CN=importer,OU=writer"},
		{"neither", []client.Option{client.WithTLS(client.TLSOptions{CAFile: caFile})}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, ts.addr, tc.opts...)
			res, err := c.Append(t.Context(), "dprk", ledger.AnyRevision, statement("dprk", "tls-"+strings.ReplaceAll(tc.name, " ", "-")))
			if tc.want == "" {
				if status.Code(err) != codes.Unauthenticated {
					t.Fatalf("got %v, want Unauthenticated", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Records[0].RecordedBy; got != tc.want {
				t.Errorf("recorded_by %q, want %q", got, tc.want)
			}
		})
	}
}

// TestPlaintextOnlyToLoopback: Dial refuses plaintext to an address off loopback
// before sending anything.
func TestPlaintextOnlyToLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{"127.0.0.1:1": true, "localhost:1": true, "[::1]:1": true, "192.0.2.1:7070": false, "ledger.example:7070": false} {
		if got := client.IsLoopback(addr); got != ok {
			t.Errorf("IsLoopback(%q) = %v", addr, got)
		}
		if ok {
			continue
		}
		_, err := client.Dial(t.Context(), addr, client.WithToken("x"))
		if err == nil || !strings.Contains(err.Error(), "plaintext is allowed only to a loopback address") {
			t.Errorf("Dial(%s) plaintext: %v", addr, err)
		}
	}
	if _, err := client.Dial(t.Context(), "127.0.0.1:1", client.WithTLS(client.TLSOptions{CAFile: "/nonexistent/ca.pem"})); err == nil || errors.Is(err, ledger.ErrUnavailable) {
		t.Errorf("a missing CA file: %v", err)
	}
}

package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// TLSOptions configure TLS to the server. The zero value trusts the system's CAs and
// presents no client certificate.
type TLSOptions struct {
	// CAFile is a PEM bundle of the CAs that sign the server's certificate; empty means
	// the system's roots.
	CAFile string
	// CertFile and KeyFile are the client certificate and key for mutual TLS; both or
	// neither.
	CertFile, KeyFile string
	// ServerName overrides the name checked against the server's certificate; empty
	// means the host of the dialled address.
	ServerName string
}

// WithTLS makes Dial use TLS as o says.
func WithTLS(o TLSOptions) Option {
	return func(opts *options) { opts.tls = &o }
}

// WithToken sends token as "authorization: Bearer <token>" on every call. Over plaintext
// it is allowed only to a loopback address (Dial refuses plaintext elsewhere anyway).
func WithToken(token string) Option {
	return func(opts *options) { opts.token = token }
}

// IsLoopback reports whether addr ("host:port") names a loopback host: "localhost", or
// an address in 127.0.0.0/8 or ::1.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// errPlaintext refuses plaintext to a remote server: tokens and records would cross the
// network in the clear.
var errPlaintext = errors.New("plaintext is allowed only to a loopback address; use TLS")

// transport returns the dial option carrying the transport credentials for addr, or nil
// when the caller supplied its own (WithTransportCredentialsSet).
func (o *options) transport(addr string) ([]grpc.DialOption, error) {
	var out []grpc.DialOption
	if o.token != "" {
		out = append(out, grpc.WithPerRPCCredentials(bearerToken(o.token)))
	}
	switch {
	case o.creds:
		return out, nil
	case o.tls == nil:
		if !IsLoopback(addr) {
			return nil, errPlaintext
		}
		return append(out, grpc.WithTransportCredentials(insecure.NewCredentials())), nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.tls.ServerName}
	if o.tls.CAFile != "" {
		pem, err := os.ReadFile(o.tls.CAFile)
		if err != nil {
			return nil, fmt.Errorf("TLS CA: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS CA %s: no PEM certificate in it", o.tls.CAFile)
		}
	}
	if (o.tls.CertFile == "") != (o.tls.KeyFile == "") {
		return nil, errors.New("TLS client certificate and key go together")
	}
	if o.tls.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.tls.CertFile, o.tls.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return append(out, grpc.WithTransportCredentials(credentials.NewTLS(cfg))), nil
}

// bearerToken is per-call credentials: "authorization: Bearer <token>".
type bearerToken string

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (t bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials. It is false so that
// a token can be sent to a server on loopback without TLS; transport refuses plaintext
// to any other address.
func (bearerToken) RequireTransportSecurity() bool { return false }

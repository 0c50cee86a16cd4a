package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	ledger "github.com/stanceledger/ledger"
	"github.com/stanceledger/ledger/server"
)

// securityConfig is ledgerd's transport security, authentication and limits.
type securityConfig struct {
	// Tokens names the bearer-token file ("NAME ROLE SHA256HEX" lines); reloaded on SIGHUP.
	Tokens string
	// TLSCert and TLSKey turn TLS on; ClientCA adds client certificates (mutual TLS),
	// whose subjects become principals.
	TLSCert, TLSKey, ClientCA string
	// AllowPlaintext lets ledgerd listen on a non-loopback address without TLS.
	AllowPlaintext bool

	MaxRequestBytes     int
	MaxEventsPerAppend  int
	MaxStreamsPerConn   int
	RatePerPrincipal    float64
	RateBurst           int
	SlowConsumerTimeout time.Duration
}

// addSecurityFlags adds the security and limit flags to fs.
func addSecurityFlags(fs *flag.FlagSet, env func(name, def string) string, c *securityConfig) {
	fs.StringVar(&c.Tokens, "tokens", env("LEDGER_TOKENS", ""), "bearer-token file: lines NAME ROLE SHA256HEX (role writer, auditor or admin; the hex SHA-256 of the token), # comments; reloaded on SIGHUP. Unset (and no --client-ca): the ledger runs open, on loopback only (env LEDGER_TOKENS)")
	fs.StringVar(&c.TLSCert, "tls-cert", env("LEDGER_TLS_CERT", ""), "PEM certificate chain: serve TLS (with --tls-key) (env LEDGER_TLS_CERT)")
	fs.StringVar(&c.TLSKey, "tls-key", env("LEDGER_TLS_KEY", ""), "PEM private key of --tls-cert (env LEDGER_TLS_KEY)")
	fs.StringVar(&c.ClientCA, "client-ca", env("LEDGER_CLIENT_CA", ""), "PEM CA bundle for client certificates (mutual TLS): a verified certificate's subject is the principal and its first OU naming a role is the role (env LEDGER_CLIENT_CA)")
	fs.BoolVar(&c.AllowPlaintext, "allow-plaintext", false, "allow listening on a non-loopback address without TLS")
	fs.IntVar(&c.MaxRequestBytes, "max-request-bytes", 0, "largest request message in bytes (0: the largest append plus framing, about 5.1 MiB)")
	fs.IntVar(&c.MaxEventsPerAppend, "max-events-per-append", 0, fmt.Sprintf("most events in one append (0: %d)", ledger.DefaultLimits.MaxEvents))
	fs.IntVar(&c.MaxStreamsPerConn, "max-streams-per-conn", 0, fmt.Sprintf("most calls running at once on one connection (0: %d)", server.DefaultMaxStreamsPerConn))
	fs.Float64Var(&c.RatePerPrincipal, "rate-per-principal", 0, fmt.Sprintf("calls per second each principal may start, on average (0: %d; negative: no limit)", server.DefaultRatePerSecond))
	fs.IntVar(&c.RateBurst, "rate-burst", 0, fmt.Sprintf("calls a principal may start at once above its rate (0: %d)", server.DefaultRateBurst))
	fs.DurationVar(&c.SlowConsumerTimeout, "slow-consumer-timeout", 0, fmt.Sprintf("end a stream whose consumer has not taken one message for this long; it resumes from its last position (0: %s)", server.DefaultSlowConsumerTimeout))
}

// security is what securityConfig builds for the server.
type security struct {
	auth    *server.Auth
	opts    []grpc.ServerOption
	traffic server.TrafficLimits
	limits  ledger.Limits
	// open is true when every caller may call every method.
	open bool
}

// isLoopback reports whether listen ("host:port") binds only loopback addresses.
// An empty host binds every interface.
func isLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// build checks the combination of flags against the listen address and loads the
// TLS files and the tokens file.
func (c securityConfig) build(listen string) (*security, error) {
	s := &security{
		traffic: server.TrafficLimits{
			MaxRequestBytes: c.MaxRequestBytes, MaxStreamsPerConn: c.MaxStreamsPerConn,
			RatePerSecond: c.RatePerPrincipal, RateBurst: c.RateBurst, SlowConsumerTimeout: c.SlowConsumerTimeout,
		},
		limits: ledger.Limits{MaxEvents: c.MaxEventsPerAppend},
	}
	useTLS := c.TLSCert != "" || c.TLSKey != ""
	switch {
	case useTLS && (c.TLSCert == "" || c.TLSKey == ""):
		return nil, errors.New("--tls-cert and --tls-key go together")
	case c.ClientCA != "" && !useTLS:
		return nil, errors.New("--client-ca needs TLS: give --tls-cert and --tls-key")
	case !useTLS && !isLoopback(listen) && !c.AllowPlaintext:
		return nil, fmt.Errorf("refusing to listen on %s without TLS: give --tls-cert and --tls-key, or --allow-plaintext to send tokens and records in the clear", listen)
	}
	if useTLS {
		cfg, err := server.ServerTLS(server.TLSFiles{Cert: c.TLSCert, Key: c.TLSKey, ClientCA: c.ClientCA})
		if err != nil {
			return nil, err
		}
		s.opts = append(s.opts, grpc.Creds(credentials.NewTLS(cfg)))
	}
	if c.Tokens == "" && c.ClientCA == "" {
		if !isLoopback(listen) {
			return nil, fmt.Errorf("refusing to serve %s open: give --tokens or --client-ca", listen)
		}
		s.open = true
		return s, nil
	}
	auth, err := server.NewAuth(server.AuthOptions{TokensFile: c.Tokens, ClientCerts: c.ClientCA != ""})
	if err != nil {
		return nil, err
	}
	s.auth = auth
	return s, nil
}

// announce says how the ledger is protected, on out and in the log.
func (s *security) announce(out io.Writer, log *slog.Logger, c securityConfig) {
	tlsMode := "plaintext"
	switch {
	case c.ClientCA != "":
		tlsMode = "mutual TLS"
	case c.TLSCert != "":
		tlsMode = "TLS"
	}
	if s.open {
		fmt.Fprintf(out, "ledgerd: OPEN: no --tokens and no --client-ca; every caller may call every method (%s)\n", tlsMode)
		log.Warn("ledgerd runs open: no authentication, every caller may call every method", "transport", tlsMode)
		return
	}
	fmt.Fprintf(out, "ledgerd: authentication: %d token principals, client certificates %v (%s)\n", s.auth.Principals(), c.ClientCA != "", tlsMode)
	log.Info("authentication on", "token_principals", s.auth.Principals(), "client_certificates", c.ClientCA != "", "transport", tlsMode)
}

// reloadOnHUP reloads the tokens file on each SIGHUP until ctx ends. A file that does
// not parse is logged and the tokens in force stay.
func (s *security) reloadOnHUP(ctx context.Context, log *slog.Logger) {
	if s.auth == nil {
		return
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := s.auth.Reload(); err != nil {
					log.Error("SIGHUP: tokens file not reloaded; the previous tokens stay in force", "err", err)
					continue
				}
				log.Info("SIGHUP: tokens file reloaded", "token_principals", s.auth.Principals())
			}
		}
	}()
}

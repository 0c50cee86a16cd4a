package server_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/hex"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	"github.com/stanceledger/ledger/integrity"
	"github.com/stanceledger/ledger/projections"
	"github.com/stanceledger/ledger/projections/integrityview"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
	"github.com/stanceledger/ledger/server"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/")

// Tokens of the matrix's principals. They must never reach the log.
const (
	writerToken  = "wr1ter-T0ken-5ecret-aaaaaaaaaaaaaaaa"
	auditorToken = "aud1tor-T0ken-5ecret-bbbbbbbbbbbbbbb"
	adminToken   = "adm1n-T0ken-5ecret-ccccccccccccccccc"
	badToken     = "n0t-a-kn0wn-t0ken-dddddddddddddddddd"
)

func tokenLine(name, role, token string) string {
	sum := sha256.Sum256([]byte(token))
	return name + " " + role + " " + hex.EncodeToString(sum[:]) + "\n"
}

// secureServer is a ledger with every service, TLS with client certificates, and tokens.
type secureServer struct {
	addr    string
	ca      *testCA
	logs    *logBuffer
	srv     *server.Server
	tokens  string // the tokens file
	auth    *server.Auth
	dialDir string
}

// startSecure serves every service over TLS (client CA = ca) with a tokens file naming
// writer-1, auditor-1 and admin-1.
func startSecure(t *testing.T, traffic server.TrafficLimits) *secureServer {
	t.Helper()
	dir := t.TempDir()
	ca := newCA(t, "ledger test CA")
	certFile, keyFile := writePEM(t, dir, "server", ca.issue(t, pkix.Name{CommonName: "ledgerd"}, true))
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(dir, "tokens")
	body := "# principals of the matrix test\n" + tokenLine("writer-1", "writer", writerToken) +
		tokenLine("auditor-1", "auditor", auditorToken) + "\n" + tokenLine("admin-1", "admin", adminToken)
	if err := os.WriteFile(tokens, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	auth, err := server.NewAuth(server.AuthOptions{TokensFile: tokens, ClientCerts: true})
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := server.ServerTLS(server.TLSFiles{Cert: certFile, Key: keyFile, ClientCA: caFile})
	if err != nil {
		t.Fatal(err)
	}

	st := openStore(t)
	positions, err := projections.OpenPositions(filepath.Join(dir, "positions"), nil)
	if err != nil {
		t.Fatal(err)
	}
	skey, _, err := integrity.GenerateKey("stanceledger.example/authz-test")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := integrity.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	iview, err := integrityview.Open(filepath.Join(dir, "integrity"), signer, nil, &integrityview.Options{Every: 1, Interval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runner, err := projections.NewRunner(st, nil, nil, iview, positions)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { runner.Run(ctx); done <- struct{}{} }()
	go func() { iview.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done; iview.Close(); positions.Close() })

	logs := new(logBuffer)
	ts := start(t, server.Config{
		Store: st, Integrity: iview, Positions: positions, Rebuilder: runner, Auth: auth, Traffic: traffic,
		Logger:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		GRPCOptions: []grpc.ServerOption{grpc.Creds(credentials.NewTLS(tlsCfg))},
	})
	return &secureServer{addr: ts.addr, ca: ca, logs: logs, srv: ts.srv, tokens: tokens, auth: auth, dialDir: dir}
}

// dial connects over TLS trusting the test CA, presenting cert when it is not nil.
// With force, the certificate is sent even when it does not chain to a CA the server
// names (Go's client otherwise withholds it).
func (s *secureServer) dial(t *testing.T, cert *tls.Certificate, force ...bool) *grpc.ClientConn {
	t.Helper()
	cfg := &tls.Config{RootCAs: s.ca.pool(), MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	if cert != nil && len(force) > 0 && force[0] {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func bearer(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// matrixColumn is one kind of caller.
type matrixColumn struct {
	name  string
	token string
	cert  *tls.Certificate
	force bool
	// want is the code every method gets from this caller: the policy written out a
	// second time, independently of the server's table.
	want func(method string) codes.Code
}

// rpcCall makes one call of a method as the caller of ctx and returns its status.
type rpcCall func(ctx context.Context, conn *grpc.ClientConn, n int) error

// firstMessage opens a server stream and waits for its first message (or its end).
func firstMessage[T any](s grpc.ServerStreamingClient[T], err error) error {
	if err != nil {
		return err
	}
	_, err = s.Recv()
	return err
}

func matrixCalls(t *testing.T, admin *grpc.ClientConn, adminCtx context.Context) map[string]rpcCall {
	lc := ledgerv1.NewLedgerServiceClient
	ic := ledgerv1.NewIntegrityServiceClient
	pc := ledgerv1.NewPositionServiceClient
	return map[string]rpcCall{
		ledgerv1.LedgerService_Append_FullMethodName: func(ctx context.Context, c *grpc.ClientConn, n int) error {
			_, err := lc(c).Append(ctx, &ledgerv1.AppendRequest{Party: "dprk", Events: []*ledgerv1.Event{
				statement(fmt.Sprintf("cell-%d", n), "dprk", "msmt-legitimacy", occurred)}})
			return err
		},
		ledgerv1.LedgerService_ReadStream_FullMethodName: func(ctx context.Context, c *grpc.ClientConn, n int) error {
			return firstMessage(lc(c).ReadStream(ctx, &ledgerv1.ReadStreamRequest{Party: "dprk"}))
		},
		ledgerv1.LedgerService_ReadAll_FullMethodName: func(ctx context.Context, c *grpc.ClientConn, n int) error {
			return firstMessage(lc(c).ReadAll(ctx, &ledgerv1.ReadAllRequest{}))
		},
		ledgerv1.LedgerService_Subscribe_FullMethodName: func(ctx context.Context, c *grpc.ClientConn, n int) error {
			return firstMessage(lc(c).Subscribe(ctx, &ledgerv1.SubscribeRequest{}))
		},
		ledgerv1.LedgerService_GetEvent_FullMethodName: func(ctx context.Context, c *grpc.ClientConn, n int) error {
			_, err := lc(c).GetEvent(ctx, &ledgerv1.GetEventRequest{EventId: "seed-1"})
			return err
		},
		ledgerv1.IntegrityService_GetCheckpoint_FullMethodName: func(ctx context.Context, c *grpc.ClientConn, n int) error {
			_, err := ic(c).GetCheckpoint(ctx, &ledgerv1.GetCheckpointRequest{})
			return err
		},
		ledgerv1.IntegrityService_GetInclusionProof_FullMethodName: func(ctx context.Context, c *grpc.ClientConn, n int) error {
			_, err := ic(c).GetInclusionProof(ctx, &ledgerv1.GetInclusionProofRequest{Leaf: &ledgerv1.GetInclusionProofRequest_EventId{EventId: "seed-1"}, TreeSize: 2})
			return err
		},
		ledgerv1.IntegrityService_GetConsistencyProof_FullMethodName: func(ctx context.Context, c *grpc.ClientConn, n int) error {
			_, err := ic(c).GetConsistencyProof(ctx, &ledgerv1.GetConsistencyProofRequest{OldSize: 1, NewSize: 2})
			return err
		},
		ledgerv1.IntegrityService_GetVerifierKey_FullMethodName: func(ctx context.Context, c *grpc.ClientConn, n int) error {
			_, err := ic(c).GetVerifierKey(ctx, &ledgerv1.GetVerifierKeyRequest{})
			return err
		},
		ledgerv1.PositionService_GetPosition_FullMethodName: func(ctx context.Context, c *grpc.ClientConn, n int) error {
			_, err := pc(c).GetPosition(ctx, &ledgerv1.GetPositionRequest{Party: "dprk", Topic: "msmt-legitimacy"})
			return err
		},
		ledgerv1.PositionService_ListPositions_FullMethodName: func(ctx context.Context, c *grpc.ClientConn, n int) error {
			_, err := pc(c).ListPositions(ctx, &ledgerv1.ListPositionsRequest{Party: "dprk"})
			return err
		},
		ledgerv1.PositionService_GetHistory_FullMethodName: func(ctx context.Context, c *grpc.ClientConn, n int) error {
			_, err := pc(c).GetHistory(ctx, &ledgerv1.GetHistoryRequest{Party: "dprk", Topic: "msmt-legitimacy"})
			return err
		},
		ledgerv1.PositionService_GetSnapshot_FullMethodName: func(ctx context.Context, c *grpc.ClientConn, n int) error {
			_, err := pc(c).GetSnapshot(ctx, &ledgerv1.GetSnapshotRequest{})
			return err
		},
		ledgerv1.PositionService_WatchPositions_FullMethodName: func(ctx context.Context, c *grpc.ClientConn, n int) error {
			s, err := pc(c).WatchPositions(ctx, &ledgerv1.WatchPositionsRequest{Party: "dprk", Topic: fmt.Sprintf("watch-%d", n)})
			if err != nil {
				return err
			}
			// A watch sends on change: make one (as admin) once the stream is open.
			go func() {
				time.Sleep(100 * time.Millisecond)
				lc(admin).Append(adminCtx, &ledgerv1.AppendRequest{Party: "dprk", Events: []*ledgerv1.Event{
					statement(fmt.Sprintf("watch-%d", n), "dprk", fmt.Sprintf("watch-%d", n), occurred)}})
			}()
			_, err = s.Recv()
			return err
		},
		ledgerv1.AdminService_RebuildProjection_FullMethodName: func(ctx context.Context, c *grpc.ClientConn, n int) error {
			_, err := ledgerv1.NewAdminServiceClient(c).RebuildProjection(ctx, &ledgerv1.RebuildProjectionRequest{Name: projections.PositionsName})
			return err
		},
		healthpb.Health_Check_FullMethodName: func(ctx context.Context, c *grpc.ClientConn, n int) error {
			_, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{})
			return err
		},
		healthpb.Health_Watch_FullMethodName: func(ctx context.Context, c *grpc.ClientConn, n int) error {
			return firstMessage(healthpb.NewHealthClient(c).Watch(ctx, &healthpb.HealthCheckRequest{}))
		},
		healthpb.Health_List_FullMethodName: func(ctx context.Context, c *grpc.ClientConn, n int) error {
			_, err := healthpb.NewHealthClient(c).List(ctx, &healthpb.HealthListRequest{})
			return err
		},
		reflectionv1.ServerReflection_ServerReflectionInfo_FullMethodName: func(ctx context.Context, c *grpc.ClientConn, n int) error {
			s, err := reflectionv1.NewServerReflectionClient(c).ServerReflectionInfo(ctx)
			if err != nil {
				return err
			}
			if err := s.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}}); err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		},
		reflectionv1alpha.ServerReflection_ServerReflectionInfo_FullMethodName: func(ctx context.Context, c *grpc.ClientConn, n int) error {
			s, err := reflectionv1alpha.NewServerReflectionClient(c).ServerReflectionInfo(ctx)
			if err != nil {
				return err
			}
			if err := s.Send(&reflectionv1alpha.ServerReflectionRequest{MessageRequest: &reflectionv1alpha.ServerReflectionRequest_ListServices{}}); err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		},
	}
}

// TestAuthorizationMatrix calls every method of every registered service as each kind of
// caller and checks the exact status code of each cell. The matrix is written to
// testdata/authz_matrix.md (go test -run AuthorizationMatrix -update ./server) and must
// match it; the README includes that file.
func TestAuthorizationMatrix(t *testing.T) {
	s := startSecure(t, server.TrafficLimits{})
	admin := s.dial(t, nil)
	adminCtx := bearer(t.Context(), adminToken)
	lc := ledgerv1.NewLedgerServiceClient(admin)
	for _, id := range []string{"seed-1", "seed-2"} {
		if _, err := lc.Append(adminCtx, &ledgerv1.AppendRequest{Party: "dprk", Events: []*ledgerv1.Event{statement(id, "dprk", "msmt-legitimacy", occurred)}}); err != nil {
			t.Fatal(err)
		}
	}
	ic := ledgerv1.NewIntegrityServiceClient(admin)
	deadline := time.Now().Add(10 * time.Second)
	for {
		cp, err := ic.GetCheckpoint(adminCtx, &ledgerv1.GetCheckpointRequest{})
		if err == nil && cp.GetCheckpoint().GetSize() >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of 2 records: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	untrustedCA := newCA(t, "someone else's CA")
	trustedCert := s.ca.issue(t, pkix.Name{CommonName: "audit-bot", OrganizationalUnit: []string{"auditor"}, Organization: []string{"Stance Ledger"}}, false)
	untrustedCert := untrustedCA.issue(t, pkix.Name{CommonName: "admin-impostor", OrganizationalUnit: []string{"admin"}}, false)

	writerMethods := []string{ledgerv1.LedgerService_Append_FullMethodName, ledgerv1.LedgerService_ReadStream_FullMethodName, ledgerv1.LedgerService_GetEvent_FullMethodName}
	writes := []string{ledgerv1.LedgerService_Append_FullMethodName, ledgerv1.AdminService_RebuildProjection_FullMethodName}
	isPublic := func(m string) bool {
		return strings.HasPrefix(m, "/grpc.health.v1.") || strings.HasPrefix(m, "/grpc.reflection.")
	}
	allow := func(ok bool) codes.Code {
		if ok {
			return codes.OK
		}
		return codes.PermissionDenied
	}
	auditor := func(m string) codes.Code { return allow(isPublic(m) || !slices.Contains(writes, m)) }
	unauthenticated := func(m string) codes.Code {
		if isPublic(m) {
			return codes.OK
		}
		return codes.Unauthenticated
	}
	columns := []matrixColumn{
		{name: "no token", want: unauthenticated},
		{name: "bad token", token: badToken, want: unauthenticated},
		{name: "writer", token: writerToken, want: func(m string) codes.Code { return allow(isPublic(m) || slices.Contains(writerMethods, m)) }},
		{name: "auditor", token: auditorToken, want: auditor},
		{name: "admin", token: adminToken, want: func(string) codes.Code { return codes.OK }},
		{name: "mTLS, trusted cert (OU=auditor)", cert: &trustedCert, want: auditor},
		// Go's TLS client does not send a certificate from a CA the server does not name:
		// the caller is anonymous.
		{name: "mTLS, untrusted cert", cert: &untrustedCert, want: unauthenticated},
		// Sent anyway, the server's handshake refuses it: no call reaches the server.
		{name: "mTLS, untrusted cert sent anyway", cert: &untrustedCert, force: true, want: func(string) codes.Code { return codes.Unavailable }},
	}

	calls := matrixCalls(t, admin, adminCtx)
	var methods []string
	for svc, info := range s.srv.GRPCServer().GetServiceInfo() {
		for _, m := range info.Methods {
			methods = append(methods, "/"+svc+"/"+m.Name)
		}
	}
	slices.Sort(methods)
	for _, m := range methods {
		if _, ok := calls[m]; !ok {
			t.Errorf("registered method %s has no call in the matrix", m)
		}
		if _, _, known := server.AllowedRoles(m); !known {
			t.Errorf("registered method %s is missing from the access table", m)
		}
	}
	if len(methods) < 20 {
		t.Fatalf("only %d methods registered: %v", len(methods), methods)
	}

	var md strings.Builder
	md.WriteString("| method |")
	for _, c := range columns {
		md.WriteString(" " + c.name + " |")
	}
	md.WriteString("\n|---|" + strings.Repeat("---|", len(columns)) + "\n")
	conns := make([]*grpc.ClientConn, len(columns))
	for i, c := range columns {
		conns[i] = s.dial(t, c.cert, c.force)
	}
	n := 0
	for _, m := range methods {
		md.WriteString("| `" + strings.TrimPrefix(m, "/") + "` |")
		for i, col := range columns {
			n++
			ctx, cancel := context.WithTimeout(bearer(t.Context(), col.token), 10*time.Second)
			got := status.Code(calls[m](ctx, conns[i], n))
			cancel()
			if want := col.want(m); got != want {
				t.Errorf("%s as %s: %v, want %v", m, col.name, got, want)
			}
			md.WriteString(" " + got.String() + " |")
		}
		md.WriteString("\n")
	}
	t.Logf("authorization matrix:\n%s", md.String())
	golden := filepath.Join("testdata", "authz_matrix.md")
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(md.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if string(want) != md.String() {
		t.Errorf("matrix differs from %s (run with -update after checking):\n%s", golden, md.String())
	}

	// Every record's recorded_by names its principal: the token's NAME, or the
	// certificate's subject.
	writerCert := s.ca.issue(t, pkix.Name{CommonName: "wire-importer", OrganizationalUnit: []string{"writer"}}, false)
	for _, tc := range []struct {
		id, token string
		cert      *tls.Certificate
		want      string
	}{
		{"by-admin", adminToken, nil, "admin-1"},
		{"by-writer", writerToken, nil, "writer-1"},
		{"by-cert", "", &writerCert, "CN=wire-importer,OU=writer"},
	} {
		resp, err := ledgerv1.NewLedgerServiceClient(s.dial(t, tc.cert)).Append(bearer(t.Context(), tc.token),
			&ledgerv1.AppendRequest{Party: "dprk", Events: []*ledgerv1.Event{statement(tc.id, "dprk", "msmt-legitimacy", occurred)}})
		if err != nil {
			t.Fatalf("append %s: %v", tc.id, err)
		}
		stored, err := lc.GetEvent(adminCtx, &ledgerv1.GetEventRequest{EventId: tc.id})
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.GetEvents()[0].GetRecordedBy(); got != tc.want || stored.GetEvent().GetRecordedBy() != tc.want {
			t.Errorf("%s recorded_by %q (stored %q), want %q", tc.id, got, stored.GetEvent().GetRecordedBy(), tc.want)
		}
	}
	for _, secret := range []string{writerToken, auditorToken, adminToken, badToken} {
		if strings.Contains(s.logs.String(), secret) {
			t.Errorf("a token appears in the server log")
		}
	}
	if !strings.Contains(s.logs.String(), "principal=writer-1") {
		t.Errorf("the debug log does not name the principals: %.2000s", s.logs.String())
	}
}

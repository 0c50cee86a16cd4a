package server

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	ledger "github.com/stanceledger/ledger"
	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
)

// Role is what an authenticated principal may do. The methods each role may call are
// listed in one table, methodAccess, below.
type Role string

// The roles of issue 6.
const (
	// RoleWriter appends records. Of the reads it may call only those it needs to
	// append with an exact expected revision and to check its own records: ReadStream
	// (a party's stream, whose last revision is the next expected revision) and
	// GetEvent (was this event_id stored, and how). It may not follow or export the
	// whole log, nor read the views and proofs.
	RoleWriter Role = "writer"
	// RoleAuditor reads everything and writes nothing: the log (ReadStream, ReadAll,
	// Subscribe, GetEvent), the positions view (positions, history, snapshots, watch)
	// and the integrity service (checkpoints, proofs, verifier key).
	RoleAuditor Role = "auditor"
	// RoleAdmin may call every method, the AdminService (rebuild a projection) included.
	RoleAdmin Role = "admin"
)

// ParseRole reads a role name as the tokens file and certificates spell it.
func ParseRole(s string) (Role, bool) {
	switch r := Role(s); r {
	case RoleWriter, RoleAuditor, RoleAdmin:
		return r, true
	}
	return "", false
}

// access is the set of roles that may call a method; public means no credentials at all.
type access uint8

const (
	allowWriter access = 1 << iota
	allowAuditor
	allowAdmin
	// public methods (health, reflection) are served to anyone, authenticated or not.
	public

	adminOnly = allowAdmin
	readers   = allowAuditor | allowAdmin
	writers   = allowWriter | allowAdmin
	// writerReads are the reads a writer needs for expected revisions and retries.
	writerReads = allowWriter | allowAuditor | allowAdmin
)

func (a access) allows(r Role) bool {
	switch r {
	case RoleWriter:
		return a&allowWriter != 0
	case RoleAuditor:
		return a&allowAuditor != 0
	case RoleAdmin:
		return a&allowAdmin != 0
	}
	return false
}

// methodAccess is the one table of who may call what. Every method of every service
// the Server registers is here (TestEveryMethodHasAnAccessRule checks it); a method
// missing from it is refused to everyone with PermissionDenied.
var methodAccess = map[string]access{
	ledgerv1.LedgerService_Append_FullMethodName:     writers,
	ledgerv1.LedgerService_ReadStream_FullMethodName: writerReads,
	ledgerv1.LedgerService_GetEvent_FullMethodName:   writerReads,
	ledgerv1.LedgerService_ReadAll_FullMethodName:    readers,
	ledgerv1.LedgerService_Subscribe_FullMethodName:  readers,

	ledgerv1.IntegrityService_GetCheckpoint_FullMethodName:       readers,
	ledgerv1.IntegrityService_GetInclusionProof_FullMethodName:   readers,
	ledgerv1.IntegrityService_GetConsistencyProof_FullMethodName: readers,
	ledgerv1.IntegrityService_GetVerifierKey_FullMethodName:      readers,

	ledgerv1.PositionService_GetPosition_FullMethodName:    readers,
	ledgerv1.PositionService_ListPositions_FullMethodName:  readers,
	ledgerv1.PositionService_GetHistory_FullMethodName:     readers,
	ledgerv1.PositionService_GetSnapshot_FullMethodName:    readers,
	ledgerv1.PositionService_WatchPositions_FullMethodName: readers,

	ledgerv1.AdminService_RebuildProjection_FullMethodName: adminOnly,

	healthpb.Health_Check_FullMethodName:                                   public,
	healthpb.Health_Watch_FullMethodName:                                   public,
	healthpb.Health_List_FullMethodName:                                    public,
	reflectionv1.ServerReflection_ServerReflectionInfo_FullMethodName:      public,
	reflectionv1alpha.ServerReflection_ServerReflectionInfo_FullMethodName: public,
}

// AuthOptions say where an Auth finds its principals.
type AuthOptions struct {
	// TokensFile names the bearer-token file (see ParseTokens); empty means no tokens.
	TokensFile string
	// ClientCerts accepts verified TLS client certificates: the certificate's subject
	// is the principal and the role is the first OrganizationalUnit that names a role
	// ("writer", "auditor", "admin"). The TLS configuration (TLSConfig with a client CA)
	// does the verifying; Auth only reads verified chains.
	ClientCerts bool
}

// Auth authenticates callers by bearer token or verified client certificate. It is safe
// for concurrent use; Reload swaps the token set atomically.
type Auth struct {
	opts   AuthOptions
	tokens atomic.Pointer[Tokens]
}

// NewAuth loads opts.TokensFile (when set) and returns an Auth over it. It fails with
// the file's parse error, which names the line.
func NewAuth(opts AuthOptions) (*Auth, error) {
	a := &Auth{opts: opts}
	if err := a.Reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// Reload reads the tokens file again and, when it parses, replaces the token set.
// When it does not, the old set stays in force and the error says why. Without a
// tokens file it does nothing.
func (a *Auth) Reload() error {
	if a.opts.TokensFile == "" {
		a.tokens.Store(&Tokens{})
		return nil
	}
	t, err := LoadTokens(a.opts.TokensFile)
	if err != nil {
		return err
	}
	a.tokens.Store(t)
	return nil
}

// Principals is the number of principals the current token set names.
func (a *Auth) Principals() int { return len(a.tokens.Load().byHash) }

// Identity is an authenticated caller.
type Identity struct {
	// Name is the principal: the tokens file's NAME, or the client certificate's
	// subject ("CN=alice,OU=writer,O=…"). It becomes each appended record's recorded_by.
	Name string
	Role Role
}

// Tokens is a parsed tokens file: principals by the SHA-256 of their token.
type Tokens struct {
	byHash map[[sha256.Size]byte]Identity
}

// LoadTokens reads and parses the tokens file at path (see ParseTokens).
func LoadTokens(path string) (*Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	defer f.Close()
	t, err := ParseTokens(f)
	if err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	return t, nil
}

// ParseTokens reads a tokens file: one principal a line, "NAME ROLE SHA256HEX" separated
// by blanks, where SHA256HEX is the hex SHA-256 of the principal's token (never the token
// itself: `printf %s "$TOKEN" | sha256sum`). Blank lines and lines starting with "#" are
// skipped. An error names the line ("line 3: …"); a name or a hash given twice is an error.
func ParseTokens(r io.Reader) (*Tokens, error) {
	t := &Tokens{byHash: map[[sha256.Size]byte]Identity{}}
	names := map[string]int{}
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d: want NAME ROLE SHA256HEX, got %d fields", n, len(f))
		}
		name, roleName, hexHash := f[0], f[1], f[2]
		role, ok := ParseRole(roleName)
		if !ok {
			return nil, fmt.Errorf("line %d: unknown role %q (want writer, auditor or admin)", n, roleName)
		}
		if len(hexHash) != 2*sha256.Size {
			return nil, fmt.Errorf("line %d: the hash must be %d hex digits (the SHA-256 of the token), got %d characters", n, 2*sha256.Size, len(hexHash))
		}
		var h [sha256.Size]byte
		if _, err := hex.Decode(h[:], []byte(hexHash)); err != nil {
			return nil, fmt.Errorf("line %d: the hash is not hex: %v", n, err)
		}
		if prev, dup := names[name]; dup {
			return nil, fmt.Errorf("line %d: principal %q already named on line %d", n, name, prev)
		}
		if _, dup := t.byHash[h]; dup {
			return nil, fmt.Errorf("line %d: the same token hash as another principal", n)
		}
		names[name] = n
		t.byHash[h] = Identity{Name: name, Role: role}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", n+1, err)
	}
	return t, nil
}

// lookup finds the principal whose token hashes to sum. It compares against every entry
// in constant time, so the time taken says nothing about how much of a hash matched.
func (t *Tokens) lookup(sum [sha256.Size]byte) (Identity, bool) {
	var found Identity
	ok := 0
	for h, id := range t.byHash {
		if subtle.ConstantTimeCompare(h[:], sum[:]) == 1 {
			found, ok = id, 1
		}
	}
	return found, ok == 1
}

// errNoCredentials and errBadToken are the Unauthenticated answers. They never echo
// what the caller sent.
var (
	errNoCredentials = status.Error(codes.Unauthenticated, "no credentials: send authorization: Bearer <token> or a client certificate")
	errBadToken      = status.Error(codes.Unauthenticated, "the bearer token is not valid")
	errBadAuthHeader = status.Error(codes.Unauthenticated, `malformed authorization metadata: want "Bearer <token>"`)
)

// identify authenticates the caller of ctx: a bearer token when one is sent (it must
// be valid, even with a certificate), else a verified client certificate, else none.
func (a *Auth) identify(ctx context.Context) (Identity, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if vals := md.Get("authorization"); len(vals) > 0 {
		if len(vals) > 1 {
			return Identity{}, errBadAuthHeader
		}
		scheme, token, ok := strings.Cut(vals[0], " ")
		if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(token) == "" {
			return Identity{}, errBadAuthHeader
		}
		id, ok := a.tokens.Load().lookup(sha256.Sum256([]byte(strings.TrimSpace(token))))
		if !ok {
			return Identity{}, errBadToken
		}
		return id, nil
	}
	if a.opts.ClientCerts {
		if cert := verifiedClientCert(ctx); cert != nil {
			return certIdentity(cert), nil
		}
	}
	return Identity{}, errNoCredentials
}

// verifiedClientCert returns the leaf of the caller's verified client certificate chain,
// or nil when the connection is not TLS or the client sent no (verified) certificate.
func verifiedClientCert(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil
	}
	return leafOf(info.State)
}

func leafOf(st tls.ConnectionState) *x509.Certificate {
	if len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return nil
	}
	return st.VerifiedChains[0][0]
}

// certIdentity names a verified certificate's holder by its subject; its role is the
// first OrganizationalUnit naming a role, or none (every method but the public ones is
// then refused with PermissionDenied).
func certIdentity(cert *x509.Certificate) Identity {
	id := Identity{Name: cert.Subject.String()}
	for _, ou := range cert.Subject.OrganizationalUnit {
		if r, ok := ParseRole(ou); ok {
			id.Role = r
			break
		}
	}
	return id
}

type roleKey struct{}

// RoleFrom returns the role of the authenticated caller of ctx, and false when the
// server runs open (no Auth) or the method is public.
func RoleFrom(ctx context.Context) (Role, bool) {
	r, ok := ctx.Value(roleKey{}).(Role)
	return r, ok
}

// authorize decides whether the caller of ctx may call method and returns ctx with the
// principal (and role) set. Public methods pass untouched. Without an Auth (open mode)
// everyone may call everything; the principal is the verified client certificate's
// subject when there is one, else Anonymous. With an Auth: no or bad credentials →
// Unauthenticated; a role the table does not allow → PermissionDenied; over the
// principal's rate → a *ledger.LimitError (ResourceExhausted).
func (s *Server) authorize(ctx context.Context, method string) (context.Context, error) {
	acc, known := methodAccess[method]
	if !known {
		s.log.ErrorContext(ctx, "method missing from the access table; refused", "method", method)
		return ctx, status.Errorf(codes.PermissionDenied, "%s is not open to any role", method)
	}
	if acc&public != 0 {
		return ctx, nil
	}
	var id Identity
	if s.auth == nil {
		id.Name = Anonymous
		if cert := verifiedClientCert(ctx); cert != nil {
			id.Name = cert.Subject.String()
		}
		ctx = WithPrincipal(ctx, id.Name)
	} else {
		var err error
		if id, err = s.auth.identify(ctx); err != nil {
			return ctx, err
		}
		ctx = context.WithValue(WithPrincipal(ctx, id.Name), roleKey{}, id.Role)
		if !acc.allows(id.Role) {
			role := string(id.Role)
			if role == "" {
				role = "none"
			}
			return ctx, status.Errorf(codes.PermissionDenied, "principal %q (role %s) may not call %s", id.Name, role, method)
		}
	}
	setCaller(ctx, id.Name)
	if err := s.rates.allow(id.Name); err != nil {
		return ctx, err
	}
	return ctx, nil
}

// authUnary authorizes the call, then refuses a request that did not decode (decode.go):
// an unauthenticated caller learns nothing about its request.
func (s *Server) authUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	decodeErr := s.codec.takeDecodeError(req)
	ctx, err := s.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	if decodeErr != nil {
		return nil, decodeErr
	}
	return handler(ctx, req)
}

func (s *Server) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := s.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, &ctxStream{ServerStream: ss, ctx: ctx})
}

// ctxStream is a ServerStream whose Context carries the principal.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (c *ctxStream) Context() context.Context { return c.ctx }

// limitErr is the error a limit's guard returns.
func limitErr(limit string, value int64) error {
	return &ledger.LimitError{Limit: limit, Value: value}
}

// AllowedRoles reports who may call method (a full gRPC method name,
// "/stanceledger.v1.LedgerService/Append"): the roles, or public for a method served
// without credentials. known is false for a method the access table does not list,
// which every caller is refused.
func AllowedRoles(method string) (roles []Role, isPublic, known bool) {
	acc, known := methodAccess[method]
	if !known {
		return nil, false, false
	}
	for _, r := range []Role{RoleWriter, RoleAuditor, RoleAdmin} {
		if acc.allows(r) {
			roles = append(roles, r)
		}
	}
	return roles, acc&public != 0, true
}

// callerSlot lets the logging interceptor, which runs before authentication, name the
// principal that authentication found.
type callerSlot struct{ name string }

type callerSlotKey struct{}

// withCallerSlot returns ctx with an empty slot for the principal.
func withCallerSlot(ctx context.Context) (context.Context, *callerSlot) {
	slot := &callerSlot{}
	return context.WithValue(ctx, callerSlotKey{}, slot), slot
}

// setCaller records principal in ctx's slot, when there is one.
func setCaller(ctx context.Context, principal string) {
	if slot, ok := ctx.Value(callerSlotKey{}).(*callerSlot); ok {
		slot.name = principal
	}
}

// callerOf is the principal to log for a call: the one authentication found, else the
// one in ctx (Anonymous when none).
func callerOf(ctx context.Context) string {
	if slot, ok := ctx.Value(callerSlotKey{}).(*callerSlot); ok && slot.name != "" {
		return slot.name
	}
	return PrincipalFrom(ctx)
}

package server_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	ledgerv1 "github.com/stanceledger/ledger/proto/stanceledger/v1"
	"github.com/stanceledger/ledger/server"
)

func TestParseTokens(t *testing.T) {
	good := tokenLine("writer-1", "writer", writerToken)
	hash := strings.Fields(good)[2]
	for _, tc := range []struct {
		name, file, err string
	}{
		{"ok with comments and blanks", "# who\n\n" + good + "  # indented comment\n" + tokenLine("admin-1", "admin", adminToken), ""},
		{"two fields", "# c\nwriter-1 writer\n", "line 2: want NAME ROLE SHA256HEX"},
		{"four fields", "a writer " + hash + " extra\n", "line 1: want NAME ROLE SHA256HEX"},
		{"unknown role", "\n\nbob reader " + hash + "\n", "line 3: unknown role \"reader\""},
		{"short hash", "bob writer abc\n", "line 1: the hash must be 64 hex digits"},
		{"token instead of hash", "bob writer " + writerToken + "\n", "line 1: the hash must be 64 hex digits"},
		{"not hex", "bob writer " + strings.Repeat("zz", 32) + "\n", "line 1: the hash is not hex"},
		{"name twice", good + tokenLine("writer-1", "admin", adminToken), "line 2: principal \"writer-1\" already named on line 1"},
		{"hash twice", good + "other admin " + hash + "\n", "line 2: the same token hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := server.ParseTokens(strings.NewReader(tc.file))
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			case err != nil && strings.Contains(err.Error(), writerToken):
				t.Errorf("the error echoes the token: %v", err)
			}
		})
	}
}

// TestTokensReload replaces the tokens file: a good file takes effect on Reload, a
// broken one is refused and the old tokens stay in force.
func TestTokensReload(t *testing.T) {
	s := startSecure(t, server.TrafficLimits{})
	c := ledgerv1.NewLedgerServiceClient(s.dial(t, nil))
	call := func(token string) codes.Code {
		_, err := c.GetEvent(bearer(t.Context(), token), &ledgerv1.GetEventRequest{EventId: "none"})
		return status.Code(err)
	}
	if got := call(writerToken); got != codes.NotFound {
		t.Fatalf("writer before reload: %v", got)
	}
	const newToken = "r0tated-wr1ter-t0ken-eeeeeeeeeeeeeee"
	if err := os.WriteFile(s.tokens, []byte(tokenLine("writer-1", "writer", newToken)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.auth.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := call(writerToken); got != codes.Unauthenticated {
		t.Errorf("old token after reload: %v, want Unauthenticated", got)
	}
	if got := call(newToken); got != codes.NotFound {
		t.Errorf("new token after reload: %v, want NotFound (authorized)", got)
	}
	if err := os.WriteFile(s.tokens, []byte("writer-1 writer nothex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.auth.Reload(); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("reload of a broken file: %v, want an error naming line 1", err)
	}
	if got := call(newToken); got != codes.NotFound {
		t.Errorf("token after a failed reload: %v, want it still valid", got)
	}
	if s.auth.Principals() != 1 {
		t.Errorf("%d principals, want 1", s.auth.Principals())
	}
}

// TestMalformedAuthorization sends authorization metadata that is not "Bearer <token>".
func TestMalformedAuthorization(t *testing.T) {
	s := startSecure(t, server.TrafficLimits{})
	c := ledgerv1.NewLedgerServiceClient(s.dial(t, nil))
	for _, h := range []string{"Basic dXNlcjpwYXNz", "Bearer", "Bearer ", writerToken} {
		ctx := metadataContext(t, "authorization", h)
		_, err := c.GetEvent(ctx, &ledgerv1.GetEventRequest{EventId: "x"})
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("authorization %q: %v, want Unauthenticated", h, err)
		}
		if strings.Contains(status.Convert(err).Message(), writerToken) {
			t.Errorf("the answer echoes the token")
		}
	}
	if strings.Contains(s.logs.String(), writerToken) {
		t.Error("a token appears in the log")
	}
}

// TestOpenModeRecordsAnonymous: without Auth every method is open and records say who
// (nobody).
func TestOpenModeRecordsAnonymous(t *testing.T) {
	ts := start(t, server.Config{})
	resp := appendOK(t, ts.client, "dprk", nil, statement("o1", "dprk", "msmt-legitimacy", occurred))
	if got := resp.GetEvents()[0].GetRecordedBy(); got != server.Anonymous {
		t.Errorf("recorded_by %q, want %q", got, server.Anonymous)
	}
}

func metadataContext(t *testing.T, kv ...string) context.Context {
	return metadata.AppendToOutgoingContext(t.Context(), kv...)
}

func TestParseTokensLongLine(t *testing.T) {
	_, err := server.ParseTokens(strings.NewReader(tokenLine("a", "writer", "x") + strings.Repeat("x", 100<<10) + "\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "line 2: ") {
		t.Fatalf("got %v, want an error naming line 2", err)
	}
}

package server_test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stanceledger/ledger/server"
)

var lineErr = regexp.MustCompile(`^line (\d+): `)

// FuzzParseTokens: ParseTokens never panics, and every error names a line of the input.
func FuzzParseTokens(f *testing.F) {
	f.Add(tokenLine("writer-1", "writer", writerToken) + "# c\n\n" + tokenLine("admin-1", "admin", adminToken))
	f.Add("bob reader " + strings.Repeat("ab", 32) + "\n")
	f.Add("bob writer " + strings.Repeat("zz", 32))
	f.Add("a b\n")
	f.Add(tokenLine("x", "auditor", "t") + tokenLine("x", "admin", "u"))
	f.Fuzz(func(t *testing.T, file string) {
		toks, err := server.ParseTokens(strings.NewReader(file))
		if err == nil {
			if toks == nil {
				t.Fatal("nil tokens without an error")
			}
			return
		}
		m := lineErr.FindStringSubmatch(err.Error())
		if m == nil {
			t.Fatalf("error without a line: %v", err)
		}
		n, _ := strconv.Atoi(m[1])
		if lines := strings.Count(file, "\n") + 1; n < 1 || n > lines {
			t.Fatalf("error names line %d of %d: %v", n, lines, err)
		}
	})
}

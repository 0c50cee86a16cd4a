package ledger_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/stanceledger/ledger"

// allowed lists, for each project package (relative to the module), the project packages
// it may import directly (DESIGN.md §2, Layout). Packages not listed here (commands,
// tests, e2e) may import anything.
var allowed = map[string][]string{
	"":                          {},
	"store":                     {""},
	"store/storetest":           {"", "store"},
	"store/embedded":            {"", "store"},
	"store/esdb":                {"", "store"},
	"store/esdbcompat":          {"", "store"},
	"integrity":                 {""},
	"projections":               {"", "store", "integrity"},
	"projections/integrityview": {"", "store", "integrity", "projections"},
	"internal/wire":             {"", "store", "proto/stanceledger/v1"},
	"proto/stanceledger/v1":     {},
	"client":                    {"", "integrity", "internal/wire", "proto/stanceledger/v1"},
}

// foreignOnly lists external modules that only some project packages may import.
var foreignOnly = map[string][]string{
	"github.com/EventStore/EventStore-Client-Go": {"store/esdb", "store/esdbcompat"},
	"google.golang.org/grpc":                     {"server", "client", "store/esdb", "store/esdbcompat", "proto/stanceledger/v1", "cmd", "e2e"},
	"github.com/cockroachdb/pebble":              {"store/embedded", "projections"},
}

// jsonV2 is the one module the root package may use besides the standard library: the
// JSON v2 decoder that is becoming encoding/json/v2 (docs/architecture.md says why).
const jsonV2 = "github.com/go-json-experiment/json"

// TestLayering enforces the import rules of DESIGN.md §2 with `go list`: the root package
// depends on the standard library only (and jsonV2), each package imports only the project packages
// it may, and gRPC, Pebble and the EventStoreDB client stay inside their packages.
func TestLayering(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}|{{join .Imports " "}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for line := range strings.Lines(strings.TrimSpace(string(out))) {
		path, imports, _ := strings.Cut(strings.TrimSpace(line), "|")
		rel := strings.TrimPrefix(strings.TrimPrefix(path, module), "/")
		for _, imp := range strings.Fields(imports) {
			for prefix, who := range foreignOnly {
				if strings.HasPrefix(imp, prefix) && !under(rel, who) {
					t.Errorf("%s imports %s; only %v may", path, imp, who)
				}
			}
			if !strings.HasPrefix(imp, module) {
				continue
			}
			may, ok := rulesFor(rel)
			if !ok {
				continue
			}
			target := strings.TrimPrefix(strings.TrimPrefix(imp, module), "/")
			if !contains(may, target) {
				t.Errorf("%s imports %s; DESIGN.md §2 allows only %q", path, imp, may)
			}
		}
	}

	deps, err := exec.Command("go", "list", "-deps", "-f", `{{if not .Standard}}{{.ImportPath}}{{end}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for dep := range strings.Lines(strings.TrimSpace(string(deps))) {
		dep = strings.TrimSpace(dep)
		if dep == "" || dep == module || strings.HasPrefix(dep, jsonV2+"/") || dep == jsonV2 {
			continue
		}
		t.Errorf("package ledger depends on %s; it may use the standard library (and %s) only", dep, jsonV2)
	}
}

// rulesFor returns the rules of rel or of the nearest listed package above it
// (projections/x follows the rules of projections).
func rulesFor(rel string) ([]string, bool) {
	for p := rel; ; {
		if may, ok := allowed[p]; ok {
			return may, true
		}
		i := strings.LastIndex(p, "/")
		if i < 0 {
			return nil, false
		}
		p = p[:i]
	}
}

func under(rel string, pkgs []string) bool {
	for _, p := range pkgs {
		if rel == p || strings.HasPrefix(rel, p+"/") {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

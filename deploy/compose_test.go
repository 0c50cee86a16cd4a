// Package deploy_test checks docker-compose.yml and the Dockerfile at the repository
// root. No Docker engine is needed: the files' structure is checked here, and
// `docker compose config` runs too when a docker CLI with compose is installed.
package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// compose is docker-compose.yml, parsed.
func compose(t *testing.T) map[string]any {
	t.Helper()
	src, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	v, err := parseYAML(string(src))
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("docker-compose.yml is not a mapping")
	}
	return m
}

func mapAt(t *testing.T, v any, path string) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s: want a mapping, got %T", path, v)
	}
	return m
}

func strs(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, x := range l {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// pinned reports whether an image reference names a fixed version: a digest, or a tag
// with a digit that is not "latest".
var pinnedTag = regexp.MustCompile(`^[^:@]+(:[0-9]+)?(/[^:@]+)*(:[A-Za-z0-9._-]*[0-9][A-Za-z0-9._-]*)?(@sha256:[0-9a-f]{64})?$`)

func pinned(image string) bool {
	if strings.Contains(image, "@sha256:") {
		return true
	}
	i := strings.LastIndex(image, ":")
	if i < 0 || strings.Contains(image[i:], "/") {
		return false
	}
	tag := image[i+1:]
	return tag != "latest" && strings.ContainsAny(tag, "0123456789") && pinnedTag.MatchString(image)
}

func TestComposeProfiles(t *testing.T) {
	c := compose(t)
	services := mapAt(t, c["services"], "services")
	volumes := mapAt(t, c["volumes"], "volumes")
	networks := mapAt(t, c["networks"], "networks")

	want := map[string][]string{
		"dev":     {"eventstore", "ledgerd"},
		"cluster": {"esdb-certs", "esdb-node1", "esdb-node2", "esdb-node3", "esdb-setup", "ledgerd-1", "ledgerd-2"},
	}
	got := map[string][]string{}
	for name, sv := range services {
		s := mapAt(t, sv, "services."+name)
		p := strs(s["profiles"])
		if len(p) != 1 {
			t.Errorf("service %s: profiles %v, want exactly one (dev or cluster)", name, p)
			continue
		}
		got[p[0]] = append(got[p[0]], name)

		image, _ := s["image"].(string)
		if image == "" {
			t.Errorf("service %s has no image", name)
		} else if _, built := s["build"]; !built && !pinned(image) {
			t.Errorf("service %s: image %q is not pinned to a version", name, image)
		}
		if dep, ok := s["depends_on"].(map[string]any); ok {
			for d := range dep {
				if _, ok := services[d]; !ok {
					t.Errorf("service %s depends on %s, which is not defined", name, d)
				}
			}
		}
		for _, v := range strs(s["volumes"]) {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
				if _, err := os.Stat("../" + src); err != nil {
					t.Errorf("service %s mounts %s: %v", name, src, err)
				}
				continue
			}
			if _, ok := volumes[src]; !ok {
				t.Errorf("service %s mounts volume %s, which is not declared", name, src)
			}
		}
		if n, ok := s["networks"].(map[string]any); ok {
			for net := range n {
				if _, ok := networks[net]; !ok {
					t.Errorf("service %s joins network %s, which is not declared", name, net)
				}
			}
		}
		// Long-running services have a healthcheck; one-shot jobs do not need one.
		if strings.HasPrefix(name, "ledgerd") || strings.HasPrefix(name, "eventstore") || strings.HasPrefix(name, "esdb-node") {
			hc, _ := s["healthcheck"].(map[string]any)
			test := strs(hc["test"])
			if len(test) < 2 {
				t.Errorf("service %s: no healthcheck test", name)
			}
			if strings.HasPrefix(name, "ledgerd") && !slices.Contains(test, "/usr/local/bin/grpc-health-probe") {
				t.Errorf("service %s: healthcheck %v does not use gRPC health", name, test)
			}
		}
	}
	for profile, names := range want {
		slices.Sort(names)
		slices.Sort(got[profile])
		if !slices.Equal(got[profile], names) {
			t.Errorf("profile %s has %v, want %v", profile, got[profile], names)
		}
	}
	if len(got) != len(want) {
		t.Errorf("profiles %v, want dev and cluster only", got)
	}
}

func TestComposeEventStoreSettings(t *testing.T) {
	services := mapAt(t, compose(t)["services"], "services")
	env := func(name string) map[string]any {
		return mapAt(t, mapAt(t, services[name], name)["environment"], name+".environment")
	}
	dev := env("eventstore")
	if dev["EVENTSTORE_INSECURE"] != "true" || dev["EVENTSTORE_CLUSTER_SIZE"] != "1" {
		t.Errorf("dev eventstore: %v, want an insecure single node", dev)
	}
	for _, n := range []string{"esdb-node1", "esdb-node2", "esdb-node3"} {
		e := env(n)
		if _, insecure := e["EVENTSTORE_INSECURE"]; insecure {
			t.Errorf("%s runs insecure", n)
		}
		if e["EVENTSTORE_CLUSTER_SIZE"] != "3" || e["EVENTSTORE_CERTIFICATE_FILE"] == nil || e["EVENTSTORE_TRUSTED_ROOT_CERTIFICATES_PATH"] == nil {
			t.Errorf("%s: %v, want a 3-node cluster member with certificates", n, e)
		}
		seeds := strings.Split(e["EVENTSTORE_GOSSIP_SEED"].(string), ",")
		if len(seeds) != 2 {
			t.Errorf("%s gossips with %v, want the two other nodes", n, seeds)
		}
	}
	store := func(name string) string {
		cmd := strs(mapAt(t, services[name], name)["command"])
		i := slices.Index(cmd, "--store")
		if i < 0 || i+1 >= len(cmd) {
			t.Fatalf("%s: command %v has no --store", name, cmd)
		}
		return cmd[i+1]
	}
	if s := store("ledgerd"); !strings.HasPrefix(s, "esdb://eventstore:2113") || !strings.Contains(s, "tls=false") {
		t.Errorf("dev ledgerd --store %s, want the insecure dev node", s)
	}
	for _, n := range []string{"ledgerd-1", "ledgerd-2"} {
		s := store(n)
		if strings.Contains(s, "tls=false") || !strings.Contains(s, "tlsCAFile=") || strings.Count(s, ":2113") != 3 {
			t.Errorf("%s --store %s, want TLS to all three nodes", n, s)
		}
	}
}

func TestDockerfile(t *testing.T) {
	src, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var froms, users []string
	var healthcheck bool
	for line := range strings.Lines(string(src)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, f[1])
		case "USER":
			users = append(users, f[1])
		case "HEALTHCHECK":
			healthcheck = strings.Contains(line, "grpc-health-probe") || strings.Contains(string(src), "grpc-health-probe")
		}
	}
	if len(froms) < 2 {
		t.Errorf("FROM %v: want a multi-stage build", froms)
	}
	for _, f := range froms {
		if f != "scratch" && !pinned(f) {
			t.Errorf("base image %s is not pinned", f)
		}
	}
	if len(users) == 0 || users[len(users)-1] == "root" || strings.HasPrefix(users[len(users)-1], "0") {
		t.Errorf("USER %v: the final stage must run as non-root", users)
	}
	if !healthcheck {
		t.Error("no HEALTHCHECK with grpc-health-probe")
	}
	for _, want := range []string{"CGO_ENABLED=0", "./cmd/ledgerd"} {
		if !strings.Contains(string(src), want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	// The builder's Go is at least go.mod's.
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindStringSubmatch(string(mod))
	builder := regexp.MustCompile(`golang:(\d+)\.(\d+)`).FindStringSubmatch(froms[0])
	if goLine == nil || builder == nil || version(builder) < version(goLine) {
		t.Errorf("builder %s is older than go.mod's go %v", froms[0], goLine)
	}
}

func version(m []string) int {
	a, _ := strconv.Atoi(m[1])
	b, _ := strconv.Atoi(m[2])
	return a*1000 + b
}

// TestComposeConfig runs `docker compose config` for both profiles when docker compose
// is installed (it is not on the machine this was written on).
func TestComposeConfig(t *testing.T) {
	if exec.Command("docker", "compose", "version").Run() != nil {
		t.Skip("docker compose is not installed; the structure tests above checked the file")
	}
	for _, p := range []string{"dev", "cluster"} {
		out, err := exec.Command("docker", "compose", "-f", "../docker-compose.yml", "--profile", p, "config", "--quiet").CombinedOutput()
		if err != nil {
			t.Errorf("docker compose --profile %s config: %v\n%s", p, err, out)
		}
	}
}

// TestParseYAML checks the parser the tests above rely on, so a parser bug cannot
// hide a broken file.
func TestParseYAML(t *testing.T) {
	tests := []struct {
		src, want string
		bad       bool
	}{
		{src: "a: 1\nb:\n  c: \"x: y\"\n  d: [\"p\", \"q\"]\n", want: `{"a":"1","b":{"c":"x: y","d":["p","q"]}}`},
		{src: "# c\nl:\n  - \"x\"\n  - k: v\n    m: n\ne: {}\n", want: `{"e":{},"l":["x",{"k":"v","m":"n"}]}`},
		{src: "a: 1\na: 2\n", bad: true},
		{src: "a:\n  b: 1\n c: 2\n", bad: true},
		{src: "a: [\"unterminated\"\n", bad: true},
	}
	for _, tc := range tests {
		v, err := parseYAML(tc.src)
		if tc.bad {
			if err == nil {
				t.Errorf("parseYAML(%q) = %v, want an error", tc.src, v)
			}
			continue
		}
		b, _ := json.Marshal(v)
		if err != nil || string(b) != tc.want {
			t.Errorf("parseYAML(%q) = %s, %v; want %s", tc.src, b, err, tc.want)
		}
	}
}

// parseYAML parses the block-style subset of YAML that docker-compose.yml keeps to:
// mappings, sequences ("- "), full-line comments, plain and double-quoted scalars, and
// flow sequences and empty mappings written as JSON. Scalars stay strings. Duplicate
// keys and stray indentation are errors.
func parseYAML(src string) (any, error) {
	var ls []yline
	for i, raw := range strings.Split(src, "\n") {
		text := strings.TrimRight(raw, " \t\r")
		trimmed := strings.TrimLeft(text, " ")
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if strings.Contains(text, "\t") {
			return nil, fmt.Errorf("line %d: tab", i+1)
		}
		ls = append(ls, yline{indent: len(text) - len(trimmed), text: trimmed, num: i + 1})
	}
	if len(ls) == 0 {
		return nil, nil
	}
	v, next, err := parseNode(ls, 0, ls[0].indent)
	if err != nil {
		return nil, err
	}
	if next != len(ls) {
		return nil, fmt.Errorf("line %d: unexpected indentation", ls[next].num)
	}
	return v, nil
}

type yline struct {
	indent int
	text   string
	num    int
}

func parseNode(ls []yline, i, indent int) (any, int, error) {
	if ls[i].text == "-" || strings.HasPrefix(ls[i].text, "- ") {
		return parseSeq(ls, i, indent)
	}
	return parseMap(ls, i, indent)
}

func parseMap(ls []yline, i, indent int) (map[string]any, int, error) {
	m := map[string]any{}
	for i < len(ls) && ls[i].indent == indent {
		key, rest, ok := cutKey(ls[i].text)
		if !ok {
			return nil, i, fmt.Errorf("line %d: want key: value, got %q", ls[i].num, ls[i].text)
		}
		if _, dup := m[key]; dup {
			return nil, i, fmt.Errorf("line %d: duplicate key %q", ls[i].num, key)
		}
		var (
			v   any
			err error
		)
		if rest == "" {
			if i+1 < len(ls) && ls[i+1].indent > indent {
				v, i, err = parseNode(ls, i+1, ls[i+1].indent)
				if err != nil {
					return nil, i, err
				}
			} else {
				i++
			}
		} else {
			if v, err = scalar(rest, ls[i].num); err != nil {
				return nil, i, err
			}
			i++
		}
		m[key] = v
	}
	if i < len(ls) && ls[i].indent > indent {
		return nil, i, fmt.Errorf("line %d: unexpected indentation", ls[i].num)
	}
	return m, i, nil
}

func parseSeq(ls []yline, i, indent int) ([]any, int, error) {
	var out []any
	for i < len(ls) && ls[i].indent == indent && (ls[i].text == "-" || strings.HasPrefix(ls[i].text, "- ")) {
		item := strings.TrimPrefix(strings.TrimPrefix(ls[i].text, "-"), " ")
		if _, _, isMap := cutKey(item); isMap && !strings.HasPrefix(item, "\"") && !strings.HasPrefix(item, "[") {
			// "- key: value" starts a mapping whose lines are indented past the dash.
			sub := slices.Clone(ls)
			sub[i] = yline{indent: indent + 2, text: item, num: ls[i].num}
			m, next, err := parseMap(sub, i, indent+2)
			if err != nil {
				return nil, next, err
			}
			out = append(out, m)
			i = next
			continue
		}
		v, err := scalar(item, ls[i].num)
		if err != nil {
			return nil, i, err
		}
		out = append(out, v)
		i++
	}
	return out, i, nil
}

// cutKey splits "key: rest" or "key:"; keys are plain words.
func cutKey(s string) (key, rest string, ok bool) {
	if strings.HasPrefix(s, "\"") || strings.HasPrefix(s, "[") || strings.HasPrefix(s, "{") {
		return "", "", false
	}
	if k, r, found := strings.Cut(s, ": "); found && !strings.ContainsAny(k, " \"") {
		return k, strings.TrimSpace(r), true
	}
	if k, found := strings.CutSuffix(s, ":"); found && !strings.ContainsAny(k, " \"") {
		return k, "", true
	}
	return "", "", false
}

func scalar(s string, num int) (any, error) {
	switch {
	case strings.HasPrefix(s, "\""):
		var v string
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			return nil, fmt.Errorf("line %d: %v", num, err)
		}
		return v, nil
	case strings.HasPrefix(s, "["), strings.HasPrefix(s, "{"):
		var v any
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			return nil, fmt.Errorf("line %d: %v", num, err)
		}
		return v, nil
	}
	return s, nil
}

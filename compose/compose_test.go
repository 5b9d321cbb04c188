// Package compose holds the docker compose files of Vigil's full stack
// (compose.yaml, and compose.kurrentdb.yaml over it) and the tests that keep
// them, the root Dockerfile and .dockerignore in step with the code.
package compose

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// The file sets the README and docs/operations.md tell operators to run.
var fileSets = [][]string{
	{"compose.yaml"},
	{"compose.yaml", "compose.kurrentdb.yaml"},
}

// checked are the files whose VIGIL_* names must all be settings of vigil.
var checked = []string{"compose.yaml", "compose.kurrentdb.yaml", "README.md", "../Dockerfile"}

var (
	settingRef     = regexp.MustCompile(`\bVIGIL_[A-Z0-9_]*[A-Z0-9]\b`)
	settingLiteral = regexp.MustCompile(`"(VIGIL_[A-Z0-9_]*[A-Z0-9])"`)
)

// knownSettings returns the VIGIL_* variables cmd/vigil reads: every string
// literal that is exactly such a name in its non-test sources (the env
// fields of its settings tables, and any direct look-up).
func knownSettings(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("../cmd/vigil/*.go")
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range settingLiteral.FindAllSubmatch(b, -1) {
			known[string(m[1])] = true
		}
	}
	// A sanity check of the parsing itself, so that an empty set can never
	// pass the test below by accident.
	for _, must := range []string{"VIGIL_DATABASE_URL", "VIGIL_HTTP_ADDR", "VIGIL_DATA_DIR", "VIGIL_RELAY_ADDR", "VIGIL_BUS"} {
		if !known[must] {
			t.Fatalf("found no setting %s in cmd/vigil/*.go: has the settings table moved? (found %d names)", must, len(known))
		}
	}
	return known
}

// TestSettingsAreKnown checks that every VIGIL_* name in the compose files
// and the Dockerfile, comments included, is a setting vigil reads: a typo
// there is silently ignored by vigil and by docker compose alike.
func TestSettingsAreKnown(t *testing.T) {
	known := knownSettings(t)
	for _, f := range checked {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for n := 1; sc.Scan(); n++ {
			for _, name := range settingRef.FindAllString(sc.Text(), -1) {
				if !known[name] {
					t.Errorf("%s:%d: %s is not a setting of cmd/vigil (README.md lists them)", f, n, name)
				}
			}
		}
	}
}

// TestDockerfile checks the Dockerfile against the repository: the package
// it builds exists, the container listens on every interface on the ports it
// exposes, and it runs as the non-root user.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)

	build := regexp.MustCompile(`go build [^\n]*-o /out/vigil (\./\S+)`).FindStringSubmatch(df)
	if build == nil {
		t.Fatal("Dockerfile: no `go build … -o /out/vigil ./PACKAGE` line")
	}
	main, err := os.ReadFile(filepath.Join("..", build[1], "main.go"))
	if err != nil {
		t.Fatalf("Dockerfile builds %s: %v", build[1], err)
	}
	if !regexp.MustCompile(`(?m)^package main$`).Match(main) {
		t.Errorf("Dockerfile builds %s, which is not a main package", build[1])
	}
	if !strings.Contains(df, "CGO_ENABLED=0") || !strings.Contains(df, `-trimpath -ldflags "-s -w"`) {
		t.Error("Dockerfile: want a static, trimmed build (CGO_ENABLED=0, -trimpath -ldflags \"-s -w\")")
	}

	expose := regexp.MustCompile(`(?m)^EXPOSE (.+)$`).FindStringSubmatch(df)
	if expose == nil {
		t.Fatal("Dockerfile: no EXPOSE")
	}
	ports := strings.Fields(expose[1])
	for _, env := range []string{"VIGIL_HTTP_ADDR", "VIGIL_RELAY_ADDR"} {
		m := regexp.MustCompile(env + `=(\S+)`).FindStringSubmatch(df)
		if m == nil {
			t.Errorf("Dockerfile: %s is not set (its default listens on 127.0.0.1, unreachable from outside a container)", env)
			continue
		}
		host, port, ok := strings.Cut(m[1], ":")
		if !ok || host != "0.0.0.0" {
			t.Errorf("Dockerfile: %s=%s: want 0.0.0.0:PORT", env, m[1])
		}
		if !slices.Contains(ports, port) {
			t.Errorf("Dockerfile: %s=%s but EXPOSE %s", env, m[1], expose[1])
		}
	}
	for _, want := range []string{"USER 65532", "VIGIL_DATA_DIR=/data", `VOLUME ["/data"]`, `ENTRYPOINT ["/usr/local/bin/vigil"]`, `CMD ["serve"]`} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile: no %s", want)
		}
	}
}

// TestDockerignoreKeepsSources checks that .dockerignore excludes none of
// the files the build needs: go.mod, go.sum, and every non-test Go source
// and embedded SQL file outside compose/ and bench/.
func TestDockerignoreKeepsSources(t *testing.T) {
	rules := readDockerignore(t, "../.dockerignore")
	need := []string{"go.mod", "go.sum"}
	err := filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("..", path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			// Hidden directories, local data (var, bin: .gitignore) and
			// what the image does not build.
			if rel != "." && (strings.HasPrefix(d.Name(), ".") || slices.Contains([]string{"compose", "bench", "var", "bin"}, rel)) {
				return filepath.SkipDir
			}
			return nil
		}
		if (strings.HasSuffix(rel, ".go") && !strings.HasSuffix(rel, "_test.go")) || strings.HasSuffix(rel, ".sql") {
			need = append(need, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(need, "cmd/vigil/main.go") || !slices.ContainsFunc(need, func(s string) bool { return strings.HasPrefix(s, "migrations/") }) {
		t.Fatalf("walking the repository found no cmd/vigil/main.go or migrations (found %d files)", len(need))
	}
	for _, p := range need {
		if r := rules.excluding(p); r != "" {
			t.Errorf(".dockerignore: %q excludes %s, which the build needs", r, p)
		}
	}
	// And it does keep keys and local data out of the build context.
	for _, p := range []string{".git/config", "var/master.key", "var/signing.key", "cmd/vigil/var/master.key", "relay-key.pem"} {
		if rules.excluding(p) == "" {
			t.Errorf(".dockerignore does not exclude %s", p)
		}
	}
}

// dockerignore is the subset of .dockerignore syntax the file uses: one
// pattern per line, anchored at the context root, "*" and "?" within a path
// element, "**" across them, "!" to re-include; the last match wins, and a
// pattern matching a directory matches everything under it.
type dockerignore []struct {
	raw    string
	negate bool
	re     *regexp.Regexp
}

func readDockerignore(t *testing.T, path string) dockerignore {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rules dockerignore
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		raw := line
		negate := strings.HasPrefix(line, "!")
		line = strings.TrimPrefix(strings.TrimPrefix(line, "!"), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(line); i++ {
			switch {
			case strings.HasPrefix(line[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(line[i:], "**"):
				re.WriteString(".*")
				i++
			case line[i] == '*':
				re.WriteString("[^/]*")
			case line[i] == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(line[i : i+1]))
			}
		}
		re.WriteString("(/.*)?$")
		rules = append(rules, struct {
			raw    string
			negate bool
			re     *regexp.Regexp
		}{raw, negate, regexp.MustCompile(re.String())})
	}
	return rules
}

// excluding returns the pattern that excludes path, or "".
func (d dockerignore) excluding(path string) string {
	match := ""
	for _, r := range d {
		if r.re.MatchString(path) {
			if r.negate {
				match = ""
			} else {
				match = r.raw
			}
		}
	}
	return match
}

// TestComposeBuildsTheDockerfile checks that the vigil service builds the
// repository's Dockerfile, and that the addresses vigil listens on in the
// container are published.
func TestComposeBuildsTheDockerfile(t *testing.T) {
	b, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	y := string(b)
	ctx := regexp.MustCompile(`(?m)^\s+context:\s*(\S+)\s*$`).FindStringSubmatch(y)
	file := regexp.MustCompile(`(?m)^\s+dockerfile:\s*(\S+)\s*$`).FindStringSubmatch(y)
	if ctx == nil || file == nil {
		t.Fatal("compose.yaml: no build context and dockerfile")
	}
	if _, err := os.Stat(filepath.Join(ctx[1], file[1])); err != nil {
		t.Errorf("compose.yaml builds %s/%s: %v", ctx[1], file[1], err)
	}
	if _, err := os.Stat(filepath.Join(ctx[1], "go.mod")); err != nil {
		t.Errorf("compose.yaml: build context %s is not the module root: %v", ctx[1], err)
	}
	for _, env := range []string{"VIGIL_HTTP_ADDR", "VIGIL_RELAY_ADDR"} {
		m := regexp.MustCompile(`(?m)^\s+` + env + `:\s*"?0\.0\.0\.0:(\d+)"?\s*$`).FindStringSubmatch(y)
		if m == nil {
			t.Errorf("compose.yaml: want %s: 0.0.0.0:PORT", env)
			continue
		}
		if !regexp.MustCompile(`(?m)^\s+- "[^"]*:` + m[1] + `"`).MatchString(y) {
			t.Errorf("compose.yaml: %s listens on port %s, which is not published", env, m[1])
		}
	}
}

// composeCommand returns the docker compose command line, or skips the test
// when there is none.
func composeCommand(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := exec.LookPath("docker"); err == nil {
		if exec.CommandContext(ctx, "docker", "compose", "version").Run() == nil {
			return []string{"docker", "compose"}
		}
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		// Only Compose v2 understands the Compose Specification these
		// files use.
		out, err := exec.CommandContext(ctx, "docker-compose", "version", "--short").Output()
		if err == nil && strings.HasPrefix(strings.TrimPrefix(strings.TrimSpace(string(out)), "v"), "2.") {
			return []string{"docker-compose"}
		}
	}
	t.Skip("docker compose is not available (neither the `docker compose` plugin nor a v2 `docker-compose`): the compose files are not validated by Compose itself")
	return nil
}

func runCompose(t *testing.T, cmd []string, files []string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	argv := slices.Clone(cmd[1:])
	for _, f := range files {
		argv = append(argv, "-f", f)
	}
	argv = append(argv, args...)
	c := exec.CommandContext(ctx, cmd[0], argv...)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", cmd[0], strings.Join(argv, " "), err, stderr.String())
	}
	return out
}

// TestComposeConfig has Compose itself validate the files, alone and with
// the KurrentDB override, then checks the merged result: every dependency
// waited on as healthy has a health check, and vigil's environment holds
// only its settings.
func TestComposeConfig(t *testing.T) {
	cmd := composeCommand(t)
	known := knownSettings(t)
	for _, files := range fileSets {
		t.Run(strings.Join(files, "+"), func(t *testing.T) {
			runCompose(t, cmd, files, "config", "-q")

			var project struct {
				Services map[string]struct {
					DependsOn map[string]struct {
						Condition string `json:"condition"`
					} `json:"depends_on"`
					Healthcheck *struct {
						Test    []string `json:"test"`
						Disable bool     `json:"disable"`
					} `json:"healthcheck"`
					Environment map[string]*string `json:"environment"`
				} `json:"services"`
			}
			out := runCompose(t, cmd, files, "config", "--format", "json")
			if err := json.Unmarshal(out, &project); err != nil {
				t.Fatalf("docker compose config --format json: %v", err)
			}
			vigil, ok := project.Services["vigil"]
			if !ok {
				t.Fatal("no vigil service")
			}
			var names []string
			for name, s := range project.Services {
				names = append(names, name)
				for dep, d := range s.DependsOn {
					target, ok := project.Services[dep]
					if !ok {
						t.Errorf("%s depends on %s, which is not a service", name, dep)
						continue
					}
					if d.Condition == "service_healthy" && (target.Healthcheck == nil || target.Healthcheck.Disable || len(target.Healthcheck.Test) == 0) {
						t.Errorf("%s waits for %s to be healthy, which has no health check", name, dep)
					}
				}
			}
			sort.Strings(names)
			// The base file keeps log and bus in PostgreSQL (NATS and
			// KurrentDB are in profiles); the second file switches both.
			want, wantEnv := []string{"postgres", "minio"}, map[string]string{"VIGIL_LOG_STORE": "postgres", "VIGIL_BUS": "postgres"}
			if len(files) > 1 {
				want = append(want, "nats", "kurrentdb")
				wantEnv = map[string]string{"VIGIL_LOG_STORE": "kurrentdb", "VIGIL_BUS": "nats://nats:4222", "VIGIL_BUS_PREFIX": "vigil"}
			}
			if len(files) == 1 && strings.Join(names, " ") != "minio postgres vigil" {
				t.Errorf("the default stack starts %v, want minio postgres vigil", names)
			}
			for _, w := range want {
				if _, ok := vigil.DependsOn[w]; !ok {
					t.Errorf("vigil does not depend on %s (services: %v)", w, names)
				}
			}
			for k, v := range wantEnv {
				if got := vigil.Environment[k]; got == nil || *got != v {
					t.Errorf("vigil's %s = %v, want %s", k, got, v)
				}
			}
			for name := range vigil.Environment {
				if strings.HasPrefix(name, "VIGIL_") && !known[name] {
					t.Errorf("vigil's environment sets %s, which is not a setting of cmd/vigil", name)
				}
			}
		})
	}
}

package clients_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	"github.com/vigilhq/vigil/adapters/s3/s3test"
	"go.yaml.in/yaml/v3"
)

// TestPromtool checks /metrics with Prometheus's own linter after a run,
// when every metric family has samples.
func TestPromtool(t *testing.T) {
	promtool := need(t, "promtool", "apt-get install prometheus")
	s := startServe(t, nil)
	tenant, admin := s.tenant(t)
	s.simulate(t, admin, s.apiKey(t, tenant, "ingest"), 2)
	metrics := get(t, s.URL+"/metrics", "")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(metrics)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	for _, want := range []string{"vigil_", "go_goroutines"} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("/metrics has no %s", want)
		}
	}
	t.Logf("promtool check metrics: clean (%d bytes of metrics)", len(metrics))
}

// TestS3HoldsCiphertextOnly uploads a recording whose bytes are easy to
// recognise, then lists and reads the bucket with the AWS CLI, an S3
// client independent of Vigil's: every object is ciphertext, labelled as
// such, and none of it contains the plaintext.
func TestS3HoldsCiphertextOnly(t *testing.T) {
	aws := need(t, "aws", "apt-get install awscli")
	s3 := s3test.Start(t)
	s := startServe(t, map[string]string{
		"VIGIL_S3_ENDPOINT":   s3.Endpoint,
		"VIGIL_S3_TLS":        "false",
		"VIGIL_S3_BUCKET":     "clients",
		"VIGIL_S3_ACCESS_KEY": s3test.Access,
		"VIGIL_S3_SECRET_KEY": s3test.Secret,
	})
	tenant, admin := s.tenant(t)
	ingest := s.apiKey(t, tenant, "ingest")
	tech := s.technician(t, admin)

	var sess struct {
		ID string `json:"id"`
	}
	if st := call(t, http.MethodPost, s.URL+"/v1/sessions", tech, map[string]any{"queue": "private", "channel": "web"}, &sess); st != http.StatusCreated {
		t.Fatalf("create session: %d", st)
	}
	for _, c := range []struct {
		key string
		cmd map[string]any
	}{
		{ingest, map[string]any{"type": "connect_customer", "platform": "linux"}},
		{tech, map[string]any{"type": "pick_up"}},
	} {
		if st := call(t, http.MethodPost, s.URL+"/v1/sessions/"+sess.ID+"/commands", c.key, c.cmd, nil); st != http.StatusOK {
			t.Fatalf("%v: %d", c.cmd["type"], st)
		}
	}

	// A plaintext that is recognisable anywhere: a WebM header and a
	// repeated marker, around random bytes.
	marker := []byte("VIGIL-PLAINTEXT-MARKER-")
	plain := append([]byte{0x1a, 0x45, 0xdf, 0xa3}, bytes.Repeat(marker, 4096)...)
	noise := make([]byte, 64<<10)
	_, _ = rand.Read(noise)
	plain = append(plain, noise...)
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/v1/sessions/"+sess.ID+"/recordings", bytes.NewReader(plain))
	req.Header.Set("Authorization", "Bearer "+tech)
	req.Header.Set("Content-Type", "video/webm")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		t.Fatalf("upload: %d %s", resp.StatusCode, body)
	}

	env := append(os.Environ(),
		"AWS_ACCESS_KEY_ID="+s3test.Access, "AWS_SECRET_ACCESS_KEY="+s3test.Secret,
		"AWS_DEFAULT_REGION=us-east-1", "AWS_PAGER=", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
	run := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(aws, append([]string{"--endpoint-url", "http://" + s3.Endpoint, "--output", "json"}, args...)...)
		cmd.Env = env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return out
	}
	var list struct {
		Contents []struct {
			Key  string `json:"Key"`
			Size int64  `json:"Size"`
		} `json:"Contents"`
	}
	if err := json.Unmarshal(run("s3api", "list-objects-v2", "--bucket", "clients"), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Contents) == 0 {
		t.Fatal("aws s3api list-objects-v2: the bucket is empty after an upload")
	}
	dir := t.TempDir()
	for i, obj := range list.Contents {
		var head struct {
			ContentType string `json:"ContentType"`
		}
		if err := json.Unmarshal(run("s3api", "head-object", "--bucket", "clients", "--key", obj.Key), &head); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(head.ContentType, "video/") || strings.HasPrefix(head.ContentType, "audio/") {
			t.Errorf("%s is stored as %s, though it is ciphertext", obj.Key, head.ContentType)
		}
		file := filepath.Join(dir, fmt.Sprint(i))
		run("s3", "cp", "s3://clients/"+obj.Key, file)
		got, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(got, marker) || bytes.Contains(got, noise[:64]) || bytes.HasPrefix(got, plain[:4]) {
			t.Errorf("%s holds plaintext of the recording", obj.Key)
		}
	}
	t.Logf("aws cli read %d objects: ciphertext only", len(list.Contents))
}

// TestComposeConfigurations starts the vigil environment of each shipped
// compose file set against this machine's services: the service names are
// mapped to 127.0.0.1 (postgres, nats) or to a local versitygw (minio), the
// listen addresses to free loopback ports, and everything else is used as
// shipped. Each must reach ready. KurrentDB has no server here: with the
// second file the log store is kept in PostgreSQL and only that one
// setting is changed, which the test logs.
func TestComposeConfigurations(t *testing.T) {
	for _, set := range [][]string{{"compose.yaml"}, {"compose.yaml", "compose.kurrentdb.yaml"}} {
		t.Run(strings.Join(set, "+"), func(t *testing.T) {
			env := map[string]string{}
			for _, f := range set {
				b, err := os.ReadFile(filepath.Join("..", "compose", f))
				if err != nil {
					t.Fatal(err)
				}
				var doc struct {
					Services map[string]struct {
						Environment map[string]string `yaml:"environment"`
					} `yaml:"services"`
				}
				if err := yaml.Unmarshal(b, &doc); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				vigil, ok := doc.Services["vigil"]
				if !ok {
					t.Fatalf("%s has no vigil service", f)
				}
				for k, v := range vigil.Environment {
					env[k] = v
				}
			}
			if len(env) == 0 {
				t.Fatal("no vigil environment found")
			}
			s3 := s3test.Start(t)
			db := pgtest.New(t).URL
			// A prefix of this run's own on the shared NATS server, and its
			// streams removed afterwards.
			prefix := fmt.Sprintf("clients_%d", time.Now().UnixNano())
			if _, ok := env["VIGIL_BUS_PREFIX"]; ok || strings.HasPrefix(env["VIGIL_BUS"], "nats://") {
				env["VIGIL_BUS_PREFIX"] = prefix
				delete(env, "VIGIL_BUS_TOPIC")
				t.Cleanup(func() { deleteStreams(t, prefix) })
			}
			for k, v := range env {
				v = expandDefaults(v)
				switch k {
				case "VIGIL_DATABASE_URL":
					v = db
				case "VIGIL_HTTP_ADDR", "VIGIL_RELAY_ADDR":
					v = freeAddr(t)
				case "VIGIL_DATA_DIR":
					v = t.TempDir()
				case "VIGIL_S3_ENDPOINT":
					v = s3.Endpoint
				case "VIGIL_S3_ACCESS_KEY":
					v = s3test.Access
				case "VIGIL_S3_SECRET_KEY":
					v = s3test.Secret
				case "VIGIL_BUS_PREFIX":
					v = prefix
				case "VIGIL_LOG_STORE":
					if v == "kurrentdb" {
						t.Logf("VIGIL_LOG_STORE=kurrentdb → postgres: no KurrentDB server on this machine")
						v = "postgres"
					}
				}
				v = strings.ReplaceAll(v, "nats://nats:", "nats://127.0.0.1:")
				env[k] = v
			}
			s := startServe(t, env)
			tenant, admin := s.tenant(t)
			s.simulate(t, admin, s.apiKey(t, tenant, "ingest"), 2)
			t.Logf("%s: ready and served a simulated run (bus %s)", strings.Join(set, "+"), env["VIGIL_BUS"])
		})
	}
}

// expandDefaults replaces compose's ${NAME:-default} by its default.
func expandDefaults(v string) string {
	for {
		i := strings.Index(v, "${")
		if i < 0 {
			return v
		}
		j := strings.Index(v[i:], "}")
		if j < 0 {
			return v
		}
		inner := v[i+2 : i+j]
		def := ""
		if _, d, ok := strings.Cut(inner, ":-"); ok {
			def = d
		}
		v = v[:i] + def + v[i+j+1:]
	}
}

// deleteStreams removes the JetStream streams of a bus prefix, and only
// those.
func deleteStreams(t *testing.T, prefix string) {
	nc, err := nats.Connect("nats://127.0.0.1:4222", nats.Timeout(5*time.Second))
	if err != nil {
		t.Logf("nats: %v", err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Logf("jetstream: %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	names := js.StreamNames(ctx)
	var mine []string
	for name := range names.Name() {
		if strings.HasPrefix(name, prefix+"_") {
			mine = append(mine, name)
		}
	}
	for _, name := range mine {
		if err := js.DeleteStream(ctx, name); err != nil {
			t.Logf("delete stream %s: %v", name, err)
		}
	}
}

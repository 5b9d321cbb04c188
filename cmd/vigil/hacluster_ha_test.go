//go:build ha

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// haCluster is a running scripts/ha-cluster: etcd, three Patroni members
// (PostgreSQL 15, synchronous_mode) and HAProxy, under dir.
type haCluster struct {
	t    *testing.T
	dir  string
	env  map[string]string // DIR/env
	rest []string          // the members' REST ports, pg0 pg1 pg2
}

// startHACluster starts a cluster for the test and stops it (and removes
// its directory) when the test ends. extra is added to the script's
// environment (HA_PGBACKREST_CONF, say).
func startHACluster(t *testing.T, extra ...string) *haCluster {
	t.Helper()
	for _, b := range []string{"patroni", "etcd", "haproxy"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s is not installed (Debian packages patroni, etcd-server, haproxy): %v", b, err)
		}
	}
	// Directly under the temp dir: when the test runs as root, PostgreSQL
	// runs as postgres, which cannot traverse t.TempDir()'s 0700 parents.
	dir, err := os.MkdirTemp("", "vigil-ha-")
	if err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs("../../scripts/ha-cluster")
	if err != nil {
		t.Fatal(err)
	}
	c := &haCluster{t: t, dir: dir, env: map[string]string{}}
	t.Cleanup(func() {
		cmd := exec.Command(script, "stop", dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("ha-cluster stop: %v\n%s", err, out)
		}
		if t.Failed() {
			for _, m := range []string{"pg0", "pg1", "pg2"} {
				if b, err := os.ReadFile(filepath.Join(dir, "log", m+".log")); err == nil {
					t.Logf("patroni %s (tail):\n%s", m, tail(string(b), 3000))
				}
			}
		}
		_ = os.RemoveAll(dir)
	})
	cmd := exec.Command(script, "start", dir)
	cmd.Env = append(os.Environ(), extra...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ha-cluster start: %v\n%s", err, out)
	}
	f, err := os.Open(filepath.Join(dir, "env"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			c.env[k] = strings.Trim(v, "'")
		}
	}
	c.rest = strings.Fields(c.env["HA_REST_PORTS"])
	return c
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// member is one entry of Patroni's GET /cluster.
type member struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	State    string `json:"state"`
	Port     int    `json:"port"`
	Timeline int    `json:"timeline"`
}

// members asks any member that answers for the cluster's members.
func (c *haCluster) members() ([]member, error) {
	var last error
	for _, p := range c.rest {
		cl := http.Client{Timeout: 2 * time.Second}
		res, err := cl.Get("http://127.0.0.1:" + p + "/cluster")
		if err != nil {
			last = err
			continue
		}
		var out struct {
			Members []member `json:"members"`
		}
		err = json.NewDecoder(res.Body).Decode(&out)
		res.Body.Close()
		if err != nil {
			last = err
			continue
		}
		return out.Members, nil
	}
	return nil, last
}

// leader returns the name of the member in the leader role with a
// running PostgreSQL, or "".
func (c *haCluster) leader() string {
	ms, err := c.members()
	if err != nil {
		return ""
	}
	for _, m := range ms {
		if m.Role == "leader" && m.State == "running" {
			return m.Name
		}
	}
	return ""
}

// healthy reports whether the cluster has a running leader and a
// streaming synchronous standby.
func (c *haCluster) healthy() bool {
	ms, err := c.members()
	if err != nil {
		return false
	}
	var lead, sync bool
	for _, m := range ms {
		lead = lead || (m.Role == "leader" && m.State == "running")
		sync = sync || (m.Role == "sync_standby" && (m.State == "streaming" || m.State == "running"))
	}
	return lead && sync
}

// waitHealthy waits for a leader and a synchronous standby.
func (c *haCluster) waitHealthy(within time.Duration) {
	c.t.Helper()
	for deadline := time.Now().Add(within); !c.healthy(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			ms, err := c.members()
			c.t.Fatalf("cluster not healthy after %s: %+v %v", within, ms, err)
		}
	}
}

// killPostmaster sends SIGKILL to the postmaster of member name, read from
// its postmaster.pid, and returns when it is sent.
func (c *haCluster) killPostmaster(name string) {
	c.t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir, name, "data", "postmaster.pid"))
	if err != nil {
		c.t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		c.t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		c.t.Fatalf("kill postmaster %d of %s: %v", pid, name, err)
	}
}

// switchover asks Patroni to move the primary from leader to candidate.
func (c *haCluster) switchover(leader, candidate string) error {
	body := fmt.Sprintf(`{"leader":%q,"candidate":%q}`, leader, candidate)
	var last error
	for _, p := range c.rest {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://127.0.0.1:"+p+"/switchover", strings.NewReader(body))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			last = err
			continue
		}
		var msg [512]byte
		n, _ := res.Body.Read(msg[:])
		res.Body.Close()
		cancel()
		if res.StatusCode == 200 {
			return nil
		}
		last = fmt.Errorf("switchover: %s %s", res.Status, msg[:n])
	}
	return last
}

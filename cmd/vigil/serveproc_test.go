package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// serveProcess runs `vigil serve` with vars as a child process of the test
// binary (TestMain runs run() for VIGIL_TEST_MAIN=1), waits until /readyz
// on VIGIL_HTTP_ADDR answers 200, and stops it with SIGTERM when the test
// ends. It returns the process and its standard error.
func serveProcess(t *testing.T, vars map[string]string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "VIGIL_TEST_MAIN=1", "VIGIL_TEST_ARGS=serve")
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	logs := &bytes.Buffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A test may have stopped it already; both calls are then no-ops.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		r, err := http.Get("http://" + vars["VIGIL_HTTP_ADDR"] + "/readyz")
		if err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return cmd, logs
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not ready: %v\n%s", err, logs.String())
		}
	}
}

// tenantWithIngest creates a tenant through the CLI and an ingest key for
// it: tenant holds "tenant" and "admin_key", ingest "key".
func tenantWithIngest(t *testing.T, env func(string) string) (tenant, ingest map[string]string) {
	t.Helper()
	ctx := context.Background()
	var out bytes.Buffer
	if err := run(ctx, []string{"tenant", "create", "--name", "Acme", "--json"}, env, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(out.Bytes(), &tenant)
	out.Reset()
	if err := run(ctx, []string{"apikey", "create", "--tenant", tenant["tenant"], "--role", "ingest", "--json"}, env, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(out.Bytes(), &ingest)
	return tenant, ingest
}

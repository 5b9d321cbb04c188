package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	httpapi "github.com/vigilhq/vigil/api/http"
	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/ledger/ledgertest"
	"golang.org/x/mod/sumdb/tlog"
)

// TestMonitor runs vigil monitor against a live API: the first run keeps
// the checkpoint, a grown log is proved consistent from the tiles, and a
// forked or shrunk log, or a checkpoint under another key, fails.
func TestMonitor(t *testing.T) {
	db := pgtest.New(t)
	dir := devKeys(t, t.TempDir())
	ctx := context.Background()
	cfg := testConfig(db.URL, dir)
	sys, err := open(ctx, cfg, newLogger(io.Discard, "error"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	go sys.ledger.Run(ctx)
	tenant, _, err := sys.service.CreateTenant(ctx, "Acme", "eu")
	if err != nil {
		t.Fatal(err)
	}
	_, auditor, err := sys.service.CreateAPIKey(ctx, tenant.ID, service.RoleAuditor, "monitor")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.New(httpapi.Options{Service: sys.service, Audit: compliance.NewAuditor(sys.ledger)}))
	defer srv.Close()
	grow := func(n int) {
		t.Helper()
		for i := range n {
			guid := fmt.Sprintf("%032x", i%7+1)
			if _, err := sys.ledger.Append(ctx, domain.SessionStream(guid), ledger.AnyVersion, ledgertest.Chat(t, tenant.ID, guid, "hi")); err != nil {
				t.Fatal(err)
			}
		}
		if err := sys.ledger.CheckpointAll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	pub := filepath.Join(dir, "signing.key.pub")
	state := filepath.Join(t.TempDir(), "checkpoint")
	monitor := func() (string, error) {
		var out bytes.Buffer
		err := run(ctx, []string{"monitor", "--url", srv.URL, "--api-key", auditor, "--key", pub, "--state", state}, envFunc(nil), &out, io.Discard)
		return out.String(), err
	}
	grow(300)
	if out, err := monitor(); err != nil || !strings.Contains(out, "first checkpoint kept") {
		t.Fatalf("first run: %v %s", err, out)
	}
	grow(100)
	out, err := monitor()
	if err != nil || !strings.Contains(out, "grew from") {
		t.Fatalf("second run: %v %s", err, out)
	}
	tree, err := sys.logStore.TreeSize(ctx, tenant.ID) // the log as the monitor saw it
	if err != nil {
		t.Fatal(err)
	}

	sign := func(size int64, root tlog.Hash) {
		t.Helper()
		msg, err := ledger.SignCheckpoint(sys.keys.Signer, ledger.Origin("vigil.local", tenant.ID), size, root)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(state, msg, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var ee exitError
	// A fork: a signed checkpoint of another tree at an earlier size.
	sign(tree-50, tlog.Hash{1, 2, 3})
	if out, err := monitor(); !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(err.Error(), "FORK") {
		t.Errorf("forked log: %v %s", err, out)
	}
	// A shrunk log (a rewrite, or a restore from an old backup).
	sign(tree+1000, tlog.Hash{4})
	if out, err := monitor(); !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(err.Error(), "shrank") {
		t.Errorf("shrunk log: %v %s", err, out)
	}
	// A verifier key that did not sign the checkpoints.
	other := filepath.Join(t.TempDir(), "other.key")
	if err := run(ctx, []string{"keys", "new-signing", "--log-origin", "vigil.local", other}, envFunc(nil), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	err = run(ctx, []string{"monitor", "--url", srv.URL, "--api-key", auditor, "--key", other + ".pub", "--state", state}, envFunc(nil), io.Discard, io.Discard)
	if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(err.Error(), "does not verify") {
		t.Errorf("checkpoint under another key: %v", err)
	}
	// Missing flags are a usage error.
	if err := run(ctx, []string{"monitor", "--url", srv.URL}, envFunc(nil), io.Discard, io.Discard); !errors.As(err, &ee) || ee.code != 2 {
		t.Errorf("monitor without flags: %v", err)
	}
}

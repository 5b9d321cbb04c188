//go:build ha

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// asPostgres runs name with args as the user PostgreSQL runs as: postgres
// when the test runs as root (PostgreSQL and the archive_command run as
// postgres, so the repository must be its), the test's user otherwise.
func asPostgres(name string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		return exec.Command("setpriv", append([]string{"--reuid=postgres", "--regid=postgres", "--init-groups", "--", name}, args...)...)
	}
	return exec.Command(name, args...)
}

// pgDir makes a directory directly under the temp dir that the user
// PostgreSQL runs as owns, removed when the test ends.
func pgDir(t *testing.T, pattern string) string {
	t.Helper()
	d, err := os.MkdirTemp("", pattern)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", "postgres:", d).CombinedOutput(); err != nil {
			t.Fatalf("chown %s: %v %s", d, err, out)
		}
	}
	return d
}

// TestBackupRestore (issue 16, `make ha`): pgBackRest with an encrypted
// repository and WAL archiving from the Patroni cluster. A full backup,
// more appends, an auditor's checkpoint kept (signed only over archived
// WAL: VIGIL_CHECKPOINT_DURABILITY=archive), then a moment T, more
// appends and an erasure; the backup is restored to T into a fresh
// PostgreSQL, the erasure journal (the receipt) is re-applied, and `vigil
// verify` and `vigil monitor` with the kept checkpoint pass on the restored
// log.
func TestBackupRestore(t *testing.T) {
	if _, err := exec.LookPath("pgbackrest"); err != nil {
		t.Fatal("pgbackrest is not installed (Debian package pgbackrest)")
	}
	ctx := context.Background()
	repo := pgDir(t, "vigil-pgbackrest-")
	pass := make([]byte, 24)
	_, _ = rand.Read(pass)
	conf := filepath.Join(repo, "pgbackrest.conf")
	confText := fmt.Sprintf(`[global]
repo1-path=%[1]s/repo
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=%[2]s
repo1-retention-full=2
log-path=%[1]s/log
lock-path=%[1]s/lock
spool-path=%[1]s/spool
log-level-console=warn
log-level-file=info
start-fast=y
archive-timeout=120

[vigil]
pg1-path=%[1]s/none
`, repo, hex.EncodeToString(pass))
	if err := os.WriteFile(conf, []byte(confText), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"log", "lock", "spool", "repo"} {
		if err := os.Mkdir(filepath.Join(repo, d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", "-R", "postgres:", repo).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v %s", err, out)
		}
	}
	cl := startHACluster(t, "HA_PGBACKREST_CONF="+conf)
	leader := cl.leader()
	ms, _ := cl.members()
	var leaderPort int
	for _, m := range ms {
		if m.Name == leader {
			leaderPort = m.Port
		}
	}
	pgb := func(args ...string) string {
		t.Helper()
		full := append([]string{"--config=" + conf, "--stanza=vigil"}, args...)
		out, err := asPostgres("pgbackrest", full...).CombinedOutput()
		if err != nil {
			t.Fatalf("pgbackrest %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	onLeader := []string{"--pg1-path=" + filepath.Join(cl.dir, leader, "data"), "--pg1-port=" + strconv.Itoa(leaderPort), "--pg1-socket-path=" + filepath.Join(cl.dir, leader)}
	pgb(append(onLeader, "stanza-create")...)
	pgb(append(onLeader, "check")...)

	keysDir := devKeys(t, t.TempDir())
	dsn := cl.env["HA_DSN"]
	vars := map[string]string{
		"VIGIL_DATABASE_URL": dsn, "VIGIL_DATA_DIR": keysDir, "VIGIL_LOG_LEVEL": "warn", "VIGIL_RELAY_ADDR": "127.0.0.1:0",
		"VIGIL_HTTP_ADDR": freeAddr(t), "VIGIL_CHECKPOINT_INTERVAL": "1s", "VIGIL_CHECKPOINT_DURABILITY": "archive",
	}
	env := envFunc(vars)
	serveCmd, serveLogs := serveProcess(t, vars)
	url := "http://" + vars["VIGIL_HTTP_ADDR"]
	creds := haPrepare(t, url, env)
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	load := func(runID string, d time.Duration) {
		t.Helper()
		l := newHALoad(t, creds, runID)
		stop := l.run()
		time.Sleep(d)
		stop()
		if len(l.errs) > 0 {
			t.Fatalf("load %s: %v", runID, l.errs)
		}
	}
	// archived waits until the WAL written so far is in the archive.
	archived := func() {
		t.Helper()
		var seg string
		if err := pool.QueryRow(ctx, `SELECT pg_walfile_name(pg_switch_wal())`).Scan(&seg); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
			var last *string
			if err := pool.QueryRow(ctx, `SELECT last_archived_wal FROM pg_stat_archiver`).Scan(&last); err != nil {
				t.Fatal(err)
			}
			if last != nil && len(*last) == 24 && *last >= seg {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("segment %s not archived after 2 min (last %v)", seg, last)
			}
		}
	}

	load("before-backup", 3*time.Second)
	t.Logf("full backup: %s", strings.TrimSpace(pgb(append(onLeader, "--type=full", "backup")...)))
	load("after-backup", 2*time.Second)

	// The auditor's checkpoint: signed once the WAL holding its events is
	// archived.
	var size int64
	if err := pool.QueryRow(ctx, `SELECT size FROM tenant_logs WHERE tenant = $1`, tenantOf(t, pool)).Scan(&size); err != nil {
		t.Fatal(err)
	}
	archived()
	state := filepath.Join(t.TempDir(), "checkpoint")
	monitor := func(base string) string {
		t.Helper()
		var out, errb bytes.Buffer
		err := run(ctx, []string{"monitor", "--url", base, "--api-key", creds.auditor, "--key", filepath.Join(keysDir, "signing.key.pub"), "--state", state}, env, &out, &errb)
		if err != nil {
			t.Fatalf("vigil monitor: %v\n%s%s", err, out.String(), errb.String())
		}
		return strings.TrimSpace(out.String())
	}
	// A checkpoint covers the size of the last mark taken before a WAL
	// segment was archived. The mark of the final size may be taken just
	// after archived() switched segments; the next segment is archived
	// only at archive_timeout (60 s, as long as this wait), so the wait
	// switches segments itself every two seconds, as a busier server's
	// WAL would.
	for i, deadline := 0, time.Now().Add(time.Minute); ; i++ {
		time.Sleep(500 * time.Millisecond)
		if i%4 == 3 {
			if _, err := pool.Exec(ctx, `SELECT pg_switch_wal()`); err != nil {
				t.Fatal(err)
			}
		}
		var signed int64
		if err := pool.QueryRow(ctx, `SELECT coalesce(max(size), 0) FROM checkpoints`).Scan(&signed); err != nil {
			t.Fatal(err)
		}
		if signed >= size {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint covers the %d archived leaves after a minute (largest %d)\n%s", size, signed, tail(serveLogs.String(), 3000))
		}
	}
	t.Logf("checkpoint kept by the auditor: %s", monitor(url))

	// T, then what the restore to T loses: more appends and an erasure,
	// whose receipt goes to the erasure journal.
	time.Sleep(1100 * time.Millisecond)
	var target string
	if err := pool.QueryRow(ctx, `SELECT now()::text`).Scan(&target); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	load("after-target", 2*time.Second)
	var stream string
	if err := pool.QueryRow(ctx, `SELECT stream FROM events WHERE type = 'session.created' ORDER BY position LIMIT 1`).Scan(&stream); err != nil {
		t.Fatal(err)
	}
	subject := "session:" + strings.TrimPrefix(stream, "session-")
	tenant := tenantOf(t, pool)
	receipt := filepath.Join(t.TempDir(), "receipt.txt")
	if err := run(ctx, []string{"erase", "--tenant", tenant, "--subject", subject, "--reason", "test", "-o", receipt}, env, io.Discard, io.Discard); err != nil {
		t.Fatalf("erase: %v", err)
	}
	var before int64
	if err := pool.QueryRow(ctx, `SELECT max(position) FROM events`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	archived() // a commit after T is archived, so that recovery stops at T
	_ = serveCmd.Process.Signal(syscall.SIGTERM)
	_ = serveCmd.Wait()

	// Restore to T into a fresh PostgreSQL.
	restored := pgDir(t, "vigil-restored-")
	if err := os.Chmod(restored, 0o700); err != nil {
		t.Fatal(err)
	}
	pgb("--pg1-path="+restored, "--type=time", "--target="+target, "--target-action=promote", "restore")
	port := freePort(t)
	pgctl := "/usr/lib/postgresql/15/bin/pg_ctl"
	opts := fmt.Sprintf("-c port=%d -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s -c archive_mode=off -c synchronous_standby_names= -c hot_standby=on", port, restored)
	if out, err := asPostgres(pgctl, "-D", restored, "-l", filepath.Join(restored, "server.log"), "-w", "-t", "300", "-o", opts, "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(restored, "server.log"))
		t.Fatalf("start the restored server: %v\n%s\n%s", err, out, tail(string(log), 3000))
	}
	t.Cleanup(func() { _ = asPostgres(pgctl, "-D", restored, "-m", "immediate", "stop").Run() })
	rurl := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/vigil?sslmode=disable", port)
	rpool, err := pgxpool.New(ctx, rurl)
	if err != nil {
		t.Fatal(err)
	}
	defer rpool.Close()
	// Promoted at T: out of recovery.
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		var rec bool
		if err := rpool.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&rec); err == nil && !rec {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the restored server is still in recovery after 2 min")
		}
	}
	var after int64
	if err := rpool.QueryRow(ctx, `SELECT max(position) FROM events`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after >= before {
		t.Fatalf("restored to %s: the log has %d positions, as many as the %d before the restore", target, after, before)
	}
	destroyed := func() int {
		var n int
		if err := rpool.QueryRow(ctx, `SELECT count(*) FROM subject_keys WHERE subject LIKE '%' || $1 AND wrapped IS NULL`, strings.TrimPrefix(subject, "session:")).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := destroyed(); n != 0 {
		t.Fatalf("the erasure after T is in the restored database (%d keys destroyed)", n)
	}

	// Re-apply the erasure journal, then verify and monitor.
	rvars := map[string]string{}
	for k, v := range vars {
		rvars[k] = v
	}
	rvars["VIGIL_DATABASE_URL"] = rurl
	rvars["VIGIL_CHECKPOINT_DURABILITY"] = "local" // the restored server has no archive
	rvars["VIGIL_HTTP_ADDR"] = freeAddr(t)
	renv := envFunc(rvars)
	r, err := os.ReadFile(receipt)
	if err != nil {
		t.Fatal(err)
	}
	field := func(name string) string {
		for _, line := range strings.Split(string(r), "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == name {
				return f[1]
			}
		}
		t.Fatalf("receipt without %s:\n%s", name, r)
		return ""
	}
	if err := run(ctx, []string{"erase", "--tenant", field("tenant"), "--subject", field("subject"), "--scope", field("scope"), "--reason", "re-applied after restore"}, renv, io.Discard, io.Discard); err != nil {
		t.Fatalf("re-apply the erasure: %v", err)
	}
	if n := destroyed(); n == 0 {
		t.Fatal("the re-applied erasure destroyed no key")
	}
	var out bytes.Buffer
	if err := run(ctx, []string{"verify", "--key", filepath.Join(keysDir, "signing.key.pub")}, renv, &out, &out); err != nil {
		t.Fatalf("verify the restored log: %v\n%s", err, tail(out.String(), 3000))
	}
	serveProcess(t, rvars)
	time.Sleep(2 * time.Second) // a checkpoint over the re-applied erasure
	t.Logf("restored to %s: %d of %d positions; monitor with the kept checkpoint: %s", target, after, before, monitor("http://"+rvars["VIGIL_HTTP_ADDR"]))
}

// tenantOf returns the one tenant with a log.
func tenantOf(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var tenant string
	if err := pool.QueryRow(context.Background(), `SELECT tenant FROM tenant_logs ORDER BY size DESC LIMIT 1`).Scan(&tenant); err != nil {
		t.Fatal(err)
	}
	return tenant
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

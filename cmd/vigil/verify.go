package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/vigilhq/vigil/adapters/keys"
	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/ledger"
	"golang.org/x/mod/sumdb/note"
)

func runVerify(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs, "vigil verify [--tenant ID] [--key KEYS] [--quiet]\n       vigil verify --bundle FILE --key KEY [--origin PREFIX] [--tenant ID] [--since CHECKPOINT_FILE]",
		"Recomputes and checks the whole log in the database and names the first bad position;\nwith --bundle, checks an auditor bundle offline, with no configuration or database.")
	cfg := bindConfig(fs, env)
	tenant := fs.String("tenant", "", "verify only this tenant's Merkle log (default: every tenant)")
	keyArg := fs.String("key", "", "checkpoint verifier keys, comma-separated, each a note-format key or a file holding keys one per line (several after a signing-key rotation; default: the configured signing key's)")
	quiet := fs.Bool("quiet", false, "no progress bar")
	bundle := fs.String("bundle", "", "verify this auditor bundle offline, with no database (needs --key)")
	since := fs.String("since", "", "with --bundle: a file holding an earlier checkpoint note the bundle must extend")
	origin := fs.String("origin", "", "with --bundle: the log origin prefix (VIGIL_LOG_ORIGIN of the exporting deployment) the checkpoint key must be named after (default: the key's name)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *bundle != "" {
		return runBundleVerify(*bundle, *keyArg, *since, *origin, *tenant, stdout)
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel)

	var verifiers note.Verifiers
	var signer string
	if *keyArg != "" {
		vl, vs, err := parseVerifiers(*keyArg)
		if err != nil {
			return err
		}
		verifiers, signer = vl, vs[0].Name()
	}
	// Verifying needs the log and the checkpoint verifier key, never the
	// master key: a daily verification job should not hold it.
	pool, err := postgres.OpenExisting(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("%w (database %s)", err, postgres.Redact(cfg.DatabaseURL))
	}
	defer pool.Close()
	var table *string
	if err := pool.QueryRow(ctx, `SELECT to_regclass('events')::text`).Scan(&table); err != nil {
		return err
	}
	if table == nil {
		return fmt.Errorf("%s holds no Vigil log: run 'vigil migrate' (or 'vigil serve') first", postgres.Redact(cfg.DatabaseURL))
	}
	pg := postgres.NewStore(pool, postgres.Options{Logger: log})
	defer pg.Close()
	logStore, closeLog, err := openLogStore(ctx, cfg, pg, log)
	if err != nil {
		return err
	}
	defer closeLog()
	if verifiers == nil {
		// The configured signing key's verifier key; on a host that holds
		// only the public half, its .pub file.
		path := signingKeyPath(cfg)
		_, vkey, err := keys.ReadSigningKey(path)
		if errors.Is(err, os.ErrNotExist) {
			if _, perr := os.Stat(path + ".pub"); perr != nil {
				return fmt.Errorf("no checkpoint verifier key: pass --key, or set VIGIL_SIGNING_KEY_FILE (%s and %s.pub do not exist)", path, path)
			}
			vl, vs, err := parseVerifiers(path + ".pub")
			if err != nil {
				return err
			}
			verifiers, signer = vl, vs[0].Name()
		} else if err != nil {
			return err
		} else {
			v, err := note.NewVerifier(vkey)
			if err != nil {
				return err
			}
			verifiers, signer = note.VerifierList(v), v.Name()
		}
	}

	opts := ledger.VerifyOptions{Tenant: *tenant, Verifiers: verifiers, Origin: cfg.LogOrigin}
	var bar *progressbar.ProgressBar
	if !*quiet {
		opts.Progress = func(done, total int64) {
			if bar == nil {
				bar = progressbar.NewOptions64(total,
					progressbar.OptionSetWriter(stderr),
					progressbar.OptionSetDescription("verifying"),
					progressbar.OptionShowCount(),
					progressbar.OptionShowIts(),
					progressbar.OptionSetItsString("events"),
					progressbar.OptionThrottle(250*time.Millisecond),
					progressbar.OptionClearOnFinish(),
				)
			}
			_ = bar.Set64(done)
		}
	}
	rep, err := ledger.Verify(ctx, logStore, opts)
	if bar != nil {
		_ = bar.Finish()
	}
	var ve *ledger.VerifyError
	if errors.As(err, &ve) {
		fmt.Fprintf(stdout, "FAILED: %v\n", ve)
		pinnedHint(ctx, pg, verifiers, stdout)
		return exitError{code: 1, msg: "the log does not verify"}
	}
	if err != nil {
		return err
	}
	rate := float64(rep.Events) / rep.Duration.Seconds()
	if rep.Duration <= 0 {
		rate = 0
	}
	scope := "all tenants"
	if *tenant != "" {
		scope = "tenant " + *tenant
	}
	fmt.Fprintf(stdout, "OK: the log verifies (%s)\n", scope)
	if rep.Positions == 0 {
		fmt.Fprintln(stdout, "  positions   none: the log is empty")
	} else {
		fmt.Fprintf(stdout, "  positions   1..%d gapless\n", rep.Positions)
	}
	fmt.Fprintf(stdout, "  tenants     %d\n", rep.Tenants)
	fmt.Fprintf(stdout, "  leaves      %d recomputed from the stored rows\n", rep.Events)
	fmt.Fprintf(stdout, "  hashes      %d stored Merkle hashes match\n", rep.Hashes)
	fmt.Fprintf(stdout, "  checkpoints %d signed by %s, roots match\n", rep.Checkpoints, signer)
	fmt.Fprintf(stdout, "  streams     %d with continuous versions\n", rep.Streams)
	fmt.Fprintf(stdout, "  took        %s (%.0f events/s)\n", rep.Duration.Round(time.Millisecond), rate)
	return nil
}

// parseVerifiers accepts note verifier keys or files holding them,
// separated by commas; a file holds one key per line (blank lines and
// lines starting with # are skipped). Several keys verify checkpoints
// signed before and after a signing-key rotation.
func parseVerifiers(s string) (note.Verifiers, []note.Verifier, error) {
	var vs []note.Verifier
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if v, err := note.NewVerifier(part); err == nil {
			vs = append(vs, v)
			continue
		}
		b, err := os.ReadFile(part)
		if err != nil {
			return nil, nil, fmt.Errorf("--key: %q is neither a verifier key nor a readable file: %w", part, err)
		}
		n := 0
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			v, err := note.NewVerifier(line)
			if err != nil {
				return nil, nil, fmt.Errorf("--key: %s: %w", part, err)
			}
			vs = append(vs, v)
			n++
		}
		if n == 0 {
			return nil, nil, fmt.Errorf("--key: %s holds no verifier key", part)
		}
	}
	if len(vs) == 0 {
		return nil, nil, fmt.Errorf("--key: no verifier key given")
	}
	return note.VerifierList(vs...), vs, nil
}

// pinnedHint prints the verifier keys the database pins that were not used,
// after a failed verification: a checkpoint that no given key verifies may
// be signed by a key rotated in since. They are not used unasked, because
// whoever can write the database can pin a key.
func pinnedHint(ctx context.Context, pg *postgres.Store, used note.Verifiers, w io.Writer) {
	pinned, err := pg.PinnedKeys(ctx)
	if err != nil {
		return
	}
	var unused []string
	for _, p := range pinned {
		v, err := note.NewVerifier(p.VerifierKey)
		if err != nil {
			continue
		}
		if u, err := used.Verifier(v.Name(), v.KeyHash()); err == nil && u != nil {
			continue
		}
		unused = append(unused, p.VerifierKey)
	}
	if len(unused) > 0 {
		fmt.Fprintf(w, "note: the database also accepts %s (vigil keys pinned); if your auditors hold it as a key of this log, verify with --key naming every key\n", strings.Join(unused, ", "))
	}
}

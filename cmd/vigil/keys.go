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

	"github.com/vigilhq/vigil/adapters/keys"
	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"golang.org/x/mod/sumdb/note"
)

func runKeys(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	const synopsis = `usage: vigil keys public | pinned | rotate [--new-key-file FILE] | rotate-signing --new-key-file FILE | new-master | new-signing FILE

  public          print the checkpoint verifier key
  pinned          list the verifier keys the log accepts
  rotate          re-wrap every subject key under a new master key
  rotate-signing  add a new checkpoint signing key, audited in every tenant's log
  new-master      print a fresh random master key (base64)
  new-signing     write a new checkpoint signing key to FILE and its verifier key to FILE.pub

'vigil keys SUBCOMMAND -h' shows a subcommand's flags.`
	if len(args) == 0 {
		fmt.Fprintln(stderr, synopsis)
		return errUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, synopsis)
		return nil
	case "public":
		return runKeysPublic(args[1:], env, stdout, stderr)
	case "rotate":
		return runKeysRotate(ctx, args[1:], env, stdout, stderr)
	case "rotate-signing":
		return runKeysRotateSigning(ctx, args[1:], env, stdout, stderr)
	case "pinned":
		return runKeysPinned(ctx, args[1:], env, stdout, stderr)
	case "new-signing":
		return runKeysNewSigning(args[1:], env, stdout, stderr)
	case "new-master":
		k, err := keys.NewMasterKeyString()
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, k)
		return nil
	}
	fmt.Fprintf(stderr, "vigil keys: unknown subcommand %q\n", args[0])
	return errUsage
}

// runKeysNewSigning writes a new checkpoint signing key to FILE (0600) and
// its verifier key to FILE.pub, named after VIGIL_LOG_ORIGIN; it never
// overwrites a file.
func runKeysNewSigning(args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keys new-signing", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: vigil keys new-signing [flags] FILE\n\nWrites a new Ed25519 checkpoint signing key to FILE (mode 0600) and its verifier key to FILE.pub.\nThe key is named after --log-origin (VIGIL_LOG_ORIGIN), which must match the deployment's.")
		fs.PrintDefaults()
	}
	cfg := bindConfig(fs, env)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitError{code: 0}
		}
		return errUsage
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	path := fs.Arg(0)
	if err := keys.GenerateSigningKey(path, cfg.LogOrigin); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s or %s.pub exists already: a signing key is never overwritten", path, path)
		}
		return err
	}
	_, vkey, err := keys.ReadSigningKey(path)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, vkey)
	return nil
}

func runKeysPublic(args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keys public", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := bindConfig(fs, env)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	_, vkey, err := keys.ReadSigningKey(signingKeyPath(cfg))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no signing key at %s: run 'vigil serve' once, or set VIGIL_SIGNING_KEY_FILE", signingKeyPath(cfg))
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, vkey)
	return nil
}

func runKeysRotate(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keys rotate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := bindConfig(fs, env)
	newFile := fs.String("new-key-file", "", "file with the new base64 master key, generated there if missing (default: with VIGIL_MASTER_KEY_PREVIOUS set, re-wrap under the current key; otherwise rotate the data dir's generated key in place)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel)
	sys, err := open(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer sys.Close()

	target := *newFile
	inPlace := false
	if target == "" && len(cfg.previousKeys()) > 0 {
		// The zero-downtime procedure: every process already runs with the
		// new key as current and the old one as previous; move every
		// subject key under the current one.
		current := sys.keys.Ring.Current()
		n, err := ledger.Rotate(ctx, sys.store, sys.keys.Ring, ledger.NewKeyring(current))
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "re-wrapped %d subject keys under the current master key %s; no event was touched\n", n, current.ID)
		fmt.Fprintln(stdout, "remove VIGIL_MASTER_KEY_PREVIOUS from every process, then destroy the old key")
		return nil
	}
	if target == "" {
		if sys.keys.MasterKeyPath == "" || cfg.MasterKeyFile != "" {
			return fmt.Errorf("the master key is configured (VIGIL_MASTER_KEY or VIGIL_MASTER_KEY_FILE): name the new key with --new-key-file")
		}
		// The data dir's generated key: write the new one beside it first,
		// so that a crash at any point leaves both keys loadable.
		target = sys.keys.MasterKeyPath + keys.PendingSuffix
		inPlace = true
	}
	if _, err := keys.GenerateMasterKeyFile(target); err != nil {
		return err
	}
	next, err := keys.ReadMasterKeyFile(target)
	if err != nil {
		return err
	}
	if next.ID == sys.keys.Ring.Current().ID {
		return fmt.Errorf("the new master key is the current one")
	}
	n, err := ledger.Rotate(ctx, sys.store, sys.keys.Ring, ledger.NewKeyring(next))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "re-wrapped %d subject keys under master key %s; no event was touched\n", n, next.ID)
	if inPlace {
		if err := os.Rename(target, sys.keys.MasterKeyPath); err != nil {
			return fmt.Errorf("keys are re-wrapped under %s, but replacing %s failed: %w (the next start loads both)", target, sys.keys.MasterKeyPath, err)
		}
		fmt.Fprintf(stdout, "%s now holds the new key\n", sys.keys.MasterKeyPath)
		return nil
	}
	fmt.Fprintf(stdout, "now point VIGIL_MASTER_KEY_FILE at %s (and restart every vigil process), then destroy the old key\n", target)
	return nil
}

// runKeysRotateSigning makes the log accept a new checkpoint signing key:
// run with the current (accepted) key, it records the new verifier key in
// every tenant's log, checkpoints them under the current key so that it
// vouches for the new one, and pins the new key. Processes may then switch
// to the new key.
func runKeysRotateSigning(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keys rotate-signing", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := bindConfig(fs, env)
	newFile := fs.String("new-key-file", "", "the new signing key (from 'vigil keys new-signing'), or a file holding its verifier key, such as FILE.pub (required)")
	by := fs.String("by", "", "who rotates, recorded with the pinned key (default: the OS user)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *newFile == "" {
		fmt.Fprintln(stderr, "vigil keys rotate-signing: --new-key-file is required")
		return errUsage
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	next, err := readVerifierKey(*newFile)
	if err != nil {
		return err
	}
	sys, err := openService(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer sys.Close()
	who := *by
	if who == "" {
		who = env("USER")
	}
	host, _ := os.Hostname()
	addedBy := fmt.Sprintf("vigil keys rotate-signing by %s on %s", who, host)
	n, added, err := sys.ledger.AddSigner(ctx, next, domain.Actor{Kind: domain.ActorSystem, ID: "vigil keys rotate-signing"}, addedBy)
	if err != nil {
		return err
	}
	if !added {
		fmt.Fprintf(stdout, "the log accepts %s already; nothing changed\n", next)
		return nil
	}
	fmt.Fprintf(stdout, "recorded tenant.signing_key_added in %d tenant logs, checkpointed under the current key %s\n", n, sys.keys.VerifierKey)
	fmt.Fprintf(stdout, "the log now accepts %s\n", next)
	fmt.Fprintln(stdout, "next: give the auditors the new verifier key beside the old one, point VIGIL_SIGNING_KEY_FILE at the new key and restart every vigil process")
	return nil
}

// readVerifierKey reads the verifier key of the note signing key in path,
// or the verifier key path holds.
func readVerifierKey(path string) (string, error) {
	if _, vkey, err := keys.ReadSigningKey(path); err == nil {
		return vkey, nil
	} else if errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	vkey := strings.TrimSpace(string(b))
	if _, err := note.NewVerifier(vkey); err != nil {
		return "", fmt.Errorf("%s holds neither a note signing key nor a verifier key", path)
	}
	return vkey, nil
}

// runKeysPinned lists the checkpoint verifier keys the log accepts.
func runKeysPinned(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keys pinned", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := bindConfig(fs, env)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	pool, err := postgres.OpenExisting(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("%w (database %s)", err, postgres.Redact(cfg.DatabaseURL))
	}
	defer pool.Close()
	st := postgres.NewStore(pool, postgres.Options{Logger: newLogger(stderr, cfg.LogLevel)})
	defer st.Close()
	pinned, err := st.PinnedKeys(ctx)
	if err != nil {
		return err
	}
	if len(pinned) == 0 {
		fmt.Fprintln(stdout, "no key is pinned yet: the first checkpoint signed pins its key")
		return nil
	}
	for _, p := range pinned {
		fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\n", p.VerifierKey, p.How, p.AddedAt.UTC().Format(time.RFC3339), p.AddedBy)
	}
	return nil
}

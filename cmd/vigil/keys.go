package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/vigilhq/vigil/adapters/keys"
	"github.com/vigilhq/vigil/ledger"
)

func runKeys(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: vigil keys public | rotate [--new-key-file FILE] | new-master | new-signing FILE")
		return errUsage
	}
	switch args[0] {
	case "public":
		return runKeysPublic(args[1:], env, stdout, stderr)
	case "rotate":
		return runKeysRotate(ctx, args[1:], env, stdout, stderr)
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

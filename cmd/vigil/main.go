// Command vigil is the event-sourced audit and compliance backend of a
// remote-support service: one binary with subcommands. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			if ee.msg != "" {
				fmt.Fprintln(os.Stderr, "vigil:", ee.msg)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "vigil:", err)
		os.Exit(1)
	}
}

// exitError carries a specific exit code out of run.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

// errUsage is returned for bad command lines (exit code 2).
var errUsage = exitError{code: 2}

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "run the API, the ledger writer and the checkpointer", runServe},
		{"migrate", "apply the database migrations and exit", runMigrate},
		{"verify", "recompute and check the whole log; exits non-zero at the first bad position", runVerify},
		{"export", "write a tenant's auditor bundle (events, checkpoint, proofs) to a file", runExport},
		{"keys", "show the checkpoint verifier key, rotate the master or the signing key", runKeys},
		{"relay", "run the TLS gateway relay alone; it asks the API over HTTP with a relay key", runRelay},
		{"rebuild", "rebuild the projections (reporting tables, subject index) from position 0", runRebuild},
		{"tenant", "create a tenant and its first admin API key", runTenant},
		{"apikey", "create or revoke API keys", runAPIKey},
		{"simulate", "drive realistic support sessions through a running server's HTTP API", runSimulate},
		{"erase", "GDPR-erase a technician or session (crypto-shredding), or verify an erasure receipt", runErase},
		{"health", "ask a running serve's /readyz; exits 0 when ready (container health checks)", runHealth},
		{"monitor", "check from the outside that a tenant's log only grows: signed checkpoints, proofs from tiles", runMonitor},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: vigil <command> [flags]")
	fmt.Fprintln(w)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'vigil <command> -h' for its flags; every flag also reads a VIGIL_* variable.")
}

// run is the whole program, minus process concerns, so that tests can call
// it.
func run(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return errUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], env, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "vigil: unknown command %q\n\n", args[0])
	usage(stderr)
	return errUsage
}

// setUsage gives fs its -h text: the synopsis line, what the command does,
// the command's own flags, and, when the command also reads the shared
// configuration (bindConfig), one line about it instead of every serve
// setting.
func setUsage(fs *flag.FlagSet, synopsis, about string) {
	fs.Usage = func() { printUsage(fs, synopsis, about) }
}

func printUsage(fs *flag.FlagSet, synopsis, about string) {
	w := fs.Output()
	fmt.Fprintf(w, "usage: %s\n", synopsis)
	if about != "" {
		fmt.Fprintf(w, "\n%s\n", about)
	}
	config := map[string]bool{}
	if fs.Name() != "serve" { // serve's flags are the configuration
		for _, s := range (&Config{}).settings() {
			config[s.flag] = true
		}
	}
	own := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	own.SetOutput(w)
	shared := false
	fs.VisitAll(func(f *flag.Flag) {
		if config[f.Name] {
			shared = true
			return
		}
		own.Var(f.Value, f.Name, f.Usage)
		own.Lookup(f.Name).DefValue = f.DefValue
	})
	has := false
	own.VisitAll(func(*flag.Flag) { has = true })
	if has {
		fmt.Fprintln(w, "\nFlags:")
		own.PrintDefaults()
	}
	if shared {
		fmt.Fprintln(w, "\nIt also reads the deployment's configuration (database, keys, log origin, …), each setting")
		fmt.Fprintln(w, "as its VIGIL_* variable or as a flag of the same name: 'vigil serve -h' lists them.")
	}
}

// isDefaultUsage reports whether fs still has the flag package's own usage
// ("Usage of NAME:" and every flag). NewFlagSet sets Usage to a method
// value, whose code pointer is the same for every FlagSet.
func isDefaultUsage(fs *flag.FlagSet) bool {
	return reflect.ValueOf(fs.Usage).Pointer() == reflect.ValueOf(flag.NewFlagSet("", flag.ContinueOnError).Usage).Pointer()
}

// parseFlags parses args into fs, mapping -h and parse errors to errUsage.
// A command that set no usage of its own gets "vigil NAME [flags]" with its
// summary and its own flags.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if isDefaultUsage(fs) {
		about := ""
		for _, c := range commands() {
			if c.name == fs.Name() {
				about = strings.ToUpper(c.summary[:1]) + c.summary[1:] + "."
			}
		}
		setUsage(fs, "vigil "+fs.Name()+" [flags]", about)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitError{code: 0}
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "vigil %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return errUsage
	}
	return nil
}

func newLogger(w io.Writer, level string) *slog.Logger {
	l, err := parseLevel(level)
	if err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

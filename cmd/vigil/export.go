package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain"
)

// runExport writes an auditor bundle of one tenant's log to a file (see
// docs/export-format.md) and records the export in the log.
func runExport(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setUsage(fs, "vigil export --tenant ID -o FILE|- [--from SEQ] [--to SEQ] [--since CHECKPOINT_FILE] [--open]",
		"Writes a tenant's auditor bundle (docs/export-format.md) and records the export in the log.\nCheck it offline with 'vigil verify --bundle FILE --key KEY'.")
	cfg := bindConfig(fs, env)
	tenant := fs.String("tenant", "", "the tenant whose log to export (required)")
	from := fs.Int64("from", 0, "first seq (0-based index in the tenant's Merkle log) to export")
	to := fs.Int64("to", -1, "last seq to export, inclusive (default: the end of the log, which gets a fresh checkpoint)")
	since := fs.String("since", "", "file holding an earlier signed checkpoint note to prove consistency from")
	openFields := fs.Bool("open", false, "add the personal fields in clear beside their ciphertext")
	out := fs.String("o", "", "the bundle file to write (required; - for standard output)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *tenant == "" || *out == "" {
		fmt.Fprintln(stderr, "vigil export: --tenant and -o are required")
		return errUsage
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	req := compliance.ExportRequest{
		Tenant: *tenant, From: *from, To: *to, Open: *openFields,
		Actor: domain.Actor{Kind: domain.ActorSystem, ID: "vigil export"},
	}
	if *since != "" {
		b, err := os.ReadFile(*since)
		if err != nil {
			return fmt.Errorf("--since: %w", err)
		}
		req.Since = b
	}

	sys, err := openService(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer sys.Close()
	auditor := compliance.NewAuditor(sys.ledger)

	var (
		w    io.Writer = stdout
		f    *os.File
		tmp  string
		info = stderr
	)
	if *out != "-" {
		// Write beside the target and rename, so that a failed export
		// never leaves a plausible-looking partial bundle.
		f, err = os.CreateTemp(filepath.Dir(*out), ".vigil-export-*")
		if err != nil {
			return err
		}
		tmp = f.Name()
		defer os.Remove(tmp)
		w = f
		info = stdout
	}
	res, err := auditor.Export(ctx, req, w)
	if f != nil {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return err
	}
	if f != nil {
		if err := os.Rename(tmp, *out); err != nil {
			return err
		}
	}
	fmt.Fprintf(info, "exported %d events of tenant %s (seq %d..%d) to %s\n", res.Count, *tenant, res.FromSeq, res.ToSeq, *out)
	fmt.Fprintf(info, "  checkpoint  size %d, root %s\n", res.TreeSize, hex.EncodeToString(res.Root[:]))
	fmt.Fprintf(info, "  bundle      %d bytes, sha256 %s\n", res.Bytes, hex.EncodeToString(res.SHA256[:]))
	fmt.Fprintf(info, "  recorded as compliance.audit_export_created %s\n", res.EventID)
	return nil
}

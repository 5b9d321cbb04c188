package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/webhooks"
)

// erasureWorkerInterval is how often serve looks for due erasures.
const erasureWorkerInterval = 30 * time.Second

// retentionInterval is how often serve applies the retention policies.
const retentionInterval = time.Hour

// gdpr returns the GDPR service over the system.
func (s *system) gdpr(ctx context.Context) (*compliance.GDPR, error) {
	recs, err := s.recordingsService(ctx)
	if err != nil {
		return nil, err
	}
	return compliance.NewGDPR(compliance.GDPRConfig{
		Pool: s.pool, Ledger: s.ledger, Credentials: s.store, Signer: s.keys.Signer, Logger: s.log,
		Recordings: recs.DeleteRecording, CatchUp: s.projector(0).CatchUp,
		Webhooks: webhooks.NewService(webhooks.Config{Pool: s.pool, Ledger: s.ledger, Logger: s.log}).PurgeSubject,
	}), nil
}

// retention returns the retention job, archiving into the blob store (S3
// when configured, otherwise a folder of the data directory), where the
// recordings are too.
func (s *system) retention(ctx context.Context) (*compliance.RetentionJob, error) {
	blobs, err := s.blobStore(ctx)
	if err != nil {
		return nil, err
	}
	recs, err := s.recordingsService(ctx)
	if err != nil {
		return nil, err
	}
	return compliance.NewRetentionJob(compliance.RetentionConfig{Pool: s.pool, Ledger: s.ledger, Blobs: blobs,
		Recordings: recs.DeleteRecording, Logger: s.log}), nil
}

func runErase(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("erase", flag.ContinueOnError)
	fs.SetOutput(stderr)
	const synopsis = "vigil erase --tenant ID --subject technician:<id>|session:<guid> [--delay D] [--scope all|chat] [--reason TEXT] [--json] [-o RECEIPT_FILE]\n       vigil erase --verify-receipt FILE --key KEY"
	setUsage(fs, synopsis, "GDPR-erases a subject by crypto-shredding. The signed erasure receipt alone goes to standard output\n(or -o FILE), status messages to standard error, so 'vigil erase … > receipt' keeps a receipt that verifies.")
	cfg := bindConfig(fs, env)
	tenant := fs.String("tenant", "", "the subject's tenant")
	subject := fs.String("subject", "", "technician:<id> or session:<guid>")
	delay := fs.Duration("delay", 0, "revocable grace period before the erasure runs (default: at once)")
	scope := fs.String("scope", "all", "all, or chat for a session's chat log only")
	reason := fs.String("reason", "", "a short, non-personal comment recorded in the log")
	asJSON := fs.Bool("json", false, "print JSON")
	receiptFile := fs.String("verify-receipt", "", "verify an erasure receipt FILE offline (with --key) instead of erasing")
	keyArg := fs.String("key", "", "checkpoint verifier key, as its note-format string or a file holding it (with --verify-receipt)")
	out := fs.String("o", "", "write the receipt to this file instead of standard output")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *receiptFile != "" {
		return verifyReceipt(*receiptFile, *keyArg, stdout)
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	if *tenant == "" || *subject == "" {
		fmt.Fprintln(stderr, "usage: "+synopsis)
		return errUsage
	}
	sys, err := openService(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer sys.Close()
	p := service.Principal{Tenant: *tenant, Role: service.RoleAdmin, CredentialID: "cli", Scope: service.ScopeFull}
	gdpr, err := sys.gdpr(ctx)
	if err != nil {
		return err
	}
	e, err := gdpr.RequestErasure(ctx, p, compliance.ErasureRequest{Subject: *subject, Scope: *scope, Delay: delay, Reason: *reason})
	if err != nil {
		return err
	}
	// Standard output carries one thing a script can keep: the JSON with
	// --json, otherwise the receipt exactly as signed (unless -o). Status
	// lines go to standard error.
	fmt.Fprintf(stderr, "erasure %s: %s %s (%s), due %s\n", e.ID, e.State, e.Subject, e.Scope, e.DueAt.Format(time.RFC3339))
	if e.Receipt == "" {
		fmt.Fprintln(stderr, "A running 'vigil serve' performs it when due; until then DELETE /v1/gdpr/erasures/"+e.ID+" revokes it.")
		fmt.Fprintln(stderr, "Its receipt is then at GET /v1/gdpr/erasures/"+e.ID+".")
	} else if *out != "" {
		if err := os.WriteFile(*out, []byte(e.Receipt), 0o600); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "receipt written to %s; check it with 'vigil erase --verify-receipt %s --key KEY'\n", *out, *out)
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(e)
	}
	if e.Receipt != "" && *out == "" {
		_, err := io.WriteString(stdout, e.Receipt)
		return err
	}
	return nil
}

// verifyReceipt checks an erasure receipt offline, with no database.
func verifyReceipt(file, keyArg string, stdout io.Writer) error {
	if keyArg == "" {
		return exitError{code: 2, msg: "--verify-receipt needs --key (the checkpoint verifier key)"}
	}
	verifiers, _, err := parseVerifiers(keyArg)
	if err != nil {
		return err
	}
	msg, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	r, err := compliance.VerifyErasureReceipt(msg, verifiers)
	if err != nil {
		fmt.Fprintf(stdout, "FAILED: %v\n", err)
		return exitError{code: 1, msg: "the erasure receipt does not verify"}
	}
	fmt.Fprintf(stdout, "OK: %s of tenant %s erased (scope %s) at %s by request %s\n", r.Subject, r.Tenant, r.Scope, r.ErasedAt.Format(time.RFC3339), r.Request)
	for _, k := range r.Keys {
		fmt.Fprintf(stdout, "  key %s of %s destroyed\n", k.KeyID, k.Subject)
	}
	for _, e := range r.Events {
		fmt.Fprintf(stdout, "  subject_erased event %s at position %d (seq %d)\n", e.ID, e.Position, e.Seq)
	}
	return nil
}

package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/vigilhq/vigil/compliance"
)

// runBundleVerify checks an auditor bundle offline: no configuration and no
// database, only the bundle, the verifier key and optionally an earlier
// checkpoint. The origin is the key's name and the tenant, or origin and
// tenant when given (docs/export-format.md). It exits 1 naming the first
// integrity failure, or listing the privileged actions without a valid
// consent.
func runBundleVerify(bundle, keyArg, sinceFile, origin, tenant string, stdout io.Writer) error {
	if keyArg == "" {
		return exitError{code: 2, msg: "verify --bundle needs --key (the checkpoint verifier key, or a file holding it)"}
	}
	verifiers, _, err := parseVerifiers(keyArg)
	if err != nil {
		return err
	}
	opts := compliance.BundleVerifyOptions{Verifiers: verifiers, Origin: origin, Tenant: tenant}
	if sinceFile != "" {
		if opts.Since, err = os.ReadFile(sinceFile); err != nil {
			return fmt.Errorf("--since: %w", err)
		}
	}
	f, err := os.Open(bundle)
	if err != nil {
		return err
	}
	defer f.Close()
	rep, err := compliance.VerifyBundle(bufio.NewReaderSize(f, 1<<20), opts)
	var be *compliance.BundleError
	var ce *compliance.ConsentError
	switch {
	case errors.As(err, &be):
		fmt.Fprintf(stdout, "FAILED: %s: %v\n", bundle, be)
		return exitError{code: 1, msg: "the bundle does not verify"}
	case errors.As(err, &ce):
		fmt.Fprintf(stdout, "FAILED: %s: the log verifies, but %v\n", bundle, ce)
		return exitError{code: 1, msg: "privileged actions without consent"}
	case err != nil:
		return err
	}
	rate := 0.0
	if rep.Duration > 0 {
		rate = float64(rep.Events) / rep.Duration.Seconds()
	}
	fmt.Fprintf(stdout, "OK: the bundle verifies (tenant %s, origin %s)\n", rep.Tenant, rep.Origin)
	fmt.Fprintf(stdout, "  events      seq %d..%d, %d leaves recomputed, %d streams\n", rep.FromSeq, rep.ToSeq, rep.Events, rep.Streams)
	fmt.Fprintf(stdout, "  checkpoint  size %d signed by %s, root matches\n", rep.CheckpointSize, rep.Signer)
	if rep.SinceSize > 0 {
		fmt.Fprintf(stdout, "  consistency the log extends the checkpoint of size %d\n", rep.SinceSize)
	}
	fmt.Fprintf(stdout, "  consent     %d privileged actions backed by a consent in force", rep.PrivilegedActions)
	if rep.PriorConsents > 0 {
		fmt.Fprintf(stdout, " (%d relying on consents before the bundle, proven by inclusion)", rep.PriorConsents)
	}
	fmt.Fprintln(stdout)
	if rep.Opened {
		fmt.Fprintln(stdout, "  opened      personal fields in clear are present (not covered by the hashes)")
	}
	fmt.Fprintf(stdout, "  took        %s (%.0f events/s, %.1f MB/s)\n", rep.Duration.Round(time.Millisecond), rate, float64(rep.Bytes)/1e6/rep.Duration.Seconds())
	return nil
}

package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vigilhq/vigil/domain"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// VerifyOptions select what Verify checks.
type VerifyOptions struct {
	// Tenant limits the Merkle checks to one tenant; "" checks every tenant.
	// The global position sequence is always checked.
	Tenant string
	// Verifiers check checkpoint signatures; it is an error to verify a log
	// that has checkpoints without them.
	Verifiers note.Verifiers
	// Origin is the checkpoint origin prefix the log was written with.
	Origin string
	// Progress, when set, is called now and then with the events checked
	// and the total to check.
	Progress func(done, total int64)
}

// VerifyReport summarises a successful verification.
type VerifyReport struct {
	Positions   int64 // global positions checked, 1..Positions
	Tenants     int
	Events      int64 // leaves recomputed
	Hashes      int64 // stored Merkle hashes compared
	Checkpoints int   // signed checkpoints checked
	Streams     int   // streams whose versions were checked
	Duration    time.Duration
}

// VerifyError says where the log first fails to verify and why.
type VerifyError struct {
	Tenant   string
	Position int64 // 0 when the failure has no event position
	Seq      int64 // -1 when the failure is not tied to a leaf
	Reason   string
}

// Error implements error.
func (e *VerifyError) Error() string {
	s := "verify failed"
	if e.Position > 0 {
		s += fmt.Sprintf(" at position %d", e.Position)
	}
	if e.Tenant != "" {
		s += " (tenant " + e.Tenant
		if e.Seq >= 0 {
			s += fmt.Sprintf(", seq %d", e.Seq)
		}
		s += ")"
	}
	return s + ": " + e.Reason
}

// Verify recomputes the log from the stored rows: the global positions are
// gapless from 1; and for each tenant every leaf hash from the stored fields,
// every stored Merkle hash, each stored checkpoint's root and signature, and
// the version continuity of every stream. It returns a *VerifyError naming
// the first failure, or another error when the store cannot be read.
func Verify(ctx context.Context, store Store, opts VerifyOptions) (VerifyReport, error) {
	start := time.Now()
	var rep VerifyReport
	if opts.Origin == "" {
		opts.Origin = "vigil.local"
	}

	var want int64 = 1
	err := store.ScanPositions(ctx, func(pos int64) error {
		if pos != want {
			return &VerifyError{Position: want, Seq: -1, Reason: fmt.Sprintf("global position %d is missing (next stored is %d)", want, pos)}
		}
		want++
		return nil
	})
	if err != nil {
		return rep, err
	}
	rep.Positions = want - 1

	tenants := []string{opts.Tenant}
	if opts.Tenant == "" {
		if tenants, err = store.Tenants(ctx); err != nil {
			return rep, err
		}
	}
	var total int64
	sizes := make([]int64, len(tenants))
	for i, t := range tenants {
		if sizes[i], err = store.TreeSize(ctx, t); err != nil {
			return rep, err
		}
		total += sizes[i]
	}
	for i, t := range tenants {
		if err := verifyTenant(ctx, store, t, sizes[i], opts, &rep, total); err != nil {
			return rep, err
		}
		rep.Tenants++
	}
	if opts.Progress != nil {
		opts.Progress(rep.Events, total)
	}
	rep.Duration = time.Since(start)
	return rep, nil
}

type hashBatch struct {
	hashes []tlog.Hash
	first  int64
	err    error
}

func verifyTenant(ctx context.Context, store Store, tenant string, size int64, opts VerifyOptions, rep *VerifyReport, total int64) error {
	cps, err := store.Checkpoints(ctx, tenant)
	if err != nil {
		return err
	}
	if len(cps) > 0 && opts.Verifiers == nil {
		return fmt.Errorf("verify %s: the log has signed checkpoints and no verifier key was given", tenant)
	}
	for _, c := range cps {
		if c.Size > size {
			return &VerifyError{Tenant: tenant, Seq: -1, Reason: fmt.Sprintf("checkpoint of size %d is beyond the log's %d leaves", c.Size, size)}
		}
	}

	// Stream the stored hashes beside the events, in batches, from a second
	// connection.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hashes := make(chan hashBatch, 8)
	go func() {
		defer close(hashes)
		const n = 4096
		b := hashBatch{hashes: make([]tlog.Hash, 0, n)}
		err := store.ScanHashes(ctx, tenant, func(index int64, h tlog.Hash) error {
			if index != b.first+int64(len(b.hashes)) {
				return &VerifyError{Tenant: tenant, Seq: -1, Reason: fmt.Sprintf("stored Merkle hash index %d is missing", b.first+int64(len(b.hashes)))}
			}
			b.hashes = append(b.hashes, h)
			if len(b.hashes) == n {
				select {
				case hashes <- b:
				case <-ctx.Done():
					return ctx.Err()
				}
				b = hashBatch{hashes: make([]tlog.Hash, 0, n), first: index + 1}
			}
			return nil
		})
		if err != nil {
			b.err = err
		}
		select {
		case hashes <- b:
		case <-ctx.Done():
		}
	}()
	var (
		cur     hashBatch
		curOff  int
		stored  int64
		hashEOF bool
	)
	nextHash := func() (tlog.Hash, bool, error) {
		for curOff == len(cur.hashes) {
			if cur.err != nil {
				return tlog.Hash{}, false, cur.err
			}
			if hashEOF {
				return tlog.Hash{}, false, nil
			}
			b, ok := <-hashes
			if !ok {
				hashEOF = true
				continue
			}
			cur, curOff = b, 0
		}
		h := cur.hashes[curOff]
		curOff++
		stored++
		return h, true, nil
	}

	var (
		f        Frontier
		buf      = make([]byte, 0, 4096)
		computed = make([]tlog.Hash, 0, 64)
		versions = map[string]int64{}
		cpi      = 0
		seq      int64
	)
	checkCheckpoints := func(pos int64) error {
		for cpi < len(cps) && cps[cpi].Size == f.Size() {
			c := cps[cpi]
			root := f.Root()
			fail := func(why string) error {
				return &VerifyError{Tenant: tenant, Position: pos, Seq: c.Size - 1, Reason: fmt.Sprintf("checkpoint of size %d: %s", c.Size, why)}
			}
			if c.Root != root {
				return fail("stored root does not match the recomputed tree")
			}
			p, err := OpenCheckpoint(c.Note, opts.Verifiers)
			if err != nil {
				return fail(err.Error())
			}
			if p.Size != c.Size || p.Root != root {
				return fail("signed note does not match the recomputed tree")
			}
			if want := Origin(opts.Origin, tenant); p.Origin != want {
				return fail(fmt.Sprintf("signed origin %q, want %q", p.Origin, want))
			}
			rep.Checkpoints++
			cpi++
		}
		return nil
	}
	if err := checkCheckpoints(0); err != nil {
		return err
	}
	err = store.ScanLog(ctx, tenant, 0, size, func(e *domain.Event, sealed []byte) error {
		fail := func(format string, args ...any) error {
			return &VerifyError{Tenant: tenant, Position: e.Position, Seq: e.Seq, Reason: fmt.Sprintf(format, args...)}
		}
		if e.Seq != seq {
			return &VerifyError{Tenant: tenant, Position: e.Position, Seq: seq, Reason: fmt.Sprintf("leaf %d is missing (next stored is %d)", seq, e.Seq)}
		}
		buf = AppendLeaf(buf[:0], e, sealed)
		leaf := tlog.RecordHash(buf)
		if leaf != e.LeafHash {
			return fail("event %s does not match its stored leaf hash: the stored event was altered", e.ID)
		}
		computed = f.Append(computed[:0], leaf)
		for i, h := range computed {
			s, ok, err := nextHash()
			if err != nil {
				return err
			}
			if !ok {
				return fail("stored Merkle hashes end before leaf %d", e.Seq)
			}
			if s != h {
				level := i
				return fail("stored Merkle hash at level %d (index %d) does not match the recomputed tree", level, tlog.StoredHashIndex(0, e.Seq)+int64(i))
			}
		}
		if v := versions[e.Stream]; e.Version != v+1 {
			return fail("stream %s jumps from version %d to %d", e.Stream, v, e.Version)
		}
		versions[e.Stream] = e.Version
		seq++
		rep.Events++
		rep.Hashes += int64(len(computed))
		if err := checkCheckpoints(e.Position); err != nil {
			return err
		}
		if opts.Progress != nil && rep.Events%20000 == 0 {
			opts.Progress(rep.Events, total)
		}
		return nil
	})
	if err != nil {
		var ve *VerifyError
		if errors.As(err, &ve) {
			return ve
		}
		return fmt.Errorf("verify %s: %w", tenant, err)
	}
	if seq != size {
		return &VerifyError{Tenant: tenant, Seq: seq, Reason: fmt.Sprintf("the log records %d leaves but only %d events are stored", size, seq)}
	}
	if _, ok, err := nextHash(); err != nil {
		return err
	} else if ok {
		return &VerifyError{Tenant: tenant, Seq: -1, Reason: "stored Merkle hashes go on past the last leaf"}
	}
	if cpi != len(cps) {
		return &VerifyError{Tenant: tenant, Seq: -1, Reason: fmt.Sprintf("checkpoint of size %d was not reached", cps[cpi].Size)}
	}
	rep.Streams += len(versions)
	return nil
}

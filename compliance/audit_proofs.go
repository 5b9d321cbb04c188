package compliance

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"golang.org/x/mod/sumdb/tlog"
)

// InclusionProof proves that the leaf at Seq is in the tenant's tree of
// Size leaves, whose root is Root (tlog.CheckRecord).
type InclusionProof struct {
	Tenant   string      `json:"tenant"`
	Seq      int64       `json:"seq"`
	Size     int64       `json:"size"`
	LeafHash tlog.Hash   `json:"leaf_hash"`
	Root     tlog.Hash   `json:"root"`
	Proof    []tlog.Hash `json:"proof"`
}

// ConsistencyProof proves that the tenant's tree of From leaves is a prefix
// of its tree of To leaves (tlog.CheckTree).
type ConsistencyProof struct {
	Tenant   string      `json:"tenant"`
	From     int64       `json:"from"`
	To       int64       `json:"to"`
	FromRoot tlog.Hash   `json:"from_root"`
	ToRoot   tlog.Hash   `json:"to_root"`
	Proof    []tlog.Hash `json:"proof"`
}

// EventReceipt is what an event's producer keeps to prove later that the event
// is in the log: its leaf hash and place, an inclusion proof to a signed
// checkpoint, and that checkpoint.
type EventReceipt struct {
	EventID    uuid.UUID      `json:"event_id"`
	Tenant     string         `json:"tenant"`
	Stream     string         `json:"stream"`
	Seq        int64          `json:"seq"`
	Position   int64          `json:"position"`
	LeafHash   tlog.Hash      `json:"leaf_hash"`
	Inclusion  InclusionProof `json:"inclusion"`
	Checkpoint string         `json:"checkpoint"` // the signed note
}

// LatestCheckpoint returns tenant's largest signed checkpoint, making the
// first one when the log has events and none yet. It returns an error of
// code not_found when the tenant has no events.
func (a *Auditor) LatestCheckpoint(ctx context.Context, tenant string) (ledger.Checkpoint, error) {
	c, err := a.st.LatestCheckpoint(ctx, tenant)
	if errors.Is(err, domain.ErrNotFound) {
		c, err = a.l.Checkpoint(ctx, tenant)
		if err == nil && c.Size == 0 {
			return c, domain.Errorf(domain.CodeNotFound, "tenant %s has no checkpoint", tenant)
		}
	}
	if err != nil {
		return c, fmt.Errorf("latest checkpoint of %s: %w", tenant, err)
	}
	return c, nil
}

// InclusionProof proves leaf seq in tenant's tree of size leaves; a size
// of 0 means the latest checkpoint's. It returns an error of code invalid
// unless 0 <= seq < size <= the tree's size.
func (a *Auditor) InclusionProof(ctx context.Context, tenant string, seq, size int64) (InclusionProof, error) {
	if size == 0 {
		c, err := a.LatestCheckpoint(ctx, tenant)
		if err != nil {
			return InclusionProof{}, err
		}
		size = c.Size
	}
	if err := a.checkSize(ctx, tenant, size); err != nil {
		return InclusionProof{}, err
	}
	if seq < 0 || seq >= size {
		return InclusionProof{}, domain.Errorf(domain.CodeInvalid, "seq %d is not in a tree of %d leaves", seq, size)
	}
	return a.inclusion(ctx, tenant, seq, size)
}

func (a *Auditor) inclusion(ctx context.Context, tenant string, seq, size int64) (InclusionProof, error) {
	hr := ledger.HashReader{Ctx: ctx, Store: a.st, Tenant: tenant}
	leaf, err := a.st.ReadHashes(ctx, tenant, []int64{tlog.StoredHashIndex(0, seq)})
	if err != nil {
		return InclusionProof{}, fmt.Errorf("inclusion proof: %w", err)
	}
	root, err := tlog.TreeHash(size, hr)
	if err != nil {
		return InclusionProof{}, fmt.Errorf("inclusion proof: %w", err)
	}
	proof, err := tlog.ProveRecord(size, seq, hr)
	if err != nil {
		return InclusionProof{}, fmt.Errorf("inclusion proof: %w", err)
	}
	if proof == nil {
		proof = tlog.RecordProof{}
	}
	return InclusionProof{Tenant: tenant, Seq: seq, Size: size, LeafHash: leaf[0], Root: root, Proof: proof}, nil
}

// ConsistencyProof proves tenant's tree of from leaves a prefix of its tree
// of to leaves; a to of 0 means the latest checkpoint's size. It returns an
// error of code invalid unless 1 <= from <= to <= the tree's size.
func (a *Auditor) ConsistencyProof(ctx context.Context, tenant string, from, to int64) (ConsistencyProof, error) {
	if to == 0 {
		c, err := a.LatestCheckpoint(ctx, tenant)
		if err != nil {
			return ConsistencyProof{}, err
		}
		to = c.Size
	}
	if err := a.checkSize(ctx, tenant, to); err != nil {
		return ConsistencyProof{}, err
	}
	if from < 1 || from > to {
		return ConsistencyProof{}, domain.Errorf(domain.CodeInvalid, "from %d is not between 1 and to %d", from, to)
	}
	hr := ledger.HashReader{Ctx: ctx, Store: a.st, Tenant: tenant}
	fromRoot, err := tlog.TreeHash(from, hr)
	if err != nil {
		return ConsistencyProof{}, fmt.Errorf("consistency proof: %w", err)
	}
	toRoot, err := tlog.TreeHash(to, hr)
	if err != nil {
		return ConsistencyProof{}, fmt.Errorf("consistency proof: %w", err)
	}
	proof := tlog.TreeProof{}
	if from < to {
		if proof, err = tlog.ProveTree(to, from, hr); err != nil {
			return ConsistencyProof{}, fmt.Errorf("consistency proof: %w", err)
		}
	}
	return ConsistencyProof{Tenant: tenant, From: from, To: to, FromRoot: fromRoot, ToRoot: toRoot, Proof: proof}, nil
}

// Receipt returns the receipt of event id in tenant: an inclusion proof to
// the latest checkpoint, made now if the event is newer than it. An event of
// another tenant is not found (code not_found), as is an unknown id.
func (a *Auditor) Receipt(ctx context.Context, tenant string, id uuid.UUID) (EventReceipt, error) {
	e, err := a.st.EventByID(ctx, id)
	if errors.Is(err, domain.ErrNotFound) || (err == nil && e.Tenant != tenant) {
		return EventReceipt{}, domain.Errorf(domain.CodeNotFound, "event %s not found", id)
	}
	if err != nil {
		return EventReceipt{}, fmt.Errorf("receipt of %s: %w", id, err)
	}
	c, err := a.st.LatestCheckpoint(ctx, tenant)
	if errors.Is(err, domain.ErrNotFound) || (err == nil && c.Size <= e.Seq) {
		c, err = a.l.Checkpoint(ctx, tenant)
	}
	if err != nil {
		return EventReceipt{}, fmt.Errorf("receipt of %s: %w", id, err)
	}
	p, err := a.inclusion(ctx, tenant, e.Seq, c.Size)
	if err != nil {
		return EventReceipt{}, err
	}
	if p.Root != c.Root || p.LeafHash != e.LeafHash {
		return EventReceipt{}, fmt.Errorf("receipt of %s: the stored tree disagrees with the checkpoint or the event", id)
	}
	return EventReceipt{EventID: e.ID, Tenant: tenant, Stream: e.Stream, Seq: e.Seq, Position: e.Position, LeafHash: e.LeafHash, Inclusion: p, Checkpoint: string(c.Note)}, nil
}

func (a *Auditor) checkSize(ctx context.Context, tenant string, size int64) error {
	n, err := a.st.TreeSize(ctx, tenant)
	if err != nil {
		return fmt.Errorf("tree size of %s: %w", tenant, err)
	}
	if size < 1 || size > n {
		return domain.Errorf(domain.CodeInvalid, "size %d is not between 1 and the log's %d leaves", size, n)
	}
	return nil
}

package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vigilhq/vigil/domain"
	"golang.org/x/mod/sumdb/note"
)

// The ways a verifier key comes to be pinned, in PinnedKey.How.
const (
	// PinFirst: the key signed the log's first checkpoint.
	PinFirst = "first"
	// PinAdopted: the log had checkpoints before keys were pinned, and the
	// key verifies the latest checkpoint of every tenant.
	PinAdopted = "adopted"
	// PinRotation: the key was added by a signing-key rotation
	// (Ledger.AddSigner), after the change was recorded in every tenant's
	// log under the old key's signature.
	PinRotation = "rotation"
)

// PinnedKey is a checkpoint verifier key the log accepts.
type PinnedKey struct {
	// VerifierKey is the note verifier key ("name+hash+base64").
	VerifierKey string
	// How is PinFirst, PinAdopted or PinRotation.
	How string
	// AddedBy says who or what pinned it, for the operators.
	AddedBy string
	// AddedAt is when it was pinned (set by the store).
	AddedAt time.Time
}

// SignerPins keeps the checkpoint verifier keys a log accepts. Keys are
// only ever added. Implementations are safe for concurrent use, across
// processes too.
type SignerPins interface {
	// PinnedKeys returns the pinned keys, oldest first.
	PinnedKeys(ctx context.Context) ([]PinnedKey, error)
	// PinFirstKey pins k (How PinFirst or PinAdopted) unless a first key
	// is pinned already, atomically against other processes doing the
	// same, and returns the pinned keys afterwards.
	PinFirstKey(ctx context.Context, k PinnedKey) ([]PinnedKey, error)
	// PinKey pins k (a rotation); pinning a pinned key is a no-op.
	PinKey(ctx context.Context, k PinnedKey) error
}

// ErrSignerNotPinned is returned, wrapped with an explanation, when the
// process's checkpoint signing key is not one the log accepts: signing
// with it would fork the log's signatures, so the ledger refuses to.
var ErrSignerNotPinned = errors.New("checkpoint signing key not accepted by this log")

// CheckSigner returns nil when the ledger's signing key may sign this
// log's checkpoints, and an error wrapping ErrSignerNotPinned when it may
// not. With no key pinned yet, it pins the signing key: at once for a log
// without checkpoints, and for an older log only if the key verifies the
// latest checkpoint of every tenant. Without Options.Signers it always
// returns nil. Checkpoint calls it before signing; call it at start to
// refuse early. It is safe for concurrent use.
func (l *Ledger) CheckSigner(ctx context.Context) error {
	if l.opts.Signers == nil || l.signerOK.Load() {
		return nil
	}
	vkey := l.opts.VerifierKey
	pinned, err := l.opts.Signers.PinnedKeys(ctx)
	if err != nil {
		return fmt.Errorf("pinned signing keys: %w", err)
	}
	if !hasFirst(pinned) {
		how, err := l.firstPin(ctx, vkey)
		if err != nil {
			return err
		}
		if pinned, err = l.opts.Signers.PinFirstKey(ctx, PinnedKey{VerifierKey: vkey, How: how, AddedBy: l.opts.SignerDescription}); err != nil {
			return fmt.Errorf("pin signing key: %w", err)
		}
		for _, p := range pinned {
			if p.VerifierKey == vkey {
				l.opts.Logger.Info("checkpoint signing key pinned", "key", vkey, "how", p.How)
			}
		}
	}
	if slices.ContainsFunc(pinned, func(p PinnedKey) bool { return p.VerifierKey == vkey }) {
		l.signerOK.Store(true)
		return nil
	}
	keys := make([]string, len(pinned))
	for i, p := range pinned {
		keys[i] = p.VerifierKey
	}
	return fmt.Errorf("%w: this process signs with %s, but the log accepts only %s; "+
		"signing with another key would fork the log's signatures (vigil verify would fail for good). "+
		"Configure the log's key (VIGIL_SIGNING_KEY_FILE, or VIGIL_DATA_DIR naming the folder that holds it), "+
		"or add this key with 'vigil keys rotate-signing' run with the current one",
		ErrSignerNotPinned, describeKey(vkey), strings.Join(keys, ", "))
}

// firstPin says how vkey may become the first pinned key: PinFirst when no
// tenant has a checkpoint, PinAdopted when it verifies every tenant's latest
// checkpoint; otherwise it returns an error wrapping ErrSignerNotPinned.
func (l *Ledger) firstPin(ctx context.Context, vkey string) (string, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return "", fmt.Errorf("signing key: %w", err)
	}
	tenants, err := l.store.Tenants(ctx)
	if err != nil {
		return "", fmt.Errorf("pin signing key: %w", err)
	}
	how := PinFirst
	for _, t := range tenants {
		cp, err := l.store.LatestCheckpoint(ctx, t)
		if errors.Is(err, domain.ErrNotFound) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("pin signing key: %w", err)
		}
		if _, err := OpenCheckpoint(cp.Note, note.VerifierList(v)); err != nil {
			return "", fmt.Errorf("%w: no signing key is pinned yet, and the latest checkpoint of tenant %s (size %d) "+
				"was not signed by this process's key %s; refusing to sign with a key the log does not know. "+
				"Configure the key that signed the log (VIGIL_SIGNING_KEY_FILE, or VIGIL_DATA_DIR naming the folder that holds it)",
				ErrSignerNotPinned, t, cp.Size, describeKey(vkey))
		}
		how = PinAdopted
	}
	return how, nil
}

func hasFirst(pinned []PinnedKey) bool {
	return slices.ContainsFunc(pinned, func(p PinnedKey) bool { return p.How == PinFirst || p.How == PinAdopted })
}

func describeKey(vkey string) string {
	if vkey == "" {
		return "an unknown key"
	}
	return vkey
}

// AddSigner makes the log accept next, the note verifier key of a new
// checkpoint signing key: it appends a tenant.signing_key_added event to
// every tenant's stream (once: a repeated call skips tenants that have it),
// checkpoints every tenant with the current key, so that the key already
// accepted vouches for the new one in each log, and then pins next. The
// ledger's own key must be pinned (CheckSigner), next must be named after
// the log origin, and the ledger must be running. It returns the number of
// tenants whose log recorded the change, and added false when next was
// pinned already.
func (l *Ledger) AddSigner(ctx context.Context, next string, actor domain.Actor, addedBy string) (tenants int, added bool, err error) {
	if l.opts.Signers == nil {
		return 0, false, errors.New("add signing key: this ledger keeps no pinned keys")
	}
	v, err := note.NewVerifier(strings.TrimSpace(next))
	if err != nil {
		return 0, false, fmt.Errorf("add signing key: %q is not a note verifier key: %w", next, err)
	}
	next = strings.TrimSpace(next)
	if v.Name() != l.opts.Origin {
		return 0, false, fmt.Errorf("add signing key: the key is named %q, the log origin is %q: make the key with 'vigil keys new-signing --log-origin %s'", v.Name(), l.opts.Origin, l.opts.Origin)
	}
	if err := l.CheckSigner(ctx); err != nil {
		return 0, false, fmt.Errorf("add signing key: the new key must be added by a process holding an accepted one: %w", err)
	}
	pinned, err := l.opts.Signers.PinnedKeys(ctx)
	if err != nil {
		return 0, false, fmt.Errorf("add signing key: %w", err)
	}
	if slices.ContainsFunc(pinned, func(p PinnedKey) bool { return p.VerifierKey == next }) {
		return 0, false, nil
	}
	all, err := l.store.Tenants(ctx)
	if err != nil {
		return 0, false, fmt.Errorf("add signing key: %w", err)
	}
	for _, t := range all {
		stream := domain.TenantStream(t)
		evs, err := l.store.ReadStream(ctx, t, stream, 0)
		if err != nil && !errors.Is(err, domain.ErrNotFound) {
			return tenants, false, fmt.Errorf("add signing key: %w", err)
		}
		if recorded(evs, next) {
			tenants++
			continue
		}
		e, err := domain.NewEvent(domain.Meta{Tenant: t, Stream: stream, Actor: actor},
			domain.SigningKeyAdded{VerifierKey: next, SignedBy: l.opts.VerifierKey})
		if err != nil {
			return tenants, false, fmt.Errorf("add signing key: %w", err)
		}
		if _, err := l.Append(ctx, stream, AnyVersion, e); err != nil {
			return tenants, false, fmt.Errorf("add signing key: tenant %s: %w", t, err)
		}
		tenants++
	}
	if err := l.CheckpointAll(ctx); err != nil {
		return tenants, false, fmt.Errorf("add signing key: checkpoint under the current key: %w", err)
	}
	if err := l.opts.Signers.PinKey(ctx, PinnedKey{VerifierKey: next, How: PinRotation, AddedBy: addedBy}); err != nil {
		return tenants, false, fmt.Errorf("add signing key: %w", err)
	}
	l.opts.Logger.Info("checkpoint signing key added", "key", next, "tenants", tenants, "by", addedBy)
	return tenants, true, nil
}

// recorded reports whether evs hold a tenant.signing_key_added for vkey.
func recorded(evs []domain.Event, vkey string) bool {
	for _, e := range evs {
		if e.Type != (domain.SigningKeyAdded{}).EventType() {
			continue
		}
		var k domain.SigningKeyAdded
		if json.Unmarshal(e.Data, &k) == nil && k.VerifierKey == vkey {
			return true
		}
	}
	return false
}

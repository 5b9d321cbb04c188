package ledger

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// ErrCheckpointFork is wrapped by Store.SaveCheckpoint when a checkpoint of
// the same tenant and size but another root is stored already: two signed
// tree heads that disagree are the evidence of a forked or rewritten log,
// never something to drop silently.
var ErrCheckpointFork = errors.New("checkpoint fork: another root is stored for this size")

// Checkpoint is a signed statement of a tenant's Merkle log: its size and
// root hash, in the C2SP tlog-checkpoint form, signed as a note.
type Checkpoint struct {
	Tenant    string
	Size      int64
	Root      tlog.Hash
	Note      []byte // the signed note: checkpoint body, blank line, signatures
	CreatedAt time.Time
}

// Origin returns the checkpoint origin line for tenant under prefix, such as
// "vigil.local/tenant-id". Each tenant's log has its own origin, so that a
// checkpoint of one tenant can never pass for another's.
func Origin(prefix, tenant string) string { return prefix + "/" + tenant }

// CheckpointBody returns the unsigned C2SP checkpoint text:
// origin, size and base64 root hash, each on its own line.
func CheckpointBody(origin string, size int64, root tlog.Hash) string {
	return origin + "\n" + strconv.FormatInt(size, 10) + "\n" + base64.StdEncoding.EncodeToString(root[:]) + "\n"
}

// SignCheckpoint returns the signed note for tenant's tree of the given size
// and root.
func SignCheckpoint(signer note.Signer, origin string, size int64, root tlog.Hash) ([]byte, error) {
	msg, err := note.Sign(&note.Note{Text: CheckpointBody(origin, size, root)}, signer)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	return msg, nil
}

// ParsedCheckpoint is the body of a verified checkpoint note.
type ParsedCheckpoint struct {
	Origin string
	Size   int64
	Root   tlog.Hash
}

// OpenCheckpoint verifies the signature of a checkpoint note with verifiers
// and parses its body. It returns an error when no known key signed it, when
// a signature is bad, or when the body is not a C2SP checkpoint.
func OpenCheckpoint(msg []byte, verifiers note.Verifiers) (ParsedCheckpoint, error) {
	n, err := note.Open(msg, verifiers)
	if err != nil {
		return ParsedCheckpoint{}, fmt.Errorf("checkpoint signature: %w", err)
	}
	return ParseCheckpointBody(n.Text)
}

// ParseCheckpointBody parses the text of a C2SP checkpoint (origin, size,
// base64 root, optional extension lines).
func ParseCheckpointBody(text string) (ParsedCheckpoint, error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 || lines[0] == "" {
		return ParsedCheckpoint{}, fmt.Errorf("checkpoint: want origin, size and root lines")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return ParsedCheckpoint{}, fmt.Errorf("checkpoint: bad size %q", lines[1])
	}
	raw, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(raw) != tlog.HashSize {
		return ParsedCheckpoint{}, fmt.Errorf("checkpoint: bad root hash %q", lines[2])
	}
	var root tlog.Hash
	copy(root[:], raw)
	return ParsedCheckpoint{Origin: lines[0], Size: size, Root: root}, nil
}

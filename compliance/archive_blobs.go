package compliance

import (
	"context"
	"time"
)

// Blobs is the object store archives (and, later, recordings) are kept in:
// a local folder until the S3 issue, S3 afterwards. Keys are slash-separated
// relative paths such as "archives/<tenant>/<guid>.vab". Implementations are
// safe for concurrent use.
type Blobs interface {
	// Put stores data under key, replacing what was there, atomically: a
	// reader sees the old or the new object, never part of one.
	Put(ctx context.Context, key string, data []byte) error
	// Get returns the object under key, an error matching
	// domain.ErrNotFound when there is none.
	Get(ctx context.Context, key string) ([]byte, error)
	// Delete removes the object under key; deleting a missing object is a
	// no-op.
	Delete(ctx context.Context, key string) error
	// Stat describes the object under key, an error matching
	// domain.ErrNotFound when there is none.
	Stat(ctx context.Context, key string) (BlobInfo, error)
}

// BlobInfo describes a stored object.
type BlobInfo struct {
	Key     string
	Size    int64
	ModTime time.Time
}

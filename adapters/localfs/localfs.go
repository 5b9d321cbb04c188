// Package localfs is a blob store in a local folder: retention archives
// (compliance.Blobs) and session recordings (service.RecordingBlobs), the
// embedded default under the data dir when no S3 bucket is configured. Objects are files under
// the root; writes go to a temporary file that is synced and renamed, so that
// a crash leaves the old object or the new one.
package localfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

var (
	_ compliance.Blobs       = (*Store)(nil)
	_ service.RecordingBlobs = (*Store)(nil)
)

// Store keeps objects as files under a root folder. It is safe for
// concurrent use (writes of one key race as renames do: the last wins).
type Store struct {
	root string
}

// New returns a store rooted at dir, creating it (mode 0700) if missing.
func New(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("localfs: empty root folder")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("localfs: %w", err)
	}
	return &Store{root: dir}, nil
}

// Root returns the store's folder.
func (s *Store) Root() string { return s.root }

// path maps a key to a file under the root. It refuses keys that are empty,
// absolute, or climb out of the root.
func (s *Store) path(key string) (string, error) {
	if key == "" || strings.HasPrefix(key, "/") || strings.Contains(key, "\\") || strings.ContainsRune(key, 0) {
		return "", domain.Errorf(domain.CodeInvalid, "blob key %q is not a relative slash-separated path", key)
	}
	for _, part := range strings.Split(key, "/") {
		if part == "" || part == "." || part == ".." || strings.HasPrefix(part, ".tmp-") {
			return "", domain.Errorf(domain.CodeInvalid, "blob key %q has an empty, dot or reserved element", key)
		}
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

// Put implements compliance.Blobs.
func (s *Store) Put(ctx context.Context, key string, data []byte) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, p)
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("put %s: %w", key, werr)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the rename durable where the platform allows
		_ = d.Close()
	}
	return nil
}

// Get implements compliance.Blobs.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &domain.Error{Code: domain.CodeNotFound, Message: "no object " + key, Err: domain.ErrNotFound}
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return b, nil
}

// Delete implements compliance.Blobs.
func (s *Store) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// Stat implements compliance.Blobs.
func (s *Store) Stat(ctx context.Context, key string) (compliance.BlobInfo, error) {
	p, err := s.path(key)
	if err != nil {
		return compliance.BlobInfo{}, err
	}
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return compliance.BlobInfo{}, &domain.Error{Code: domain.CodeNotFound, Message: "no object " + key, Err: domain.ErrNotFound}
	}
	if err != nil {
		return compliance.BlobInfo{}, fmt.Errorf("stat %s: %w", key, err)
	}
	return compliance.BlobInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// PutStream implements service.RecordingBlobs: r is copied to a temporary
// file that is synced and renamed, so that the object appears whole or not
// at all; a failed copy removes the temporary file.
func (s *Store) PutStream(ctx context.Context, key string, r io.Reader, contentType string) (int64, error) {
	p, err := s.path(key)
	if err != nil {
		return 0, err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	tmp := f.Name()
	n, werr := io.Copy(f, ctxReader{ctx, r})
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, p)
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return 0, fmt.Errorf("put %s: %w", key, werr)
	}
	return n, nil
}

// ctxReader stops a copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// GetRange implements service.RecordingBlobs.
func (s *Store) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	if offset < 0 || length == 0 || length < -1 {
		return nil, domain.Errorf(domain.CodeInvalid, "range %d+%d", offset, length)
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &domain.Error{Code: domain.CodeNotFound, Message: "no object " + key, Err: domain.ErrNotFound}
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if length < 0 {
		return f, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(f, length), f}, nil
}

// Package localfs is a blob store in a local folder (compliance.Blobs), used
// for retention archives until the S3 adapter exists. Objects are files under
// the root; writes go to a temporary file that is synced and renamed, so that
// a crash leaves the old object or the new one.
package localfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain"
)

var _ compliance.Blobs = (*Store)(nil)

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

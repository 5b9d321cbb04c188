// Package blobtest is the contract suite of the blob stores: every
// implementation of compliance.Blobs and service.RecordingBlobs runs it.
package blobtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"testing"

	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

// Store is what the suite exercises.
type Store interface {
	compliance.Blobs
	service.RecordingBlobs
}

// Run runs the contract against the store newStore returns (a fresh one per
// call).
func Run(t *testing.T, newStore func(t *testing.T) Store) {
	ctx := context.Background()
	t.Run("put get stat delete", func(t *testing.T) {
		s := newStore(t)
		if err := s.Put(ctx, "archives/t1/a.vab", []byte("hello")); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, "archives/t1/a.vab", []byte("hello, again")); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, "archives/t1/a.vab")
		if err != nil || string(got) != "hello, again" {
			t.Fatalf("get: %q, %v", got, err)
		}
		info, err := s.Stat(ctx, "archives/t1/a.vab")
		if err != nil || info.Size != 12 || info.Key != "archives/t1/a.vab" {
			t.Fatalf("stat: %+v, %v", info, err)
		}
		if err := s.Delete(ctx, "archives/t1/a.vab"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stat(ctx, "archives/t1/a.vab"); !errors.Is(err, domain.ErrNotFound) {
			t.Fatalf("stat after delete: %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, "archives/t1/a.vab"); err != nil {
			t.Fatalf("deleting a missing object: %v, want no error", err)
		}
	})
	t.Run("missing object", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.Get(ctx, "no/such.obj"); !errors.Is(err, domain.ErrNotFound) {
			t.Errorf("get: %v, want ErrNotFound", err)
		}
		if _, err := s.Stat(ctx, "no/such.obj"); !errors.Is(err, domain.ErrNotFound) {
			t.Errorf("stat: %v, want ErrNotFound", err)
		}
		if _, err := s.GetRange(ctx, "no/such.obj", 0, 10); !errors.Is(err, domain.ErrNotFound) {
			t.Errorf("get range: %v, want ErrNotFound", err)
		}
	})
	t.Run("streamed upload and ranged reads", func(t *testing.T) {
		s := newStore(t)
		data := make([]byte, 13<<20+17) // more than two 5 MiB parts
		_, _ = rand.Read(data)
		n, err := s.PutStream(ctx, "rec/t1/s/r.vrec", io.MultiReader(bytes.NewReader(data[:1000]), bytes.NewReader(data[1000:])), "video/webm")
		if err != nil || n != int64(len(data)) {
			t.Fatalf("put stream: %d, %v", n, err)
		}
		info, err := s.Stat(ctx, "rec/t1/s/r.vrec")
		if err != nil || info.Size != int64(len(data)) {
			t.Fatalf("stat: %+v, %v", info, err)
		}
		for _, c := range []struct {
			name        string
			off, length int64
		}{{"whole", 0, -1}, {"head", 0, 100}, {"middle", 5<<20 - 3, 7}, {"tail", int64(len(data)) - 10, -1}, {"one byte", 42, 1}} {
			t.Run(c.name, func(t *testing.T) {
				rc, err := s.GetRange(ctx, "rec/t1/s/r.vrec", c.off, c.length)
				if err != nil {
					t.Fatal(err)
				}
				defer rc.Close()
				got, err := io.ReadAll(rc)
				if err != nil {
					t.Fatal(err)
				}
				end := int64(len(data))
				if c.length > 0 {
					end = c.off + c.length
				}
				if !bytes.Equal(got, data[c.off:end]) {
					t.Fatalf("got %d bytes, not the %d of the range", len(got), end-c.off)
				}
			})
		}
	})
	t.Run("failed stream leaves no object", func(t *testing.T) {
		s := newStore(t)
		boom := errors.New("client went away")
		r := io.MultiReader(bytes.NewReader(make([]byte, 6<<20)), errReader{boom})
		if _, err := s.PutStream(ctx, "rec/t1/s/broken.vrec", r, "video/webm"); !errors.Is(err, boom) {
			t.Fatalf("put stream: %v, want the reader's error", err)
		}
		if _, err := s.Stat(ctx, "rec/t1/s/broken.vrec"); !errors.Is(err, domain.ErrNotFound) {
			t.Fatalf("stat after a failed upload: %v, want ErrNotFound", err)
		}
	})
	t.Run("bad keys", func(t *testing.T) {
		s := newStore(t)
		for _, k := range []string{"", "/abs"} {
			if err := s.Put(ctx, k, []byte("x")); domain.ErrorCode(err) != domain.CodeInvalid {
				t.Errorf("put %q: %v, want invalid", k, err)
			}
		}
	})
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

package s3_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/vigilhq/vigil/adapters/s3"
	"github.com/vigilhq/vigil/adapters/s3/s3test"
	"github.com/vigilhq/vigil/compliance/blobtest"
)

var buckets atomic.Int64

func TestContract(t *testing.T) {
	srv := s3test.Start(t)
	blobtest.Run(t, func(t *testing.T) blobtest.Store {
		s, err := s3.New(context.Background(), s3.Config{Endpoint: srv.Endpoint, AccessKey: s3test.Access, SecretKey: s3test.Secret,
			Bucket: fmt.Sprintf("vigil-test-%d", buckets.Add(1)), Region: "us-east-1", PartSize: 5 << 20})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestWrongCredentialsAreRefused(t *testing.T) {
	srv := s3test.Start(t)
	_, err := s3.New(context.Background(), s3.Config{Endpoint: srv.Endpoint, AccessKey: s3test.Access, SecretKey: "not-the-secret",
		Bucket: "vigil-creds", Region: "us-east-1", MaxRetries: 1})
	if err == nil {
		t.Fatal("New with a wrong secret: no error")
	}
	if !strings.Contains(err.Error(), "signature") && !strings.Contains(strings.ToLower(err.Error()), "denied") {
		t.Logf("refusal: %v", err)
	}
}

func TestBucketIsCreatedOnce(t *testing.T) {
	srv := s3test.Start(t)
	cfg := s3.Config{Endpoint: srv.Endpoint, AccessKey: s3test.Access, SecretKey: s3test.Secret, Bucket: "vigil-once", Region: "us-east-1"}
	for i := 0; i < 2; i++ {
		if _, err := s3.New(context.Background(), cfg); err != nil {
			t.Fatalf("New #%d: %v", i+1, err)
		}
	}
}

// TestObjectsAreLabelledCiphertext: a recording is stored encrypted, so its
// object says application/octet-stream, not the video/webm it was before
// encryption; that media type stays in the user metadata. Archives too.
func TestObjectsAreLabelledCiphertext(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	s, err := s3.New(ctx, s3.Config{Endpoint: srv.Endpoint, AccessKey: s3test.Access, SecretKey: s3test.Secret,
		Bucket: "vigil-content-type", Region: "us-east-1", PartSize: 5 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutStream(ctx, "rec/t1/s/r.vrec", strings.NewReader("ciphertext"), "video/webm; codecs=vp9"); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "archives/t1/s.vra", []byte("ciphertext")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ key, media string }{{"rec/t1/s/r.vrec", "video/webm"}, {"archives/t1/s.vra", ""}} {
		info, err := s.Client().StatObject(ctx, s.Bucket(), c.key, minio.StatObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if info.ContentType != "application/octet-stream" {
			t.Errorf("%s: Content-Type %q, want application/octet-stream", c.key, info.ContentType)
		}
		if got := info.UserMetadata[s3.MediaTypeMeta]; got != c.media {
			t.Errorf("%s: media type metadata %q, want %q (all: %v)", c.key, got, c.media, info.UserMetadata)
		}
	}
}

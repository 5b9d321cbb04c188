// Package s3 is a blob store in an S3-compatible bucket (minio-go): the
// retention archives of compliance.Blobs and the session recordings of
// service.RecordingBlobs. Large objects stream in multipart uploads of a
// fixed part size, so memory does not grow with the object.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

var (
	_ compliance.Blobs       = (*Store)(nil)
	_ service.RecordingBlobs = (*Store)(nil)
)

// DefaultPartSize is the multipart part size: one part is buffered per
// upload, so it bounds an upload's memory.
const DefaultPartSize = 16 << 20

// DefaultMaxRetries bounds the tries of each request (a part, say) before
// an upload gives up.
const DefaultMaxRetries = 4

// Config names the bucket and how to reach it.
type Config struct {
	// Endpoint is host[:port], without a scheme.
	Endpoint  string
	AccessKey string
	SecretKey string
	Bucket    string
	Region    string
	// TLS selects https.
	TLS bool
	// PartSize is the multipart part size (default DefaultPartSize, at
	// least 5 MiB).
	PartSize uint64
	// MaxRetries bounds the tries per request (default DefaultMaxRetries).
	MaxRetries int
	// Transport overrides the HTTP transport (custom CAs); nil uses
	// minio's default.
	Transport http.RoundTripper
}

// Store keeps objects in one bucket. It is safe for concurrent use.
type Store struct {
	c       *minio.Client
	bucket  string
	part    uint64
	retries int
}

// New connects to the bucket, creating it when missing. It returns an
// error when the endpoint is unreachable or refuses the credentials.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errors.New("s3: endpoint and bucket are required")
	}
	if strings.Contains(cfg.Endpoint, "://") {
		return nil, fmt.Errorf("s3: endpoint %q: want host[:port] without a scheme (TLS is a setting)", cfg.Endpoint)
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultPartSize
	}
	if cfg.PartSize < 5<<20 {
		return nil, fmt.Errorf("s3: part size %d: S3 wants at least 5 MiB", cfg.PartSize)
	}
	if cfg.MaxRetries <= 0 {
		cfg.MaxRetries = DefaultMaxRetries
	}
	c, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:      credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:     cfg.TLS,
		Region:     cfg.Region,
		Transport:  cfg.Transport,
		MaxRetries: cfg.MaxRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	s := &Store{c: c, bucket: cfg.Bucket, part: cfg.PartSize, retries: cfg.MaxRetries}
	ok, err := c.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("s3: bucket %s: %w", cfg.Bucket, err)
	}
	if !ok {
		err := c.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region})
		if err != nil && !isCode(err, "BucketAlreadyOwnedByYou", "BucketAlreadyExists") {
			return nil, fmt.Errorf("s3: create bucket %s: %w", cfg.Bucket, err)
		}
	}
	return s, nil
}

// Ping checks that the bucket answers, for readiness.
func (s *Store) Ping(ctx context.Context) error {
	_, err := s.c.BucketExists(ctx, s.bucket)
	return err
}

func isCode(err error, codes ...string) bool {
	code := minio.ToErrorResponse(err).Code
	for _, c := range codes {
		if code == c {
			return true
		}
	}
	return false
}

func notFound(key string) error {
	return &domain.Error{Code: domain.CodeNotFound, Message: "no object " + key, Err: domain.ErrNotFound}
}

func validKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.Contains(key, "//") || strings.ContainsRune(key, 0) {
		return domain.Errorf(domain.CodeInvalid, "blob key %q is not a relative slash-separated path", key)
	}
	return nil
}

// uploadError reports how many tries each request had before the upload
// gave up.
type uploadError struct {
	attempts int
	err      error
}

func (e *uploadError) Error() string { return e.err.Error() }
func (e *uploadError) Unwrap() error { return e.err }

// Attempts returns the tries made of the failing request.
func (e *uploadError) Attempts() int { return e.attempts }

// Put implements compliance.Blobs: a single PUT, which S3 makes atomic.
func (s *Store) Put(ctx context.Context, key string, data []byte) error {
	if err := validKey(key); err != nil {
		return err
	}
	_, err := s.c.PutObject(ctx, s.bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{ContentType: ciphertextType})
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// ciphertextType is the Content-Type of every object: what is stored is
// encrypted, whatever it was before (a browser or a proxy that trusted a
// video/webm label would try to play ciphertext).
const ciphertextType = "application/octet-stream"

// MediaTypeMeta is the user metadata (x-amz-meta-media-type) that keeps a
// recording's declared media type, such as video/webm, beside its
// ciphertext.
const MediaTypeMeta = "Media-Type"

// PutStream implements service.RecordingBlobs: a multipart upload of
// DefaultPartSize parts, each retried up to MaxRetries times; a failed
// upload is aborted so that no part stays behind. S3 makes the object
// visible only when the upload completes. The object's Content-Type is
// application/octet-stream, since it holds ciphertext; contentType, when
// it parses as a media type, is kept as the MediaTypeMeta user metadata.
func (s *Store) PutStream(ctx context.Context, key string, r io.Reader, contentType string) (int64, error) {
	if err := validKey(key); err != nil {
		return 0, err
	}
	opts := minio.PutObjectOptions{ContentType: ciphertextType, PartSize: s.part, DisableContentSha256: true}
	if mt, _, err := mime.ParseMediaType(contentType); err == nil && len(mt) <= 255 {
		opts.UserMetadata = map[string]string{MediaTypeMeta: mt}
	}
	info, err := s.c.PutObject(ctx, s.bucket, key, r, -1, opts)
	if err != nil {
		// minio aborts the multipart upload itself; a second try covers
		// an abort that failed while the server was briefly away.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		_ = s.c.RemoveIncompleteUpload(actx, s.bucket, key)
		cancel()
		return 0, &uploadError{attempts: s.retries, err: fmt.Errorf("put %s: %w", key, err)}
	}
	return info.Size, nil
}

// Get implements compliance.Blobs.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	rc, err := s.GetRange(ctx, key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return b, nil
}

// GetRange implements service.RecordingBlobs.
func (s *Store) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := validKey(key); err != nil {
		return nil, err
	}
	if offset < 0 || length == 0 || length < -1 {
		return nil, domain.Errorf(domain.CodeInvalid, "range %d+%d", offset, length)
	}
	opts := minio.GetObjectOptions{}
	if offset > 0 || length > 0 {
		end := int64(0)
		if length > 0 {
			end = offset + length - 1
		}
		if err := opts.SetRange(offset, end); err != nil {
			return nil, domain.Errorf(domain.CodeInvalid, "range: %v", err)
		}
	}
	// GetObject is lazy: stat first so that a missing object is reported
	// here rather than on the first read.
	if _, err := s.Stat(ctx, key); err != nil {
		return nil, err
	}
	obj, err := s.c.GetObject(ctx, s.bucket, key, opts)
	if err != nil {
		if isCode(err, "NoSuchKey") {
			return nil, notFound(key)
		}
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return obj, nil
}

// Delete implements compliance.Blobs and service.RecordingBlobs; it also
// aborts an unfinished multipart upload of key.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := validKey(key); err != nil {
		return err
	}
	if err := s.c.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil && !isCode(err, "NoSuchKey") {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if err := s.c.RemoveIncompleteUpload(ctx, s.bucket, key); err != nil && !isCode(err, "NoSuchKey", "NoSuchUpload") {
		return fmt.Errorf("delete %s: abort upload: %w", key, err)
	}
	return nil
}

// Stat implements compliance.Blobs.
func (s *Store) Stat(ctx context.Context, key string) (compliance.BlobInfo, error) {
	if err := validKey(key); err != nil {
		return compliance.BlobInfo{}, err
	}
	info, err := s.c.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		if isCode(err, "NoSuchKey", "NotFound") || minio.ToErrorResponse(err).StatusCode == http.StatusNotFound {
			return compliance.BlobInfo{}, notFound(key)
		}
		return compliance.BlobInfo{}, fmt.Errorf("stat %s: %w", key, err)
	}
	return compliance.BlobInfo{Key: key, Size: info.Size, ModTime: info.LastModified}, nil
}

// Client returns the underlying minio client, for benchmarks that compare
// against raw PUT and GET.
func (s *Store) Client() *minio.Client { return s.c }

// Bucket returns the bucket's name.
func (s *Store) Bucket() string { return s.bucket }

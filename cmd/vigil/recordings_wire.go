package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/vigilhq/vigil/adapters/localfs"
	"github.com/vigilhq/vigil/adapters/s3"
	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain/service"
)

// recordingsConfig holds the VIGIL_S3_* and VIGIL_RECORDING_* settings.
type recordingsConfig struct {
	DataDir     string // localfs root is DataDir/blobs when S3Endpoint is empty
	S3Endpoint  string
	S3AccessKey string
	S3SecretKey string
	S3Bucket    string
	S3Region    string
	S3TLS       bool
	MaxSize     int64  // bytes; 0: service.DefaultRecordingMaxSize
	Prefix      string // "": service.DefaultRecordingPrefix
	// Per-tenant overrides.
	TenantMaxSize map[string]int64
	TenantPrefix  map[string]string
}

// blobStore is both ports: archives and recordings.
type blobStore interface {
	compliance.Blobs
	service.RecordingBlobs
}

// newBlobStore returns the S3 store when an endpoint is set, else the
// local folder under the data dir.
func newBlobStore(ctx context.Context, c recordingsConfig) (blobStore, error) {
	if c.S3Endpoint == "" {
		return localfs.New(filepath.Join(c.DataDir, "blobs"))
	}
	s, err := s3.New(ctx, s3.Config{Endpoint: c.S3Endpoint, AccessKey: c.S3AccessKey, SecretKey: c.S3SecretKey,
		Bucket: c.S3Bucket, Region: c.S3Region, TLS: c.S3TLS})
	if err != nil {
		return nil, fmt.Errorf("recordings store: %w", err)
	}
	return s, nil
}

// newRecordings wires the recordings service: keys from the ledger's
// sealer, the index from the PostgreSQL store.
func newRecordings(svc *service.Service, blobs service.RecordingBlobs, keys service.ChunkKeys, index service.RecordingIndex, c recordingsConfig) *service.Recordings {
	return service.NewRecordings(svc, service.RecordingsConfig{Blobs: blobs, Keys: keys, Index: index, MaxSize: c.MaxSize, Prefix: c.Prefix,
		TenantMaxSize: c.TenantMaxSize, TenantPrefix: c.TenantPrefix})
}

// blobStore returns the system's blob store (recordings and retention
// archives), opened on first use.
func (s *system) blobStore(ctx context.Context) (blobStore, error) {
	if s.blobs != nil {
		return s.blobs, nil
	}
	c, err := s.cfg.recordings()
	if err != nil {
		return nil, err
	}
	if s.blobs, err = newBlobStore(ctx, c); err != nil {
		return nil, err
	}
	return s.blobs, nil
}

// recordingsService returns the recordings service over the blob store.
func (s *system) recordingsService(ctx context.Context) (*service.Recordings, error) {
	if s.recs != nil {
		return s.recs, nil
	}
	blobs, err := s.blobStore(ctx)
	if err != nil {
		return nil, err
	}
	c, err := s.cfg.recordings()
	if err != nil {
		return nil, err
	}
	s.recs = newRecordings(s.service, blobs, s.sealer, s.store, c)
	return s.recs, nil
}

package httpapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/vigilhq/vigil/adapters/s3"
	"github.com/vigilhq/vigil/adapters/s3/s3test"
	httpapi "github.com/vigilhq/vigil/api/http"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

// recEnv is env with the recording endpoints over a real S3 server.
type recEnv struct {
	*env
	s3    *s3test.Server
	blobs *s3.Store
	recs  *service.Recordings
	sid   string // a session held by tech
	tech  string // the technician's token
}

func newRecEnv(t *testing.T) *recEnv {
	t.Helper()
	srv := s3test.Start(t)
	e := newEnv(t)
	blobs, err := s3.New(context.Background(), s3.Config{Endpoint: srv.Endpoint, AccessKey: s3test.Access, SecretKey: s3test.Secret,
		Bucket: "vigil-recordings", Region: "us-east-1", PartSize: 5 << 20, MaxRetries: 2})
	if err != nil {
		t.Fatal(err)
	}
	recs := service.NewRecordings(e.svc, service.RecordingsConfig{Blobs: blobs, Keys: e.ledger.Sealer(), Index: e.store, ChunkSize: 256 << 10, MaxSize: 64 << 20})
	api := httptest.NewServer(httpapi.New(httpapi.Options{Service: e.svc, Recordings: recs, MaxBody: 1 << 40}))
	t.Cleanup(api.Close)
	e.srv = api
	g := e.group(nil, nil)
	e.technician(g, "rec@example.com")
	tok := e.token("rec@example.com")
	sid := e.want(e.do("POST", "/v1/sessions", tok, map[string]any{"queue": "shared"}), 201, "").str("id")
	e.want(e.command(e.ingest, sid, map[string]any{"type": "connect_customer", "platform": "windows"}), 200, "")
	e.want(e.command(tok, sid, map[string]any{"type": "pick_up"}), 200, "")
	return &recEnv{env: e, s3: srv, blobs: blobs, recs: recs, sid: sid, tech: tok}
}

// upload sends body as a recording and returns the raw answer.
func (e *recEnv) upload(cred, query string, body io.Reader) (int, []byte) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.srv.URL+"/v1/sessions/"+e.sid+"/recordings"+query, body)
	req.Header.Set("Authorization", "Bearer "+cred)
	req.Header.Set("Content-Type", "video/webm")
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func (e *recEnv) play(cred, id, rng string) (*http.Response, []byte, error) {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.srv.URL+"/v1/recordings/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+cred)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res, b, err
}

func TestRecordingUploadAndPlayback(t *testing.T) {
	e := newRecEnv(t)
	data := make([]byte, 3<<20+12345)
	_, _ = rand.Read(data)
	status, raw := e.upload(e.tech, "?duration_ms=61000", bytes.NewReader(data))
	if status != 201 {
		t.Fatalf("upload: %d %s", status, raw)
	}
	var out service.StoredRecording
	mustJSON(t, raw, &out)
	sum := sha256.Sum256(data)
	if out.Size != int64(len(data)) || out.SHA256 != hex.EncodeToString(sum[:]) || out.ID == "" || len(out.MD5) != 32 {
		t.Fatalf("answer %+v", out)
	}
	evs := e.events(domain.SessionStream(e.sid))
	last := evs[len(evs)-1]
	if last.Type != "session.recording_stored" || !strings.Contains(string(last.Data), `"chunk_root":"`) || !strings.Contains(string(last.Data), `"content_type":"video/webm"`) {
		t.Fatalf("last event %s %s", last.Type, last.Data)
	}

	t.Run("whole", func(t *testing.T) {
		res, got, err := e.play(e.admin, out.ID, "")
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("play: %d %v", res.StatusCode, err)
		}
		if gs := sha256.Sum256(got); gs != sum || !bytes.Equal(got, data) {
			t.Fatal("played bytes differ from the upload")
		}
	})
	t.Run("range", func(t *testing.T) {
		for _, rng := range []struct {
			h          string
			first, end int
		}{{"bytes=100-199", 100, 200}, {"bytes=262140-262150", 262140, 262151}, {"bytes=3145000-", 3145000, len(data)}, {"bytes=-10", len(data) - 10, len(data)}} {
			res, got, err := e.play(e.tech, out.ID, rng.h)
			if err != nil || res.StatusCode != 206 || !bytes.Equal(got, data[rng.first:rng.end]) {
				t.Fatalf("%s: %d, %d bytes, %v", rng.h, res.StatusCode, len(got), err)
			}
		}
		res, _, _ := e.play(e.admin, out.ID, fmt.Sprintf("bytes=%d-", len(data)))
		if res.StatusCode != 416 {
			t.Fatalf("range past the end: %d, want 416", res.StatusCode)
		}
	})
	t.Run("viewed is audited", func(t *testing.T) {
		var views []string
		for _, ev := range e.events(domain.SessionStream(e.sid)) {
			if ev.Type == "session.recording_viewed" {
				views = append(views, string(ev.Actor.Kind)+" "+string(ev.Data))
			}
		}
		if len(views) < 5 || !strings.Contains(strings.Join(views, "\n"), `"range":"bytes=100-199"`) {
			t.Fatalf("recording_viewed events:\n%s", strings.Join(views, "\n"))
		}
	})
	t.Run("ingest key may not play", func(t *testing.T) {
		res, _, _ := e.play(e.ingest, out.ID, "")
		if res.StatusCode != 403 {
			t.Fatalf("ingest playback: %d, want 403", res.StatusCode)
		}
	})
	t.Run("flipped byte", func(t *testing.T) {
		obj := filepath.Join(e.s3.Dir(), "vigil-recordings", filepath.FromSlash(e.objectKey(t, out.ID)))
		for _, c := range []struct {
			name string
			at   int64
		}{{"first chunk", 50}, {"later chunk", 2<<20 + 7}} {
			flip(t, obj, c.at)
			res, got, err := e.play(e.admin, out.ID, "")
			if c.name == "first chunk" {
				if res.StatusCode != 502 || !strings.Contains(string(got), "recording_corrupt") {
					t.Fatalf("%s: %d %s, want 502 recording_corrupt", c.name, res.StatusCode, got)
				}
			} else if err == nil || bytes.Equal(got, data) {
				t.Fatalf("%s: read %d bytes without an error", c.name, len(got))
			} else if !bytes.Equal(got, data[:len(got)]) {
				t.Fatalf("%s: served bytes that differ from the recording", c.name)
			}
			flip(t, obj, c.at)
		}
		if _, got, err := e.play(e.admin, out.ID, ""); err != nil || !bytes.Equal(got, data) {
			t.Fatal("restored object does not play back")
		}
	})
	t.Run("erasure", func(t *testing.T) {
		key := e.objectKey(t, out.ID)
		if err := e.recs.DeleteRecording(context.Background(), e.tenant, e.sid, out.ID, key); err != nil {
			t.Fatal(err)
		}
		if _, err := e.blobs.Stat(context.Background(), key); !errors.Is(err, domain.ErrNotFound) {
			t.Fatalf("object after erasure: %v", err)
		}
		if _, err := e.ledger.Shred(context.Background(), e.tenant, domain.SessionSubject(e.sid)); err != nil {
			t.Fatal(err)
		}
		res, got, _ := e.play(e.admin, out.ID, "")
		if res.StatusCode != 410 {
			t.Fatalf("erased recording: %d %s, want 410", res.StatusCode, got)
		}
	})
}

func TestRecordingFailsWhenS3Dies(t *testing.T) {
	e := newRecEnv(t)
	pr, pw := io.Pipe()
	go func() {
		chunk := make([]byte, 1<<20)
		for i := 0; i < 8; i++ {
			_, _ = rand.Read(chunk)
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		e.s3.Kill() // mid-upload: a part is out, more are coming
		for i := 0; i < 8; i++ {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Close()
	}()
	status, raw := e.upload(e.tech, "", pr)
	if status != 503 || !strings.Contains(string(raw), "storage_unavailable") {
		t.Fatalf("upload with S3 down: %d %s", status, raw)
	}
	evs := e.events(domain.SessionStream(e.sid))
	last := evs[len(evs)-1]
	if last.Type != "session.recording_failed" {
		t.Fatalf("last event %s %s, want recording_failed", last.Type, last.Data)
	}
	for _, ev := range evs {
		if ev.Type == "session.recording_stored" {
			t.Fatal("recording_stored for a failed upload")
		}
	}
	e.s3.Restart()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var objects []string
		for o := range e.blobs.Client().ListObjects(context.Background(), e.blobs.Bucket(), s3ListAll()) {
			if o.Err == nil {
				objects = append(objects, o.Key)
			}
		}
		if len(objects) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stray objects after a failed upload: %v", objects)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func s3ListAll() minio.ListObjectsOptions { return minio.ListObjectsOptions{Recursive: true} }

func mustJSON(t *testing.T, raw []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
}

func (e *recEnv) objectKey(t *testing.T, id string) string {
	t.Helper()
	ref, err := e.store.FindRecording(context.Background(), e.tenant, id)
	if err != nil {
		t.Fatal(err)
	}
	return ref.ObjectKey
}

func flip(t *testing.T, path string, at int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x01
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

package service

import (
	"context"
	"crypto/cipher"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"strings"

	"github.com/vigilhq/vigil/domain"
)

// RecordingBlobs is the object store recordings are kept in. Keys are
// slash-separated relative paths. Implementations are safe for concurrent
// use.
type RecordingBlobs interface {
	// PutStream stores what r yields under key without holding it all in
	// memory, and returns the stored size. The object appears only when
	// the upload completes; a failed upload leaves nothing behind where
	// the store can help it. An error may implement Attempts() int, the
	// tries made before giving up.
	PutStream(ctx context.Context, key string, r io.Reader, contentType string) (int64, error)
	// GetRange returns length bytes of the object from offset (length -1:
	// to the end); an error matching domain.ErrNotFound when it is missing.
	GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	// Delete removes the object; deleting a missing object is a no-op.
	Delete(ctx context.Context, key string) error
}

// ChunkKeys hands out the session data keys recordings are sealed with.
// ledger.Sealer implements it.
type ChunkKeys interface {
	// SubjectAEAD returns subject's data key (created on first use) and its
	// id; an error matching domain.ErrSubjectErased once destroyed.
	SubjectAEAD(ctx context.Context, tenant string, subject domain.Subject) (string, cipher.AEAD, error)
	// AEADByID returns the data key keyID; an error matching
	// domain.ErrSubjectErased once destroyed.
	AEADByID(ctx context.Context, keyID string) (cipher.AEAD, error)
}

// RecordingRef locates a recording: which session it belongs to and where
// its object is.
type RecordingRef struct {
	Tenant, RecordingID, SessionID, ObjectKey string
}

// RecordingIndex maps recording ids to their sessions, written before an
// upload starts so that playback, erasure and cleanup find every object.
type RecordingIndex interface {
	// AddRecording records ref; repeating it is a no-op, and an id of
	// another session in the tenant is a conflict.
	AddRecording(ctx context.Context, ref RecordingRef) error
	// FindRecording returns the recording's ref, domain.ErrNotFound when
	// there is none.
	FindRecording(ctx context.Context, tenant, recordingID string) (RecordingRef, error)
}

// Recording defaults.
const (
	DefaultRecordingChunkSize = 1 << 20
	DefaultRecordingMaxSize   = 4 << 30
	DefaultRecordingPrefix    = "recordings"
	chunkOverhead             = 12 + 16 // nonce and GCM tag
)

// ErrRecordingTooLarge is returned when an upload exceeds its tenant's
// maximum size.
var ErrRecordingTooLarge = errors.New("recording exceeds the maximum size")

// ErrRecordingCorrupt is returned when a stored chunk does not
// authenticate: the object was altered, reordered or truncated.
var ErrRecordingCorrupt = errors.New("recording does not authenticate")

// CodeStorageUnavailable is the code of an upload the object store failed.
const CodeStorageUnavailable = "storage_unavailable"

// RecordingsConfig wires Recordings.
type RecordingsConfig struct {
	Blobs RecordingBlobs
	Keys  ChunkKeys
	Index RecordingIndex
	// ChunkSize is the plaintext size of a sealed chunk (default 1 MiB).
	ChunkSize int
	// MaxSize caps a recording (default 4 GiB); TenantMaxSize overrides it
	// per tenant id.
	MaxSize       int64
	TenantMaxSize map[string]int64
	// Prefix starts every object key (default "recordings");
	// TenantPrefix overrides it per tenant id.
	Prefix       string
	TenantPrefix map[string]string
	Logger       *slog.Logger
}

// Recordings uploads and plays back session recordings: sealed in chunks
// under the session's data key, bound to the log by recording_stored and
// recording_viewed. It is safe for concurrent use.
type Recordings struct {
	svc *Service
	cfg RecordingsConfig
}

// NewRecordings returns the recordings service over svc. It panics without
// Blobs, Keys or Index, which is a wiring mistake.
func NewRecordings(svc *Service, cfg RecordingsConfig) *Recordings {
	if cfg.Blobs == nil || cfg.Keys == nil || cfg.Index == nil {
		panic("service: NewRecordings needs Blobs, Keys and Index")
	}
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = DefaultRecordingChunkSize
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = DefaultRecordingMaxSize
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultRecordingPrefix
	}
	if cfg.Logger == nil {
		cfg.Logger = svc.logger
	}
	return &Recordings{svc: svc, cfg: cfg}
}

func (r *Recordings) maxSize(tenant string) int64 {
	if m, ok := r.cfg.TenantMaxSize[tenant]; ok && m > 0 {
		return m
	}
	return r.cfg.MaxSize
}

func (r *Recordings) objectKey(tenant, guid, id string) string {
	prefix := r.cfg.Prefix
	if p, ok := r.cfg.TenantPrefix[tenant]; ok && p != "" {
		prefix = p
	}
	return strings.Trim(prefix, "/") + "/" + tenant + "/" + guid + "/" + id + ".vrec"
}

func validRecordingID(id string) bool {
	if id == "" || len(id) > 128 || id[0] == '.' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Upload is a recording to store.
type Upload struct {
	// RecordingID names a started recording; empty starts a new one (a
	// technician's upload only).
	RecordingID string
	ContentType string
	DurationMS  int64
	Body        io.Reader
}

// StoredRecording is the answer to an upload.
type StoredRecording struct {
	ID     string `json:"id"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	MD5    string `json:"md5"`
}

var zeroMD5, zeroSHA = strings.Repeat("0", 32), strings.Repeat("0", 64)

// Upload seals and stores a recording of session guid for p (the
// technician holding the session, or an ingest key) and appends
// recording_stored. A storage failure appends recording_failed and returns
// an error of code storage_unavailable; a body over the tenant's maximum
// returns ErrRecordingTooLarge and records nothing, so the upload may be
// retried. Other errors: forbidden, not_found, conflict (the recording is
// stored or failed already), invalid, subject_erased.
func (r *Recordings) Upload(ctx context.Context, p Principal, guid string, up Upload) (StoredRecording, error) {
	s := r.svc
	if err := requireFull(p); err != nil {
		return StoredRecording{}, err
	}
	if !p.Is(RoleTechnician, RoleIngest) {
		return StoredRecording{}, errForbidden("recordings are uploaded by the session's technician or an ingest key")
	}
	if up.ContentType == "" || len(up.ContentType) > 128 {
		return StoredRecording{}, domain.Errorf(domain.CodeInvalid, "a recording needs a Content-Type of at most 128 characters")
	}
	if up.DurationMS < 0 {
		return StoredRecording{}, domain.Errorf(domain.CodeInvalid, "duration must not be negative")
	}
	sess, err := r.session(ctx, p.Tenant, guid)
	if err != nil {
		return StoredRecording{}, err
	}
	if p.Role == RoleTechnician && sess.TechnicianID() != p.TechnicianID {
		return StoredRecording{}, errForbidden("technician %s does not hold session %s", p.TechnicianID, guid)
	}
	id := up.RecordingID
	if id == "" {
		if p.Role != RoleTechnician {
			return StoredRecording{}, domain.Errorf(domain.CodeInvalid, "recording_id is required with an ingest key")
		}
		id = domain.NewEventID().String()
		if _, err := s.SessionCommand(ctx, p, guid, RecordingCmd{Type: "start_recording", RecordingID: id}, [16]byte{}); err != nil {
			return StoredRecording{}, err
		}
		if sess, err = r.session(ctx, p.Tenant, guid); err != nil {
			return StoredRecording{}, err
		}
	} else if !validRecordingID(id) {
		return StoredRecording{}, domain.Errorf(domain.CodeInvalid, "recording id %q: want 1 to 128 letters, digits, '-', '_' or '.'", id)
	}
	// A dry run of the decision: the recording must be running or stopped.
	if _, err := sess.StoreRecording(s.cmd(p, [16]byte{}), domain.RecordingStored{RecordingID: id, Object: "x", MD5: zeroMD5, SHA256: zeroSHA}); err != nil {
		return StoredRecording{}, err
	}
	keyID, aead, err := r.cfg.Keys.SubjectAEAD(ctx, p.Tenant, domain.SessionSubject(guid))
	if err != nil {
		return StoredRecording{}, err
	}
	key := r.objectKey(p.Tenant, guid, id)
	if err := r.cfg.Index.AddRecording(ctx, RecordingRef{Tenant: p.Tenant, RecordingID: id, SessionID: guid, ObjectKey: key}); err != nil {
		return StoredRecording{}, err
	}
	cs := r.cfg.ChunkSize
	enc := newChunkSealer(up.Body, aead, recordingAAD(p.Tenant, guid, id, keyID, cs), cs, r.maxSize(p.Tenant))
	stored, putErr := r.cfg.Blobs.PutStream(ctx, key, enc, up.ContentType)
	if putErr == nil && (!enc.done || stored != enc.out) {
		putErr = fmt.Errorf("stored %d bytes of %d", stored, enc.out)
	}
	if putErr != nil {
		cleanup := context.WithoutCancel(ctx)
		if err := r.cfg.Blobs.Delete(cleanup, key); err != nil {
			r.cfg.Logger.Warn("clean up a failed recording upload", "recording", id, "err", err)
		}
		if enc.srcErr != nil { // the client's fault: nothing to record
			if errors.Is(enc.srcErr, ErrRecordingTooLarge) {
				return StoredRecording{}, fmt.Errorf("recording %s: %w (%d bytes)", id, ErrRecordingTooLarge, r.maxSize(p.Tenant))
			}
			return StoredRecording{}, fmt.Errorf("read recording %s: %w", id, enc.srcErr)
		}
		if ctx.Err() != nil && errors.Is(putErr, ctx.Err()) {
			return StoredRecording{}, fmt.Errorf("upload of recording %s: %w", id, putErr)
		}
		attempts := 1
		var a interface{ Attempts() int }
		if errors.As(putErr, &a) && a.Attempts() > 0 {
			attempts = a.Attempts()
		}
		r.cfg.Logger.Error("recording upload failed", "recording", id, "session", guid, "err", putErr)
		if _, err := r.decide(cleanup, p, guid, func(sess *domain.Session, cmd domain.Cmd) ([]domain.Event, error) {
			return sess.FailRecording(cmd, domain.RecordingFailed{RecordingID: id, Reason: "object store upload failed", Attempts: attempts})
		}); err != nil {
			r.cfg.Logger.Error("record a failed recording", "recording", id, "err", err)
		}
		return StoredRecording{}, &domain.Error{Code: CodeStorageUnavailable, Message: "the recording could not be stored; recording_failed was recorded", Err: putErr}
	}
	out := StoredRecording{ID: id, Size: enc.size, SHA256: hex.EncodeToString(enc.sha.Sum(nil)), MD5: hex.EncodeToString(enc.md5.Sum(nil))}
	root := merkleRoot(enc.leaves)
	_, err = r.decide(ctx, p, guid, func(sess *domain.Session, cmd domain.Cmd) ([]domain.Event, error) {
		return sess.StoreRecording(cmd, domain.RecordingStored{
			RecordingID: id, Object: key, Size: out.Size, MD5: out.MD5, SHA256: out.SHA256, ContentType: up.ContentType,
			ChunkRoot: hex.EncodeToString(root[:]), ChunkSize: cs, KeyID: keyID, DurationMS: up.DurationMS,
		})
	})
	if err != nil {
		// Not in the log, so not stored: remove the object.
		if derr := r.cfg.Blobs.Delete(context.WithoutCancel(ctx), key); derr != nil {
			r.cfg.Logger.Warn("remove an unrecorded recording", "recording", id, "err", derr)
		}
		return StoredRecording{}, err
	}
	return out, nil
}

// session loads a session of tenant, not_found when missing,
// subject_erased once erased.
func (r *Recordings) session(ctx context.Context, tenant, guid string) (*domain.Session, error) {
	sess := domain.NewSession(tenant, guid)
	if err := r.svc.load(ctx, sess); err != nil {
		return nil, err
	}
	if !sess.Exists() {
		return nil, errNotFound("session %s does not exist", guid)
	}
	if sess.Erased() {
		return nil, &domain.Error{Code: domain.CodeSubjectErased, Message: "session " + guid + " was erased", Err: domain.ErrSubjectErased}
	}
	return sess, nil
}

// decide loads session guid, runs f and appends what it decides, retrying
// on version clashes.
func (r *Recordings) decide(ctx context.Context, p Principal, guid string, f func(*domain.Session, domain.Cmd) ([]domain.Event, error)) ([]domain.Event, error) {
	return retry(ctx, func() ([]domain.Event, error) {
		sess, err := r.session(ctx, p.Tenant, guid)
		if err != nil {
			return nil, err
		}
		events, decided := f(sess, r.svc.cmd(p, [16]byte{}))
		return r.svc.commit(ctx, sess, events, decided)
	})
}

// Playback is a verified plaintext range of a recording being read.
type Playback struct {
	RecordingID string
	ContentType string
	// Size is the whole recording's plaintext size; First and Last the
	// served range (Last < First for an empty recording).
	Size, First, Last int64
	// Body yields the range; a chunk that does not authenticate ends it
	// with an error matching ErrRecordingCorrupt. The caller closes it.
	Body io.ReadCloser
}

// Open starts the playback of bytes first..last (inclusive; last -1: to the
// end; first -1: the last "last" bytes, as an HTTP suffix range) of
// recording id for p (admin, auditor, or the technician holding the
// session) and appends recording_viewed with the range. The first chunk is
// verified before Open returns. Errors: forbidden; not_found; invalid for an
// unsatisfiable range; subject_erased for an erased session.
func (r *Recordings) Open(ctx context.Context, p Principal, id string, first, last int64) (*Playback, error) {
	if err := requireFull(p); err != nil {
		return nil, err
	}
	if !p.Is(RoleAdmin, RoleAuditor, RoleTechnician) {
		return nil, errForbidden("recordings are played back by admins, auditors and the session's technician")
	}
	ref, err := r.cfg.Index.FindRecording(ctx, p.Tenant, id)
	if err != nil {
		return nil, err
	}
	sess, err := r.session(ctx, p.Tenant, ref.SessionID)
	if err != nil {
		return nil, err
	}
	if p.Role == RoleTechnician && sess.TechnicianID() != p.TechnicianID {
		return nil, errForbidden("technician %s does not hold the session of recording %s", p.TechnicianID, id)
	}
	st, err := r.storedEvent(ctx, p.Tenant, ref.SessionID, id)
	if err != nil {
		return nil, err
	}
	size := st.Size
	switch {
	case first < 0 && last > 0:
		first, last = max(size-last, 0), size-1
	case first < 0:
		return nil, domain.Errorf(domain.CodeInvalid, "unsatisfiable range")
	case last < 0 || last >= size:
		last = size - 1
	}
	if size > 0 && (first > last || first >= size) || size == 0 && first > 0 {
		return nil, &domain.Error{Code: domain.CodeInvalid, Message: fmt.Sprintf("range %d-%d is outside the recording's %d bytes", first, last, size), Err: errUnsatisfiable}
	}
	var aead cipher.AEAD
	if st.KeyID != "" {
		aead, err = r.cfg.Keys.AEADByID(ctx, st.KeyID)
	} else {
		_, aead, err = r.cfg.Keys.SubjectAEAD(ctx, p.Tenant, domain.SessionSubject(ref.SessionID))
	}
	if errors.Is(err, domain.ErrSubjectErased) {
		return nil, &domain.Error{Code: domain.CodeSubjectErased, Message: "recording " + id + " was erased", Err: domain.ErrSubjectErased}
	}
	if err != nil {
		return nil, err
	}
	cs := int64(st.ChunkSize)
	if cs <= 0 {
		return nil, fmt.Errorf("recording %s: no chunk size in recording_stored", id)
	}
	n := max((size+cs-1)/cs, 1)
	fc, lc := int64(0), int64(0)
	if size > 0 {
		fc, lc = first/cs, last/cs
	}
	off := fc * (cs + chunkOverhead)
	length := storedEnd(lc, n, size, cs) - off
	body, err := r.cfg.Blobs.GetRange(ctx, st.Object, off, length)
	if err != nil {
		return nil, fmt.Errorf("recording %s: %w", id, err)
	}
	rd := &chunkOpener{src: body, aead: aead, aad: recordingAAD(p.Tenant, ref.SessionID, id, st.KeyID, int(cs)), cs: cs,
		index: fc, last: lc, total: n, size: size, skip: first - fc*cs, remain: last - first + 1, id: id}
	if size == 0 {
		rd.remain = 0
	}
	if err := rd.fill(); err != nil { // verify the first chunk before any byte is promised
		body.Close()
		return nil, err
	}
	rangeText := ""
	if size > 0 {
		rangeText = fmt.Sprintf("bytes=%d-%d", first, last)
	}
	if _, err := r.decide(ctx, p, ref.SessionID, func(sess *domain.Session, cmd domain.Cmd) ([]domain.Event, error) {
		evs, err := sess.ViewRecording(cmd, id)
		if err == nil && len(evs) == 1 && rangeText != "" {
			// The domain records the viewer; the range is the API's to add.
			// Data stays compact JSON with sorted keys, as the log wants.
			evs[0].Data, err = json.Marshal(map[string]string{"recording_id": id, "range": rangeText})
		}
		return evs, err
	}); err != nil {
		body.Close()
		return nil, err
	}
	return &Playback{RecordingID: id, ContentType: contentTypeOf(st), Size: size, First: first, Last: last, Body: rd}, nil
}

var errUnsatisfiable = errors.New("range not satisfiable")

// ErrRangeNotSatisfiable matches Open's error for a range outside the
// recording.
var ErrRangeNotSatisfiable = errUnsatisfiable

func contentTypeOf(st domain.RecordingStored) string {
	if st.ContentType == "" {
		return "application/octet-stream"
	}
	return st.ContentType
}

// storedEnd is the stored offset just past chunk i of n.
func storedEnd(i, n, size, cs int64) int64 {
	if i < n-1 {
		return (i + 1) * (cs + chunkOverhead)
	}
	return size + n*chunkOverhead
}

// storedEvent returns the recording_stored of recording id in session guid.
func (r *Recordings) storedEvent(ctx context.Context, tenant, guid, id string) (domain.RecordingStored, error) {
	evs, err := r.svc.events(ctx, tenant, domain.SessionStream(guid))
	if err != nil {
		return domain.RecordingStored{}, err
	}
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type != (domain.RecordingStored{}).EventType() {
			continue
		}
		var st domain.RecordingStored
		if err := json.Unmarshal(evs[i].Data, &st); err != nil {
			return domain.RecordingStored{}, fmt.Errorf("decode recording_stored: %w", err)
		}
		if st.RecordingID == id {
			return st, nil
		}
	}
	return domain.RecordingStored{}, errNotFound("recording %s is not stored", id)
}

// DeleteRecording deletes a recording's object, for erasure: it is a
// compliance.RecordingDeleter. The session's data key, destroyed by the
// same erasure, made the object unreadable already.
func (r *Recordings) DeleteRecording(ctx context.Context, tenant, guid, recordingID, objectKey string) error {
	if objectKey == "" {
		ref, err := r.cfg.Index.FindRecording(ctx, tenant, recordingID)
		if errors.Is(err, domain.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		objectKey = ref.ObjectKey
	}
	return r.cfg.Blobs.Delete(ctx, objectKey)
}

// recordingAAD binds every chunk to its tenant, session, recording, key
// and chunk size; the chunk index and final flag follow per chunk.
func recordingAAD(tenant, guid, id, keyID string, cs int) []byte {
	b := []byte("vigil/recording/v1\n")
	for _, s := range []string{tenant, guid, id, keyID} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return binary.BigEndian.AppendUint32(b, uint32(cs))
}

func chunkAAD(base []byte, index int64, final bool) []byte {
	b := binary.BigEndian.AppendUint64(base[:len(base):len(base)], uint64(index))
	if final {
		return append(b, 1)
	}
	return append(b, 0)
}

// chunkSealer turns a plaintext stream into the stored form: chunks of cs
// plaintext bytes, each nonce || AES-GCM(chunk), the last flagged final. It
// hashes the plaintext on the way and keeps one Merkle leaf per chunk. It
// holds two chunks of memory whatever the size.
type chunkSealer struct {
	src      io.Reader
	aead     cipher.AEAD
	aad      []byte
	cs       int
	max      int64
	cur, nxt []byte
	curN     int
	started  bool
	index    int64
	buf      []byte // sealed chunk being handed out
	pos      int
	done     bool
	srcErr   error
	sha, md5 hash.Hash
	leaves   [][32]byte
	size     int64
	out      int64
}

func newChunkSealer(src io.Reader, aead cipher.AEAD, aad []byte, cs int, maxSize int64) *chunkSealer {
	return &chunkSealer{src: src, aead: aead, aad: aad, cs: cs, max: maxSize,
		cur: make([]byte, cs), nxt: make([]byte, cs), buf: make([]byte, 0, cs+chunkOverhead),
		sha: sha256.New(), md5: md5.New()}
}

func (c *chunkSealer) readChunk(b []byte) (int, error) {
	n, err := io.ReadFull(c.src, b)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = nil
	}
	if err != nil {
		c.srcErr = err
		return n, err
	}
	c.size += int64(n)
	if c.size > c.max {
		c.srcErr = ErrRecordingTooLarge
		return n, c.srcErr
	}
	return n, nil
}

func (c *chunkSealer) Read(p []byte) (int, error) {
	for c.pos >= len(c.buf) {
		if c.done {
			return 0, io.EOF
		}
		if err := c.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.buf[c.pos:])
	c.pos += n
	c.out += int64(n)
	return n, nil
}

// next seals the following chunk into buf. A chunk is final when it is
// short or when the stream ends right after it.
func (c *chunkSealer) next() error {
	if !c.started {
		c.started = true
		n, err := c.readChunk(c.cur)
		if err != nil {
			return err
		}
		c.curN = n
	}
	final := c.curN < c.cs
	nxtN := 0
	if !final {
		n, err := c.readChunk(c.nxt)
		if err != nil {
			return err
		}
		nxtN = n
		final = n == 0
	}
	chunk := c.cur[:c.curN]
	c.sha.Write(chunk)
	c.md5.Write(chunk)
	c.leaves = append(c.leaves, leafHash(chunk))
	nonce := c.buf[:12]
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	c.buf = c.aead.Seal(nonce, nonce, chunk, chunkAAD(c.aad, c.index, final))
	c.pos = 0
	c.index++
	c.cur, c.nxt, c.curN = c.nxt, c.cur, nxtN
	c.done = final
	return nil
}

// chunkOpener reads stored chunks index..last of total, opens and checks
// each, and yields the plaintext range.
type chunkOpener struct {
	src         io.ReadCloser
	aead        cipher.AEAD
	aad         []byte
	cs          int64
	index, last int64
	total, size int64
	skip        int64 // plaintext bytes to drop from the first chunk
	remain      int64 // plaintext bytes still to yield
	plain       []byte
	pos         int
	stored      []byte
	err         error
	id          string
}

func (o *chunkOpener) fill() error {
	if o.err != nil {
		return o.err
	}
	if o.index > o.last {
		return io.EOF
	}
	want := o.cs + chunkOverhead
	if o.index == o.total-1 {
		want = o.size - o.index*o.cs + chunkOverhead
	}
	if int64(cap(o.stored)) < want {
		o.stored = make([]byte, want)
	}
	b := o.stored[:want]
	if _, err := io.ReadFull(o.src, b); err != nil {
		o.err = fmt.Errorf("recording %s chunk %d: %w: the object is truncated (%v)", o.id, o.index, ErrRecordingCorrupt, err)
		return o.err
	}
	plain, err := o.aead.Open(o.plain[:0], b[:12], b[12:], chunkAAD(o.aad, o.index, o.index == o.total-1))
	if err != nil {
		o.err = fmt.Errorf("recording %s chunk %d: %w", o.id, o.index, ErrRecordingCorrupt)
		return o.err
	}
	o.plain, o.pos = plain, int(o.skip)
	o.skip = 0
	o.index++
	return nil
}

func (o *chunkOpener) Read(p []byte) (int, error) {
	for o.remain > 0 && o.pos >= len(o.plain) {
		if err := o.fill(); err != nil {
			return 0, err
		}
	}
	if o.remain <= 0 {
		return 0, io.EOF
	}
	b := o.plain[o.pos:]
	if int64(len(b)) > o.remain {
		b = b[:o.remain]
	}
	n := copy(p, b)
	o.pos += n
	o.remain -= int64(n)
	return n, nil
}

func (o *chunkOpener) Close() error { return o.src.Close() }

// leafHash and merkleRoot follow RFC 6962, as the log's tree does.
func leafHash(b []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(b)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func merkleRoot(leaves [][32]byte) [32]byte {
	switch len(leaves) {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return leaves[0]
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	l, r := merkleRoot(leaves[:k]), merkleRoot(leaves[k:])
	return sha256.Sum256(append(append([]byte{1}, l[:]...), r[:]...))
}

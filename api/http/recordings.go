package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

// RecordingsService is what the recording endpoints (upload, playback)
// need; *service.Recordings implements it.
type RecordingsService interface {
	Upload(ctx context.Context, p service.Principal, guid string, up service.Upload) (service.StoredRecording, error)
	Open(ctx context.Context, p service.Principal, id string, first, last int64) (*service.Playback, error)
}

// RecordingUpload reports whether r is a recording upload, whose body is
// limited by the tenant's maximum recording size instead of the API's
// MaxBody: New must not wrap such a body in its MaxBytesReader.
func RecordingUpload(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/v1/sessions/") && strings.HasSuffix(r.URL.Path, "/recordings")
}

// recordingsRoutes registers the recording endpoints when opts.Recordings
// is set.
func (a *api) recordingsRoutes(mux *http.ServeMux) {
	if a.recordings == nil {
		return
	}
	mux.HandleFunc("POST /v1/sessions/{id}/recordings", a.streaming(a.uploadRecording))
	mux.HandleFunc("GET /v1/recordings/{id}", a.streaming(a.playRecording))
}

// streaming is authed without the Idempotency-Key handling, which buffers
// bodies and answers: a recording is idempotent by its recording id.
func (a *api) streaming(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del("Idempotency-Key")
		a.authed(func(w http.ResponseWriter, r *http.Request) error {
			if err := h(w, r); err != nil {
				a.recordingError(w, r, err)
			}
			return nil
		})(w, r)
	}
}

func (a *api) recordingError(w http.ResponseWriter, r *http.Request, err error) {
	var body errorBody
	switch {
	case errors.Is(err, service.ErrRecordingTooLarge):
		body.Error.Code, body.Error.Message = codeTooLarge, "the recording is larger than the tenant's maximum"
		writeJSON(w, http.StatusRequestEntityTooLarge, body)
	case errors.Is(err, service.ErrRangeNotSatisfiable):
		body.Error.Code, body.Error.Message = "range_not_satisfiable", domain.ErrorMessage(err)
		writeJSON(w, http.StatusRequestedRangeNotSatisfiable, body)
	case errors.Is(err, service.ErrRecordingCorrupt):
		a.log.Error("recording does not authenticate", "path", r.URL.Path, "err", err)
		body.Error.Code, body.Error.Message = "recording_corrupt", "the stored recording does not authenticate; nothing of it is served"
		writeJSON(w, http.StatusBadGateway, body)
	case domain.ErrorCode(err) == service.CodeStorageUnavailable:
		a.log.Error("recording upload failed", "path", r.URL.Path, "err", err)
		body.Error.Code, body.Error.Message = service.CodeStorageUnavailable, domain.ErrorMessage(err)
		writeJSON(w, http.StatusServiceUnavailable, body)
	default:
		a.writeError(w, r, err)
	}
}

func (a *api) uploadRecording(w http.ResponseWriter, r *http.Request) error {
	guid, err := pathID(r, "id")
	if err != nil {
		return err
	}
	q := r.URL.Query()
	recID := q.Get("recording_id")
	if recID != "" {
		if err := service.CheckID("recording_id", recID); err != nil {
			return err
		}
	}
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		return err
	}
	var dur int64
	if v := firstOf(q.Get("duration_ms"), r.Header.Get("Vigil-Duration-Ms")); v != "" {
		d, err := strconv.ParseInt(v, 10, 64)
		if err != nil || d < 0 {
			return domain.Errorf(domain.CodeInvalid, "duration_ms %q: want a non-negative integer", v)
		}
		dur = d
	}
	// A recording may take long to arrive, but not forever: past the
	// server's ReadTimeout it must keep up the minimum rate.
	body := newMinRateBody(w, r.Body, a.limits)
	out, err := a.recordings.Upload(r.Context(), principal(r), guid, service.Upload{
		RecordingID: recID, ContentType: r.Header.Get("Content-Type"), DurationMS: dur, Body: body,
	})
	if err != nil {
		switch {
		case body.err == nil:
		case bodyTimedOut(body.err):
			return &domain.Error{Code: codeRequestTimeout, Message: fmt.Sprintf(
				"the recording arrived slower than %d bytes per second over %s", a.limits.RecordingMinRate, a.limits.RecordingRateWindow)}
		case !errors.Is(err, service.ErrRecordingTooLarge) && domain.ErrorCode(err) == domain.CodeInternal:
			// The client's body broke off: nothing of ours failed.
			return domain.Errorf(domain.CodeInvalid, "the recording body could not be read to its end")
		}
		return err
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func firstOf(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

// parseRange reads a single "bytes=" range; (0, -1) when there is none.
func parseRange(h string) (first, last int64, err error) {
	if h == "" {
		return 0, -1, nil
	}
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, 0, fmt.Errorf("%w: only one bytes= range is served", service.ErrRangeNotSatisfiable)
	}
	a, b, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, 0, fmt.Errorf("%w: malformed range", service.ErrRangeNotSatisfiable)
	}
	if a == "" { // suffix: the last b bytes
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 {
			return 0, 0, fmt.Errorf("%w: malformed range", service.ErrRangeNotSatisfiable)
		}
		return -1, n, nil
	}
	first, err = strconv.ParseInt(a, 10, 64)
	if err != nil || first < 0 {
		return 0, 0, fmt.Errorf("%w: malformed range", service.ErrRangeNotSatisfiable)
	}
	last = -1
	if b != "" {
		if last, err = strconv.ParseInt(b, 10, 64); err != nil || last < first {
			return 0, 0, fmt.Errorf("%w: malformed range", service.ErrRangeNotSatisfiable)
		}
	}
	return first, last, nil
}

func (a *api) playRecording(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	first, last, err := parseRange(r.Header.Get("Range"))
	if err != nil {
		return err
	}
	pb, err := a.recordings.Open(r.Context(), principal(r), id, first, last)
	if err != nil {
		return err
	}
	defer pb.Body.Close()
	h := w.Header()
	h.Set("Content-Type", pb.ContentType)
	h.Set("Accept-Ranges", "bytes")
	h.Set("Cache-Control", "no-store")
	n := pb.Last - pb.First + 1
	if pb.Size == 0 {
		n = 0
	}
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	status := http.StatusOK
	if r.Header.Get("Range") != "" {
		status = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", pb.First, pb.Last, pb.Size))
	}
	w.WriteHeader(status)
	if _, err := io.Copy(w, pb.Body); err != nil {
		// Headers are gone: cut the connection so that the client sees a
		// short body rather than data that did not authenticate.
		a.log.Error("recording playback stopped", "recording", pb.RecordingID, "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

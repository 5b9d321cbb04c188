package httpapi

import "net/http"

// RecordingsService is what the recording endpoints (upload, playback)
// need. Filled in by the recordings work (issue 6).
type RecordingsService interface{}

// recordingsRoutes registers the recording endpoints when opts.Recordings
// is set.
func (a *api) recordingsRoutes(mux *http.ServeMux) {}

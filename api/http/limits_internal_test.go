package httpapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestWriteDeadlineMovesWithProgress: a response that keeps moving
// outlives the server's WriteTimeout, and http.Flusher still works through
// the limiter's writer.
func TestWriteDeadlineMovesWithProgress(t *testing.T) {
	const timeout = time.Second
	lim := newLimiter(Limits{MaxUnauthenticated: 4, WriteTimeout: timeout})
	stream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		for i := range 3 {
			if i > 0 {
				time.Sleep(timeout * 6 / 10)
			}
			_, _ = io.WriteString(w, strings.Repeat("x", 1000)+"\n")
			w.(http.Flusher).Flush()
		}
	})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { lim.serve(w, r, stream) }))
	srv.Config.WriteTimeout = timeout
	srv.Start()
	defer srv.Close()
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || strings.Count(string(b), "\n") != 3 {
		t.Fatalf("streamed %d lines past the write timeout: %v", strings.Count(string(b), "\n"), err)
	}
	if len(lim.slots) != 0 {
		t.Errorf("%d unauthenticated slots still held after the request", len(lim.slots))
	}
}

package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// otherRoute is the route label of requests no pattern of the API's mux
// matches (404s, 405s, redirects to a cleaned path): one label for every
// path a scanner may try, so that the series stay bounded.
const otherRoute = "other"

// HTTPMetrics counts the API's requests and times them, by route and
// status: vigil_http_requests_total, vigil_http_request_duration_seconds
// and vigil_http_requests_in_flight. The route is the ServeMux pattern that
// serves the request, such as "GET /v1/sessions/{guid}", never the raw
// path, so the number of series is bounded by the routes and statuses. It
// is a prometheus.Collector; register it once. It is safe for concurrent
// use. A nil *HTTPMetrics measures nothing.
type HTTPMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
}

var _ prometheus.Collector = (*HTTPMetrics)(nil)

// NewHTTPMetrics returns unregistered HTTP metrics.
func NewHTTPMetrics() *HTTPMetrics {
	return &HTTPMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_http_requests_total",
			Help: "HTTP requests answered, by route (the ServeMux pattern; other when none matched) and status code.",
		}, []string{"route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "vigil_http_request_duration_seconds",
			Help: "Time from a request's arrival to its handler's return, by route and status code (recordings stream for long: their route has its own series).",
			// 1 ms to 60 s: API calls sit in the low buckets, exports and
			// recordings in the high ones.
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route", "status"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_http_requests_in_flight",
			Help: "HTTP requests being served.",
		}),
	}
}

// Describe implements prometheus.Collector.
func (m *HTTPMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.requests.Describe(ch)
	m.duration.Describe(ch)
	m.inFlight.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *HTTPMetrics) Collect(ch chan<- prometheus.Metric) {
	m.requests.Collect(ch)
	m.duration.Collect(ch)
	m.inFlight.Collect(ch)
}

// wrap measures next, the handler in front of mux. The route is the
// pattern mux.Handler names for the request, looked up before next runs:
// the wrappers between here and mux copy the request, so the r.Pattern the
// mux sets is not visible from outside, and a request refused before it
// reaches the mux (a full limiter) still counts under its route.
func (m *HTTPMetrics) wrap(mux *http.ServeMux, next http.Handler) http.Handler {
	if m == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		route := otherRoute
		if _, pattern := mux.Handler(r); pattern != "" {
			route = pattern
		}
		m.inFlight.Inc()
		sw := &statusWriter{ResponseWriter: w}
		returned := false
		defer func() {
			m.inFlight.Dec()
			status := sw.status
			switch {
			case !returned:
				// The handler panicked: net/http drops the connection.
				status = http.StatusInternalServerError
			case status == 0:
				status = http.StatusOK // nothing written: net/http answers 200
			}
			code := strconv.Itoa(status)
			m.requests.WithLabelValues(route, code).Inc()
			m.duration.WithLabelValues(route, code).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(sw, r)
		returned = true
	})
}

// statusWriter remembers the status a handler answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 && status >= 200 {
		w.status = status // 1xx are interim; the final status follows
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Flush keeps http.Flusher working through the wrapper (CSV reports
// stream).
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

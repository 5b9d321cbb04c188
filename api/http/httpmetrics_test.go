package httpapi_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	httpapi "github.com/vigilhq/vigil/api/http"
)

// TestHTTPMetricsByRoute serves real requests and reads /metrics: requests
// are counted and timed under the ServeMux pattern that served them, never
// the raw path, with everything unmatched as "other"; the exposition
// passes promtool when it is installed.
func TestHTTPMetricsByRoute(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := httpapi.NewHTTPMetrics()
	reg.MustRegister(m)
	reports := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("file") == "missing.csv" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("a,b\n"))
	})
	srv := httptest.NewServer(httpapi.New(httpapi.Options{
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), HTTPMetrics: m, Reports: reports}))
	defer srv.Close()

	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/healthz", 200},
		{"GET", "/v1/reports/sessions.csv", 200},
		{"GET", "/v1/reports/logins.csv", 200},
		{"GET", "/v1/reports/missing.csv", 404},
		{"GET", "/no/such/path/1", 404},
		{"GET", "/no/such/path/2", 404},
		{"DELETE", "/healthz", 405},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Fatalf("%s %s: %d, want %d", c.method, c.path, resp.StatusCode, c.status)
		}
	}

	counts := map[string]float64{}
	histograms := map[string]uint64{}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			key := labels["route"] + " " + labels["status"]
			switch f.GetName() {
			case "vigil_http_requests_total":
				counts[key] = mt.GetCounter().GetValue()
			case "vigil_http_request_duration_seconds":
				histograms[key] = mt.GetHistogram().GetSampleCount()
			}
		}
	}
	want := map[string]float64{
		"GET /healthz 200":           1,
		"GET /v1/reports/{file} 200": 2,
		"GET /v1/reports/{file} 404": 1,
		"other 404":                  2,
		"other 405":                  1,
	}
	if diff := cmp.Diff(want, counts); diff != "" {
		t.Errorf("vigil_http_requests_total (-want +got):\n%s", diff)
	}
	wantHist := map[string]uint64{}
	for k, v := range want {
		wantHist[k] = uint64(v)
	}
	if diff := cmp.Diff(wantHist, histograms); diff != "" {
		t.Errorf("vigil_http_request_duration_seconds counts (-want +got):\n%s", diff)
	}

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), "/no/such/path") || strings.Contains(string(body), "sessions.csv") {
		t.Errorf("a raw path became a label:\n%s", body)
	}
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Log("promtool not installed: exposition not linted")
		return
	}
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

package projections

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	lagDesc = prometheus.NewDesc("vigil_projection_lag_events",
		"Events committed to the log that the projection has not applied yet (head minus position).", []string{"projection"}, nil)
	positionDesc = prometheus.NewDesc("vigil_projection_position",
		"The last log position the projection applied.", []string{"projection"}, nil)
	headDesc = prometheus.NewDesc("vigil_ledger_head_position",
		"The highest committed position of the log.", nil, nil)
	quarantinedDesc = prometheus.NewDesc("vigil_projection_quarantined_events",
		"Events the projection could not apply and set aside in projection_quarantine since its last rebuild; alert when above 0.",
		[]string{"projection"}, nil)
)

// Describe implements prometheus.Collector.
func (r *Runner) Describe(ch chan<- *prometheus.Desc) {
	ch <- lagDesc
	ch <- positionDesc
	ch <- headDesc
	ch <- quarantinedDesc
}

// Collect implements prometheus.Collector: it reads the positions at
// scrape time, so the numbers are never stale.
func (r *Runner) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := r.Status(ctx)
	if err != nil {
		r.logger.Warn("projection metrics", "err", err)
		return
	}
	for i, s := range st {
		if i == 0 {
			ch <- prometheus.MustNewConstMetric(headDesc, prometheus.GaugeValue, float64(s.Head))
		}
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(s.Lag), s.Name)
		ch <- prometheus.MustNewConstMetric(positionDesc, prometheus.GaugeValue, float64(s.Position), s.Name)
		ch <- prometheus.MustNewConstMetric(quarantinedDesc, prometheus.GaugeValue, float64(s.Quarantined), s.Name)
	}
}

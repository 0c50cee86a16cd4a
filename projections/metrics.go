package projections

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// lagDesc describes stanceledger_projection_lag_records.
var lagDesc = prometheus.NewDesc("stanceledger_projection_lag_records",
	"Log positions between the log head and the projection's checkpoint (records, for a log with dense positions such as the embedded store).",
	[]string{"projection"}, nil)

// lagCollector computes every projection's lag when scraped.
type lagCollector struct {
	r    *Runner
	head func() uint64
}

func (c lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- lagDesc }

func (c lagCollector) Collect(ch chan<- prometheus.Metric) {
	// Read the checkpoints first: the head only grows, so the lag is never negative.
	hs := c.r.Health()
	head := c.head()
	for _, h := range hs {
		lag := uint64(0)
		if head > h.Applied.Commit {
			lag = head - h.Applied.Commit
		}
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(lag), h.Name)
	}
}

// RegisterLag registers on reg the gauge stanceledger_projection_lag_records
// {projection}: head() minus the projection's applied commit, computed at every
// scrape. head returns the commit number of the last record in the log (for the
// embedded store, Stats().LastPosition); the figure counts records only where
// positions are dense. The applied position itself is the runner's
// stanceledger_projection_applied_commit (RunnerOptions.Registerer).
func (r *Runner) RegisterLag(reg prometheus.Registerer, head func() uint64) error {
	if err := reg.Register(lagCollector{r: r, head: head}); err != nil {
		return fmt.Errorf("projections: register lag metric: %w", err)
	}
	return nil
}

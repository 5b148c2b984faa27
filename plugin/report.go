package plugin

import "context"

// Shower is implemented by a plugin with something to show in the admin console: the console
// answers SHOW <NAME>, NAME being the plugin's name ([plugins.<name>]) in any case, with the
// rows Show returns (a SHOW object of the console's own, such as POOLS, comes first). The
// console adds a first column, pool, naming the [pools.<db>.plugins] block of each instance
// (NULL for a top-level one), and lists the rows of every instance of the plugin, top-level
// first; so Show returns the same columns every time.
//
// The name is the plugin's own rather than one Show chooses, so two plugins cannot claim the
// same object and an operator finds it without reading the plugin's code. Values are text (nil
// for NULL), as in Rows everywhere else; Rows.Tag is ignored (the tag is SHOW). ctx carries a
// deadline: Show runs on an admin session and should not keep it waiting on a slow service.
type Shower interface {
	Show(ctx context.Context) (*Rows, error)
}

// Collector is implemented by a plugin that exports metrics: sluice's Prometheus exporter
// calls Collect at each scrape and serves what it returns next to its own metrics, with one
// more label, pool, naming the [pools.<db>.plugins] block of the instance ("" for a top-level
// one, which Prometheus treats as no label).
//
// Metrics are plain values rather than Prometheus collectors so that a plugin needs no
// Prometheus library (nor its version) to export them, and so that a plugin that is not Go
// code (Wasm, webhook) could be given the same interface. The exporter turns them into
// Prometheus's constant metrics at each scrape; it keeps nothing between scrapes, so a counter
// is the plugin's own running total. ctx carries the scrape's deadline.
type Collector interface {
	Collect(ctx context.Context) []Metric
}

// MetricKind is a metric's Prometheus type.
type MetricKind uint8

const (
	// Gauge is a value that goes up and down: entries, lag, a state as 0 or 1.
	Gauge MetricKind = iota
	// Counter is a running total that only goes up while the plugin lives.
	Counter
)

// Metric is one sample. Every sample of one Name must have the same Help, Kind and label names
// (the values differ); a family that does not is reported as an error at the scrape, the other
// metrics are still served.
type Metric struct {
	// Name follows Prometheus's conventions: sluice_<plugin>_<what>, with _total for a
	// counter ("sluice_cache_hits_total").
	Name  string
	Help  string
	Kind  MetricKind
	Value float64
	// Labels are label names and values ("reason": "in a transaction"). The name "pool" is
	// the exporter's.
	Labels map[string]string
}

package cache

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicepg/sluice/plugin"
)

// usageEvery is how long a count of the entries in Redis is shown before the next one: the
// count is a SCAN of every entry, too much for each scrape of a large cache.
const usageEvery = 10 * time.Second

// usage is a count of the entries in Redis and of their bytes, and when it was made.
type usage struct {
	entries, bytes int64
	at             time.Time
	err            error
}

// entryUsage returns the last count of the entries, counting again when it is older than
// usageEvery. ok is false when Redis could not be counted.
func (p *Cache) entryUsage(ctx context.Context) (entries, bytes int64, ok bool) {
	if p.st == nil {
		return 0, 0, false
	}
	p.umu.Lock()
	defer p.umu.Unlock()
	if time.Since(p.usage.at) >= usageEvery {
		e, b, err := p.st.usage(ctx)
		p.usage = usage{entries: e, bytes: b, at: time.Now(), err: err}
		if err != nil {
			p.log.Warn("cache: count the entries in Redis", "err", err)
		}
	}
	return p.usage.entries, p.usage.bytes, p.usage.err == nil
}

// reading is one thing the cache reports: a row of SHOW CACHE and, when metric is set, a
// Prometheus sample. Both are made from one list of readings so that they always agree.
type reading struct {
	name   string   // SHOW CACHE's name column
	labels []string // label names, in the order of values
	values []string // label values: SHOW CACHE's detail column, joined by ", "
	value  float64
	text   string // SHOW CACHE's value when it is not value's number (a state, a ratio)
	null   bool   // not known: SHOW CACHE shows NULL, and there is no sample

	metric string // the sample's name after sluice_cache_; "" for SHOW CACHE only
	help   string
	kind   plugin.MetricKind
}

// readings are the cache's counters and states as SHOW CACHE lists them and the exporter
// serves them; entries and bytes are the last count of Redis, unknown unless counted.
func (s Stats) readings(entries, bytes int64, counted bool) []reading {
	count := func(name string, v int64, metric, help string) reading {
		return reading{name: name, value: float64(v), metric: metric, help: help, kind: plugin.Counter}
	}
	gauge := func(name string, v float64, metric, help string) reading {
		return reading{name: name, value: v, metric: metric, help: help, kind: plugin.Gauge}
	}
	flag := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	ratio := 0.0
	if s.Hits+s.Misses > 0 {
		ratio = float64(s.Hits) / float64(s.Hits+s.Misses)
	}
	r := []reading{
		count("hits", s.Hits, "hits_total", "Lookups answered from the cache"),
		count("misses", s.Misses, "misses_total", "Lookups the cache could not answer, sent to Postgres"),
		func() reading {
			g := gauge("hit_ratio", ratio, "hit_ratio", "Hits over lookups since the cache started")
			g.text = strconv.FormatFloat(ratio, 'f', 4, 64)
			return g
		}(),
		count("fills", s.Fills, "fills_total", "Results of misses stored in Redis"),
		count("fills_skipped", s.FillsSkipped, "fills_skipped_total",
			"Results of misses not stored: an error, over max_entry_size, or Redis not serving"),
		{name: "entries", value: float64(entries), null: !counted, metric: "entries", kind: plugin.Gauge,
			help: "Entries in Redis under the prefix, of every sluice sharing it (counted at most every 10s)"},
		{name: "bytes", value: float64(bytes), null: !counted, metric: "bytes", kind: plugin.Gauge,
			help: "Bytes of the values of those entries"},
	}
	for _, k := range []struct {
		kind string
		n    int64
	}{{"table", s.Bumps}, {"epoch", s.EpochBumps}} {
		c := count("invalidations", k.n, "invalidations_total",
			"Invalidations written: a table's generation bumped (kind table) or the epoch renewed (kind epoch)")
		c.labels, c.values = []string{"kind"}, []string{k.kind}
		r = append(r, c)
	}
	r = append(r,
		count("invalidation_failures", s.BumpFailures, "invalidation_failures_total",
			"Invalidations that could not be written to Redis (the cache stops serving until the epoch is renewed)"),
	)
	for _, why := range slices.Sorted(maps.Keys(s.Bypass)) {
		c := count("bypass", s.Bypass[why], "bypass_total", "Queries sent to Postgres without a lookup, by reason")
		c.labels, c.values = []string{"reason"}, []string{why}
		r = append(r, c)
	}
	for _, w := range []struct {
		scope, outcome string
		n              int64
	}{{"process", "hit", s.ProcessWaitHits}, {"process", "fallback", s.ProcessWaitMisses},
		{"redis", "hit", s.LeaseWaitHits}, {"redis", "fallback", s.LeaseWaitMisses}} {
		c := count("stampede_waits", w.n, "stampede_waits_total",
			"Misses that waited for another client's fill of the same key, in this process or through a Redis lease, by outcome")
		c.labels, c.values = []string{"scope", "outcome"}, []string{w.scope, w.outcome}
		r = append(r, c)
	}
	r = append(r,
		count("leases", s.Leases, "leases_total", "Misses that took the fill lease of their key in Redis"),
		count("redis_errors", s.RedisErrors, "redis_errors_total", "Redis calls that failed or timed out"),
		func() reading {
			g := gauge("breaker", flag(s.Breaker == "open"), "breaker_open",
				"1 while the circuit breaker keeps Redis out after an error")
			g.text = s.Breaker
			return g
		}(),
		func() reading {
			g := gauge("serving", flag(s.Serving), "serving", "1 while entries may be read and stored")
			g.text = "yes"
			if !s.Serving {
				g.text = "no: " + s.NotServingWhy
			}
			return g
		}(),
	)
	if w := s.WAL; w != nil {
		g := gauge("wal", flag(w.Streaming), "wal_streaming", "1 while this sluice streams the WAL listener's slot")
		g.text = w.State
		consumed := gauge("wal_consumed", flag(w.Consumed), "wal_consumed",
			"1 while some sluice streams the WAL listener's slot, caught up (its heartbeat in Redis says so)")
		consumed.text = "no"
		if w.Consumed {
			consumed.text = "yes"
		}
		r = append(r, g, reading{name: "wal_slot", text: w.Slot}, consumed,
			count("wal_invalidations", s.WALEvents, "wal_invalidations_total",
				"Table generations bumped by this sluice's WAL listener (part of the invalidations of kind table)"),
			gauge("wal_lag_bytes", float64(w.LagBytes), "wal_lag_bytes",
				"Bytes of WAL the consuming sluice has not handled yet, as of the server's last message"),
			gauge("wal_lag_seconds", w.Lag.Seconds(), "wal_lag_seconds",
				"How long the consuming sluice has been behind the server's WAL; 0 when caught up"),
		)
	}
	if m := s.Mirror; m != nil {
		st := reading{name: "mirror", text: m.State, value: flag(m.State == "streaming"), metric: "mirror_streaming",
			kind: plugin.Gauge, help: "1 while the row mirror streams"}
		r = append(r, st,
			count("mirror_transactions", m.Txns, "mirror_transactions_total", "Transactions the row mirror applied to Redis"),
			count("mirror_loads", m.Loads, "mirror_loads_total", "Snapshots the row mirror loaded into Redis"),
		)
		for _, t := range m.Tables {
			per := func(rd reading) reading {
				rd.labels, rd.values = []string{"table"}, []string{t.Name}
				return rd
			}
			last := reading{name: "mirror_last_change", null: t.LastChange.IsZero()}
			if !last.null {
				last.text = t.LastChange.UTC().Format(time.RFC3339Nano)
			}
			r = append(r,
				per(gauge("mirror_lag_bytes", float64(m.LagBytes), "mirror_lag_bytes",
					"Bytes of WAL the row mirror has not applied to Redis yet (the tables share one stream)")),
				per(gauge("mirror_lag_seconds", m.Lag.Seconds(), "mirror_lag_seconds",
					"How long the row mirror has been behind the server's WAL; 0 when caught up")),
				per(count("mirror_changes", t.Changes, "mirror_changes_total",
					"Row changes and truncations the row mirror applied to Redis")),
				per(last),
			)
		}
	}
	return r
}

// Show answers SHOW CACHE in the admin console.
func (p *Cache) Show(ctx context.Context) (*plugin.Rows, error) { return showRows(p.report(ctx)), nil }

// Collect exports the readings as sluice_cache_* metrics.
func (p *Cache) Collect(ctx context.Context) []plugin.Metric { return metrics(p.report(ctx)) }

// showRows are SHOW CACHE's rows: one per reading, name, detail (the reason, the table ...)
// and value.
func showRows(rds []reading) *plugin.Rows {
	rows := &plugin.Rows{Columns: []string{"name", "detail", "value"}}
	for _, rd := range rds {
		var detail, value *string
		if len(rd.values) > 0 {
			d := strings.Join(rd.values, ", ")
			detail = &d
		}
		if !rd.null {
			v := rd.text
			if v == "" {
				v = strconv.FormatFloat(rd.value, 'f', -1, 64)
			}
			value = &v
		}
		rows.Rows = append(rows.Rows, []*string{&rd.name, detail, value})
	}
	return rows
}

// metrics are the samples of the readings that have a metric and a known value.
func metrics(rds []reading) []plugin.Metric {
	var ms []plugin.Metric
	for _, rd := range rds {
		if rd.metric == "" || rd.null {
			continue
		}
		m := plugin.Metric{Name: "sluice_cache_" + rd.metric, Help: rd.help, Kind: rd.kind, Value: rd.value}
		if len(rd.labels) > 0 {
			m.Labels = map[string]string{}
			for i, l := range rd.labels {
				m.Labels[l] = rd.values[i]
			}
		}
		ms = append(ms, m)
	}
	return ms
}

// report takes the readings now.
func (p *Cache) report(ctx context.Context) []reading {
	if !p.enabled() {
		return []reading{{name: "enabled", text: "no"}}
	}
	entries, bytes, ok := p.entryUsage(ctx)
	return p.Stats().readings(entries, bytes, ok)
}

var (
	_ plugin.Shower    = (*Cache)(nil)
	_ plugin.Collector = (*Cache)(nil)
)

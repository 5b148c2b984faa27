package cache

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/sluicepg/sluice/plugin"
)

// TestLagMeter: the lag is the WAL between the server's end and the stream's position, and
// the time since the stream was last caught up; a stream at the server's end has none.
func TestLagMeter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	type step struct {
		server, handled pglogrepl.LSN // 0: no message of that kind
		at              time.Duration // after t0
		wantBytes       int64
		wantBehind      time.Duration
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"no message yet", []step{{at: time.Second}}},
		{"caught up", []step{{server: 100, handled: 100, at: time.Second}}},
		{"behind since the last catch-up", []step{
			{server: 100, handled: 100, at: time.Second},
			{server: 250, at: 2 * time.Second, wantBytes: 150, wantBehind: time.Second},
			{handled: 200, at: 3 * time.Second, wantBytes: 50, wantBehind: 2 * time.Second},
		}},
		{"catching up ends the lag", []step{
			{server: 250, at: time.Second, wantBytes: 250, wantBehind: time.Second},
			{handled: 250, at: 2 * time.Second},
			{server: 260, at: 5 * time.Second, wantBytes: 10, wantBehind: 3 * time.Second},
		}},
		{"positions never move back", []step{
			{server: 300, handled: 300, at: time.Second},
			{server: 200, handled: 100, at: 2 * time.Second},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l lagMeter
			l.start(t0)
			for i, s := range tt.steps {
				now := t0.Add(s.at)
				if s.server != 0 {
					l.server(s.server, now)
				}
				if s.handled != 0 {
					l.handled(s.handled, now)
				}
				if b, d := l.lag(now); b != s.wantBytes || d != s.wantBehind {
					t.Errorf("step %d: lag %d bytes, %s; want %d, %s", i, b, d, s.wantBytes, s.wantBehind)
				}
			}
		})
	}
}

// TestReadings: SHOW CACHE's rows and the metrics come from one list of readings: every
// counter, a row per bypass reason and per mirrored table, text states where SHOW has them,
// NULL (and no metric) for a count of Redis that failed.
func TestReadings(t *testing.T) {
	s := Stats{Hits: 3, Misses: 1, Fills: 1, Bumps: 2, EpochBumps: 1, Breaker: "open",
		Bypass:        map[string]int64{"in a transaction": 2, "nocache hint": 1},
		LeaseWaitHits: 4, Serving: false, NotServingWhy: "redis restarted",
		WAL: &WALStats{Slot: "sluice_cache_x", State: "streaming", Streaming: true, Consumed: true, LagBytes: 10, Lag: 1500 * time.Millisecond},
		Mirror: &MirrorStats{State: "streaming", LagBytes: 7, Tables: []MirrorTableStats{
			{Name: "a", Changes: 5, LastChange: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}, {Name: "b"}}}}
	rds := s.readings(0, 0, false)

	rows := showRows(rds)
	if got := strings.Join(rows.Columns, ","); got != "name,detail,value" {
		t.Fatalf("columns %s", got)
	}
	show := map[string]string{} // "name/detail" -> value, "NULL" for none
	for _, r := range rows.Rows {
		k, v := *r[0]+"/", "NULL"
		if r[1] != nil {
			k += *r[1]
		}
		if r[2] != nil {
			v = *r[2]
		}
		show[k] = v
	}
	for k, want := range map[string]string{
		"hits/": "3", "misses/": "1", "hit_ratio/": "0.7500", "entries/": "NULL", "bytes/": "NULL",
		"invalidations/table": "2", "invalidations/epoch": "1",
		"bypass/in a transaction": "2", "bypass/nocache hint": "1",
		"stampede_waits/redis, hit": "4", "breaker/": "open", "serving/": "no: redis restarted",
		"wal/": "streaming", "wal_slot/": "sluice_cache_x", "wal_consumed/": "yes", "wal_lag_bytes/": "10", "wal_lag_seconds/": "1.5",
		"mirror/": "streaming", "mirror_lag_bytes/a": "7", "mirror_lag_bytes/b": "7",
		"mirror_changes/a": "5", "mirror_last_change/a": "2024-01-02T03:04:05Z", "mirror_last_change/b": "NULL",
	} {
		if got, ok := show[k]; !ok || got != want {
			t.Errorf("SHOW row %s = %q (present %v), want %q", k, got, ok, want)
		}
	}

	samples := map[string]plugin.Metric{} // name and labels, sorted -> sample
	for _, m := range metrics(rds) {
		key := m.Name
		for _, l := range []string{"kind", "outcome", "reason", "scope", "table"} {
			if v, ok := m.Labels[l]; ok {
				key += "," + l + "=" + v
			}
		}
		if _, dup := samples[key]; dup {
			t.Errorf("two samples %s", key)
		}
		samples[key] = m
	}
	for k, want := range map[string]float64{
		"sluice_cache_hits_total": 3, "sluice_cache_hit_ratio": 0.75,
		"sluice_cache_bypass_total,reason=in a transaction":           2,
		"sluice_cache_invalidations_total,kind=epoch":                 1,
		"sluice_cache_stampede_waits_total,outcome=hit,scope=redis":   4,
		"sluice_cache_stampede_waits_total,outcome=hit,scope=process": 0,
		"sluice_cache_breaker_open":                                   1, "sluice_cache_serving": 0, "sluice_cache_wal_lag_bytes": 10, "sluice_cache_wal_consumed": 1,
		"sluice_cache_mirror_lag_bytes,table=b": 7, "sluice_cache_mirror_changes_total,table=a": 5,
	} {
		if m, ok := samples[k]; !ok || m.Value != want {
			t.Errorf("metric %s = %v (present %v), want %v", k, m.Value, ok, want)
		}
	}
	for _, absent := range []string{"sluice_cache_entries", "sluice_cache_bytes"} {
		if _, ok := samples[absent]; ok {
			t.Errorf("metric %s present without a count of Redis", absent)
		}
	}
	if samples["sluice_cache_hits_total"].Kind != plugin.Counter || samples["sluice_cache_hit_ratio"].Kind != plugin.Gauge {
		t.Errorf("hits_total must be a counter and hit_ratio a gauge")
	}
}

package main

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicepg/sluice/internal/config"
	"github.com/sluicepg/sluice/internal/hooks"
	_ "github.com/sluicepg/sluice/plugins/standard"
)

// TestSectionFlags: every section runs by default; -bench picks some; unknown names are errors.
func TestSectionFlags(t *testing.T) {
	o, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.sections, []string{sectionPooler, sectionCache, sectionSharding}) {
		t.Errorf("default sections %q", o.sections)
	}
	if !slices.Equal(o.cacheTargets, cacheTargets) || !slices.Equal(o.cacheWorkloads, []string{"other-table", "same-table"}) {
		t.Errorf("cache targets %q, workloads %q", o.cacheTargets, o.cacheWorkloads)
	}
	if o, err = parseFlags([]string{"-bench", "cache, sharding"}); err != nil || !slices.Equal(o.sections, []string{sectionCache, sectionSharding}) {
		t.Errorf("-bench cache,sharding: %q, %v", o.sections, err)
	}
	for _, args := range [][]string{{"-bench", "cash"}, {"-cache-targets", "pgcat"}, {"-cache-workloads", "all"},
		{"-cache-modes", "fast"}, {"-shard-modes", "copy"}, {"-cache-writes", "101"}} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

// loadConfig writes text to a file and loads it as sluice does.
func loadConfig(t *testing.T, text string) *config.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sluice.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, warnings, err := config.Load(path)
	if err != nil {
		t.Fatalf("sluice rejects the bench config: %v\n%s", err, text)
	}
	for _, w := range warnings {
		t.Errorf("warning: %v", w)
	}
	return cfg
}

// TestCacheTargetConfig: sluice-cache's configuration sets up the cache plugin, with the hit
// ratio logged, and sluice without it no plugin.
func TestCacheTargetConfig(t *testing.T) {
	o, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	o.redisAddr = "127.0.0.1:1" // nothing listens: the plugin starts anyway, serving nothing
	for _, name := range []string{targetSluice, targetSluiceCache} {
		cfg := loadConfig(t, sluiceConfig(16432, "127.0.0.1", 15432, o, name, authMD5))
		set, err := hooks.Load(cfg, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var got []string
		for _, in := range set.Instances() {
			got = append(got, in.Name)
		}
		set.Cleanup(nil)
		want := []string(nil)
		if name == targetSluiceCache {
			want = []string{"cache"}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: plugins %q, want %q", name, got, want)
		}
	}
	if c := cacheConfig(o); !strings.Contains(c, `stats_interval = "500ms"`) || !strings.Contains(c, `redis = "127.0.0.1:1"`) {
		t.Errorf("cache config:\n%s", c)
	}
}

// TestShardingConfig: the sharding section's sluice has a pool of three shards keyed on
// items.id and a plain pool of the unsharded database.
func TestShardingConfig(t *testing.T) {
	o, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := loadConfig(t, shardingConfig(16432, "127.0.0.1", 15432, o))
	sh := cfg.Pool(poolSharded)
	if sh == nil || len(sh.Shards) != shardCount || sh.AutomaticShardingKey != "items.id" ||
		sh.ShardingFunction != "pg_bigint_hash" || sh.CrossShardReads != config.CrossShardAll {
		t.Fatalf("sharded pool %+v", sh)
	}
	for i, s := range sh.Shards {
		if s.Database != shardDatabase(i) {
			t.Errorf("shard %d: database %q", i, s.Database)
		}
	}
	un := cfg.Pool(poolUnsharded)
	if un == nil || len(un.Shards) != 1 || un.AutomaticShardingKey != "" || un.QueryParserEnabled {
		t.Fatalf("unsharded pool %+v", un)
	}
	// The unsharded pool's servers are shared out over the shards: as many backends in all.
	for p, size := range map[*config.Pool]int{sh: (o.poolSize + shardCount - 1) / shardCount, un: o.poolSize} {
		if u := p.User(benchUser); u == nil || u.PoolSize != size {
			t.Errorf("pool user %+v, want pool_size %d", u, size)
		}
	}
}

// TestPgpoolConfig: the settings issue 6 asks for, and every path under the bench's directory.
func TestPgpoolConfig(t *testing.T) {
	c := pgpoolConfig("/tmp/x", 9999, 9998, "127.0.0.1", 5432, 36)
	for _, want := range []string{"port = 9999", "pcp_port = 9998", "backend_port0 = 5432", "num_init_children = 36",
		"connection_cache = on", "load_balance_mode = off", "memory_cache_enabled = on", "memqcache_method = 'shmem'",
		"memqcache_oiddir = '/tmp/x/oiddir'", "pid_file_name = '/tmp/x/pgpool.pid'", "socket_dir = '/tmp/x'",
		"backend_flag0 = 'ALWAYS_PRIMARY|DISALLOW_TO_FAILOVER'"} {
		if !strings.Contains(c, want+"\n") {
			t.Errorf("pgpool.conf lacks %q", want)
		}
	}
}

// TestLastCacheStats reads the counters of the cache plugin's last stats line.
func TestLastCacheStats(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sluice.log")
	log := `time=2026-11-22T18:25:11Z level=INFO msg="sluice listening" addr=127.0.0.1:1
time=2026-11-22T18:25:39Z level=INFO msg="cache stats" plugin=cache hits=5 misses=7 hit_ratio=0.4167 fills=7 fills_skipped=0 bypassed=1 bumps=0 epoch_bumps=0 redis_errors=0 bump_failures=0 serving=true
time=2026-11-22T18:25:40Z level=INFO msg="cache stats" plugin=cache hits=23636 misses=103497 hit_ratio=0.1859 fills=103480 fills_skipped=3 bypassed=4142 bumps=3426 epoch_bumps=0 redis_errors=33 bump_failures=37 serving=true bypass="catalog not loaded: 3877"
`
	if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := lastCacheStats(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := (hitCounts{hits: 23636, misses: 103497, bypassed: 4142, redisErrors: 33}); h != want {
		t.Errorf("counters %+v, want %+v", h, want)
	}
	d := h.sub(hitCounts{hits: 5, misses: 7, bypassed: 1})
	if d.hits != 23631 || formatHitRatio(hitCounts{hits: 3, misses: 1}) != "75.0%" || formatHitRatio(hitCounts{}) != "-" {
		t.Errorf("delta %+v, ratios %s %s", d, formatHitRatio(hitCounts{hits: 3, misses: 1}), formatHitRatio(hitCounts{}))
	}
}

// TestReplaceSection: each section replaces only its own markers' part, keeping the text
// around, and a section without markers is appended.
func TestReplaceSection(t *testing.T) {
	cs, ce := sectionMarkers(sectionCache)
	doc := "# Benchmarks\n\nintro\n\n" + markerStart + "\nold pooler\n" + markerEnd + "\n\nbetween\n\n" + cs + "\nold cache\n" + ce + "\n\ntail\n"
	got := replaceSection(doc, sectionCache, cs+"\nnew cache\n"+ce+"\n")
	want := "# Benchmarks\n\nintro\n\n" + markerStart + "\nold pooler\n" + markerEnd + "\n\nbetween\n\n" + cs + "\nnew cache\n" + ce + "\n\ntail\n"
	if got != want {
		t.Errorf("cache section replaced as\n%s\nwant\n%s", got, want)
	}
	got = replaceSection(got, sectionPooler, markerStart+"\nnew pooler\n"+markerEnd+"\n")
	if !strings.Contains(got, "new pooler") || strings.Contains(got, "old pooler") || !strings.Contains(got, "new cache") {
		t.Errorf("pooler section replaced as\n%s", got)
	}
	ss, se := sectionMarkers(sectionSharding)
	got = replaceSection(got, sectionSharding, ss+"\nsharding\n"+se+"\n")
	if !strings.HasSuffix(got, "tail\n\n"+ss+"\nsharding\n"+se+"\n") {
		t.Errorf("sharding section appended as\n%s", got)
	}
}

// TestParseStat reads CPU times from /proc/<pid>/stat, a command name with spaces and
// parentheses included.
func TestParseStat(t *testing.T) {
	line := "1234 (pgpool: wait (x)) S 77 1234 1234 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 1 0 100 1000 10 18446744073709551615"
	self, children, ppid, err := parseStat(line)
	if err != nil || ppid != 77 || self != 3*time.Second || children != 100*time.Millisecond {
		t.Errorf("parseStat: self %v children %v ppid %d err %v", self, children, ppid, err)
	}
	if _, _, _, err := parseStat("garbage"); err == nil {
		t.Errorf("garbage parsed")
	}
	// Spin for 50ms of wall time (CPU time is counted in 10ms ticks).
	n := 0
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; n++ {
	}
	if c := treeCPU(os.Getpid()); c <= 0 {
		t.Errorf("this process's CPU time %v after %d spins", c, n)
	}
}

// TestLatencyStats: mean, median and 99th percentile by nearest rank, from pgbench -l lines.
func TestLatencyStats(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.1")
	var b strings.Builder
	for i := 1; i <= 100; i++ {
		b.WriteString("0 " + strconv.Itoa(i) + " " + strconv.Itoa(i*1000) + " 0 1700000000 123\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	lat, err := readLatencies(path)
	if err != nil || len(lat) != 100 || lat[0] != 1 {
		t.Fatalf("latencies %v, %v", lat, err)
	}
	avg, p50, p99 := latencyStats(lat)
	if avg != 50.5 || p50 != 50 || p99 != 99 {
		t.Errorf("avg %v p50 %v p99 %v; want 50.5 50 99", avg, p50, p99)
	}
}

// TestVerdicts: whether a ratio meets a target.
func TestVerdicts(t *testing.T) {
	for _, c := range []struct {
		ratio string
		min   float64
		want  string
	}{{"2.00x", 2, "met"}, {"1.99x", 2, "missed"}, {"-", 2, "-"}, {"0.95x", 0.95, "met"}} {
		if got := verdict(c.ratio, c.min); got != c.want {
			t.Errorf("verdict(%s, %v) = %s, want %s", c.ratio, c.min, got, c.want)
		}
	}
	if verdictAbove("1.00x", 1) != "missed" || verdictAbove("1.01x", 1) != "met" {
		t.Errorf("verdictAbove")
	}
	if got := scriptSQL(readScript); got != "SELECT abalance FROM pgbench_accounts WHERE aid = :aid" {
		t.Errorf("scriptSQL %q", got)
	}
}

// TestMedian: the middle run (the lower middle one of an even number), with the range of all,
// or the first failure.
func TestMedian(t *testing.T) {
	run := func(tps float64) pgbenchResult { return pgbenchResult{target: "x", tps: tps} }
	if m := median([]pgbenchResult{run(30), run(10), run(20)}); m.tps != 20 || m.lowTPS != 10 || m.highTPS != 30 {
		t.Errorf("median of three: %+v", m)
	}
	if m := median([]pgbenchResult{run(30), run(10)}); m.tps != 10 || m.highTPS != 30 {
		t.Errorf("median of two: %+v", m)
	}
	if m := median([]pgbenchResult{run(30), {failed: true, reason: "boom"}}); !m.failed || m.reason != "boom" {
		t.Errorf("a failed run: %+v", m)
	}
}

// TestPgpoolLookups: pgpool-II counts every extended-protocol SELECT in num_selects.
func TestPgpoolLookups(t *testing.T) {
	if got := pgpoolLookups("simple", hitCounts{hits: 90, misses: 10}); got.misses != 10 {
		t.Errorf("simple: %+v", got)
	}
	if got := pgpoolLookups("extended", hitCounts{hits: 90, misses: 100}); got.misses != 10 || got.ratio() != 0.9 {
		t.Errorf("extended: %+v", got)
	}
	if got := pgpoolLookups("prepared", hitCounts{hits: 5, misses: 3}); got.misses != 0 {
		t.Errorf("prepared: %+v", got)
	}
}

package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/sluicepg/sluice/internal/pgtest"
)

// cacheShow runs SHOW CACHE on the admin console and returns its values by "name/detail"
// ("hits/", "bypass/nocache hint"); NULL is "".
func cacheShow(t *testing.T, adm *pgx.Conn) map[string]string {
	t.Helper()
	cols, rows := adminQuery(t, adm, "SHOW CACHE")
	if got := strings.Join(cols, ","); got != "pool,name,detail,value" {
		t.Fatalf("SHOW CACHE columns %s, want pool,name,detail,value", got)
	}
	m := map[string]string{}
	for _, r := range rows {
		m[r[1]+"/"+r[2]] = r[3]
	}
	return m
}

// showInt is a numeric value of SHOW CACHE; a missing row is 0.
func showInt(t *testing.T, m map[string]string, key string) int64 {
	t.Helper()
	if m[key] == "" {
		return 0
	}
	n, err := strconv.ParseInt(m[key], 10, 64)
	if err != nil {
		t.Fatalf("SHOW CACHE %s = %q: %v", key, m[key], err)
	}
	return n
}

// TestCacheShowAndMetrics: SHOW CACHE counts a known sequence of reads as hits and misses, a
// nocache hint and a read in a transaction as bypass reasons, and a write as an invalidation;
// /metrics serves the same numbers as sluice_cache_* series.
func TestCacheShowAndMetrics(t *testing.T) {
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	s, direct := startCachedSluiceConfig(t, poolConfig{
		General: fmt.Sprintf("enable_prometheus_exporter = true\nprometheus_exporter_port = %d", port)}, "")
	ctx := context.Background()
	// Made before the first query through sluice, which loads the catalog: a table made after
	// it changes the catalog, and the next refresh would renew the epoch (an extra miss).
	if _, err := direct.Exec(ctx, `CREATE TABLE cache_show (id int PRIMARY KEY, v text);
		ALTER TABLE cache_show OWNER TO app;
		INSERT INTO cache_show VALUES (1, 'a'), (2, 'b')`); err != nil {
		t.Fatal(err)
	}
	conn := simpleConn(t, s)
	adm := connectAdmin(t, s, "pgcat")
	walBarrier(t, conn, direct) // the listener streams, and has seen the INSERT

	const q = "SELECT v FROM cache_show ORDER BY id"
	read := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			if _, err := rowsText(ctx, conn, q); err != nil {
				t.Fatal(err)
			}
		}
	}
	delta := func(before, after map[string]string, key string) int64 {
		return showInt(t, after, key) - showInt(t, before, key)
	}

	s0 := cacheShow(t, adm)
	read(4) // a miss, then three hits
	s1 := cacheShow(t, adm)
	for key, want := range map[string]int64{"hits/": 3, "misses/": 1, "fills/": 1} {
		if got := delta(s0, s1, key); got != want {
			t.Errorf("after a miss and three hits: %s went up by %d, want %d", key, got, want)
		}
	}

	if _, err := conn.Exec(ctx, "UPDATE cache_show SET v = 'c' WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	s2 := cacheShow(t, adm)
	if got := delta(s1, s2, "invalidations/table"); got < 1 {
		t.Errorf("an UPDATE through sluice: invalidations of kind table went up by %d, want at least 1", got)
	}
	walBarrier(t, conn, direct) // the WAL listener's bump of the UPDATE is in too
	s3 := cacheShow(t, adm)
	read(2) // a miss (the generation moved), then a hit
	if _, err := rowsText(ctx, conn, "/* sluice:nocache */ "+q); err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, q); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	s4 := cacheShow(t, adm)
	for key, want := range map[string]int64{
		// In the block, the SELECT and the COMMIT are each "in a transaction".
		"hits/": 1, "misses/": 1, "bypass/nocache hint": 1, "bypass/in a transaction": 2,
	} {
		if got := delta(s3, s4, key); got != want {
			t.Errorf("after the write: %s went up by %d, want %d", key, got, want)
		}
	}
	for key, want := range map[string]string{"breaker/": "closed", "serving/": "yes", "wal/": "streaming"} {
		if s4[key] != want {
			t.Errorf("SHOW CACHE %s = %q, want %q", key, s4[key], want)
		}
	}
	if showInt(t, s4, "entries/") < 1 || showInt(t, s4, "bytes/") < 1 {
		t.Errorf("SHOW CACHE entries %q, bytes %q: want some", s4["entries/"], s4["bytes/"])
	}
	if _, ok := s4["wal_lag_bytes/"]; !ok {
		t.Errorf("SHOW CACHE has no wal_lag_bytes: %v", s4)
	}
	if t.Failed() {
		t.Logf("SHOW CACHE at the end: %v", s4)
	}

	body := scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	s5 := cacheShow(t, adm)
	for name, want := range map[string]string{
		`sluice_cache_hits_total{pool=""}`:                                       s5["hits/"],
		`sluice_cache_misses_total{pool=""}`:                                     s5["misses/"],
		`sluice_cache_bypass_total{pool="",reason="nocache hint"}`:               s5["bypass/nocache hint"],
		`sluice_cache_invalidations_total{kind="table",pool=""}`:                 s5["invalidations/table"],
		`sluice_cache_invalidations_total{kind="epoch",pool=""}`:                 s5["invalidations/epoch"],
		`sluice_cache_breaker_open{pool=""}`:                                     "0",
		`sluice_cache_serving{pool=""}`:                                          "1",
		`sluice_cache_wal_streaming{pool=""}`:                                    "1",
		`sluice_cache_stampede_waits_total{outcome="hit",pool="",scope="redis"}`: s5["stampede_waits/redis, hit"],
	} {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
		if m == nil {
			t.Errorf("/metrics lacks %s", name)
		} else if m[1] != want {
			t.Errorf("/metrics %s = %s; SHOW CACHE says %s", name, m[1], want)
		}
	}
	for _, series := range []string{"sluice_cache_hit_ratio{", "sluice_cache_entries{", "sluice_cache_bytes{",
		"sluice_cache_fills_total{", "sluice_cache_wal_lag_bytes{", "sluice_cache_wal_lag_seconds{"} {
		if !strings.Contains(body, "\n"+series) {
			t.Errorf("/metrics lacks %s...}", series)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", body)
	}
}

// TestCacheStampedeAcrossInstances: two sluice processes' worth of caches on one Redis and
// one Postgres. 50 clients on each miss the same key at once: the key's fill lease in Redis
// lets one client of one sluice run the query; its own sluice's other clients wait for it in
// the process, the other sluice's wait for the fill in Redis. Postgres sees the query once.
func TestCacheStampedeAcrossInstances(t *testing.T) {
	pgc, _ := cacheServers(t)
	ctx := context.Background()
	// Before either sluice loads its catalog (see TestCacheShowAndMetrics).
	if err := pgc.Exec(ctx, appDB, `DROP TABLE IF EXISTS cache_stampede2;
		CREATE TABLE cache_stampede2 (id int, pad text);
		ALTER TABLE cache_stampede2 OWNER TO app;
		INSERT INTO cache_stampede2 SELECT g, repeat('x', 50) FROM generate_series(1, 200000) g`); err != nil {
		t.Fatal(err)
	}
	// Both have the same prefix (the test's name), so they share the cache's keys. The waits
	// outlast the query however slow a loaded machine makes it: a fill that takes longer than
	// stampede_wait lets the waiters run the query themselves, by design.
	const wait = `stampede_wait = "60s"`
	a, dconn := startCachedSluiceConfig(t, poolConfig{}, wait)
	b, _ := startCachedSluiceConfig(t, poolConfig{}, wait)

	// Slow enough (md5 of every row, then a sort) that both sluices miss before either fills;
	// immutable, so it may be cached (pg_sleep is volatile).
	const q = "SELECT count(DISTINCT md5(pad || id)) FROM cache_stampede2"
	const warm = "SELECT count(*) FROM cache_stampede2 WHERE id < 0"
	const perSluice = 50
	var conns []*pgx.Conn
	for _, s := range []*Sluice{a, b} {
		for i := 0; i < perSluice; i++ {
			conns = append(conns, simpleConn(t, s))
		}
		// The catalog is loaded.
		waitCached(t, conns[len(conns)-1], dconn, warm)
	}
	// The WAL listener has seen the table's rows and the hint bits the first reads set (which
	// write WAL too): none of it will stop the serving during the stampede.
	for _, s := range []*Sluice{a, b} {
		walBarrier(t, simpleConn(t, s), dconn)
	}
	adms := []*pgx.Conn{connectAdmin(t, a, "pgcat"), connectAdmin(t, b, "pgcat")}
	var before []map[string]string
	for _, adm := range adms {
		before = append(before, cacheShow(t, adm))
	}
	calls := serverCalls(t, dconn, q)

	countAtOnce(t, conns, q, 200000)
	if n := serverCalls(t, dconn, q) - calls; n != 1 {
		t.Errorf("%d concurrent misses on two sluices made %d queries on Postgres; want 1", len(conns), n)
	}
	var hits, misses int64
	for i, adm := range adms {
		after := cacheShow(t, adm)
		hits += showInt(t, after, "hits/") - showInt(t, before[i], "hits/")
		misses += showInt(t, after, "misses/") - showInt(t, before[i], "misses/")
		t.Logf("sluice %d: leases +%d, waits in the process %s hit / %s fallback, through Redis %s hit / %s fallback",
			i, showInt(t, after, "leases/")-showInt(t, before[i], "leases/"),
			after["stampede_waits/process, hit"], after["stampede_waits/process, fallback"],
			after["stampede_waits/redis, hit"], after["stampede_waits/redis, fallback"])
	}
	if hits != int64(len(conns))-1 || misses != 1 {
		t.Errorf("the two sluices counted %d hits and %d misses; want %d and 1", hits, misses, len(conns)-1)
	}
}

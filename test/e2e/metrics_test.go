package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/sluicepg/sluice/internal/pgtest"
)

// The exporter that pgcat's enable_prometheus_exporter turns on serves pgcat's metric names with
// pgcat's labels, and counts what the clients did.
func TestPrometheusExporter(t *testing.T) {
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	s := startSluice(t, poolConfig{General: fmt.Sprintf("enable_prometheus_exporter = true\nprometheus_exporter_port = %d", port)})
	ctx := context.Background()
	app := connect(t, s)
	for i := 0; i < 5; i++ {
		if _, err := app.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := app.Exec(ctx, "SELECT 1/0"); err == nil {
		t.Fatal("division by zero succeeded")
	}
	tx, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 2"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	body := scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	server := `{database="` + appDB + `",host="127.0.0.1",index="0",pool="app",role="primary",shard="0",username="` + appUser + `"}`
	want := map[string]func(float64) bool{
		// 5 SELECT 1, the failed one, BEGIN, SELECT 2, COMMIT: nine request cycles, seven
		// transactions (the explicit one counts once), one error.
		"pgcat_stats_total_query_count" + server:                   func(v float64) bool { return v == 9 },
		"pgcat_stats_total_xact_count" + server:                    func(v float64) bool { return v == 7 },
		"pgcat_stats_total_errors" + server:                        func(v float64) bool { return v == 1 },
		"pgcat_stats_total_sent" + server:                          func(v float64) bool { return v > 0 },
		"pgcat_stats_total_received" + server:                      func(v float64) bool { return v > 0 },
		"pgcat_stats_total_query_time" + server:                    func(v float64) bool { return v > 0 },
		"pgcat_servers_is_banned" + server:                         func(v float64) bool { return v == 0 },
		"pgcat_databases_pool_size" + server:                       func(v float64) bool { return v == 5 },
		"pgcat_databases_current_connections" + server:             func(v float64) bool { return v >= 1 },
		`pgcat_pools_cl_idle{pool="app",user="` + appUser + `"}`:   func(v float64) bool { return v == 1 },
		`pgcat_pools_sv_active{pool="app",user="` + appUser + `"}`: func(v float64) bool { return v == 0 },
		"sluice_clients": func(v float64) bool { return v == 1 },
	}
	for name, ok := range want {
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`)
		m := re.FindStringSubmatch(body)
		if m == nil {
			t.Errorf("%s missing", name)
			continue
		}
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil || !ok(v) {
			t.Errorf("%s = %s", name, m[1])
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", body)
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v", url, resp.Status, err)
	}
	return string(b)
}

package metrics

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluicepg/sluice/internal/admin"
	"github.com/sluicepg/sluice/plugin"
)

// pluginsOnly is a Source with no pools, only plugin metrics.
type pluginsOnly []admin.PluginMetrics

func (pluginsOnly) Servers() []admin.ServerView                           { return nil }
func (pluginsOnly) Pools() []admin.PoolView                               { return nil }
func (p pluginsOnly) PluginMetrics(context.Context) []admin.PluginMetrics { return p }

// TestPluginMetrics: the plugins' samples are served with their type, help and labels, and a
// pool label naming the instance's pool; a sample Prometheus refuses fails alone, the rest is
// served.
func TestPluginMetrics(t *testing.T) {
	src := pluginsOnly{
		{Name: "cache", Metrics: []plugin.Metric{
			{Name: "sluice_cache_hits_total", Help: "Hits", Kind: plugin.Counter, Value: 3},
			{Name: "sluice_cache_bypass_total", Help: "Bypass", Kind: plugin.Counter, Value: 2,
				Labels: map[string]string{"reason": "in a transaction"}},
			{Name: "sluice_cache_bad", Help: "Bad", Value: 1, Labels: map[string]string{"pool": "mine"}},
		}},
		{Name: "cache", Pool: "app", Metrics: []plugin.Metric{
			{Name: "sluice_cache_hits_total", Help: "Hits", Kind: plugin.Counter, Value: 5},
		}},
	}
	rec := httptest.NewRecorder()
	Handler(src, func() int { return 0 }).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	body := string(b)
	for _, want := range []string{
		"# HELP sluice_cache_hits_total Hits",
		"# TYPE sluice_cache_hits_total counter",
		`sluice_cache_hits_total{pool=""} 3`,
		`sluice_cache_hits_total{pool="app"} 5`,
		`sluice_cache_bypass_total{pool="",reason="in a transaction"} 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	if strings.Contains(body, "sluice_cache_bad{") {
		t.Errorf("a sample with the label pool was served")
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", body)
	}
}

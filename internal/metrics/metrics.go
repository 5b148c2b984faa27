// Package metrics serves sluice's Prometheus metrics. The pool, server and statistics metrics
// carry pgcat's names and labels (pgcat_pools_*, pgcat_stats_*, pgcat_servers_*,
// pgcat_databases_*), so dashboards and alerts made for pgcat keep working; what pgcat has no
// metric for is named sluice_*. Every value is read from the admin console's views when
// Prometheus scrapes: nothing is counted twice.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluicepg/sluice/internal/admin"
	"github.com/sluicepg/sluice/plugin"
)

// Source is what the exporter reads.
type Source interface {
	Servers() []admin.ServerView
	Pools() []admin.PoolView
	// PluginMetrics are the plugins' own metrics (plugin.Collector).
	PluginMetrics(ctx context.Context) []admin.PluginMetrics
}

// Handler returns the /metrics handler for src, with clients as the gauge of connected clients
// and Go's process and runtime metrics.
func Handler(src Source, clients func() int) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		&collector{src: src},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_clients", Help: "Client connections, logged in or logging in",
		}, func() float64 { return float64(clients()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Serve serves h at /metrics on ln until ctx is done.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("prometheus exporter listening", "addr", ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Labels of a server (pgcat's address labels) and of a pool.
var (
	serverLabels = []string{"host", "shard", "role", "pool", "index", "database", "username"}
	poolLabels   = []string{"pool", "user"}
)

type metric struct {
	desc *prometheus.Desc
	typ  prometheus.ValueType
}

func newMetric(name, help string, typ prometheus.ValueType, labels []string) metric {
	return metric{prometheus.NewDesc(name, help, labels, nil), typ}
}

func counter(name, help string) metric {
	return newMetric("pgcat_"+name, help, prometheus.CounterValue, serverLabels)
}

func gauge(name, help string) metric {
	return newMetric("pgcat_"+name, help, prometheus.GaugeValue, serverLabels)
}

func poolGauge(name, help string) metric {
	return newMetric("pgcat_"+name, help, prometheus.GaugeValue, poolLabels)
}

// The metrics, by the admin command whose numbers they are.
var (
	// SHOW STATS, per server.
	statsTotalQueryCount = counter("stats_total_query_count", "Number of queries sent by all clients")
	statsTotalQueryTime  = counter("stats_total_query_time", "Total time of queries, in microseconds")
	statsTotalReceived   = counter("stats_total_received", "Number of bytes received from the server")
	statsTotalSent       = counter("stats_total_sent", "Number of bytes sent to the server")
	statsTotalXactCount  = counter("stats_total_xact_count", "Number of transactions")
	statsTotalXactTime   = counter("stats_total_xact_time", "Total time of transactions, in microseconds")
	statsTotalWaitTime   = counter("stats_total_wait_time", "Total time clients waited for a server connection, in microseconds")
	statsTotalErrors     = counter("stats_total_errors", "Number of errors the server returned")
	statsAvgQueryCount   = gauge("stats_avg_query_count", "Queries per second over the last 15 s")
	statsAvgQueryTime    = gauge("stats_avg_query_time", "Mean query time over the last 15 s, in microseconds")
	statsAvgRecv         = gauge("stats_avg_recv", "Bytes received from the server per second over the last 15 s")
	statsAvgSent         = gauge("stats_avg_sent", "Bytes sent to the server per second over the last 15 s")
	statsAvgErrors       = gauge("stats_avg_errors", "Errors per second over the last 15 s")
	statsAvgXactCount    = gauge("stats_avg_xact_count", "Transactions per second over the last 15 s")
	statsAvgXactTime     = gauge("stats_avg_xact_time", "Mean transaction time over the last 15 s, in microseconds")
	statsAvgWaitTime     = gauge("stats_avg_wait_time", "Mean wait for a server connection over the last 15 s, in microseconds")

	// SHOW SERVERS, per server.
	serversBytesReceived    = counter("servers_bytes_received", "Bytes received from the server")
	serversBytesSent        = counter("servers_bytes_sent", "Bytes sent to the server")
	serversTransactionCount = counter("servers_transaction_count", "Transactions executed by the server")
	serversQueryCount       = counter("servers_query_count", "Queries executed by the server")
	serversErrorCount       = counter("servers_error_count", "Errors the server returned")
	serversIdleCount        = gauge("servers_idle_count", "Server connections that are idle")
	serversActiveCount      = gauge("servers_active_count", "Server connections in use by a client")
	serversTestedCount      = gauge("servers_tested_count", "Server connections being health-checked")
	serversLoginCount       = gauge("servers_login_count", "Server connections logging in")
	serversIsBanned         = gauge("servers_is_banned", "1 if the server is banned, else 0")
	serversIsPaused         = gauge("servers_is_paused", "1 if the server is paused, else 0")

	// SHOW DATABASES, per server.
	databasesPoolSize           = gauge("databases_pool_size", "Maximum number of server connections")
	databasesCurrentConnections = gauge("databases_current_connections", "Current number of server connections")

	// SHOW POOLS, per (database, user).
	poolsMaxwaitUs = poolGauge("pools_maxwait_us", "Microseconds part of the longest current wait for a server connection")
	poolsMaxwait   = poolGauge("pools_maxwait", "Seconds part of the longest current wait for a server connection")
	poolsClWaiting = poolGauge("pools_cl_waiting", "Clients waiting for a server connection")
	poolsClActive  = poolGauge("pools_cl_active", "Clients holding a server connection")
	poolsClIdle    = poolGauge("pools_cl_idle", "Clients idle")
	poolsSvIdle    = poolGauge("pools_sv_idle", "Server connections idle")
	poolsSvActive  = poolGauge("pools_sv_active", "Server connections in use by a client")
	poolsSvLogin   = poolGauge("pools_sv_login", "Server connections logging in")
	poolsSvTested  = poolGauge("pools_sv_tested", "Server connections being health-checked")

	// sluice's own, per server.
	replicaLagBytes = newMetric("sluice_server_lag_bytes", "Replay lag of a replica behind its primary, in bytes, as the health checker last measured it",
		prometheus.GaugeValue, serverLabels)
	poolWaits = newMetric("sluice_pool_waits_total", "Checkouts that had to wait for a server connection",
		prometheus.CounterValue, serverLabels)
	poolDialErrors = newMetric("sluice_server_connect_errors_total", "Failed attempts to open a server connection",
		prometheus.CounterValue, serverLabels)

	// sluice's own, per mirror of a server (pgcat has no mirroring metrics). The labels are the
	// mirrored server's, and mirror, the mirror's host:port.
	mirrorBytes = newMetric("sluice_mirror_bytes_total", "Bytes written to the mirror",
		prometheus.CounterValue, mirrorLabels)
	mirrorMessages = newMetric("sluice_mirror_messages_total", "Protocol messages written to the mirror",
		prometheus.CounterValue, mirrorLabels)
	mirrorDroppedBytes = newMetric("sluice_mirror_dropped_bytes_total", "Bytes sent to the server that the mirror did not get: its queue was full or it was down",
		prometheus.CounterValue, mirrorLabels)
	mirrorDroppedMessages = newMetric("sluice_mirror_dropped_messages_total", "Protocol messages sent to the server that the mirror did not get",
		prometheus.CounterValue, mirrorLabels)
	mirrorConnectErrors = newMetric("sluice_mirror_connect_errors_total", "Failed logins to the mirror and mirror connections lost",
		prometheus.CounterValue, mirrorLabels)
	mirrorServerErrors = newMetric("sluice_mirror_server_errors_total", "ErrorResponses the mirror answered with (read and thrown away)",
		prometheus.CounterValue, mirrorLabels)
	mirrorConnections = newMetric("sluice_mirror_connections", "Open connections to the mirror",
		prometheus.GaugeValue, mirrorLabels)
)

var mirrorLabels = append(append([]string(nil), serverLabels...), "mirror")

// collector reads the metrics from a Source at each scrape.
type collector struct{ src Source }

// Describe sends nothing: the metrics' label values change with the configuration, so the
// collector is unchecked.
func (c *collector) Describe(chan<- *prometheus.Desc) {}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, sv := range c.src.Servers() {
		lv := []string{sv.Host, strconv.Itoa(sv.Shard), sv.Role, sv.Database, strconv.Itoa(sv.Index), sv.ServerDatabase, sv.User}
		emit := func(m metric, v float64) { ch <- prometheus.MustNewConstMetric(m.desc, m.typ, v, lv...) }
		st, tr, avg := sv.Pool.Stats(), sv.Pool.Traffic(), sv.Pool.Averages()
		us := func(d time.Duration) float64 { return float64(d.Microseconds()) }
		emit(statsTotalQueryCount, float64(tr.Queries))
		emit(statsTotalQueryTime, us(tr.QueryTime))
		emit(statsTotalReceived, float64(tr.BytesRecv))
		emit(statsTotalSent, float64(tr.BytesSent))
		emit(statsTotalXactCount, float64(tr.Xacts))
		emit(statsTotalXactTime, us(tr.XactTime))
		emit(statsTotalWaitTime, us(st.TotalWait))
		emit(statsTotalErrors, float64(tr.Errors))
		emit(statsAvgQueryCount, avg.Queries)
		emit(statsAvgQueryTime, us(avg.QueryTime))
		emit(statsAvgRecv, avg.BytesRecv)
		emit(statsAvgSent, avg.BytesSent)
		emit(statsAvgErrors, avg.Errors)
		emit(statsAvgXactCount, avg.Xacts)
		emit(statsAvgXactTime, us(avg.XactTime))
		emit(statsAvgWaitTime, us(avg.WaitTime))

		emit(serversBytesReceived, float64(tr.BytesRecv))
		emit(serversBytesSent, float64(tr.BytesSent))
		emit(serversTransactionCount, float64(tr.Xacts))
		emit(serversQueryCount, float64(tr.Queries))
		emit(serversErrorCount, float64(tr.Errors))
		emit(serversIdleCount, float64(st.Idle))
		emit(serversActiveCount, float64(st.Open-st.Idle))
		emit(serversTestedCount, 0)
		emit(serversLoginCount, 0)
		emit(serversIsBanned, b2f(sv.Banned))
		emit(serversIsPaused, b2f(sv.Paused))

		emit(databasesPoolSize, float64(sv.PoolSize))
		emit(databasesCurrentConnections, float64(st.Open))

		emit(replicaLagBytes, float64(sv.LagBytes))
		emit(poolWaits, float64(st.Waits))
		emit(poolDialErrors, float64(st.DialErrors))

		for _, m := range sv.Pool.Params().Mirrors {
			mlv := append(lv[:len(lv):len(lv)], m.Params.Addr())
			emitM := func(x metric, v float64) { ch <- prometheus.MustNewConstMetric(x.desc, x.typ, v, mlv...) }
			ms := &m.Stats
			emitM(mirrorBytes, float64(ms.Bytes.Load()))
			emitM(mirrorMessages, float64(ms.Messages.Load()))
			emitM(mirrorDroppedBytes, float64(ms.DroppedBytes.Load()))
			emitM(mirrorDroppedMessages, float64(ms.DroppedMessages.Load()))
			emitM(mirrorConnectErrors, float64(ms.ConnectErrors.Load()))
			emitM(mirrorServerErrors, float64(ms.ServerErrors.Load()))
			emitM(mirrorConnections, float64(ms.Connections.Load()))
		}
	}
	for _, p := range c.src.Pools() {
		lv := []string{p.Database, p.User}
		emit := func(m metric, v float64) { ch <- prometheus.MustNewConstMetric(m.desc, m.typ, v, lv...) }
		us := p.MaxWait.Microseconds()
		emit(poolsMaxwaitUs, float64(us%1_000_000))
		emit(poolsMaxwait, float64(us/1_000_000))
		emit(poolsClWaiting, float64(p.ClWaiting))
		emit(poolsClActive, float64(p.ClActive))
		emit(poolsClIdle, float64(p.ClIdle))
		emit(poolsSvIdle, float64(p.SvIdle))
		emit(poolsSvActive, float64(p.SvActive))
		emit(poolsSvLogin, 0)
		emit(poolsSvTested, 0)
	}
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	collectPlugins(ch, c.src.PluginMetrics(ctx))
}

// scrapeTimeout bounds the plugins' part of a scrape (Prometheus's default scrape timeout is
// 10 s).
const scrapeTimeout = 5 * time.Second

// collectPlugins sends the plugins' samples as constant metrics, each with a pool label. A
// sample that Prometheus refuses (a bad name, a label called pool) is sent as an invalid
// metric: the scrape reports it and serves the rest.
func collectPlugins(ch chan<- prometheus.Metric, pms []admin.PluginMetrics) {
	for _, pm := range pms {
		for _, m := range pm.Metrics {
			names := make([]string, 0, len(m.Labels)+1)
			for k := range m.Labels {
				names = append(names, k)
			}
			slices.Sort(names)
			values := make([]string, 0, len(names)+1)
			for _, k := range names {
				values = append(values, m.Labels[k])
			}
			names, values = append(names, "pool"), append(values, pm.Pool)
			typ := prometheus.GaugeValue
			if m.Kind == plugin.Counter {
				typ = prometheus.CounterValue
			}
			desc := prometheus.NewDesc(m.Name, m.Help, names, nil)
			if _, clash := m.Labels["pool"]; clash {
				ch <- prometheus.NewInvalidMetric(desc, fmt.Errorf("plugin %q: metric %s: the label pool is the exporter's", pm.Name, m.Name))
				continue
			}
			cm, err := prometheus.NewConstMetric(desc, typ, m.Value, values...)
			if err != nil {
				cm = prometheus.NewInvalidMetric(desc, fmt.Errorf("plugin %q: %w", pm.Name, err))
			}
			ch <- cm
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

package cache

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
)

// Mirror is a [plugins.cache.mirror.<table>] block: the table <table> ("name" or
// "schema.name") is copied into Redis, one key per row, from logical replication. docs/cache.md,
// "Row mirror", is the user's guide.
type Mirror struct {
	Key     []string `toml:"key"`     // the columns that name a row; default the primary key
	Columns []string `toml:"columns"` // the columns stored besides the key's; default all
	Format  string   `toml:"format"`  // "hash" (default) or "json"
	Prefix  string   `toml:"prefix"`  // keys are <prefix><table>:<key>; default the cache's prefix
}

// slotName is what Postgres accepts as a replication slot name.
var slotName = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// mirrorSpecs checks the mirror's configuration and returns its tables, sorted by name, with
// the digest of everything that shapes the keys in Redis (a change makes the mirror reload).
func (p *Cache) mirrorSpecs() ([]*mirrorSpec, string, error) {
	if p.WALDSN == "" {
		return nil, "", fmt.Errorf("cache: the row mirror needs wal_dsn, a replication connection to the database")
	}
	if !slotName.MatchString(p.MirrorSlot) {
		return nil, "", fmt.Errorf("cache: mirror_slot %q: want 1 to 63 of a-z, 0-9 and _", p.MirrorSlot)
	}
	// Keys of different tables, and the cache's own keys, must never share a beginning: a
	// table's TRUNCATE and reload delete every key that starts with its namespace.
	taken := []string{p.Prefix + "e:", p.Prefix + "g:", p.Prefix + "b:", p.Prefix + "r:", p.Prefix + "l:", p.Prefix + "epoch", p.Prefix + "mirror:", p.Prefix + "wal:"}
	names := make([]string, 0, len(p.Mirror))
	for name := range p.Mirror {
		names = append(names, name)
	}
	slices.Sort(names)
	h := sha256.New()
	fmt.Fprintf(h, "sluice-mirror-v1\x00%s\x00", p.MirrorPublication)
	var specs []*mirrorSpec
	for _, name := range names {
		m := p.Mirror[name]
		rn := splitName(name)
		if rn.Name == "" || strings.Count(name, ".") > 1 {
			return nil, "", fmt.Errorf("cache: mirror %q: want a table as name or schema.name", name)
		}
		s := &mirrorSpec{name: name, key: m.Key, columns: m.Columns}
		switch m.Format {
		case "", "hash":
		case "json":
			s.json = true
		default:
			return nil, "", fmt.Errorf("cache: mirror %q: format %q: want hash or json", name, m.Format)
		}
		for _, list := range [][]string{m.Key, m.Columns} {
			for i, c := range list {
				if c == "" || slices.Contains(list[:i], c) {
					return nil, "", fmt.Errorf("cache: mirror %q: column %q empty or named twice", name, c)
				}
			}
		}
		prefix := m.Prefix
		if prefix == "" {
			prefix = p.Prefix
		}
		s.ns = prefix + name + ":"
		for _, o := range taken {
			if strings.HasPrefix(o, s.ns) || strings.HasPrefix(s.ns, o) {
				return nil, "", fmt.Errorf("cache: mirror %q: its keys (%s...) would mix with %s...", name, s.ns, o)
			}
		}
		taken = append(taken, s.ns)
		fmt.Fprintf(h, "%s\x00%s\x00%v\x00%q\x00%q\x00", name, s.ns, s.json, s.key, s.columns)
		specs = append(specs, s)
	}
	return specs, hex.EncodeToString(h.Sum(nil)[:12]), nil
}

// mirror copies the chosen tables into Redis from its own replication slot and publication.
//
// Like the WAL listener, it streams in one sluice at a time (a session advisory lock, held on
// the replication connection, so it ends with it: lockStream), but not from the listener's
// slot: the listener reads every table and bumps counters, and must not be held back by the
// mirror, which resumes exactly where Redis stands and holds its position back while Redis is
// down. Decoding the WAL twice is the price of keeping those apart.
type mirror struct {
	dsn         string
	slot        string
	publication string
	config      string // digest of the configuration
	specs       []*mirrorSpec
	addrs       []string
	markerKey   string
	log         *slog.Logger

	redis *mirrorRedis // made by client, used by run's goroutine only
	// streamed is set when the session has started streaming: it got somewhere, so the pause
	// before the next one starts short again.
	streamed bool

	// reload makes the next session load a snapshot whatever the marker says: the last one
	// found Redis different from what the marker promised.
	reload string

	stats mirrorStats

	// slotMade, when set (by tests), runs when load has made the slot and not yet read its
	// snapshot.
	slotMade func()
}

// mirrorStats are the mirror's counters, read by Stats.
type mirrorStats struct {
	state      atomic.Value // string: what the mirror is doing
	applied    atomic.Uint64
	lastCommit atomic.Int64 // unix nanos: commit time of the last transaction applied
	txns       atomic.Int64
	loads      atomic.Int64
	lag        lagMeter
	tables     map[string]*mirrorTableStats // by the configuration's name; fixed at start
}

// mirrorTableStats are one mirrored table's counters.
type mirrorTableStats struct {
	changes    atomic.Int64 // rows written or deleted, and truncations, applied to Redis
	lastChange atomic.Int64 // unix nanos: commit time of the last transaction that changed it
}

// MirrorStats are the row mirror's counters.
type MirrorStats struct {
	State      string    // "streaming", "loading", "waiting for Redis", ...
	AppliedLSN string    // the end of the last transaction in Redis
	LastCommit time.Time // commit time of that transaction
	Txns       int64     // transactions applied since start
	Loads      int64     // snapshots loaded since start
	// LagBytes and Lag are how far the stream is behind the server's WAL, in bytes and in
	// time (0 when caught up). The tables share the stream, so they share the lag.
	LagBytes int64
	Lag      time.Duration
	Tables   []MirrorTableStats // sorted by name
}

// MirrorTableStats are one mirrored table's counters.
type MirrorTableStats struct {
	Name       string    // as in the configuration: [plugins.cache.mirror.<Name>]
	Changes    int64     // row changes (and truncations) applied since start
	LastChange time.Time // commit time of the last change applied; zero: none yet
}

func newMirror(p *Cache, specs []*mirrorSpec, config string) *mirror {
	m := &mirror{dsn: p.WALDSN, slot: p.MirrorSlot, publication: p.MirrorPublication, config: config,
		specs: specs, addrs: p.Redis, markerKey: p.Prefix + "mirror:" + p.MirrorSlot, log: p.log}
	m.stats.state.Store("starting")
	m.stats.tables = map[string]*mirrorTableStats{}
	for _, s := range specs {
		m.stats.tables[s.name] = &mirrorTableStats{}
	}
	return m
}

func (m *mirror) statsNow() MirrorStats {
	s := MirrorStats{State: m.stats.state.Load().(string), AppliedLSN: pglogrepl.LSN(m.stats.applied.Load()).String(),
		Txns: m.stats.txns.Load(), Loads: m.stats.loads.Load()}
	if n := m.stats.lastCommit.Load(); n != 0 {
		s.LastCommit = time.Unix(0, n)
	}
	if s.State == "streaming" {
		s.LagBytes, s.Lag = m.stats.lag.lag(time.Now())
	}
	for _, sp := range m.specs {
		ts := m.stats.tables[sp.name]
		t := MirrorTableStats{Name: sp.name, Changes: ts.changes.Load()}
		if n := ts.lastChange.Load(); n != 0 {
			t.LastChange = time.Unix(0, n)
		}
		s.Tables = append(s.Tables, t)
	}
	return s
}

// run keeps a replication session going until stop is closed. A streaming session that ends
// because Redis lost the mirror is followed at once by one that reloads it; other errors (and a
// reload that keeps failing) wait a pause that grows while sessions fail before streaming.
func (m *mirror) run(stop <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-stop; cancel() }()
	defer func() {
		if m.redis != nil {
			m.redis.close()
		}
	}()
	const standby = "standby: another sluice streams"
	pause := 100 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		m.streamed = false
		err := recovered(func() error { return m.session(ctx) })
		if ctx.Err() != nil {
			return
		}
		if m.streamed || time.Since(start) > 10*time.Second {
			pause = 100 * time.Millisecond
		}
		var panicked *panicError
		switch {
		case errors.Is(err, errMirrorLost), errors.Is(err, errSchemaChanged), errors.Is(err, errMirrorInconsistent),
			errors.As(err, &panicked): // a session that panicked may have left the mirror half-written
			m.log.Warn("cache: mirror must be reloaded", "err", err)
			m.reload = err.Error()
			if m.streamed {
				continue
			}
		case errors.Is(err, errLocked):
			if m.stats.state.Swap(standby) != standby {
				m.log.Info("cache: mirror standing by: another sluice streams slot " + m.slot)
			}
			pause = 2 * time.Second
		default:
			m.stats.state.Store("reconnecting")
			m.log.Warn("cache: mirror stopped; restarting", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, 5*time.Second)
	}
}

// client returns the mirror's Redis client, made at first use (making it fails while Redis
// is down). Only run's goroutine calls it.
func (m *mirror) client() (*mirrorRedis, error) {
	if m.redis == nil {
		r, err := newMirrorRedis(m.addrs, m.markerKey)
		if err != nil {
			return nil, err
		}
		m.redis = r
	}
	return m.redis, nil
}

// textSettings make every value's text form the same in the snapshot and in the stream (both
// format values in the server, with the session's settings).
var textSettings = map[string]string{
	"DateStyle": "ISO, MDY", "IntervalStyle": "postgres", "TimeZone": "UTC",
	"extra_float_digits": "1", "bytea_output": "hex", "client_encoding": "UTF8",
}

// connect opens a connection to wal_dsn with the text settings; replication makes it a
// replication connection.
func (m *mirror) connect(ctx context.Context, replication bool) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(m.dsn)
	if err != nil {
		return nil, fmt.Errorf("mirror: wal_dsn: %w", err)
	}
	for k, v := range textSettings {
		cfg.RuntimeParams[k] = v
	}
	if replication {
		cfg.RuntimeParams["replication"] = "database"
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgconn.ConnectConfig(cctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("mirror: connect: %w", err)
	}
	return conn, nil
}

// session runs one replication session: take the lock, check the tables, load a snapshot if
// Redis does not hold the mirror the slot continues, then stream.
func (m *mirror) session(ctx context.Context) error {
	r, err := m.client()
	if err != nil {
		return err
	}
	conn, err := m.connect(ctx, true)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if err := lockStream(ctx, conn, "sluice mirror", m.slot); err != nil {
		return fmt.Errorf("mirror: %w", err)
	}
	tables := make([]*mirrorTable, len(m.specs))
	for i, s := range m.specs {
		f, err := readFacts(ctx, conn, s.name)
		if err != nil {
			return err
		}
		if tables[i], err = planTable(s, f); err != nil {
			return err
		}
	}
	pubChanged, err := m.ensurePublication(ctx, conn, tables)
	if err != nil {
		return err
	}
	mk, err := r.readMarker(ctx)
	if err != nil {
		return err
	}
	slot, err := lookupSlot(ctx, conn, m.slot, "mirror_slot")
	if err != nil {
		return fmt.Errorf("mirror: %w", err)
	}
	slotExists := slot.exists
	why := m.reloadReason(mk, tables, slot.confirmed, slotExists, pubChanged)
	if why == "" {
		why = m.reload
	}
	if why != "" {
		m.stats.state.Store("loading")
		m.log.Info("cache: mirror loading a snapshot", "why", why, "slot", m.slot)
		if mk, err = m.load(ctx, conn, r, tables, slotExists); err != nil {
			return err
		}
		m.reload = ""
		m.stats.loads.Add(1)
	}
	return m.stream(ctx, conn, r, tables, mk)
}

// reloadReason says why Redis must be loaded from a snapshot, or "" when streaming on from the
// slot leaves it exact.
func (m *mirror) reloadReason(mk marker, tables []*mirrorTable, confirmed pglogrepl.LSN, slotExists, pubChanged bool) string {
	switch {
	case len(mk) == 0:
		return "no mirror in Redis"
	case mk["state"] != "ready":
		return "the last load did not finish"
	case mk["config"] != m.config:
		return "the configuration changed"
	case !slotExists:
		return "no slot " + m.slot
	case pubChanged:
		return "the publication changed"
	}
	for _, t := range tables {
		if mk["schema:"+t.name] != t.signature {
			return "the columns of " + t.name + " changed"
		}
	}
	lsn, err := pglogrepl.ParseLSN(mk["lsn"])
	if err != nil {
		return "a marker without a position"
	}
	if lsn < confirmed {
		// The slot has moved past what Redis holds (Redis came back from an older snapshot):
		// the changes in between are gone from the slot.
		return "Redis is behind the slot"
	}
	return ""
}

// ensurePublication makes the mirror's publication publish exactly its tables, every kind of
// change, and reports whether it had to change it (the slot's stream before the change is not
// the mirror's: a reload follows).
func (m *mirror) ensurePublication(ctx context.Context, conn *pgconn.PgConn, tables []*mirrorTable) (bool, error) {
	rows, err := simpleRows(ctx, conn, `SELECT p.puballtables::text, (p.pubinsert AND p.pubupdate AND p.pubdelete AND p.pubtruncate)::text,
  coalesce((SELECT string_agg(pr.prrelid::text, ',' ORDER BY pr.prrelid) FROM pg_publication_rel pr WHERE pr.prpubid = p.oid), '')
FROM pg_publication p WHERE p.pubname = `+quoteLiteral(m.publication))
	if err != nil {
		return false, fmt.Errorf("mirror: look up publication %s: %w", m.publication, err)
	}
	sorted := slices.Clone(tables)
	slices.SortFunc(sorted, func(a, b *mirrorTable) int { return cmp.Compare(a.oid, b.oid) })
	var names, oids []string
	for _, t := range sorted {
		names = append(names, t.sqlName)
		oids = append(oids, fmt.Sprint(t.oid))
	}
	pub := quoteIdent(m.publication)
	var sql string
	switch {
	case len(rows) == 0:
		sql = "CREATE PUBLICATION " + pub + " FOR TABLE " + strings.Join(names, ", ")
	case rows[0][0] == "true":
		return false, fmt.Errorf("mirror: publication %s is FOR ALL TABLES: name another (mirror_publication)", m.publication)
	case rows[0][1] != "true" || rows[0][2] != strings.Join(oids, ","):
		sql = "ALTER PUBLICATION " + pub + " SET TABLE " + strings.Join(names, ", ") +
			"; ALTER PUBLICATION " + pub + " SET (publish = 'insert, update, delete, truncate')"
	default:
		return false, nil
	}
	if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
		return false, fmt.Errorf("mirror: publication %s: %w", m.publication, err)
	}
	return true, nil
}

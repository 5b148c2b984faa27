// Package cache is sluice's read-through result cache in Redis (the plugin "cache"): eligible
// SELECTs are answered from Redis, keyed by everything their result depends on, including a
// generation counter per table read; writes through sluice (and, with wal_invalidation,
// writes anywhere, seen in the WAL) increment those counters, so an entry filled before a
// write is never found again after it. docs/cache.md is the user's guide; the reasoning about
// when a generation must be bumped, and what happens when Redis is down, is written there.
package cache

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicepg/sluice/plugin"
)

func init() {
	plugin.Register(plugin.Info{Name: "cache", New: func() plugin.Plugin { return new(Cache) }})
}

// Duration is a duration written as a string ("60s", "1m30s") in the configuration.
type Duration time.Duration

// UnmarshalText reads a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration back (the configuration is re-encoded before decoding).
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Addrs is one Redis address or a list of them.
type Addrs []string

// UnmarshalTOML accepts a string or an array of strings.
func (a *Addrs) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case string:
		*a = Addrs{x}
	case []any:
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("redis: want addresses as strings, got %T", e)
			}
			*a = append(*a, s)
		}
	default:
		return fmt.Errorf("redis: want an address or a list of addresses, got %T", v)
	}
	return nil
}

// Cache is the plugin, decoded from [plugins.cache].
type Cache struct {
	Enabled       *bool               `toml:"enabled"`
	Redis         Addrs               `toml:"redis"`
	Prefix        string              `toml:"prefix"`
	TTL           Duration            `toml:"ttl"`
	Tables        []string            `toml:"tables"`
	ExcludeTables []string            `toml:"exclude_tables"`
	MaxEntrySize  int                 `toml:"max_entry_size"`
	L1Size        int                 `toml:"l1_size"`
	TableTTL      map[string]Duration `toml:"table_ttl"`
	Mirror        map[string]Mirror   `toml:"mirror"`
	RedisTimeout  Duration            `toml:"redis_timeout"`

	// The catalog (pg_class, pg_proc ...) of each database is read through sluice's own pool
	// as CatalogUser, or as the first client's user when empty, every CatalogRefresh.
	CatalogUser    string   `toml:"catalog_user"`
	CatalogRefresh Duration `toml:"catalog_refresh"`

	// WAL catch-up: a logical replication connection to WALDSN (a libpq URL or key=value
	// string; replication=database is added), on publication WALPublication (created FOR ALL
	// TABLES when missing), through the permanent slot WALSlot (default: named after the
	// prefix, the Redis addresses and WALDSN's database, so sluices sharing a Redis share it),
	// streamed by one sluice at a time.
	WALInvalidation *bool  `toml:"wal_invalidation"`
	WALDSN          string `toml:"wal_dsn"`
	WALPublication  string `toml:"wal_publication"`
	WALSlot         string `toml:"wal_slot"`

	// The row mirror: each [plugins.cache.mirror.<table>] block names a table copied into
	// Redis from the replication slot MirrorSlot (a permanent one) on publication
	// MirrorPublication (both "sluice_mirror" by default), over WALDSN.
	MirrorSlot        string `toml:"mirror_slot"`
	MirrorPublication string `toml:"mirror_publication"`

	// StampedeWait is how long a miss waits for another client that is already filling the
	// same key, in this sluice or in another one sharing the Redis (through a fill lease in
	// Redis, which lasts as long), instead of running the same query too (default 1s).
	StampedeWait Duration `toml:"stampede_wait"`

	// StatsInterval, when set, logs the counters (Stats) every StatsInterval while they
	// change, and once more at Cleanup. SHOW CACHE and the sluice_cache_* metrics show them
	// at any time.
	StatsInterval Duration `toml:"stats_interval"`

	// RowInvalidation (default true) lets a point read (a SELECT of one table by primary key)
	// depend on the rows it names instead of its whole table, so that a write pinned to other
	// keys leaves it cached (rowkeys.go). Writes maintain the row counters either way, so
	// sluices sharing a Redis may differ in it; all of them must be of a version that does.
	RowInvalidation *bool `toml:"row_invalidation"`

	log *slog.Logger
	// lateSessions are the sessions of clients that logged in before this instance existed
	// (a reload), by client: see session.
	lateSessions sync.Map
	host         plugin.Host
	an           *analyzer
	st           *store
	wal          *walListener
	mirror       *mirror
	tables       map[relName]bool
	excluded     map[relName]bool
	ttls         map[relName]time.Duration

	cmu      sync.Mutex
	catalogs map[string]*dbCatalog

	flights sync.Map // entry key -> *flight: a miss being filled

	lookups sharedDeadline // the deadline of a lookup's Redis calls (RedisTimeout)

	startups sync.Map // net.Addr (a pointer) -> startupRec

	stop chan struct{}
	wg   sync.WaitGroup

	stats counters

	umu   sync.Mutex // one count of the entries at a time
	usage usage      // the last count
}

type counters struct {
	hits, misses, fills, fillsSkipped, bumps, epochBumps atomic.Int64
	// leases counts the misses that took the fill lease in Redis; the waits count the misses
	// that waited for another client's fill, in this process or through a lease, by whether
	// they got it (a hit) or ran the query after all.
	leases                                                             atomic.Int64
	processWaitHits, processWaitMisses, leaseWaitHits, leaseWaitMisses atomic.Int64

	bmu    sync.Mutex
	bypass map[string]int64
}

// Stats are the cache's counters since it started.
type Stats struct {
	// Hits and Misses are lookups (queries fit to be cached): answered from the cache, or
	// sent to Postgres. A miss that waited for another client's fill and got it is a hit.
	Hits, Misses, Fills, FillsSkipped int64
	Bumps, EpochBumps                 int64
	RedisErrors, BumpFailures         int64
	WALEvents                         int64
	// Leases, and the waits for another client's fill, in this process or another.
	Leases                                                             int64
	ProcessWaitHits, ProcessWaitMisses, LeaseWaitHits, LeaseWaitMisses int64
	Breaker                                                            string       // "closed", "open" or "connecting"
	WAL                                                                *WALStats    // nil without the WAL listener
	Mirror                                                             *MirrorStats // nil without a mirror
	Serving                                                            bool
	NotServingWhy                                                      string
	Bypass                                                             map[string]int64 // reason -> queries
}

// WALStats are the WAL listener's state: whether this sluice streams the slot, and whether some
// sluice (this one or another) consumes the WAL caught up, with that consumer's lag, as its
// heartbeat in Redis says.
type WALStats struct {
	Slot      string
	State     string // "streaming", "catching up", "standby: another sluice streams" ...
	Streaming bool   // this sluice streams the slot
	Consumed  bool   // some sluice streams it, caught up: entries may be served
	LagBytes  int64  // the consumer's lag, when Consumed
	Lag       time.Duration
}

// Stats returns the cache's counters.
func (p *Cache) Stats() Stats {
	s := Stats{Hits: p.stats.hits.Load(), Misses: p.stats.misses.Load(), Fills: p.stats.fills.Load(),
		FillsSkipped: p.stats.fillsSkipped.Load(), Bumps: p.stats.bumps.Load(),
		EpochBumps: p.stats.epochBumps.Load(), Leases: p.stats.leases.Load(),
		ProcessWaitHits: p.stats.processWaitHits.Load(), ProcessWaitMisses: p.stats.processWaitMisses.Load(),
		LeaseWaitHits: p.stats.leaseWaitHits.Load(), LeaseWaitMisses: p.stats.leaseWaitMisses.Load(),
		Bypass: map[string]int64{}}
	if p.st != nil {
		s.Breaker = p.st.breakerState()
		s.RedisErrors, s.BumpFailures = p.st.errs.Load(), p.st.bumpFailures.Load()
		_, s.Serving = p.st.serving()
		if !s.Serving {
			s.NotServingWhy, _ = p.st.why.Load().(string)
		}
	}
	if p.wal != nil {
		s.WALEvents = p.wal.events.Load()
		w := &WALStats{Slot: p.wal.slot, State: p.wal.state.Load().(string)}
		w.Streaming = w.State != walStarting && w.State != walStandby && w.State != walReconnecting
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(p.RedisTimeout))
		b, ok, err := p.st.readWAL(ctx)
		cancel()
		if w.Consumed = err == nil && ok && b.caughtUp; w.Consumed {
			w.LagBytes, w.Lag = b.lagBytes, b.lag
		} else if s.Serving {
			s.Serving, s.NotServingWhy = false, "WAL not consumed or behind"
		}
		s.WAL = w
	}
	if p.mirror != nil {
		ms := p.mirror.statsNow()
		s.Mirror = &ms
	}
	p.stats.bmu.Lock()
	for k, v := range p.stats.bypass {
		s.Bypass[k] = v
	}
	p.stats.bmu.Unlock()
	return s
}

func (p *Cache) bypass(why string) {
	p.stats.bmu.Lock()
	if p.stats.bypass == nil {
		p.stats.bypass = map[string]int64{}
	}
	p.stats.bypass[why]++
	p.stats.bmu.Unlock()
}

// bypassChurn is the bypass reason of a read of a table the cache keeps away from because it is
// written faster than its entries are read (churn.go).
const bypassChurn = "table written faster than read"

func (p *Cache) enabled() bool { return p.Enabled == nil || *p.Enabled }

func (p *Cache) rowsEnabled() bool { return p.RowInvalidation == nil || *p.RowInvalidation }

// Provision applies defaults, connects to Redis (in the background: a Redis that is down
// makes the cache serve nothing, it does not stop sluice) and starts the WAL listener and the
// row mirror.
func (p *Cache) Provision(ctx plugin.Context) error {
	p.log, p.host = ctx.Logger, ctx.Host
	if p.log == nil {
		p.log = slog.Default()
	}
	if p.Prefix == "" {
		p.Prefix = "sluice:"
	}
	if p.TTL <= 0 {
		p.TTL = Duration(60 * time.Second)
	}
	if p.MaxEntrySize <= 0 {
		p.MaxEntrySize = 1 << 20
	}
	if p.RedisTimeout <= 0 {
		p.RedisTimeout = Duration(100 * time.Millisecond)
	}
	p.lookups.d = time.Duration(p.RedisTimeout)
	if p.CatalogRefresh <= 0 {
		p.CatalogRefresh = Duration(30 * time.Second)
	}
	if p.StampedeWait <= 0 {
		p.StampedeWait = Duration(time.Second)
	}
	if p.WALPublication == "" {
		p.WALPublication = "sluice_cache"
	}
	if p.MirrorSlot == "" {
		p.MirrorSlot = "sluice_mirror"
	}
	if p.MirrorPublication == "" {
		p.MirrorPublication = "sluice_mirror"
	}
	p.tables, p.excluded, p.ttls = nameSet(p.Tables), nameSet(p.ExcludeTables), map[relName]time.Duration{}
	for name, d := range p.TableTTL {
		p.ttls[splitName(name)] = time.Duration(d)
	}
	p.catalogs = map[string]*dbCatalog{}
	p.stop = make(chan struct{})
	if !p.enabled() {
		return nil
	}
	if len(p.Redis) == 0 {
		return fmt.Errorf("cache: redis: no address")
	}
	if len(p.Mirror) > 0 {
		// Checked before anything starts: Validate runs after Provision.
		specs, digest, err := p.mirrorSpecs()
		if err != nil {
			return err
		}
		p.mirror = newMirror(p, specs, digest)
	}
	p.an = newAnalyzer(10_000)
	walKey := ""
	if p.walEnabled() {
		if p.WALSlot == "" {
			p.WALSlot = defaultWALSlot(p.Prefix, p.Redis, p.WALDSN)
		}
		if !slotName.MatchString(p.WALSlot) {
			return fmt.Errorf("cache: wal_slot %q: want 1 to 63 of a-z, 0-9 and _", p.WALSlot)
		}
		walKey = walHeartbeatKey(p.Prefix, p.WALSlot)
	}
	p.st = newStore(p.Redis, p.Prefix, walKey, time.Duration(p.RedisTimeout), p.L1Size, p.log)
	if p.walEnabled() {
		p.wal = newWALListener(p.WALDSN, p.WALPublication, p.WALSlot, p.st, p.log, &p.stats)
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.wal.run(p.stop) }()
	}
	if p.mirror != nil {
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.mirror.run(p.stop) }()
	}
	p.wg.Add(1)
	go func() { defer p.wg.Done(); p.sweepStartups() }()
	if p.StatsInterval > 0 {
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.logStats(time.Duration(p.StatsInterval)) }()
	}
	return nil
}

// logStats logs the counters every interval while they change, and once when the plugin stops.
func (p *Cache) logStats(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var last Stats
	for {
		stopping := false
		select {
		case <-p.stop:
			stopping = true
		case <-t.C:
		}
		s := p.Stats()
		if stopping || s.Hits != last.Hits || s.Misses != last.Misses || s.Bumps != last.Bumps ||
			s.EpochBumps != last.EpochBumps || s.RedisErrors != last.RedisErrors || s.bypassed() != last.bypassed() {
			p.log.Info("cache stats", s.logAttrs()...)
		}
		if stopping {
			return
		}
		last = s
	}
}

// bypassed is the number of queries that went to Postgres without a lookup, for any reason.
func (s Stats) bypassed() int64 {
	var n int64
	for _, v := range s.Bypass {
		n += v
	}
	return n
}

// logAttrs are the counters as log attributes; hit_ratio is hits over lookups (hits and
// misses), with bypassed queries counted apart.
func (s Stats) logAttrs() []any {
	ratio := 0.0
	if s.Hits+s.Misses > 0 {
		ratio = float64(s.Hits) / float64(s.Hits+s.Misses)
	}
	attrs := []any{"hits", s.Hits, "misses", s.Misses, "hit_ratio", fmt.Sprintf("%.4f", ratio),
		"fills", s.Fills, "fills_skipped", s.FillsSkipped, "bypassed", s.bypassed(),
		"bumps", s.Bumps, "epoch_bumps", s.EpochBumps, "redis_errors", s.RedisErrors,
		"bump_failures", s.BumpFailures, "serving", s.Serving}
	if len(s.Bypass) > 0 {
		reasons := make([]string, 0, len(s.Bypass))
		for why, n := range s.Bypass {
			reasons = append(reasons, fmt.Sprintf("%s: %d", why, n))
		}
		sort.Strings(reasons)
		attrs = append(attrs, "bypass", strings.Join(reasons, "; "))
	}
	if !s.Serving {
		attrs = append(attrs, "not_serving_why", s.NotServingWhy)
	}
	return attrs
}

func (p *Cache) walEnabled() bool {
	if p.WALInvalidation != nil {
		return *p.WALInvalidation
	}
	return p.WALDSN != ""
}

// Validate checks the configuration.
func (p *Cache) Validate() error {
	if p.walEnabled() && p.WALDSN == "" {
		return fmt.Errorf("cache: wal_invalidation needs wal_dsn, a replication connection to the database")
	}
	for name, d := range p.TableTTL {
		if d <= 0 {
			return fmt.Errorf("cache: table_ttl %q: want a positive duration", name)
		}
	}
	return nil
}

// Cleanup stops the WAL listener and the mirror, and closes Redis.
func (p *Cache) Cleanup() error {
	if p.stop != nil {
		close(p.stop)
	}
	p.wg.Wait()
	if p.st != nil {
		p.st.close()
	}
	return nil
}

func nameSet(names []string) map[relName]bool {
	m := map[relName]bool{}
	for _, n := range names {
		m[splitName(n)] = true
	}
	return m
}

// startupRec is what a client's startup packet said that may change results: every parameter
// but application_name.
type startupRec struct {
	settings string
	at       time.Time
}

// OnStartup remembers the client's startup parameters until its AuthHook, which sees the same
// net.Addr value (sluice passes the connection's RemoteAddr, the same pointer, to both).
func (p *Cache) OnStartup(ctx context.Context, s *plugin.Startup) error {
	if !p.enabled() || !pointerAddr(s.Addr) {
		return nil
	}
	keys := make([]string, 0, len(s.Params))
	for k := range s.Params {
		switch k {
		case "application_name", "fallback_application_name":
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "=" + s.Params[k] + "\x00")
	}
	p.startups.Store(s.Addr, startupRec{settings: b.String(), at: time.Now()})
	return nil
}

func pointerAddr(a net.Addr) bool {
	return a != nil && reflect.ValueOf(a).Kind() == reflect.Pointer && !reflect.ValueOf(a).IsNil()
}

// OnAuth gives the client its session state, with the settings of its startup packet.
func (p *Cache) OnAuth(ctx context.Context, c *plugin.Client) error {
	if !p.enabled() {
		return nil
	}
	ss := &session{}
	if pointerAddr(c.Addr) {
		if v, ok := p.startups.LoadAndDelete(c.Addr); ok {
			ss.settings, ss.known = v.(startupRec).settings, true
		}
	}
	if c.Values == nil {
		c.Values = map[string]any{}
	}
	c.Values["cache"] = ss
	return nil
}

// sweepStartups forgets startup packets whose client never logged in.
func (p *Cache) sweepStartups() {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.startups.Range(func(k, v any) bool {
			if time.Since(v.(startupRec).at) > time.Minute {
				p.startups.Delete(k)
			}
			return true
		})
	}
}

// maxKeyBuf bounds the scratch a session keeps for deriving keys.
const maxKeyBuf = 8 << 10

// session is the cache's state for one client, in Client.Values["cache"]. Settings and taint
// belong to OnQuery; the write sets are shared with OnResult and OnTxEnd (see mu).
type session struct {
	settings string
	known    bool   // settings came from the startup packet
	taint    string // why this session is no longer cached

	// pending are the writes whose request has not ended, in the order the client sent them
	// (a client that pipelines may have several requests under way). When a result says their
	// request ended (Result.Done), each is bumped if the client is then outside a transaction
	// block (committed, or rolled back) or moves to tx if inside one: a query's InTransaction
	// is judged before a pipelined BEGIN or COMMIT ahead of it has run, so the state after is
	// what counts. tx are the writes of the open block, bumped when it ends. mu guards both:
	// the result and transaction-end hooks run on the goroutine that reads the server, which
	// is not the client's while a pump goroutine reads it (session mode, an open batch, COPY).
	mu      sync.Mutex
	pending []pendingWrite
	tx      writeSet
	// open is set when the last result that said (Result.Done) found the client inside a
	// block: see OnTxEnd.
	open bool
	// bumping counts the bumps of the client's writes under way (applyHeld): taken off
	// pending or tx, they are not in Redis yet, and in session mode the query hook runs
	// meanwhile on the client's goroutine; a read the client sent behind its write would be
	// answered from an entry of the generation before it.
	bumping int

	keyBuf []byte // deriveKey's scratch, OnQuery's only

}

// busyLocked reports whether a write of the client may not be visible in the counters yet: one
// under way, in the open block, or ended and being bumped. ss.mu is held.
func (ss *session) busyLocked() bool {
	return len(ss.pending) > 0 || !ss.tx.empty() || ss.bumping > 0
}

// holdLocked counts a bump of w, which the caller takes off pending or tx under ss.mu (held),
// until applyHeld has done it: the session's reads stay held back (busyLocked) in between.
func (ss *session) holdLocked(w writeSet) {
	if !w.empty() {
		ss.bumping++
	}
}

// applyHeld bumps w, counted by holdLocked, and then lets the session's reads through. ss.mu is
// not held.
func (p *Cache) applyHeld(ss *session, w writeSet) {
	if w.empty() {
		return
	}
	defer func() {
		ss.mu.Lock()
		ss.bumping--
		ss.mu.Unlock()
	}()
	p.apply(w)
}

// maxPendingWrites bounds a session's list of writes under way.
const maxPendingWrites = 64

// pendingWrite is a write recorded at its query (Seq), until its request ends.
type pendingWrite struct {
	seq uint64
	w   writeSet
	// first, on writes folded into one (maxPendingWrites), is the Seq of the earliest of them
	// whose end has not been bumped yet; 0 otherwise.
	first uint64
}

// addPending records a write under way; ss.mu is held.
func (ss *session) addPending(pw pendingWrite) {
	if len(ss.pending) >= maxPendingWrites {
		// A client that pipelines without end, or a path where sluice cannot say which
		// requests ended (Result.Done 0): fold them into one, which ends with the last.
		var all writeSet
		for _, pw := range ss.pending {
			all.add(pw.w)
		}
		first := ss.pending[0].first
		if first == 0 {
			first = ss.pending[0].seq
		}
		last := ss.pending[len(ss.pending)-1].seq
		clear(ss.pending)
		ss.pending = append(ss.pending[:0], pendingWrite{seq: last, w: all, first: first})
	}
	ss.pending = append(ss.pending, pw)
}

// writeSet is the generations a statement or transaction must bump.
type writeSet struct {
	ident string
	oids  map[uint32]bool // tables written, not pinned to keys
	// pins are the tables written only by writes pinned to keys, with those keys (canonical,
	// maybe repeated): a table is in oids or in pins, never both.
	pins    map[uint32][]string
	epoch   bool
	refresh string // a database whose catalog the writes changed (DDL)
	user    string
}

func (w *writeSet) empty() bool { return !w.epoch && len(w.oids) == 0 && len(w.pins) == 0 }

// pin records keys of table oid, unless the table is written unpinned already; past
// maxPinnedKeys keys the table counts as unpinned (one bump, not hundreds).
func (w *writeSet) pin(oid uint32, keys []string) {
	if w.oids[oid] {
		return
	}
	if w.pins == nil {
		w.pins = map[uint32][]string{}
	}
	ks := append(w.pins[oid], keys...)
	if len(ks) > maxPinnedKeys {
		ks = sortedKeys(ks)
	}
	if len(ks) > maxPinnedKeys {
		delete(w.pins, oid)
		if w.oids == nil {
			w.oids = map[uint32]bool{}
		}
		w.oids[oid] = true
		return
	}
	w.pins[oid] = ks
}

func (w *writeSet) add(o writeSet) {
	if w.oids == nil {
		w.oids = map[uint32]bool{}
	}
	if w.ident != "" && o.ident != "" && w.ident != o.ident {
		w.epoch = true // two databases in one session's record: cannot happen; be safe
	}
	if o.ident != "" {
		w.ident = o.ident
	}
	for k := range o.oids {
		w.oids[k] = true
		delete(w.pins, k)
	}
	for k, keys := range o.pins {
		// A copy: o's slices may be appended to by its owner.
		w.pin(k, slices.Clone(keys))
	}
	w.epoch = w.epoch || o.epoch
	if o.refresh != "" {
		w.refresh, w.user = o.refresh, o.user
	}
}

func (p *Cache) session(c *plugin.Client) *session {
	if c == nil {
		return &session{}
	}
	if ss, ok := c.Values["cache"].(*session); ok {
		return ss
	}
	// A client that logged in before this plugin instance existed (a reload): its Values are
	// not written here, since the result hooks may run beside the query hook (another
	// goroutine) and a map must not be written by two.
	ss, _ := p.lateSessions.LoadOrStore(c, &session{})
	return ss.(*session)
}

// apply bumps the generations of w.
func (p *Cache) apply(w writeSet) {
	if w.empty() {
		return
	}
	if w.epoch || w.ident == "" {
		p.stats.epochBumps.Add(1)
		p.st.bumpEpoch("write to unknown tables")
	} else {
		oids := make([]uint32, 0, len(w.oids))
		for o := range w.oids {
			oids = append(oids, o)
		}
		pins := make(map[uint32][]string, len(w.pins))
		for o, ks := range w.pins {
			if !w.oids[o] {
				pins[o] = sortedKeys(slices.Clone(ks))
			}
		}
		p.stats.bumps.Add(int64(len(oids) + len(pins)))
		_ = p.st.bumpKeys(w.ident, oids, pins) // a failure turns the store dirty
	}
	if w.refresh != "" {
		p.refreshCatalog(w.refresh, w.user)
	}
}

// fill is what a miss hands to its own result: where to store it.
type fill struct {
	key    string
	ttl    time.Duration
	seq    uint64
	flight *flight
	lease  string // the token of the fill lease in Redis; "" when none was taken
	// point is set for a point read's entry, read is when its counters were read: it is
	// stored only within rowFillMargin of that (rowkeys.go).
	point bool
	read  int64
}

// flight is one client's fill of a key that others missed too: they wait for it rather than
// all run the query (100 concurrent misses make one query on Postgres).
type flight struct {
	done  chan struct{}
	start time.Time
}

// unknownStatement is the analysis of a Bind whose statement's text the hooks were not given:
// sluice keeps the texts of a bounded number of each client's prepared statements
// (maxHookStmts), and none of those prepared before a reload that added the hook. Such a
// statement may write anything; as an empty text it would have counted as no write at all, and
// its write was never bumped. (A statement whose text is really empty costs an epoch bump.)
var unknownStatement = &analysis{why: "statement text unknown", write: true, epoch: true}

// OnQuery answers eligible SELECTs from the cache, asks for the result of misses, and records
// writes.
func (p *Cache) OnQuery(ctx context.Context, q *plugin.Query) (plugin.Action, error) {
	if !p.enabled() {
		return plugin.ContinueQuery(), nil
	}
	ss := p.session(q.Client)
	an := p.an.analyze(q.Text)
	if q.Protocol == plugin.Bind && q.Text == "" {
		an = unknownStatement
	}
	if an.taint != "" && q.Protocol != plugin.Bind && ss.taint == "" {
		ss.taint = an.taint
	}
	if an.begins && !an.write && q.Protocol != plugin.Parse {
		// Until its request has ended, the client's reads sent after it run inside the block
		// it opens, while they look outside one (Query.InTransaction is judged before the
		// BEGIN's reply), and sluice would answer one from the cache there: with a REPEATABLE
		// READ snapshot older than the entry, or a SET LOCAL search_path that names another
		// table. A SET LOCAL in an extended-protocol batch holds for the rest of the batch (its
		// implicit transaction), which is no block at all. Recorded as a write of nothing, it
		// makes those reads bypass the cache ("own write under way") until its request has
		// ended: then they are in a block, or the transaction is over.
		ss.mu.Lock()
		ss.addPending(pendingWrite{seq: q.Seq})
		ss.mu.Unlock()
		return plugin.ContinueQuery(), nil
	}
	if an.write && q.Protocol != plugin.Parse {
		w := p.writes(q, an)
		ss.mu.Lock()
		ss.addPending(pendingWrite{seq: q.Seq, w: w})
		ss.mu.Unlock()
		return plugin.ContinueQuery(), nil
	}
	if q.Protocol == plugin.Parse {
		return plugin.ContinueQuery(), nil
	}
	ss.mu.Lock()
	busy := ss.busyLocked()
	ss.mu.Unlock()
	if busy {
		// A write of this client sent before this read has not ended: the read may run in
		// its transaction (a pipelined batch), so it must see that write, and must not store
		// what it sees before the write commits.
		p.bypass("own write under way")
		return plugin.ContinueQuery(), nil
	}
	c, oids, pd, ttl, seq, why := p.eligible(q, ss, an)
	if why != "" {
		p.bypass(why)
		return plugin.ContinueQuery(), nil
	}
	now := time.Now().UnixNano()
	if p.st.churn.paused(c.ident, oids, now) {
		p.bypass(bypassChurn)
		return plugin.ContinueQuery(), nil
	}
	// One deadline for the lookup's Redis calls (the versions, then the entry), shared with
	// the lookups that start at about the same time when the hook's context has no end of its own.
	rctx, cancel := ctx, context.CancelFunc(func() {})
	if ctx.Done() == nil {
		rctx = p.lookups.context(now)
	} else {
		rctx, cancel = context.WithTimeout(ctx, time.Duration(p.RedisTimeout))
	}
	genOIDs := oids
	if pd != nil {
		genOIDs = nil // a point read depends on its table's base and row counters instead
	}
	epoch, gens, rows, err := p.st.versions(rctx, c.ident, genOIDs, pd)
	if err != nil {
		cancel()
		if errors.Is(err, errWALNotConsumed) {
			p.bypass("WAL not consumed or behind")
		} else if errors.Is(err, errNotServing) {
			p.bypass("not serving")
		} else {
			p.bypass("redis error")
		}
		return plugin.ContinueQuery(), nil
	}
	var sum [sha256.Size]byte
	sum, ss.keyBuf = deriveKey(ss.keyBuf, c.ident, q, ss.settings, epoch, genOIDs, gens, pd, rows)
	if cap(ss.keyBuf) > maxKeyBuf {
		ss.keyBuf = nil // a huge query's text is not kept for the client's life
	}
	v := p.st.cached(sum[:], now)
	var key string
	if v == nil {
		key = p.st.entryKey(sum[:])
		v, err = p.st.get(rctx, key, now)
	}
	cancel()
	if err != nil {
		p.bypass("redis error")
		return plugin.ContinueQuery(), nil
	}
	if v != nil {
		if _, ok := p.st.serving(); !ok {
			p.bypass("not serving")
			return plugin.ContinueQuery(), nil
		}
		p.stats.hits.Add(1)
		p.st.churn.read(c.ident, oids, true, now)
		return plugin.AnswerWire(v), nil
	}
	f, waited := p.joinFlight(ctx, key)
	if waited {
		gctx, cancel := context.WithTimeout(ctx, time.Duration(p.RedisTimeout))
		v, err := p.st.get(gctx, key, time.Now().UnixNano())
		cancel()
		if _, ok := p.st.serving(); err == nil && v != nil && ok {
			p.stats.processWaitHits.Add(1)
			p.stats.hits.Add(1)
			return plugin.AnswerWire(v), nil
		}
		p.stats.processWaitMisses.Add(1)
		p.stats.misses.Add(1)
		return plugin.ContinueQuery(), nil // the fill failed: run it, without filling again
	}
	// This client fills key for this process; across processes, the lease decides.
	token := newLeaseToken()
	lctx, cancel := context.WithTimeout(ctx, time.Duration(p.RedisTimeout))
	held, err := p.st.lease(lctx, key, token, time.Duration(p.StampedeWait))
	cancel()
	if held || err != nil {
		// An error is no reason to wait (the breaker is open now): fill as without a lease.
		if held {
			p.stats.leases.Add(1)
		} else {
			token = ""
		}
		p.stats.misses.Add(1)
		p.st.churn.read(c.ident, oids, false, now)
		// A fill runs on the primary: with read/write splitting a replica may be behind a
		// write whose bump is done, and its rows, stored under the generations read after
		// that bump, would be served until the next write or the TTL, long after the replica
		// caught up. (Hits take no server; misses that do not fill go where sluice sends them.)
		return plugin.Action{Capture: &fill{key: key, ttl: ttl, seq: seq, flight: f, lease: token, point: pd != nil, read: now},
			CaptureLimit: p.MaxEntrySize, Role: "primary"}, nil
	}
	v = p.awaitLease(ctx, key, f.start.Add(time.Duration(p.StampedeWait)))
	p.land(&fill{key: key, flight: f}) // this process's waiters read the entry now, or run the query
	if v != nil {
		p.stats.leaseWaitHits.Add(1)
		p.stats.hits.Add(1)
		return plugin.AnswerWire(v), nil
	}
	p.stats.leaseWaitMisses.Add(1)
	p.stats.misses.Add(1)
	return plugin.ContinueQuery(), nil
}

// awaitLease polls Redis for the fill of key by the client of another sluice that holds its
// lease, until deadline, and returns the entry, or nil when the holder gave up (the lease is
// gone and no entry came), the deadline passed, or Redis failed: then the query runs on
// Postgres, without filling (the holder's result would be the same; a crowd of waiters
// filling it at once is what the lease is for). Each poll is one round trip with the
// Redis timeout, so a slow Redis delays the query by at most the deadline.
func (p *Cache) awaitLease(ctx context.Context, key string, deadline time.Time) []byte {
	pause := 5 * time.Millisecond
	for {
		t := time.NewTimer(min(pause, max(time.Until(deadline), 0)))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		pause = min(2*pause, 50*time.Millisecond)
		if _, ok := p.st.serving(); !ok {
			return nil
		}
		pctx, cancel := context.WithTimeout(ctx, time.Duration(p.RedisTimeout))
		v, leased, err := p.st.poll(pctx, key)
		cancel()
		switch {
		case err != nil:
			return nil
		case v != nil:
			return v
		case !leased, !time.Now().Before(deadline):
			return nil
		}
	}
}

// joinFlight makes this miss the one that fills key, or, when another client already fills it,
// waits for that fill (up to stampede_wait) and reports waited. A fill older than the wait is
// taken over: its client may have gone.
func (p *Cache) joinFlight(ctx context.Context, key string) (f *flight, waited bool) {
	wait := time.Duration(p.StampedeWait)
	mine := &flight{done: make(chan struct{}), start: time.Now()}
	for {
		v, loaded := p.flights.LoadOrStore(key, mine)
		if !loaded {
			return mine, false
		}
		other := v.(*flight)
		if time.Since(other.start) > wait {
			if p.flights.CompareAndSwap(key, other, mine) {
				return mine, false
			}
			continue
		}
		t := time.NewTimer(wait - time.Since(other.start))
		select {
		case <-other.done:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		return nil, true
	}
}

// land ends a fill: the clients waiting for it read the entry (or run the query).
func (p *Cache) land(f *fill) {
	if f.flight == nil {
		return
	}
	p.flights.CompareAndDelete(f.key, f.flight)
	close(f.flight.done)
}

// eligible decides whether q may be cached and, if so, returns what its key is made of: the
// catalog of its database and the tables it reads (sorted), with its TTL and the store's
// sequence. why is the reason when it may not.
//
// pd is set when q is a point read (rowkeys.go) whose entry may depend on the rows it names
// instead of its table.
func (p *Cache) eligible(q *plugin.Query, ss *session, an *analysis) (c *catalog, oids []uint32, pd *pointDeps, ttl time.Duration, seq uint64, why string) {
	switch {
	case an.nocache:
		return nil, nil, nil, 0, 0, "nocache hint"
	case q.InTransaction:
		return nil, nil, nil, 0, 0, "in a transaction"
	case q.Protocol == plugin.Parse:
		// The extended protocol is cached at the Bind, which has the parameters and the
		// result formats.
		return nil, nil, nil, 0, 0, "extended protocol: parse"
	case ss.taint != "":
		return nil, nil, nil, 0, 0, "session ran " + ss.taint
	case !ss.known:
		return nil, nil, nil, 0, 0, "startup settings unknown"
	case an.why != "":
		return nil, nil, nil, 0, 0, an.why
	}
	for _, prm := range q.Params {
		if !prm.Binary && timeWord(string(prm.Value)) {
			return nil, nil, nil, 0, 0, "volatile parameter"
		}
	}
	c = p.catalog(q.Client.Database, q.Client.User)
	if c == nil {
		return nil, nil, nil, 0, 0, "catalog not loaded"
	}
	if f, ok := c.funcsFit(an.funcs); !ok {
		return nil, nil, nil, 0, 0, "function " + f + " is not immutable"
	}
	deps := map[uint32]bool{}
	ttl = time.Duration(p.TTL)
	var only *rel // the table of a read of one
	for _, name := range an.reads {
		r, why := c.resolveRead(name, q.Client.User)
		if len(an.reads) == 1 {
			only = r
		}
		if why != "" {
			return nil, nil, nil, 0, 0, why
		}
		rn := relName{r.schema, r.name}
		if p.excluded[rn] || p.excluded[relName{Name: r.name}] {
			return nil, nil, nil, 0, 0, "excluded table"
		}
		if len(p.tables) > 0 && !an.hint && !p.tables[rn] && !p.tables[relName{Name: r.name}] {
			return nil, nil, nil, 0, 0, "table not listed"
		}
		if why := c.readSet(r, deps); why != "" {
			return nil, nil, nil, 0, 0, why
		}
		for _, k := range []relName{rn, {Name: r.name}} {
			if d, ok := p.ttls[k]; ok && d < ttl {
				ttl = d
			}
		}
	}
	if an.hintTTL > 0 {
		ttl = an.hintTTL
	}
	seq, ok := p.st.serving()
	if !ok {
		return nil, nil, nil, 0, 0, "redis unavailable or invalidation pending"
	}
	oids = make([]uint32, 0, len(deps))
	for o := range deps {
		oids = append(oids, o)
	}
	slices.Sort(oids)
	if an.point != nil && p.rowsEnabled() && only != nil && len(oids) == 1 && only.pointTable() && rowDepsFit(ttl) {
		pd = pointRead(only, an.point, q)
	}
	return c, oids, pd, ttl, seq, ""
}

// deriveKey hashes everything a result depends on: the database, the user (roles see
// different rows and columns), the startup settings, the protocol, the exact text, the
// parameters (value, NULL, format), the epoch and the generation of every table read.
// A point read's key has, instead of its table's generation, the table's base counter and each
// key with its row counter (rows: the base counter, then the keys').
func deriveKey(buf []byte, ident string, q *plugin.Query, settings, epoch string, oids []uint32, gens []int64, pd *pointDeps, rows []int64) (sum [sha256.Size]byte, grown []byte) {
	// Everything is appended to buf and hashed at once: no hash.Hash to allocate, and no
	// conversion of the text to bytes to hand to one.
	b := buf[:0]
	str := func(s string) {
		b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
		b = append(b, s...)
	}
	num := func(v uint64) { b = binary.BigEndian.AppendUint64(b, v) }
	str("sluice-cache-v1")
	str(ident)
	str(q.Client.Database)
	str(q.Client.User)
	str(settings)
	num(uint64(q.Protocol))
	str(q.Text)
	num(uint64(len(q.ResultFormats)))
	for _, f := range q.ResultFormats {
		num(uint64(uint16(f)))
	}
	num(uint64(len(q.Params)))
	for _, prm := range q.Params {
		switch {
		case prm.Value == nil:
			num(0)
		case prm.Binary:
			num(2)
		default:
			num(1)
		}
		b = binary.BigEndian.AppendUint64(b, uint64(len(prm.Value)))
		b = append(b, prm.Value...)
	}
	str(epoch)
	num(uint64(len(oids)))
	for i, o := range oids {
		num(uint64(o))
		num(uint64(gens[i]))
	}
	if pd != nil {
		str("point")
		num(uint64(pd.oid))
		num(uint64(rows[0]))
		num(uint64(len(pd.keys)))
		for i, k := range pd.keys {
			str(k)
			num(uint64(rows[i+1]))
		}
	}
	return sha256.Sum256(b), b
}

// writes returns what a writing statement must bump: each table it writes, except that a
// write pinned to primary-key values (rowkeys.go) records the keys of its table instead.
func (p *Cache) writes(q *plugin.Query, an *analysis) writeSet {
	var w writeSet
	c := q.Client
	if an.epoch {
		w.epoch = true
		if c != nil {
			w.refresh, w.user = c.Database, c.User
		}
		return w
	}
	if c == nil {
		w.epoch = true
		return w
	}
	cat := p.catalog(c.Database, c.User)
	if cat == nil {
		w.epoch = true
		return w
	}
	w.ident, w.oids = cat.ident, map[uint32]bool{}
	if len(an.userFuncs) > 0 && !cat.funcsHarmless(an.userFuncs) {
		w.epoch = true
	}
	if an.pin != nil && len(an.writes) == 1 && cat.funcsHarmless(an.pin.funcs) {
		if targets := cat.writeTargets(an.writes[0]); len(targets) > 0 {
			pins := map[uint32][]string{}
			for _, r := range targets {
				if keys, ok := pinnedKeys(cat, r, an.pin, q); ok {
					pins[r.oid] = keys
					// What its foreign key actions change still counts as a whole.
					for _, x := range r.cascades {
						if xr := cat.byOID[x]; xr != nil && cat.walkWrite(xr, 1, w.oids) {
							w.epoch = true
						}
					}
				} else if cat.walkWrite(r, 0, w.oids) {
					w.epoch = true
				}
			}
			for o, keys := range pins {
				w.pin(o, keys)
			}
			return w
		}
	}
	for _, name := range an.writes {
		if cat.writeSet(name, w.oids) {
			w.epoch = true
		}
	}
	return w
}

// OnResult stores a miss's result, and bumps the generations of writes that have run.
func (p *Cache) OnResult(ctx context.Context, r *plugin.Result) {
	if !p.enabled() {
		return
	}
	ss := p.session(r.Client)
	ss.mu.Lock()
	var ended writeSet
	if r.Done == 0 {
		// sluice cannot say which requests ended: bump every write under way, and keep them
		// for a result that can.
		for _, pw := range ss.pending {
			ended.add(pw.w)
		}
	} else {
		keep := ss.pending[:0]
		for _, pw := range ss.pending {
			switch {
			case pw.seq > r.Done && pw.first != 0 && pw.first <= r.Done:
				// Folded writes of which some have ended (committed, if outside a block)
				// and some have not run: bumped now, so that a read after this
				// ReadyForQuery sees those that ended, and kept to be bumped again at the
				// end of the last (the bump is early for the others, and so not their only
				// one). Kept only, the first write of a client with more than
				// maxPendingWrites under way was bumped when the last ended, long after its
				// ReadyForQuery.
				ended.add(pw.w)
				pw.first = r.Done + 1
				keep = append(keep, pw)
			case pw.seq > r.Done:
				keep = append(keep, pw) // pipelined behind: not run yet
			case r.TxStatus == 'I':
				ended.add(pw.w) // committed (or rolled back)
			default:
				ss.tx.add(pw.w) // inside a block: bumped when it ends
			}
		}
		clear(ss.pending[len(keep):])
		ss.pending = keep
		ss.open = r.TxStatus != 'I'
		if !ss.open {
			// Every block has ended: bump what tx still holds (kept by OnTxEnd for a block
			// that may have been open, see there).
			ended.add(ss.tx)
			ss.tx = writeSet{}
		}
	}
	ss.holdLocked(ended)
	ss.mu.Unlock()
	p.applyHeld(ss, ended)
	f, ok := r.Capture.(*fill)
	if !ok {
		return
	}
	defer p.land(f)
	pctx, cancel := context.WithTimeout(ctx, time.Duration(p.RedisTimeout))
	defer cancel()
	seq, serving := p.st.serving()
	late := f.point && time.Now().UnixNano()-f.read > int64(rowFillMargin)
	if r.Error != nil || r.Wire == nil || len(r.Wire) > p.MaxEntrySize || !serving || seq != f.seq || late {
		p.stats.fillsSkipped.Add(1)
		if f.lease != "" && serving {
			// Other sluices' waiters stop waiting and run the query.
			_ = p.st.release(pctx, f.key, f.lease)
		}
		return
	}
	ttl := f.ttl + time.Duration(rand.Int64N(int64(f.ttl)/10+1))
	var err error
	if f.lease != "" {
		err = p.st.putRelease(pctx, f.key, r.Wire, ttl, f.lease)
	} else {
		err = p.st.put(pctx, f.key, r.Wire, ttl)
	}
	if err == nil {
		p.stats.fills.Add(1)
	}
}

// OnTxEnd bumps what the transaction wrote. A rollback bumps too: it costs a few misses and
// covers PREPARE TRANSACTION, which ends the block without committing it yet.
func (p *Cache) OnTxEnd(ctx context.Context, c *plugin.Client, committed bool) {
	if !p.enabled() {
		return
	}
	ss := p.session(c)
	ss.mu.Lock()
	w := ss.tx
	if !ss.open {
		ss.tx = writeSet{}
	}
	// When the results delivered with this end found the client inside a block, one request
	// ended a block and opened another ("BEGIN; UPDATE a; COMMIT; BEGIN; UPDATE b" in one
	// Query, or one extended-protocol batch): the writes its results moved to tx are recorded
	// for the whole request and may be the open block's, not yet committed. They are bumped
	// now (for the block that ended) and kept, to be bumped again when the open one ends:
	// dropped here, the open block's writes were bumped only before their commit.
	ss.holdLocked(w)
	ss.mu.Unlock()
	// Pending writes stay: they were sent after the block's end, and have not run yet.
	p.applyHeld(ss, w)
}

// OnFunctionCall records a FunctionCall as a write of anything (the epoch), as a pending write
// numbered seq: the function, named by OID, may write any table, and no text says which.
func (p *Cache) OnFunctionCall(ctx context.Context, c *plugin.Client, seq uint64) {
	if !p.enabled() {
		return
	}
	ss := p.session(c)
	ss.mu.Lock()
	ss.addPending(pendingWrite{seq: seq, w: writeSet{epoch: true}})
	ss.mu.Unlock()
}

// OnDisconnect bumps anything the client left pending.
func (p *Cache) OnDisconnect(ctx context.Context, c *plugin.Client) {
	if !p.enabled() {
		return
	}
	ss := p.session(c)
	p.lateSessions.Delete(c)
	ss.mu.Lock()
	w := ss.tx
	for _, pw := range ss.pending {
		w.add(pw.w)
	}
	ss.tx, ss.pending = writeSet{}, nil
	ss.mu.Unlock()
	p.apply(w)
}

var (
	_ plugin.Provisioner      = (*Cache)(nil)
	_ plugin.Validator        = (*Cache)(nil)
	_ plugin.CleanerUpper     = (*Cache)(nil)
	_ plugin.StartupHook      = (*Cache)(nil)
	_ plugin.AuthHook         = (*Cache)(nil)
	_ plugin.QueryHook        = (*Cache)(nil)
	_ plugin.ResultHook       = (*Cache)(nil)
	_ plugin.TxEndHook        = (*Cache)(nil)
	_ plugin.FunctionCallHook = (*Cache)(nil)
	_ plugin.DisconnectHook   = (*Cache)(nil)
)

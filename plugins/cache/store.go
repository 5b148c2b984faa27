package cache

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/sluicepg/sluice/internal/textcache"
)

// store is the cache's Redis: entries, per-table generation counters and the global epoch.
//
// Every Redis error is a miss: the query goes to Postgres. An invalidation that could not be
// written is different: the counters in Redis are then behind the data, so an entry that looks
// fresh may not be. The store then turns dirty: it serves and fills nothing until it has
// written a new random epoch (which every key includes, so every entry written before is out
// of reach) — see docs/cache.md, "When Redis is slow or down".
type store struct {
	prefix  string
	walKey  string        // the WAL consumer's heartbeat (walBeat); "" without a WAL listener
	timeout time.Duration // per Redis call
	genTTL  time.Duration // how long a generation stays in the client-side cache
	opt     rueidis.ClientOption
	log     *slog.Logger

	// entries is the in-process copy of entries (l1_size), or nil. An entry's key names the
	// epoch and generations it was read at, so the value under a key never goes stale: the
	// copy needs no invalidation from Redis, only to expire when the entry does. Held here
	// rather than in rueidis's client-side cache, which is kept for the counters: a lookup
	// there costs a lock, an LRU update and hashes of the key and command.
	entries *textcache.Cache[l1Entry]

	client atomic.Pointer[rueidis.Client] // nil until connected

	mu    sync.Mutex // orders dirty and seq changes against the recovery
	dirty atomic.Bool
	seq   atomic.Uint64 // counts the times the store turned dirty
	why   atomic.Value  // string: why it is dirty

	breakerUntil atomic.Int64 // unix nanos before which Redis is not tried
	breakerFor   time.Duration

	floors sync.Map // generation or base key -> floor: the highest value this process wrote
	// rowFloors are the floors of row counters (rowkeys.go): rowFloor values, dropped by the
	// health loop once the client-side cache can no longer hold a value older than them
	// (genTTL after the bump), so that they do not grow with every key ever written.
	rowFloors sync.Map // row key -> rowFloor
	// genReads holds, per table (genID), its generation key and the pinned command that
	// reads it through the client-side cache: built once, not at every lookup (a command's
	// build hashes its key for the cluster slot). Commands come from client's builder, which
	// is set once.
	genReads  sync.Map // genID -> *genRead
	baseReads sync.Map // genID -> *genRead, of base counters
	epochRead atomic.Pointer[rueidis.Cacheable]
	walRead   atomic.Pointer[rueidis.Cacheable]
	// ctrs is the in-process copy of the counters read through rueidis's client-side cache.
	ctrs *counterCache
	// epochPin is the epoch this process wrote last, until the client-side cache shows it:
	// until Redis's invalidation message arrives, the cache may still hold the one before.
	epochPin atomic.Pointer[string]
	runID    atomic.Value

	stop chan struct{}
	done chan struct{}

	errs, bumpFailures atomic.Int64

	// churn counts each table's bumps, whether they come from writes through sluice or from
	// the WAL, for the cache's pause of tables written faster than read (churn.go).
	churn churn
}

// newStore starts a store. walKey is the key of the WAL consumer's heartbeat, or "" when no WAL
// listener runs: with one, entries are served only while the heartbeat says the WAL is consumed.
func newStore(addrs []string, prefix, walKey string, timeout time.Duration, l1Bytes int, log *slog.Logger) *store {
	if log == nil {
		log = slog.Default()
	}
	st := &store{prefix: prefix, walKey: walKey, timeout: timeout, genTTL: time.Minute, log: log,
		breakerFor: time.Second, stop: make(chan struct{}), done: make(chan struct{})}
	st.opt = rueidis.ClientOption{
		InitAddress:      addrs,
		ConnWriteTimeout: max(timeout, 200*time.Millisecond),
		Dialer:           net.Dialer{Timeout: max(timeout, 200*time.Millisecond)},
		DisableRetry:     true,
		ClientName:       "sluice-cache",
		// One connection per Redis server. rueidis would open 2^log2(GOMAXPROCS) (up to four)
		// and spread keys over them by hash slot: each with its own client-side cache of
		// l1_size, so the in-process cache held a share of the hot set per connection, and a
		// lookup's counters (a table's and a row's) landed on different connections, which
		// DoMultiCache serves with a goroutine each. One pipelined connection carries more
		// than a sluice's misses need.
		PipelineMultiplex: -1,
	}
	st.ctrs = newCounterCache(max(1<<16, l1Bytes/2/256))
	st.opt.OnInvalidations = func(ms []rueidis.RedisMessage) {
		if ms == nil {
			// Redis flushed, or the connection broke (Redis may come back from an older
			// snapshot, with counters at values entries held in the process were made at):
			// serve nothing until the health loop has written a new epoch.
			st.ctrs.invalidate(nil)
			st.markDirty("redis connection lost or flushed")
			return
		}
		keys := make([]string, len(ms))
		for i, m := range ms {
			k, err := m.ToString()
			if err != nil {
				st.ctrs.invalidate(nil) // not knowing which key, drop them all
				return
			}
			keys[i] = k
		}
		st.ctrs.invalidate(keys)
	}
	if l1Bytes > 0 {
		// Half for the entries, half for rueidis's cache of counters.
		st.entries = textcache.New[l1Entry](l1Bytes/2/l1MinEntry, l1Bytes/2)
		st.opt.CacheSizeEachConn = l1Bytes / 2
	}
	st.runID.Store("")
	// Until it has connected and written a new epoch, the store serves nothing: entries
	// written before this process started may have missed invalidations it cannot know of.
	st.markDirty("starting")
	go st.health()
	return st
}

// close stops the health loop and the client.
func (st *store) close() {
	close(st.stop)
	<-st.done
	if c := st.client.Load(); c != nil {
		(*c).Close()
	}
}

// markDirty records that an invalidation may be missing from Redis.
func (st *store) markDirty(why string) {
	st.mu.Lock()
	st.why.Store(why)
	st.dirty.Store(true)
	st.seq.Add(1)
	st.mu.Unlock()
}

// serving reports whether entries may be read and written now, and the sequence number a
// fill must still see when it stores its result.
func (st *store) serving() (uint64, bool) {
	seq := st.seq.Load()
	if st.dirty.Load() || time.Now().UnixNano() < st.breakerUntil.Load() || st.client.Load() == nil {
		return 0, false
	}
	return seq, true
}

// failed opens the breaker after a Redis error.
func (st *store) failed(err error) {
	if err == nil || rueidis.IsRedisNil(err) {
		return
	}
	st.errs.Add(1)
	st.breakerUntil.Store(time.Now().Add(st.breakerFor).UnixNano())
}

// health connects, renews the epoch while dirty, and watches for a restarted Redis (a new
// run_id: it may have come back from an older snapshot, with counters behind its entries).
func (st *store) health() {
	defer close(st.done)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		st.check()
		if i%40 == 0 {
			st.sweepRowFloors(time.Now().UnixNano())
		}
		select {
		case <-st.stop:
			return
		case <-t.C:
		}
	}
}

func (st *store) check() {
	c := st.client.Load()
	if c == nil {
		nc, err := rueidis.NewClient(st.opt)
		if err != nil {
			st.failed(err)
			return
		}
		st.client.Store(&nc)
		c = &nc
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*st.timeout+100*time.Millisecond)
	defer cancel()
	info, err := (*c).Do(ctx, (*c).B().Info().Section("server").Build()).ToString()
	if err != nil {
		st.failed(err)
		return
	}
	id := runID(info)
	if old := st.runID.Load().(string); old != id {
		if old != "" {
			st.markDirty("redis restarted")
		}
		st.checkEviction(ctx, *c)
	}
	st.runID.Store(id)
	if !st.dirty.Load() {
		st.breakerUntil.Store(0)
		return
	}
	st.mu.Lock()
	seq := st.seq.Load()
	st.mu.Unlock()
	if err := st.renewEpoch(ctx, *c); err != nil {
		st.failed(err)
		return
	}
	st.mu.Lock()
	if st.seq.Load() == seq {
		st.dirty.Store(false)
	}
	st.mu.Unlock()
	st.breakerUntil.Store(0)
}

func runID(info string) string { return infoField(info, "run_id") }

// infoField returns field's value in the text of Redis's INFO, or "".
func infoField(info, field string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// checkEviction warns when Redis may evict keys: a generation or row counter it evicts reads
// as zero again, which can make entries filled before its first bump current again. With
// noeviction, a full Redis refuses writes instead, and the cache stops serving until it can
// write again: slower, not wrong.
func (st *store) checkEviction(ctx context.Context, c rueidis.Client) {
	info, err := c.Do(ctx, c.B().Info().Section("memory").Build()).ToString()
	if err != nil {
		return // INFO may be renamed or disabled (managed Redis): nothing to say
	}
	limit, policy := infoField(info, "maxmemory"), infoField(info, "maxmemory_policy")
	if limit != "" && limit != "0" && policy != "" && policy != "noeviction" {
		st.log.Warn("cache: Redis may evict keys (maxmemory-policy "+policy+"); an evicted counter can make stale entries current again: use maxmemory-policy noeviction",
			"maxmemory", limit)
	}
}

func (st *store) epochKey() string { return st.prefix + "epoch" }

func (st *store) genKey(ident string, oid uint32) string {
	return st.prefix + "g:" + ident + ":" + strconv.FormatUint(uint64(oid), 10)
}

// baseKey is the counter of table oid's writes that are not pinned to keys (rowkeys.go).
func (st *store) baseKey(ident string, oid uint32) string {
	return st.prefix + "b:" + ident + ":" + strconv.FormatUint(uint64(oid), 10)
}

// rowKey is the counter of the pinned writes of key k (canonical) of table oid.
func (st *store) rowKey(ident string, oid uint32, k string) string {
	return st.prefix + "r:" + ident + ":" + strconv.FormatUint(uint64(oid), 10) + ":" + k
}

func (st *store) entryKey(sum []byte) string { return st.prefix + "e:" + hex.EncodeToString(sum) }

// renewEpoch writes a new random epoch: every key made before is out of reach.
func (st *store) renewEpoch(ctx context.Context, c rueidis.Client) error {
	var b [16]byte
	_, _ = rand.Read(b[:])
	e := hex.EncodeToString(b[:])
	if err := c.Do(ctx, c.B().Set().Key(st.epochKey()).Value(e).Build()).Error(); err != nil {
		return err
	}
	st.epochPin.Store(&e)
	return nil
}

// bumpEpoch renews the epoch for a change the cache cannot pin to tables (DDL ...). On failure
// the store turns dirty, which renews it later.
func (st *store) bumpEpoch(why string) {
	c := st.client.Load()
	if c == nil || time.Now().UnixNano() < st.breakerUntil.Load() {
		st.bumpFailures.Add(1)
		st.markDirty("epoch not written: " + why)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), st.timeout)
	defer cancel()
	if err := st.renewEpoch(ctx, *c); err != nil {
		st.failed(err)
		st.bumpFailures.Add(1)
		st.markDirty("epoch not written: " + why)
	}
}

var errBumpFailed = errors.New("cache: invalidation not written")

// bump increments the generations of oids in database ident, for writes not pinned to keys.
// On failure the store turns dirty, and it returns errBumpFailed (or Redis's error).
func (st *store) bump(ident string, oids []uint32) error { return st.bumpKeys(ident, oids, nil) }

// rowBumpScript bumps a row counter (KEYS[1]) to a value it never had: Redis's clock in µs, or
// one more than its value when that is higher; and makes it expire after ARGV[1] ms. See
// rowkeys.go for why a counter that expires must never come back with an old value. Lua's
// numbers are doubles: exact up to 2^53 µs, in the year 2255.
const rowBumpScript = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local v = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if v < now then v = now else v = v + 1 end
redis.call('SET', KEYS[1], string.format('%.0f', v), 'PX', ARGV[1])
return v`

// bumpKeys increments, in database ident, the generation and the base counter of each table of
// oids (writes not pinned to keys), and the generation of each table of pins and the row
// counter of each of its keys (writes pinned to those keys), in one round trip. A table in
// both counts as unpinned. On failure the store turns dirty, and it returns errBumpFailed (or
// Redis's error).
func (st *store) bumpKeys(ident string, oids []uint32, pins map[uint32][]string) error {
	if len(oids) == 0 && len(pins) == 0 {
		return nil
	}
	// Pinned bumps do not count as churn: they put only their keys' point reads out of reach.
	st.churn.wrote(ident, oids, time.Now().UnixNano())
	// The floors this bump raises hold for the Redis of this clean period only (see floor).
	seq := st.seq.Load()
	c := st.client.Load()
	if c == nil || time.Now().UnixNano() < st.breakerUntil.Load() {
		st.bumpFailures.Add(1)
		st.markDirty("invalidation not written")
		return errBumpFailed
	}
	ctx, cancel := context.WithTimeout(context.Background(), st.timeout)
	defer cancel()
	n := 2 * len(oids)
	for _, ks := range pins {
		n += 1 + len(ks)
	}
	cmds := make(rueidis.Commands, 0, n)
	keys := make([]string, 0, n)
	rows := make([]bool, 0, n)
	incr := func(key string) {
		keys = append(keys, key)
		rows = append(rows, false)
		cmds = append(cmds, (*c).B().Incr().Key(key).Build())
	}
	unpinned := make(map[uint32]bool, len(oids))
	for _, o := range oids {
		unpinned[o] = true
		incr(st.genKey(ident, o))
		incr(st.baseKey(ident, o))
	}
	expire := strconv.FormatInt((rowTTLBound + rowCounterMargin).Milliseconds(), 10)
	for o, ks := range pins {
		if unpinned[o] {
			continue
		}
		incr(st.genKey(ident, o))
		for _, k := range ks {
			key := st.rowKey(ident, o, k)
			keys = append(keys, key)
			rows = append(rows, true)
			cmds = append(cmds, (*c).B().Eval().Script(rowBumpScript).Numkeys(1).Key(key).Arg(expire).Build())
		}
	}
	now := time.Now().UnixNano()
	for i, r := range (*c).DoMulti(ctx, cmds...) {
		n, err := r.AsInt64()
		if err != nil {
			st.failed(err)
			st.bumpFailures.Add(1)
			st.markDirty("invalidation not written")
			return fmt.Errorf("%w: %w", errBumpFailed, err)
		}
		if rows[i] {
			st.raiseRowFloor(keys[i], n, now)
		} else {
			st.raiseFloor(keys[i], n, seq)
		}
	}
	return nil
}

// rowFloor is the highest value this process wrote to a row counter, and when.
type rowFloor struct{ n, at int64 }

// raiseRowFloor is raiseFloor for a row counter.
func (st *store) raiseRowFloor(key string, n, now int64) {
	for {
		old, loaded := st.rowFloors.LoadOrStore(key, rowFloor{n, now})
		if !loaded {
			return
		}
		o := old.(rowFloor)
		nf := rowFloor{max(o.n, n), now}
		if st.rowFloors.CompareAndSwap(key, old, nf) {
			return
		}
	}
}

// sweepRowFloors forgets the row floors written longer ago than the client-side cache keeps a
// value (with a margin): a read now gets a value from Redis at least as new.
func (st *store) sweepRowFloors(now int64) {
	old := now - int64(st.genTTL+10*time.Second)
	st.rowFloors.Range(func(k, v any) bool {
		if v.(rowFloor).at < old {
			st.rowFloors.CompareAndDelete(k, v)
		}
		return true
	})
}

// floor is the highest value this process wrote to a counter, and the store's seq when the bump
// began. A floor holds only while seq has not moved: every turn to dirty (a flush, a Redis
// restarted from an older snapshot, a lost connection, a missing epoch) may have put Redis's
// counters back below it, and a floor above them would hide the next writes' bumps (the key a
// read derives would stay the same while the counter moves under it: an entry filled then
// would be served after those writes). Ignoring an older floor is safe: the epoch is renewed
// after the turn, and a fill keyed by it read its rows after that, so after the write whose
// bump raised the floor.
type floor struct {
	n   int64
	seq uint64
}

// raiseFloor remembers n as the lowest value this process may read for key while the store's
// seq is still seq: the client-side cache may still hold an older one until Redis's
// invalidation message arrives.
func (st *store) raiseFloor(key string, n int64, seq uint64) {
	for {
		old, loaded := st.floors.LoadOrStore(key, floor{n, seq})
		if !loaded {
			return
		}
		o := old.(floor)
		if o.seq == seq && o.n >= n {
			return
		}
		nf := floor{n, seq}
		if o.seq == seq {
			nf.n = max(o.n, n)
		} else if o.seq > seq {
			return // a newer period's floor: ours is from before its turn to dirty
		}
		if st.floors.CompareAndSwap(key, old, nf) {
			return
		}
	}
}

var errNotServing = errors.New("cache: not serving")

// pointDeps are the counters a point read depends on instead of its table's generation: the
// table's base counter and the row counter of each key (rowkeys.go).
type pointDeps struct {
	oid  uint32
	keys []string // canonical, sorted, distinct
}

// versions reads the epoch and the generations of oids (in that order), through the
// client-side cache; for a point read (pd not nil), the base counter of pd's table then the
// row counter of each of its keys, in rows. With a WAL listener it also reads the WAL
// consumer's heartbeat, and returns errWALNotConsumed when no sluice consumes the WAL caught
// up: then nothing may be served (see walBeat).
func (st *store) versions(ctx context.Context, ident string, oids []uint32, pd *pointDeps) (string, []int64, []int64, error) {
	c := st.client.Load()
	if c == nil {
		return "", nil, nil, errNotServing
	}
	// What is read, in this order: the epoch, the WAL heartbeat (with a WAL listener), each
	// table's generation, and a point read's base counter and row counters.
	first := 1 // the index of the first table's generation
	if st.walKey != "" {
		first = 2
	}
	nrows := 0
	if pd != nil {
		nrows = 1 + len(pd.keys)
	}
	n := first + len(oids) + nrows
	keys := make([]string, n)
	keys[0] = st.epochKey()
	if st.walKey != "" {
		keys[1] = st.walKey
	}
	for i, o := range oids {
		keys[first+i] = st.genRead(*c, &st.genReads, ident, o).key
	}
	if pd != nil {
		keys[first+len(oids)] = st.genRead(*c, &st.baseReads, ident, pd.oid).key
		for i, k := range pd.keys {
			keys[first+len(oids)+1+i] = st.rowKey(ident, pd.oid, k)
		}
	}
	vals := make([]counter, n)
	now := time.Now().UnixNano()
	since := st.ctrs.seq.Load()
	period := st.seq.Load() // the floors that hold (see floor)
	var missing []int
	for i, k := range keys {
		v, ok := st.ctrs.get(k, now)
		if !ok {
			missing = append(missing, i)
		}
		vals[i] = v
	}
	if len(missing) > 0 {
		cmds := make([]rueidis.CacheableTTL, len(missing))
		for j, i := range missing {
			cmds[j] = rueidis.CT(st.counterRead(*c, ident, keys, first, len(oids), oids, pd, i), st.genTTL)
		}
		res := (*c).DoMultiCache(ctx, cmds...)
		for j, i := range missing {
			text, err := res[j].ToString()
			isNil := rueidis.IsRedisNil(err)
			if err != nil && !isNil {
				st.failed(err)
				return "", nil, nil, err
			}
			// No longer than rueidis keeps it.
			exp := now + int64(st.genTTL)
			if px := res[j].CachePXAT(); px > 0 && px*int64(time.Millisecond) < exp {
				exp = px * int64(time.Millisecond)
			}
			vals[i] = counter{val: text, isNil: isNil, exp: exp}
			st.ctrs.put(keys[i], vals[i], since)
		}
	}
	epoch := vals[0].val
	if st.walKey != "" && !beatCaughtUp(vals[1].val) {
		return "", nil, nil, errWALNotConsumed
	}
	if pin := st.epochPin.Load(); pin != nil {
		if epoch == *pin {
			st.epochPin.CompareAndSwap(pin, nil) // the cache has caught up
		} else {
			// This process renewed the epoch and the cache may not know yet: ask Redis
			// itself, which has ours or a later one.
			var err error
			epoch, err = (*c).Do(ctx, (*c).B().Get().Key(st.epochKey()).Build()).ToString()
			if err != nil && !rueidis.IsRedisNil(err) {
				st.failed(err)
				return "", nil, nil, err
			}
		}
	}
	if epoch == "" {
		// Flushed or deleted: the counters may have restarted from zero, and values an
		// entry's key was made of may come back. A new epoch puts every such key out of reach.
		st.markDirty("epoch missing in Redis")
		return "", nil, nil, errNotServing
	}
	nums := make([]int64, n-first)
	for i := range nums {
		v := vals[first+i]
		var num int64
		if !v.isNil {
			var err error
			if num, err = strconv.ParseInt(v.val, 10, 64); err != nil {
				err = fmt.Errorf("cache: counter %s holds %q: %w", keys[first+i], v.val, err)
				st.failed(err)
				return "", nil, nil, err
			}
		}
		// The client-side cache may still hold a value from before a bump of ours: never
		// read below what this process wrote.
		if i < len(oids)+min(nrows, 1) {
			if f, ok := st.floors.Load(keys[first+i]); ok && f.(floor).seq == period && f.(floor).n > num {
				num = f.(floor).n
			}
		} else if f, ok := st.rowFloors.Load(keys[first+i]); ok && f.(rowFloor).n > num {
			num = f.(rowFloor).n
		}
		nums[i] = num
	}
	return epoch, nums[:len(oids)], nums[len(oids):], nil
}

// counterRead is the client-side-cached read of keys[i], the value versions reads at index i
// (see there for the order): pinned commands for the epoch, the heartbeat and the tables'
// counters, built once; a row counter's, built now (there is one per key ever read).
func (st *store) counterRead(c rueidis.Client, ident string, keys []string, first, noids int, oids []uint32, pd *pointDeps, i int) rueidis.Cacheable {
	switch {
	case i == 0:
		ep := st.epochRead.Load()
		if ep == nil {
			cmd := c.B().Get().Key(st.epochKey()).Cache().Pin()
			ep = &cmd
			st.epochRead.Store(ep)
		}
		return *ep
	case i < first:
		wr := st.walRead.Load()
		if wr == nil {
			cmd := c.B().Get().Key(st.walKey).Cache().Pin()
			wr = &cmd
			st.walRead.Store(wr)
		}
		return *wr
	case i < first+noids:
		return st.genRead(c, &st.genReads, ident, oids[i-first]).cmd
	case i == first+noids:
		return st.genRead(c, &st.baseReads, ident, pd.oid).cmd
	}
	return c.B().Get().Key(keys[i]).Cache()
}

// genID names a table's generation counter.
type genID struct {
	ident string
	oid   uint32
}

// genRead is a generation counter's key and the pinned command that reads it.
type genRead struct {
	key string
	cmd rueidis.Cacheable
}

// genRead returns the read of the generation (or, from baseReads, the base counter) of table
// oid in database ident, building it the first time.
func (st *store) genRead(c rueidis.Client, reads *sync.Map, ident string, oid uint32) *genRead {
	id := genID{ident, oid}
	if g, ok := reads.Load(id); ok {
		return g.(*genRead)
	}
	key := st.genKey(ident, oid)
	if reads == &st.baseReads {
		key = st.baseKey(ident, oid)
	}
	g, _ := reads.LoadOrStore(id, &genRead{key: key, cmd: c.B().Get().Key(key).Cache().Pin()})
	return g.(*genRead)
}

// l1Entry is an entry's in-process copy: its wire result and when it expires (unix nanos).
type l1Entry struct {
	v   []byte
	exp int64
}

const (
	// l1MinEntry sizes the in-process cache's count of entries from its bytes: a point read's
	// entry (key, a row, the cache's bookkeeping) takes about this much.
	l1MinEntry = 512
	// l1Overhead is what an in-process entry costs besides its key and value.
	l1Overhead = 128
)

// keepEntry copies entry key into the in-process cache, if there is one, until exp. value is
// shared by every hit from then on, so it is capped: an append to it must copy.
func (st *store) keepEntry(key string, value []byte, exp int64) {
	if st.entries != nil {
		lk := st.localKey(key)
		st.entries.Replace(lk, l1Entry{v: value[:len(value):len(value)], exp: exp}, l1Overhead+len(lk)+len(value))
	}
}

// cached returns the in-process copy of the entry of digest sum (entryKey's argument), or nil;
// now is the time of the lookup (unix nanos).
func (st *store) cached(sum []byte, now int64) []byte {
	if st.entries == nil {
		return nil
	}
	if e, ok := st.entries.Get(sum); ok && now < e.exp {
		return e.v
	}
	return nil
}

// localKey is entry key's name in the in-process cache: its digest.
func (st *store) localKey(key string) string {
	var sum [sha256.Size]byte
	_, _ = hex.Decode(sum[:], []byte(strings.TrimPrefix(key, st.prefix+"e:")))
	return string(sum[:])
}

// get returns the entry under key, or nil; now is the time of the lookup (unix nanos).
func (st *store) get(ctx context.Context, key string, now int64) ([]byte, error) {
	if st.entries != nil {
		if e, ok := st.entries.GetString(st.localKey(key)); ok && now < e.exp {
			return e.v, nil
		}
	}
	c := st.client.Load()
	if c == nil {
		return nil, errNotServing
	}
	var b []byte
	var err error
	if st.entries == nil {
		b, err = (*c).Do(ctx, (*c).B().Get().Key(key).Build()).AsBytes()
	} else {
		res := (*c).DoMulti(ctx, (*c).B().Get().Key(key).Build(), (*c).B().Pttl().Key(key).Build())
		b, err = res[0].AsBytes()
		if err == nil {
			// -2: gone since the GET; -1: no expiry, which the cache never writes.
			if pttl, perr := res[1].AsInt64(); perr == nil && pttl > 0 {
				st.keepEntry(key, b, now+pttl*int64(time.Millisecond))
			}
		}
	}
	if rueidis.IsRedisNil(err) {
		return nil, nil
	}
	if err != nil {
		st.failed(err)
		return nil, err
	}
	return b, nil
}

// put stores value under key for ttl.
func (st *store) put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	c := st.client.Load()
	if c == nil {
		return errNotServing
	}
	start := time.Now().UnixNano()
	err := (*c).Do(ctx, (*c).B().Set().Key(key).Value(rueidis.BinaryString(value)).Px(ttl).Build()).Error()
	if err != nil {
		st.failed(err)
		return fmt.Errorf("cache: store an entry: %w", err)
	}
	st.keepEntry(key, value, start+int64(ttl))
	return nil
}

// breakerState says whether Redis is in use: "closed" (in use), "open" (an error opened the
// breaker: not tried until it closes, at most a second later) or "connecting" (no client yet).
func (st *store) breakerState() string {
	switch {
	case st.client.Load() == nil:
		return "connecting"
	case time.Now().UnixNano() < st.breakerUntil.Load():
		return "open"
	}
	return "closed"
}

func (st *store) leaseKey(entryKey string) string {
	return st.prefix + "l:" + strings.TrimPrefix(entryKey, st.prefix+"e:")
}

// newLeaseToken returns a token that names one holder of a lease.
func newLeaseToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// lease takes the fill lease of entry key for ttl with token, and reports whether it got it:
// false when another client (of any sluice sharing this Redis) holds it.
func (st *store) lease(ctx context.Context, key, token string, ttl time.Duration) (bool, error) {
	c := st.client.Load()
	if c == nil {
		return false, errNotServing
	}
	err := (*c).Do(ctx, (*c).B().Set().Key(st.leaseKey(key)).Value(token).Nx().Px(ttl).Build()).Error()
	if rueidis.IsRedisNil(err) {
		return false, nil // NX refused: held by another
	}
	if err != nil {
		st.failed(err)
		return false, fmt.Errorf("cache: take a fill lease: %w", err)
	}
	return true, nil
}

// releaseScript deletes a lease only if token still holds it: a lease that expired and was
// taken by another client is not ours to delete.
const releaseScript = `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`

func (st *store) releaseCmd(c rueidis.Client, key, token string) rueidis.Completed {
	return c.B().Eval().Script(releaseScript).Numkeys(1).Key(st.leaseKey(key)).Arg(token).Build()
}

// release gives up the lease of entry key held with token, so that clients waiting for its
// fill stop waiting.
func (st *store) release(ctx context.Context, key, token string) error {
	c := st.client.Load()
	if c == nil {
		return errNotServing
	}
	if err := (*c).Do(ctx, st.releaseCmd(*c, key, token)).Error(); err != nil {
		st.failed(err)
		return fmt.Errorf("cache: release a fill lease: %w", err)
	}
	return nil
}

// putRelease stores value under key for ttl and releases the lease held with token, in one
// round trip.
func (st *store) putRelease(ctx context.Context, key string, value []byte, ttl time.Duration, token string) error {
	c := st.client.Load()
	if c == nil {
		return errNotServing
	}
	start := time.Now().UnixNano()
	res := (*c).DoMulti(ctx,
		(*c).B().Set().Key(key).Value(rueidis.BinaryString(value)).Px(ttl).Build(),
		st.releaseCmd(*c, key, token))
	for _, r := range res {
		if err := r.Error(); err != nil {
			st.failed(err)
			return fmt.Errorf("cache: store an entry: %w", err)
		}
	}
	st.keepEntry(key, value, start+int64(ttl))
	return nil
}

// poll reads entry key and whether its lease is still held, in one round trip, bypassing the
// client-side cache: a waiter wants Redis's answer now.
func (st *store) poll(ctx context.Context, key string) (value []byte, leased bool, err error) {
	c := st.client.Load()
	if c == nil {
		return nil, false, errNotServing
	}
	res := (*c).DoMulti(ctx, (*c).B().Get().Key(key).Build(), (*c).B().Exists().Key(st.leaseKey(key)).Build())
	v, err := res[0].AsBytes()
	if err != nil && !rueidis.IsRedisNil(err) {
		st.failed(err)
		return nil, false, fmt.Errorf("cache: poll for a fill: %w", err)
	}
	n, err := res[1].AsInt64()
	if err != nil {
		st.failed(err)
		return nil, false, fmt.Errorf("cache: poll for a fill: %w", err)
	}
	return v, n > 0, nil
}

// usage counts the entries under the prefix in Redis, every sluice's, and the bytes of their
// values: a SCAN of the primaries with STRLEN of each key found. It is O(entries): callers
// keep its answer for a while.
func (st *store) usage(ctx context.Context) (entries, bytes int64, err error) {
	c := st.client.Load()
	if c == nil {
		return 0, 0, errNotServing
	}
	for addr, node := range (*c).Nodes() {
		role, err := node.Do(ctx, node.B().Role().Build()).ToArray()
		if err != nil {
			return 0, 0, fmt.Errorf("cache: count entries: role of %s: %w", addr, err)
		}
		if len(role) > 0 {
			if r, _ := role[0].ToString(); r != "master" {
				continue // a replica's keys are its primary's
			}
		}
		var cursor uint64
		for {
			e, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Match(st.prefix+"e:*").Count(1000).Build()).AsScanEntry()
			if err != nil {
				return 0, 0, fmt.Errorf("cache: count entries on %s: %w", addr, err)
			}
			if len(e.Elements) > 0 {
				cmds := make(rueidis.Commands, len(e.Elements))
				for i, k := range e.Elements {
					cmds[i] = node.B().Strlen().Key(k).Build()
				}
				for _, r := range node.DoMulti(ctx, cmds...) {
					n, err := r.AsInt64()
					if err != nil {
						return 0, 0, fmt.Errorf("cache: count entries on %s: %w", addr, err)
					}
					if n > 0 { // 0: expired between the SCAN and the STRLEN
						entries++
						bytes += n
					}
				}
			}
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
	}
	return entries, bytes, nil
}

package cache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// walBeat is the WAL consumer's heartbeat, the Redis key <prefix>wal:<slot>, written by the one
// sluice that streams the slot and read by every sluice at every lookup: entries are served only
// while it exists and says caughtUp. The consumer rewrites it every walTick with a TTL of
// walBeatTTL, and says caughtUp only while it has replayed every change committed before it took
// the slot, heard from the server in the last walHeard, and is behind by less than walMaxLag. So
// when it dies, others stop serving within walBeatTTL (at once when it stops cleanly: it deletes
// the key), and serve again only once the next consumer has bumped every change committed in
// between.
type walBeat struct {
	token    string // the consumer's session: a new random one per session
	caughtUp bool
	lagBytes int64
	lag      time.Duration
}

const (
	walTick    = 200 * time.Millisecond // how often the consumer pings the server and beats
	walBeatTTL = time.Second
	walHeard   = 500 * time.Millisecond
	walMaxLag  = time.Second
)

// errWALNotConsumed says no sluice consumes the WAL caught up: nothing may be served.
var errWALNotConsumed = errors.New("cache: WAL not consumed or behind")

// errWALTakenOver says another consumer's session claimed the heartbeat.
var errWALTakenOver = errors.New("cache: another sluice took the WAL over")

func (b walBeat) String() string {
	state := "behind"
	if b.caughtUp {
		state = "caught-up"
	}
	return fmt.Sprintf("%s %s %d %d", b.token, state, b.lagBytes, b.lag.Milliseconds())
}

// parseWALBeat reads a heartbeat; ok is false for "" (none) and for anything malformed.
func parseWALBeat(s string) (b walBeat, ok bool) {
	f := strings.Fields(s)
	if len(f) != 4 || (f[1] != "caught-up" && f[1] != "behind") {
		return walBeat{}, false
	}
	lagBytes, err1 := strconv.ParseInt(f[2], 10, 64)
	lagMS, err2 := strconv.ParseInt(f[3], 10, 64)
	if err1 != nil || err2 != nil {
		return walBeat{}, false
	}
	return walBeat{token: f[0], caughtUp: f[1] == "caught-up", lagBytes: lagBytes, lag: time.Duration(lagMS) * time.Millisecond}, true
}

// beatCaughtUp is parseWALBeat(v).caughtUp, without allocating: every lookup asks.
func beatCaughtUp(v string) bool {
	_, state, _ := strings.Cut(v, " ")
	return strings.HasPrefix(state, "caught-up ")
}

// beatScript writes a heartbeat (ARGV[2]) for ARGV[3] ms if the session ARGV[1] holds the key
// or nobody does, or whatever it holds when ARGV[4] is "claim". A consumer that lost its
// connection may not know yet that another took over: once that one has claimed the key, the
// old one cannot write it any more.
const beatScript = `local v = redis.call("GET", KEYS[1])
if ARGV[4] ~= "claim" and v and string.match(v, "^%S+") ~= ARGV[1] then return 0 end
redis.call("SET", KEYS[1], ARGV[2], "PX", ARGV[3])
return 1`

// endBeatScript deletes the heartbeat if the session ARGV[1] holds it.
const endBeatScript = `local v = redis.call("GET", KEYS[1])
if v and string.match(v, "^%S+") == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0`

// beatWAL writes the heartbeat b, which lasts walBeatTTL. claim writes it whatever the key
// holds (a new consumer's first beat); otherwise it returns errWALTakenOver when another
// session holds it.
func (st *store) beatWAL(ctx context.Context, b walBeat, claim bool) error {
	c := st.client.Load()
	if c == nil {
		return errNotServing
	}
	mode := ""
	if claim {
		mode = "claim"
	}
	n, err := (*c).Do(ctx, (*c).B().Eval().Script(beatScript).Numkeys(1).Key(st.walKey).
		Arg(b.token, b.String(), strconv.FormatInt(walBeatTTL.Milliseconds(), 10), mode).Build()).AsInt64()
	if err != nil {
		st.failed(err)
		return fmt.Errorf("cache: write the WAL heartbeat: %w", err)
	}
	if n == 0 {
		return errWALTakenOver
	}
	return nil
}

// endWAL deletes the heartbeat of session token, if it still holds it: others stop serving at
// once, not when it expires.
func (st *store) endWAL(ctx context.Context, token string) error {
	c := st.client.Load()
	if c == nil {
		return errNotServing
	}
	err := (*c).Do(ctx, (*c).B().Eval().Script(endBeatScript).Numkeys(1).Key(st.walKey).Arg(token).Build()).Error()
	if err != nil {
		st.failed(err)
		return fmt.Errorf("cache: delete the WAL heartbeat: %w", err)
	}
	return nil
}

// readWAL reads the heartbeat from Redis (not through the client-side cache); ok is false
// when there is none.
func (st *store) readWAL(ctx context.Context) (b walBeat, ok bool, err error) {
	c := st.client.Load()
	if c == nil {
		return walBeat{}, false, errNotServing
	}
	v, err := (*c).Do(ctx, (*c).B().Get().Key(st.walKey).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return walBeat{}, false, nil
	}
	if err != nil {
		st.failed(err)
		return walBeat{}, false, fmt.Errorf("cache: read the WAL heartbeat: %w", err)
	}
	b, ok = parseWALBeat(v)
	return b, ok, nil
}

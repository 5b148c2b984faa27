package cache

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// The mirror's side of Redis: its marker, the apply script, and the reads a transaction needs
// first. The mirror is the only writer of its keys (one sluice holds the slot's advisory lock),
// so what it reads before a transaction's script is still there when the script runs, unless
// Redis lost everything, which the script's marker check catches.

// applyScript applies one batch of changes atomically, only if Redis still holds the mirror
// this process is extending: the marker (KEYS[1]) must have the sync id ARGV[1] and the
// position ARGV[2]. It then sets the position to ARGV[3] and ARGV[4] more marker fields (pairs
// follow), and runs the operations that follow them:
//
//	H key replace nset field value... ndel field...   write a hash (replace: unlink it first)
//	S key value                                       write a string (a JSON row)
//	U n key...                                        unlink n keys
//
// A marker already at ARGV[3] means the batch was applied and its reply lost: "DONE". Any other
// marker is "MIRRORLOST". The check is in the script, not a WATCH before MULTI/EXEC, because a
// WATCH does not survive the reconnection to a Redis that restarted empty.
const applyScript = `
local sync = redis.call('HGET', KEYS[1], 'sync')
local lsn = redis.call('HGET', KEYS[1], 'lsn')
if sync ~= ARGV[1] then return redis.error_reply('MIRRORLOST no marker of this sync') end
if lsn ~= ARGV[2] then
  if lsn == ARGV[3] then return 'DONE' end
  return redis.error_reply('MIRRORLOST marker at ' .. tostring(lsn))
end
local i = 5 + 2 * tonumber(ARGV[4])
while i <= #ARGV do
  local op, key = ARGV[i], ARGV[i + 1]
  if op == 'H' then
    if ARGV[i + 2] == '1' then redis.call('UNLINK', key) end
    local n = tonumber(ARGV[i + 3])
    if n > 0 then redis.call('HSET', key, unpack(ARGV, i + 4, i + 3 + 2 * n)) end
    i = i + 4 + 2 * n
    local d = tonumber(ARGV[i])
    if d > 0 then redis.call('HDEL', key, unpack(ARGV, i + 1, i + d)) end
    i = i + 1 + d
  elseif op == 'S' then
    redis.call('SET', key, ARGV[i + 2])
    i = i + 3
  elseif op == 'U' then
    local n = tonumber(key)
    redis.call('UNLINK', unpack(ARGV, i + 2, i + 1 + n))
    i = i + 2 + n
  else
    return redis.error_reply('MIRRORLOST unknown operation ' .. tostring(op))
  end
end
if lsn ~= ARGV[3] then redis.call('HSET', KEYS[1], 'lsn', ARGV[3]) end
if tonumber(ARGV[4]) > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 5, 4 + 2 * tonumber(ARGV[4]))) end
return 'OK'
`

// errMirrorLost says Redis does not hold the mirror this process was extending (it restarted
// empty, was flushed, came back from an older snapshot, or someone wrote over the mirror's keys).
var errMirrorLost = errors.New("mirror: Redis lost the mirror")

// mirrorRedis is the mirror's Redis client: its own connections, with timeouts long enough for
// big transactions and snapshot batches (the cache's are tuned for quick reads).
type mirrorRedis struct {
	client rueidis.Client
	script *rueidis.Lua
	marker string
}

func newMirrorRedis(addrs []string, marker string) (*mirrorRedis, error) {
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:      addrs,
		ConnWriteTimeout: 10 * time.Second,
		Dialer:           net.Dialer{Timeout: 2 * time.Second},
		DisableCache:     true,
		DisableRetry:     true,
		ClientName:       "sluice-mirror",
	})
	if err != nil {
		return nil, fmt.Errorf("mirror: redis: %w", err)
	}
	if c.Mode() == rueidis.ClientModeCluster {
		c.Close()
		return nil, fmt.Errorf("mirror: Redis Cluster is not supported: a transaction's keys span hash slots, and the mirror applies it in one script")
	}
	return &mirrorRedis{client: c, script: rueidis.NewLuaScript(applyScript), marker: marker}, nil
}

func (r *mirrorRedis) close() { r.client.Close() }

// marker is the mirror's state in Redis, a hash: sync (a random id of the snapshot the mirror
// came from), state ("loading" until the snapshot is complete, then "ready"), lsn (the end of
// the last transaction applied), config (a digest of the mirror's configuration), and
// "schema:<table>" (the columns the snapshot read).
type marker map[string]string

func (r *mirrorRedis) readMarker(ctx context.Context) (marker, error) {
	m, err := r.client.Do(ctx, r.client.B().Hgetall().Key(r.marker).Build()).AsStrMap()
	if err != nil {
		return nil, fmt.Errorf("mirror: read marker %s: %w", r.marker, err)
	}
	return marker(m), nil
}

// startLoading replaces the marker with one of a new sync in state loading: from here until the
// snapshot is complete, a crash leaves a marker that says to load again.
func (r *mirrorRedis) startLoading(ctx context.Context, sync string) error {
	cmds := rueidis.Commands{
		r.client.B().Del().Key(r.marker).Build(),
		r.client.B().Hset().Key(r.marker).FieldValue().FieldValue("sync", sync).FieldValue("state", "loading").
			FieldValue("lsn", "-").Build(),
	}
	for _, res := range r.client.DoMulti(ctx, cmds...) {
		if err := res.Error(); err != nil {
			return fmt.Errorf("mirror: write marker %s: %w", r.marker, err)
		}
	}
	return nil
}

// apply runs the apply script: ops after moving the marker from lsn to next and setting fields.
func (r *mirrorRedis) apply(ctx context.Context, sync, lsn, next string, fields map[string]string, ops []string) error {
	args := make([]string, 0, 4+2*len(fields)+len(ops))
	args = append(args, sync, lsn, next, strconv.Itoa(len(fields)))
	for k, v := range fields {
		args = append(args, k, v)
	}
	args = append(args, ops...)
	err := r.script.Exec(ctx, r.client, []string{r.marker}, args).Error()
	if err != nil && strings.Contains(err.Error(), "MIRRORLOST") {
		return fmt.Errorf("%w: %v", errMirrorLost, err)
	}
	if err != nil {
		return fmt.Errorf("mirror: apply in redis: %w", err)
	}
	return nil
}

// preState reads what a transaction needs from Redis before it is applied, pipelined.
func (r *mirrorRedis) preState(ctx context.Context, rows map[string]*refNeed, truncated []*mirrorTable) (preState, error) {
	pre := preState{values: map[string]map[int]string{}, keys: map[*mirrorTable][]string{}}
	keys := make([]string, 0, len(rows))
	cmds := make(rueidis.Commands, 0, len(rows))
	for key, n := range rows {
		keys = append(keys, key)
		if n.table.json {
			cmds = append(cmds, r.client.B().Get().Key(key).Build())
			continue
		}
		fields := make([]string, len(n.cols))
		for j, i := range n.cols {
			fields[j] = n.table.cols[i]
		}
		cmds = append(cmds, r.client.B().Hmget().Key(key).Field(fields...).Build())
	}
	for i, res := range r.client.DoMulti(ctx, cmds...) {
		key, n := keys[i], rows[keys[i]]
		vals := map[int]string{}
		if n.table.json {
			s, err := res.ToString()
			if rueidis.IsRedisNil(err) {
				return pre, fmt.Errorf("%w: %s", errMirrorInconsistent, key)
			}
			if err != nil {
				return pre, fmt.Errorf("mirror: read %s: %w", key, err)
			}
			row, err := jsonColumns(s)
			if err != nil {
				return pre, fmt.Errorf("%w: %s: %v", errMirrorInconsistent, key, err)
			}
			for _, c := range n.cols {
				if v := row[n.table.cols[c]]; v != nil {
					vals[c] = *v
				}
			}
		} else {
			got, err := res.ToArray()
			if err != nil {
				return pre, fmt.Errorf("mirror: read %s: %w", key, err)
			}
			for j, c := range n.cols {
				if s, err := got[j].ToString(); err == nil {
					vals[c] = s
				}
			}
		}
		pre.values[key] = vals
	}
	for _, t := range truncated {
		keys, err := r.scan(ctx, t.ns)
		if err != nil {
			return pre, err
		}
		pre.keys[t] = keys
	}
	return pre, nil
}

// scan returns every key that starts with prefix.
func (r *mirrorRedis) scan(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	var cursor uint64
	for {
		e, err := r.client.Do(ctx, r.client.B().Scan().Cursor(cursor).Match(globEscape(prefix)+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			return nil, fmt.Errorf("mirror: scan %s*: %w", prefix, err)
		}
		keys = append(keys, e.Elements...)
		if cursor = e.Cursor; cursor == 0 {
			return keys, nil
		}
	}
}

// clear unlinks every key that starts with prefix (the keys of one table, before a snapshot).
func (r *mirrorRedis) clear(ctx context.Context, prefix string) error {
	keys, err := r.scan(ctx, prefix)
	if err != nil {
		return err
	}
	for len(keys) > 0 {
		n := min(len(keys), unlinkBatch)
		if err := r.client.Do(ctx, r.client.B().Unlink().Key(keys[:n]...).Build()).Error(); err != nil {
			return fmt.Errorf("mirror: unlink the keys of %s*: %w", prefix, err)
		}
		keys = keys[n:]
	}
	return nil
}

// globEscape quotes the characters SCAN's MATCH pattern gives a meaning to.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[]\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

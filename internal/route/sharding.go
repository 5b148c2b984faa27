package route

import (
	"strconv"
	"strings"
	"time"

	"github.com/sluicepg/sluice/internal/config"
	"github.com/sluicepg/sluice/internal/merge"
	"github.com/sluicepg/sluice/internal/shard"
)

// Sharding is how one pool's queries find their shard: pgcat's SET SHARD and SET SHARDING KEY,
// comment hints, and the key the parser reads out of the query; else default_shard.
type Sharding struct {
	Shards    int
	Sharder   shard.Sharder
	Extractor *shard.Extractor // nil without automatic_sharding_key
	Hints     *shard.Hints     // nil without shard_id_regex and sharding_key_regex
	// Planner plans queries that run on several shards (nil without automatic_sharding_key).
	Planner *merge.Planner
	// def is default_shard: a shard number, or defRandom / defRandomHealthy.
	def int
}

const (
	defRandom        = -1
	defRandomHealthy = -2
)

// newSharding builds a pool's sharding from its configuration, which Load has checked.
func newSharding(pc *config.Pool) *Sharding {
	fn, _ := shard.ParseFunction(pc.ShardingFunction)
	kt, _ := shard.ParseKeyType(pc.ShardingKeyType)
	sh := &Sharding{Shards: len(pc.Shards), Sharder: shard.Sharder{Func: fn, Type: kt, Shards: max(len(pc.Shards), 1)}}
	switch d := pc.DefaultShard; {
	case d == "random":
		sh.def = defRandom
	case d == "random_healthy":
		sh.def = defRandomHealthy
	default:
		sh.def, _ = strconv.Atoi(strings.TrimPrefix(d, "shard_"))
	}
	if len(pc.Shards) < 2 {
		return sh // one shard: nothing to find
	}
	if pc.AutomaticShardingKey != "" {
		sh.Extractor, _ = shard.New(shard.Options{Key: pc.AutomaticShardingKey, Sharder: sh.Sharder,
			MaxLength: min(pc.QueryParserMaxLength, maxParsedLength)})
		sh.Planner = merge.NewPlanner(merge.Options{MaxLength: min(pc.QueryParserMaxLength, maxParsedLength)})
	}
	sh.Hints, _ = shard.NewHints(pc.ShardIDRegex, pc.ShardingKeyRegex, pc.RegexSearchLimit)
	return sh
}

// Sharding returns database db's sharding.
func (t *Table) Sharding(db string) *Sharding { return t.sharding[db] }

// Default returns default_shard for a query that names none.
func (sh *Sharding) Default(tg *Target, n uint32) int {
	switch sh.def {
	case defRandom:
		return int(n % uint32(sh.Shards))
	case defRandomHealthy:
		// The first shard from a random start whose servers are not all banned.
		now := time.Now().UnixNano()
		for i := range sh.Shards {
			s := (int(n) + i) % sh.Shards
			for _, sv := range tg.Shards[s] {
				if !sv.Node.Banned(now) {
					return s
				}
			}
		}
		return int(n % uint32(sh.Shards))
	}
	return sh.def
}

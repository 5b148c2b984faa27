package shard

import (
	"fmt"
	"regexp"
	"strconv"
)

// DefaultRegexSearchLimit is regex_search_limit's default in pgcat: hints are searched for in
// the first 1,000 bytes of a query.
const DefaultRegexSearchLimit = 1000

// Hints finds pgcat's routing hints in a query's text, usually a comment such as
// /* shard_id: 2 */ or /* sharding_key: 1234 */: shard_id_regex and sharding_key_regex, whose
// first capture group is the shard number or the key, searched for in the first
// regex_search_limit bytes. The shard id is tried first; a capture that is not a number (or
// not a key of the key type) is no hint, and the key regex is tried next. Hints are checked
// for every Query and Parse, parser or no parser.
//
// pgcat searches a Parse message from its statement name on; sluice searches its query only.
type Hints struct {
	shardID, key *regexp.Regexp
	limit        int
}

// NewHints compiles the hint regexes (either may be empty: no such hint). limit is
// regex_search_limit; 0 means DefaultRegexSearchLimit. The regexes are Go's (RE2) syntax,
// which pgcat's (the Rust regex crate) shares for the usual patterns. It returns nil, nil
// when both regexes are empty.
func NewHints(shardIDRegex, keyRegex string, limit int) (*Hints, error) {
	if shardIDRegex == "" && keyRegex == "" {
		return nil, nil
	}
	h := &Hints{limit: limit}
	if h.limit <= 0 {
		h.limit = DefaultRegexSearchLimit
	}
	for _, r := range []struct {
		name, expr string
		dst        **regexp.Regexp
	}{{"shard_id_regex", shardIDRegex, &h.shardID}, {"sharding_key_regex", keyRegex, &h.key}} {
		if r.expr == "" {
			continue
		}
		re, err := regexp.Compile(r.expr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.name, err)
		}
		if re.NumSubexp() < 1 {
			return nil, fmt.Errorf("%s %q: needs a capture group around the value", r.name, r.expr)
		}
		*r.dst = re
	}
	return h, nil
}

// HintKind says which hint a query had.
type HintKind uint8

const (
	NoHint    HintKind = iota
	ShardHint          // shard_id_regex matched: Hint.Shard is the number given
	KeyHint            // sharding_key_regex matched: Hint.Shard is the key's shard
)

// Hint is the hint found in a query.
type Hint struct {
	Kind  HintKind
	Shard int
}

// Find returns the hint in query, computing a key's shard with s. A ShardHint's number is as
// written and may be s.Shards or more: the caller reports that shard as unknown (pgcat fails
// such a query too). Find does not keep query. A nil *Hints finds nothing.
func (h *Hints) Find(query []byte, s Sharder) Hint {
	if h == nil {
		return Hint{}
	}
	seg := query[:min(len(query), h.limit)]
	if h.shardID != nil {
		if m := h.shardID.FindSubmatchIndex(seg); m != nil && m[2] >= 0 {
			if n, err := strconv.ParseUint(string(seg[m[2]:m[3]]), 10, 31); err == nil {
				return Hint{Kind: ShardHint, Shard: int(n)}
			}
		}
	}
	if h.key != nil {
		if m := h.key.FindSubmatchIndex(seg); m != nil && m[2] >= 0 {
			if sh, err := s.Shard(seg[m[2]:m[3]]); err == nil {
				return Hint{Kind: KeyHint, Shard: sh}
			}
		}
	}
	return Hint{}
}

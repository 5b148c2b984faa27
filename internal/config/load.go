package config

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Error is one problem Load found in a configuration file. Load returns all of them joined with
// errors.Join, sorted by line; errors.As finds the first, and the joined error's
// Unwrap() []error lists them all.
type Error struct {
	File string
	Line int    // 1-based; 0 when unknown
	Key  string // dotted key, e.g. "pools.app.users.0.pool_size"; "" for a TOML syntax error
	Msg  string // the message after the position; it names the key itself
}

func (e *Error) Error() string { return formatPos(e.File, e.Line) + e.Msg }

// formatPos returns the "file:line: " prefix of a message, "file: " when the line is unknown, and
// "" when both are.
func formatPos(file string, line int) string {
	switch {
	case file != "" && line > 0:
		return file + ":" + strconv.Itoa(line) + ": "
	case file != "":
		return file + ": "
	case line > 0:
		return "line " + strconv.Itoa(line) + ": "
	}
	return ""
}

// Load reads the TOML file at path (pgcat's pgcat.toml format, with sluice's own keys beside
// pgcat's) and returns it defaulted and validated. A key pgcat knows and sluice does not implement
// yet is ignored with a Warning; a key nobody knows, a value of the wrong type and a value that
// fails validation are errors. On error the Config is nil, the error joins every problem found
// (each an *Error carrying file, line and key), and the warnings found so far are still returned.
func Load(path string) (*Config, []Warning, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	return parse(path, data)
}

// parse is Load without the file system; file names the input in messages.
func parse(file string, data []byte) (*Config, []Warning, error) {
	l := &loader{file: file}
	var top map[string]toml.Primitive
	md, err := toml.Decode(string(data), &top)
	if err != nil {
		return nil, nil, l.syntaxError(data, err)
	}
	l.md = &md
	l.lines = keyLines(string(data))
	root := &node{kids: map[string]*node{}}
	for k, p := range top {
		root.kids[k] = l.node(toml.Key{k}, p)
	}

	cfg := l.config(root)

	slices.SortStableFunc(l.errs, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Msg, b.Msg))
	})
	slices.SortStableFunc(l.warns, func(a, b Warning) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Key, b.Key))
	})
	if len(l.errs) > 0 {
		errs := make([]error, len(l.errs))
		for i, e := range l.errs {
			errs[i] = e
		}
		return nil, l.warns, errors.Join(errs...)
	}
	cfg.Path = file
	cfg.Digest = sha256.Sum256(data)
	return cfg, l.warns, nil
}

// loader collects what Load finds while it walks the file.
type loader struct {
	file  string
	md    *toml.MetaData
	lines map[string]int // see keyLines
	errs  []*Error
	warns []Warning

	// general is the [general] section decoded so far: pools inherit its auth_query keys.
	// generalAuthQuery is set when [general] has pgcat's auth_query, which lets users go
	// without a password.
	general          *General
	generalAuthQuery bool
}

// node is one key of the file with what it holds: a table (kids) or a plain value (val).
type node struct {
	key  toml.Key
	prim toml.Primitive
	val  any              // the value as BurntSushi/toml decodes it into an any
	kids map[string]*node // non-nil when val is a table
	line int              // 0 until looked up, -1 when unknown
}

// path is the node's dotted key as a user would write it.
func (n *node) path() string { return n.key.String() }

// sortedKids returns the node's children ordered by name, for a stable walk.
func (n *node) sortedKids() []*node {
	kids := make([]*node, 0, len(n.kids))
	for _, k := range n.kids {
		kids = append(kids, k)
	}
	slices.SortFunc(kids, func(a, b *node) int { return cmp.Compare(a.key[len(a.key)-1], b.key[len(b.key)-1]) })
	return kids
}

// node builds the tree of the value p at key: its own value, and for a table a node per key.
func (l *loader) node(key toml.Key, p toml.Primitive) *node {
	n := &node{key: key, prim: p}
	// Neither decode can fail: the value came from the same parse, and any and a map of
	// Primitives take whatever a table holds.
	_ = l.md.PrimitiveDecode(p, &n.val)
	if _, ok := n.val.(map[string]any); ok {
		var sub map[string]toml.Primitive
		_ = l.md.PrimitiveDecode(p, &sub)
		n.kids = make(map[string]*node, len(sub))
		for k, sp := range sub {
			n.kids[k] = l.node(append(key[:len(key):len(key)], k), sp)
		}
	}
	return n
}

// lineOf returns the line where the node's key is written, or, for a table that has no header of
// its own (its keys create it), the first line of its contents. It returns 0 when unknown.
func (l *loader) lineOf(n *node) int {
	if n.line == 0 {
		n.line = -1
		if line, ok := l.lines[n.path()]; ok && len(n.key) > 0 {
			n.line = line
		} else {
			for _, k := range n.kids {
				if kl := l.lineOf(k); kl > 0 && (n.line < 0 || kl < n.line) {
					n.line = kl
				}
			}
		}
	}
	return max(n.line, 0)
}

func (l *loader) syntaxError(data []byte, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		line := pe.Position.Line
		// The byte offset is the better guide: for a table header cut short by the end of its
		// line, v1.6.0 gives the offset of that newline but the number of the line after it.
		if start := pe.Position.Start; start > 0 && start <= len(data) {
			line = 1 + bytes.Count(data[:start], []byte("\n"))
		}
		msg := pe.Message
		if secretLine(data, line) {
			// The parser quotes what it found, which here is part of a secret.
			msg = "invalid value (not shown: the line holds a secret)"
		}
		return &Error{File: l.file, Line: line, Msg: "TOML syntax: " + msg}
	}
	return &Error{File: l.file, Msg: "TOML: " + err.Error()}
}

// secretLine reports whether line (from 1) of data sets a key whose value is a secret: a
// password, a token, a DSN or HTTP headers (plugins' Authorization).
func secretLine(data []byte, line int) bool {
	lines := strings.Split(string(data), "\n")
	if line < 1 || line > len(lines) {
		return false
	}
	key, _, ok := strings.Cut(lines[line-1], "=")
	if !ok {
		return false
	}
	key = strings.ToLower(key)
	for _, w := range []string{"password", "secret", "token", "dsn", "header", "authorization", "passwd"} {
		if strings.Contains(key, w) {
			return true
		}
	}
	return false
}

// errorf records an error at node n (the key it is about) with a message that starts with
// n's dotted key.
func (l *loader) errorf(n *node, format string, args ...any) {
	l.errs = append(l.errs, &Error{
		File: l.file,
		Line: l.lineOf(n),
		Key:  n.path(),
		Msg:  n.path() + ": " + fmt.Sprintf(format, args...),
	})
}

// errorAt records an error about key in the table n: at the key's line when the file has the key,
// else at the table's.
func (l *loader) errorAt(n *node, key, format string, args ...any) {
	if kid, ok := n.kids[key]; ok {
		l.errorf(kid, format, args...)
		return
	}
	line := l.lineOf(n)
	if line == 0 {
		line = -1 // known to be unknown: do not look it up
	}
	l.errorf(&node{key: append(n.key[:len(n.key):len(n.key)], key), line: line}, format, args...)
}

func (l *loader) warn(n *node, msg string) {
	l.warns = append(l.warns, Warning{File: l.file, Line: l.lineOf(n), Key: n.path(), Msg: msg})
}

// table reports an error and returns false when n does not hold a table.
func (l *loader) table(n *node, what string) bool {
	if n.kids == nil {
		l.errorf(n, "want %s, got %s", what, describe(n.val))
		return false
	}
	return true
}

// decodeKeys decodes the table n into dst with the setters in keys. tables names the keys the
// caller decodes itself; pgcat the keys accepted with a warning. Any other key is an error.
func decodeKeys[T any](l *loader, n *node, dst *T, keys map[string]setter[T], tables []string, pgcat map[string]*pgcatKey) {
	for _, kid := range n.sortedKids() {
		name := kid.key[len(kid.key)-1]
		if set, ok := keys[name]; ok {
			if err := set(dst, kid.val); err != nil {
				l.errorf(kid, "%v", err)
			}
			continue
		}
		if slices.Contains(tables, name) {
			continue
		}
		if pk, ok := pgcat[name]; ok {
			l.warn(kid, msgPgcatKey)
			l.checkPgcat(kid, pk)
			continue
		}
		known := append(append(keysOf(keys), tables...), keysOf(pgcat)...)
		l.unknownKey(kid, known)
	}
}

// checkPgcat checks the inside of an ignored pgcat block against what pgcat knows there.
func (l *loader) checkPgcat(n *node, pk *pgcatKey) {
	if pk == nil || n.kids == nil {
		return
	}
	for _, kid := range n.sortedKids() {
		name := kid.key[len(kid.key)-1]
		sub, ok := pk.Keys[name]
		if !ok {
			sub, ok = pk.Keys["*"]
		}
		if !ok {
			l.unknownKey(kid, keysOf(pk.Keys))
			continue
		}
		l.checkPgcat(kid, sub)
	}
}

// unknownKey reports a key nobody knows, with the nearest of the keys valid at its place, or the
// sections it belongs in if it is a known key written in the wrong one.
func (l *loader) unknownKey(n *node, known []string) {
	name := n.key[len(n.key)-1]
	parent := n.key[:len(n.key)-1]
	msg := "unknown key " + n.path()
	if s := Suggest(name, slices.DeleteFunc(known, func(k string) bool { return k == "*" })); s != "" {
		msg += " (did you mean " + append(parent[:len(parent):len(parent)], s).String() + "?)"
	} else if homes := keyHomes[name]; len(homes) > 0 {
		msg += " (" + name + " belongs in " + joinSections(homes) + ")"
	}
	l.errs = append(l.errs, &Error{File: l.file, Line: l.lineOf(n), Key: n.path(), Msg: msg})
}

// config decodes the whole file.
func (l *loader) config(root *node) *Config {
	cfg := &Config{General: defaultGeneral(), Pools: map[string]*Pool{}}
	l.general = &cfg.General
	var generalNode *node
	if g, ok := root.kids["general"]; ok {
		l.generalAuthQuery = hasKey(g, "auth_query")
		generalNode = g
	}
	for _, kid := range root.sortedKids() {
		switch name := kid.key[0]; name {
		case "general":
			if l.table(kid, "a table ([general])") {
				decodeKeys(l, kid, &cfg.General, generalKeys, nil, pgcatGeneral)
				l.clientTLS(kid, &cfg.General)
				l.serverTLS(kid, &cfg.General)
				l.checkAuthQuery(kid, cfg.General.AuthQuery, cfg.General.AuthQueryUser)
				if f := cfg.General.HBAFile; f != "" {
					if !filepath.IsAbs(f) {
						f = filepath.Join(filepath.Dir(l.file), f)
					}
					rules, err := LoadHBA(f)
					if err != nil {
						l.errorAt(kid, "hba_file", "%v", err)
					}
					cfg.General.HBA = append(cfg.General.HBA, rules...)
				}
			}
		case "pools":
			if l.table(kid, "a table of [pools.<db>] sections") {
				for _, pn := range kid.sortedKids() {
					if p := l.pool(pn); p != nil {
						cfg.Pools[p.Name] = p
					}
				}
			}
		case "plugins":
			cfg.Plugins = l.plugins(kid)
		case "pool":
			l.warn(kid, msgMisspeltPool)
			l.checkPgcat(kid, pgcatMisspelledPool)
		default:
			if pk, ok := pgcatTop[name]; ok {
				l.warn(kid, msgPgcatKey)
				l.checkPgcat(kid, pk)
				continue
			}
			l.unknownKey(kid, append(keysOf(pgcatTop), topTables...))
		}
	}
	if _, ok := root.kids["pools"]; !ok {
		l.errs = append(l.errs, &Error{File: l.file, Key: "pools", Msg: "no [pools.<db>] section: there is nothing to serve"})
	}
	for _, p := range cfg.Pools {
		inherit(p, &cfg.General)
	}
	l.admin(root, cfg)
	l.checkCert(cfg, generalNode)
	return cfg
}

// sharding checks a pool's sharding keys against each other and its shards.
func (l *loader) sharding(n *node, p *Pool) {
	for _, k := range []struct{ key, re string }{{"sharding_key_regex", p.ShardingKeyRegex}, {"shard_id_regex", p.ShardIDRegex}} {
		if k.re == "" {
			continue
		}
		re, err := regexp.Compile(k.re)
		if err != nil {
			l.errorAt(n, k.key, "not a regular expression: %v", err)
		} else if re.NumSubexp() < 1 {
			l.errorAt(n, k.key, "needs a capture group around the value, like '/\\* %s: (\\d+) \\*/'", strings.TrimSuffix(k.key, "_regex"))
		}
	}
	if k := p.AutomaticShardingKey; k != "" {
		if t, c, ok := strings.Cut(k, "."); !ok || t == "" || c == "" || strings.Contains(c, ".") {
			l.errorAt(n, "automatic_sharding_key", `must be "table.column" or "*.column", got %q`, k)
		}
	}
	switch d := p.DefaultShard; {
	case d == "random" || d == "random_healthy":
	case strings.HasPrefix(d, "shard_"):
		i, err := strconv.Atoi(strings.TrimPrefix(d, "shard_"))
		if err != nil || i < 0 {
			l.errorAt(n, "default_shard", `must be "shard_<n>", "random" or "random_healthy", got %q`, d)
		} else if len(p.Shards) > 0 && i >= len(p.Shards) {
			l.errorAt(n, "default_shard", "shard %d does not exist: the pool has %d shards", i, len(p.Shards))
		}
	default:
		l.errorAt(n, "default_shard", `must be "shard_<n>", "random" or "random_healthy", got %q`, d)
	}
}

// plugins reads a plugins table: one block per plugin, in the order of the file. The blocks'
// contents are checked by the plugins themselves when they are set up.
func (l *loader) plugins(n *node) []PluginBlock {
	if !l.table(n, "a table of [plugins.<name>] sections") {
		return nil
	}
	var out []PluginBlock
	for _, kid := range n.kids {
		name := kid.key[len(kid.key)-1]
		raw, ok := kid.val.(map[string]any)
		if !ok {
			l.errorf(kid, "must be a table ([%s])", kid.path())
			continue
		}
		out = append(out, PluginBlock{Name: name, File: l.file, Line: l.lineOf(kid), Raw: raw})
	}
	slices.SortFunc(out, func(a, b PluginBlock) int { return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Name, b.Name)) })
	return out
}

// checkCert refuses the cert method where no client certificate can be verified: it needs a
// TLS certificate of sluice's and tls_ca_file.
func (l *loader) checkCert(cfg *Config, gn *node) {
	g := &cfg.General
	uses := g.AuthType == AuthCert
	for _, r := range g.HBA {
		uses = uses || r.Method == AuthCert
	}
	for _, p := range cfg.Pools {
		for _, u := range p.Users {
			uses = uses || u.AuthType == AuthCert
		}
	}
	if !uses || (g.TLS != nil && g.TLS.ClientCAs != nil) {
		return
	}
	n := gn
	if n == nil {
		n = &node{key: toml.Key{"general"}, line: -1}
	}
	l.errorAt(n, "tls_ca_file", "the cert authentication method needs tls_certificate, tls_private_key and tls_ca_file, to verify client certificates")
}

// authQuery settles a pool's auth_query keys: its own, else [general]'s; and checks them.
func (l *loader) authQuery(n *node, p *Pool) {
	g := l.general
	if !hasKey(n, "auth_query") {
		p.AuthQuery = g.AuthQuery
	}
	if !hasKey(n, "auth_query_user") {
		p.AuthQueryUser = g.AuthQueryUser
	}
	if !hasKey(n, "auth_query_password") {
		p.AuthQueryPassword = g.AuthQueryPassword
	}
	if p.AuthQuery == "" && p.AuthQueryAnyUser {
		l.errorAt(n, "auth_query_any_user", "auth_query_any_user needs auth_query")
	}
	// An inherited problem is reported once, at [general].
	if hasKey(n, "auth_query") || hasKey(n, "auth_query_user") {
		l.checkAuthQuery(n, p.AuthQuery, p.AuthQueryUser)
	}
}

// checkAuthQuery checks the auth_query and auth_query_user of the table n.
func (l *loader) checkAuthQuery(n *node, query, user string) {
	switch {
	case query == "":
	case user == "":
		l.errorAt(n, "auth_query", "auth_query needs auth_query_user, the user sluice runs it as")
	case !strings.Contains(query, "$1"):
		l.errorAt(n, "auth_query", "auth_query must use $1 for the user name, e.g. SELECT usename, passwd FROM pg_shadow WHERE usename = $1")
	}
}

// pool decodes one [pools.<db>] section. It returns nil when the section is not a table.
func (l *loader) pool(n *node) *Pool {
	name := n.key[len(n.key)-1]
	if !l.table(n, "a table ([pools."+name+"])") {
		return nil
	}
	p := &Pool{Name: name, PoolMode: defaultPoolMode, LoadBalancingMode: BalanceRandom, DefaultRole: RoleAny, RoleDiscovery: true,
		ShardingFunction: "pg_bigint_hash", ShardingKeyType: "bigint", RegexSearchLimit: 1000, DefaultShard: "shard_0",
		CrossShardReads: CrossShardDefault, CrossShardWrites: CrossShardReject, CleanupServerConnections: true,
		ConnectTimeout: unset, IdleTimeout: unset, ServerLifetime: unset}
	if name == "" {
		l.errorf(n, "the database name must not be empty")
	}
	decodeKeys(l, n, p, poolKeys, poolTables, pgcatPool)
	if pn, ok := n.kids["plugins"]; ok {
		p.HasPlugins = true
		p.Plugins = l.plugins(pn)
	}
	l.authQuery(n, p)

	if un, ok := n.kids["users"]; !ok {
		l.errorAt(n, "users", "the pool has no users; add a [%s.users.0] section", n.path())
	} else if l.table(un, "a table of [users.<n>] sections") {
		l.users(n, un, p)
	}

	if sn, ok := n.kids["shards"]; !ok {
		l.errorAt(n, "shards", "the pool has no shards; add a [%s.shards.0] section", n.path())
	} else if l.table(sn, "a table of [shards.<n>] sections") {
		l.shards(sn, p)
	}
	l.sharding(n, p)
	return p
}

// users decodes [pools.<db>.users.<n>] in order of n (numbers by value, then any other names).
func (l *loader) users(pn, un *node, p *Pool) {
	kids := un.sortedKids()
	slices.SortStableFunc(kids, func(a, b *node) int {
		na, errA := strconv.ParseUint(a.key[len(a.key)-1], 10, 63)
		nb, errB := strconv.ParseUint(b.key[len(b.key)-1], 10, 63)
		switch {
		case errA == nil && errB == nil:
			return cmp.Compare(na, nb)
		case errA == nil:
			return -1
		case errB == nil:
			return 1
		}
		return 0
	})
	if len(kids) == 0 {
		l.errorf(un, "the pool has no users; add a [%s.0] section", un.path())
	}
	authQuery := l.generalAuthQuery || hasKey(pn, "auth_query")
	byName := map[string]*node{}
	for _, n := range kids {
		if !l.table(n, "a table (a user section)") {
			continue
		}
		u := &User{PoolSize: defaultPoolSize, ConnectTimeout: unset, IdleTimeout: unset, ServerLifetime: unset}
		decodeKeys(l, n, u, userKeys, nil, pgcatUser)
		p.Users = append(p.Users, u)

		if !hasKey(n, "username") {
			l.errorAt(n, "username", "a user needs a username")
		} else if isEmptyString(n.kids["username"]) {
			l.errorAt(n, "username", "must not be empty")
		} else if prev, dup := byName[u.Username]; dup && u.Username != "" {
			l.errorAt(n, "username", "user %q is already defined in [%s]", u.Username, prev.path())
		} else {
			byName[u.Username] = n
		}
		if !hasKey(n, "password") {
			if !authQuery {
				l.errorAt(n, "password", "a user needs a password (pgcat allows none only with auth_query)")
			}
			// The secret comes from auth_query at login.
			u.NoPassword = true
		}
		if u.AuthType == AuthSCRAM && len(u.Password) == 35 && strings.HasPrefix(u.Password, "md5") {
			l.errorAt(n, "auth_type", "scram-sha-256 cannot check a password stored as an md5 hash")
		}
		if u.AuthType == AuthMD5 && strings.HasPrefix(u.Password, "SCRAM-SHA-256$") {
			l.errorAt(n, "auth_type", "md5 cannot check a password stored as a SCRAM verifier")
		}
		if u.MinPoolSize > u.PoolSize {
			l.errorAt(n, "min_pool_size", "min_pool_size %d is larger than pool_size %d", u.MinPoolSize, u.PoolSize)
		}
	}
}

// inherit fills in what a pool and its users do not set themselves, as pgcat does: a user's
// connect_timeout, idle_timeout and server_lifetime are its own, else its pool's, else
// [general]'s; a pool's statement cache size is its own when above 0, else [general]'s.
func inherit(p *Pool, g *General) {
	or := func(v *time.Duration, parent time.Duration) {
		if *v == unset {
			*v = parent
		}
	}
	or(&p.ConnectTimeout, g.ConnectTimeout)
	or(&p.IdleTimeout, g.IdleTimeout)
	or(&p.ServerLifetime, g.ServerLifetime)
	if p.PreparedStatementsCacheSize == 0 {
		p.PreparedStatementsCacheSize = g.PreparedStatementsCacheSize
	}
	for _, u := range p.Users {
		or(&u.ConnectTimeout, p.ConnectTimeout)
		or(&u.IdleTimeout, p.IdleTimeout)
		or(&u.ServerLifetime, p.ServerLifetime)
	}
}

// isEmptyString reports whether n holds the string "".
func isEmptyString(n *node) bool {
	s, ok := n.val.(string)
	return ok && s == ""
}

// hasKey reports whether the table n sets key.
func hasKey(n *node, key string) bool {
	_, ok := n.kids[key]
	return ok
}

// shards decodes [pools.<db>.shards.<n>], which must be numbered 0, 1, ... without gaps.
func (l *loader) shards(sn *node, p *Pool) {
	byNum := map[int]*Shard{}
	maxNum := -1
	for _, n := range sn.sortedKids() {
		name := n.key[len(n.key)-1]
		num, err := strconv.Atoi(name)
		if err != nil || num < 0 || strconv.Itoa(num) != name {
			l.errorf(n, "shards are numbered 0, 1, 2, ...; %q is not a shard number", name)
			continue
		}
		if !l.table(n, "a table (a shard section)") {
			continue
		}
		byNum[num] = l.shard(n)
		maxNum = max(maxNum, num)
	}
	if len(sn.kids) == 0 {
		l.errorf(sn, "the pool has no shards; add a [%s.0] section", sn.path())
	}
	for i := 0; i <= maxNum; i++ {
		s, ok := byNum[i]
		if !ok {
			l.errorf(sn, "shards must be numbered 0 to %d without gaps; shard %d is missing", maxNum, i)
			return
		}
		p.Shards = append(p.Shards, s)
	}
}

func (l *loader) shard(n *node) *Shard {
	s := &Shard{}
	decodeKeys(l, n, s, shardKeys, shardTables, pgcatShard)
	if !hasKey(n, "database") {
		l.errorAt(n, "database", "a shard needs the database name on its servers")
	} else if isEmptyString(n.kids["database"]) {
		l.errorAt(n, "database", "must not be empty")
	}
	if sv, ok := n.kids["servers"]; ok {
		s.Servers = l.servers(sv)
	} else {
		l.errorAt(n, "servers", `a shard needs servers = [["host", port, "primary"], ...]`)
	}
	if mv, ok := n.kids["mirrors"]; ok {
		s.Mirrors = l.mirrors(mv, s.Servers)
	}
	return s
}

// mirrors decodes a shard's mirrors = [["host", port, server_index], ...], pgcat's query
// mirroring. pgcat also reads each entry as a table {host, port, mirroring_target_index}, and
// so does sluice. An index with no server behind it is a warning: pgcat loads such a file and
// never uses the mirror.
func (l *loader) mirrors(n *node, servers []Server) []Mirror {
	const want = `["host", port, server_index]`
	var entries []any
	switch v := n.val.(type) {
	case []any:
		entries = v
	case []map[string]any:
		for _, t := range v {
			entries = append(entries, t)
		}
	default:
		l.errorf(n, "want an array of %s entries, got %s", want, describe(n.val))
		return nil
	}
	var mirrors []Mirror
	for i, e := range entries {
		var host, port, index any
		switch e := e.(type) {
		case []any:
			if len(e) != 3 {
				l.errorf(n, "entry %d: want 3 elements %s, got %d", i, want, len(e))
				continue
			}
			host, port, index = e[0], e[1], e[2]
		case map[string]any:
			bad := false
			for k := range e {
				if k != "host" && k != "port" && k != "mirroring_target_index" {
					l.errorf(n, "entry %d: unknown key %q (a mirror has host, port and mirroring_target_index)", i, k)
					bad = true
				}
			}
			if bad {
				continue
			}
			host, port, index = e["host"], e["port"], e["mirroring_target_index"]
		default:
			l.errorf(n, "entry %d: want %s, got %s", i, want, describe(e))
			continue
		}
		h, hostOK := host.(string)
		p, portOK := port.(int64)
		x, indexOK := index.(int64)
		switch {
		case !hostOK:
			l.errorf(n, "entry %d: the host (first element) must be a string, got %s", i, describe(host))
		case h == "":
			l.errorf(n, "entry %d: the host must not be empty", i)
		case !portOK:
			l.errorf(n, "entry %d: the port (second element) must be an integer, got %s", i, describe(port))
		case p < 1 || p > 65535:
			l.errorf(n, "entry %d: the port must be between 1 and 65535, got %d", i, p)
		case !indexOK:
			l.errorf(n, "entry %d: the server index (third element) must be an integer, got %s", i, describe(index))
		case x < 0:
			l.errorf(n, "entry %d: the server index must not be negative, got %d", i, x)
		case x >= int64(len(servers)):
			l.warn(n, fmt.Sprintf("entry %d: the shard has no server %d (servers are numbered from 0); pgcat ignores this mirror and so does sluice", i, x))
		default:
			m := Mirror{Host: h, Port: int(p), Server: int(x)}
			if sv := servers[m.Server]; sv.Host == m.Host && sv.Port == m.Port {
				l.warn(n, fmt.Sprintf("entry %d: mirror %s:%d is server %d itself: every statement would run on it twice", i, h, p, x))
			}
			mirrors = append(mirrors, m)
		}
	}
	return mirrors
}

// servers decodes a shard's servers = [["host", port, "primary"|"replica"], ...].
func (l *loader) servers(n *node) []Server {
	const want = `["host", port, "primary"|"replica"]`
	entries, ok := n.val.([]any)
	if !ok {
		l.errorf(n, "want an array of %s entries, got %s", want, describe(n.val))
		return nil
	}
	if len(entries) == 0 {
		l.errorf(n, "a shard needs at least one server")
		return nil
	}
	var (
		servers   []Server
		primaries []int
		seen      = map[string]int{}
	)
	for i, e := range entries {
		fields, ok := e.([]any)
		if !ok {
			l.errorf(n, "entry %d: want %s, got %s", i, want, describe(e))
			continue
		}
		if len(fields) != 3 {
			l.errorf(n, "entry %d: want 3 elements %s, got %d", i, want, len(fields))
			continue
		}
		host, hostOK := fields[0].(string)
		port, portOK := fields[1].(int64)
		roleText, roleOK := fields[2].(string)
		role, knownRole := parseRole(roleText)
		switch {
		case !hostOK:
			l.errorf(n, "entry %d: the host (first element) must be a string, got %s", i, describe(fields[0]))
		case host == "":
			l.errorf(n, "entry %d: the host must not be empty", i)
		case !portOK:
			l.errorf(n, "entry %d: the port (second element) must be an integer, got %s", i, describe(fields[1]))
		case port < 1 || port > 65535:
			l.errorf(n, "entry %d: the port must be between 1 and 65535, got %d", i, port)
		case !roleOK:
			l.errorf(n, `entry %d: the role (third element) must be "primary" or "replica", got %s`, i, describe(fields[2]))
		case !knownRole:
			l.errorf(n, `entry %d: the role must be "primary" or "replica", got %q`, i, roleText)
		default:
			// pgcat refuses the same server twice in one role but takes it once in each, as
			// its docker example does to run a demo on one Postgres.
			addr := host + ":" + strconv.FormatInt(port, 10)
			if j, dup := seen[addr+" "+role]; dup {
				l.errorf(n, "entry %d: %s %s is already entry %d", i, role, addr, j)
				continue
			}
			if j, dup := seen[addr]; dup {
				l.warn(n, fmt.Sprintf("entry %d: server %s is also entry %d, in another role", i, addr, j))
			} else {
				seen[addr] = i
			}
			seen[addr+" "+role] = i
			if role == RolePrimary {
				primaries = append(primaries, i)
			}
			servers = append(servers, Server{Host: host, Port: int(port), Role: role})
		}
	}
	if len(primaries) > 1 {
		l.errorf(n, "a shard has at most one primary; entries %v are all primaries", primaries)
	}
	return servers
}

// clientTLS loads the client-side TLS certificate and settles tls_mode.
func (l *loader) clientTLS(n *node, g *General) {
	if (g.TLSCertificate == "") != (g.TLSPrivateKey == "") {
		l.errorAt(n, "tls_certificate", "tls_certificate and tls_private_key go together")
		return
	}
	if g.TLSCertificate == "" {
		if g.TLSMode != "" && g.TLSMode != TLSDisable {
			l.errorAt(n, "tls_mode", "tls_mode %q needs tls_certificate and tls_private_key", g.TLSMode)
		}
		g.TLSMode = TLSDisable
		return
	}
	if g.TLSMode == "" {
		g.TLSMode = TLSPrefer
	}
	rel := func(f string) string {
		if filepath.IsAbs(f) {
			return f
		}
		return filepath.Join(filepath.Dir(l.file), f)
	}
	cert, err := tls.LoadX509KeyPair(rel(g.TLSCertificate), rel(g.TLSPrivateKey))
	if err != nil {
		l.errorAt(n, "tls_certificate", "load the TLS certificate: %v", err)
		return
	}
	g.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	verify := g.TLSMode == TLSVerifyCA || g.TLSMode == TLSVerifyFull
	if verify && g.TLSCAFile == "" {
		l.errorAt(n, "tls_mode", "tls_mode %q needs tls_ca_file to check client certificates", g.TLSMode)
		return
	}
	if g.TLSCAFile != "" {
		pem, err := os.ReadFile(rel(g.TLSCAFile))
		if err != nil {
			l.errorAt(n, "tls_ca_file", "%v", err)
			return
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			l.errorAt(n, "tls_ca_file", "%s holds no PEM certificate", g.TLSCAFile)
			return
		}
		g.TLS.ClientCAs = pool
		// Under the other modes a certificate is optional, and checked when a client sends
		// one, as Postgres does with ssl_ca_file: the cert method relies on that.
		g.TLS.ClientAuth = tls.VerifyClientCertIfGiven
		if verify {
			g.TLS.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
}

// serverTLS settles server_tls_mode from pgcat's keys and loads server_tls_ca_file.
func (l *loader) serverTLS(n *node, g *General) {
	if g.ServerTLSMode == "" {
		switch {
		case g.ServerTLS && g.VerifyServerCertificate:
			g.ServerTLSMode = ServerTLSVerifyFull
		case g.ServerTLS:
			g.ServerTLSMode = ServerTLSRequire
		default:
			g.ServerTLSMode = ServerTLSDisable
		}
	}
	if g.ServerTLSCAFile == "" {
		return
	}
	f := g.ServerTLSCAFile
	if !filepath.IsAbs(f) {
		f = filepath.Join(filepath.Dir(l.file), f)
	}
	pem, err := os.ReadFile(f)
	if err != nil {
		l.errorAt(n, "server_tls_ca_file", "%v", err)
		return
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		l.errorAt(n, "server_tls_ca_file", "%s holds no PEM certificate", f)
		return
	}
	g.ServerRootCAs = pool
}

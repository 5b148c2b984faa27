package e2e

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Randomized differential tests of the wire protocol: a seeded generator draws message
// sequences from a grammar of what real clients send (simple queries, transactions, extended
// protocol pipelines, COPY) and, now and then, what they should not (unknown statements, wrong
// parameter counts, bad binary data). Each sequence runs against Postgres and through sluice,
// and the replies are compared with the normalisation of TestProtocolDifferential.
//
// SLUICE_PROTO_SEEDS=n runs n seeds instead of the default; SLUICE_PROTO_SEED=s runs seed s alone
// (or, with SLUICE_PROTO_SEEDS, n seeds from s), and SLUICE_PROTO_SEED=s1,s2,... those seeds.
// SLUICE_PROTO_PRINT=1 logs every sequence. A divergence logs the seed and the sequence in the
// form protoCases uses, to be minimised into a hand-written case.

// protoRandomSeeds is how many seeds `make test` runs per pool mode: about 20 s here.
const protoRandomSeeds = 60

// protoRandomShown is how many divergences are shown in full; the others are listed by seed.
const protoRandomShown = 10

func TestProtocolRandom(t *testing.T) {
	first, n := uint64(1), uint64(protoRandomSeeds)
	var list []uint64 // SLUICE_PROTO_SEED=s1,s2,...: these seeds
	if v := os.Getenv("SLUICE_PROTO_SEED"); v != "" {
		for _, f := range strings.Split(v, ",") {
			s, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
			if err != nil {
				t.Fatalf("SLUICE_PROTO_SEED: %v", err)
			}
			list = append(list, s)
		}
		first, n = list[0], 1
	}
	if v := os.Getenv("SLUICE_PROTO_SEEDS"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("SLUICE_PROTO_SEEDS: %v", err)
		}
		n = s
	}
	if len(list) < 2 {
		list = nil
		for seed := first; seed < first+n; seed++ {
			list = append(list, seed)
		}
	}
	ctx := context.Background()
	if err := pg.Exec(ctx, appDB, fmt.Sprintf("DROP TABLE IF EXISTS %s; CREATE TABLE %[1]s (v int); GRANT ALL ON %[1]s TO %s", protoTable, appUser)); err != nil {
		t.Fatal(err)
	}
	targets := protoTargets(t)
	var failed []string
	misjudged := 0
	for i, seed := range list {
		if testing.Verbose() && i%100 == 99 {
			t.Logf("seed %d: %d divergences so far %v", seed, len(failed), failed)
		}
		for _, tg := range targets[1:] {
			rounds := genProtoRounds(seed, tg.name == "transaction")
			diverged := false
			// A subtest, so that a login that fails (and ends it) does not end the others.
			ok := t.Run(fmt.Sprintf("%d/%s", seed, tg.name), func(t *testing.T) {
				if os.Getenv("SLUICE_PROTO_PRINT") != "" {
					t.Logf("sequence:\n%s", formatProtoRounds(rounds))
				}
				want, ends := runRandomReference(t, targets[0], rounds)
				for _, e := range ends {
					if e.quiet && len(rounds) > 0 {
						misjudged++
					}
				}
				got := runRandomTarget(t, tg, rounds, ends)
				if d := diffStreams(want, got); d != "" {
					diverged = true
					if len(failed) < protoRandomShown {
						t.Errorf("seed %d: %s mode differs from postgres (SLUICE_PROTO_SEED=%d):\n%s\n%s",
							seed, tg.name, seed, formatProtoRounds(rounds), d)
					} else {
						t.Fail()
					}
				}
			})
			if diverged || !ok {
				failed = append(failed, fmt.Sprintf("%d/%s", seed, tg.name))
			}
			if !ok {
				// After a backend crash Postgres restarts all of them: wait for it.
				checkFor(t, time.Minute, func() error { return pg.Exec(ctx, appDB, "SELECT 1") })
			}
		}
	}
	t.Logf("%d seeds from %d in session and transaction mode: %d divergences %v; %d rounds ended by silence", len(list), list[0], len(failed), failed, misjudged)
}

// genRound is a round of a generated sequence. The generator's guess of how many
// ReadyForQuery end it (rfq) may be wrong, since it does not know which statements fail; the
// reference run on Postgres then ends the round when Postgres goes quiet, and the run through
// sluice reads as many messages as Postgres sent.
type genRound struct {
	send []pgproto3.FrontendMessage
	rfq  int
	// copyIn ends the round at a CopyInResponse too.
	copyIn bool
	// closed: the round ends with a Terminate.
	closed bool
}

// roundEnd is how the reference run read a round: n messages, then a ReadyForQuery or
// CopyInResponse the generator expected, silence (quiet), or the end of the connection.
type roundEnd struct {
	n      int
	quiet  bool
	closed bool
}

// Silences that end a reference round: short when the round ends with a Flush and no answer
// is certain, longer when the generator expected more.
const (
	flushQuiet    = 200 * time.Millisecond
	misjudgeQuiet = time.Second
)

// runRandomReference runs rounds on Postgres and returns the normalised replies and how each
// round ended. The sequence ends with a ROLLBACK, so that a transaction it left open does not
// hold the pool's server, and a SELECT; then another client's query, as in runProtoCase.
func runRandomReference(t *testing.T, tg protoTarget, rounds []genRound) ([]string, []roundEnd) {
	t.Helper()
	c := dialRawAddr(t, tg.addr)
	c.login()
	defer c.conn.Close()
	var out []string
	var ends []roundEnd
	for i, r := range withEnding(rounds) {
		out = append(out, fmt.Sprintf("-- round %d", i+1))
		c.send(r.send...)
		var e roundEnd
		got := 0
		for {
			wait := misjudgeQuiet
			switch {
			case r.closed:
				wait = 10 * time.Second
			case r.rfq == 0 && !r.copyIn:
				wait = flushQuiet
			}
			m, err := c.receive(wait)
			if err != nil {
				if isTimeout(err) {
					e.quiet = r.rfq > 0 || r.copyIn
					break
				}
				e.closed = true
				if r.closed {
					out = leaveUnfinished(out)
				}
				out = append(out, "<closed>")
				break
			}
			e.n++
			if line := normaliseFor(c, m); line != "" {
				out = append(out, line)
			}
			if r.closed {
				continue
			}
			if _, ok := m.(*pgproto3.CopyInResponse); ok && r.copyIn {
				break
			}
			if _, ok := m.(*pgproto3.ReadyForQuery); ok {
				if got++; got >= r.rfq {
					break
				}
			}
		}
		ends = append(ends, e)
		if e.closed {
			break
		}
	}
	out = append(out, secondClient(t, tg.addr)...)
	return out, ends
}

// runRandomTarget runs rounds through sluice, reading for each round as many messages as
// Postgres sent. A message that does not come within 3 s is a hang, and ends the run.
func runRandomTarget(t *testing.T, tg protoTarget, rounds []genRound, ends []roundEnd) []string {
	t.Helper()
	c := dialRawAddr(t, tg.addr)
	c.login()
	var out []string
	for i, r := range withEnding(rounds)[:len(ends)] {
		out = append(out, fmt.Sprintf("-- round %d", i+1))
		c.send(r.send...)
		e := ends[i]
		if e.closed {
			// Read to the end (after a Terminate, or a FATAL error such as Postgres' for a
			// Parse inside a COPY); after a Terminate, how many replies come after the last
			// ReadyForQuery is not compared (leaveUnfinished).
			for {
				m, err := c.receive(3 * time.Second)
				if err == nil {
					if line := normaliseFor(c, m); line != "" {
						out = append(out, line)
					}
					continue
				}
				if r.closed {
					out = leaveUnfinished(out)
				}
				switch {
				case isTimeout(err):
					out = append(out, noReply)
				case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isConnReset(err):
					out = append(out, "<closed>")
				default:
					out = append(out, "<"+err.Error()+">")
				}
				break
			}
			break
		}
		for range e.n {
			m, err := c.receive(3 * time.Second)
			if err != nil {
				if isTimeout(err) {
					out = append(out, noReply)
				} else {
					out = append(out, "<closed>")
				}
				c.conn.Close()
				return append(out, secondClient(t, tg.addr)...)
			}
			if line := normaliseFor(c, m); line != "" {
				out = append(out, line)
			}
		}
	}
	if tg.leaveFirst {
		c.conn.Close()
	}
	out = append(out, secondClient(t, tg.addr)...)
	c.conn.Close()
	return out
}

// leaveUnfinished drops the replies after the last ReadyForQuery of the round that out ends
// with, a round ended by a Terminate. Postgres answers the messages of a batch that the
// Terminate cut short up to the first error or Flush among them, then aborts the batch;
// sluice does not send such a batch to a server at all when nothing complete goes before it,
// which aborts it as well. The client has left: it reads neither.
func leaveUnfinished(out []string) []string {
	for i := len(out) - 1; i >= 0; i-- {
		switch {
		case strings.HasPrefix(out[i], `{"Type":"ReadyForQuery"`):
			return out[:i+1]
		case strings.HasPrefix(out[i], "-- round "):
			return out[:i+1]
		}
	}
	return out
}

// secondClient is what runProtoCase checks after a case: another client's query is answered.
func secondClient(t *testing.T, addr string) []string {
	if got := <-otherClientQuery(t, addr); len(got) != 4 || got[1] != `DataRow "other"` {
		return append([]string{"-- second client:"}, got...)
	}
	return nil
}

// normaliseFor is normalise, with a notification marked as the client's own or not.
func normaliseFor(c *rawClient, m pgproto3.BackendMessage) string {
	line, _ := normalise(m)
	if n, ok := m.(*pgproto3.NotificationResponse); ok {
		line += fmt.Sprintf(" self=%v", n.PID == c.pid)
	}
	return line
}

// withEnding appends the round every sequence ends with, unless it ended the connection.
func withEnding(rounds []genRound) []genRound {
	if len(rounds) > 0 && rounds[len(rounds)-1].closed {
		return rounds
	}
	// The Sync ends a batch left open (after an error Postgres skips everything up to it,
	// and an open batch holds the pool's server in transaction mode).
	return append(rounds[:len(rounds):len(rounds)], genRound{
		send: []pgproto3.FrontendMessage{&pgproto3.Sync{}, &pgproto3.Query{String: "ROLLBACK"}, &pgproto3.Query{String: "SELECT 'end'"}},
		rfq:  3,
	})
}

// protoGen draws a sequence. It keeps a rough model of the session (statements parsed,
// portals bound, a transaction block open) so that most messages make sense to Postgres and
// some, on purpose, do not.
type protoGen struct {
	r *rand.Rand
	// txMode leaves out what transaction pooling does not keep for a client across
	// transactions: session state set outside a transaction block other than reported
	// settings (SQL PREPARE, temp tables, LISTEN, cursors WITH HOLD, SET of other settings).
	txMode  bool
	stmts   map[string]genStmt // named statements as the generator believes them
	portals []string           // portals bound in this batch
	inBlock bool               // a BEGIN was sent and not yet ended, as far as the generator knows
}

// genStmt is a statement text and its number of parameters, with a kind for parameters that
// are sent in binary: 'i' int4, 't' text.
type genStmt struct {
	sql   string
	param string // one letter per parameter
}

var genExtended = []genStmt{
	{"SELECT 1", ""},
	{"SELECT $1::int AS a", "i"},
	{"SELECT $1::int + $2::int AS s", "ii"},
	{"SELECT $1::text AS t, $2::int AS i", "ti"},
	{"SELECT $1 AS unknown", "t"},
	{"SELECT g FROM generate_series(1, 5) g", ""},
	{"SELECT g, g::text AS t FROM generate_series(1, $1::int) g", "i"},
	{"SELECT 1/0", ""},
	{"SELECT 1 / (3 - g) FROM generate_series(1, 5) g", ""},
	{"SELEC 1", ""},
	{"SELECT * FROM no_such_table", ""},
	{"", ""},
	{"SELECT 1; SELECT 2", ""},
	{"BEGIN", ""},
	{"COMMIT", ""},
	{"ROLLBACK", ""},
	{"SAVEPOINT a", ""},
	{"ROLLBACK TO SAVEPOINT a", ""},
	{"RELEASE SAVEPOINT a", ""},
	{"INSERT INTO " + protoTable + " VALUES ($1::int) RETURNING v", "i"},
	{"INSERT INTO " + protoTable + " SELECT g FROM generate_series(1, 3) g RETURNING v", ""},
	{"INSERT INTO " + protoTable + " VALUES (1)", ""},
	{"COPY (SELECT g FROM generate_series(1, 3) g) TO STDOUT", ""},
	{"SET application_name = 'ext'", ""},
	{"SET LOCAL DateStyle = 'SQL, DMY'", ""},
	{"SHOW application_name", ""},
	{"SELECT '2024-02-03'::date AS d", ""},
	{"DECLARE c CURSOR FOR SELECT g FROM generate_series(1, 5) g", ""},
	{"FETCH 2 FROM c", ""},
	{"CLOSE c", ""},
	{"SET TimeZone = 'UTC'", ""},
	{"SET standard_conforming_strings = off", ""},
	{"DO $$ BEGIN RAISE NOTICE 'note'; END $$", ""},
}

var genSimple = []string{
	"SELECT 1",
	"SELECT g FROM generate_series(1, 3) g",
	"",
	";;SELECT 1;;",
	"SELECT 1; SELECT 2",
	"SELECT 1; SELECT 1/0; SELECT 3",
	"SELECT 1/0",
	"SELEC 1",
	"BEGIN",
	"BEGIN",
	"COMMIT",
	"ROLLBACK",
	"SAVEPOINT a",
	"ROLLBACK TO a",
	"RELEASE a",
	"BEGIN; SELECT 1",
	"SELECT 1; COMMIT; SELECT 2",
	"BEGIN; SELECT 1/0; COMMIT",
	"INSERT INTO " + protoTable + " VALUES (1)",
	"INSERT INTO " + protoTable + " VALUES (2) RETURNING v",
	"COPY (SELECT g FROM generate_series(1, 3) g) TO STDOUT",
	"COPY (SELECT 1 / (3 - g) FROM generate_series(1, 5) g) TO STDOUT",
	"DO $$ BEGIN RAISE NOTICE 'note'; END $$",
	"SET application_name = 'gen1'",
	"SET application_name = 'gen2'",
	"RESET application_name",
	"SET DateStyle = 'German'",
	"SET DateStyle = 'ISO, MDY'",
	"SET LOCAL DateStyle = 'SQL, DMY'",
	"SET TimeZone = 'Asia/Tokyo'",
	"RESET TimeZone",
	"SET IntervalStyle = 'iso_8601'",
	"RESET ALL",
	"SHOW application_name",
	"SHOW DateStyle",
	"SELECT '2024-02-03'::date AS d, interval '1 day 2 hours' AS i, timestamptz '2024-01-01 00:00+00' AS t",
	"SET application_name = 'a'; SELECT 1/0",
	"DECLARE c CURSOR FOR SELECT g FROM generate_series(1, 5) g",
	"FETCH 2 FROM c",
	"CLOSE c",
	"DEALLOCATE ALL",
	"SELECT * FROM no_such_table",
	"SET standard_conforming_strings = off",
	"RESET standard_conforming_strings",
	"SELECT 'a\\b' AS s",
	"SET client_encoding = 'LATIN1'",
	"RESET client_encoding",
	"BEGIN; SET LOCAL application_name = 'local'; COMMIT",
	"BEGIN; SET application_name = 'intx'; ROLLBACK",
	"SAVEPOINT b; SET TimeZone = 'UTC'; ROLLBACK TO b",
	"SET TimeZone = 'UTC'; SELECT 1/0",
}

// genSessionOnly is state a session keeps, which transaction pooling does not promise to.
var genSessionOnly = []string{
	"PREPARE q AS SELECT 7",
	"EXECUTE q",
	"DEALLOCATE q",
	"CREATE TEMP TABLE IF NOT EXISTS tt (v int)",
	"INSERT INTO tt VALUES (1)", // no RETURNING: a temp table's OID (in RowDescription) is each session's own
	"LISTEN gen",
	"NOTIFY gen, 'x'",
	"UNLISTEN *",
	"DECLARE h CURSOR WITH HOLD FOR SELECT g FROM generate_series(1, 4) g",
	"FETCH 1 FROM h",
	"SET work_mem = '8MB'",
	"SHOW work_mem",
	"DISCARD ALL",
}

var genStmtNames = []string{"", "", "s1", "s2", "s3"}

func genProtoRounds(seed uint64, txMode bool) []genRound {
	g := &protoGen{r: rand.New(rand.NewPCG(seed, 0x5eed)), txMode: txMode, stmts: map[string]genStmt{}}
	var rounds []genRound
	for n := 2 + g.r.IntN(7); len(rounds) < n; {
		switch k := g.r.IntN(100); {
		case k < 30:
			rounds = append(rounds, g.simpleRound())
		case k < 75:
			rounds = append(rounds, g.extendedRound())
		case k < 82:
			rounds = append(rounds, g.suspendRound())
		case k < 92:
			rounds = append(rounds, g.copyRounds()...)
		case k < 94:
			rounds = append(rounds, g.functionCallRound())
		case k < 96:
			rounds = append(rounds, g.strayCopyRound())
		default:
			rounds = append(rounds, g.simpleRound())
		}
	}
	if g.r.IntN(25) == 0 {
		rounds = append(rounds, g.terminateRound())
	}
	return rounds
}

func (g *protoGen) pick(list []string) string { return list[g.r.IntN(len(list))] }

func (g *protoGen) query() string {
	if !g.txMode && g.r.IntN(6) == 0 {
		return g.pick(genSessionOnly)
	}
	sql := g.pick(genSimple)
	switch {
	case strings.HasPrefix(sql, "BEGIN"):
		g.inBlock = true
	case sql == "COMMIT" || sql == "ROLLBACK":
		g.inBlock = false
	}
	return sql
}

func (g *protoGen) simpleRound() genRound {
	var r genRound
	for range 1 + g.r.IntN(3) {
		r.send = append(r.send, &pgproto3.Query{String: g.query()})
		r.rfq++
	}
	g.portals = nil
	delete(g.stmts, "") // a simple Query drops the unnamed statement
	return r
}

// extendedRound is a pipeline of units (Parse, Bind, Describe, Execute, Close, in the usual
// orders and some unusual ones) with one or more Syncs, the last message a Sync.
func (g *protoGen) extendedRound() genRound {
	var r genRound
	for units := 1 + g.r.IntN(5); units > 0; units-- {
		r.send = append(r.send, g.unit()...)
		switch k := g.r.IntN(10); {
		case k < 2:
			r.send = append(r.send, &pgproto3.Sync{})
			r.rfq++
			g.endBatch()
		case k < 3:
			r.send = append(r.send, &pgproto3.Flush{})
		}
		if g.r.IntN(40) == 0 {
			// A simple Query inside a batch: it is skipped if something before it failed,
			// which the generator cannot know; the reference run then ends the round by
			// silence.
			r.send = append(r.send, &pgproto3.Query{String: g.query()})
			r.rfq++
			delete(g.stmts, "")
		}
	}
	r.send = append(r.send, &pgproto3.Sync{})
	r.rfq++
	if g.r.IntN(10) == 0 {
		r.send = append(r.send, &pgproto3.Sync{})
		r.rfq++
	}
	g.endBatch()
	return r
}

// endBatch forgets the portals a Sync ends outside a transaction block.
func (g *protoGen) endBatch() {
	if !g.inBlock {
		g.portals = nil
	}
}

func (g *protoGen) stmtName() string {
	if g.r.IntN(12) == 0 {
		return g.pick([]string{"nope", "s1", "s2", ""}) // perhaps never parsed, or closed
	}
	var known []string
	for name := range g.stmts {
		known = append(known, name)
	}
	if len(known) == 0 {
		return ""
	}
	// Map order is random, but not seeded: sort.
	slices.Sort(known)
	return g.pick(known)
}

func (g *protoGen) portalName() string {
	if len(g.portals) == 0 || g.r.IntN(12) == 0 {
		return g.pick([]string{"", "p1", "nope"})
	}
	return g.pick(g.portals)
}

func (g *protoGen) parse() *pgproto3.Parse {
	name := g.pick(genStmtNames)
	st := genExtended[g.r.IntN(len(genExtended))]
	switch {
	case strings.HasPrefix(st.sql, "BEGIN"):
		g.inBlock = true
	case st.sql == "COMMIT" || st.sql == "ROLLBACK":
		g.inBlock = false
	}
	p := &pgproto3.Parse{Name: name, Query: st.sql}
	if st.param != "" && g.r.IntN(4) == 0 {
		// Declared parameter types: int4 for 'i', text for 't', sometimes 0 (unspecified).
		for _, k := range st.param {
			oid := uint32(25)
			if k == 'i' {
				oid = 23
			}
			if g.r.IntN(3) == 0 {
				oid = 0
			}
			p.ParameterOIDs = append(p.ParameterOIDs, oid)
		}
	}
	g.stmts[name] = st
	return p
}

func (g *protoGen) bind(stmt string) *pgproto3.Bind {
	st, ok := g.stmts[stmt]
	if !ok {
		st = genExtended[g.r.IntN(len(genExtended))]
	}
	params := st.param
	if g.r.IntN(15) == 0 {
		params = params[:len(params)/2] + "i" // the wrong number of parameters
	}
	b := &pgproto3.Bind{DestinationPortal: g.pick([]string{"", "", "", "p1", "p2"}), PreparedStatement: stmt}
	binaryParams := g.r.IntN(4) == 0
	for _, k := range params {
		var v []byte
		switch {
		case g.r.IntN(15) == 0:
			v = nil // NULL
		case binaryParams && k == 'i':
			v = binary.BigEndian.AppendUint32(nil, uint32(g.r.IntN(5)))
			if g.r.IntN(8) == 0 {
				v = v[:2] // not an int4
			}
		case k == 'i':
			v = []byte(g.pick([]string{"1", "3", "4", "-2", "x"}))
		default:
			v = []byte(g.pick([]string{"a", "", "é"}))
		}
		b.Parameters = append(b.Parameters, v)
	}
	if binaryParams {
		b.ParameterFormatCodes = []int16{1}
		if len(params) > 1 && g.r.IntN(2) == 0 {
			b.ParameterFormatCodes = nil
			for _, k := range params {
				b.ParameterFormatCodes = append(b.ParameterFormatCodes, map[rune]int16{'i': 1, 't': 0}[k])
			}
		}
	}
	switch g.r.IntN(10) {
	case 0:
		b.ResultFormatCodes = []int16{1}
	case 1:
		b.ResultFormatCodes = []int16{0, 1, 0} // as many as columns, rarely
	}
	g.portals = append(g.portals, b.DestinationPortal)
	return b
}

func (g *protoGen) execute() *pgproto3.Execute {
	e := &pgproto3.Execute{Portal: g.portalName()}
	if g.r.IntN(3) == 0 {
		e.MaxRows = uint32(1 + g.r.IntN(3))
	}
	return e
}

// unit is a few messages that belong together.
func (g *protoGen) unit() []pgproto3.FrontendMessage {
	switch k := g.r.IntN(100); {
	case k < 35: // the usual: Parse, Bind, Execute
		p := g.parse()
		b := g.bind(p.Name)
		e := &pgproto3.Execute{Portal: b.DestinationPortal}
		if g.r.IntN(4) == 0 {
			e.MaxRows = uint32(1 + g.r.IntN(3))
		}
		return []pgproto3.FrontendMessage{p, b, e}
	case k < 45: // what drivers do: Parse, Describe, Bind, Describe, Execute
		p := g.parse()
		b := g.bind(p.Name)
		return []pgproto3.FrontendMessage{p, &pgproto3.Describe{ObjectType: 'S', Name: p.Name}, b,
			&pgproto3.Describe{ObjectType: 'P', Name: b.DestinationPortal}, &pgproto3.Execute{Portal: b.DestinationPortal}}
	case k < 60: // a statement parsed earlier
		b := g.bind(g.stmtName())
		return []pgproto3.FrontendMessage{b, &pgproto3.Execute{Portal: b.DestinationPortal}}
	case k < 68:
		return []pgproto3.FrontendMessage{g.parse()}
	case k < 73:
		return []pgproto3.FrontendMessage{g.bind(g.stmtName())}
	case k < 80:
		return []pgproto3.FrontendMessage{g.execute()}
	case k < 85:
		return []pgproto3.FrontendMessage{&pgproto3.Describe{ObjectType: 'S', Name: g.stmtName()}}
	case k < 89:
		return []pgproto3.FrontendMessage{&pgproto3.Describe{ObjectType: 'P', Name: g.portalName()}}
	case k < 95:
		name := g.stmtName()
		delete(g.stmts, name)
		return []pgproto3.FrontendMessage{&pgproto3.Close{ObjectType: 'S', Name: name}}
	default:
		return []pgproto3.FrontendMessage{&pgproto3.Close{ObjectType: 'P', Name: g.portalName()}}
	}
}

// suspendRound fetches a portal in parts, each part ended by a Flush (the rows come without a
// ReadyForQuery), then a Sync.
func (g *protoGen) suspendRound() genRound {
	sql := g.pick([]string{"SELECT g FROM generate_series(1, 5) g", "SELECT 1 / (3 - g) FROM generate_series(1, 5) g",
		"INSERT INTO " + protoTable + " SELECT g FROM generate_series(1, 3) g RETURNING v"})
	portal := g.pick([]string{"", "p1"})
	r := genRound{send: []pgproto3.FrontendMessage{
		&pgproto3.Parse{Query: sql}, &pgproto3.Bind{DestinationPortal: portal}, &pgproto3.Execute{Portal: portal, MaxRows: 2},
	}}
	g.stmts[""] = genStmt{sql: sql}
	for range g.r.IntN(3) {
		r.send = append(r.send, &pgproto3.Execute{Portal: portal, MaxRows: uint32(1 + g.r.IntN(2))})
	}
	if g.r.IntN(3) == 0 {
		r.send = append(r.send, &pgproto3.Flush{}) // the round ends unsynced: the next one goes on
		g.portals = append(g.portals, portal)
		return r
	}
	r.send = append(r.send, &pgproto3.Sync{})
	r.rfq = 1
	g.endBatch()
	return r
}

// copyRounds is a COPY FROM STDIN, simple or extended, and a round of data ending with
// CopyDone or CopyFail; or a COPY TO STDOUT in the extended protocol.
func (g *protoGen) copyRounds() []genRound {
	in := "COPY " + protoTable + " FROM STDIN"
	switch g.r.IntN(4) {
	case 0:
		return []genRound{{send: []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "COPY (SELECT g FROM generate_series(1, 3) g) TO STDOUT"},
			&pgproto3.Bind{}, &pgproto3.Execute{Portal: "", MaxRows: uint32(g.r.IntN(2))}, &pgproto3.Sync{}}, rfq: 1}}
	case 1, 2: // simple
		start := genRound{send: []pgproto3.FrontendMessage{&pgproto3.Query{String: in}}, rfq: 1, copyIn: true}
		g.portals = nil
		delete(g.stmts, "")
		return []genRound{start, g.copyData(1)}
	default: // extended, the Sync before the data or not
		start := genRound{send: []pgproto3.FrontendMessage{&pgproto3.Parse{Query: in}, &pgproto3.Bind{}, &pgproto3.Execute{}}, copyIn: true}
		g.stmts[""] = genStmt{sql: in}
		if g.r.IntN(2) == 0 {
			start.send = append(start.send, &pgproto3.Sync{})
			start.rfq = 1 // if the COPY fails to start
		} else {
			start.send = append(start.send, &pgproto3.Flush{})
		}
		data := g.copyData(0)
		if _, synced := data.send[len(data.send)-1].(*pgproto3.Sync); !synced {
			data.send = append(data.send, &pgproto3.Sync{})
			data.rfq++
		}
		g.endBatch()
		return []genRound{start, data}
	}
}

// copyData is rows of COPY data, perhaps a bad one, perhaps with a Sync or Flush among them
// (ignored during COPY), then CopyDone or CopyFail. rfq counts the ReadyForQuery that ends a
// simple COPY.
func (g *protoGen) copyData(rfq int) genRound {
	r := genRound{rfq: rfq}
	bad := false
	for range g.r.IntN(4) {
		var m pgproto3.FrontendMessage
		switch k := g.r.IntN(12); {
		case k == 0:
			m = &pgproto3.CopyData{Data: []byte("x\n")}
			bad = true
		case k == 1 && bad:
			// Not after a bad row: Postgres answers that Sync with a ReadyForQuery, sluice
			// does not send it (TestSyncInsideAFailedCopyReachesNoOtherClient).
			m = &pgproto3.Flush{}
		case k == 1:
			m = &pgproto3.Sync{}
		case k == 2:
			m = &pgproto3.Flush{}
		case k == 3:
			m = &pgproto3.CopyData{Data: []byte("4")} // a row split across messages
		default:
			d := g.pick([]string{"1\n", "2\n3\n", "\n"})
			bad = bad || d == "\n" // not an int
			m = &pgproto3.CopyData{Data: []byte(d)}
		}
		r.send = append(r.send, m)
	}
	switch g.r.IntN(8) {
	case 0:
		r.send = append(r.send, &pgproto3.CopyFail{Message: "client gave up"})
	case 1:
		// A Query in the middle of COPY data: the COPY fails, and the Query is not run. After
		// a bad row a COPY FROM of a simple Query (rfq 1) has failed already, and the Query
		// runs: a second ReadyForQuery. Counted as one, the round's replies spilled into the
		// next rounds, which the target run then sent before the replies were in (seed 6391).
		r.send = append(r.send, &pgproto3.Query{String: "SELECT 1"})
		if bad && rfq > 0 {
			r.rfq++
		}
		return r
	default:
		r.send = append(r.send, &pgproto3.CopyDone{})
	}
	if g.r.IntN(2) == 0 {
		r.send = append(r.send, &pgproto3.Sync{})
		r.rfq++
	}
	return r
}

func (g *protoGen) functionCallRound() genRound {
	return genRound{send: []pgproto3.FrontendMessage{&pgproto3.FunctionCall{
		Function: 177, ArgFormatCodes: []uint16{0}, Arguments: [][]byte{[]byte("2"), []byte("3")}, // int4pl
	}}, rfq: 1}
}

// strayCopyRound sends copy messages when no COPY is active: Postgres ignores them.
func (g *protoGen) strayCopyRound() genRound {
	return genRound{send: []pgproto3.FrontendMessage{&pgproto3.CopyData{Data: []byte("junk")}, &pgproto3.CopyDone{},
		&pgproto3.Query{String: "SELECT 1"}}, rfq: 1}
}

// terminateRound is a batch and a Terminate in one write, as a client that leaves without
// waiting for its last replies sends them; sometimes the Terminate cuts the batch short.
func (g *protoGen) terminateRound() genRound {
	r := g.extendedRound()
	if g.r.IntN(2) == 0 {
		r.send = r.send[:len(r.send)-1] // without its last Sync
	}
	return genRound{send: append(r.send, &pgproto3.Terminate{}), closed: true}
}

// formatProtoRounds writes rounds as protoCases writes them, to paste and minimise.
func formatProtoRounds(rounds []genRound) string {
	var b strings.Builder
	for _, r := range rounds {
		var msgs []string
		for _, m := range r.send {
			msgs = append(msgs, formatFrontend(m))
		}
		switch {
		case r.closed:
			fmt.Fprintf(&b, "\t{send: []pgproto3.FrontendMessage{%s}, closed: true},\n", strings.Join(msgs, ", "))
		case r.copyIn:
			fmt.Fprintf(&b, "\t{send: []pgproto3.FrontendMessage{%s}, until: \"CopyInResponse\"},\n", strings.Join(msgs, ", "))
		default:
			fmt.Fprintf(&b, "\t{send: []pgproto3.FrontendMessage{%s}, rfq: %d},\n", strings.Join(msgs, ", "), r.rfq)
		}
	}
	return b.String()
}

func formatFrontend(m pgproto3.FrontendMessage) string {
	switch m := m.(type) {
	case *pgproto3.Query:
		return fmt.Sprintf("q(%q)", m.String)
	case *pgproto3.Parse:
		if len(m.ParameterOIDs) > 0 {
			return fmt.Sprintf("&pgproto3.Parse{Name: %q, Query: %q, ParameterOIDs: %#v}", m.Name, m.Query, m.ParameterOIDs)
		}
		return fmt.Sprintf("parse(%q, %q)", m.Name, m.Query)
	case *pgproto3.Bind:
		plain := len(m.ParameterFormatCodes) == 0 && len(m.ResultFormatCodes) == 0
		var params []string
		for _, p := range m.Parameters {
			plain = plain && p != nil
			params = append(params, strconv.Quote(string(p)))
		}
		if plain {
			return fmt.Sprintf("bind(%s)", strings.Join(append([]string{strconv.Quote(m.DestinationPortal), strconv.Quote(m.PreparedStatement)}, params...), ", "))
		}
		return fmt.Sprintf("&pgproto3.Bind{DestinationPortal: %q, PreparedStatement: %q, ParameterFormatCodes: %#v, Parameters: %#v, ResultFormatCodes: %#v}",
			m.DestinationPortal, m.PreparedStatement, m.ParameterFormatCodes, m.Parameters, m.ResultFormatCodes)
	case *pgproto3.Describe:
		return fmt.Sprintf("desc%c(%q)", m.ObjectType, m.Name)
	case *pgproto3.Close:
		return fmt.Sprintf("close%c(%q)", m.ObjectType, m.Name)
	case *pgproto3.Execute:
		return fmt.Sprintf("exec(%q, %d)", m.Portal, m.MaxRows)
	case *pgproto3.Sync:
		return "sync"
	case *pgproto3.Flush:
		return "flush"
	case *pgproto3.CopyData:
		return fmt.Sprintf("&pgproto3.CopyData{Data: []byte(%q)}", m.Data)
	case *pgproto3.CopyFail:
		return fmt.Sprintf("&pgproto3.CopyFail{Message: %q}", m.Message)
	}
	return fmt.Sprintf("%#v", m)
}

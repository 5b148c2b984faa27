package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Differential tests of the wire protocol: each case is a raw message sequence, run against
// Postgres directly and through sluice in session and in transaction mode. The message streams
// the client receives must be the same, after normalising only what a pooler must change
// (BackendKeyData, a PID in a notification). A difference is a bug a client could notice.

// protoRound is one write of a case and the replies read after it.
type protoRound struct {
	send []pgproto3.FrontendMessage
	// until ends the read at the first message of this type (e.g. "PortalSuspended"), for a
	// round that ends without a ReadyForQuery (after a Flush, or at a CopyInResponse).
	until string
	// rfq is how many ReadyForQuery end the read when until is empty; 0 counts the round's
	// Query, Sync and FunctionCall messages.
	rfq int
	// closed reads until the connection ends (after a Terminate).
	closed bool
	// unfinished, on a closed round, compares its replies only up to the last ReadyForQuery:
	// the replies to a batch the Terminate cut short, which the client does not read
	// (leaveUnfinished).
	unfinished bool
	// meanwhile has another client send a query after this round, while the case goes on:
	// through a pool of one server it is answered only once the first client is idle (or
	// gone, in session mode), and it must not disturb what the first client has open.
	meanwhile bool
}

// protoCase is a sequence of rounds. Every case ends with a simple SELECT, to show the session
// still works, unless a round closed it.
type protoCase struct {
	name   string
	rounds []protoRound
	// notInTxMode, when set, says why transaction mode is not compared.
	notInTxMode string
}

// protoTable is the table the cases write to; its contents do not matter to any reply.
const protoTable = "proto_diff"

func protoCases() []protoCase {
	q := func(sql string) *pgproto3.Query { return &pgproto3.Query{String: sql} }
	parse := func(name, sql string) *pgproto3.Parse { return &pgproto3.Parse{Name: name, Query: sql} }
	bind := func(portal, stmt string, params ...string) *pgproto3.Bind {
		b := &pgproto3.Bind{DestinationPortal: portal, PreparedStatement: stmt}
		for _, p := range params {
			b.Parameters = append(b.Parameters, []byte(p))
		}
		return b
	}
	exec := func(portal string, max uint32) *pgproto3.Execute {
		return &pgproto3.Execute{Portal: portal, MaxRows: max}
	}
	descS := func(name string) *pgproto3.Describe { return &pgproto3.Describe{ObjectType: 'S', Name: name} }
	descP := func(name string) *pgproto3.Describe { return &pgproto3.Describe{ObjectType: 'P', Name: name} }
	closeS := func(name string) *pgproto3.Close { return &pgproto3.Close{ObjectType: 'S', Name: name} }
	closeP := func(name string) *pgproto3.Close { return &pgproto3.Close{ObjectType: 'P', Name: name} }
	sync := &pgproto3.Sync{}
	flush := &pgproto3.Flush{}
	send := func(msgs ...pgproto3.FrontendMessage) protoRound { return protoRound{send: msgs} }
	series := "SELECT g FROM generate_series(1, 5) g"
	copyIn := "COPY " + protoTable + " FROM STDIN"

	return []protoCase{
		{name: "empty query", rounds: []protoRound{send(q(""))}},
		{name: "empty query among statements", rounds: []protoRound{send(q(";;SELECT 1;;"))}},
		{name: "middle statement of a query fails", rounds: []protoRound{send(q("SELECT 1; SELECT 1/0; SELECT 3"))}},
		{name: "failed statement after BEGIN in one query", rounds: []protoRound{
			send(q("BEGIN; SELECT 1; SELECT 1/0; SELECT 3")),
			send(q("SELECT 4")),
			send(q("ROLLBACK")),
		}},
		{name: "implicit transaction of a multi-statement query", rounds: []protoRound{send(q("SELECT 1; COMMIT; SELECT 2"))}},
		{name: "Sync alone", rounds: []protoRound{send(sync)}},
		{name: "several Syncs in a row", rounds: []protoRound{send(sync, sync, sync)}},
		{name: "Parse error in the middle of a pipeline", rounds: []protoRound{send(
			parse("", "SELECT 1"), bind("", ""), exec("", 0),
			parse("", "SELEC 2"), bind("", ""), exec("", 0),
			parse("", "SELECT 3"), bind("", ""), exec("", 0),
			sync,
			parse("", "SELECT 4"), bind("", ""), exec("", 0), sync,
		)}},
		{name: "Close of a statement and a portal that do not exist", rounds: []protoRound{send(closeS("nope"), closeP("nope"), sync)}},
		{name: "Describe of a statement that does not exist", rounds: []protoRound{send(descS("nope"), sync)}},
		{name: "Describe of a portal that does not exist", rounds: []protoRound{send(descP("nope"), sync)}},
		{name: "Describe of the unnamed statement before any Parse", rounds: []protoRound{send(descS(""), sync)}},
		{name: "Execute of a portal never bound", rounds: []protoRound{send(exec("", 0), sync)}},
		{name: "Describe of statement and portal", rounds: []protoRound{
			send(parse("s1", "SELECT $1::int AS a, 'x'::text AS b"), descS("s1"), bind("", "s1", "7"), descP(""), exec("", 0), sync),
			send(closeS("s1"), sync),
			send(descS("s1"), sync),
		}},
		{name: "Bind with the wrong number of parameters", rounds: []protoRound{send(parse("", "SELECT $1::int"), bind("", ""), exec("", 0), sync)}},
		{name: "Execute with a row limit then Sync, outside a transaction", rounds: []protoRound{send(
			parse("", series), bind("", ""), exec("", 2), exec("", 2), exec("", 0), exec("", 1), sync,
		)}},
		{name: "row limit and Flush, rows fetched in rounds before Sync", rounds: []protoRound{
			{send: []pgproto3.FrontendMessage{parse("", series), bind("", ""), exec("", 2), flush}, until: "PortalSuspended", meanwhile: true},
			{send: []pgproto3.FrontendMessage{exec("", 2), flush}, until: "PortalSuspended"},
			{send: []pgproto3.FrontendMessage{exec("", 2), flush}, until: "CommandComplete"},
			send(sync),
		}},
		{name: "named portal ends at Sync outside a transaction", rounds: []protoRound{
			send(parse("", series), bind("p", ""), exec("p", 1), sync),
			send(exec("p", 1), sync),
		}},
		{name: "named portal with a row limit across Syncs inside a transaction", rounds: []protoRound{
			send(q("BEGIN")),
			{send: []pgproto3.FrontendMessage{parse("", series), bind("p", ""), exec("p", 2), sync}, meanwhile: true},
			send(exec("p", 2), sync),
			send(exec("p", 0), sync),
			send(closeP("p"), exec("p", 0), sync),
			send(q("COMMIT")),
		}},
		{name: "unnamed statement kept across Syncs", rounds: []protoRound{
			{send: []pgproto3.FrontendMessage{parse("", "SELECT 42"), sync}, meanwhile: true},
			send(bind("", ""), exec("", 0), sync),
			send(bind("", ""), exec("", 0), sync),
		}},
		{name: "simple Query drops the unnamed statement", rounds: []protoRound{
			send(parse("", "SELECT 42"), sync),
			send(q("SELECT 1")),
			send(bind("", ""), exec("", 0), sync),
		}},
		{name: "simple Query in the middle of a batch", rounds: []protoRound{send(
			parse("", "SELECT 42"), bind("", ""), q("SELECT 1"), exec("", 0), sync,
		)}},
		{name: "Flush outside a batch", rounds: []protoRound{
			{send: []pgproto3.FrontendMessage{flush, parse("", "SELECT 1"), flush}, until: "ParseComplete"},
			send(sync),
		}},
		{name: "error in an extended batch inside a transaction, then ROLLBACK", rounds: []protoRound{
			send(q("BEGIN")),
			send(parse("", "SELECT 1/0"), bind("", ""), exec("", 0), parse("", "SELECT 2"), bind("", ""), exec("", 0), sync),
			send(parse("", "SELECT 3"), bind("", ""), exec("", 0), sync),
			send(parse("", "ROLLBACK"), bind("", ""), exec("", 0), sync),
		}},
		{name: "FunctionCall", rounds: []protoRound{send(&pgproto3.FunctionCall{
			Function: 177, ArgFormatCodes: []uint16{0}, Arguments: [][]byte{[]byte("2"), []byte("3")}, // int4pl
		})}},
		{name: "FunctionCall in the middle of a batch", rounds: []protoRound{send(
			parse("", "SELECT 1"), bind("", ""),
			&pgproto3.FunctionCall{Function: 177, Arguments: [][]byte{[]byte("2"), []byte("3")}},
			exec("", 0), sync,
		)}},
		{name: "FunctionCall after an error in a batch", rounds: []protoRound{{send: []pgproto3.FrontendMessage{
			parse("", "SELECT 1/0"), bind("", ""), exec("", 0),
			&pgproto3.FunctionCall{Function: 177, Arguments: [][]byte{[]byte("2"), []byte("3")}},
			sync,
		}, rfq: 1}}}, // the FunctionCall is skipped with the rest of the batch
		{name: "Describe of a suspended portal, then the rest of it", rounds: []protoRound{send(
			parse("", series), bind("", ""), exec("", 2), descP(""), exec("", 0), sync,
		)}},
		{name: "INSERT RETURNING with a row limit", rounds: []protoRound{send(
			parse("", "INSERT INTO "+protoTable+" SELECT g FROM generate_series(1, 3) g RETURNING v"),
			bind("", ""), exec("", 1), exec("", 1), sync,
		)}},
		{name: "FunctionCall of a function that does not exist", rounds: []protoRound{send(&pgproto3.FunctionCall{Function: 1})}},
		{name: "FunctionCall inside a transaction", rounds: []protoRound{
			send(q("BEGIN")),
			send(&pgproto3.FunctionCall{Function: 177, Arguments: [][]byte{[]byte("2"), []byte("3")}}),
			send(q("COMMIT")),
		}},
		{name: "CopyFail during COPY FROM", rounds: []protoRound{
			{send: []pgproto3.FrontendMessage{q(copyIn)}, until: "CopyInResponse"},
			send(&pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyFail{Message: "the client gave up"}),
		}},
		{name: "bad row during COPY FROM, more data after it", rounds: []protoRound{
			{send: []pgproto3.FrontendMessage{q(copyIn)}, until: "CopyInResponse"},
			{send: []pgproto3.FrontendMessage{&pgproto3.CopyData{Data: []byte("x\n")}, &pgproto3.CopyData{Data: []byte("2\n")}, &pgproto3.CopyDone{}}, rfq: 1},
		}},
		// Seed 6391: a Query after a bad row, with no CopyDone; the client then pipelines two
		// batches, the second a Parse of the name whose Parse the first fails. sluice must wait
		// for the first's replies (the COPY is over), not take the name as taken.
		{name: "bad row during COPY FROM, a Query, then batches pipelined", rounds: []protoRound{
			{send: []pgproto3.FrontendMessage{q(copyIn)}, until: "CopyInResponse"},
			send(&pgproto3.CopyData{Data: []byte("\n")}, q("SELECT 1"),
				parse("s2", "SELECT * FROM no_such_table"), bind("p2", "s2"), exec("p2", 0), sync,
				parse("s2", "SELEC 1"), sync),
		}},
		// Seed 8589: in a COPY FROM an Execute began, Postgres skips a Query to the Sync, after a
		// bad row or failing the COPY at it: the client keeps its unnamed statement.
		{name: "Query inside an extended COPY FROM after a bad row keeps the unnamed statement", rounds: []protoRound{
			{send: []pgproto3.FrontendMessage{parse("", copyIn), bind("", ""), exec("", 0), sync}, until: "CopyInResponse"},
			{send: []pgproto3.FrontendMessage{&pgproto3.CopyData{Data: []byte("\n")}, q("SELECT 1"), sync}, rfq: 1},
			send(bind("", ""), sync),
		}},
		{name: "Query inside an extended COPY FROM keeps the unnamed statement", rounds: []protoRound{
			{send: []pgproto3.FrontendMessage{parse("", copyIn), bind("", ""), exec("", 0), sync}, until: "CopyInResponse"},
			{send: []pgproto3.FrontendMessage{&pgproto3.CopyData{Data: []byte("1\n")}, q("SELECT 1"), sync}, rfq: 1},
			send(bind("", ""), sync),
		}},
		// As seed 8589, in one write: sluice reads the Query before the server's CopyInResponse.
		{name: "Query inside an extended COPY FROM keeps the unnamed statement, in one write", rounds: []protoRound{
			{send: []pgproto3.FrontendMessage{parse("", copyIn), bind("", ""), exec("", 0), sync,
				&pgproto3.CopyData{Data: []byte("1\n")}, q("SELECT 1"), sync}, rfq: 1},
			send(bind("", ""), sync),
		}},
		{name: "Query inside an extended COPY FROM after a bad row keeps the unnamed statement, in one write", rounds: []protoRound{
			{send: []pgproto3.FrontendMessage{parse("", copyIn), bind("", ""), exec("", 0), sync,
				&pgproto3.CopyData{Data: []byte("\n")}, q("SELECT 1"), sync}, rfq: 1},
			send(bind("", ""), sync),
		}},
		{name: "CopyData and CopyDone when no COPY is active", rounds: []protoRound{
			send(&pgproto3.CopyData{Data: []byte("junk")}, &pgproto3.CopyDone{}, q("SELECT 1")),
		}},
		{name: "CopyData when no COPY is active, inside a transaction", rounds: []protoRound{
			send(q("BEGIN")),
			send(&pgproto3.CopyData{Data: []byte("junk")}, q("SELECT 1")),
			send(q("COMMIT")),
		}},
		{name: "COPY FROM in the extended protocol, Sync before the data", rounds: []protoRound{
			{send: []pgproto3.FrontendMessage{parse("", copyIn), bind("", ""), exec("", 0), sync}, until: "CopyInResponse"},
			{send: []pgproto3.FrontendMessage{&pgproto3.CopyData{Data: []byte("1\n2\n")}, &pgproto3.CopyDone{}, sync}, rfq: 1},
		}},
		{name: "COPY FROM in the extended protocol, everything in one write", rounds: []protoRound{
			{send: []pgproto3.FrontendMessage{parse("", copyIn), bind("", ""), exec("", 0), sync,
				&pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.CopyDone{}, sync}, rfq: 1},
		}},
		{name: "COPY FROM with Syncs among the data", rounds: []protoRound{
			{send: []pgproto3.FrontendMessage{q(copyIn), sync}, until: "CopyInResponse"},
			{send: []pgproto3.FrontendMessage{&pgproto3.CopyData{Data: []byte("1\n")}, sync, &pgproto3.CopyDone{}, sync}, rfq: 2},
		}},
		{name: "CopyFail in the extended protocol", rounds: []protoRound{
			{send: []pgproto3.FrontendMessage{parse("", copyIn), bind("", ""), exec("", 0), sync}, until: "CopyInResponse"},
			{send: []pgproto3.FrontendMessage{&pgproto3.CopyFail{Message: "no"}, sync}, rfq: 1},
		}},
		{name: "COPY FROM in the extended protocol, Flush before the data", rounds: []protoRound{
			{send: []pgproto3.FrontendMessage{parse("", copyIn), bind("", ""), exec("", 0), flush}, until: "CopyInResponse", meanwhile: true},
			send(&pgproto3.CopyData{Data: []byte("1\n2\n")}, &pgproto3.CopyDone{}, sync),
		}},
		{name: "COPY TO with an error mid-way", rounds: []protoRound{send(q("COPY (SELECT 1 / (5 - g) FROM generate_series(1, 9) g) TO STDOUT"))}},
		{name: "COPY TO in the extended protocol", rounds: []protoRound{send(parse("", "COPY (SELECT 1) TO STDOUT"), bind("", ""), exec("", 0), sync)}},
		{name: "NOTICE and a warning before the result", rounds: []protoRound{send(q("DO $$ BEGIN RAISE NOTICE 'hi'; RAISE WARNING 'careful'; END $$; SELECT 1"))}},
		{name: "ParameterStatus after SET application_name", rounds: []protoRound{send(q("SET application_name = 'proto diff'"), q("RESET application_name"))}},
		{name: "Parse of a statement name already in use", rounds: []protoRound{
			send(parse("s2", "SELECT 1"), sync),
			send(parse("s2", "SELECT 2"), bind("", "s2"), exec("", 0), sync),
			send(bind("", "s2"), exec("", 0), sync),
		}},
		{name: "named statement parsed after an error in the same batch", rounds: []protoRound{
			send(parse("", "SELECT 1/0"), bind("", ""), exec("", 0), parse("s5", "SELECT 5"), sync),
			send(bind("", "s5"), exec("", 0), sync),
			send(parse("s5", "SELECT 55"), bind("", "s5"), exec("", 0), sync),
		}},
		{name: "named statement that failed to parse", rounds: []protoRound{
			send(parse("s6", "SELEC 6"), sync),
			send(bind("", "s6"), exec("", 0), sync),
			send(parse("s6", "SELECT 6"), bind("", "s6"), exec("", 0), sync),
		}},
		{name: "Close of a named statement after an error in the same batch", rounds: []protoRound{
			send(parse("s7", "SELECT 7"), sync),
			send(parse("", "SELECT 1/0"), bind("", ""), exec("", 0), closeS("s7"), sync),
			send(bind("", "s7"), exec("", 0), sync),
		}},
		{name: "Close and Parse of a named statement after an error in the same batch", rounds: []protoRound{
			send(parse("s8", "SELECT 8"), sync),
			send(parse("", "SELECT 1/0"), bind("", ""), exec("", 0), closeS("s8"), parse("s8", "SELECT 88"), sync),
			send(bind("", "s8"), exec("", 0), sync),
		}},
		{name: "Bind of a statement that does not exist", rounds: []protoRound{send(bind("", "nope"), exec("", 0), sync)}},
		{name: "Bind after the unnamed statement was closed", rounds: []protoRound{
			send(parse("", "SELECT 1"), closeS(""), bind("", ""), exec("", 0), sync),
		}},
		{name: "Parse of two statements", rounds: []protoRound{send(parse("", "SELECT 1; SELECT 2"), sync)}},
		{name: "empty statement in the extended protocol", rounds: []protoRound{
			send(parse("", ""), bind("", ""), descP(""), exec("", 0), sync),
		}},
		{name: "Describe of a statement with parameters", rounds: []protoRound{
			send(parse("s3", "SELECT $1::int + $2::bigint"), descS("s3"), closeS("s3"), sync),
		}},
		{name: "BEGIN in the extended protocol, the transaction across batches", rounds: []protoRound{
			send(parse("", "BEGIN"), bind("", ""), exec("", 0), sync),
			send(parse("", "SELECT 1"), bind("", ""), exec("", 0), sync),
			send(q("COMMIT")),
		}},
		{name: "savepoint rolled back in the extended protocol", rounds: []protoRound{
			send(q("BEGIN; SAVEPOINT a")),
			send(parse("", "SELECT 1/0"), bind("", ""), exec("", 0), sync),
			send(parse("", "ROLLBACK TO a"), bind("", ""), exec("", 0), sync),
			send(q("SELECT 2; COMMIT")),
		}},
		{name: "DEALLOCATE ALL, then the statement", rounds: []protoRound{
			send(parse("s4", "SELECT 4"), sync),
			send(q("DEALLOCATE ALL")),
			send(bind("", "s4"), exec("", 0), sync),
		}},
		{name: "Query during COPY FROM", rounds: []protoRound{
			{send: []pgproto3.FrontendMessage{q(copyIn)}, until: "CopyInResponse"},
			{send: []pgproto3.FrontendMessage{&pgproto3.CopyData{Data: []byte("1\n")}, q("SELECT 1")}, rfq: 1},
		}},
		{name: "a notification to the session itself", rounds: []protoRound{
			send(q("LISTEN proto_diff")),
			send(q("NOTIFY proto_diff, 'hi'")),
			send(q("UNLISTEN *")),
		}, notInTxMode: "LISTEN is refused in transaction mode (TestTransactionModeListenIsRefused)"},
		{name: "thousands of messages after an error, before the Sync", rounds: []protoRound{
			// libpq's pipeline test "uniqviol": after the error the client goes on sending,
			// and Postgres skips it all, unanswered, up to the Sync.
			{send: []pgproto3.FrontendMessage{parse("", "SELECT 1/0"), bind("", ""), exec("", 0), flush}, until: "ErrorResponse"},
			send(append(manyBindExecute(3000), sync)...),
		}},
		// Found by TestProtocolRandom (seeds 11, 14, 30): in transaction mode the server knows
		// the statement by sluice's name for it, and Postgres names it in this error.
		{name: "Bind of a named statement with the wrong number of parameters", rounds: []protoRound{
			send(parse("s9", "SELECT $1::int"), sync),
			send(bind("", "s9"), exec("", 0), sync),
		}},
		// Seeds 2, 13: a simple Query ends the batch before it, as a Sync does, and with it
		// the portal; the client is idle after its ReadyForQuery.
		{name: "simple Query after a portal suspended without a Sync", rounds: []protoRound{
			{send: []pgproto3.FrontendMessage{parse("", series), bind("", ""), exec("", 2), flush}, until: "PortalSuspended"},
			send(q("SELECT 1")),
		}},
		// Seed 14: the error skips the first Parse of s10, so the second one, pipelined after
		// the Sync in the same write, is not of a name already in use.
		{name: "Parse of a name again after an error skipped its first Parse in an earlier batch", rounds: []protoRound{send(
			parse("", "SELECT 1/0"), bind("", ""), exec("", 0), parse("s10", "SELECT 10"), sync,
			parse("s10", "SELECT 11"), bind("", "s10"), exec("", 0), sync,
		)}},
		// Seeds 10, 16, 46: Postgres checks a Parse's text, and whether the transaction
		// failed, before it finds the name taken.
		{name: "Parse of a name in use, in a failed transaction", rounds: []protoRound{
			send(parse("s11", "SELECT 1"), sync),
			send(q("BEGIN; SELECT 1/0")),
			send(parse("s11", "SELECT 2"), sync),
			send(q("ROLLBACK")),
		}},
		{name: "Parse of a name in use, with two statements", rounds: []protoRound{
			send(parse("s12", "SELECT 1"), sync),
			send(parse("s12", "SELECT 1; SELECT 2"), sync),
		}},
		// Seed 12: the server still has the statement from the first round (servers keep
		// statements a client closed, for other clients), but the client's Parse of it in
		// the second was skipped: the Bind after the Sync finds no statement.
		{name: "Bind of a statement whose Parse an error skipped in an earlier batch", rounds: []protoRound{
			send(parse("s13", "SELECT 13"), sync, closeS("s13"), sync),
			send(parse("", "SELECT 1/0"), bind("", ""), exec("", 0), parse("s13", "SELECT 13"), sync,
				bind("", "s13"), exec("", 0), sync),
		}},
		// Seed 1019: the bad row ends the COPY before the server reads the Sync, which then
		// ends the batch, though the client sent it before any end of the COPY.
		{name: "bad row and a Query during COPY FROM in the extended protocol, then a Sync", rounds: []protoRound{
			{send: []pgproto3.FrontendMessage{parse("", copyIn), bind("", ""), exec("", 0), sync}, until: "CopyInResponse"},
			{send: []pgproto3.FrontendMessage{&pgproto3.CopyData{Data: []byte("\n")}, q("SELECT 1"), sync}, rfq: 1},
			send(q("SELECT 2")),
		}},
		{name: "Query during COPY FROM in the extended protocol, then a Sync", rounds: []protoRound{
			{send: []pgproto3.FrontendMessage{parse("", copyIn), bind("", ""), exec("", 0), sync}, until: "CopyInResponse"},
			{send: []pgproto3.FrontendMessage{&pgproto3.CopyData{Data: []byte("1\n")}, q("SELECT 1"), sync}, rfq: 1},
			send(q("SELECT 2")),
		}},
		// Seeds 1316, 1460, 1182: the skipped Parse leaves the client's unnamed statement as
		// it was before it.
		{name: "unnamed statement kept when an error skips the next Parse of it", rounds: []protoRound{
			send(parse("", "SELECT 1"), sync),
			send(descP("nope"), parse("", "SELECT 2"), sync), // the Parse is read before the error comes
			send(bind("", ""), exec("", 0), sync),
		}},
		// Seeds 14, 1406: as above, with the first Parse's reply not yet in when the
		// skipped one is read.
		{name: "unnamed statement kept when an error skips the next Parse of it, in one write", rounds: []protoRound{
			send(parse("", "SELECT 7"), descP("nope"), parse("", "SELECT 8"), sync),
			send(bind("", ""), exec("", 0), sync),
		}},
		// Seed 1051: sluice answers the Close without a server; the last server still has
		// the statement.
		{name: "Bind of the unnamed statement after a Close of it between transactions", rounds: []protoRound{
			send(parse("", "SELECT 1"), sync),
			send(closeS(""), sync),
			send(bind("", ""), exec("", 0), sync),
		}},
		// Seeds 2657, 2880: the error skips both the Parse and the Close of s14: the
		// skipped Close does not give back a statement that was never made.
		{name: "Parse and Close of a statement both skipped after an error", rounds: []protoRound{
			send(descP("nope"), parse("s14", "SELECT 14"), closeS("s14"), sync),
			send(parse("s14", "SELECT 15"), bind("", "s14"), exec("", 0), sync),
		}},
		// Seeds 1116, 2435, 2849: the error makes Postgres skip the Query too, which
		// therefore does not drop the unnamed statement.
		{name: "unnamed statement kept when an error skips the Query after it", rounds: []protoRound{
			{send: []pgproto3.FrontendMessage{parse("", "SELECT 21"), bind("", ""), exec("", 0), descP("nope"), q("SELECT 1"), sync}, rfq: 1},
			send(bind("", ""), exec("", 0), sync),
		}},
		// Seeds 5993, 6880: the error skips the Close of the unnamed statement (and the Parse
		// after it): the client keeps the statement it had.
		{name: "unnamed statement kept when an error skips a Close of it", rounds: []protoRound{
			send(parse("", "SELECT 31"), sync),
			send(descP("nope"), closeS(""), sync),
			send(bind("", ""), exec("", 0), sync),
		}},
		{name: "unnamed statement kept when an error skips a Close of it and the next Parse", rounds: []protoRound{
			send(parse("", "SELECT 32"), sync),
			send(descP("nope"), closeS(""), parse("", "SELECT 33"), sync),
			send(descS(""), bind("", ""), exec("", 0), sync),
		}},
		// As above, with a Query after the Close, which the error skips too.
		{name: "unnamed statement kept when an error skips a Close of it and a Query", rounds: []protoRound{
			send(parse("", "SELECT 36"), sync),
			{send: []pgproto3.FrontendMessage{descP("nope"), closeS(""), q("SELECT 1"), sync}, rfq: 1},
			send(bind("", ""), exec("", 0), sync),
		}},
		// Seed 4643: as above, the Bind pipelined after the Sync, read before the error came.
		{name: "unnamed statement kept when an error skips a Close of it, Bind pipelined", rounds: []protoRound{
			send(parse("", "SELECT 37"), sync),
			send(descP("nope"), closeS(""), sync, bind("", ""), exec("", 0), sync),
		}},
		// Seed 4860: in a failed transaction Postgres refuses the Parse of s2 and keeps s1, the
		// same text, which a Describe may still use (a statement without rows). sluice must not
		// renew the server statement both share (a Close, then the Parse that fails).
		{name: "statement kept when a Parse of its text fails in a failed transaction", rounds: []protoRound{
			send(q("BEGIN"), parse("s1", "SAVEPOINT sp"), sync),
			send(q("SELECT 1/0")),
			send(parse("s2", "SAVEPOINT sp"), sync),
			send(descS("s1"), sync),
			send(q("ROLLBACK")),
		}},
		// Seed 9547: but Postgres parses an empty text in a failed transaction: the Parse of
		// another name for it succeeds.
		{name: "Parse of an empty text in a failed transaction", rounds: []protoRound{
			send(q("BEGIN"), parse("s1", ""), sync),
			send(q("SELECT 1/0")),
			send(parse("s2", ""), sync),
			send(q("ROLLBACK")),
		}},
		// As seed 4860, with the Parse pipelined behind the Query that fails the transaction:
		// when sluice sends the Parse, it does not know yet that the transaction failed.
		{name: "statement kept when a Parse of its text fails in a transaction failing in the same write", rounds: []protoRound{
			send(q("BEGIN"), parse("s1", "SAVEPOINT sp"), sync),
			send(q("SELECT 1/0"), parse("s2", "SAVEPOINT sp"), sync),
			send(descS("s1"), sync),
			send(q("ROLLBACK")),
		}},
		// As seed 4860, for a statement sluice answered without a server (the server had its
		// text) and prepares on first use: in a failed transaction its Describe or Bind must
		// not renew the server statement (a Close, then a Parse that fails), which s1 uses.
		{name: "statement kept when a Describe of another name for its text comes in a failed transaction", rounds: []protoRound{
			send(parse("s1", "SAVEPOINT sp"), sync),
			send(parse("s2", "SAVEPOINT sp"), sync),
			send(q("BEGIN; SELECT 1/0")),
			send(descS("s2"), sync),
			send(descS("s1"), sync),
			send(q("ROLLBACK")),
		}},
		{name: "statement kept when a Describe of another name for its text comes in a transaction failing in the same write", rounds: []protoRound{
			send(parse("s1", "SAVEPOINT sp"), sync),
			send(parse("s2", "SAVEPOINT sp"), sync),
			send(q("BEGIN; SELECT 1/0"), descS("s2"), sync),
			send(descS("s1"), sync),
			send(q("ROLLBACK")),
		}},
		{name: "statement kept when a Bind of another name for its text comes in a transaction failing in the same write", rounds: []protoRound{
			send(parse("s1", "SAVEPOINT sp"), sync),
			send(parse("s2", "SAVEPOINT sp"), sync),
			send(q("BEGIN; SELECT 1/0"), bind("", "s2"), sync),
			send(descS("s1"), sync),
			send(q("ROLLBACK")),
		}},
		// And for a Parse of a name the client has (parseDuplicate), whose statement sluice
		// prepares first.
		{name: "statement kept when a name for its text is parsed again in a failed transaction", rounds: []protoRound{
			send(parse("s1", "SAVEPOINT sp"), sync),
			send(parse("s2", "SAVEPOINT sp"), sync),
			send(q("BEGIN; SELECT 1/0")),
			send(parse("s2", "SAVEPOINT sp"), sync),
			send(descS("s1"), sync),
			send(q("ROLLBACK")),
		}},
		{name: "statement kept when a name for its text is parsed again in a transaction failing in the same write", rounds: []protoRound{
			send(parse("s1", "SAVEPOINT sp"), sync),
			send(parse("s2", "SAVEPOINT sp"), sync),
			send(q("BEGIN; SELECT 1/0"), parse("s2", "SAVEPOINT sp"), sync),
			send(descS("s1"), sync),
			send(q("ROLLBACK")),
		}},
		// The new text is one Postgres parses in a failed transaction: the name is taken (42P05).
		{name: "statement kept when a name for its text is parsed again as ROLLBACK in a transaction failing in the same write", rounds: []protoRound{
			send(parse("s1", "SAVEPOINT sp"), sync),
			send(parse("s2", "SAVEPOINT sp"), sync),
			send(q("BEGIN; SELECT 1/0"), parse("s2", "ROLLBACK"), sync),
			send(descS("s1"), sync),
			send(q("ROLLBACK")),
			send(descS("s2"), sync),
		}},
		// Seed 4335: an error skips a Query and an unnamed Parse after it; the client keeps
		// the unnamed statement it had before both.
		{name: "unnamed statement kept when an error skips a Query and a Parse after it", rounds: []protoRound{
			send(parse("", "SELECT 40"), sync),
			{send: []pgproto3.FrontendMessage{descP("nope"), q("SELECT 1"), parse("", "SELECT 41"), sync}, rfq: 1},
			send(bind("", ""), exec("", 0), sync),
		}},
		// Seed 6378: the failed Parse's error comes after the reader read the next batch's
		// Parse, which makes the client's unnamed statement.
		{name: "unnamed Parse after a Sync, pipelined behind a Parse that fails", rounds: []protoRound{
			send(parse("", "SELEC 34"), sync, parse("", "SELECT 35"), sync),
			send(bind("", ""), exec("", 0), sync),
		}},
		// Seed 583: the Bind of an unknown statement fails the batch in sluice (whose
		// failing Parse drops the server's unnamed statement) before the Parse's error comes
		// back; the next batch's Bind has no unnamed statement, as the Parse failed.
		{name: "Bind of the unnamed statement after its Parse failed, pipelined behind a batch sluice failed too", rounds: []protoRound{
			send(parse("", "SELEC 37"), bind("", "nope"), sync, bind("", ""), exec("", 0), sync),
		}},
		{name: "Bind of the unnamed statement after its Parse failed in an aborted transaction, pipelined", rounds: []protoRound{
			send(q("BEGIN; SELECT 1/0")),
			send(parse("", "SELECT 38"), bind("", "nope"), sync, bind("", ""), exec("", 0), sync),
			send(q("ROLLBACK")),
		}},
		// The same Parse would succeed after the ROLLBACK: the statement it failed to make
		// must not be made then.
		{name: "Bind of the unnamed statement after its Parse failed in an aborted transaction, a ROLLBACK between, pipelined", rounds: []protoRound{
			send(q("BEGIN; SELECT 1/0")),
			send(parse("", "SELECT 39"), bind("", "nope"), sync, parse("r", "ROLLBACK"), bind("", "r"), exec("", 0), sync,
				bind("", ""), exec("", 0), sync),
		}},
		// Seed 6071: DEALLOCATE ALL drops the statements prepared before it, not the one
		// Parsed after it in the same write.
		{name: "Parse of a statement pipelined after DEALLOCATE ALL", rounds: []protoRound{
			send(parse("s15", "SELECT 15"), sync),
			send(q("DEALLOCATE ALL"), parse("s16", "SELECT 16"), sync),
			send(bind("", "s16"), exec("", 0), sync),
			send(bind("", "s15"), exec("", 0), sync),
		}},
		// Seed 6011: the DEALLOCATE ALL drops s17 before the second Parse of it runs, which
		// therefore makes it afresh; the client is idle after its ROLLBACK.
		{name: "Parse of a name again after a DEALLOCATE ALL in the same write", rounds: []protoRound{
			send(q("BEGIN")),
			send(parse("s17", "SELECT 17"), q("DEALLOCATE ALL"), parse("s17", "SELECT 18"), sync),
			send(bind("", "s17"), exec("", 0), sync),
			send(q("ROLLBACK")),
		}},
		{name: "Parse of a name again after a DEALLOCATE ALL in the same write, outside a transaction", rounds: []protoRound{
			send(parse("s18", "SELECT 19"), sync),
			send(q("DEALLOCATE ALL"), parse("s18", "SELECT 20"), sync),
			send(bind("", "s18"), exec("", 0), sync),
		}},
		// Seed 5075: the batch sluice fails itself after the complete one does not keep the
		// complete one from running.
		{name: "Terminate after a complete batch and part of one that failed without the server", rounds: []protoRound{
			{send: []pgproto3.FrontendMessage{
				parse("", "INSERT INTO "+protoTable+" VALUES (5) RETURNING v"), bind("", ""), exec("", 0), sync,
				bind("", "nope"), exec("", 0), &pgproto3.Terminate{},
			}, closed: true, unfinished: true},
		}},
		// Seed 60: replies sluice gives itself, without a server, before a Terminate.
		{name: "Terminate after a batch that failed without a server", rounds: []protoRound{
			{send: []pgproto3.FrontendMessage{bind("", "nope"), exec("", 0), sync, &pgproto3.Terminate{}}, closed: true},
		}},
		// Seeds 1, 46: Postgres runs the complete request before the Terminate, committing
		// its INSERT, and aborts the incomplete batch after it.
		{name: "Terminate after a complete batch and part of another", rounds: []protoRound{
			{send: []pgproto3.FrontendMessage{
				parse("", "INSERT INTO "+protoTable+" VALUES (1) RETURNING v"), bind("", ""), exec("", 0), sync,
				parse("", "SELECT 2"), bind("", ""), &pgproto3.Terminate{},
			}, closed: true},
		}},
		// Seed 8434: the error skips the Query that ends the batch, so nothing more comes until
		// the client's Sync; sluice waited for the Query's ReadyForQuery and read neither the
		// Sync nor a Terminate.
		{name: "Query after an error in an unsynced batch, then a Sync", rounds: []protoRound{
			{send: []pgproto3.FrontendMessage{exec("", 0), q("SELECT 1")}, until: "ErrorResponse"},
			send(sync),
		}},
		{name: "Terminate after an error in an unsynced batch and a Query", rounds: []protoRound{
			{send: []pgproto3.FrontendMessage{exec("", 0), q("SELECT 1"), &pgproto3.Terminate{}}, closed: true},
		}},
		{name: "Terminate in the middle of a pipeline", rounds: []protoRound{
			{send: []pgproto3.FrontendMessage{parse("", "SELECT 1"), bind("", ""), exec("", 0), &pgproto3.Terminate{}}, closed: true},
		}},
		{name: "Terminate after a complete batch", rounds: []protoRound{
			{send: []pgproto3.FrontendMessage{parse("", "SELECT 1"), bind("", ""), exec("", 0), sync, &pgproto3.Terminate{}}, closed: true},
		}},
		{name: "Terminate inside a transaction", rounds: []protoRound{
			send(q("BEGIN")),
			{send: []pgproto3.FrontendMessage{q("SELECT 1"), &pgproto3.Terminate{}}, closed: true},
		}},
	}
}

// manyBindExecute is n pairs of Bind and Execute of the unnamed statement: more messages than
// sluice lets a client have outstanding (maxOutstanding in internal/frontend).
func manyBindExecute(n int) []pgproto3.FrontendMessage {
	msgs := make([]pgproto3.FrontendMessage, 0, 2*n)
	for range n {
		msgs = append(msgs, &pgproto3.Bind{}, &pgproto3.Execute{})
	}
	return msgs
}

// protoTarget is one place a case runs: Postgres itself or a sluice in front of it.
type protoTarget struct {
	name string
	addr string
	// leaveFirst makes the first client leave before the second comes: a session-mode server
	// is the client's until it leaves.
	leaveFirst bool
}

func TestProtocolDifferential(t *testing.T) {
	ctx := context.Background()
	if err := pg.Exec(ctx, appDB, fmt.Sprintf("DROP TABLE IF EXISTS %s; CREATE TABLE %[1]s (v int); GRANT ALL ON %[1]s TO %s", protoTable, appUser)); err != nil {
		t.Fatal(err)
	}
	targets := protoTargets(t)
	for _, tc := range protoCases() {
		t.Run(tc.name, func(t *testing.T) {
			want := runProtoCase(t, targets[0], tc)
			if slices.Contains(want, noReply) {
				// A round waits for more than Postgres sends: fix the case, it costs seconds.
				t.Fatalf("postgres itself did not answer in time:\n%s", strings.Join(want, "\n"))
			}
			for _, tg := range targets[1:] {
				if tg.name == "transaction" && tc.notInTxMode != "" {
					continue
				}
				got := runProtoCase(t, tg, tc)
				if d := diffStreams(want, got); d != "" {
					t.Errorf("%s mode differs from postgres:\n%s", tg.name, d)
				}
			}
		})
	}
}

// runProtoCase runs tc on a new connection to tg and returns what the client received, one
// normalised line per message. A second client's query follows, which must not wait: the first
// client is idle, so in transaction mode it must have given its server back.
func runProtoCase(t *testing.T, tg protoTarget, tc protoCase) []string {
	t.Helper()
	c := dialRawAddr(t, tg.addr)
	c.login()
	var out []string
	var meanwhile chan []string
	open := true
	for i, r := range append(tc.rounds, protoRound{send: []pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT 'end'"}}}) {
		if !open {
			break
		}
		out = append(out, fmt.Sprintf("-- round %d", i+1))
		c.send(r.send...)
		var got []string
		got, open = readRound(c, r)
		if r.unfinished && len(got) > 0 {
			got = append(leaveUnfinished(append([]string{"-- round"}, got[:len(got)-1]...))[1:], got[len(got)-1])
		}
		out = append(out, got...)
		if r.meanwhile {
			meanwhile = otherClientQuery(t, tg.addr)
			time.Sleep(50 * time.Millisecond) // let it reach the pool first
		}
	}
	if tg.leaveFirst {
		c.conn.Close()
	}
	if meanwhile != nil {
		if got := <-meanwhile; len(got) != 4 || got[1] != `DataRow "other"` {
			out = append(out, "-- client meanwhile:")
			out = append(out, got...)
		}
	}
	if got := <-otherClientQuery(t, tg.addr); len(got) != 4 || got[1] != `DataRow "other"` {
		out = append(out, "-- second client:")
		out = append(out, got...)
	}
	return out
}

// otherClientQuery logs another client in to addr and sends a query; the channel gets its
// replies, and the client leaves.
func otherClientQuery(t *testing.T, addr string) chan []string {
	other := dialRawAddr(t, addr)
	other.login()
	other.send(&pgproto3.Query{String: "SELECT 'other'"})
	ch := make(chan []string, 1)
	go func() {
		got, _ := readRound(other, protoRound{rfq: 1})
		other.conn.Close() // in session mode, the server goes back to the pool
		ch <- got
	}()
	return ch
}

// readRound reads the replies to one round; open is false once the connection has ended.
func readRound(c *rawClient, r protoRound) (out []string, open bool) {
	rfq := r.rfq
	if rfq == 0 {
		for _, m := range r.send {
			switch m.(type) {
			case *pgproto3.Query, *pgproto3.Sync, *pgproto3.FunctionCall:
				rfq++
			}
		}
	}
	for {
		m, err := c.receive(3 * time.Second)
		if err != nil {
			switch {
			case isTimeout(err):
				return append(out, noReply), true
			case r.closed && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isConnReset(err)):
				return append(out, "<closed>"), false
			}
			return append(out, "<error "+err.Error()+">"), false
		}
		line, typ := normalise(m)
		if n, ok := m.(*pgproto3.NotificationResponse); ok {
			// Clients tell their own notifications by the PID of their BackendKeyData.
			line += fmt.Sprintf(" self=%v", n.PID == c.pid)
		}
		if line != "" {
			out = append(out, line)
		}
		if r.closed {
			continue
		}
		if r.until != "" {
			if typ == r.until {
				return out, true
			}
			continue
		}
		if typ == "ReadyForQuery" {
			if rfq--; rfq <= 0 {
				return out, true
			}
		}
	}
}

// noReply marks a round whose replies stopped before the round's end.
const noReply = "<no reply in 3s>"

func isConnReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}

// normalise renders m as a line to compare, or "" for a message a pooler must change
// (BackendKeyData). It also returns the message's type name.
func normalise(m pgproto3.BackendMessage) (line, typ string) {
	typ = fmt.Sprintf("%T", m)
	typ = typ[strings.LastIndexByte(typ, '.')+1:]
	switch m := m.(type) {
	case *pgproto3.BackendKeyData:
		return "", typ
	case *pgproto3.ErrorResponse:
		// File, Line and Routine name Postgres' source, which a client does not act on.
		msg := m.Message
		if m.Code == "08P01" && strings.HasPrefix(msg, "unexpected message type 0x") && strings.HasSuffix(msg, " during COPY from stdin") {
			// A client that sends anything but COPY messages during a COPY FROM loses its
			// connection (a FATAL follows), with or without sluice. The type the server names
			// is that of the first such message it read, which may be one sluice sent in
			// front of the client's own: the Close of a statement evicted from the server's
			// cache, or a Parse of the unnamed statement sent again (seed 1685, after 1683).
			msg = "unexpected message type 0x?? during COPY from stdin"
		}
		return fmt.Sprintf("%s %s %s %q detail=%q hint=%q pos=%d where=%q", typ, m.Severity, m.Code, msg, m.Detail, m.Hint, m.Position, m.Where), typ
	case *pgproto3.NoticeResponse:
		return fmt.Sprintf("%s %s %s %q detail=%q hint=%q where=%q", typ, m.Severity, m.Code, m.Message, m.Detail, m.Hint, m.Where), typ
	case *pgproto3.NotificationResponse:
		return fmt.Sprintf("%s %q %q", typ, m.Channel, m.Payload), typ
	case *pgproto3.DataRow:
		vals := make([]string, len(m.Values))
		for i, v := range m.Values {
			vals[i] = strconv.Quote(string(v))
		}
		return typ + " " + strings.Join(vals, ","), typ
	case *pgproto3.CopyData:
		return fmt.Sprintf("%s %q", typ, m.Data), typ
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Sprintf("%s %+v", typ, m), typ
	}
	return string(b), typ
}

// diffStreams returns "" when a and b are equal, or both side by side from the first difference.
func diffStreams(want, got []string) string {
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	if i == len(want) && i == len(got) {
		return ""
	}
	var b strings.Builder
	if i > 0 {
		fmt.Fprintf(&b, "  same: %s\n", want[i-1])
	}
	for j := i; j < len(want) || j < len(got); j++ {
		w, g := "", ""
		if j < len(want) {
			w = want[j]
		}
		if j < len(got) {
			g = got[j]
		}
		mark := " "
		if w != g {
			mark = "!"
		}
		fmt.Fprintf(&b, "%s postgres: %s\n%s   sluice: %s\n", mark, w, mark, g)
	}
	return b.String()
}

// protoTargets are Postgres and two sluices in front of it, in session and transaction mode,
// each with a pool of one server: a server a case leaves attached to its client shows up as the
// next client's wait.
func protoTargets(t *testing.T) []protoTarget {
	session := startSluice(t, poolConfig{Mode: "session", PoolSize: 1})
	txn := startSluice(t, poolConfig{Mode: "transaction", PoolSize: 1})
	return []protoTarget{
		{"postgres", net.JoinHostPort("127.0.0.1", strconv.Itoa(pg.Port)), false},
		{"session", session.Addr(), true},
		{"transaction", txn.Addr(), false},
	}
}

// TestProtocolDifferentialStartup compares logins with unusual startup packets: what the client
// receives up to its first ReadyForQuery (ParameterStatus sorted, since its order is free), then
// the answer to a query that shows the startup's effect.
func TestProtocolDifferentialStartup(t *testing.T) {
	targets := protoTargets(t)
	cases := []struct {
		name   string
		params []string
		query  string
		// deferred says why sluice may give the client its error at another point than
		// Postgres does; the errors themselves must be the same.
		deferred string
	}{
		{"database missing: the user's name", []string{"user", appUser}, "SELECT current_database()", ""},
		{"options -c", []string{"user", appUser, "database", appDB, "options", "-c search_path=a,b -c statement_timeout=5s"}, "SHOW search_path; SHOW statement_timeout", ""},
		{"options --name=value", []string{"user", appUser, "database", appDB, "options", "--work_mem=8MB"}, "SHOW work_mem", ""},
		{"a setting as a parameter", []string{"user", appUser, "database", appDB, "DateStyle", "German"}, "SHOW DateStyle", ""},
		{"application_name", []string{"user", appUser, "database", appDB, "application_name", "diff"}, "SHOW application_name", ""},
		// The pool's one server has the last case's application_name: setting it back for
		// this client must not tell the client anything new.
		{"after a client with another application_name", []string{"user", appUser, "database", appDB}, "SHOW application_name", ""},
		{"unknown parameter", []string{"user", appUser, "database", appDB, "no_such_setting", "1"}, "SELECT 1", lazyServer},
		{"unknown custom parameter", []string{"user", appUser, "database", appDB, "myapp.tenant", "7"}, "SHOW myapp.tenant", ""},
		{"invalid value", []string{"user", appUser, "database", appDB, "statement_timeout", "soon"}, "SELECT 1", lazyServer},
		// Like PgBouncer's "no such database", before authentication: without a pool there
		// is no password to check against.
		{"database that does not exist", []string{"user", appUser, "database", "no_such_db"}, "SELECT 1", "no pool, no authentication"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := runStartupCase(t, targets[0].addr, tc.params, tc.query)
			for _, tg := range targets[1:] {
				got := runStartupCase(t, tg.addr, tc.params, tc.query)
				if tc.deferred != "" {
					want, got = errorLines(want), errorLines(got)
				}
				if d := diffStreams(want, got); d != "" {
					t.Errorf("%s mode differs from postgres:\n%s", tg.name, d)
				}
			}
		})
	}
}

// lazyServer is why a startup setting's error comes at the first query: sluice logs a client in
// without a server, and the setting reaches one only then. The error is FATAL there too.
const lazyServer = "settings reach a server at the first query"

// errorLines keeps the ErrorResponse lines of a stream.
func errorLines(lines []string) []string {
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, "ErrorResponse ") {
			out = append(out, l)
		}
	}
	return out
}

// runStartupCase logs in to addr with params and runs query; it returns the login's and the
// query's messages, normalised.
func runStartupCase(t *testing.T, addr string, params []string, query string) []string {
	c := dialRawAddr(t, addr)
	c.startup(params...)
	var out, status []string
	for done := false; !done; {
		m, err := c.receive(5 * time.Second)
		if err != nil {
			return append(out, "<"+err.Error()+">")
		}
		switch m := m.(type) {
		case *pgproto3.AuthenticationMD5Password:
			c.send(&pgproto3.PasswordMessage{Password: md5Password(appUser, appPass, m.Salt)})
			out = append(out, "AuthenticationMD5Password")
			continue
		case *pgproto3.ParameterStatus:
			status = append(status, m.Name+"="+m.Value)
			continue
		case *pgproto3.ReadyForQuery:
			done = true
		case *pgproto3.ErrorResponse:
			line, _ := normalise(m)
			out = append(out, line)
			if m.Severity == "FATAL" {
				r, _ := readRound(c, protoRound{closed: true})
				return append(out, r...)
			}
			continue
		}
		if line, _ := normalise(m); line != "" {
			out = append(out, line)
		}
	}
	slices.Sort(status)
	out = append(out, "ParameterStatus "+strings.Join(status, " "))
	c.send(&pgproto3.Query{String: query})
	r, _ := readRound(c, protoRound{rfq: 1})
	return append(out, r...)
}

// TestStatementUsedAfterAnErrorInAnEarlierBatch: in transaction mode a client's named
// statement is prepared on its server in front of the first Bind that uses it. When an error
// skips that Parse and the client has already pipelined a Bind of the statement after the
// Sync (libpq's pipeline test "transaction" does), sluice must prepare it again for that
// Bind: the server does not have it. Another client holds a second server that has the
// statement, so sluice answers the client's Parse itself and prepares it at the Bind.
func TestStatementUsedAfterAnErrorInAnEarlierBatch(t *testing.T) {
	txn := startSluice(t, poolConfig{Mode: "transaction", PoolSize: 2})
	holder := dialRaw(t, txn)
	holder.login()
	holder.send(&pgproto3.Query{String: "BEGIN"}, &pgproto3.Parse{Name: "held", Query: "ROLLBACK"}, &pgproto3.Sync{})
	if got, _ := readRound(holder, protoRound{rfq: 2}); slices.Contains(got, noReply) {
		t.Fatalf("holder: %v", got)
	}
	batches := []pgproto3.FrontendMessage{
		&pgproto3.Parse{Name: "rb", Query: "ROLLBACK"},
		&pgproto3.Parse{Query: "BEGIN"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Parse{Query: "SELECT 1/0"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Bind{PreparedStatement: "rb"}, &pgproto3.Execute{},
		&pgproto3.Sync{},
		&pgproto3.Bind{PreparedStatement: "rb"}, &pgproto3.Execute{},
		&pgproto3.Sync{},
		&pgproto3.Query{String: "SELECT 'end'"},
	}
	run := func(addr string) []string {
		c := dialRawAddr(t, addr)
		c.login()
		c.send(batches...) // one write: sluice reads it all before the server answers
		got, _ := readRound(c, protoRound{send: batches})
		return got
	}
	want := run(net.JoinHostPort("127.0.0.1", strconv.Itoa(pg.Port)))
	if d := diffStreams(want, run(txn.Addr())); d != "" {
		t.Errorf("transaction mode differs from postgres:\n%s", d)
	}
}

// TestBrokenServerGoesBackAtIdle: sluice marks a server broken when it may have lost track of
// the statements prepared on it, here when an error skips the Close that evicted a statement
// from a cache of one and the Parse it made room for. Such a server must still go back to its
// pool (which closes it) when the client is idle: kept, it served the client's next requests
// and the next client of a pool of one waited for as long as the client stayed (found by
// TestProtocolRandom, seed 6011, through a DEALLOCATE ALL).
func TestBrokenServerGoesBackAtIdle(t *testing.T) {
	txn := startSluice(t, poolConfig{Mode: "transaction", PoolSize: 1, Pool: "prepared_statements_cache_size = 1"})
	tc := protoCase{rounds: []protoRound{
		{send: []pgproto3.FrontendMessage{&pgproto3.Parse{Name: "c1", Query: "SELECT 41"}, &pgproto3.Sync{}}},
		{send: []pgproto3.FrontendMessage{&pgproto3.Describe{ObjectType: 'P', Name: "nope"},
			&pgproto3.Parse{Name: "c2", Query: "SELECT 42"}, &pgproto3.Sync{}}},
		{send: []pgproto3.FrontendMessage{&pgproto3.Bind{PreparedStatement: "c1"}, &pgproto3.Execute{}, &pgproto3.Sync{}}},
	}}
	want := runProtoCase(t, protoTarget{"postgres", net.JoinHostPort("127.0.0.1", strconv.Itoa(pg.Port)), false}, tc)
	if d := diffStreams(want, runProtoCase(t, protoTarget{"transaction", txn.Addr(), false}, tc)); d != "" {
		t.Errorf("transaction mode differs from postgres:\n%s", d)
	}
}

// TestSyncInsideAFailedCopyReachesNoOtherClient: a Sync the client sends among the rows of a
// COPY FROM is ignored by Postgres while the COPY runs, but answered with a ReadyForQuery once a
// bad row has failed the COPY. sluice does not send such a Sync (it cannot tell which it will
// be): before, that ReadyForQuery came after the server had gone back to the pool, and the next
// client of the server got the replies to sluice's own query that put its settings back
// (found by TestProtocolRandom, seeds 1462 and 2330). The client gets one ReadyForQuery fewer
// than from Postgres, for a Sync no client waits on.
func TestSyncInsideAFailedCopyReachesNoOtherClient(t *testing.T) {
	ctx := context.Background()
	if err := pg.Exec(ctx, appDB, fmt.Sprintf("DROP TABLE IF EXISTS %s; CREATE TABLE %[1]s (v int); GRANT ALL ON %[1]s TO %s", protoTable, appUser)); err != nil {
		t.Fatal(err)
	}
	copyIn := "COPY " + protoTable + " FROM STDIN"
	for _, tc := range []struct {
		name  string
		start []pgproto3.FrontendMessage
		end   []pgproto3.FrontendMessage
	}{
		{"simple", []pgproto3.FrontendMessage{&pgproto3.Query{String: copyIn}}, []pgproto3.FrontendMessage{&pgproto3.CopyDone{}}},
		{"extended", []pgproto3.FrontendMessage{&pgproto3.Parse{Query: copyIn}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}},
			[]pgproto3.FrontendMessage{&pgproto3.CopyDone{}, &pgproto3.Sync{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			txn := startSluice(t, poolConfig{Mode: "transaction", PoolSize: 1})
			c := dialRaw(t, txn)
			c.login()
			c.send(&pgproto3.Query{String: "SET standard_conforming_strings = off"}) // the next client's is on
			if got, _ := readRound(c, protoRound{rfq: 1}); slices.Contains(got, noReply) {
				t.Fatalf("SET: %v", got)
			}
			c.send(tc.start...)
			c.awaitCopyIn()
			c.send(append([]pgproto3.FrontendMessage{&pgproto3.CopyData{Data: []byte("x\n")}, &pgproto3.Sync{},
				&pgproto3.CopyData{Data: []byte("1\n")}}, tc.end...)...)
			if got, _ := readRound(c, protoRound{rfq: 1}); !slices.Contains(got, `{"Type":"ReadyForQuery","TxStatus":"I"}`) {
				t.Fatalf("COPY: %v", got)
			}
			c.send(&pgproto3.Query{String: "SELECT 'next'"})
			if got, _ := readRound(c, protoRound{rfq: 1}); len(got) != 4 || got[1] != `DataRow "next"` {
				t.Errorf("the client's next query got:\n%s", strings.Join(got, "\n"))
			}
			if got := <-otherClientQuery(t, txn.Addr()); len(got) != 4 || got[1] != `DataRow "other"` {
				t.Errorf("the next client got:\n%s", strings.Join(got, "\n"))
			}
		})
	}
}

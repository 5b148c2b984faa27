package frontend

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicepg/sluice/internal/backend"
	"github.com/sluicepg/sluice/internal/classify"
	"github.com/sluicepg/sluice/internal/config"
	"github.com/sluicepg/sluice/internal/netio"
	"github.com/sluicepg/sluice/internal/pool"
	"github.com/sluicepg/sluice/internal/route"
	"github.com/sluicepg/sluice/internal/wire"
	"github.com/sluicepg/sluice/plugin"
)

// ClientSession is one client connection after its startup packet. Its own goroutine (the reader)
// reads the client's messages and writes them to a server; while a server is attached, a second
// goroutine (the pump) reads the server's replies and writes them to the client.
type ClientSession struct {
	l      *Listener
	conn   net.Conn
	sock   *netio.Conn // the socket under conn, TLS or not; nil when not a TCP or Unix socket
	r      wire.Reader
	out    clientOut
	pid    uint32
	secret [4]byte

	user, db string
	tls      bool // the client connected with TLS
	info     sessionInfo
	target   *route.Target
	gen      uint64 // routing table generation target was looked up in
	txMode   bool   // transaction pooling: rename statements, release at idle
	stmtMode bool   // statement pooling (txMode too): a transaction may not outlast a request

	// failing is set after a local error in an extended-protocol batch: messages are dropped up
	// to Sync, as Postgres does. Reader only.
	failing bool
	// checkoutFailures counts the client's failed attempts to get a server, for the pool's
	// checkout_failure_limit. Reader only.
	checkoutFailures int
	// scratch is the reader's buffer for messages it builds.
	scratch []byte
	// unnamed is the client's last Parse of the unnamed statement (transaction mode), and
	// unnamedSeq counts them; see unnamedLocked.
	unnamed    []byte
	unnamedSeq uint64
	// unnamedGood is the client's last Parse of the unnamed statement that the server
	// answered with ParseComplete (unnamedGoodSeq its number, 0 when there is none): what the
	// client has again when an error skips the Parses after it. unnamedSent are the client's
	// unnamed Parses sent and not yet answered, oldest first, their buffers reused. s.mu is
	// held for all three.
	unnamedGood    []byte
	unnamedGoodSeq uint64
	unnamedSent    []sentParse
	// unnamedDropped is the number of the last unnamed Parse a simple Query or a Close of the
	// unnamed statement came after: that statement and those before it are gone.
	unnamedDropped uint64
	// unnamedKept is the unnamed statement a Query that followed unsynced extended messages
	// dropped (unnamedKeptSeq and unnamedKeptDropped what the numbers were): the client has
	// it again if an error before the Query makes the server skip it.
	unnamedKept        []byte
	unnamedKeptSeq     uint64
	unnamedKeptDropped uint64
	// unnamedDeferred is set while unnamed was answered with a ParseComplete but not yet sent to
	// a server nor used by a Bind a plugin answered; see deferForHooks.
	unnamedDeferred bool
	// portalSets are the SET and RESET statements of the client's bound portals, by portal
	// name, for the Execute that runs them (settings.go); nil until a SET is bound. Reader only.
	portalSets map[string][]classify.Setting
	// initial are the client's settings right after login, restored by DISCARD ALL.
	initial []param
	// wsrv is the server the reader has buffered writes for, flushed before it blocks.
	wsrv *backend.ServerConn
	// wmu is held by the reader while it flushes wsrv; see flushServer.
	wmu sync.Mutex
	// deadline is set while the idle-in-transaction read deadline is armed.
	deadline atomic.Bool
	// stmtViolation is set by the pump when a request left a transaction open in statement
	// pooling mode: the client has its FATAL, and the reader ends the session before it reads
	// another message.
	stmtViolation atomic.Bool
	// skipToSync is set by the pump when the server failed a message of an extended-protocol
	// batch whose Sync the reader has not sent yet: Postgres skips every message up to that
	// Sync without a reply. The reader drops such messages itself: queued, their replies would
	// be outstanding forever and, past maxOutstanding, stop the reader before it reads the
	// Sync (libpq's pipeline mode goes on sending after an error). The reader clears it when it
	// queues the Sync.
	skipToSync atomic.Bool
	// syncs counts the Syncs queued, and unparsed holds, by server statement name, the Parses
	// sent and not yet answered, with the server and the number of Syncs queued before each:
	// a statement used after a later Sync may not be there, for an error can still skip its
	// Parse (prepareLocked). Guarded by mu.
	syncs    uint64
	unparsed map[string]pendingParse
	// watch notices a client that leaves while the reader drains its reply (watch.go); it
	// also keeps the client read deadline the session set.
	watch clientWatch

	// mu guards the fields below, shared by the reader and the pump.
	mu   sync.Mutex
	srv  *backend.ServerConn
	pl   *pool.Pool
	q    queue
	open bool // an extended-protocol batch was sent without its Sync yet
	// copyOpen is set while the reader forwards COPY data: the server must stay attached.
	copyOpen bool
	// copyWriting is set while the reader writes one copy message to the server (copyMessage).
	copyWriting bool
	// copyEnds counts the CopyDone and CopyFail messages the client sent (entry.copyGen).
	copyEnds uint64
	// inCopyIn is set while the server is in a COPY FROM STDIN that began with the request
	// whose copyGen is copyInGen; a Sync the client sends before ending that COPY is ignored
	// by the server, so no ReadyForQuery is to come for it.
	inCopyIn  bool
	copyInGen uint64
	// copyInSimple says that COPY began with a Query, not an Execute.
	copyInSimple bool
	// copyAhead says the message being read may be inside a COPY FROM that an Execute still
	// unanswered begins: if it does, an error skips the message to the Sync (dispatch).
	copyAhead bool
	tx        byte // transaction status of the last ReadyForQuery
	// params are the settings the client expects its server to have (reported parameters and
	// startup settings); pver changes whenever they do.
	params []param
	pver   uint64
	// carried names the params whose value is the client's own SET statement, which sluice
	// sets again on the servers it moves to (settings.go); nil when there are none.
	carried map[string]bool
	// setTx is what the SETs of the transaction under way wait for: its end (settings.go).
	setTx setTx
	// pkey caches paramsKey for pkeyVer.
	pkey    string
	pkeyVer uint64
	// fanSrvs are the servers a query across shards (fanout.go, copy.go) holds while it
	// runs: a cancel request reaches each of them.
	fanSrvs []*backend.ServerConn
	// waitStop ends the reader's wait for a server (checkoutFrom) while waiting is set: a
	// cancel request that comes meanwhile has no server to go to and cancels the wait instead.
	// Made at the first wait, kept for the next ones.
	waitStop chan struct{}
	waiting  bool
	// stmts maps the client's statement names to what sluice prepares (transaction mode).
	stmts   map[string]*statement
	closing bool // the reader is taking the server back or the client left
	pumping bool // a pump goroutine is reading the server
	// drained, when set, is closed (and cleared) once no reply is outstanding or the server is
	// lost: a session-mode client's Terminate waits on it (see terminate), and a Parse whose
	// name may or may not be taken (see awaitEarlierBatches).
	drained chan struct{}
	// drainToRequestEnd has drained closed once no Sync or Query is left among the replies
	// awaited, for a Terminate after an incomplete batch.
	drainToRequestEnd bool
	// paramsUntold is set when params changed without the client being told (DISCARD ALL puts
	// back the login's settings after the server reported its defaults): the next applyParams
	// reports every value it sets, even one equal to params.
	paramsUntold bool
	// qSpace, when set, is closed by the pump once the reply queue is down to
	// outstandingResume: the reader waits on it (waitForReplies).
	qSpace chan struct{}
	// discarded is set between a DISCARD ALL's CommandComplete and its ReadyForQuery.
	discarded bool
	stopping  bool // shutdown: close the client at its next idle point
	// killed is set by the admin console's KILL or KILL_CLIENT: the session's servers may have
	// a cancel request on the way, and are closed, never released for reuse.
	killed bool
	// saidFatal is the server whose FATAL ErrorResponse the client was given: when that server
	// closes the connection, as it does next, the client has already heard why.
	saidFatal *backend.ServerConn
	pump      sync.WaitGroup

	traf traffic

	routing
	pluginState
}

// sentParse is a client's Parse of the unnamed statement sent to a server and not yet answered.
type sentParse struct {
	seq uint64
	msg []byte
}

// statement is a client's named prepared statement in transaction mode.
type statement struct {
	server string                 // the name sluice prepared it under: derived from the query, shared by clients
	parse  []byte                 // a Parse message for server, ready to send
	effect classify.SessionEffect // what running it may leave in the server's session
	// dropsAll says its text may hold a DEALLOCATE ALL or DISCARD ALL (mayDropStatements),
	// found once here rather than at each Bind.
	dropsAll bool
	// renew is set by the client's Parse, when sluice answered it without a server: the first
	// server the statement is used on prepares it again if it has it (see parseNamed).
	renew bool
	// batch is the session's number of Syncs when the client parsed it, and confirmed is set
	// once its ParseComplete has come: until then an error in its batch may yet skip the
	// Parse (see settledStatement).
	batch     uint64
	confirmed bool
	// skipped is set when the server skipped its Parse after an error.
	skipped bool
}

// serveConn logs c in and starts its session. inherited are the socket options c has from its
// listener, or nil.
func (l *Listener) serveConn(c net.Conn, inherited *sockOpts) {
	n := l.clients.Add(1)
	s := l.login(c, n, inherited)
	if s == nil {
		c.Close()
		l.clients.Add(-1)
		return
	}
	s.info.loggedIn()
	l.conns.Add(1)
	session := func() {
		defer l.conns.Done()
		defer l.clients.Add(-1)
		defer c.Close()
		defer l.unregister(s)
		var err error
		if s.info.admin {
			err = s.runAdmin()
		} else {
			err = s.run()
		}
		s.finish(err)
		if l.table().Config.General.LogClientDisconnections {
			l.log.Info("client disconnected", "remote", c.RemoteAddr().String(), "user", s.user, "db", s.db, "err", err)
		}
	}
	if l.clients.Load() <= maxInlineSessions {
		// Few clients: the session stays on this goroutine, which saves a goroutine start,
		// its stack's growth and the wakeup of another thread per connection (about a tenth
		// of the CPU of a connection that logs in, runs a query and leaves). The login's
		// deeper calls grew this stack, but at most maxInlineSessions sessions keep one so.
		session()
		return
	}
	// The session goes on in a new goroutine with a small stack: the login's deeper calls
	// (formatting, hashing) grew this one's, and an idle client's stack is most of its memory.
	// session is the goroutine's first frame, with no wrapper above it: an idle session's
	// stack depth decides the size new goroutines start with (the runtime's average of
	// scanned stacks), and one frame more moves it from 2 KiB to 4 KiB.
	go session()
}

// login runs a new connection's startup and authentication. It returns the logged-in session, or
// nil when the connection is to be closed (after telling the client why, where that is possible).
// n is the number of connected clients including this one.
func (l *Listener) login(c net.Conn, n int64, inherited *sockOpts) (_ *ClientSession) {
	defer l.surviveLogin(c)
	panicHook("login", nil)
	tbl := l.table()
	g := &tbl.Config.General
	if tc, ok := c.(*net.TCPConn); ok {
		o := clientSockOpts(g)
		if inherited == nil || inherited.ka != o.ka {
			_ = tc.SetKeepAliveConfig(o.ka)
		}
		if (inherited == nil && o.userTimeout > 0) || (inherited != nil && inherited.userTimeout != o.userTimeout) {
			if rc, err := tc.SyscallConn(); err == nil {
				_ = netio.SetUserTimeout(rc, o.userTimeout)
			}
		}
	}
	c = netio.Wrap(c)
	sock, _ := c.(*netio.Conn)
	if g.ClientLoginTimeout > 0 {
		_ = c.SetDeadline(time.Now().Add(g.ClientLoginTimeout))
	}
	sp, c, encrypted, pipelined, err := l.readStartup(c, g)
	if err != nil {
		switch {
		case errors.Is(err, errStartupLength):
			l.log.Debug("closed a connection without a startup packet", "remote", c.RemoteAddr().String(), "err", err)
		case errors.Is(err, errBadStartup):
			_, _ = c.Write(wire.AppendError(nil, "FATAL", "08P01", err.Error()))
		}
		return nil
	}
	if sp == nil {
		return nil // a cancel request, handled
	}
	if l.shutting.Load() {
		_, _ = c.Write(wire.AppendError(nil, "FATAL", "57P01", "sluice is shutting down"))
		return nil
	}
	if !encrypted && (g.TLSMode == config.TLSRequire || g.TLSMode == config.TLSVerifyCA || g.TLSMode == config.TLSVerifyFull) {
		_, _ = c.Write(wire.AppendError(nil, "FATAL", "28000", "sluice requires TLS (tls_mode = require): connect with sslmode=require"))
		return nil
	}
	if g.MaxClientConn > 0 && n > int64(g.MaxClientConn) {
		_, _ = c.Write(wire.AppendError(nil, "FATAL", "53300",
			fmt.Sprintf("sorry, too many clients already (max_client_conn = %d)", g.MaxClientConn)))
		return nil
	}
	if g.TLSMode == config.TLSVerifyFull {
		// The certificate (already checked against tls_ca_file in the handshake) must name the
		// user, as Postgres' clientcert=verify-full does.
		cn := ""
		if tc, ok := c.(*tls.Conn); ok {
			if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
				cn = certs[0].Subject.CommonName
			}
		}
		if cn == "" || cn != sp.get("user") {
			_, _ = c.Write(wire.AppendError(nil, "FATAL", "28000",
				fmt.Sprintf("the client certificate's common name %q is not the user name %q", cn, sp.get("user"))))
			return nil
		}
	}
	s := &ClientSession{l: l, conn: c, sock: sock, tx: 'I', tls: encrypted}
	s.out.conn = c
	s.r.Reset(c, g.MaxMessageSize)
	s.r.Unread(pipelined)
	if err := s.login(tbl, sp); err != nil {
		l.log.Debug("login failed", "remote", c.RemoteAddr().String(), "err", err)
		l.unregister(s)
		return nil
	}
	_ = c.SetDeadline(time.Time{})
	if g.LogClientConnections {
		l.log.Info("client connected", "remote", c.RemoteAddr().String(), "user", s.user, "db", s.db)
	}
	return s
}

// readStartup reads packets until a real startup packet. An SSLRequest is answered 'S' and the
// connection turned into TLS when tls_mode allows it, 'N' otherwise; a GSSENCRequest gets 'N';
// a CancelRequest is served (then it returns a nil packet). It returns the connection to go on
// with, which is the TLS one after a handshake, and any bytes the client sent after its startup
// packet (a client may pipeline its first messages), which the session must read first.
func (l *Listener) readStartup(c net.Conn, g *config.General) (sp *startupPacket, _ net.Conn, encrypted bool, pipelined []byte, err error) {
	var buf [256]byte
	for i := 0; i < 3; i++ {
		body, rest, err := readStartupPacket(c, buf[:0])
		if err != nil {
			return nil, c, encrypted, nil, err
		}
		sp, err := parseStartup(body)
		if err != nil {
			return nil, c, encrypted, nil, err
		}
		switch sp.code {
		case codeSSL, codeGSSENC:
			// The client must wait for the answer. Bytes sent before it would be taken as
			// if they came over the encrypted channel (CVE-2021-23214): Postgres refuses them too.
			if len(rest) > 0 {
				return nil, c, encrypted, nil, fmt.Errorf("%w: received unencrypted data after SSL request", errBadStartup)
			}
		}
		switch sp.code {
		case codeSSL:
			if encrypted {
				return nil, c, encrypted, nil, fmt.Errorf("%w: SSLRequest inside TLS", errBadStartup)
			}
			if g.TLS == nil || g.TLSMode == config.TLSDisable {
				if _, err := c.Write([]byte{'N'}); err != nil {
					return nil, c, encrypted, nil, err
				}
				continue
			}
			if _, err := c.Write([]byte{'S'}); err != nil {
				return nil, c, encrypted, nil, err
			}
			tc := tls.Server(c, g.TLS)
			if err := tc.Handshake(); err != nil {
				return nil, c, encrypted, nil, fmt.Errorf("TLS handshake: %w", err)
			}
			c, encrypted = tc, true
			continue
		case codeGSSENC:
			if _, err := c.Write([]byte{'N'}); err != nil {
				return nil, c, encrypted, nil, err
			}
			continue
		case codeCancel:
			l.cancel(sp.cancelPID, sp.cancelSecret)
			return nil, c, encrypted, nil, nil
		}
		if len(rest) > 0 {
			pipelined = bytes.Clone(rest)
		}
		return sp, c, encrypted, pipelined, nil
	}
	return nil, c, encrypted, nil, fmt.Errorf("%w: too many encryption requests", errBadStartup)
}

// fatal sends a FATAL error to the client.
func (s *ClientSession) fatal(code, msg string) error {
	_ = s.out.send(wire.AppendError(nil, "FATAL", code, msg))
	return &clientError{code: code, msg: msg}
}

type clientError struct{ code, msg string }

// errStatementMode ends a session whose request left a transaction open in statement pooling
// mode (the client was told with a FATAL).
var errStatementMode = &clientError{code: "08P01", msg: "transaction blocks not allowed in statement pooling mode"}

func (e *clientError) Error() string { return e.msg + " (SQLSTATE " + e.code + ")" }

// untracked startup parameters are not settings to carry to servers.
var untracked = map[string]bool{"user": true, "database": true, "options": true, "replication": true}

func (s *ClientSession) login(tbl *route.Table, sp *startupPacket) error {
	if b := sp.negotiation(); b != nil {
		s.out.mu.Lock()
		_, _ = s.out.Write(b) // sent with the next reply, before authentication as in Postgres
		s.out.mu.Unlock()
	}
	s.user = sp.get("user")
	if s.user == "" {
		return s.fatal("28000", "no PostgreSQL user name specified in startup packet")
	}
	s.db = sp.get("database")
	if s.db == "" {
		s.db = s.user
	}
	if sp.get("replication") != "" && sp.get("replication") != "false" && sp.get("replication") != "0" {
		return s.fatal("08P01", "sluice does not support replication connections")
	}
	// Room for the startup settings and the reported ones added below: one allocation.
	s.params = make([]param, 0, len(sp.params)+len(trackedReported))
	if err := s.startupHooks(tbl, sp.params); err != nil {
		return err
	}
	// options first: as in Postgres, a setting given in the startup packet itself wins over the
	// same setting in options ("-c client_encoding=SQL_ASCII" beside client_encoding=UTF8).
	if o := sp.get("options"); o != "" {
		opts, err := parseOptions(o)
		if err != nil {
			return s.fatal("08P01", err.Error())
		}
		for _, kv := range opts {
			s.setParam(canonicalName(kv.name), kv.value)
		}
	}
	for _, kv := range sp.params {
		if !untracked[kv.name] {
			s.setParam(canonicalName(kv.name), kv.value)
		}
	}
	// Access rules come first, as in Postgres: a refused client learns nothing about databases.
	hbaMethod := ""
	if rules := tbl.Config.General.HBA; len(rules) > 0 {
		local := s.conn.LocalAddr().Network() == "unix"
		var ip net.IP
		if ta, ok := s.conn.RemoteAddr().(*net.TCPAddr); ok {
			ip = ta.IP
		}
		r, ok := config.MatchHBA(rules, local, s.tls, s.db, s.user, ip)
		if !ok || r.Method == config.HBAReject {
			host := "local"
			if ip != nil {
				host = ip.String()
			}
			enc := "no encryption"
			if s.tls {
				enc = "TLS"
			}
			return s.fatal("28000", fmt.Sprintf("no hba rule allows host %q, user %q, database %q, %s", host, s.user, s.db, enc))
		}
		hbaMethod = r.Method
	}
	if s.l.console != nil && tbl.Config.General.IsAdminDatabase(s.db) {
		return s.adminLogin(tbl, hbaMethod)
	}
	tg := tbl.Lookup(s.db, s.user)
	if tg == nil && tbl.Config.Pool(s.db) == nil {
		return s.fatal("3D000", fmt.Sprintf("database %q does not exist", s.db))
	}
	tg, err := s.authenticate(tbl, tg, hbaMethod)
	if err != nil {
		return err
	}
	if err := s.authHooks(tbl); err != nil {
		return err
	}
	if s.l.Disabled(s.db) {
		// After authentication, as Postgres checks datallowconn: a stranger learns nothing.
		return s.fatal("55000", fmt.Sprintf("database %q is not currently accepting connections (DISABLE in the admin console)", s.db))
	}
	s.target, s.gen, s.cls, s.sharding = tg, tbl.Generation, tbl.Classifier(s.db), tbl.Sharding(s.db)
	s.txMode = tg.Mode != config.PoolModeSession
	s.stmtMode = tg.Mode == config.PoolModeStatement
	sparams, err := serverParameters(tg, tbl.Config.General.ConnectTimeout+time.Second)
	if err != nil {
		return s.fatal("08006", "could not connect to server: "+err.Error())
	}
	s.l.register(s)
	for k, v := range sparams {
		if _, ok := s.paramLocked(k); !ok && trackedReported[k] {
			// What the client is told now is what it expects of every server it gets.
			s.params = append(s.params, param{k, v})
		}
	}
	// Sorted, so that clients with the same settings have the same settings key.
	slices.SortFunc(s.params, func(a, b param) int { return strings.Compare(a.name, b.name) })
	if err := s.spellStartup(tbl, sparams); err != nil {
		return err
	}
	s.initial = append([]param(nil), s.params...)
	b := make([]byte, 0, 512)
	b = append(b, wire.Authentication, 0, 0, 0, 8, 0, 0, 0, 0) // AuthenticationOk
	for k, v := range sparams {
		if cv, ok := s.paramLocked(k); ok {
			v = cv
		}
		b = wire.AppendParameterStatus(b, k, v)
	}
	b = append(b, wire.BackendKeyData, 0, 0, 0, 12,
		byte(s.pid>>24), byte(s.pid>>16), byte(s.pid>>8), byte(s.pid))
	b = append(b, s.secret[:]...)
	b = wire.AppendReadyForQuery(b, 'I')
	err = s.out.send(b)
	s.out.mu.Lock()
	s.out.Idle()
	s.out.mu.Unlock()
	return err
}

// spellStartup gives the client's startup settings the spelling servers give them, so that the
// client is told at login what Postgres would tell it (DateStyle "ISO" is "ISO, MDY", which
// pgjdbc asks for), and a name or value the server refuses fails the login, as in Postgres.
// sparams are the values servers report at login; settings among them that the client set
// otherwise are spelled, and settings servers do not report are checked. Spellings are learned
// on a server of the pool, so the first login with a value new to the target waits for one (as
// its first query would), and are remembered
// (route.SettingCache). When no server is to be had, the client is told its own spelling and
// its first query applies it.
func (s *ClientSession) spellStartup(tbl *route.Table, sparams map[string]string) error {
	learn := false
	for i := range s.params {
		p := &s.params[i]
		if sv, ok := sparams[p.name]; ok && sv == p.value {
			continue
		}
		// A setting servers do not report is checked too (once per value): an unknown name or
		// a bad value fails the login, as in Postgres, not the client's first query.
		if v, ok := s.target.Spellings.Get(p.name, p.value); ok {
			p.value = v
			continue
		}
		learn = true
	}
	if !learn {
		return nil
	}
	srv, pl, _, err := s.checkout(s.target, route.Primary, tbl.Config.General.QueryWaitTimeout)
	if err != nil {
		return nil
	}
	asked := slices.Clone(s.params)
	_, err = s.applyParams(srv)
	pl.Release(srv)
	if err != nil {
		var se *backend.ServerError
		if errors.As(err, &se) {
			return s.fatal(se.Code, se.Message)
		}
		return nil
	}
	for i, p := range asked {
		if _, ok := sparams[p.name]; ok {
			s.target.Spellings.Put(p.name, p.value, s.params[i].value)
		} else {
			s.target.Spellings.Put(p.name, p.value, p.value) // valid; nothing reports a spelling
		}
	}
	return nil
}

// setParam sets a client setting, replacing an earlier value of the same name.
func (s *ClientSession) setParam(name, value string) {
	for i := range s.params {
		if s.params[i].name == name {
			s.params[i].value = value
			return
		}
	}
	s.params = append(s.params, param{name, value})
}

// serverParameters returns the settings a server reports at login, for the client's own login:
// from the primary when it answers, else from any other server of shard 0, waiting at most
// timeout for a first connection. Once the primary's pool has logged in a server, the answer
// is at hand: no context and no timer for it.
func serverParameters(tg *route.Target, timeout time.Duration) (map[string]string, error) {
	srv, err := tg.Pick(0, route.Primary, nil)
	if err != nil {
		return nil, err
	}
	if p := srv.Pool.KnownServerParameters(); p != nil {
		return p, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	p, err := srv.Pool.ServerParameters(ctx)
	if err == nil {
		return p, nil
	}
	for _, other := range tg.Shards[0] {
		if other == srv || ctx.Err() != nil {
			continue
		}
		if p, err2 := other.Pool.ServerParameters(ctx); err2 == nil {
			return p, nil
		}
	}
	return nil, err
}

// run is the reader loop. It returns when the client leaves or must be disconnected.
func (s *ClientSession) run() error {
	for {
		if _, ok := s.r.Complete(); !ok {
			if err := s.beforeBlockGuarded(); err != nil {
				return err
			}
		}
		typ, size, err := s.r.Peek()
		if err != nil {
			return s.readError(err)
		}
		if s.stmtViolation.Load() {
			return errStatementMode
		}
		if typ != wire.Sync && (s.failing || s.skipToSync.Load() && skippedByServer(typ)) {
			if typ == wire.Terminate {
				// What went before the failed batch still runs (terminate).
				return s.terminate()
			}
			if err := s.r.Skip(size); err != nil {
				return s.readError(err)
			}
			continue
		}
		if s.deadline.Load() {
			// The idle-in-transaction timer was armed at the last ReadyForQuery; the client spoke.
			s.deadline.Store(false)
			s.setClientDeadline(time.Time{})
		}
		if err := s.dispatchGuarded(typ, size); err != nil {
			return err
		}
	}
}

// skippedByServer reports whether the reader drops a message of type typ while the server skips
// to Sync (skipToSync): the messages that would queue a reply. Copy messages and Flush still go
// through, as the reader's own bookkeeping of them does not wait for a reply.
func skippedByServer(typ byte) bool {
	switch typ {
	case wire.Parse, wire.Bind, wire.Describe, wire.Close, wire.Execute, wire.FunctionCall, wire.Query:
		return true
	}
	return false
}

// readError turns a failed client read into the session's end, telling the client why when it
// is still there to hear it.
func (s *ClientSession) readError(err error) error {
	switch {
	case errors.Is(err, wire.ErrMessageTooLarge), errors.Is(err, wire.ErrBadLength):
		return s.fatal("08P01", "invalid message: "+err.Error())
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.mu.Lock()
		st := s.tx
		stopping := s.stopping
		s.mu.Unlock()
		if s.stmtViolation.Load() {
			return errStatementMode
		}
		if stopping {
			return s.fatal("57P01", "terminating connection: sluice is shutting down")
		}
		if st != 'I' {
			return s.fatal("25P03", "terminating connection due to idle-in-transaction timeout")
		}
		return err
	}
	return err
}

// beforeBlock runs before a read from the client that may block: flush what waits for the
// server and the client, give buffers back when idle, and arm the idle-in-transaction timer.
func (s *ClientSession) beforeBlock() error {
	_ = s.flushServer()
	s.waitForReplies()
	if s.txMode {
		if err := s.settle(); err != nil {
			return err
		}
	}
	s.mu.Lock()
	srv := s.srv
	stopping := s.stopping
	pumping := s.pumping
	s.mu.Unlock()
	var err error
	if pumping {
		// The pump flushes what it writes. It may hold the lock in the middle of a message
		// while it waits for the server, which may wait for what the client sends next: never
		// wait for the lock here.
		if s.out.mu.TryLock() {
			err = s.out.Flush()
			s.out.mu.Unlock()
		}
	} else {
		s.out.mu.Lock()
		err = s.out.Flush()
		if srv == nil {
			s.out.Idle()
		}
		s.out.mu.Unlock()
	}
	if err != nil {
		return err
	}
	if srv == nil {
		if stopping {
			return s.fatal("57P01", "terminating connection: sluice is shutting down")
		}
		s.r.Shrink()
	}
	return nil
}

// A client may have up to maxOutstanding replies outstanding before sluice stops reading its
// requests, until the replies are down to outstandingResume. Each request costs an entry of the
// reply queue (about 150 bytes, for a 14-byte "SELECT 1"), and the socket buffers between client,
// sluice and server hold megabytes of requests: without a limit, a client that pipelines small
// queries and reads nothing makes sluice hold ten times what it wrote (measured: 185 MiB for one
// client in session mode).
const (
	maxOutstanding    = 4096
	outstandingResume = 1024
)

// waitForReplies blocks the reader while a pump reads the server's replies and more than
// maxOutstanding are outstanding. The reader reads at most a buffer of requests between two
// calls. It wakes when the pump has brought the replies down to outstandingResume, and checks
// again every so often in case the server went meanwhile.
func (s *ClientSession) waitForReplies() {
	flushed := false
	for {
		s.mu.Lock()
		srv := s.srv
		if srv == nil || !s.pumping || s.q.len() <= maxOutstanding {
			s.mu.Unlock()
			return
		}
		ch := make(chan struct{})
		s.qSpace = ch
		open := s.open
		s.mu.Unlock()
		if open && !flushed {
			// Postgres holds the replies to an open batch until a Flush or a Sync.
			flushed = true
			_ = s.toServer(srv, []byte{wire.Flush, 0, 0, 0, 4})
			_ = s.flushServer()
		}
		select {
		case <-ch:
		case <-time.After(100 * time.Millisecond):
			if s.sock != nil && s.sock.Closed() {
				// Closed under the session (a shutdown past its timeout, KILL): the replies
				// may never come, and the reader's next read ends the session.
				return
			}
		}
	}
}

// dispatch handles one client message whose header has been peeked.
func (s *ClientSession) dispatch(typ byte, size int) error {
	if skippedByServer(typ) {
		s.mu.Lock()
		// An Execute still unanswered may begin a COPY FROM this message is inside, the
		// client having pipelined it before the server's CopyInResponse (seed 8589, in one
		// write): then Postgres fails the COPY here too, and the Syncs after this message
		// are answered. Counted when no COPY begins, the end changes nothing.
		copyAhead := !s.inCopyIn && s.q.holdsExecute(s.copyEnds)
		if s.inCopyIn && s.copyEnds == s.copyInGen || copyAhead {
			// Postgres fails a COPY FROM at any message but copy data, Sync and Flush: for
			// the Syncs that follow, the COPY is over.
			s.copyEnds++
		}
		s.copyAhead = copyAhead
		// Nor does the client's COPY data go on: Postgres ends a COPY FROM at this message, or
		// ended it before (a bad row), and ignores copy data from here. Left set, copyOpen
		// outlived the COPY while the client pipelined requests behind it (the queue never
		// emptied for the pump to clear it), and the reader no longer waited for earlier
		// batches' replies where it must (awaitEarlierBatches; seed 6391).
		s.copyOpen = false
		s.mu.Unlock()
	}
	switch typ {
	case wire.Terminate:
		return s.terminate()
	case wire.Sync:
		s.r.Discard(size)
		err := s.sync()
		// Recorded after: the Sync may attach the request's server (checkDeferredParse), which
		// starts the recording, and a retry must end with the Sync.
		s.record(syncMsg)
		return err
	case wire.Flush:
		s.r.Discard(size)
		if s.fan != nil {
			if err := s.fanSettle(); err != nil {
				return err
			}
		}
		// Only inside a batch: an open batch keeps the server attached while we write.
		s.mu.Lock()
		srv := s.srv
		open := s.open
		s.mu.Unlock()
		if srv == nil || !open {
			return nil
		}
		if err := s.toServer(srv, []byte{wire.Flush, 0, 0, 0, 4}); err != nil {
			return err
		}
		return s.flushServer()
	case wire.CopyData, wire.CopyDone, wire.CopyFail:
		return s.copyMessage(typ, size)
	case wire.Query:
		s.info.queries.Add(1)
		if len(s.joined) > 0 {
			s.checkJoined()
		}
		return s.query(size)
	case wire.Parse, wire.Bind, wire.Describe, wire.Close, wire.Execute, wire.FunctionCall:
		if typ == wire.Execute {
			s.info.queries.Add(1)
		}
		if len(s.joined) > 0 {
			s.checkJoined()
		}
		return s.extended(typ, size)
	}
	return s.fatal("08P01", fmt.Sprintf("invalid frontend message type %q", typ))
}

// copyMessage forwards the client's CopyData, CopyDone or CopyFail to its server. Postgres
// ignores these when no COPY is in progress: a client may send them after the server failed its
// COPY, or stray ones. A COPY in progress has a reply outstanding (the Query's or the Sync's
// ReadyForQuery), so with none the message is dropped here, and it must not keep the server
// from its pool.
//
// copyWriting keeps the pump from releasing the server while a message is written to it;
// copyOpen keeps the server attached from the client's first CopyData to its CopyDone or
// CopyFail, or until the server has ended the COPY (its ReadyForQuery came).
func (s *ClientSession) copyMessage(typ byte, size int) error {
	s.mu.Lock()
	srv := s.srv
	inCopy := srv != nil && !s.q.empty()
	if inCopy {
		s.copyOpen, s.copyWriting = true, true
	}
	if typ != wire.CopyData {
		s.copyEnds++
	}
	s.mu.Unlock()
	if !inCopy {
		return s.r.Skip(size)
	}
	s.wsrv = srv
	err := s.r.Forward(srv.W, size)
	s.mu.Lock()
	s.copyWriting = false
	if typ != wire.CopyData || s.q.empty() {
		s.copyOpen = false
	}
	s.mu.Unlock()
	if err != nil {
		return s.forwardError(srv, err)
	}
	s.releaseAfterCopy()
	return nil
}

// releaseAfterCopy gives the server back (transaction mode) when its COPY ended while the
// reader was writing copy data to it: the pump saw the ReadyForQuery but left the server
// attached, since a write was under way. A server marked broken goes back too, as at the pump's
// idle point, and its pool closes it: kept, it would serve this client's next requests.
func (s *ClientSession) releaseAfterCopy() {
	s.mu.Lock()
	srv, pl := s.srv, s.pl
	idle := srv != nil && s.txMode && !s.pumping && s.q.empty() && !s.open && !s.copyOpen &&
		s.tx == 'I' && !s.closing && !s.killed
	if idle {
		s.srv, s.pl = nil, nil
	}
	s.mu.Unlock()
	if !idle {
		return
	}
	_ = s.flushServer() // what the reader wrote goes before the next client's messages
	pl.Release(srv)
}

// terminate ends the session at the client's Terminate. Postgres runs everything the client sent
// before its Terminate, whether or not the client waits for the replies: a client may send a
// query and a Terminate in one write and go. So a complete request (up to its Query or Sync)
// still buffered for the server or running there is sent and its replies read (and passed on,
// for a client that still reads) before the session ends; then the server goes back to its pool
// as after any request. An incomplete batch or a COPY is not finished: Postgres aborts those at a
// Terminate, and cleanup closes the server, which does the same. Complete requests before an
// incomplete batch still run: the server is sent everything, the replies are read up to the
// last request's end, and the server is closed with the batch open.
func (s *ClientSession) terminate() error {
	s.mu.Lock()
	usable := s.srv != nil && !s.copyOpen && !s.copyInWaitingLocked()
	complete := usable && !s.q.empty() && !s.open
	tail := usable && s.open && s.q.holdsRequestEnd()
	var drained chan struct{}
	if complete && !s.txMode || tail {
		// The session's pump reads the replies; it closes drained when they are all in (up to
		// the last request's end, for a tail).
		drained = make(chan struct{})
		s.drained, s.drainToRequestEnd = drained, tail
		if tail && !s.pumping {
			s.recording, s.fresh = false, false // the pump reads the replies: no retry
			s.startPumpLocked(s.srv, s.pl)
		}
	}
	pumping := s.pumping
	s.mu.Unlock()
	if tail {
		_ = s.flushServer()
		<-drained
		return io.EOF
	}
	if !complete {
		// Replies sluice gave itself (a batch it failed or answered without a server) are
		// written but maybe not flushed: Postgres sends them before it reads the Terminate.
		if !pumping || s.out.mu.TryLock() {
			if pumping {
				defer s.out.mu.Unlock()
			} else {
				s.out.mu.Lock()
				defer s.out.mu.Unlock()
			}
			_ = s.out.Flush()
		}
		return io.EOF
	}
	_ = s.flushServer()
	if !s.txMode {
		<-drained
		return io.EOF
	}
	if err := s.settle(); err != nil {
		return err
	}
	s.mu.Lock()
	waiting := s.copyInWaitingLocked()
	s.mu.Unlock()
	if waiting {
		// The request reached a COPY FROM STDIN whose data will never come. cleanup closes the
		// server, which aborts the COPY as Postgres does at a Terminate in COPY mode.
		return io.EOF
	}
	// A pump that was already reading the replies stops when they are all in.
	s.pump.Wait()
	return io.EOF
}

// copyInWaitingLocked reports whether the server is in a COPY FROM STDIN that the client has
// sent no CopyDone or CopyFail for: its reply waits on the client. s.mu must be held.
func (s *ClientSession) copyInWaitingLocked() bool {
	return s.inCopyIn && s.copyEnds == s.copyInGen
}

// syncMsg is a Sync message.
var syncMsg = []byte{wire.Sync, 0, 0, 0, 4}

// sync handles the client's Sync: the end of an extended-protocol batch.
func (s *ClientSession) sync() error {
	if s.fan != nil {
		if !s.failing {
			if err := s.fanSettle(); err != nil {
				return err
			}
		}
		if !s.fan.cs.tx || s.failing {
			s.fanDrop() // outside a transaction block, the batch's portals end with it
		}
	}
	if s.unnamedDeferred {
		s.unnamedDeferred = false
		if !s.failing {
			if err := s.checkDeferredParse(); err != nil {
				return err
			}
		}
	}
	s.failing = false
	s.batchBegin = false
	if pc := s.pendingCapture; pc != nil {
		s.mu.Lock()
		pc.queued = true // never executed: the batch's ReadyForQuery ends it
		s.mu.Unlock()
	}
	s.answering, s.pendingCapture = nil, nil
	s.mu.Lock()
	srv := s.srv
	s.skipToSync.Store(false)
	inCopy := srv != nil && s.inCopyIn && s.copyEnds == s.copyInGen
	if srv != nil && !inCopy {
		s.q.push(entry{kind: kSync, copyGen: s.copyEnds})
		s.syncs++
		s.open = false
	}
	s.mu.Unlock()
	if srv == nil {
		return s.emit(wire.AppendReadyForQuery(nil, 'I'))
	}
	if inCopy {
		// A Sync among the data of a COPY FROM does nothing in Postgres while the COPY runs;
		// once a bad row has failed the COPY, Postgres answers it with a ReadyForQuery (and,
		// in the extended protocol, ends the batch's skipping with it). sluice cannot tell
		// which it will be, and an answer it does not expect would be taken for the end of
		// the client's next request, or reach the next client of the server. The Sync is not
		// sent: the client's CopyDone or CopyFail and the Sync after it end the COPY's batch.
		return nil
	}
	return s.toServer(srv, syncMsg)
}

// forwardError sorts a failed Forward into a client read error (the session ends) or a server
// write error (the pump reports the lost server).
func (s *ClientSession) forwardError(srv *backend.ServerConn, err error) error {
	var we *wire.WriteError
	if errors.As(err, &we) {
		srv.Broken = true
		return nil
	}
	return s.readError(err)
}

// toServer writes msg to the server's buffer. A write error marks the server broken; the pump
// finds out on its side and ends the session with the right error.
//
// Callers must have made sure the server stays attached while they write: an entry pushed for the
// message, or an open batch or COPY.
func (s *ClientSession) toServer(srv *backend.ServerConn, msg []byte) error {
	s.wsrv = srv
	if _, err := srv.W.Write(msg); err != nil {
		srv.Broken = true
	}
	return nil
}

// flushServer sends what the reader buffered for its server.
//
// The flush holds wmu: once its bytes are on the wire the server may answer and the pump may
// release the server before Flush has returned, so the pump takes wmu before releasing.
func (s *ClientSession) flushServer() error {
	if srv := s.wsrv; srv != nil {
		s.wsrv = nil
		s.traf.sent()
		s.wmu.Lock()
		if err := srv.W.Flush(); err != nil {
			srv.Broken = true
		}
		s.wmu.Unlock()
	}
	return nil
}

// query handles a simple-protocol Query.
func (s *ClientSession) query(size int) error {
	msg, err := s.r.Message()
	if err != nil {
		return s.readError(err)
	}
	panicHook("reader", msg)
	err = s.queryMsg(msg)
	s.record(msg)
	s.r.Discard(size)
	if err == nil {
		err = s.copyInPending()
	}
	return err
}

func (s *ClientSession) queryMsg(msg []byte) error {
	if s.fan != nil {
		// A simple Query in the middle of a batch: the pending portal's Bind is answered first.
		err := s.fanSettle()
		s.fanDrop()
		if err != nil || s.failing {
			return err
		}
	}
	if s.txMode && containsListen(wire.Body(msg)) {
		return s.queryError("0A000", errListenTxMode)
	}
	body := wire.Body(msg)
	text := bytes.TrimSuffix(body, []byte{0})
	if s.txMode {
		if done, err := s.deallocateQuery(text); done {
			return err
		}
	}
	if cmd, ok, cerr := classify.ParseCommand(text); ok {
		return s.command(cmd, cerr)
	}
	if len(s.joined) > 0 {
		if err := s.txControl(text); err != nil {
			var ce *codedError
			if errors.As(err, &ce) {
				return s.queryError(ce.code, ce.msg)
			}
			return err
		}
	}
	var capReq *captureReq
	if ch := s.hookChain(); ch.HasQuery() {
		act := s.queryHooks(ch, plugin.Simple, text, "", nil, nil, nil)
		switch {
		case act.Kind == plugin.Reject:
			return s.queryError(act.Code, act.Message)
		case act.Kind == plugin.Answer && (act.Wire == nil || s.idle()):
			// A stored result answers only outside a transaction block; inside one the
			// query runs.
			return s.answer(act)
		case act.Rewrite != "":
			msg = wire.AppendQuery(nil, act.Rewrite)
			body = wire.Body(msg)
		}
		if act.Kind == plugin.Continue {
			capReq = s.newCaptureReq(&act)
		}
	}
	sets := s.settingsOf(bytes.TrimSuffix(body, []byte{0}))
	effect := s.sessionEffect(bytes.TrimSuffix(body, []byte{0}))
	srv, err := s.attach(s.classify(body), text, nil)
	if err != nil {
		var cs *crossShard
		if errors.As(err, &cs) {
			return s.fanout(cs, capReq)
		}
		var cc *crossCopy
		if errors.As(err, &cc) {
			if capReq != nil {
				s.fanOutcome(capReq, nil, "", nil) // a COPY's result is not stored
			}
			if cc.cp.From {
				// It reads the client's data, which follows this Query: the caller runs it
				// once the Query is consumed.
				s.copyPending = cc
				return nil
			}
			return s.copyOut(cc)
		}
		if fatal := s.attachFatal(err); fatal != nil {
			return fatal
		}
		return s.queryError(checkoutCode(err), err.Error())
	}
	markSession(srv, effect)
	// A Query inside a COPY FROM that an Execute began fails the COPY, or comes after a bad
	// row failed it: either way Postgres skips to the Sync, and the Query drops nothing, as
	// when an error skips a Query that ends a batch (seed 8589).
	endsBatch := s.open || s.inCopyIn && !s.copyInSimple || s.copyAhead
	s.q.push(entry{kind: kQuery, capture: capReq, sets: sets, copyGen: s.copyEnds, endsBatch: endsBatch,
		dropsAll: s.txMode && mayDropStatements(text)})
	s.open = false
	if capReq != nil {
		capReq.queued = true
		s.capOut.Store(true)
	}
	restore := s.restoreQuery(srv, bytes.TrimSuffix(body, []byte{0}))
	if restore != "" {
		s.q.push(entry{kind: kRestore})
	}
	srv.UnnamedOwner = nil // a simple Query drops the unnamed statement, whoever's it was
	if endsBatch {
		// An error among the messages before it would make the server skip the Query,
		// and the client keep its unnamed statement (serverErrorLocked).
		s.unnamedKept = append(s.unnamedKept[:0], s.unnamed...)
		s.unnamedKeptSeq, s.unnamedKeptDropped = s.unnamedSeq, s.unnamedDropped
	}
	s.unnamed, s.unnamedDropped = s.unnamed[:0], s.unnamedSeq
	s.unnamedDeferred = false
	s.mu.Unlock()
	if restore != "" {
		msg = wire.AppendQuery(msg[:len(msg):len(msg)], restore)
	}
	return s.toServer(srv, msg)
}

// queryError answers a simple Query with an error. With a server attached the error is raised by
// the server itself, so it comes in order and aborts an open transaction as Postgres would.
func (s *ClientSession) queryError(code, msg string) error {
	s.mu.Lock()
	srv := s.srv
	if srv != nil {
		s.q.push(entry{kind: kQuery}) // pushed under the lock: the server stays attached
		srv.UnnamedOwner = nil        // the Query drops the server's unnamed statement
	}
	s.mu.Unlock()
	if srv == nil {
		b := wire.AppendError(nil, "ERROR", code, msg)
		return s.emit(wire.AppendReadyForQuery(b, 'I'))
	}
	sql := fmt.Sprintf("DO $sluice$ BEGIN RAISE EXCEPTION USING ERRCODE = '%s', MESSAGE = %s; END $sluice$",
		code, quoteLiteral(msg))
	return s.toServer(srv, wire.AppendQuery(nil, sql))
}

// failBatch reports a local error inside an extended-protocol batch and drops messages up to Sync.
// With a server attached, the error is queued in order behind the server's pending replies, and a
// Parse that cannot succeed is sent so the server, too, aborts the transaction and skips to Sync.
func (s *ClientSession) failBatch(code, msg string) error {
	return s.failBatchMsg(wire.AppendError(nil, "ERROR", code, msg))
}

// failBatchMsg is failBatch with the ErrorResponse message to send.
func (s *ClientSession) failBatchMsg(errMsg []byte) error {
	s.failing = true
	s.mu.Lock()
	srv := s.srv
	var now [][]byte
	if srv != nil {
		s.q.push(entry{kind: kErrorSynth, msg: errMsg})
		now = s.q.takeSynth(now)
		s.q.push(entry{kind: kAbortSwallow})
		s.open = true
	}
	s.mu.Unlock()
	if srv == nil {
		return s.emit(errMsg)
	}
	if err := s.emit(now...); err != nil {
		return err
	}
	// A named statement: a failed Parse of the unnamed one would drop the client's unnamed
	// statement, which Postgres keeps through an error later in the batch, and whose own
	// Parse may still be unanswered (sent again before the next Bind, it answered that Bind
	// with the Parse's error where Postgres says the statement does not exist: seed 583).
	// The text fails before the name is looked at, whether or not the server has it.
	return s.toServer(srv, wire.AppendParse(nil, "sluice_abort_batch", []byte("sluice abort batch"), []byte{0, 0}))
}

// emit writes replies that sluice makes itself and that are due now: nothing the server will
// send is to come before them. The reader's next flush sends them.
func (s *ClientSession) emit(msgs ...[]byte) error {
	if len(msgs) == 0 {
		return nil
	}
	s.out.mu.Lock()
	defer s.out.mu.Unlock()
	for _, m := range msgs {
		if _, err := s.out.Write(m); err != nil {
			return err
		}
	}
	return nil
}

// attachFatal returns the error that ends the session for an attach failure that must not be
// answered as a query error: the client left while waiting, or its own settings are invalid.
func (s *ClientSession) attachFatal(err error) error {
	if errors.Is(err, errClientGone) {
		return err
	}
	if st := s.target.Settings(); st != nil && st.CheckoutFailureLimit > 0 && s.checkoutFailures >= st.CheckoutFailureLimit {
		lim := st.CheckoutFailureLimit
		// pgcat's checkout_failure_limit: a client that keeps failing to get a server is sent
		// away, so that it reconnects, perhaps to another, less busy pooler.
		s.l.log.Warn("checkout failure limit reached; disconnecting the client", "user", s.user, "db", s.db,
			"failures", s.checkoutFailures, "limit", lim)
		return s.fatal(checkoutCode(err), fmt.Sprintf("checkout failure limit reached (%d / %d): %v", s.checkoutFailures, lim, err))
	}
	var se *backend.ServerError
	if errors.As(err, &se) {
		return s.fatal(se.Code, se.Message)
	}
	return nil
}

func checkoutCode(err error) string {
	switch {
	case errors.Is(err, pool.ErrWaitTimeout):
		return "53300"
	case errors.Is(err, pool.ErrClosed):
		return "57P01"
	}
	var ce *codedError
	if errors.As(err, &ce) {
		return ce.code
	}
	return "08006"
}

const errListenTxMode = "LISTEN is not supported in transaction pooling mode: notifications would go to whichever client next gets the server; use a session-mode pool"

func quoteLiteral(s string) string {
	if strings.Contains(s, `\`) {
		return "E'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", "''") + "'"
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// Package backend is one server connection: dial, log in, read and write framed messages, and the
// bookkeeping that pooling needs (parameters, prepared statements, age). It knows nothing of
// clients.
package backend

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicepg/sluice/internal/netio"
	"github.com/sluicepg/sluice/internal/wire"
)

// Params say how to reach and log in to one server.
type Params struct {
	Host     string
	Port     int
	Database string
	User     string
	Password string
	// Startup holds extra startup parameters, such as statement_timeout.
	Startup        map[string]string
	ConnectTimeout time.Duration
	// KeepAlive configures TCP keepalives; zero values keep the system defaults.
	KeepAlive net.KeepAliveConfig
	// UserTimeout is the socket's TCP_USER_TIMEOUT (Linux); 0 keeps the system's default.
	UserTimeout time.Duration
	// StatementCacheSize is how many statements ServerConn.Prepared holds before it evicts the
	// least recently used; 0 means 500, pgcat's default.
	StatementCacheSize int
	// MaxMessageSize caps a message read from the server; 0 means 1 GiB.
	MaxMessageSize int
	// TLS, when not nil, is used to encrypt the connection (ServerName is set per host when
	// VerifyHost); TLSOptional falls back to plaintext when the server refuses TLS.
	TLS         *tls.Config
	VerifyHost  bool
	TLSOptional bool
	// Credentials, when not nil, supply the secret to log in with when Password is empty or
	// is a SCRAM verifier (see Dial). The pool's Params share it with the client logins that
	// fill it.
	Credentials *Credentials
	// Mirrors get a copy of everything sent to each connection Dial opens, after its login,
	// each over a connection of its own (see Mirror).
	Mirrors []*Mirror
}

// Addr is host:port.
func (p *Params) Addr() string { return net.JoinHostPort(p.Host, strconv.Itoa(p.Port)) }

// ServerConn is one logged-in server connection. Reads and writes are not synchronized: one
// goroutine writes (the client's reader) and one reads (the result pump) at a time, which the
// caller arranges.
type ServerConn struct {
	conn   net.Conn
	sock   *netio.Conn // the socket under conn (and under TLS); nil when not a TCP socket
	R      *wire.Reader
	W      *bufio.Writer
	addr   string
	pid    uint32
	secret []byte

	// Params are the server's current values of reported parameters and of the parameters sluice
	// set on it. Only the goroutine that holds the server reads or writes it.
	Params map[string]string
	// Initial are the parameter values the server had right after login: what RESET and
	// DISCARD ALL bring it back to.
	Initial map[string]string
	// Prepared is the set of statements prepared on this server under sluice's names.
	Prepared *StatementCache

	// Synced is the settings key (see frontend) of the client whose settings the server has,
	// or "" when unknown: a client with the same key skips the comparison at checkout.
	Synced string

	// UnnamedOwner and UnnamedSeq say whose unnamed statement the server holds, so a client
	// whose Parse and Bind of the unnamed statement land on different servers (between two
	// Syncs, in transaction mode) gets its Parse sent again.
	UnnamedOwner any
	UnnamedSeq   uint64

	// cancelMu guards cancels and cancelsDone; see HoldForCancel.
	cancelMu    sync.Mutex
	cancels     int           // cancel requests for this connection under way
	cancelsDone chan struct{} // closed when cancels comes back to zero

	Created  time.Time
	LastUsed time.Time
	// PoolGen is its pool's generation when it joined the pool: the pool closes a connection
	// of an older generation instead of reusing it (the admin console's RECONNECT).
	PoolGen uint64
	// Broken is set when the server must not be reused (I/O error, protocol desync).
	Broken bool
	// Dirty is set when a client changed the session in a way the pooler does not carry from
	// server to server (SET or RESET of a setting the server does not report, SET ROLE, SET
	// SESSION AUTHORIZATION): the pool resets the session before another client gets it.
	Dirty bool
	// Discard is set when a client may have left objects in the session that outlive its
	// transaction (temporary tables, cursors WITH HOLD, session advisory locks, SQL prepared
	// statements): the pool runs DISCARD ALL before another client gets it.
	Discard bool

	sent               *sentCounter
	sentSeen, recvSeen uint64 // the counts at the last Traffic
	mirrors            *mirrorTee
}

// sentCounter counts the bytes written to a server. Atomic: while a pump reads the server, the
// client's reader may be writing to it. Every byte written to the server after its login passes
// here, whatever the path (a client's messages, COPY data, sluice's own queries), so this is
// where mirrors get their copy: tee is nil when the pool has no mirrors.
type sentCounter struct {
	w   io.Writer
	n   atomic.Uint64
	tee *mirrorTee
}

func (c *sentCounter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(uint64(n))
	if c.tee != nil {
		c.tee.write(p[:n])
	}
	return n, err
}

// Traffic returns the bytes sent to and received from the server since the last call. Only the
// goroutine reading the server may call it.
func (s *ServerConn) Traffic() (sent, recv uint64) {
	if s.sent == nil {
		return 0, 0
	}
	st, rv := s.sent.n.Load(), s.R.BytesRead()
	sent, recv = st-s.sentSeen, rv-s.recvSeen
	s.sentSeen, s.recvSeen = st, rv
	return sent, recv
}

const defaultStatementCacheSize = 500

// RemoteIP returns the IP address the connection is connected to, or "" when it is not a TCP
// connection.
func (s *ServerConn) RemoteIP() string {
	if s.conn == nil {
		return ""
	}
	if a, ok := s.conn.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return ""
}

// Addr returns the server's host:port.
func (s *ServerConn) Addr() string { return s.addr }

// PID returns the server process ID.
func (s *ServerConn) PID() uint32 { return s.pid }

// Close closes the connection, saying Terminate first when it is still usable. Its mirror
// connections close once they have sent what is queued for them, without delaying Close.
func (s *ServerConn) Close() error {
	if s.mirrors != nil {
		s.mirrors.close()
	}
	if !s.Broken {
		_ = s.conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = s.conn.Write([]byte{wire.Terminate, 0, 0, 0, 4})
	}
	return s.conn.Close()
}

// Quiet reports, without blocking and without reading, whether the server has said nothing since
// its last reply: nothing waits to be read and the server has not closed the connection. A server
// that ends a connection while it sits idle in a pool (pg_terminate_backend, a shutdown,
// idle_session_timeout) sends a FATAL ErrorResponse and closes it; Quiet is then false. Call it only
// on a server nobody else is reading.
func (s *ServerConn) Quiet() bool {
	return s.R.Buffered() == 0 && (s.sock == nil || !s.sock.Pending())
}

// SetReadDeadline sets the read deadline of the underlying connection; a deadline in the past
// wakes a goroutine blocked in a read.
func (s *ServerConn) SetReadDeadline(t time.Time) error { return s.conn.SetReadDeadline(t) }

// HoldForCancel records that a cancel request for what this connection runs is about to be sent,
// and returns the function that sends it (over a new connection, as the protocol requires) and
// then ends the hold. Until the returned function has returned, WaitCancels blocks: the pool
// calls it before it hands the connection to another client, because Postgres applies a cancel
// to whatever the connection runs when the request arrives, which must not be the next client's
// query.
//
// Call HoldForCancel while the connection cannot be released yet (the session that holds it
// reads it under the lock that its release takes), and always call the function it returns.
func (s *ServerConn) HoldForCancel() (send func(ctx context.Context) error) {
	s.cancelMu.Lock()
	if s.cancels == 0 {
		s.cancelsDone = make(chan struct{})
	}
	s.cancels++
	s.cancelMu.Unlock()
	return func(ctx context.Context) error {
		defer s.endCancel()
		return s.cancel(ctx)
	}
}

func (s *ServerConn) endCancel() {
	s.cancelMu.Lock()
	s.cancels--
	if s.cancels == 0 {
		close(s.cancelsDone)
	}
	s.cancelMu.Unlock()
}

// WaitCancels blocks until no cancel request taken by HoldForCancel is under way.
func (s *ServerConn) WaitCancels() {
	s.cancelMu.Lock()
	n, done := s.cancels, s.cancelsDone
	s.cancelMu.Unlock()
	if n > 0 {
		<-done
	}
}

// cancel asks the server to cancel what this connection is running.
func (s *ServerConn) cancel(ctx context.Context) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("cancel on %s: %w", s.addr, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	buf := make([]byte, 12, 12+len(s.secret))
	binary.BigEndian.PutUint32(buf[0:], uint32(12+len(s.secret)))
	binary.BigEndian.PutUint32(buf[4:], 80877102)
	binary.BigEndian.PutUint32(buf[8:], s.pid)
	buf = append(buf, s.secret...)
	if _, err := c.Write(buf); err != nil {
		return fmt.Errorf("cancel on %s: %w", s.addr, err)
	}
	// The server closes the connection once it has signalled the backend; wait for that so the
	// cancel has been delivered before the caller (and the pool) goes on.
	var one [1]byte
	_, _ = c.Read(one[:])
	return nil
}

// Exec runs sql with the simple protocol and waits for ReadyForQuery, returning the first error
// the server reported and the final transaction status. Only call it on a server nobody else is
// reading.
func (s *ServerConn) Exec(sql string) (status byte, err error) { return s.ExecNotify(sql, nil) }

// ExecNotify is Exec that also calls onParam with the body of every ParameterStatus the server
// sends meanwhile (after recording it in Params).
func (s *ServerConn) ExecNotify(sql string, onParam func(body []byte)) (status byte, err error) {
	return s.exec(sql, onParam, nil)
}

// QueryRow runs sql and returns the text of the first row's columns ("" for NULL, with null set).
// It is for sluice's own small queries (the health checker's), not for the client path.
func (s *ServerConn) QueryRow(sql string) (cols []string, null []bool, err error) {
	st, err := s.exec(sql, nil, func(row []byte) {
		if cols != nil {
			return
		}
		cols, null = wire.DataRowText(row)
	})
	if err == nil && cols == nil {
		err = fmt.Errorf("%s: the query returned no row", s.addr)
	}
	if err == nil && st != 'I' {
		err = fmt.Errorf("%s: the server is in a transaction after %q", s.addr, sql)
	}
	return cols, null, err
}

func (s *ServerConn) exec(sql string, onParam func(body []byte), onRow func(body []byte)) (status byte, err error) {
	s.UnnamedOwner = nil // a simple Query destroys the unnamed statement
	if _, err := s.W.Write(wire.AppendQuery(nil, sql)); err != nil {
		s.Broken = true
		return 0, err
	}
	if err := s.W.Flush(); err != nil {
		s.Broken = true
		return 0, err
	}
	var first error
	for {
		msg, err := s.R.Message()
		if err != nil {
			s.Broken = true
			return 0, fmt.Errorf("read from %s: %w", s.addr, err)
		}
		switch msg[0] {
		case wire.ErrorResponse:
			if first == nil {
				code, m := wire.ErrorFields(wire.Body(msg))
				first = &ServerError{Code: code, Message: m}
			}
		case wire.DataRow:
			if onRow != nil {
				onRow(wire.Body(msg))
			}
		case wire.ParameterStatus:
			s.NoteParameter(wire.Body(msg))
			if onParam != nil {
				onParam(wire.Body(msg))
			}
		case wire.ReadyForQuery:
			st := byte('I')
			if len(msg) > wire.HeaderLen {
				st = msg[wire.HeaderLen]
			}
			s.R.Discard(len(msg))
			return st, first
		case wire.CopyInResponse:
			s.R.Discard(len(msg))
			s.W.Write([]byte{wire.CopyFail, 0, 0, 0, 5, 0})
			s.W.Flush()
			continue
		}
		s.R.Discard(len(msg))
	}
}

// ResetSession undoes what a client changed with SET, RESET, SET ROLE and SET SESSION
// AUTHORIZATION (see Dirty), as pgcat's cleanup_server_connections does with RESET ROLE and RESET
// ALL. The settings the server reports come back in ParameterStatus messages, recorded in Params;
// Synced is cleared so the next client's settings are compared afresh.
//
// With Discard set it runs DISCARD ALL, which does all of that and drops what the client left
// in the session; sluice's own prepared statements go with it.
func (s *ServerConn) ResetSession(timeout time.Duration) error {
	_ = s.SetReadDeadline(time.Now().Add(timeout))
	defer func() { _ = s.SetReadDeadline(time.Time{}) }()
	sql := "RESET SESSION AUTHORIZATION; RESET ROLE; RESET ALL"
	if s.Discard {
		sql = "DISCARD ALL"
		s.Prepared.Clear()
		s.Discard = false
	}
	st, err := s.Exec(sql)
	if err == nil && st != 'I' {
		err = fmt.Errorf("reset the session of %s: transaction status %q after %s", s.addr, st, sql)
	}
	// RESET ALL brings back what the server reports in ParameterStatus (recorded as it comes)
	// and the settings sluice carried for a client, which nothing reports: forget those.
	for k := range s.Params {
		if _, ok := s.Initial[k]; !ok {
			delete(s.Params, k)
		}
	}
	s.Synced = ""
	s.Dirty = false
	return err
}

// ResetParams records that the server's settings are back to their values at login, as after
// DISCARD ALL or RESET ALL.
func (s *ServerConn) ResetParams() {
	clear(s.Params)
	for k, v := range s.Initial {
		s.Params[k] = v
	}
	s.Synced = ""
}

// NoteParameter records a ParameterStatus body the server sent.
func (s *ServerConn) NoteParameter(body []byte) {
	k, rest, ok := wire.CString(body)
	if !ok {
		return
	}
	v, _, ok := wire.CString(rest)
	if !ok {
		return
	}
	if old, found := s.Params[string(k)]; found && old == string(v) {
		return
	}
	s.Params[string(k)] = string(v)
}

// ServerError is an ErrorResponse from the server.
type ServerError struct {
	Code    string
	Message string
}

func (e *ServerError) Error() string { return e.Message + " (SQLSTATE " + e.Code + ")" }

// QueryParams runs sql with text parameters (nil for NULL) through the extended protocol and
// returns the columns, the rows as text (nil for NULL) and the command tag. It is for sluice's own
// queries made for plugins, not for the client path.
func (s *ServerConn) QueryParams(sql string, args []*string) (cols []string, rows [][]*string, tag string, err error) {
	// The Parse replaces whichever client's unnamed statement the server held.
	s.UnnamedOwner = nil
	b := wire.AppendParse(nil, "", []byte(sql), []byte{0, 0}) // no parameter types
	b, off := wire.Begin(b, wire.Bind)
	b = append(b, 0, 0, 0, 0) // unnamed portal and statement, no parameter formats (all text)
	b = binary.BigEndian.AppendUint16(b, uint16(len(args)))
	for _, a := range args {
		if a == nil {
			b = binary.BigEndian.AppendUint32(b, 0xffffffff)
			continue
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(*a)))
		b = append(b, *a...)
	}
	b = append(b, 0, 0) // result formats: all text
	b = wire.Finish(b, off)
	b = append(b, wire.Describe, 0, 0, 0, 6, 'P', 0)
	b = append(b, wire.Execute, 0, 0, 0, 9, 0, 0, 0, 0, 0)
	b = append(b, wire.Sync, 0, 0, 0, 4)
	if _, err := s.W.Write(b); err != nil {
		s.Broken = true
		return nil, nil, "", err
	}
	if err := s.W.Flush(); err != nil {
		s.Broken = true
		return nil, nil, "", err
	}
	var first error
	for {
		msg, err := s.R.Message()
		if err != nil {
			s.Broken = true
			return nil, nil, "", fmt.Errorf("read from %s: %w", s.addr, err)
		}
		body := wire.Body(msg)
		switch msg[0] {
		case wire.RowDescription:
			cols = wire.RowDescriptionNames(body)
		case wire.DataRow:
			vals, null := wire.DataRowText(body)
			row := make([]*string, len(vals))
			for i := range vals {
				if !null[i] {
					row[i] = &vals[i]
				}
			}
			rows = append(rows, row)
		case wire.CommandComplete:
			tag = string(wire.CommandTag(msg))
		case wire.ErrorResponse:
			if first == nil {
				code, m := wire.ErrorFields(body)
				first = &ServerError{Code: code, Message: m}
			}
		case wire.ParameterStatus:
			s.NoteParameter(body)
		case wire.ReadyForQuery:
			s.R.Discard(len(msg))
			return cols, rows, tag, first
		}
		s.R.Discard(len(msg))
	}
}

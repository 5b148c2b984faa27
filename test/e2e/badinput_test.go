package e2e

import (
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// rawClient speaks the protocol by hand, for the inputs no driver sends.
type rawClient struct {
	t    testing.TB
	conn net.Conn
	fe   *pgproto3.Frontend
	pid  uint32 // from the login's BackendKeyData
}

func dialRaw(t testing.TB, s *Sluice) *rawClient {
	t.Helper()
	return dialRawAddr(t, s.Addr())
}

// dialRawAddr is dialRaw to any address, such as Postgres itself for a differential test.
func dialRawAddr(t testing.TB, addr string) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, conn: c, fe: pgproto3.NewFrontend(c, c)}
}

// write sends raw bytes. Errors are ignored: sluice may already have closed the connection, which
// the test then sees when it reads.
func (c *rawClient) write(b []byte) { _, _ = c.conn.Write(b) }

// send encodes and sends messages.
func (c *rawClient) send(msgs ...pgproto3.FrontendMessage) {
	c.t.Helper()
	var buf []byte
	for _, m := range msgs {
		var err error
		if buf, err = m.Encode(buf); err != nil {
			c.t.Fatalf("encode %T: %v", m, err)
		}
	}
	c.write(buf)
}

// receive reads one message, waiting at most d.
func (c *rawClient) receive(d time.Duration) (pgproto3.BackendMessage, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	return c.fe.Receive()
}

// awaitCopyIn reads up to the server's CopyInResponse.
func (c *rawClient) awaitCopyIn() {
	c.t.Helper()
	for {
		m, err := c.receive(10 * time.Second)
		if err != nil {
			c.t.Fatalf("waiting for CopyInResponse: %v", err)
		}
		switch m := m.(type) {
		case *pgproto3.CopyInResponse:
			return
		case *pgproto3.ErrorResponse:
			c.t.Fatalf("waiting for CopyInResponse: %s (SQLSTATE %s)", m.Message, m.Code)
		}
	}
}

// awaitReady reads up to the n-th ReadyForQuery; an ErrorResponse on the way fails the test.
func (c *rawClient) awaitReady(n int) {
	c.t.Helper()
	for n > 0 {
		m, err := c.receive(10 * time.Second)
		if err != nil {
			c.t.Fatalf("waiting for ReadyForQuery: %v", err)
		}
		switch m := m.(type) {
		case *pgproto3.ReadyForQuery:
			n--
		case *pgproto3.ErrorResponse:
			c.t.Fatalf("waiting for ReadyForQuery: %s (SQLSTATE %s)", m.Message, m.Code)
		}
	}
}

// startup sends a startup packet with these parameters (name, value, name, value, ...).
func (c *rawClient) startup(kv ...string) {
	c.t.Helper()
	params := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		params[kv[i]] = kv[i+1]
	}
	c.send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: params})
}

// md5Password is what a client answers to AuthenticationMD5Password.
func md5Password(user, password string, salt [4]byte) string {
	h := md5.Sum([]byte(password + user))
	inner := hex.EncodeToString(h[:])
	h = md5.Sum(append([]byte(inner), salt[:]...))
	return "md5" + hex.EncodeToString(h[:])
}

// login logs in as the app user and reads up to the first ReadyForQuery.
func (c *rawClient) login() {
	c.t.Helper()
	c.startup("user", appUser, "database", appDB)
	for {
		m, err := c.receive(10 * time.Second)
		if err != nil {
			c.t.Fatalf("login: %v", err)
		}
		switch m := m.(type) {
		case *pgproto3.AuthenticationMD5Password:
			c.send(&pgproto3.PasswordMessage{Password: md5Password(appUser, appPass, m.Salt)})
		case *pgproto3.ErrorResponse:
			c.t.Fatalf("login: %s (SQLSTATE %s)", m.Message, m.Code)
		case *pgproto3.BackendKeyData:
			c.pid = m.ProcessID
		case *pgproto3.ReadyForQuery:
			return
		}
	}
}

// query runs sql with the simple protocol and returns the first column of each row, as text.
func (c *rawClient) query(sql string) ([]string, error) {
	c.t.Helper()
	c.send(&pgproto3.Query{String: sql})
	var rows []string
	var qerr error
	for {
		m, err := c.receive(10 * time.Second)
		if err != nil {
			return rows, err
		}
		switch m := m.(type) {
		case *pgproto3.DataRow:
			rows = append(rows, string(m.Values[0]))
		case *pgproto3.ErrorResponse:
			qerr = &pgconn.PgError{Severity: m.Severity, Code: m.Code, Message: m.Message}
		case *pgproto3.ReadyForQuery:
			return rows, qerr
		}
	}
}

// expectFatal reads until an ErrorResponse, which must be FATAL with SQLSTATE code, and then
// expects the connection to be closed. It returns the error's message.
func (c *rawClient) expectFatal(code string) string {
	c.t.Helper()
	for {
		m, err := c.receive(10 * time.Second)
		if err != nil {
			c.t.Fatalf("want FATAL %s, got %v", code, err)
		}
		e, ok := m.(*pgproto3.ErrorResponse)
		if !ok {
			continue
		}
		if e.Severity != "FATAL" || e.Code != code {
			c.t.Fatalf("got %s %s %q, want FATAL %s", e.Severity, e.Code, e.Message, code)
		}
		c.expectClosed(10 * time.Second)
		return e.Message
	}
}

// expectClosed expects sluice to close the connection within d, with nothing more said.
func (c *rawClient) expectClosed(d time.Duration) {
	c.t.Helper()
	m, err := c.receive(d)
	if err == nil {
		c.t.Fatalf("want the connection closed, got %T %+v", m, m)
	}
	if isTimeout(err) {
		c.t.Fatalf("connection still open after %s", d)
	}
}

// expectClosedAfterReplies reads whatever replies come until the connection is closed, which
// must happen within d.
func (c *rawClient) expectClosedAfterReplies(d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		_, err := c.receive(time.Until(deadline))
		if err == nil {
			continue
		}
		if isTimeout(err) {
			c.t.Fatalf("connection still open after %s", d)
		}
		return
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// selectOne checks that a new client gets answers: sluice is still serving.
func selectOne(t testing.TB, s *Sluice) {
	t.Helper()
	c := connect(t, s)
	var n int
	if err := c.QueryRow(context.Background(), "SELECT $1::int + 1", 1).Scan(&n); err != nil || n != 2 {
		t.Fatalf("a new client after that: %d, %v", n, err)
	}
}

// be32 is a 4-byte big-endian number.
func be32(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }

func joinBytes(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func TestBadInputGarbageInsteadOfStartupPacket(t *testing.T) {
	s := startSluice(t, poolConfig{})
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 1000)
	for i := range random {
		random[i] = byte(rng.UintN(256))
	}
	tests := []struct {
		name  string
		bytes []byte
	}{
		{"HTTP request", []byte("GET / HTTP/1.1\r\nHost: sluice\r\n\r\n")},
		{"TLS ClientHello", []byte{0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, 1, 2, 3, 4}},
		{"random bytes", random},
		{"zeros", make([]byte, 64)},
		{"length 4", be32(4)},
		{"length 7", joinBytes(be32(7), []byte{0, 3, 0})},
		{"startup length 2 GiB", joinBytes(be32(1<<31), be32(3<<16), []byte("user\x00app\x00\x00"))},
		{"startup length 4 GiB - 1", joinBytes(be32(1<<32-1), be32(3<<16))},
		{"startup length 10001", joinBytes(be32(10001), be32(3<<16))},
		{"protocol 2.0", joinBytes(be32(8+9), be32(2<<16), []byte("user\x00app\x00\x00"))},
		{"protocol 1234.5678", joinBytes(be32(8+9), be32(1234<<16|5678), []byte("user\x00app\x00\x00"))},
		{"parameters without terminator", joinBytes(be32(8+8), be32(3<<16), []byte("user\x00app\x00"))},
		{"value without NUL", joinBytes(be32(8+7), be32(3<<16), []byte("user\x00app"))},
		{"SSLRequest with a body", joinBytes(be32(12), be32(80877103), be32(0))},
		{"cancel request too short", joinBytes(be32(12), be32(80877102), be32(1))},
		{"three SSLRequests", joinBytes(be32(8), be32(80877103), be32(8), be32(80877103), be32(8), be32(80877103))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, s)
			c.write(tt.bytes)
			// Either a FATAL 08P01 and then EOF, or EOF at once. The three SSLRequests are each
			// answered 'N' first.
			for {
				_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				var b [1]byte
				if _, err := io.ReadFull(c.conn, b[:]); err != nil {
					if isTimeout(err) {
						t.Fatal("connection still open after 10s")
					}
					break // closed without a word: acceptable
				}
				if b[0] == 'N' && strings.HasPrefix(tt.name, "three SSL") {
					continue
				}
				if b[0] != 'E' {
					t.Fatalf("got a %q message, want an ErrorResponse or nothing", b[0])
				}
				c.fe = pgproto3.NewFrontend(io.MultiReader(strings.NewReader("E"), c.conn), c.conn)
				msg := c.expectFatal("08P01")
				t.Logf("FATAL 08P01: %s", msg)
				break
			}
		})
	}
	selectOne(t, s)
}

// A connection whose first four bytes cannot be a startup packet's length is closed without a
// word, by Postgres (it only logs "invalid length of startup packet") and by sluice: node-postgres,
// closed while it connects, sends Terminate before its startup packet and takes an error reply as
// a failure of a client it has already closed.
func TestBadInputTerminateBeforeStartupIsClosedSilently(t *testing.T) {
	s := startSluice(t, poolConfig{})
	for _, target := range []struct {
		name string
		s    *Sluice
	}{{"postgres", &Sluice{Port: pg.Port}}, {"sluice", s}} {
		t.Run(target.name, func(t *testing.T) {
			c := dialRaw(t, target.s)
			startup, err := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
				Parameters: map[string]string{"user": appUser, "database": appDB}}).Encode(nil)
			if err != nil {
				t.Fatal(err)
			}
			c.write(joinBytes([]byte{'X', 0, 0, 0, 4}, startup))
			c.expectClosed(10 * time.Second)
		})
	}
	selectOne(t, s)
}

func TestBadInputHugeOrBadLengthAfterLogin(t *testing.T) {
	s := startSluice(t, poolConfig{})
	tests := []struct {
		name   string
		header []byte
	}{
		{"Query of 2 GiB", joinBytes([]byte{'Q'}, be32(1<<31))},
		{"Query of 4 GiB - 1", joinBytes([]byte{'Q'}, be32(1<<32-1))},
		{"Parse of 2 GiB", joinBytes([]byte{'P'}, be32(1<<31))},
		{"CopyData of 2 GiB", joinBytes([]byte{'d'}, be32(1<<31))},
		{"unknown type of 2 GiB", joinBytes([]byte{'z'}, be32(1<<31))},
		{"Query with length 3", joinBytes([]byte{'Q'}, be32(3))},
		{"Sync with length 0", joinBytes([]byte{'S'}, be32(0))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, s)
			c.login()
			c.write(tt.header)
			msg := c.expectFatal("08P01")
			if !strings.Contains(msg, "invalid message") {
				t.Fatalf("message %q does not say %q", msg, "invalid message")
			}
		})
	}
	selectOne(t, s)
}

func TestBadInputStartupWithoutUser(t *testing.T) {
	s := startSluice(t, poolConfig{})
	for _, params := range [][]string{{"database", appDB}, {}, {"user", "", "database", appDB}} {
		t.Run(fmt.Sprint(params), func(t *testing.T) {
			c := dialRaw(t, s)
			c.startup(params...)
			c.expectFatal("28000")
		})
	}
}

func TestBadInputEncryptionRequestsAreAnsweredN(t *testing.T) {
	s := startSluice(t, poolConfig{})
	const ssl, gss = 80877103, 80877104
	tests := []struct {
		name     string
		requests []uint32
	}{
		{"SSLRequest", []uint32{ssl}},
		{"GSSENCRequest", []uint32{gss}},
		{"GSSENCRequest then SSLRequest", []uint32{gss, ssl}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, s)
			for _, code := range tt.requests {
				c.write(joinBytes(be32(8), be32(code)))
				_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				var b [1]byte
				if _, err := io.ReadFull(c.conn, b[:]); err != nil || b[0] != 'N' {
					t.Fatalf("request %d: answer %q, %v; want 'N'", code, b[0], err)
				}
			}
			c.login()
			rows, err := c.query("SELECT 'plain text works'")
			if err != nil || len(rows) != 1 || rows[0] != "plain text works" {
				t.Fatalf("query after the refused request: %q, %v", rows, err)
			}
		})
	}
	// libpq's sslmode=prefer goes the same way: SSLRequest, 'N', then a plain startup.
	c, err := pgx.Connect(context.Background(), strings.Replace(s.URL(), "sslmode=disable", "sslmode=prefer", 1))
	if err != nil {
		t.Fatalf("sslmode=prefer: %v", err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(context.Background(), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
}

func TestBadInputTooManyClients(t *testing.T) {
	const limit, extra = 500, 500
	raiseFileLimit(t, 4*(limit+extra)+1000)
	s := startSluice(t, poolConfig{General: fmt.Sprintf("max_client_conn = %d", limit)})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The first limit clients get in, 50 at a time.
	conns := make([]*pgx.Conn, limit)
	runParallel(limit, 50, func(i int) error {
		c, err := pgx.Connect(ctx, s.URL())
		if err != nil {
			return fmt.Errorf("client %d of %d: %w", i, limit, err)
		}
		conns[i] = c
		return nil
	}, t)
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close(context.Background())
			}
		}
	})

	// Every one over the limit gets FATAL 53300.
	runParallel(extra, 50, func(i int) error {
		c, err := pgx.Connect(ctx, s.URL())
		if err == nil {
			c.Close(ctx)
			return fmt.Errorf("client %d over the limit got in", limit+i)
		}
		if code := codeOf(err); code != "53300" {
			return fmt.Errorf("client %d over the limit: %v, want SQLSTATE 53300", limit+i, err)
		}
		return nil
	}, t)

	// The clients inside keep working.
	runParallel(limit, 100, func(i int) error {
		var n int
		if err := conns[i].QueryRow(ctx, "SELECT $1::int", i).Scan(&n); err != nil || n != i {
			return fmt.Errorf("client %d after the refusals: %d, %v", i, n, err)
		}
		return nil
	}, t)

	// A client that leaves makes room for one more.
	conns[0].Close(ctx)
	conns[0] = nil
	checkFor(t, 10*time.Second, func() error {
		c, err := pgx.Connect(ctx, s.URL())
		if err != nil {
			return err
		}
		conns[0] = c
		return nil
	})
}

// runParallel runs fn(0..n-1) with at most width at once and fails the test with the first errors.
func runParallel(n, width int, fn func(i int) error, t testing.TB) {
	t.Helper()
	sem := make(chan struct{}, width)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := fn(i); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d failed; first: %v", len(errs), n, errors.Join(errs[:min(len(errs), 3)]...))
	}
}

// raiseFileLimit makes sure this process may open n files.
func raiseFileLimit(t testing.TB, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	lim.Cur = min(max(n, lim.Cur), lim.Max)
	if lim.Cur < n {
		lim.Max, lim.Cur = n, n // root may raise the hard limit too
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("raise RLIMIT_NOFILE to %d: %v", n, err)
	}
}

func TestBadInputSilentClientClosedAfterLoginTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	s := startSluice(t, poolConfig{General: fmt.Sprintf("client_login_timeout = %d", timeout.Milliseconds())})
	tests := []struct {
		name string
		send func(c *rawClient)
	}{
		{"sends nothing", func(c *rawClient) {}},
		{"sends half a length", func(c *rawClient) { c.write([]byte{0, 0}) }},
		{"sends half a startup packet", func(c *rawClient) { c.write(joinBytes(be32(40), be32(3<<16), []byte("user\x00"))) }},
		{"sends SSLRequest and stops", func(c *rawClient) { c.write(joinBytes(be32(8), be32(80877103))) }},
		{"never answers the password request", func(c *rawClient) { c.startup("user", appUser, "database", appDB) }},
		{"sends half a password message", func(c *rawClient) {
			c.startup("user", appUser, "database", appDB)
			c.write(joinBytes([]byte{'p'}, be32(40), []byte("md5")))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, s)
			start := time.Now()
			tt.send(c)
			_ = c.conn.SetReadDeadline(start.Add(10 * time.Second))
			// Anything sluice says on the way (an 'N', an authentication request, a FATAL) is
			// fine; it must close the connection.
			_, err := io.Copy(io.Discard, c.conn)
			took := time.Since(start)
			if isTimeout(err) {
				t.Fatalf("connection still open after %s (client_login_timeout %s)", took.Round(time.Millisecond), timeout)
			}
			if took < timeout-50*time.Millisecond || took > timeout+3*time.Second {
				t.Fatalf("closed after %s, want about client_login_timeout %s", took.Round(time.Millisecond), timeout)
			}
		})
	}
	t.Run("a client that logged in is not bound by it", func(t *testing.T) {
		c := dialRaw(t, s)
		c.login()
		time.Sleep(3 * timeout) // longer than the login timeout: the behaviour under test
		if rows, err := c.query("SELECT 'still here'"); err != nil || len(rows) != 1 {
			t.Fatalf("after %s idle: %q, %v", 3*timeout, rows, err)
		}
	})
	selectOne(t, s)
}

func TestBadInputWrongPasswordAndUnknownUserLookAlike(t *testing.T) {
	s := startSluice(t, poolConfig{})
	// try logs in as user with password, expecting an md5 password request and then an error,
	// which it returns with the user name replaced by USER.
	try := func(user, password string) pgproto3.ErrorResponse {
		c := dialRaw(t, s)
		c.startup("user", user, "database", appDB)
		m, err := c.receive(10 * time.Second)
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		req, ok := m.(*pgproto3.AuthenticationMD5Password)
		if !ok {
			t.Fatalf("%s: got %T, want a password request", user, m)
		}
		c.send(&pgproto3.PasswordMessage{Password: md5Password(user, password, req.Salt)})
		m, err = c.receive(10 * time.Second)
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		e, ok := m.(*pgproto3.ErrorResponse)
		if !ok {
			t.Fatalf("%s: got %T, want an ErrorResponse", user, m)
		}
		c.expectClosed(10 * time.Second)
		got := *e
		got.Message = strings.ReplaceAll(got.Message, user, "USER")
		return got
	}
	wrong := try(appUser, "not-"+appPass)
	unknown := try("nobody_here", appPass)
	if wrong.Severity != "FATAL" || wrong.Code != "28P01" {
		t.Fatalf("wrong password: %s %s %q, want FATAL 28P01", wrong.Severity, wrong.Code, wrong.Message)
	}
	if !equalErrorResponses(wrong, unknown) {
		t.Fatalf("wrong password and unknown user differ:\n%+v\n%+v", wrong, unknown)
	}
}

func equalErrorResponses(a, b pgproto3.ErrorResponse) bool {
	return fmt.Sprintf("%+v", a) == fmt.Sprintf("%+v", b)
}

func TestBadInputUnknownDatabase(t *testing.T) {
	s := startSluice(t, poolConfig{})
	url := strings.Replace(s.URL(), "/"+appDB+"?", "/no_such_db?", 1)
	c, err := pgx.Connect(context.Background(), url)
	if err == nil {
		c.Close(context.Background())
		t.Fatal("connected to a database that does not exist")
	}
	if code := codeOf(err); code != "3D000" {
		t.Fatalf("got %v, want SQLSTATE 3D000", err)
	}
	selectOne(t, s)
}

func TestBadInputPasswordMessageLongerThanAnyPassword(t *testing.T) {
	s := startSluice(t, poolConfig{})
	c := dialRaw(t, s)
	c.startup("user", appUser, "database", appDB)
	if m, err := c.receive(10 * time.Second); err != nil {
		t.Fatal(err)
	} else if _, ok := m.(*pgproto3.AuthenticationMD5Password); !ok {
		t.Fatalf("got %T, want a password request", m)
	}
	// Before authentication, a client must not be able to announce (and make sluice make room
	// for) a 100 MB message; Postgres refuses a password longer than 64 KiB at once.
	c.write(joinBytes([]byte{'p'}, be32(100<<20), []byte("md5")))
	m, err := c.receive(3 * time.Second)
	if err != nil {
		t.Fatalf("want FATAL 08P01 at once, got %v", err)
	}
	if e, ok := m.(*pgproto3.ErrorResponse); !ok || e.Severity != "FATAL" || e.Code != "08P01" {
		t.Fatalf("got %T %+v, want FATAL 08P01", m, m)
	}
	c.expectClosed(5 * time.Second)
}

func TestBadInputServerKilledInTheMiddleOfAQuery(t *testing.T) {
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			s := startSluice(t, poolConfig{Mode: mode, PoolSize: 2})
			ctx := context.Background()
			bystander := connect(t, s)
			if _, err := bystander.Exec(ctx, "SELECT 1"); err != nil {
				t.Fatal(err)
			}
			victim := connect(t, s)
			marker := fmt.Sprintf("killed_%s_%d", mode, time.Now().UnixNano())
			done := make(chan error, 1)
			go func() {
				_, err := victim.Exec(ctx, fmt.Sprintf("SELECT pg_sleep(60) /* %s */", marker))
				done <- err
			}()
			pid := serverPidRunning(t, marker)
			var killed bool
			if err := direct(t).QueryRow(ctx, "SELECT pg_terminate_backend($1)", pid).Scan(&killed); err != nil || !killed {
				t.Fatalf("pg_terminate_backend(%d): %v, %v", pid, killed, err)
			}
			select {
			case err := <-done:
				if code := codeOf(err); code != "57P01" && code != "08006" {
					t.Fatalf("client got %v, want SQLSTATE 57P01 or 08006", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the client of the killed server is still waiting after 5s")
			}
			selectOne(t, s)
			if _, err := bystander.Exec(ctx, "SELECT 1"); err != nil {
				t.Fatalf("a client connected before the kill: %v", err)
			}
		})
	}
}

// A server that ends the session itself says why in one FATAL and closes the connection; the
// client gets that FATAL and the close, as from Postgres, and no second error from sluice:
// node-postgres takes a second error as a second failure (an 'error' event nobody listens for).
func TestBadInputServerTerminatesTheSession(t *testing.T) {
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			s := startSluice(t, poolConfig{Mode: mode, PoolSize: 2})
			c := dialRaw(t, s)
			c.login()
			if mode == "transaction" {
				// Inside a transaction: a FATAL as the first word of a server fresh from the pool
				// is taken as a server that went away meanwhile (see goneBeforeRequest).
				if _, err := c.query("BEGIN"); err != nil {
					t.Fatal(err)
				}
			}
			c.send(&pgproto3.Query{String: "SELECT pg_terminate_backend(pg_backend_pid())"})
			c.expectFatal("57P01")
			selectOne(t, s)
		})
	}
}

// serverPidRunning waits until exactly one server runs a query containing marker and returns its
// pid, read from pg_stat_activity directly.
func serverPidRunning(t testing.TB, marker string) int {
	t.Helper()
	db := direct(t)
	var pid int
	checkFor(t, 10*time.Second, func() error {
		return db.QueryRow(context.Background(),
			`SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()`,
			marker).Scan(&pid)
	})
	return pid
}

func TestBadInputMessageLargerThanMaxMessageSize(t *testing.T) {
	const max = 8192
	s := startSluice(t, poolConfig{General: fmt.Sprintf("max_message_size = %d", max)})
	ctx := context.Background()
	literal := func(n int) string { return "SELECT '" + strings.Repeat("x", n) + "'" }

	t.Run("a query just under the limit works", func(t *testing.T) {
		c := dialRaw(t, s)
		c.login()
		q := literal(max - 5 - len("SELECT ''") - 1) // header, quotes, NUL
		if rows, err := c.query(q); err != nil || len(rows) != 1 {
			t.Fatalf("%q, %v", rows, err)
		}
	})
	t.Run("a query over the limit ends the connection with 08P01", func(t *testing.T) {
		c := dialRaw(t, s)
		c.login()
		c.send(&pgproto3.Query{String: literal(max)})
		c.expectFatal("08P01")
	})
	t.Run("a Bind over the limit, through pgx", func(t *testing.T) {
		c := connect(t, s)
		_, err := c.Exec(ctx, "SELECT $1::text", strings.Repeat("y", 2*max))
		if code := codeOf(err); code != "08P01" {
			t.Fatalf("got %v, want SQLSTATE 08P01", err)
		}
	})
	t.Run("a result row larger than the limit streams through", func(t *testing.T) {
		// The limit guards sluice's buffers against clients; DataRows are forwarded without
		// being held whole, so a large value is no reason to drop the connection.
		c := connect(t, s)
		var n int
		if err := c.QueryRow(ctx, "SELECT length(repeat('z', $1::int))", 4*max).Scan(&n); err != nil {
			t.Fatal(err)
		}
		var v string
		if err := c.QueryRow(ctx, "SELECT repeat('z', $1::int)", 4*max).Scan(&v); err != nil || len(v) != 4*max {
			t.Fatalf("row of %d bytes: got %d bytes, %v", 4*max, len(v), err)
		}
	})
	selectOne(t, s)
}

func TestBadInputUnknownMessageType(t *testing.T) {
	s := startSluice(t, poolConfig{})
	for _, typ := range []byte{'z', 0, 0xff, 'p', 'K', 'R'} {
		t.Run(fmt.Sprintf("%q", typ), func(t *testing.T) {
			c := dialRaw(t, s)
			c.login()
			c.write(joinBytes([]byte{typ}, be32(8), []byte("junk")))
			c.expectFatal("08P01")
		})
	}
	selectOne(t, s)
}

func TestBadInputClientLeavesInTheMiddleOfAQuery(t *testing.T) {
	ctx := context.Background()
	setupTable := func(t *testing.T) string {
		name := fmt.Sprintf("leaves_%d", time.Now().UnixNano())
		if err := pg.Exec(ctx, appDB, fmt.Sprintf("DROP TABLE IF EXISTS %[1]s; CREATE TABLE %[1]s (v text); GRANT ALL ON %[1]s TO %[2]s", name, appUser)); err != nil {
			t.Fatal(err)
		}
		return name
	}
	tests := []struct {
		name  string
		leave func(t *testing.T, c *rawClient, table string)
	}{
		{"while the server sleeps", func(t *testing.T, c *rawClient, table string) {
			c.send(&pgproto3.Query{String: "SELECT pg_sleep(0.3), 'from the client that left'"})
		}},
		{"while a big result streams", func(t *testing.T, c *rawClient, table string) {
			c.send(&pgproto3.Query{String: "SELECT repeat('x', 1000) FROM generate_series(1, 200000)"})
			for range 10 { // some rows in, most still coming
				if _, err := c.receive(10 * time.Second); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"in an extended batch without Sync", func(t *testing.T, c *rawClient, table string) {
			c.send(&pgproto3.Parse{Query: "SELECT pg_sleep(0.2), 'from the client that left'"},
				&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
		}},
		{"in an open transaction, mid-query", func(t *testing.T, c *rawClient, table string) {
			if _, err := c.query("BEGIN; INSERT INTO " + table + " VALUES ('uncommitted')"); err != nil {
				t.Fatal(err)
			}
			c.send(&pgproto3.Query{String: "SELECT pg_sleep(0.3)"})
		}},
		{"in COPY FROM STDIN", func(t *testing.T, c *rawClient, table string) {
			c.send(&pgproto3.Query{String: "COPY " + table + " FROM STDIN"})
			m, err := c.receive(10 * time.Second)
			if _, ok := m.(*pgproto3.CopyInResponse); err != nil || !ok {
				t.Fatalf("want CopyInResponse, got %T, %v", m, err)
			}
			c.send(&pgproto3.CopyData{Data: []byte("half a row")})
		}},
	}
	for _, mode := range []string{"transaction", "session"} {
		for _, tt := range tests {
			t.Run(mode+"/"+tt.name, func(t *testing.T) {
				s := startSluice(t, poolConfig{Mode: mode, PoolSize: 1})
				table := setupTable(t)
				c := dialRaw(t, s)
				c.login()
				tt.leave(t, c, table)
				c.conn.Close() // no Terminate: the client is just gone

				next := connect(t, s)
				for i := range 3 {
					var v string
					var inTx bool
					// The simple protocol: with it, now() = statement_timestamp() outside a transaction.
					err := next.QueryRow(ctx, "SELECT $1::text, now() <> statement_timestamp()",
						pgx.QueryExecModeSimpleProtocol, fmt.Sprint("next ", i)).Scan(&v, &inTx)
					if err != nil || v != fmt.Sprint("next ", i) {
						t.Fatalf("next client, query %d: %q, %v", i, v, err)
					}
					if inTx {
						t.Fatalf("next client, query %d: runs inside a transaction it did not open", i)
					}
				}
				var n int
				if err := next.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil || n != 0 {
					t.Fatalf("rows the client that left did not commit: %d, %v", n, err)
				}
			})
		}
	}
}

// TestClientLeavingALongQueryFreesItsServer: a client that gives up on a long query and closes
// its socket (node-postgres' query_timeout does) must not keep its server, and so a slot of the
// pool, until the query ends. In transaction mode the reader drains such a reply itself, reading
// only the server: it must notice the client leave all the same, as session mode does.
func TestClientLeavingALongQueryFreesItsServer(t *testing.T) {
	ctx := context.Background()
	watch := direct(t)
	for _, mode := range []string{"transaction", "session"} {
		t.Run(mode, func(t *testing.T) {
			// Postgres runs the abandoned query to its end, as it would for a client of its own
			// that left: end it, for the tests that count busy backends.
			t.Cleanup(func() {
				_, _ = watch.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
					WHERE query = 'SELECT pg_sleep(30) /* abandoned */'`)
			})
			s := startSluice(t, poolConfig{Mode: mode, PoolSize: 1})
			c := dialRaw(t, s)
			c.login()
			c.send(&pgproto3.Query{String: "SELECT pg_sleep(30) /* abandoned */"})
			time.Sleep(500 * time.Millisecond) // the query runs
			c.conn.Close()

			start := time.Now()
			next := connect(t, s)
			qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			var n int
			if err := next.QueryRow(qctx, "SELECT 1").Scan(&n); err != nil {
				t.Fatalf("the next client, with the pool's only server running the abandoned query: %v", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("the next client waited %s for the abandoned query's server", d)
			}
		})
	}
}

// TestClientSendingDuringALongQueryIsServed: what a client sends while its long query runs (a
// pipelined query) is read by the watch for a leaving client (see the test above), and must
// reach the server all the same, in order.
func TestClientSendingDuringALongQueryIsServed(t *testing.T) {
	s := startSluice(t, poolConfig{PoolSize: 1})
	c := dialRaw(t, s)
	c.login()
	c.send(&pgproto3.Query{String: "SELECT 'first' FROM pg_sleep(0.6)"})
	time.Sleep(400 * time.Millisecond) // the reply is late: the client is watched
	c.send(&pgproto3.Query{String: "SELECT 'second'"})
	var got []string
	for ready := 0; ready < 2; {
		m, err := c.receive(10 * time.Second)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		switch m := m.(type) {
		case *pgproto3.DataRow:
			got = append(got, string(m.Values[0]))
		case *pgproto3.ErrorResponse:
			t.Fatalf("%s (SQLSTATE %s)", m.Message, m.Code)
		case *pgproto3.ReadyForQuery:
			ready++
		}
	}
	if len(got) != 2 || got[0] != "first" || got[1] != "second" {
		t.Fatalf("rows %q, want first then second", got)
	}
	if rows, err := c.query("SELECT 'third'"); err != nil || len(rows) != 1 || rows[0] != "third" {
		t.Fatalf("a query after them: %q, %v", rows, err)
	}
}

func TestBadInputStartupParametersSluiceRefuses(t *testing.T) {
	s := startSluice(t, poolConfig{})
	tests := []struct {
		name   string
		params []string
		code   string
	}{
		{"physical replication", []string{"replication", "true"}, "08P01"},
		{"logical replication", []string{"replication", "database"}, "08P01"},
		{"options that are not -c or --", []string{"options", "-x 1"}, "08P01"},
		{"options without a value", []string{"options", "-c statement_timeout"}, "08P01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, s)
			c.startup(append([]string{"user", appUser, "database", appDB}, tt.params...)...)
			for {
				m, err := c.receive(10 * time.Second)
				if err != nil {
					t.Fatalf("want FATAL %s, got %v", tt.code, err)
				}
				switch m := m.(type) {
				case *pgproto3.AuthenticationMD5Password:
					c.send(&pgproto3.PasswordMessage{Password: md5Password(appUser, appPass, m.Salt)})
					continue
				case *pgproto3.ErrorResponse:
					if m.Severity != "FATAL" || m.Code != tt.code {
						t.Fatalf("got %s %s %q, want FATAL %s", m.Severity, m.Code, m.Message, tt.code)
					}
					c.expectClosed(10 * time.Second)
					return
				case *pgproto3.ReadyForQuery:
					t.Fatal("logged in")
				}
			}
		})
	}
}

func TestBadInputInvalidStartupSetting(t *testing.T) {
	// Postgres refuses a startup packet that sets TimeZone to a zone that does not exist with
	// SQLSTATE 22023 (invalid_parameter_value). Through sluice the client must get that error too,
	// at login or at its first query, not a connection that fails every query with another code.
	ctx := context.Background()
	s := startSluice(t, poolConfig{})
	cfg, err := pgx.ParseConfig(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["TimeZone"] = "Nowhere/Atlantis"
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		defer c.Close(ctx)
		_, err = c.Exec(ctx, "SELECT 1")
	}
	if code := codeOf(err); code != "22023" {
		t.Fatalf("got %v, want SQLSTATE 22023", err)
	}
	selectOne(t, s)
}

func TestBadInputUnknownStartupSettingFailsLogin(t *testing.T) {
	// Postgres refuses at login a startup packet that sets a parameter it does not know (42704)
	// or a setting it does not report to a value it refuses (22023). Through sluice the login
	// must fail with that error too: a FATAL at the first query instead is a broken connection to
	// drivers that check the connection with an empty query first (lib/pq's TestRuntimeParameters).
	ctx := context.Background()
	s := startSluice(t, poolConfig{})
	for _, tc := range []struct{ name, value, code string }{
		{"doesnotexist", "foo", "42704"},
		{"work_mem", "lots", "22023"},
	} {
		for range 2 { // the second login must not be let through on what the first learned
			cfg, err := pgx.ParseConfig(s.URL())
			if err != nil {
				t.Fatal(err)
			}
			cfg.RuntimeParams[tc.name] = tc.value
			c, err := pgx.ConnectConfig(ctx, cfg)
			if err == nil {
				c.Close(ctx)
				t.Fatalf("%s=%s: logged in, want SQLSTATE %s at login", tc.name, tc.value, tc.code)
			}
			if code := codeOf(err); code != tc.code {
				t.Fatalf("%s=%s: got %v, want SQLSTATE %s", tc.name, tc.value, err, tc.code)
			}
		}
	}
	c := connectConfig(t, s, func(cfg *pgx.ConnConfig) { cfg.RuntimeParams["work_mem"] = "8MB" })
	if got := queryString(t, c, "SHOW work_mem"); got != "8MB" {
		t.Errorf("SHOW work_mem: %q, want 8MB", got)
	}
	selectOne(t, s)
}

func TestStartupSettingWinsOverOptions(t *testing.T) {
	// In Postgres a setting given in the startup packet itself wins over the same setting in
	// options (lib/pq sends client_encoding=UTF8 beside the user's options "-c
	// client_encoding=..."), whether the server reports it or not.
	for _, mode := range []string{"session", "transaction"} {
		t.Run(mode, func(t *testing.T) {
			s := startSluice(t, poolConfig{Mode: mode})
			c := connectConfig(t, s, func(cfg *pgx.ConnConfig) {
				cfg.RuntimeParams["options"] = "-c application_name=from_options -c search_path=from_options"
				cfg.RuntimeParams["application_name"] = "from_packet"
				cfg.RuntimeParams["search_path"] = "from_packet"
			})
			if got := c.PgConn().ParameterStatus("application_name"); got != "from_packet" {
				t.Errorf("told application_name %q at login, want from_packet", got)
			}
			for _, name := range []string{"application_name", "search_path"} {
				if got := queryString(t, c, "SHOW "+name); got != "from_packet" {
					t.Errorf("SHOW %s: %q, want from_packet", name, got)
				}
			}
		})
	}
}

func TestBadInputClientLeavesWhileWaitingForAServer(t *testing.T) {
	// A client that gave up waiting for a server and disconnected must not have its query run
	// later, when a server frees up: it was told nothing, and may retry elsewhere.
	ctx := context.Background()
	s := startSluice(t, poolConfig{PoolSize: 1})
	table := fmt.Sprintf("ghost_%d", time.Now().UnixNano())
	if err := pg.Exec(ctx, appDB, fmt.Sprintf("CREATE TABLE %s (v int); GRANT ALL ON %[1]s TO %s", table, appUser)); err != nil {
		t.Fatal(err)
	}
	holder := connect(t, s)
	if _, err := holder.Exec(ctx, "BEGIN; SELECT 1"); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		c := dialRaw(t, s)
		c.login()
		c.send(&pgproto3.Query{String: fmt.Sprintf("INSERT INTO %s VALUES (%d)", table, i)})
		if m, err := c.receive(200 * time.Millisecond); err == nil {
			t.Fatalf("client %d got %T while the only server is held", i, m)
		}
		c.conn.Close()
	}
	if _, err := holder.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	selectOne(t, s)
	var n int
	if err := direct(t).QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d INSERTs of clients that had left before a server was free were run", n)
	}
}

// Bytes a client sends right behind its startup packet are its first messages, not noise: with
// trust there is nothing to wait for, and a client may pipeline its first query.
func TestStartupPipelinedQuery(t *testing.T) {
	s := startSluice(t, poolConfig{User: `auth_type = "trust"`})
	c := dialRaw(t, s)
	var buf []byte
	var err error
	for _, m := range []pgproto3.FrontendMessage{
		&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": appUser, "database": appDB}},
		&pgproto3.Query{String: "SELECT 'pipelined'"},
	} {
		if buf, err = m.Encode(buf); err != nil {
			t.Fatal(err)
		}
	}
	c.write(buf) // one write: sluice reads both at once
	var got []string
	for {
		m, err := c.receive(10 * time.Second)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			t.Fatalf("%s (SQLSTATE %s)", m.Message, m.Code)
		case *pgproto3.DataRow:
			got = append(got, string(m.Values[0]))
		case *pgproto3.CommandComplete:
			if len(got) != 1 || got[0] != "pipelined" {
				t.Fatalf("rows %q, want [pipelined]", got)
			}
			return
		}
	}
}

// A client must wait for the answer to its SSLRequest: anything it sent before would be read as
// if it had come over TLS (CVE-2021-23214). Postgres refuses it, and so does sluice.
func TestStartupDataAfterSSLRequestRefused(t *testing.T) {
	s := startSluice(t, poolConfig{})
	c := dialRaw(t, s)
	startup, err := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": appUser, "database": appDB}}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	c.write(joinBytes(be32(8), be32(80877103), startup))
	msg := c.expectFatal("08P01")
	if !strings.Contains(msg, "unencrypted data after SSL request") {
		t.Fatalf("message %q", msg)
	}
	c.expectClosed(5 * time.Second)
}

// TestNewerProtocolIsNegotiatedDown: a client asking for protocol 3.2 (PostgreSQL 18's) or for
// protocol options (_pq_.*) is told, with NegotiateProtocolVersion before authentication as
// Postgres does, that sluice speaks 3.0 and knows none of the options; the login then goes on in
// 3.0, and the options are not taken for settings.
func TestNewerProtocolIsNegotiatedDown(t *testing.T) {
	s := startSluice(t, poolConfig{})
	c := dialRaw(t, s)
	c.send(&pgproto3.StartupMessage{ProtocolVersion: 3<<16 | 2, Parameters: map[string]string{
		"user": appUser, "database": appDB, "_pq_.test_option": "on"}})
	m, err := c.receive(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	nv, ok := m.(*pgproto3.NegotiateProtocolVersion)
	if !ok {
		t.Fatalf("first reply %T, want NegotiateProtocolVersion", m)
	}
	if nv.NewestMinorProtocol != 3<<16 || len(nv.UnrecognizedOptions) != 1 || nv.UnrecognizedOptions[0] != "_pq_.test_option" {
		t.Fatalf("NegotiateProtocolVersion %+v, want version 3.0 and the one option", nv)
	}
	for {
		m, err := c.receive(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		switch m := m.(type) {
		case *pgproto3.AuthenticationMD5Password:
			c.send(&pgproto3.PasswordMessage{Password: md5Password(appUser, appPass, m.Salt)})
		case *pgproto3.ErrorResponse:
			t.Fatalf("login failed: %s %s", m.Code, m.Message)
		case *pgproto3.ReadyForQuery:
			c.send(&pgproto3.Query{String: "SELECT 1"})
			for {
				m, err := c.receive(10 * time.Second)
				if err != nil {
					t.Fatal(err)
				}
				switch m := m.(type) {
				case *pgproto3.ErrorResponse:
					t.Fatalf("query failed: %s %s", m.Code, m.Message)
				case *pgproto3.ReadyForQuery:
					return
				}
			}
		}
	}
}

package e2e

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicepg/sluice/internal/pgtest"
)

// startMirrorPostgres starts a second Postgres to be a mirror of pg, with the app user and
// database and the table mirror_t, empty but for a row only it has. pg gets mirror_t afresh too,
// with a row only it has.
func startMirrorPostgres(t *testing.T) *pgtest.Postgres {
	t.Helper()
	ctx := context.Background()
	m, err := pgtest.StartPostgres(pgtest.Options{Name: "mirror-" + t.Name(), Auth: "md5"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Stop() })
	if err := m.CreateUser(ctx, appUser, appPass); err != nil {
		t.Fatal(err)
	}
	if err := m.CreateDatabase(ctx, appDB, appUser); err != nil {
		t.Fatal(err)
	}
	ddl := "DROP TABLE IF EXISTS mirror_t; CREATE TABLE mirror_t (id int PRIMARY KEY, v text); ALTER TABLE mirror_t OWNER TO " + appUser
	if err := m.Exec(ctx, appDB, ddl+"; INSERT INTO mirror_t VALUES (-1, 'mirror only')"); err != nil {
		t.Fatal(err)
	}
	if err := pg.Exec(ctx, appDB, ddl+"; INSERT INTO mirror_t VALUES (0, 'primary only')"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Exec(context.Background(), appDB, "DROP TABLE IF EXISTS mirror_t") })
	return m
}

// mirroredPool is a pool on pg whose primary (server 0) is mirrored to each of addrs.
func mirroredPool(metricsPort int, addrs ...string) poolConfig {
	var ms []string
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		ms = append(ms, fmt.Sprintf("[%q, %s, 0]", host, port))
	}
	return poolConfig{
		General: fmt.Sprintf("enable_prometheus_exporter = true\nprometheus_exporter_port = %d", metricsPort),
		Shards: fmt.Sprintf("[pools.app.shards.0]\ndatabase = %q\nservers = [[\"127.0.0.1\", %d, \"primary\"]]\nmirrors = [%s]\n",
			appDB, pg.Port, strings.Join(ms, ", ")),
	}
}

// mirrorRows returns mirror_t's rows on p with id >= from, as "id=v" in id order.
func mirrorRows(t *testing.T, p *pgtest.Postgres, from int) ([]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.URL(appDB, pgtest.SuperUser, pgtest.SuperPassword))
	if err != nil {
		return nil, err
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, "SELECT id, v FROM mirror_t WHERE id >= $1 ORDER BY id", from)
	if err != nil {
		return nil, err
	}
	var out []string
	for rows.Next() {
		var id int
		var v string
		if err := rows.Scan(&id, &v); err != nil {
			return nil, err
		}
		out = append(out, fmt.Sprintf("%d=%s", id, v))
	}
	return out, rows.Err()
}

// metricSum adds up the samples of a metric in a Prometheus scrape.
func metricSum(body, name string) float64 {
	var sum float64
	re := regexp.MustCompile(`(?m)^` + name + `\{[^}]*\} (\S+)$`)
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		sum += v
	}
	return sum
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMirrorGetsWritesOfEveryProtocol: writes through sluice in the simple protocol, with a
// prepared statement and by COPY reach the mirror too; reads answer the primary's data.
func TestMirrorGetsWritesOfEveryProtocol(t *testing.T) {
	m := startMirrorPostgres(t)
	mport := freePort(t)
	s := startSluice(t, mirroredPool(mport, fmt.Sprintf("127.0.0.1:%d", m.Port)))
	ctx := context.Background()
	c := connect(t, s)

	if _, err := c.Exec(ctx, "INSERT INTO mirror_t VALUES (1, 'simple')", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Prepare(ctx, "ins", "INSERT INTO mirror_t VALUES ($1, $2)"); err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= 11; i++ {
		if _, err := c.Exec(ctx, "ins", i, "prepared"); err != nil {
			t.Fatal(err)
		}
	}
	var copied [][]any
	for i := 100; i < 600; i++ {
		copied = append(copied, []any{i, "copied " + strings.Repeat("x", i%50)})
	}
	if n, err := c.CopyFrom(ctx, pgx.Identifier{"mirror_t"}, []string{"id", "v"}, pgx.CopyFromRows(copied)); err != nil || n != int64(len(copied)) {
		t.Fatalf("COPY: %d rows, %v", n, err)
	}
	// Reads go to the primary, not the mirror.
	var v string
	if err := c.QueryRow(ctx, "SELECT v FROM mirror_t WHERE id = 0").Scan(&v); err != nil || v != "primary only" {
		t.Errorf("read of the primary's row: %q, %v", v, err)
	}
	if err := c.QueryRow(ctx, "SELECT v FROM mirror_t WHERE id = -1").Scan(&v); err != pgx.ErrNoRows {
		t.Errorf("read of the mirror's row through sluice: %q, %v; want no row", v, err)
	}

	want, err := mirrorRows(t, pg, 1)
	if err != nil || len(want) != 1+10+len(copied) {
		t.Fatalf("primary: %d rows, %v", len(want), err)
	}
	checkFor(t, 15*time.Second, func() error {
		got, err := mirrorRows(t, m, 1)
		if err != nil {
			return err
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			return fmt.Errorf("the mirror has %d rows, the primary %d", len(got), len(want))
		}
		return nil
	})
	if got, _ := mirrorRows(t, m, -1); len(got) == 0 || got[0] != "-1=mirror only" {
		t.Errorf("the mirror's own row: %v", got)
	}

	body := scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", mport))
	if n := metricSum(body, "sluice_mirror_messages_total"); n < 20 {
		t.Errorf("sluice_mirror_messages_total = %v", n)
	}
	if n := metricSum(body, "sluice_mirror_dropped_messages_total"); n != 0 {
		t.Errorf("sluice_mirror_dropped_messages_total = %v", n)
	}
	if !strings.Contains(body, fmt.Sprintf(`mirror="127.0.0.1:%d"`, m.Port)) {
		t.Errorf("no mirror label in the scrape")
	}
}

// timedQueries runs n statements through c (simple and extended, reads and writes from id on)
// and fails the test when one fails or takes longer than limit.
func timedQueries(t *testing.T, c *pgx.Conn, id, n int, limit time.Duration) {
	t.Helper()
	ctx := context.Background()
	var worst time.Duration
	for i := range n {
		start := time.Now()
		var err error
		switch i % 3 {
		case 0:
			_, err = c.Exec(ctx, fmt.Sprintf("INSERT INTO mirror_t VALUES (%d, 'simple')", id+i), pgx.QueryExecModeSimpleProtocol)
		case 1:
			_, err = c.Exec(ctx, "INSERT INTO mirror_t VALUES ($1, 'extended')", id+i)
		default:
			var one int
			err = c.QueryRow(ctx, "SELECT 1").Scan(&one)
		}
		if err != nil {
			t.Fatalf("statement %d: %v", i, err)
		}
		worst = max(worst, time.Since(start))
	}
	if worst > limit {
		t.Errorf("the slowest of %d statements took %v (limit %v)", n, worst, limit)
	}
}

// TestMirrorDownNeverFailsClients: with the mirror stopped, clients' statements (on servers
// opened before and after it stopped) succeed promptly; once it is back it gets writes again.
func TestMirrorDownNeverFailsClients(t *testing.T) {
	m := startMirrorPostgres(t)
	mport := freePort(t)
	s := startSluice(t, mirroredPool(mport, fmt.Sprintf("127.0.0.1:%d", m.Port)))
	c := connect(t, s)
	timedQueries(t, c, 1000, 3, time.Second)
	checkFor(t, 15*time.Second, func() error {
		got, err := mirrorRows(t, m, 1000)
		if err != nil || len(got) != 2 {
			return fmt.Errorf("the mirror has %v, %v", got, err)
		}
		return nil
	})

	if err := m.StopServer(); err != nil {
		t.Fatal(err)
	}
	timedQueries(t, c, 2000, 150, 500*time.Millisecond)
	// New clients on new server connections, whose mirror connections fail at once.
	var wg sync.WaitGroup
	for k := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := connect(t, s)
			tx, err := c.Begin(context.Background()) // hold a server so that each gets its own
			if err != nil {
				t.Error(err)
				return
			}
			defer tx.Rollback(context.Background())
			if _, err := tx.Exec(context.Background(), "INSERT INTO mirror_t VALUES ($1, 'new server')", 3000+k); err != nil {
				t.Error(err)
			}
			tx.Commit(context.Background())
		}()
	}
	wg.Wait()

	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	// The mirror is used again once sluice has logged in to it again (with backoff, up to 10
	// s); what was sent meanwhile is lost to it.
	id := 5000
	checkFor(t, 30*time.Second, func() error {
		id++
		if _, err := c.Exec(context.Background(), "INSERT INTO mirror_t VALUES ($1, 'after')", id); err != nil {
			t.Fatal(err)
		}
		got, err := mirrorRows(t, m, 5000)
		if err != nil || len(got) == 0 {
			return fmt.Errorf("nothing new on the mirror yet (%v)", err)
		}
		return nil
	})
	body := scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", mport))
	if n := metricSum(body, "sluice_mirror_dropped_messages_total"); n == 0 {
		t.Errorf("nothing counted as dropped while the mirror was down")
	}
	if n := metricSum(body, "sluice_mirror_connect_errors_total"); n == 0 {
		t.Errorf("no mirror connection errors counted")
	}
}

// freezeProxy forwards TCP connections to target until frozen; then it reads nothing more from
// sluice and answers nothing, as a network that drops every packet.
type freezeProxy struct {
	ln     net.Listener
	mu     sync.Mutex
	frozen chan struct{} // closed while frozen
	thaw   chan struct{}
}

func startFreezeProxy(t *testing.T, target string) *freezeProxy {
	t.Helper()
	p := &freezeProxy{thaw: make(chan struct{})}
	close(p.thaw)
	p.ln = listenProxy(t, func(in net.Conn) { p.handle(in, target) })
	return p
}

func (p *freezeProxy) gate() chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.thaw
}

func (p *freezeProxy) freeze() {
	p.mu.Lock()
	p.thaw = make(chan struct{})
	p.mu.Unlock()
}

func (p *freezeProxy) unfreeze() {
	p.mu.Lock()
	close(p.thaw)
	p.mu.Unlock()
}

func (p *freezeProxy) handle(in net.Conn, target string) {
	defer in.Close()
	<-p.gate() // a frozen proxy does not even log in
	out, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer out.Close()
	pump := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			<-p.gate()
			n, err := src.Read(buf)
			if n > 0 {
				<-p.gate()
				if _, err := dst.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go pump(in, out)
	pump(out, in)
}

// TestMirrorBlackholedNeverSlowsClients: a mirror that stops taking anything (mid-session, and
// at login) costs clients nothing, even a COPY of megabytes; the drops are counted; once it takes
// data again it gets writes again.
func TestMirrorBlackholedNeverSlowsClients(t *testing.T) {
	m := startMirrorPostgres(t)
	proxy := startFreezeProxy(t, fmt.Sprintf("127.0.0.1:%d", m.Port))
	mport := freePort(t)
	s := startSluice(t, mirroredPool(mport, proxy.ln.Addr().String()))
	ctx := context.Background()
	c := connect(t, s)
	timedQueries(t, c, 1000, 3, time.Second)
	checkFor(t, 15*time.Second, func() error {
		if got, err := mirrorRows(t, m, 1000); err != nil || len(got) != 2 {
			return fmt.Errorf("the mirror has %v, %v", got, err)
		}
		return nil
	})

	proxy.freeze()
	var rows [][]any
	for i := 10000; i < 60000; i++ {
		rows = append(rows, []any{i, strings.Repeat("y", 200)}) // about 10 MB
	}
	start := time.Now()
	if _, err := c.CopyFrom(ctx, pgx.Identifier{"mirror_t"}, []string{"id", "v"}, pgx.CopyFromRows(rows)); err != nil {
		t.Fatal(err)
	}
	copyTime := time.Since(start)
	timedQueries(t, c, 2000, 60, 500*time.Millisecond)
	// A new server connection, whose mirror login hangs.
	c2 := connect(t, s)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	timedQueries(t, c2, 3000, 30, 500*time.Millisecond)
	tx.Rollback(ctx)
	t.Logf("COPY of %d rows with the mirror blackholed: %v", len(rows), copyTime)
	if copyTime > 15*time.Second {
		t.Errorf("COPY took %v with the mirror blackholed", copyTime)
	}
	body := scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", mport))
	if n := metricSum(body, "sluice_mirror_dropped_bytes_total"); n == 0 {
		t.Errorf("nothing counted as dropped with the mirror blackholed")
	}

	proxy.unfreeze()
	id := 90000
	checkFor(t, 40*time.Second, func() error {
		id++
		if _, err := c.Exec(ctx, "INSERT INTO mirror_t VALUES ($1, 'after')", id); err != nil {
			t.Fatal(err)
		}
		got, err := mirrorRows(t, m, 90000)
		if err != nil || len(got) == 0 {
			return fmt.Errorf("nothing new on the mirror yet (%v)", err)
		}
		return nil
	})
}

package cache

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/sluicepg/sluice/internal/pgtest"
)

// TestLoadAfterTruncateUnderSnapshot: a TRUNCATE that commits after the slot is made and before
// its snapshot is read is not MVCC-safe: read then, the snapshot sees an empty table, not its
// rows at the slot's consistent point, which the stream's first transactions update. The load
// must notice and read a new snapshot, so that Redis holds the table as of the marker.
func TestLoadAfterTruncateUnderSnapshot(t *testing.T) {
	ctx := context.Background()
	pg, err := pgtest.StartPostgres(pgtest.Options{Name: "mirrorload", Conf: map[string]string{"wal_level": "logical"}})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Stop()
	rs, err := pgtest.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Stop()
	if err := pg.Exec(ctx, "postgres", `CREATE TABLE m_t (id int PRIMARY KEY, v text);
		INSERT INTO m_t SELECT g, 'old' FROM generate_series(1, 10) g`); err != nil {
		t.Fatal(err)
	}
	p := &Cache{Prefix: "t:", Redis: []string{rs.Addr}, WALDSN: pg.DSN("postgres", pgtest.SuperUser, pgtest.SuperPassword),
		MirrorSlot: "t_mirror", MirrorPublication: "t_mirror", Mirror: map[string]Mirror{"m_t": {}},
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	specs, digest, err := p.mirrorSpecs()
	if err != nil {
		t.Fatal(err)
	}
	m := newMirror(p, specs, digest)
	defer func() {
		if m.redis != nil {
			m.redis.close()
		}
	}()
	truncated := false
	m.slotMade = func() {
		if truncated {
			return
		}
		truncated = true
		if err := pg.Exec(ctx, "postgres", `BEGIN; TRUNCATE m_t; INSERT INTO m_t SELECT g, 'new' FROM generate_series(100, 104) g; COMMIT`); err != nil {
			t.Error(err)
		}
	}

	r, err := m.client()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := m.connect(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	f, err := readFacts(ctx, conn, "m_t")
	if err != nil {
		t.Fatal(err)
	}
	table, err := planTable(specs[0], f)
	if err != nil {
		t.Fatal(err)
	}
	tables := []*mirrorTable{table}
	if _, err := m.ensurePublication(ctx, conn, tables); err != nil {
		t.Fatal(err)
	}
	mk, err := m.load(ctx, conn, r, tables, false)
	if err != nil {
		t.Fatal(err)
	}
	if !truncated {
		t.Fatal("the TRUNCATE did not run")
	}
	if mk["state"] != "ready" {
		t.Fatalf("marker %v: want state ready", mk)
	}
	// No writes follow the TRUNCATE's: Redis must hold the table as it is now.
	keys, err := r.scan(ctx, "t:m_t:")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	want := []string{"t:m_t:100", "t:m_t:101", "t:m_t:102", "t:m_t:103", "t:m_t:104"}
	if !slices.Equal(keys, want) {
		t.Fatalf("Redis holds %s; want %s", strings.Join(keys, " "), strings.Join(want, " "))
	}
	v, err := r.client.Do(ctx, r.client.B().Hget().Key("t:m_t:100").Field("v").Build()).ToString()
	if err != nil || v != "new" {
		t.Fatalf("t:m_t:100 v = %q (%v); want new", v, err)
	}
}

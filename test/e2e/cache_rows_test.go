package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// rowReader reads point reads through sluice and tells hits from misses with SHOW CACHE's
// counters: one read at a time, so a change of the counters is that read's.
type rowReader struct {
	t           *testing.T
	conn, ext   *pgx.Conn // simple protocol (values in the text); extended (parameters)
	adm, direct *pgx.Conn
}

const rowsQuery = "SELECT id, v FROM cache_rows WHERE id = %d"

// read reads key k (through the extended protocol when ext), checks the result against
// Postgres, and reports whether it was a hit.
func (r *rowReader) read(k int, ext bool) bool {
	r.t.Helper()
	ctx := context.Background()
	before := showInt(r.t, cacheShow(r.t, r.adm), "hits/")
	var got string
	var err error
	if ext {
		var id, v int64
		switch err = r.ext.QueryRow(ctx, "SELECT id, v FROM cache_rows WHERE id = $1", k).Scan(&id, &v); {
		case err == pgx.ErrNoRows:
			got, err = "", nil
		case err == nil:
			got = fmt.Sprintln(int32(id), int32(v))
		}
	} else {
		got, err = rowsText(ctx, r.conn, fmt.Sprintf(rowsQuery, k))
	}
	if err != nil {
		r.t.Fatalf("read key %d: %v", k, err)
	}
	want, err := rowsText(ctx, r.direct, fmt.Sprintf(rowsQuery, k))
	if err != nil {
		r.t.Fatal(err)
	}
	if got != want {
		r.t.Fatalf("key %d: stale result through sluice %q, Postgres says %q", k, got, want)
	}
	return showInt(r.t, cacheShow(r.t, r.adm), "hits/") > before
}

// warm reads keys until each read is a hit.
func (r *rowReader) warm(ext bool, keys ...int) {
	r.t.Helper()
	for _, k := range keys {
		checkFor(r.t, 10*time.Second, func() error {
			if !r.read(k, ext) {
				return fmt.Errorf("key %d is not cached yet", k)
			}
			return nil
		})
	}
}

// hit checks that reading k is a hit (want) or a miss.
func (r *rowReader) hit(k int, ext, want bool, when string) {
	r.t.Helper()
	if got := r.read(k, ext); got != want {
		r.t.Errorf("%s: reading key %d was a hit: %v, want %v", when, k, got, want)
	}
}

// TestCacheRowInvalidation: a write through sluice pinned to primary keys (UPDATE, DELETE and
// INSERT by key, in the simple and the extended protocol, alone or in a transaction) puts only
// the point reads of its keys out of reach; a write to other rows or any other read of the
// table (a range) puts every point read out of reach; a write that bypasses sluice, seen in the
// WAL, does so for its keys only.
func TestCacheRowInvalidation(t *testing.T) {
	s, direct := startCachedSluice(t)
	ctx := context.Background()
	if _, err := direct.Exec(ctx, `CREATE TABLE cache_rows (id int PRIMARY KEY, v int);
		ALTER TABLE cache_rows OWNER TO app;
		INSERT INTO cache_rows SELECT g, g FROM generate_series(1, 100) g;
		CREATE TABLE cache_rows_uuid (id uuid PRIMARY KEY, v int); ALTER TABLE cache_rows_uuid OWNER TO app;
		INSERT INTO cache_rows_uuid VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 1), ('b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 2);
		CREATE TABLE cache_rows_text (id varchar(20) PRIMARY KEY, v int); ALTER TABLE cache_rows_text OWNER TO app;
		INSERT INTO cache_rows_text VALUES ('Ab c', 1), ('ab c', 2);
		CREATE TABLE cache_rows_big (id bigint PRIMARY KEY, v int); ALTER TABLE cache_rows_big OWNER TO app;
		INSERT INTO cache_rows_big VALUES (-9000000000, 1), (9000000000, 2)`); err != nil {
		t.Fatal(err)
	}
	conn, writer, ext := simpleConn(t, s), simpleConn(t, s), connect(t, s)
	r := &rowReader{t: t, conn: conn, ext: ext, adm: connectAdmin(t, s, "pgcat"), direct: direct}
	walBarrier(t, conn, direct) // the listener streams, and has seen the INSERT
	exec := func(c *pgx.Conn, sql string, args ...any) {
		r.t.Helper()
		if _, err := c.Exec(ctx, sql, args...); err != nil {
			r.t.Fatalf("%s: %v", sql, err)
		}
	}
	all := make([]int, 100)
	for i := range all {
		all[i] = i + 1
	}
	r.warm(false, all...)

	t.Run("update by key", func(t *testing.T) {
		r.t = t
		exec(writer, "UPDATE cache_rows SET v = v + 1000 WHERE id = 5")
		r.hit(5, false, false, "after UPDATE of key 5") // and the new value: read checks it
		r.hit(6, false, true, "after UPDATE of key 5")
		r.warm(false, 5)
		walBarrier(t, conn, direct) // the listener's bump of the UPDATE, pinned too
		r.hit(6, false, true, "after the WAL's UPDATE of key 5")
		r.warm(false, 5)
	})

	t.Run("unpinned write", func(t *testing.T) {
		r.t = t
		exec(writer, "UPDATE cache_rows SET v = v + 1 WHERE v > 90")
		for _, k := range []int{5, 6, 7, 50} {
			r.hit(k, false, false, "after an UPDATE of a range")
		}
		// The writer's next query bumps its last write once more (sluice cannot tell when an
		// autocommit write committed): let it, and the listener's bump of it, pass.
		exec(writer, "SELECT 1")
		walBarrier(t, conn, direct)
		r.warm(false, all...)
	})

	t.Run("insert of an absent key", func(t *testing.T) {
		r.t = t
		r.warm(false, 1000, 1001)
		exec(writer, "INSERT INTO cache_rows (id, v) VALUES (1000, 1)")
		r.hit(1000, false, false, "after INSERT of key 1000") // read checks it has the row
		r.hit(1001, false, true, "after INSERT of key 1000")
		r.hit(8, false, true, "after INSERT of key 1000")
		exec(writer, "DELETE FROM cache_rows WHERE id IN (1000, 1001)")
		r.hit(1000, false, false, "after DELETE of key 1000")
		r.hit(1001, false, false, "after DELETE of key 1001")
		r.hit(8, false, true, "after DELETE of key 1000")
	})

	t.Run("write that bypasses sluice", func(t *testing.T) {
		r.t = t
		r.warm(false, 7, 8)
		exec(direct, "UPDATE cache_rows SET v = v + 1000 WHERE id = 7")
		want, _ := rowsText(ctx, direct, fmt.Sprintf(rowsQuery, 7))
		start := time.Now()
		checkFor(t, time.Second, func() error {
			if got, err := rowsText(ctx, conn, fmt.Sprintf(rowsQuery, 7)); err != nil || got != want {
				return fmt.Errorf("key 7 through sluice: %q %v, want %q", got, err, want)
			}
			return nil
		})
		t.Logf("a direct UPDATE of key 7 seen through sluice after %s", time.Since(start).Round(time.Millisecond))
		r.hit(8, false, true, "after a direct UPDATE of key 7")
	})

	t.Run("transactions", func(t *testing.T) {
		r.t = t
		r.warm(false, 10, 11, 12, 13)
		tx, err := writer.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		exec(tx.Conn(), "UPDATE cache_rows SET v = -1 WHERE id = 10")
		r.hit(10, false, true, "during a transaction that updates key 10") // the old value
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		r.read(10, false) // a rollback may bump its keys; the value is the old one
		r.hit(11, false, true, "after a rolled-back UPDATE of key 10")
		r.warm(false, 10)

		tx, err = writer.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		exec(tx.Conn(), "UPDATE cache_rows SET v = v + 1000 WHERE id = 10")
		exec(tx.Conn(), "UPDATE cache_rows SET v = v + 1000 WHERE id IN (12, 13)")
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		for _, k := range []int{10, 12, 13} {
			r.hit(k, false, false, "after a committed transaction that updated it")
		}
		r.hit(11, false, true, "after a committed transaction that updated 10, 12 and 13")
	})

	t.Run("key types", func(t *testing.T) {
		r.t = t
		keyTypes(t, r)
	})

	t.Run("extended protocol", func(t *testing.T) {
		r.t = t
		r.warm(true, 20, 21)
		exec(ext, "UPDATE cache_rows SET v = v + 1000 WHERE id = $1", 20)
		r.hit(20, true, false, "after an extended-protocol UPDATE of key 20")
		r.hit(21, true, true, "after an extended-protocol UPDATE of key 20")
		r.warm(false, 22)
		exec(ext, "DELETE FROM cache_rows WHERE id = $1", 22)
		r.hit(22, false, false, "after an extended-protocol DELETE of key 22")
		r.hit(21, true, true, "after an extended-protocol DELETE of key 22")
	})
}

// keyTypes checks, for each type of key, that a write that bypasses sluice, as the WAL shows it
// (pgoutput's text form), puts out of reach the point reads of its key written in another form
// Postgres accepts, and only those.
func keyTypes(t *testing.T, r *rowReader) {
	ctx := context.Background()
	for _, tc := range []struct {
		table             string
		read, other, updt string // the key as the read writes it, the other key, the key as the direct UPDATE does
	}{
		{"cache_rows_uuid", "'{A0EEBC99-9C0B4EF8-BB6D6BB9-BD380A11}'", "'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"},
		{"cache_rows_text", "'Ab c'", "'ab c'", "'Ab c'"},
		{"cache_rows_big", "' -009000000000 '", "9000000000", "-9000000000"},
	} {
		read := fmt.Sprintf("SELECT id, v FROM %s WHERE id = %s", tc.table, tc.read)
		other := fmt.Sprintf("SELECT id, v FROM %s WHERE id = %s", tc.table, tc.other)
		hit := func(q string) bool {
			t.Helper()
			before := showInt(t, cacheShow(t, r.adm), "hits/")
			got, err := rowsText(ctx, r.conn, q)
			if err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			if want, _ := rowsText(ctx, r.direct, q); got != want {
				t.Fatalf("%s: stale result through sluice %q, Postgres says %q", q, got, want)
			}
			return showInt(t, cacheShow(t, r.adm), "hits/") > before
		}
		for _, q := range []string{read, other} {
			checkFor(t, 10*time.Second, func() error {
				if !hit(q) {
					return fmt.Errorf("%s is not cached yet", q)
				}
				return nil
			})
		}
		if _, err := r.direct.Exec(ctx, fmt.Sprintf("UPDATE %s SET v = v + 1000 WHERE id = %s", tc.table, tc.updt)); err != nil {
			t.Fatal(err)
		}
		want, _ := rowsText(ctx, r.direct, read)
		checkFor(t, time.Second, func() error {
			if got, err := rowsText(ctx, r.conn, read); err != nil || got != want {
				return fmt.Errorf("%s through sluice: %q %v, want %q", read, got, err, want)
			}
			return nil
		})
		if !hit(other) {
			t.Errorf("%s: a direct UPDATE of key %s put the point read of %s out of reach", tc.table, tc.updt, tc.other)
		}
	}
}

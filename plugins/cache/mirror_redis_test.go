package cache

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/sluicepg/sluice/internal/pgtest"
)

// TestApplyScript: the script writes hashes (whole or in place), strings and unlinks, moves the
// marker, answers a batch already applied without applying it again, and refuses a marker of
// another sync or position.
func TestApplyScript(t *testing.T) {
	rs, err := pgtest.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Stop()
	r, err := newMirrorRedis([]string{rs.Addr}, "t:mirror:s")
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	ctx := context.Background()
	if err := r.startLoading(ctx, "sync1"); err != nil {
		t.Fatal(err)
	}
	c := r.client
	hash := func(key string) map[string]string {
		t.Helper()
		m, err := c.Do(ctx, c.B().Hgetall().Key(key).Build()).AsStrMap()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	// Loading: the position stays "-".
	if err := r.apply(ctx, "sync1", "-", "-", nil, []string{
		"H", "t:a:1", "1", "3", "id", "1", "title", "x", "body", "B", "0",
		"S", "t:j:1", `{"id":"1"}`,
		"H", "t:a:2", "1", "1", "id", "2", "0",
	}); err != nil {
		t.Fatal(err)
	}
	if err := r.apply(ctx, "sync1", "-", "0/10", map[string]string{"state": "ready"}, nil); err != nil {
		t.Fatal(err)
	}
	if mk, _ := r.readMarker(ctx); mk["lsn"] != "0/10" || mk["state"] != "ready" || mk["sync"] != "sync1" {
		t.Fatalf("marker %v", mk)
	}
	// In place: title changes, body stays, a NULL field goes.
	ops := []string{"H", "t:a:1", "0", "1", "id", "1", "1", "title", "U", "1", "t:a:2"}
	if err := r.apply(ctx, "sync1", "0/10", "0/20", nil, ops); err != nil {
		t.Fatal(err)
	}
	if got := hash("t:a:1"); len(got) != 2 || got["body"] != "B" || got["id"] != "1" {
		t.Errorf("after an in-place write: %v", got)
	}
	if n, _ := c.Do(ctx, c.B().Exists().Key("t:a:2").Build()).AsInt64(); n != 0 {
		t.Errorf("t:a:2 not unlinked")
	}
	// The same batch again (its reply was lost): done, not applied twice.
	if err := c.Do(ctx, c.B().Hset().Key("t:a:1").FieldValue().FieldValue("title", "later").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := r.apply(ctx, "sync1", "0/10", "0/20", nil, []string{"H", "t:a:1", "1", "1", "id", "1", "0"}); err != nil {
		t.Fatalf("replay: %v", err)
	}
	if got := hash("t:a:1"); got["title"] != "later" {
		t.Errorf("a batch already applied ran again: %v", got)
	}
	// Another sync, another position, no marker: the mirror is lost.
	for _, c := range []struct{ sync, from string }{{"sync2", "0/20"}, {"sync1", "0/15"}} {
		if err := r.apply(ctx, c.sync, c.from, "0/30", nil, nil); !errors.Is(err, errMirrorLost) {
			t.Errorf("apply from %s %s: %v; want errMirrorLost", c.sync, c.from, err)
		}
	}
	if err := c.Do(ctx, c.B().Flushall().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := r.apply(ctx, "sync1", "0/20", "0/30", nil, []string{"U", "1", "t:x"}); !errors.Is(err, errMirrorLost) {
		t.Errorf("after FLUSHALL: %v; want errMirrorLost", err)
	}
}

// TestCommitSaysLostOrInconsistent: a transaction that needs a row Redis lacks fails as an
// inconsistency while the marker is intact, and as a lost mirror when the marker is gone (a
// Redis that restarted empty), so that only a real inconsistency is reported as one.
func TestCommitSaysLostOrInconsistent(t *testing.T) {
	rs, err := pgtest.StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Stop()
	r, err := newMirrorRedis([]string{rs.Addr}, "t:mirror:s")
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	ctx := context.Background()
	m := &mirror{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	m.stats.tables = map[string]*mirrorTableStats{}
	for _, c := range []struct {
		name   string
		marker bool
		want   error
	}{
		{"marker intact", true, errMirrorInconsistent},
		{"marker gone", false, errMirrorLost},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := r.startLoading(ctx, "sync1"); err != nil {
				t.Fatal(err)
			}
			if err := r.apply(ctx, "sync1", "-", "0/10", map[string]string{"state": "ready"}, nil); err != nil {
				t.Fatal(err)
			}
			if !c.marker {
				if err := r.client.Do(ctx, r.client.B().Del().Key("t:mirror:s").Build()).Error(); err != nil {
					t.Fatal(err)
				}
			}
			s := &streamer{m: m, r: r, sync: "sync1", applied: 0x10}
			table := docsTable(false)
			tx := newTxnBuf()
			// A key change of a row whose TOASTed body is unchanged: the body is read from the
			// old key, which Redis lacks.
			if err := updKey('K', []string{"1", "<n>", "<n>"}, "2", "b", "<u>")(tx, table); err != nil {
				t.Fatal(err)
			}
			err := s.commit(ctx, tx, &pglogrepl.CommitMessage{TransactionEndLSN: 0x20})
			if !errors.Is(err, c.want) {
				t.Fatalf("commit: %v; want %v", err, c.want)
			}
		})
	}
}

package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/sluicepg/sluice/plugin"
)

// recorder is a compiled-in plugin for the tests: it records what its hooks saw and acts on
// marker words in the query text.
type recorder struct {
	Tag string `toml:"tag"`

	mu     sync.Mutex
	events []string
}

var recorders sync.Map // tag -> *recorder

func init() {
	plugin.Register(plugin.Info{Name: "e2e_recorder", New: func() plugin.Plugin { return new(recorder) }})
}

func (r *recorder) Provision(ctx plugin.Context) error {
	recorders.Store(r.Tag, r)
	return nil
}

func (r *recorder) record(ev string) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

func (r *recorder) OnQuery(ctx context.Context, q *plugin.Query) (plugin.Action, error) {
	r.record(q.Protocol.String() + ":" + q.Text)
	switch {
	case strings.Contains(q.Text, "forbidden_word"):
		return plugin.RejectQuery("42501", "the recorder refuses forbidden_word"), nil
	case strings.Contains(q.Text, "panic_now"):
		panic("the recorder was told to panic")
	case strings.Contains(q.Text, "sluice_answer"):
		v := "42"
		return plugin.AnswerQuery([]string{"answer"}, [][]*string{{&v}}, "SELECT 1"), nil
	case strings.Contains(q.Text, "old_name"):
		return plugin.RewriteQuery(strings.ReplaceAll(q.Text, "old_name", "'rewritten'")), nil
	}
	return plugin.ContinueQuery(), nil
}

func (r *recorder) OnTxEnd(ctx context.Context, c *plugin.Client, committed bool) {
	if committed {
		r.record("commit")
	} else {
		r.record("rollback")
	}
}

func (r *recorder) OnDisconnect(ctx context.Context, c *plugin.Client) {
	r.record("disconnect:" + c.User)
}

// TestGoPluginHooks: a compiled-in plugin's query hook rejects, answers, rewrites, and panics
// without harm, in both protocols and both pool modes.
func TestGoPluginHooks(t *testing.T) {
	for _, mode := range []string{"transaction", "session"} {
		for _, proto := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
			name := mode + "/" + map[pgx.QueryExecMode]string{pgx.QueryExecModeSimpleProtocol: "simple", pgx.QueryExecModeCacheStatement: "extended"}[proto]
			t.Run(name, func(t *testing.T) {
				tag := strings.ReplaceAll(t.Name(), "/", "_")
				s := startSluice(t, poolConfig{Mode: mode, General: "\n[plugins.e2e_recorder]\ntag = \"" + tag + "\"\n"})
				conn := connectConfig(t, s, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = proto })
				ctx := context.Background()
				if _, err := conn.Exec(ctx, "SELECT 'forbidden_word'"); sqlstateOf(err) != "42501" {
					t.Errorf("reject: %v; want 42501", err)
				}
				var got string
				if err := conn.QueryRow(ctx, "SELECT old_name::text").Scan(&got); err != nil || got != "rewritten" {
					t.Errorf("rewrite: %q, %v; want rewritten", got, err)
				}
				if _, err := conn.Exec(ctx, "SELECT 'panic_now'"); sqlstateOf(err) != "XX000" || !strings.Contains(err.Error(), "e2e_recorder") {
					t.Errorf("panic: %v; want XX000 naming the plugin", err)
				}
				var one int
				if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
					t.Errorf("after the panic: %d, %v", one, err)
				}
				if proto == pgx.QueryExecModeSimpleProtocol {
					if err := conn.QueryRow(ctx, "SELECT sluice_answer").Scan(&got); err != nil || got != "42" {
						t.Errorf("answer: %q, %v; want 42", got, err)
					}
				}
				tx, err := conn.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := tx.Commit(ctx); err != nil {
					t.Fatal(err)
				}
				conn.Close(ctx)
				v, _ := recorders.Load(tag)
				rec := v.(*recorder)
				checkFor(t, 5e9, func() error {
					ev := strings.Join(rec.seen(), "\n")
					for _, want := range []string{"forbidden_word", "old_name", "commit", "disconnect:app"} {
						if !strings.Contains(ev, want) {
							return &missing{want, ev}
						}
					}
					return nil
				})
			})
		}
	}
}

type missing struct{ want, got string }

func (m *missing) Error() string { return "hook events lack " + m.want + ":\n" + m.got }

// memo is a compiled-in plugin that stores the result of queries that mention memo_me and
// answers them from the store the next time: the shape of a cache.
type memo struct {
	mu    sync.Mutex
	store map[string][]byte
}

func init() {
	plugin.Register(plugin.Info{Name: "e2e_memo", New: func() plugin.Plugin { return &memo{store: map[string][]byte{}} }})
}

func (m *memo) OnQuery(ctx context.Context, q *plugin.Query) (plugin.Action, error) {
	if !strings.Contains(q.Text, "memo_me") || q.Protocol == plugin.Parse || q.InTransaction {
		return plugin.ContinueQuery(), nil
	}
	m.mu.Lock()
	w := m.store[q.Text]
	m.mu.Unlock()
	if w != nil {
		return plugin.AnswerWire(w), nil
	}
	return plugin.Action{Capture: q.Text}, nil
}

func (m *memo) OnResult(ctx context.Context, r *plugin.Result) {
	if key, ok := r.Capture.(string); ok && r.Wire != nil {
		m.mu.Lock()
		m.store[key] = r.Wire
		m.mu.Unlock()
	}
}

// TestPluginCaptureAndAnswer: a plugin captures a statement's result and answers the same query
// from it later, in both protocols and pool modes; inside a transaction the query runs.
func TestPluginCaptureAndAnswer(t *testing.T) {
	for _, mode := range []string{"transaction", "session"} {
		for _, proto := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeDescribeExec} {
			t.Run(fmt.Sprintf("%s/%v", mode, proto), func(t *testing.T) {
				s := startSluice(t, poolConfig{Mode: mode, General: "\n[plugins.e2e_memo]\n"})
				conn := connectConfig(t, s, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = proto })
				ctx := context.Background()
				const q = "SELECT random()::text AS r, 'memo_me' AS tag"
				read := func(c interface {
					QueryRow(context.Context, string, ...any) pgx.Row
				}) string {
					t.Helper()
					var r, tag string
					if err := c.QueryRow(ctx, q).Scan(&r, &tag); err != nil {
						t.Fatal(err)
					}
					return r
				}
				first := read(conn)
				if second := read(conn); second != first {
					t.Errorf("second run gave %s; want the stored %s", second, first)
				}
				tx, err := conn.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if in := read(tx); in == first {
					t.Errorf("inside a transaction the stored result %s came back; want the query to run", in)
				}
				tx.Rollback(ctx)
				var one int
				if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
					t.Errorf("after: %d, %v", one, err)
				}
			})
		}
	}
}

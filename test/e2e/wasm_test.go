package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// buildWasm builds the Go package pkg (from the repository root) as a wasip1 reactor into dir
// and returns the file. The Go build cache keeps rebuilds cheap.
func buildWasm(t testing.TB, dir, name, pkg string, flags ...string) string {
	t.Helper()
	out := filepath.Join(dir, name)
	args := append([]string{"build", "-buildmode=c-shared", "-o", out}, flags...)
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// wasmModules is a [plugins.wasm] block: examples/wasm-plugin renaming wasm_old_table to
// wasm_new_table, then the test guest (plugins/wasm/testdata/guest) twice: "tg" with a short
// deadline acting on words that begin with tg_, and "tgmem" with a long one acting on tgmem_, so
// that an allocation fails on the memory cap rather than on the deadline.
func wasmModules(example, guest string) string {
	return fmt.Sprintf(`
[plugins.wasm]
[[plugins.wasm.modules]]
path = %q
config = { rename = { wasm_old_table = "wasm_new_table" } }

[[plugins.wasm.modules]]
name = "tg"
path = %q
config = { prefix = "tg_" }
timeout = 300
instances = 2

[[plugins.wasm.modules]]
name = "tgmem"
path = %q
config = { prefix = "tgmem_" }
timeout = 30000
memory_limit_mib = 32
instances = 1
`, example, guest, guest)
}

func pgMessage(err error) string {
	if pe, ok := err.(*pgconn.PgError); ok {
		return pe.Message
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestWasmPlugin: examples/wasm-plugin, built from source and loaded from the configuration,
// refuses EXECUTE and renames its table in both protocols; a guest that loops forever or
// allocates without bound fails only that query, and the client's next query works.
func TestWasmPlugin(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	example := buildWasm(t, dir, "example.wasm", "./examples/wasm-plugin")
	guest := buildWasm(t, dir, "guest.wasm", "./plugins/wasm/testdata/guest")

	d := direct(t)
	if _, err := d.Exec(ctx, `DROP TABLE IF EXISTS wasm_new_table;
		CREATE TABLE wasm_new_table (id int, v text); INSERT INTO wasm_new_table VALUES (1, 'one');
		GRANT ALL ON wasm_new_table TO app`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = d.Exec(context.Background(), "DROP TABLE IF EXISTS wasm_new_table") })

	s := startSluice(t, poolConfig{General: wasmModules(example, guest)})
	for _, proto := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		t.Run(map[pgx.QueryExecMode]string{pgx.QueryExecModeSimpleProtocol: "simple", pgx.QueryExecModeCacheStatement: "extended"}[proto], func(t *testing.T) {
			conn := connectConfig(t, s, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = proto })
			other := connectConfig(t, s, func(c *pgx.ConnConfig) { c.DefaultQueryExecMode = proto })
			var v string
			if err := conn.QueryRow(ctx, "SELECT v FROM wasm_old_table WHERE id = $1", 1).Scan(&v); err != nil || v != "one" {
				t.Errorf("renamed table: %q, %v; want one", v, err)
			}
			_, err := conn.Exec(ctx, "EXECUTE some_statement")
			if codeOf(err) != "0A000" || !strings.Contains(pgMessage(err), "EXECUTE is not allowed") {
				t.Errorf("EXECUTE: %v; want 0A000 from the example", err)
			}
			for _, tc := range []struct{ query, code, msg string }{
				{"SELECT 'tg_loop'", "57014", `wasm module "tg": on_query did not finish within its timeout of 300ms`},
				{"SELECT 'tgmem_alloc'", "XX000", `wasm module "tgmem"`},
				{"SELECT 'tgmem_alloc'", "XX000", "out of memory"},
				{"SELECT 'tg_panic'", "XX000", `wasm module "tg": on_query failed: panic: the guest was told to panic`},
			} {
				_, err := conn.Exec(ctx, tc.query)
				if codeOf(err) != tc.code || !strings.Contains(pgMessage(err), tc.msg) {
					t.Errorf("%s: %v; want %s containing %q", tc.query, err, tc.code, tc.msg)
				}
				for name, c := range map[string]*pgx.Conn{"same client": conn, "other client": other} {
					var n int
					if err := c.QueryRow(ctx, "SELECT count(*) FROM wasm_old_table").Scan(&n); err != nil || n != 1 {
						t.Errorf("after %s, %s: %d, %v", tc.query, name, n, err)
					}
				}
			}
		})
	}
}

// TestWasmReloadOnSIGHUP: a changed .wasm file at the same path replaces the running module on
// SIGHUP, and a client connected before keeps its connection and its server.
func TestWasmReloadOnSIGHUP(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	example := buildWasm(t, dir, "example.wasm", "./examples/wasm-plugin")
	v2 := buildWasm(t, dir, "guest-v2.wasm", "./plugins/wasm/testdata/guest", "-ldflags=-X main.version=2")
	path := filepath.Join(dir, "plugin.wasm")
	install := func(src string) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	install(example)
	s := startSluiceProcess(t, poolConfig{Mode: "session", General: fmt.Sprintf(`
[plugins.wasm]
[[plugins.wasm.modules]]
name = "hot"
path = %q
`, path)})
	conn := connect(t, s)
	var pid int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "EXECUTE s"); codeOf(err) != "0A000" {
		t.Fatalf("before the reload, EXECUTE: %v; want the example's 0A000", err)
	}

	install(v2)
	s.Signal(t, syscall.SIGHUP)
	checkFor(t, 30*time.Second, func() error {
		var got string
		// The simple protocol: pgx would keep the first Parse of this text, before the reload.
		if err := conn.QueryRow(ctx, "SELECT 'guest_version'", pgx.QueryExecModeSimpleProtocol).Scan(&got); err != nil {
			return err
		}
		if got != "guest v2" {
			return fmt.Errorf("SELECT 'guest_version' gave %q; want the new module's rewrite to 'guest v2'; log:\n%s", got, s.Log)
		}
		return nil
	})
	// The new module lets EXECUTE through: Postgres answers it.
	if _, err := conn.Exec(ctx, "EXECUTE s"); codeOf(err) != "26000" {
		t.Errorf("after the reload, EXECUTE: %v; want Postgres' 26000", err)
	}
	var pid2 int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid2); err != nil || pid2 != pid {
		t.Errorf("the client's server changed across the reload: %d, then %d (%v)", pid, pid2, err)
	}
	if !strings.Contains(s.Log.String(), "configuration reloaded") {
		t.Errorf("no reload in the log:\n%s", s.Log)
	}
}

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// These tests drive sluice with psql (libpq), in transaction mode.

// runPsql runs psql against s with script on its standard input (when script is not empty) and
// args after the connection options; errors in a script name its line. psql does not read ~/.psqlrc (-X), does not stop at errors,
// prints rows unaligned without headers (-A -t), and reports errors by SQLSTATE only, so the
// output is the same on every Postgres build.
func runPsql(t *testing.T, s *Sluice, script string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := []string{"-X", "-A", "-t", "-v", "ON_ERROR_STOP=0", "-v", "VERBOSITY=sqlstate",
		"-h", "127.0.0.1", "-p", strconv.Itoa(s.Port), "-U", appUser, "-d", appDB}
	cmd := exec.CommandContext(ctx, tool(t, "psql"), append(base, args...)...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+appPass, "PGCONNECT_TIMEOUT=10", "PGOPTIONS=", "PGTZ=UTC")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if script != "" {
		cmd.Args = append(cmd.Args, "-f", "-") // "-f -": errors name the line, psql:<stdin>:N:
		cmd.Stdin = strings.NewReader(script)
	}
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// checkServerClean checks, from a new client, that the server (pool_size 1: the only one) is
// not left inside a transaction, open or aborted.
func checkServerClean(t *testing.T, s *Sluice) {
	t.Helper()
	c := connect(t, s)
	var clean bool
	if err := c.QueryRow(context.Background(), noLeftoverTx, pgx.QueryExecModeSimpleProtocol).Scan(&clean); err != nil {
		t.Fatalf("next client: %v", err)
	}
	if !clean {
		t.Errorf("the next client's statement ran inside a transaction left on the server")
	}
}

// TestPsqlMultiStatementQuery sends several statements in one Query message (psql -c). They
// run in order as one implicit transaction: an error stops the rest and undoes the earlier ones.
func TestPsqlMultiStatementQuery(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 1})
	dropTable(t, "psql_multi")
	if _, stderr, err := runPsql(t, s, "", "-c", "CREATE TABLE psql_multi (id int)"); err != nil {
		t.Fatalf("create table: %v\n%s", err, stderr)
	}
	for _, tc := range []struct {
		name, sql          string
		stdout, stderr     string
		exitCode, rowsLeft int
	}{
		{name: "two selects", sql: "SELECT 1; SELECT 2;", stdout: "1\n2\n"},
		{name: "insert then select",
			sql:    "INSERT INTO psql_multi VALUES (1), (2); SELECT count(*) FROM psql_multi;",
			stdout: "INSERT 0 2\n2\n", rowsLeft: 2},
		{name: "error stops the rest and rolls back the earlier statements",
			sql:    "INSERT INTO psql_multi VALUES (3); SELECT 1/0; INSERT INTO psql_multi VALUES (4);",
			stdout: "INSERT 0 1\n", stderr: "ERROR:  22012\n", exitCode: 1, rowsLeft: 2},
		{name: "explicit transaction inside the string",
			sql:    "BEGIN; INSERT INTO psql_multi VALUES (5); COMMIT; SELECT count(*) FROM psql_multi;",
			stdout: "BEGIN\nINSERT 0 1\nCOMMIT\n3\n", rowsLeft: 3},
		{name: "string ends inside a transaction: psql leaves, the server rolls back",
			sql:    "BEGIN; INSERT INTO psql_multi VALUES (6);",
			stdout: "BEGIN\nINSERT 0 1\n", rowsLeft: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, err := runPsql(t, s, "", "-c", tc.sql)
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if stdout != tc.stdout || stderr != tc.stderr || code != tc.exitCode {
				t.Errorf("psql -c %q:\nstdout %q, want %q\nstderr %q, want %q\nexit %d, want %d",
					tc.sql, stdout, tc.stdout, stderr, tc.stderr, code, tc.exitCode)
			}
			checkServerClean(t, s)
			var n int
			checkFor(t, 5*time.Second, func() error {
				if err := direct(t).QueryRow(context.Background(), "SELECT count(*) FROM psql_multi").Scan(&n); err != nil {
					return err
				}
				if n != tc.rowsLeft {
					return fmt.Errorf("psql_multi has %d rows, want %d", n, tc.rowsLeft)
				}
				return nil
			})
		})
	}
}

// TestPsqlErrorInsideTransaction runs a script in which a statement fails inside BEGIN: the
// client sees the error, the next statement is refused with 25P02 until ROLLBACK, ROLLBACK works,
// and the server is clean for the next client.
func TestPsqlErrorInsideTransaction(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 1})
	dropTable(t, "psql_tx")
	script := `CREATE TABLE psql_tx (id int);
BEGIN;
INSERT INTO psql_tx VALUES (1);
SELECT 1/0;
SELECT 'ignored';
ROLLBACK;
SELECT count(*) FROM psql_tx;
BEGIN;
INSERT INTO psql_tx VALUES (2);
SELECT 1/0;
COMMIT;
SELECT count(*) FROM psql_tx;
`
	stdout, stderr, err := runPsql(t, s, script)
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, stderr)
	}
	// COMMIT of an aborted transaction rolls back and says so.
	wantOut := "CREATE TABLE\nBEGIN\nINSERT 0 1\nROLLBACK\n0\nBEGIN\nINSERT 0 1\nROLLBACK\n0\n"
	wantErr := "psql:<stdin>:4: ERROR:  22012\npsql:<stdin>:5: ERROR:  25P02\npsql:<stdin>:10: ERROR:  22012\n"
	if stdout != wantOut {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout, wantOut)
	}
	if stderr != wantErr {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr, wantErr)
	}
	checkServerClean(t, s)

	// A client that leaves in the middle of a transaction: its work is rolled back and the
	// server is clean for the next client.
	if _, stderr, err := runPsql(t, s, "BEGIN;\nINSERT INTO psql_tx VALUES (3);\n"); err != nil {
		t.Fatalf("psql: %v\n%s", err, stderr)
	}
	checkServerClean(t, s)
	// And one that leaves inside an aborted transaction.
	if _, _, err := runPsql(t, s, "BEGIN;\nINSERT INTO psql_tx VALUES (4);\nSELECT 1/0;\n"); err != nil {
		t.Fatalf("psql: %v", err)
	}
	checkServerClean(t, s)
	var n int
	if err := direct(t).QueryRow(context.Background(), "SELECT count(*) FROM psql_tx").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("psql_tx has %d rows, want 0: every transaction was rolled back", n)
	}
}

// copyRow is one row of the \copy tests' table: an id, a text that may hold COPY's special
// characters, and a nullable integer.
type copyRow struct {
	id    int
	text  string
	maybe *int
}

func copyRows(n int) []copyRow {
	texts := []string{"plain", "", "tab\there", "new\nline", `back\slash`, `"quoted", with comma`, "ünïcödé ✓", "carriage\rreturn", " spaces "}
	rows := make([]copyRow, n)
	for i := range rows {
		rows[i] = copyRow{id: i, text: fmt.Sprintf("%s %d", texts[i%len(texts)], i)}
		if i%len(texts) == 1 {
			rows[i].text = "" // an empty string, which is not NULL
		}
		if i%4 != 0 {
			v := i * 7
			rows[i].maybe = &v
		}
	}
	return rows
}

// copyText writes rows in COPY's text format, as Postgres writes it.
func copyText(rows []copyRow) []byte {
	esc := strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`, "\r", `\r`)
	var b bytes.Buffer
	for _, r := range rows {
		fmt.Fprintf(&b, "%d\t%s\t", r.id, esc.Replace(r.text))
		if r.maybe == nil {
			b.WriteString(`\N`)
		} else {
			fmt.Fprint(&b, *r.maybe)
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// copyCSV writes rows in COPY's CSV format with a header, as Postgres writes it: a field is
// quoted when it is empty (NULL is the empty unquoted field) or holds a comma, quote or line
// break.
func copyCSV(rows []copyRow) []byte {
	var b bytes.Buffer
	b.WriteString("id,text,maybe\n")
	for _, r := range rows {
		t := r.text
		if t == "" || strings.ContainsAny(t, ",\"\n\r") {
			t = `"` + strings.ReplaceAll(t, `"`, `""`) + `"`
		}
		fmt.Fprintf(&b, "%d,%s,", r.id, t)
		if r.maybe != nil {
			fmt.Fprint(&b, *r.maybe)
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// TestPsqlCopyInAndOut loads a file with \copy FROM, checks the table, writes it back with
// \copy TO and compares the files byte for byte, in text and CSV formats. The file is larger
// than any buffer on the way, so the data streams through sluice.
func TestPsqlCopyInAndOut(t *testing.T) {
	const n = 30000
	s := startPooler(t, poolConfig{PoolSize: 1})
	rows := copyRows(n)
	for _, tc := range []struct {
		name, options string
		data          []byte
	}{
		{"text", "", copyText(rows)},
		{"csv", "WITH (FORMAT csv, HEADER true)", copyCSV(rows)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
			if err := os.WriteFile(in, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			dropTable(t, "psql_copy")
			script := fmt.Sprintf(`CREATE TABLE psql_copy (id int PRIMARY KEY, text text NOT NULL, maybe int);
\copy psql_copy FROM '%s' %s
SELECT count(*), sum(id), count(*) FILTER (WHERE maybe IS NULL), count(*) FILTER (WHERE text = '') FROM psql_copy;
\copy (SELECT * FROM psql_copy ORDER BY id) TO '%s' %s
`, in, tc.options, out, tc.options)
			stdout, stderr, err := runPsql(t, s, script)
			if err != nil || stderr != "" {
				t.Fatalf("psql: %v\n%s", err, stderr)
			}
			empty := 0
			for _, r := range rows {
				if r.text == "" {
					empty++
				}
			}
			want := fmt.Sprintf("CREATE TABLE\nCOPY %d\n%d|%d|%d|%d\nCOPY %d\n", n, n, n*(n-1)/2, (n+3)/4, empty, n)
			if stdout != want {
				t.Errorf("stdout:\n%s\nwant:\n%s", stdout, want)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.data) {
				i := 0
				for i < len(got) && i < len(tc.data) && got[i] == tc.data[i] {
					i++
				}
				t.Errorf("\\copy TO wrote %d bytes, \\copy FROM read %d; first difference at byte %d: %q vs %q",
					len(got), len(tc.data), i, excerpt(got, i), excerpt(tc.data, i))
			}
			checkServerClean(t, s)
		})
	}
}

// TestPsqlCopyInFails sends a file whose early row is invalid: COPY fails with 22P02 while psql
// is still sending data, nothing is loaded, and the connection and the server stay usable. Another
// client queries the same server (pool_size 1) all along: it must never see COPY's leftovers.
func TestPsqlCopyInFails(t *testing.T) {
	s := startPooler(t, poolConfig{PoolSize: 1})
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	var b bytes.Buffer
	for i := 0; i < 200000; i++ {
		if i == 1000 {
			b.WriteString("not a number\n")
			continue
		}
		fmt.Fprintf(&b, "%d\n", i)
	}
	if err := os.WriteFile(in, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	dropTable(t, "psql_copy_fail")

	other := connect(t, s)
	stop := make(chan struct{})
	otherErr := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				otherErr <- nil
				return
			default:
			}
			var got int
			if err := other.QueryRow(context.Background(), "SELECT $1::int", i).Scan(&got); err != nil || got != i {
				otherErr <- fmt.Errorf("query %d: %d, %v", i, got, err)
				return
			}
		}
	}()

	script := fmt.Sprintf(`CREATE TABLE psql_copy_fail (id int);
\copy psql_copy_fail FROM '%s'
SELECT count(*) FROM psql_copy_fail;
\copy psql_copy_fail FROM '%s'
SELECT count(*) FROM psql_copy_fail;
`, in, in)
	stdout, stderr, err := runPsql(t, s, script)
	close(stop)
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, stderr)
	}
	if want := "CREATE TABLE\n0\n0\n"; stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout, want)
	}
	if want := "psql:<stdin>:2: ERROR:  22P02\npsql:<stdin>:4: ERROR:  22P02\n"; stderr != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr, want)
	}
	if err := <-otherErr; err != nil {
		t.Errorf("the other client: %v", err)
	}
	checkServerClean(t, s)
}

// dropTable drops a table directly on Postgres, so that psql, which prints notices, does not
// have to.
func dropTable(t *testing.T, name string) {
	t.Helper()
	if _, err := direct(t).Exec(context.Background(), "DROP TABLE IF EXISTS "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
}

func excerpt(b []byte, i int) string {
	lo, hi := max(0, i-20), min(len(b), i+20)
	return string(b[lo:hi])
}

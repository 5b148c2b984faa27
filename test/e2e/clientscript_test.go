package e2e

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// runScript runs a client script with interpreter in dir, with env added to the environment, and
// checks that it printed "ok <check>" for each of checks, then "all ok" (the convention of
// test/python, test/ruby and test/php). The caller skips first when the interpreter or its driver
// is missing.
func runScript(t *testing.T, interpreter, dir, script string, env []string, checks []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, interpreter, script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s\nstderr:\n%s", interpreter, script, err, out, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Logf("%s %s stderr:\n%s", interpreter, script, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := make([]string, 0, len(checks)+1)
	for _, c := range checks {
		want = append(want, "ok "+c)
	}
	want = append(want, "all ok")
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s %s printed:\n%s\nwant:\n%s", interpreter, script, out, strings.Join(want, "\n"))
	}
}

package sluice

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	valid := filepath.Join(dir, "valid.toml")
	if err := os.WriteFile(valid, []byte(`[general]
port = 6432
[pools.app.users.0]
username = "app"
password = "secret"
[pools.app.shards.0]
database = "app"
servers = [["127.0.0.1", 5432, "primary"]]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	invalid := filepath.Join(dir, "invalid.toml")
	if err := os.WriteFile(invalid, []byte("[general]\nprot = 6432\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		code int
		says string
	}{
		{"version", []string{"--version"}, 0, "sluice " + Version},
		{"check of a valid file", []string{"--check", "-c", valid}, 0, "configuration is valid"},
		{"check of an invalid file names the line and the key", []string{"--check", "-c", invalid}, 1, "invalid.toml:2: unknown key general.prot (did you mean general.port?)"},
		{"missing file", []string{"--check", "-c", filepath.Join(dir, "missing.toml")}, 1, "missing.toml"},
		{"bad flag", []string{"--no-such-flag"}, 2, "flag provided but not defined"},
		{"pgcat-style positional file", []string{"--check", valid}, 0, "configuration is valid"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			if code := run(c.args, &out); code != c.code {
				t.Fatalf("exit %d, want %d; output:\n%s", code, c.code, out.String())
			}
			if !strings.Contains(out.String(), c.says) {
				t.Fatalf("output %q does not say %q", out.String(), c.says)
			}
		})
	}
}

func TestCommandLineFindsDefaultFile(t *testing.T) {
	dir := t.TempDir()
	wd, _ := os.Getwd()
	t.Cleanup(func() { _ = os.Chdir(wd) })
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := run([]string{"--check"}, &out); code != 1 || !strings.Contains(out.String(), "sluice.toml or pgcat.toml") {
		t.Fatalf("without a file: exit %d, %q", code, out.String())
	}
	if err := os.WriteFile("pgcat.toml", []byte("[general]\nprot = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run([]string{"--check"}, &out); code != 1 || !strings.Contains(out.String(), "pgcat.toml:2") {
		t.Fatalf("with pgcat.toml: exit %d, %q", code, out.String())
	}
}

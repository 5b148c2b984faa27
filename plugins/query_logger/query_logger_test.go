package querylogger

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/sluicepg/sluice/plugin"
	"github.com/sluicepg/sluice/plugins/internal/plugintest"
)

func TestQueryLogger(t *testing.T) {
	for _, tc := range []struct {
		name, config string
		proto        plugin.Protocol
		want         string // "" for no line
	}{
		{"simple", "enabled = true", plugin.Simple,
			`level=INFO msg=query user=app database=appdb application_name=psql query="SELECT 1"`},
		{"bind", "enabled = true", plugin.Bind,
			`level=INFO msg=query user=app database=appdb application_name=psql query="SELECT 1" protocol=extended params=0`},
		{"parse is logged at its binds", "enabled = true", plugin.Parse, ""},
		{"disabled", "enabled = false", plugin.Simple, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			}}))
			p := new(QueryLogger)
			if err := plugintest.Setup(p, tc.config, log); err != nil {
				t.Fatal(err)
			}
			q := plugintest.Query("SELECT 1")
			q.Protocol = tc.proto
			if act, err := p.OnQuery(context.Background(), q); err != nil || act.Kind != plugin.Continue {
				t.Fatalf("%s, %v", plugintest.Describe(act), err)
			}
			if got := strings.TrimSpace(buf.String()); got != tc.want {
				t.Errorf("logged %q; want %q", got, tc.want)
			}
		})
	}
}

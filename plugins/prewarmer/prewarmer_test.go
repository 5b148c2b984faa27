package prewarmer

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/sluicepg/sluice/plugin"
	"github.com/sluicepg/sluice/plugins/internal/plugintest"
)

func TestPrewarmer(t *testing.T) {
	for _, tc := range []struct {
		name, config string
		failOn       string
		ran          []string
		wantErr      bool
	}{
		{"runs the queries in order", "enabled = true\nqueries = [\"SELECT pg_prewarm('a')\", \"SET work_mem = '64MB'\"]", "",
			[]string{"SELECT pg_prewarm('a')", "SET work_mem = '64MB'"}, false},
		{"disabled", "enabled = false\nqueries = [\"SELECT 1\"]", "", nil, false},
		{"a failure stops and fails the connection", "enabled = true\nqueries = [\"SELECT 1\", \"bad\", \"SELECT 2\"]", "bad",
			[]string{"SELECT 1", "bad"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := new(Prewarmer)
			if err := plugintest.Setup(p, tc.config, nil); err != nil {
				t.Fatal(err)
			}
			var ran []string
			err := p.OnServerConnect(context.Background(), &plugin.Server{Database: "app", User: "app", Addr: "127.0.0.1:5432",
				Exec: func(sql string) error {
					ran = append(ran, sql)
					if sql == tc.failOn {
						return errors.New("syntax error")
					}
					return nil
				}})
			if (err != nil) != tc.wantErr || !slices.Equal(ran, tc.ran) {
				t.Errorf("ran %q, err %v; want %q, error %v", ran, err, tc.ran, tc.wantErr)
			}
		})
	}
}

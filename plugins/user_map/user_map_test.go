package usermap

import (
	"context"
	"testing"

	"github.com/sluicepg/sluice/plugin"
	"github.com/sluicepg/sluice/plugins/internal/plugintest"
)

func TestUserMap(t *testing.T) {
	const config = `[[rules]]
database = "legacy_app"
to_database = "app"

[[rules]]
user = "report_*"
to_user = "reporting"

[[rules]]
user = "old"
database = "olddb"
to_user = "new"
to_database = "newdb"
`
	for _, tc := range []struct {
		name, user, db         string
		wantUser, wantDatabase string
	}{
		{"database", "alice", "legacy_app", "alice", "app"},
		{"user pattern", "report_eu", "app", "reporting", "app"},
		{"both", "old", "olddb", "new", "newdb"},
		{"both must match", "old", "app", "old", "app"},
		{"first rule wins", "report_eu", "legacy_app", "report_eu", "app"},
		{"nothing", "app", "app", "app", "app"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := new(UserMap)
			if err := plugintest.Setup(p, config, nil); err != nil {
				t.Fatal(err)
			}
			s := &plugin.Startup{User: tc.user, Database: tc.db}
			if err := p.OnStartup(context.Background(), s); err != nil || s.User != tc.wantUser || s.Database != tc.wantDatabase {
				t.Errorf("got %s@%s, %v; want %s@%s", s.User, s.Database, err, tc.wantUser, tc.wantDatabase)
			}
		})
	}
}

func TestUserMapConfigErrors(t *testing.T) {
	for _, src := range []string{"[[rules]]\nuser = \"a\"", "[[rules]]\nuser = \"[\"\nto_user = \"b\"", "[[rules]]\nto = \"b\""} {
		if err := plugintest.Setup(new(UserMap), src, nil); err == nil {
			t.Errorf("%q: no error", src)
		}
	}
}

package e2e

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/sluicepg/sluice/internal/pgtest"
)

// TestServerAuthMethods logs sluice in to servers that ask for each password method, and checks
// that the client reaches the server as the configured user.
func TestServerAuthMethods(t *testing.T) {
	for _, method := range []string{"scram-sha-256", "md5", "trust"} {
		t.Run(method, func(t *testing.T) {
			ctx := context.Background()
			srv, err := pgtest.StartPostgres(pgtest.Options{Name: "auth-" + method, Auth: method})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = srv.Stop() })
			if err := srv.CreateUser(ctx, appUser, appPass); err != nil {
				t.Fatal(err)
			}
			if err := srv.CreateDatabase(ctx, appDB, appUser); err != nil {
				t.Fatal(err)
			}
			s := startSluice(t, poolConfig{ServerPort: srv.Port})
			var user string
			var port int
			if err := connect(t, s).QueryRow(ctx, "SELECT current_user, inet_server_port()").Scan(&user, &port); err != nil {
				t.Fatalf("query through sluice to a %s server: %v", method, err)
			}
			if user != appUser || port != srv.Port {
				t.Fatalf("reached %s on port %d, want %s on %d", user, port, appUser, srv.Port)
			}
		})
	}
}

// TestServerWrongPasswordIsAClearError checks that a server refusing sluice's password gives the
// client an error that names the cause, not a hang.
func TestServerWrongPasswordIsAClearError(t *testing.T) {
	s := startSluice(t, poolConfig{User: `server_password = "not-the-password"`})
	ctx := context.Background()
	c, err := pgx.Connect(ctx, s.URL())
	if err == nil {
		defer c.Close(ctx)
		_, err = c.Exec(ctx, "SELECT 1")
	}
	if err == nil {
		t.Fatal("a query succeeded with a wrong server password")
	}
	if code := codeOf(err); code != "08006" && code != "28P01" {
		t.Fatalf("got %v, want 08006 or 28P01", err)
	}
}

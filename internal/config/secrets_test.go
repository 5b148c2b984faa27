package config

import (
	"strings"
	"testing"
)

// TestSecretsNotInErrors pins that a password written wrongly (a number, unquoted, an
// unterminated string) is never quoted in the error, which goes to the log and, on RELOAD, to
// the admin console.
func TestSecretsNotInErrors(t *testing.T) {
	user := func(line string) string {
		return "[pools.app.users.0]\nusername = \"app\"\n" + line + "\n[pools.app.shards.0]\ndatabase = \"app\"\nservers = [[\"db1\", 5432, \"primary\"]]\n"
	}
	tests := []struct {
		name, text, secret string
	}{
		{"a number for admin_password", "[general]\nadmin_password = 987654321\n" + minimal, "987654321"},
		{"an unquoted admin_password", "[general]\nadmin_password = SeCrEt1\n" + minimal, "SeCrEt"},
		{"an unterminated admin_password", "[general]\nadmin_password = \"SeCrEt1\n" + minimal, "SeCrEt"},
		{"garbage after a password", "[general]\nadmin_password = 'SeCrEt1' zq9\n" + minimal, "zq9"},
		{"a number for a user's password", user("password = 123456789"), "123456789"},
		{"an unquoted user password", user("password = hunter2x"), "hunter"},
		{"an array for server_password", user("password = \"p\"\nserver_password = [\"SeCrEt2\"]"), "SeCrEt2"},
		{"a number for a pool's auth_query_password", "[pools.app]\nauth_query_password = 55555555\n" + minimal, "55555555"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := load(t, tc.text)
			if err == nil {
				t.Fatal("no error")
			}
			if msg := err.Error(); strings.Contains(msg, tc.secret) {
				t.Errorf("the error shows the secret %q: %s", tc.secret, msg)
			}
		})
	}
}

package auth

import "testing"

// The expected values are what Postgres computes: SELECT 'md5' || md5('secret' || 'app').
func TestMD5(t *testing.T) {
	cases := []struct {
		password, user, secret string
	}{
		{"secret", "app", "6a422f785c9e20873908ce25d1736ae2"},
		{"md56a422f785c9e20873908ce25d1736ae2", "app", "6a422f785c9e20873908ce25d1736ae2"},
	}
	for _, c := range cases {
		if got := MD5Secret(c.password, c.user); got != c.secret {
			t.Errorf("MD5Secret(%q, %q) = %s, want %s", c.password, c.user, got, c.secret)
		}
	}
	// libpq: "md5" + md5(md5(password+user) + salt)
	if got, want := MD5Response("6a422f785c9e20873908ce25d1736ae2", [4]byte{1, 2, 3, 4}), "md5911f527656472583a006e7727877b33e"; got != want {
		t.Errorf("MD5Response = %q, want %q", got, want)
	}
}

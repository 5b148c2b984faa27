package auth

import (
	"strings"
	"testing"
)

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
	if !MD5Matches([]byte("md5911f527656472583a006e7727877b33e"), "secret", "app", [4]byte{1, 2, 3, 4}) {
		t.Error("MD5Matches refuses the response to the plain password")
	}
	if !MD5Matches([]byte("md5911f527656472583a006e7727877b33e"), "md56a422f785c9e20873908ce25d1736ae2", "app", [4]byte{1, 2, 3, 4}) {
		t.Error("MD5Matches refuses the response to the md5 hash")
	}
	for _, bad := range []string{"md5911f527656472583a006e7727877b33f", "md5911f527656472583a006e7727877b33", "", "md5911f527656472583a006e7727877b33e0"} {
		if MD5Matches([]byte(bad), "secret", "app", [4]byte{1, 2, 3, 4}) {
			t.Errorf("MD5Matches accepts %q", bad)
		}
	}
	if MD5Matches([]byte("md5911f527656472583a006e7727877b33e"), "secret", "app", [4]byte{1, 2, 3, 5}) {
		t.Error("MD5Matches accepts the response to another salt")
	}
	long := strings.Repeat("p", 200) // longer than the stack buffers
	if !MD5Matches([]byte(MD5Response(MD5Secret(long, long), [4]byte{9, 9, 9, 9})), long, long, [4]byte{9, 9, 9, 9}) {
		t.Error("MD5Matches refuses a long password's response")
	}
}

func TestMD5MatchesAllocatesNothing(t *testing.T) {
	resp := []byte(MD5Response(MD5Secret("secret", "app"), [4]byte{1, 2, 3, 4}))
	if n := testing.AllocsPerRun(100, func() { MD5Matches(resp, "secret", "app", [4]byte{1, 2, 3, 4}) }); n != 0 {
		t.Errorf("MD5Matches allocates %v times", n)
	}
}

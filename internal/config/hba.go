package config

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
)

// HBARule is one line of a pg_hba.conf-format file: who may connect how. Rules are tried in
// order; the first that matches decides.
type HBARule struct {
	Line      int
	ConnType  string   // "local", "host", "hostssl" or "hostnossl"
	Databases []string // names, or "all"
	Users     []string // names, or "all"
	Net       *net.IPNet
	Method    string // AuthTrust, AuthMD5, AuthSCRAM, AuthCert (hostssl only) or "reject"
}

// HBAReject is the method of a rule that refuses the connection.
const HBAReject = "reject"

// LoadHBA reads a pg_hba.conf-format file. It supports the connection types local, host, hostssl
// and hostnossl; database and user lists (comma separated, "all", quoted names); addresses as
// CIDR, "all", or an address followed by a mask; and the methods trust, md5, scram-sha-256 and
// reject. Anything else (hostnames, +groups, @files, other methods, options) is an error naming
// the line, rather than a rule that silently means something else.
func LoadHBA(path string) ([]HBARule, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("hba_file: %w", err)
	}
	defer f.Close()
	var rules []HBARule
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		fields := hbaFields(text)
		if len(fields) == 0 {
			continue
		}
		r, err := parseHBARule(fields)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		r.Line = line
		rules = append(rules, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("hba_file %s: %w", path, err)
	}
	return rules, nil
}

// hbaFields splits a line into fields, keeping double-quoted text (with commas and spaces) whole.
func hbaFields(s string) []string {
	var out []string
	var cur strings.Builder
	quoted, any := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			cur.WriteRune(r)
			any = true
		case !quoted && (r == ' ' || r == '\t'):
			if any {
				out = append(out, cur.String())
				cur.Reset()
				any = false
			}
		default:
			cur.WriteRune(r)
			any = true
		}
	}
	if any {
		out = append(out, cur.String())
	}
	return out
}

func parseHBARule(f []string) (HBARule, error) {
	var r HBARule
	if len(f) == 0 {
		return r, fmt.Errorf("empty rule")
	}
	r.ConnType = f[0]
	need := 5
	switch r.ConnType {
	case "local":
		need = 4
	case "host", "hostssl", "hostnossl":
	default:
		return r, fmt.Errorf("unsupported connection type %q (want local, host, hostssl or hostnossl)", f[0])
	}
	if len(f) < need {
		return r, fmt.Errorf("too few fields: want TYPE DATABASE USER%s METHOD", map[bool]string{true: "", false: " ADDRESS"}[need == 4])
	}
	var err error
	if r.Databases, err = hbaNames(f[1], "database"); err != nil {
		return r, err
	}
	if r.Users, err = hbaNames(f[2], "user"); err != nil {
		return r, err
	}
	rest := f[3:]
	if r.ConnType != "local" {
		if r.Net, rest, err = hbaAddress(rest); err != nil {
			return r, err
		}
	}
	if len(rest) == 0 {
		return r, fmt.Errorf("missing authentication method")
	}
	switch rest[0] {
	case AuthTrust, AuthMD5, AuthSCRAM, HBAReject:
		r.Method = rest[0]
	case AuthCert:
		if r.ConnType != "hostssl" {
			return r, fmt.Errorf("cert authentication is only supported on hostssl rules")
		}
		r.Method = rest[0]
	default:
		return r, fmt.Errorf("unsupported authentication method %q (want trust, md5, scram-sha-256, cert or reject)", rest[0])
	}
	if len(rest) > 1 {
		return r, fmt.Errorf("authentication options are not supported: %q", strings.Join(rest[1:], " "))
	}
	return r, nil
}

func hbaNames(field, what string) ([]string, error) {
	var names []string
	for _, n := range strings.Split(field, ",") {
		switch {
		case n == "":
			return nil, fmt.Errorf("empty %s name in %q", what, field)
		case strings.HasPrefix(n, `"`):
			if len(n) < 2 || !strings.HasSuffix(n, `"`) {
				return nil, fmt.Errorf("unterminated quoted %s name %s", what, n)
			}
			names = append(names, "\x00"+n[1:len(n)-1]) // quoted: a name, never a keyword
		case n == "all":
			names = append(names, n)
		case strings.HasPrefix(n, "+") || strings.HasPrefix(n, "@") || n == "sameuser" || n == "samerole" || n == "samegroup" || n == "replication":
			return nil, fmt.Errorf("%s %q is not supported", what, n)
		default:
			names = append(names, n)
		}
	}
	return names, nil
}

func hbaAddress(f []string) (*net.IPNet, []string, error) {
	a := f[0]
	switch {
	case a == "all":
		return nil, f[1:], nil
	case strings.Contains(a, "/"):
		_, n, err := net.ParseCIDR(a)
		if err != nil {
			return nil, nil, fmt.Errorf("invalid address %q: %v", a, err)
		}
		return n, f[1:], nil
	}
	ip := net.ParseIP(a)
	if ip == nil {
		return nil, nil, fmt.Errorf("address %q: host names are not supported, use an address with a mask or CIDR", a)
	}
	if len(f) < 2 {
		return nil, nil, fmt.Errorf("address %q needs a mask or a /prefix", a)
	}
	m := net.ParseIP(f[1])
	if m == nil {
		return nil, nil, fmt.Errorf("invalid mask %q", f[1])
	}
	if v4 := ip.To4(); v4 != nil {
		ip, m = v4, m.To4()
		if m == nil {
			return nil, nil, fmt.Errorf("mask %q does not fit address %q", f[1], a)
		}
	}
	return &net.IPNet{IP: ip.Mask(net.IPMask(m)), Mask: net.IPMask(m)}, f[2:], nil
}

// MatchHBA returns the first rule that matches a connection: local is a Unix socket, tls whether
// the connection is encrypted, addr the client's address (nil for a Unix socket). ok is false
// when no rule matches, which refuses the connection.
func MatchHBA(rules []HBARule, local, tls bool, db, user string, addr net.IP) (r *HBARule, ok bool) {
	for i := range rules {
		r := &rules[i]
		switch r.ConnType {
		case "local":
			if !local {
				continue
			}
		case "host":
			if local {
				continue
			}
		case "hostssl":
			if local || !tls {
				continue
			}
		case "hostnossl":
			if local || tls {
				continue
			}
		}
		if !hbaNameMatch(r.Databases, db) || !hbaNameMatch(r.Users, user) {
			continue
		}
		if r.Net != nil && (addr == nil || !r.Net.Contains(addr)) {
			continue
		}
		return r, true
	}
	return nil, false
}

func hbaNameMatch(names []string, name string) bool {
	for _, n := range names {
		if n == "all" || n == name || (len(n) > 0 && n[0] == 0 && n[1:] == name) {
			return true
		}
	}
	return false
}

package config

import "strings"

// AdminDatabases are the database names that reach the admin console when admin_username is set:
// pgcat answers on both, PgBouncer on "pgbouncer".
var AdminDatabases = []string{"pgcat", "pgbouncer"}

// IsAdminDatabase reports whether a client asking for database db gets the admin console.
func (g *General) IsAdminDatabase(db string) bool {
	if g.AdminUsername == "" {
		return false
	}
	for _, name := range AdminDatabases {
		if db == name {
			return true
		}
	}
	return false
}

// AdminAuth returns how the admin logs in: admin_auth_type, else SCRAM for a password stored as
// a SCRAM verifier, else md5 (pgcat's default).
func (g *General) AdminAuth() string {
	switch {
	case g.AdminAuthType != "":
		return g.AdminAuthType
	case strings.HasPrefix(g.AdminPassword, "SCRAM-SHA-256$"):
		return AuthSCRAM
	}
	return AuthMD5
}

// Defaults returns the [general] settings of a file that sets none of them.
func Defaults() General { return defaultGeneral() }

// admin checks the admin console's keys once the whole file is read.
func (l *loader) admin(root *node, cfg *Config) {
	g := &cfg.General
	gn := root.kids["general"]
	if gn == nil || gn.kids == nil || g.AdminUsername == "" {
		return
	}
	switch {
	case g.AdminAuthType == AuthTrust:
		if len(g.HBA) == 0 {
			l.warn(gn.kids["admin_auth_type"], "admin_auth_type = \"trust\" with no hba rules: anyone who can connect, from any address, logs in to the admin console as "+
				g.AdminUsername+" (SHUTDOWN, KILL, RELOAD ...); limit it with hba or hba_file rules, e.g. local and 127.0.0.1/32 only")
		}
	case g.AdminPassword == "":
		l.errorAt(gn, "admin_password", `the admin console needs a password (or admin_auth_type = "trust")`)
	case g.AdminAuthType == AuthSCRAM && len(g.AdminPassword) == 35 && strings.HasPrefix(g.AdminPassword, "md5"):
		l.errorAt(gn, "admin_auth_type", "scram-sha-256 cannot check a password stored as an md5 hash")
	case g.AdminAuthType == AuthMD5 && strings.HasPrefix(g.AdminPassword, "SCRAM-SHA-256$"):
		l.errorAt(gn, "admin_auth_type", "md5 cannot check a password stored as a SCRAM verifier")
	}
	pn := root.kids["pools"]
	for _, name := range AdminDatabases {
		if p, ok := cfg.Pools[name]; ok && pn != nil {
			l.warn(pn.kids[p.Name], "database "+name+" is the admin console's while admin_username is set: clients cannot reach this pool")
		}
	}
}

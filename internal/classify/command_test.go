package classify

import (
	"errors"
	"testing"
)

func TestParseCommand(t *testing.T) {
	cases := []struct {
		query string
		kind  CommandKind
		value string
	}{
		{"SET SERVER ROLE TO 'primary'", SetServerRole, "primary"},
		{"set server role to 'REPLICA';", SetServerRole, "replica"},
		{"  SET SERVER ROLE = 'any' ;  ", SetServerRole, "any"},
		{"SET SERVER ROLE TO auto", SetServerRole, "auto"},
		{"SET SERVER ROLE TO 'default'", SetServerRole, "default"},
		{"SET\tSERVER\n  ROLE\r\nTO 'primary'", SetServerRole, "primary"},
		{"/* app */ SET SERVER ROLE TO 'primary' -- pin it", SetServerRole, "primary"},
		{"SHOW SERVER ROLE", ShowServerRole, ""},
		{"show server role;", ShowServerRole, ""},
		{"SET PRIMARY READS TO 'on'", SetPrimaryReads, "on"},
		{"SET PRIMARY READS TO off", SetPrimaryReads, "off"},
		{"set primary reads = 'DEFAULT'", SetPrimaryReads, "default"},
		{"SHOW PRIMARY READS", ShowPrimaryReads, ""},
		{"SET SHARDING KEY TO '1234'", SetShardingKey, "1234"},
		{"SET SHARDING KEY TO 42", SetShardingKey, "42"},
		{"SET SHARDING KEY TO '-5'", SetShardingKey, "-5"},
		{"SET SHARDING KEY TO '007'", SetShardingKey, "7"},
		{"SET SHARD TO '3'", SetShard, "3"},
		{"SET SHARD TO 'ANY'", SetShard, "any"},
		{"set shard to any;", SetShard, "any"},
		{"SHOW SHARD", ShowShard, ""},
	}
	for _, tc := range cases {
		cmd, ok, err := ParseCommand([]byte(tc.query))
		if !ok || err != nil || cmd == nil || cmd.Kind != tc.kind || cmd.Value != tc.value {
			t.Errorf("ParseCommand(%q) = %+v, %v, %v; want %v %q", tc.query, cmd, ok, err, tc.kind, tc.value)
		}
	}
}

func TestParseCommandMalformed(t *testing.T) {
	cases := []struct {
		query string
		code  string
	}{
		{"SET SERVER ROLE TO 'bogus'", CodeInvalidParameterValue},
		{"SET SERVER ROLE TO 'mirror'", CodeInvalidParameterValue},
		{"SET PRIMARY READS TO 'maybe'", CodeInvalidParameterValue},
		{"SET SHARDING KEY TO 'abc'", CodeInvalidParameterValue},
		{"SET SHARDING KEY TO '99999999999999999999'", CodeInvalidParameterValue},
		{"SET SHARD TO '-1'", CodeInvalidParameterValue},
		{"SET SHARD TO ''", CodeInvalidParameterValue},
		{"SET SERVER ROLE 'primary'", CodeSyntaxError},
		{"SET SERVER ROLE TO", CodeSyntaxError},
		{"SET SERVER ROLE TO 'primary", CodeSyntaxError},
		{"SET SERVER ROLE TO 'primary' extra", CodeSyntaxError},
		{"SET SERVER ROLE TO 'primary'; SELECT 1", CodeSyntaxError},
		{"SET SERVER ROLE TO 'primary';;", CodeSyntaxError},
		{"SHOW SERVER ROLE now", CodeSyntaxError},
		{"SHOW SHARD 1", CodeSyntaxError},
	}
	for _, tc := range cases {
		cmd, ok, err := ParseCommand([]byte(tc.query))
		var ce *CommandError
		if !ok || cmd != nil || !errors.As(err, &ce) || ce.Code != tc.code {
			t.Errorf("ParseCommand(%q) = %+v, %v, %v; want a %s CommandError", tc.query, cmd, ok, err, tc.code)
		}
	}
}

func TestParseCommandNotACommand(t *testing.T) {
	for _, q := range []string{
		"", "SELECT 1", "select 'SET SERVER ROLE TO primary'", "SET search_path TO x",
		"SHOW server_version", "SET server_role TO 'primary'", "SHOW SERVER", "SET SERVER TO 1",
		"SET SESSION AUTHORIZATION bob", "SET SHARDS TO 1", "SHOW shard_count", "SET PRIMARY TO 1",
		"SET SHARDING TO 1", "SHOWSHARD", "-- SET SERVER ROLE TO 'primary'", "/* unterminated",
	} {
		cmd, ok, err := ParseCommand([]byte(q))
		if ok || cmd != nil || err != nil {
			t.Errorf("ParseCommand(%q) = %+v, %v, %v; want not a command", q, cmd, ok, err)
		}
	}
	allocs := testing.AllocsPerRun(1000, func() {
		ParseCommand([]byte("SELECT abalance FROM pgbench_accounts WHERE aid = $1"))
		ParseCommand([]byte("SET search_path TO x"))
	})
	if allocs != 0 {
		t.Fatalf("ParseCommand allocates %v times for ordinary queries", allocs)
	}
}

package classify

import (
	"slices"
	"strings"
)

// builtinWriteFunctions are the functions that always send a query to the primary: they
// change data or state that lives on the primary (sequences, advisory locks, large objects,
// notifications, settings, replication slots, transaction IDs, WAL), or fail on a replica
// (pg_current_wal_lsn), or read state that only the primary session has (currval, lastval).
var builtinWriteFunctions = []string{
	// Sequences.
	"nextval", "setval", "currval", "lastval",
	// Advisory locks: taking one on a replica would not exclude anyone on the primary.
	"pg_advisory_*", "pg_try_advisory_*",
	// Large objects.
	"lo_*", "loread", "lowrite",
	// Notifications and settings.
	"pg_notify", "set_config",
	// Replication slots and origins, logical decoding messages.
	"pg_create_*_replication_slot", "pg_drop_replication_slot", "pg_copy_*_replication_slot",
	"pg_replication_slot_advance", "pg_logical_slot_get_*", "pg_logical_emit_message",
	"pg_replication_origin_*",
	// Transaction IDs: assigning one is a write.
	"txid_current", "txid_current_if_assigned", "pg_current_xact_id",
	"pg_current_xact_id_if_assigned", "pg_current_snapshot", "txid_current_snapshot",
	// WAL positions and backups: primary only.
	"pg_current_wal_*", "pg_switch_wal", "pg_create_restore_point", "pg_backup_start",
	"pg_backup_stop",
}

// builtinReadFunctions are functions known not to write, used with strict_functions. Calls
// the grammar itself produces (EXTRACT, AT TIME ZONE, SUBSTRING ... FROM, TRIM, OVERLAPS,
// POSITION, COLLATION FOR ...) come out as pg_catalog functions and are listed too.
var builtinReadFunctions = []string{
	// Aggregates and window functions.
	"count", "sum", "avg", "min", "max", "array_agg", "string_agg", "bool_and", "bool_or",
	"every", "bit_and", "bit_or", "bit_xor", "json_agg", "jsonb_agg", "json_object_agg",
	"jsonb_object_agg", "xmlagg", "range_agg", "range_intersect_agg", "any_value",
	"stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp", "corr",
	"covar_pop", "covar_samp", "regr_*", "percentile_cont", "percentile_disc", "mode",
	"row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead",
	"first_value", "last_value", "nth_value",
	// Conditionals and comparisons.
	"coalesce", "nullif", "greatest", "least", "num_nulls", "num_nonnulls",
	// Strings.
	"lower", "upper", "initcap", "length", "char_length", "character_length", "octet_length",
	"bit_length", "concat", "concat_ws", "substring", "substr", "position", "strpos",
	"replace", "translate", "btrim", "ltrim", "rtrim", "lpad", "rpad", "left", "right",
	"repeat", "reverse", "split_part", "starts_with", "format", "quote_ident",
	"quote_literal", "quote_nullable", "regexp_*", "md5", "sha224", "sha256", "sha384",
	"sha512", "encode", "decode", "convert", "convert_from", "convert_to", "ascii", "chr",
	"to_hex", "to_bin", "to_oct", "overlay", "string_to_array", "string_to_table", "unistr",
	"normalize", "is_normalized", "similar_to_escape", "similar_escape", "like_escape",
	"casefold", "pg_collation_for", "text", "varchar",
	// Numbers.
	"abs", "round", "ceil", "ceiling", "floor", "trunc", "sign", "sqrt", "cbrt", "power",
	"pow", "exp", "ln", "log", "log10", "mod", "div", "pi", "degrees", "radians", "sin",
	"cos", "tan", "cot", "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh", "gcd",
	"lcm", "factorial", "width_bucket", "random", "random_normal", "scale", "trim_scale",
	"min_scale", "int2", "int4", "int8", "float4", "float8", "numeric", "bool",
	// Dates and times.
	"now", "clock_timestamp", "statement_timestamp", "transaction_timestamp", "timeofday",
	"date_trunc", "date_part", "extract", "date_bin", "age", "make_date", "make_time",
	"make_timestamp", "make_timestamptz", "make_interval", "to_timestamp", "to_date",
	"to_char", "to_number", "justify_days", "justify_hours", "justify_interval", "isfinite",
	"timezone", "overlaps", "date", "time", "timestamp", "timestamptz", "interval",
	"pg_sleep", "pg_sleep_for", "pg_sleep_until",
	// Arrays, ranges, sets.
	"array_*", "cardinality", "unnest", "trim_array", "generate_series",
	"generate_subscripts", "isempty", "lower_inc", "upper_inc", "lower_inf", "upper_inf",
	"range_merge", "int4range", "int8range", "numrange", "tsrange", "tstzrange", "daterange",
	// JSON.
	"json_*", "jsonb_*", "to_json", "to_jsonb", "row_to_json",
	// Text search.
	"to_tsvector", "to_tsquery", "plainto_tsquery", "phraseto_tsquery",
	"websearch_to_tsquery", "ts_rank", "ts_rank_cd", "ts_headline", "setweight",
	// UUIDs.
	"gen_random_uuid", "uuidv4", "uuidv7", "uuid_generate_v4",
	// Session and server information.
	"version", "current_setting", "current_database", "current_schema", "current_schemas",
	"current_user", "session_user", "current_catalog", "inet_server_port",
	"inet_server_addr", "inet_client_port", "inet_client_addr", "pg_backend_pid",
	"pg_postmaster_start_time", "pg_conf_load_time", "pg_is_in_recovery",
	"pg_last_wal_receive_lsn", "pg_last_wal_replay_lsn", "pg_last_xact_replay_timestamp",
	"pg_is_wal_replay_paused", "pg_get_wal_replay_pause_state", "pg_client_encoding",
	// Catalog information.
	"pg_typeof", "format_type", "pg_get_viewdef", "pg_get_indexdef",
	"pg_get_constraintdef", "pg_get_functiondef", "pg_get_function_arguments",
	"pg_get_function_result", "pg_get_triggerdef", "pg_get_expr", "pg_get_userbyid",
	"pg_get_serial_sequence", "pg_get_keywords", "pg_table_size", "pg_relation_size",
	"pg_total_relation_size", "pg_indexes_size", "pg_database_size", "pg_size_pretty",
	"pg_size_bytes", "pg_column_size", "has_*_privilege", "pg_has_role", "obj_description",
	"col_description", "shobj_description", "pg_table_is_visible", "pg_type_is_visible",
	"pg_function_is_visible", "to_regclass", "to_regtype", "to_regproc", "to_regprocedure",
	"to_regnamespace", "to_regrole", "pg_encoding_to_char", "pg_char_to_encoding",
	"pg_relation_filenode", "pg_relation_filepath", "pg_tablespace_location",
}

// funcSet matches function names against a list of entries: names, optionally
// schema-qualified, optionally with '*' wildcards.
type funcSet struct {
	exact map[string][]string // name → schemas of the entries with that name ("" = any)
	globs []funcEntry
}

type funcEntry struct {
	schema, pattern string
}

func newFuncSet(builtin, configured []string) funcSet {
	s := funcSet{exact: make(map[string][]string, len(builtin)+len(configured))}
	for _, e := range slices.Concat(builtin, configured) {
		e = strings.ToLower(strings.TrimSpace(e))
		if e == "" {
			continue
		}
		var schema string
		if i := strings.LastIndexByte(e, '.'); i >= 0 {
			schema, e = e[:i], e[i+1:]
		}
		if strings.IndexByte(e, '*') >= 0 {
			s.globs = append(s.globs, funcEntry{schema, e})
		} else {
			s.exact[e] = append(s.exact[e], schema)
		}
	}
	return s
}

// matchWrite reports whether a call of schema.name may be one of the entries. It errs
// towards yes: an unqualified entry matches the name in any schema, and an unqualified call
// matches a qualified entry (search_path may lead there).
func (s *funcSet) matchWrite(schema, name string) bool {
	return s.match(schema, name, func(entry string) bool {
		return entry == "" || schema == "" || entry == schema
	})
}

// matchRead reports whether a call of schema.name is surely one of the entries. It errs
// towards no: an unqualified entry matches only unqualified and pg_catalog calls, a
// qualified entry only calls with the same schema.
func (s *funcSet) matchRead(schema, name string) bool {
	return s.match(schema, name, func(entry string) bool {
		if entry == "" {
			return schema == "" || schema == "pg_catalog"
		}
		return entry == schema
	})
}

func (s *funcSet) match(schema, name string, schemaOK func(entry string) bool) bool {
	// Entries were lower-cased as Postgres folds unquoted names; the call's name is as the
	// parser left it, so a quoted "NextVal" (another function) does not match nextval.
	for _, e := range s.exact[name] {
		if schemaOK(e) {
			return true
		}
	}
	for _, g := range s.globs {
		if schemaOK(g.schema) && glob(g.pattern, name) {
			return true
		}
	}
	return false
}

// glob reports whether name matches pattern, where '*' matches any run of characters.
func glob(pattern, name string) bool {
	star := strings.IndexByte(pattern, '*')
	if star < 0 {
		return pattern == name
	}
	if !strings.HasPrefix(name, pattern[:star]) {
		return false
	}
	name, pattern = name[star:], pattern[star+1:]
	// Try every position for the star; patterns are short.
	for i := 0; i <= len(name); i++ {
		if glob(pattern, name[i:]) {
			return true
		}
	}
	return false
}

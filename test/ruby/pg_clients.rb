# Ruby's pg gem through sluice.
#
# test/e2e/ruby_test.go runs it with Debian's /usr/bin/ruby (which sees the ruby-pg package), with
# SLUICE_URL set to a postgres:// URL of sluice and SLUICE_MODE to "transaction" (fewer servers
# than clients, so servers are shared) or "session". The pg gem is libpq: exec sends a simple
# Query, exec_params and exec_prepared the extended protocol (an unnamed statement, or a named one
# such as Rails' "a1", "a2", numbered per connection, so every client uses the same names for its
# own SQL), and Rails deallocates such a name with the SQL command DEALLOCATE. Each check prints
# "ok <name>" when it passes; the first failure prints "FAIL <name>: <why>" and exits with status
# 1. The last line is "all ok".

require "pg"

URL = ENV["SLUICE_URL"]
if URL.nil? || URL.empty?
  warn "SLUICE_URL is not set"
  exit 2
end
MODE = ENV.fetch("SLUICE_MODE", "transaction")

CHECKS = []

def check(name, &fn)
  CHECKS << [name, fn]
end

def expect(got, want, what)
  raise "#{what}: got #{got.inspect}, want #{want.inspect}" unless got == want
end

# expect_error runs the block and returns the error of class cls it raised; any other outcome
# fails the check.
def expect_error(cls, what)
  begin
    yield
  rescue cls => e
    return e
  rescue StandardError => e
    raise "#{what}: #{e.class}: #{e.message.strip}, want #{cls}"
  end
  raise "#{what}: no error, want #{cls}"
end

def sqlstate(err)
  err.result&.error_field(PG::Result::PG_DIAG_SQLSTATE)
end

def connect
  PG.connect(URL)
end

# in_threads runs each block in its own thread and raises the first failure.
def in_threads(fns)
  failures = Queue.new
  fns.map do |fn|
    Thread.new do
      fn.call
    rescue Exception => e # rubocop:disable Lint/RescueException
      failures << e
    end
  end.each(&:join)
  raise failures.pop unless failures.empty?
end

check "exec and exec_params" do |c|
  r = c.exec("SELECT 1 AS a, 'two' AS b, NULL AS c; SELECT 40 + 2 AS answer")
  expect(r.values, [["42"]], "the last result of a simple Query with two statements")
  expect(r.fields, ["answer"], "its fields")
  r = c.exec_params("SELECT $1::int + $2::int AS sum, $3::text AS t, $4::text IS NULL AS n",
                    [40, 2, "it's \"quoted\" \\ ünï", nil])
  expect(r.values, [["42", "it's \"quoted\" \\ ünï", "t"]], "text results")
  expect(r.ftype(0), 23, "int4's type oid")
  # Binary results (result_format 1), and a binary parameter.
  r = c.exec_params("SELECT $1::int4 * 2 AS i, $2::bytea AS b, 'x'::text AS t, 1.5::float8 AS f",
                    [21, { value: "\x00\x01\xff".b, format: 1 }], 1)
  expect(r.fformat(0), 1, "binary format")
  expect(r.getvalue(0, 0).unpack1("l>"), 42, "binary int4")
  expect(r.getvalue(0, 1), "\x00\x01\xff".b, "binary bytea")
  expect(r.getvalue(0, 2), "x", "binary text")
  expect(r.getvalue(0, 3).unpack1("G"), 1.5, "binary float8")
  r = c.exec_params("SELECT g, repeat('r', g % 50) FROM generate_series(1, 3000) g", [])
  expect(r.ntuples, 3000, "rows")
  expect(r.getvalue(2999, 0), "3000", "the last row")
  expect(r.cmd_tuples, 3000, "cmd_tuples")
  c.exec("DROP TABLE IF EXISTS rb_items")
  c.exec("CREATE TABLE rb_items (id int PRIMARY KEY, name text)")
  r = c.exec_params("INSERT INTO rb_items SELECT g, 'n' || g FROM generate_series(1, $1::int) g", [100])
  expect(r.cmd_status, "INSERT 0 100", "command tag")
  expect(r.cmd_tuples, 100, "inserted rows")
end

check "prepared statements" do |c|
  # Rails names its statements a1, a2, ... per connection: every client uses the same names, each
  # for its own SQL, and servers are shared in transaction mode.
  in_threads((1..5).map do |k|
    lambda do
      conn = connect
      begin
        conn.prepare("a1", "SELECT $1::int * #{k} AS v, #{k} AS k")
        conn.prepare("a2", "SELECT name FROM rb_items WHERE id = $1")
        30.times do |i|
          r = conn.exec_prepared("a1", [i])
          expect(r.values, [[(i * k).to_s, k.to_s]], "client #{k}: a1(#{i})")
          r = conn.exec_prepared("a2", [i + k])
          expect(r.values, [["n#{i + k}"]], "client #{k}: a2(#{i + k})")
        end
        d = conn.describe_prepared("a1")
        expect([d.nparams, d.paramtype(0), d.nfields, d.fname(1)], [1, 23, 2, "k"], "client #{k}: describe a1")
        # Rails' statement cache evicts with the SQL command DEALLOCATE, then prepares the name
        # again for other SQL.
        conn.exec("DEALLOCATE a1")
        e = expect_error(PG::InvalidSqlStatementName, "client #{k}: a1 after DEALLOCATE") { conn.exec_prepared("a1", [1]) }
        expect(sqlstate(e), "26000", "client #{k}: its SQLSTATE")
        conn.prepare("a1", "SELECT $1::text || '-#{k}' AS s")
        expect(conn.exec_prepared("a1", ["x"]).values, [["x-#{k}"]], "client #{k}: a1 prepared again")
        e = expect_error(PG::DuplicatePstatement, "client #{k}: a2 prepared twice") { conn.prepare("a2", "SELECT 2") }
        expect(sqlstate(e), "42P05", "client #{k}: its SQLSTATE")
        expect(conn.exec_prepared("a2", [7]).values, [["n7"]], "client #{k}: a2 after the failed prepare")
        # Inside a transaction too, as Rails does.
        conn.transaction do |t|
          t.exec_prepared("a2", [1])
          t.exec("DEALLOCATE a2")
          t.prepare("a2", "SELECT count(*) FROM rb_items WHERE id <= $1")
          expect(t.exec_prepared("a2", [10]).values, [["10"]], "client #{k}: a2 prepared again in a transaction")
        end
        expect(conn.exec_prepared("a2", [20]).values, [["20"]], "client #{k}: a2 after the transaction")
        # Rails' reset! ends with DISCARD ALL, which drops the connection's statements; the
        # statement cache then prepares its names anew.
        conn.exec("DISCARD ALL")
        expect_error(PG::InvalidSqlStatementName, "client #{k}: a2 after DISCARD ALL") { conn.exec_prepared("a2", [1]) }
        conn.prepare("a2", "SELECT $1::int - #{k}")
        expect(conn.exec_prepared("a2", [100]).values, [[(100 - k).to_s]], "client #{k}: a2 after DISCARD ALL")
      ensure
        conn.close
      end
    end
  end)
end

check "async and pipeline" do |c|
  c.send_query("SELECT 1 AS one; SELECT 'two' AS two")
  results = []
  while (r = c.get_result)
    r.check
    results << r.values
  end
  expect(results, [[["1"]], [["two"]]], "send_query's results")
  c.send_query_params("SELECT $1::int + 1", [41])
  expect(c.get_last_result.values, [["42"]], "send_query_params")
  c.send_prepare("rb_async", "SELECT $1::text || '!'")
  c.get_last_result
  c.send_query_prepared("rb_async", ["hi"])
  expect(c.get_last_result.values, [["hi!"]], "send_query_prepared")

  # Pipeline mode (libpq 14+): many queries, one Sync; an error aborts the rest up to the Sync.
  c.enter_pipeline_mode
  expect(c.pipeline_status, PG::PQ_PIPELINE_ON, "pipeline status")
  c.send_query_params("INSERT INTO rb_items VALUES ($1, $2)", [1001, "piped"])
  c.send_prepare("rb_piped", "SELECT name FROM rb_items WHERE id = $1")
  c.send_query_prepared("rb_piped", [1001])
  c.pipeline_sync
  c.send_query_params("SELECT 1 / $1::int", [0])
  c.send_query_params("SELECT 'skipped'", [])
  c.pipeline_sync
  c.send_query_params("SELECT count(*) FROM rb_items WHERE id = $1", [1001])
  c.pipeline_sync
  statuses = []
  values = []
  syncs = 0
  while syncs < 3
    r = c.get_result
    next if r.nil? # the end of one query's results
    statuses << r.result_status
    values << r.values if r.result_status == PG::PGRES_TUPLES_OK
    syncs += 1 if r.result_status == PG::PGRES_PIPELINE_SYNC
  end
  expect(statuses, [PG::PGRES_COMMAND_OK, PG::PGRES_COMMAND_OK, PG::PGRES_TUPLES_OK, PG::PGRES_PIPELINE_SYNC,
                    PG::PGRES_FATAL_ERROR, PG::PGRES_PIPELINE_ABORTED, PG::PGRES_PIPELINE_SYNC,
                    PG::PGRES_TUPLES_OK, PG::PGRES_PIPELINE_SYNC], "pipeline results")
  expect(values, [[["piped"]], [["1"]]], "pipeline rows")
  c.exit_pipeline_mode
  expect(c.pipeline_status, PG::PQ_PIPELINE_OFF, "pipeline off")
  expect(c.exec("SELECT 'after'").values, [["after"]], "after the pipeline")
end

check "copy" do |c|
  c.exec("DROP TABLE IF EXISTS rb_copy")
  c.exec("CREATE TABLE rb_copy (id int PRIMARY KEY, name text, day date)")
  r = c.copy_data("COPY rb_copy FROM STDIN") do
    (1..20_000).each_slice(1000) do |slice|
      c.put_copy_data(slice.map { |i| "#{i}\tname #{i}\t2024-01-#{format('%02d', i % 28 + 1)}\n" }.join)
    end
  end
  expect(r.cmd_tuples, 20_000, "rows copied in")
  enco = PG::TextEncoder::CopyRow.new
  c.copy_data("COPY rb_copy (id, name) FROM STDIN", enco) do
    c.put_copy_data([20_001, "tab\there"])
    c.put_copy_data([20_002, nil])
  end
  rows = []
  c.copy_data("COPY (SELECT id, name FROM rb_copy WHERE id IN (1, 20001, 20002) ORDER BY id) TO STDOUT WITH (FORMAT csv)") do
    while (line = c.get_copy_data)
      rows << line
    end
  end
  expect(rows, ["1,name 1\n", "20001,tab\there\n", "20002,\n"], "rows copied out")
  n = 0
  first = nil
  deco = PG::TextDecoder::CopyRow.new
  c.copy_data("COPY rb_copy TO STDOUT", deco) do
    while (row = c.get_copy_data)
      first ||= row
      n += 1
    end
  end
  expect(n, 20_002, "all rows copied out")
  expect(first, ["1", "name 1", "2024-01-02"], "the first row, decoded")
  # A failing COPY raises, and the connection goes on.
  e = expect_error(PG::UniqueViolation, "duplicate in COPY") do
    c.copy_data("COPY rb_copy (id, name) FROM STDIN") do
      c.put_copy_data("30001\tx\n1\tdup\n")
    end
  end
  expect(sqlstate(e), "23505", "its SQLSTATE")
  # A COPY the client ends with an error of its own (an exception in the block: CopyFail).
  expect_error(RuntimeError, "an exception in the copy block") do
    c.copy_data("COPY rb_copy (id, name) FROM STDIN") do
      c.put_copy_data("30002\tx\n")
      raise "stop here"
    end
  end
  expect(c.exec("SELECT count(*), count(*) FILTER (WHERE id > 30000) FROM rb_copy").values, [["20002", "0"]], "rows after the failed copies")
end

check "transactions and errors" do |c|
  other = connect
  begin
    first = nil
    c.transaction do
      c.exec_params("INSERT INTO rb_items VALUES ($1, $2)", [5000, "in a transaction"])
      first = c.exec("SELECT pg_backend_pid(), txid_current()").values
      expect(other.exec("SELECT count(*) FROM rb_items WHERE id = 5000").values, [["0"]], "the row before commit, seen by another client")
      expect(c.transaction_status, PG::PQTRANS_INTRANS, "in a transaction")
      c.exec("SAVEPOINT s1")
      c.exec_params("INSERT INTO rb_items VALUES ($1, $2)", [5001, "rolled back to the savepoint"])
      e = expect_error(PG::UniqueViolation, "duplicate key") { c.exec_params("INSERT INTO rb_items VALUES ($1, $2)", [1, "dup"]) }
      expect(sqlstate(e), "23505", "its SQLSTATE")
      expect(c.transaction_status, PG::PQTRANS_INERROR, "transaction status after the error")
      e = expect_error(PG::InFailedSqlTransaction, "a statement after the error") { c.exec("SELECT 1") }
      expect(sqlstate(e), "25P02", "its SQLSTATE")
      c.exec("ROLLBACK TO SAVEPOINT s1")
      c.exec("RELEASE SAVEPOINT s1")
      expect(c.exec("SELECT pg_backend_pid(), txid_current()").values, first, "one transaction, one server")
    end
    expect(c.transaction_status, PG::PQTRANS_IDLE, "idle after commit")
    expect(other.exec("SELECT id, name FROM rb_items WHERE id IN (5000, 5001) ORDER BY id").values,
           [["5000", "in a transaction"]], "rows after commit")
    # An exception in the block rolls back.
    expect_error(ZeroDivisionError, "an exception in a transaction") do
      c.transaction do
        c.exec("INSERT INTO rb_items VALUES (5002, 'rolled back')")
        1 / 0
      end
    end
    expect(c.exec("SELECT count(*) FROM rb_items WHERE id = 5002").values, [["0"]], "rows after rollback")
    e = expect_error(PG::DivisionByZero, "division by zero") { c.exec_params("SELECT 1 / $1::int", [0]) }
    expect(e.result.error_field(PG::Result::PG_DIAG_MESSAGE_PRIMARY), "division by zero", "the error's message")
    e = expect_error(PG::UndefinedTable, "a missing table") { c.exec("SELECT * FROM rb_no_such_table") }
    expect(sqlstate(e), "42P01", "its SQLSTATE")
    expect(c.exec("SELECT 'still fine'").values, [["still fine"]], "after the errors")
  ensure
    other.close
  end
end

check "cancel" do |c|
  a = connect
  outcome = nil
  slow = Thread.new do
    a.exec("SELECT pg_sleep(30)")
    outcome = :finished
  rescue StandardError => e
    outcome = e
  end
  others = {}
  ot = (0..1).map do |k|
    Thread.new do
      o = connect
      others[k] = o.exec_params("SELECT $1::text FROM pg_sleep(1.5)", ["other #{k}"]).values
      o.close
    end
  end
  start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  sleep 0.5
  err = a.cancel
  raise "cancel: #{err}" if err
  raise "the cancelled query still runs after 10s" unless slow.join(10)
  raise "the cancelled query ended with #{outcome.inspect}, want PG::QueryCanceled" unless outcome.is_a?(PG::QueryCanceled)
  took = Process.clock_gettime(Process::CLOCK_MONOTONIC) - start
  raise format("cancel took %.1fs", took) if took > 10
  expect(a.exec_params("SELECT $1::int", [5]).values, [["5"]], "after the cancel")
  ot.each(&:join)
  expect(others, { 0 => [["other 0"]], 1 => [["other 1"]] }, "the other clients' queries")
  a.close
end

check "single row mode" do |c|
  c.send_query_params("SELECT g, md5(g::text) FROM generate_series(1, 50000) g", [])
  c.set_single_row_mode
  n = 0
  sum = 0
  last = nil
  while (r = c.get_result)
    r.check
    case r.result_status
    when PG::PGRES_SINGLE_TUPLE
      expect(r.ntuples, 1, "rows in a single-row result")
      n += 1
      sum += r.getvalue(0, 0).to_i
      last = r.values[0]
    when PG::PGRES_TUPLES_OK
      expect(r.ntuples, 0, "rows in the final result")
    else
      raise "unexpected result status #{r.res_status(r.result_status)}"
    end
    r.clear
  end
  expect([n, sum], [50_000, 50_000 * 50_001 / 2], "rows streamed")
  expect(last, ["50000", Digest::MD5.hexdigest("50000")], "the last row")
  expect(c.exec("SELECT 'after'").values, [["after"]], "after streaming")
end

check "type maps" do |c|
  # Reads pg_type (and friends) through the pooler, as Rails and Sequel do at connect.
  results = PG::BasicTypeMapForResults.new(c)
  queries = PG::BasicTypeMapForQueries.new(c)
  at = Time.utc(2024, 2, 29, 12, 34, 56.789r)
  r = c.exec_params("SELECT $1::int + 1 AS i, $2::text AS t, $3::timestamptz AS at, $4::bool AS b, " \
                    "$5::int[] AS a, $6::numeric AS n, $7::jsonb AS j, NULL::int AS z",
                    [41, "ünï", at, true, [1, 2, nil], BigDecimal("1.50"), '{"k": [1, 2]}'], 0, queries)
  r.type_map = results
  row = r.tuple(0).to_h
  expect(row["i"], 42, "int")
  expect(row["t"], "ünï", "text")
  expect(row["at"].utc, at, "timestamptz")
  expect(row["b"], true, "bool")
  expect(row["a"], [1, 2, nil], "int[]")
  expect(row["n"], BigDecimal("1.5"), "numeric")
  expect(row["j"], { "k" => [1, 2] }, "jsonb")
  expect(row["z"], nil, "NULL")
  # Binary results decoded by the same registry.
  bin = PG::BasicTypeMapForResults.new(c)
  r = c.exec_params("SELECT 7::int8 AS big, 'b'::text AS t, true AS b, 2.25::float8 AS f", [], 1)
  r.type_map = bin
  expect(r.values, [[7, "b", true, 2.25]], "binary results decoded")
  # The whole connection's results, as Sequel's pg extension sets it.
  c.type_map_for_results = results
  expect(c.exec("SELECT 3::int2 AS s, '2024-01-02'::date AS d").values, [[3, Date.new(2024, 1, 2)]], "connection's type map")
  c.type_map_for_results = PG::TypeMapAllStrings.new
end

check "connection settings" do |c|
  # Rails' configure_connection and Sequel's: SET commands once at connect. In transaction mode
  # each client's next query may run on a server another client set otherwise: sluice sets the
  # client's own settings again there, search_path among them (README, "Settings").
  settings = {
    "utc" => ["UTC", "iso_8601", "2024-01-01 00:00:00+00", "P1D", ["rb_a", "public"]],
    "tokyo" => ["Asia/Tokyo", "postgres", "2024-01-01 09:00:00+09", "1 day", ["rb_b", "public"]],
    "berlin" => ["Europe/Berlin", "sql_standard", "2024-01-01 01:00:00+01", "1 0:00:00", ["public"]],
  }
  setup = connect
  %w[rb_a rb_b].each { |schema| setup.exec("CREATE SCHEMA IF NOT EXISTS #{schema}") }
  setup.close
  in_threads(settings.map do |name, (zone, style, stamp, interval, path)|
    lambda do
      conn = connect
      begin
        conn.exec("SET client_min_messages TO 'warning'")
        conn.exec("SET standard_conforming_strings = on")
        conn.exec("SET intervalstyle = #{style}")
        conn.exec("SET SESSION timezone TO '#{zone}'")
        conn.exec("SET search_path TO #{path.join(', ')}")
        20.times do |i|
          r = conn.exec_params("SELECT $1::timestamptz::text, '1 day'::interval::text, current_schemas(false)::text, $2::int",
                               ["2024-01-01 00:00:00+00", i])
          got = r.values
          expect(got, [[stamp, interval, "{#{path.join(',')}}", i.to_s]], "#{name}: settings at query #{i}")
          r = conn.exec("SHOW timezone")
          expect(r.values, [[zone]], "#{name}: SHOW timezone at query #{i}")
        end
      ensure
        conn.close
      end
    end
  end)
end

check "listen and notify" do |c|
  if MODE == "session"
    other = connect
    begin
      c.exec("LISTEN rb_channel")
      other.exec_params("SELECT pg_notify('rb_channel', $1)", ["hello"])
      other.exec("NOTIFY rb_channel, 'world'")
      got = []
      2.times do
        c.wait_for_notify(5) { |channel, pid, payload| got << [channel, pid.positive?, payload] }
      end
      expect(got, [["rb_channel", true, "hello"], ["rb_channel", true, "world"]], "notifications")
      c.exec("UNLISTEN *")
    ensure
      other.close
    end
  else
    # In transaction mode a notification would go to whichever client next has the server:
    # sluice refuses LISTEN with a clear error, and the connection goes on.
    e = expect_error(PG::FeatureNotSupported, "LISTEN in transaction mode") { c.exec("LISTEN rb_channel") }
    expect(sqlstate(e), "0A000", "its SQLSTATE")
    msg = e.result.error_field(PG::Result::PG_DIAG_MESSAGE_PRIMARY)
    raise "the error does not say why: #{msg}" unless msg.include?("transaction pooling") && msg.include?("session")
    e = expect_error(PG::FeatureNotSupported, "LISTEN through exec_params") { c.exec_params("LISTEN rb_channel", []) }
    expect(sqlstate(e), "0A000", "its SQLSTATE")
    expect(c.exec("SELECT 'still fine'").values, [["still fine"]], "after the refused LISTEN")
    # NOTIFY works in either mode.
    c.exec("NOTIFY rb_channel, 'nobody listens'")
  end
end

require "bigdecimal"
require "digest"
require "date"

def main
  c = connect
  failed = false
  CHECKS.each do |name, fn|
    fn.call(c)
    puts "ok #{name}"
    $stdout.flush
  rescue Exception => e # rubocop:disable Lint/RescueException
    puts "FAIL #{name}: #{e.class}: #{e.message}\n#{e.backtrace.join("\n")}"
    $stdout.flush
    failed = true
    break
  end
  c.close
  exit 1 if failed
  puts "all ok"
end

main

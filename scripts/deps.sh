#!/usr/bin/env bash
# Makes sure the programs that sluice's tests, demo and benchmarks run are installed: PostgreSQL
# (initdb, pg_ctl, pg_basebackup, psql, pgbench), redis-server, pgbouncer, pgpool (pgpool-II, which
# only the cache benchmark runs), node and npm, Debian's python3 with asyncpg, psycopg (3) and
# psycopg2 for test/python (run with /usr/bin/python3, which sees Debian's python3-* packages; a
# python3 earlier on PATH, such as pyenv's, may not), a JDK (java, javac) with Debian's
# PostgreSQL JDBC driver (libpostgresql-jdbc-java: /usr/share/java/postgresql.jar) for test/java,
# Debian's ruby with ruby-pg for test/ruby (run with /usr/bin/ruby), and Debian's php-cli with
# php-pgsql (PDO pgsql and the pgsql extension) for test/php (run with /usr/bin/php).
#
# As root on Debian/Ubuntu it installs what is missing with apt-get (one apt-get update first).
# Otherwise it prints the apt-get command to run and exits 1.
#
# The tests start their own servers on free ports (internal/pgtest) and never use the distro's
# services, so as root it also stops and disables the services those packages install, which would
# otherwise hold ports 5432, 6379 and 6432 (and pgpool's 5433 and 9898). Set SLUICE_KEEP_SERVICES=1
# to leave them alone.
set -euo pipefail

packages=()
missing=()

if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
	missing+=("initdb")
	packages+=(postgresql postgresql-contrib)
elif ! compgen -G '/usr/lib/postgresql/*/bin/pgbench' >/dev/null && ! command -v pgbench >/dev/null; then
	missing+=("pgbench")
	packages+=(postgresql-contrib)
fi
if ! command -v psql >/dev/null; then
	missing+=("psql")
	packages+=(postgresql-client)
fi
if ! command -v redis-server >/dev/null; then
	missing+=("redis-server")
	packages+=(redis-server)
fi
if ! command -v pgbouncer >/dev/null; then
	missing+=("pgbouncer")
	packages+=(pgbouncer)
fi
if ! command -v pgpool >/dev/null && [ ! -x /usr/sbin/pgpool ]; then
	missing+=("pgpool")
	packages+=(pgpool2)
fi
if ! command -v node >/dev/null; then
	missing+=("node")
	packages+=(nodejs)
fi
if ! command -v npm >/dev/null; then
	missing+=("npm")
	packages+=(npm)
fi
# module:package pairs; each is checked with Debian's interpreter.
for mod_pkg in asyncpg:python3-asyncpg psycopg:python3-psycopg psycopg2:python3-psycopg2; do
	mod=${mod_pkg%%:*}
	pkg=${mod_pkg#*:}
	if [ ! -x /usr/bin/python3 ] || ! /usr/bin/python3 -c "import $mod" >/dev/null 2>&1; then
		missing+=("python3 $mod")
		packages+=("$pkg")
	fi
done
if ! command -v java >/dev/null || ! command -v javac >/dev/null; then
	missing+=("java/javac")
	packages+=(default-jdk-headless)
fi
if [ ! -f /usr/share/java/postgresql.jar ]; then
	missing+=("pgjdbc")
	packages+=(libpostgresql-jdbc-java)
fi

if [ ! -x /usr/bin/ruby ] || ! /usr/bin/ruby -e 'require "pg"' >/dev/null 2>&1; then
	missing+=("ruby pg")
	packages+=(ruby ruby-pg)
fi
# php-pgsql brings both pdo_pgsql and pgsql.
if [ ! -x /usr/bin/php ] || ! /usr/bin/php -r 'exit(extension_loaded("pdo_pgsql") && extension_loaded("pgsql") ? 0 : 1);' >/dev/null 2>&1; then
	missing+=("php pdo_pgsql pgsql")
	packages+=(php-cli php-pgsql)
fi

# stop_services stops the services of the packages above and keeps them from starting at boot,
# with systemd when it runs, else with the SysV scripts (and systemctl's offline disable, which
# only edits symlinks, for a later boot with systemd).
stop_services() {
	local svc
	for svc in postgresql redis-server pgbouncer pgpool2; do
		if [ ! -e "/lib/systemd/system/$svc.service" ] && [ ! -e "/etc/init.d/$svc" ]; then
			continue
		fi
		if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
			systemctl disable --now "$svc" >/dev/null 2>&1 || systemctl stop "$svc" >/dev/null 2>&1 || true
			continue
		fi
		if [ -x "/etc/init.d/$svc" ]; then
			if command -v service >/dev/null; then
				service "$svc" stop >/dev/null 2>&1 || true
			else
				"/etc/init.d/$svc" stop >/dev/null 2>&1 || true
			fi
		fi
		if command -v update-rc.d >/dev/null; then
			update-rc.d "$svc" disable >/dev/null 2>&1 || true
		fi
		if command -v systemctl >/dev/null; then
			systemctl disable "$svc" >/dev/null 2>&1 || true
		fi
	done
	# Debian's postgresql-common clusters (e.g. 15/main on 5432): stopped, and "manual" so that
	# the postgresql service leaves them alone if it ever starts again.
	if command -v pg_lsclusters >/dev/null; then
		local version cluster port status rest
		while read -r version cluster port status rest; do
			if [ "$status" = "online" ] || [ "${status#online}" != "$status" ]; then
				pg_ctlcluster "$version" "$cluster" stop -m fast || true
			fi
			if [ -f "/etc/postgresql/$version/$cluster/start.conf" ]; then
				echo manual >"/etc/postgresql/$version/$cluster/start.conf"
			fi
		done < <(pg_lsclusters --no-header 2>/dev/null)
	fi
	# Report (but do not kill) anything else still on the well-known ports.
	if command -v ss >/dev/null; then
		local held
		held=$(ss -Hltn '( sport = :5432 or sport = :5433 or sport = :6379 or sport = :6432 or sport = :9898 )' 2>/dev/null || true)
		if [ -n "$held" ]; then
			echo "deps: note: something still listens on a well-known port (tests use free ports):" >&2
			echo "$held" >&2
		fi
	fi
}

if [ "${#packages[@]}" -gt 0 ]; then
	echo "deps: missing: ${missing[*]}"
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: run as root:" >&2
		echo "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${packages[*]}"
		exit 1
	fi
	if ! command -v apt-get >/dev/null; then
		echo "deps: no apt-get here; install these yourself: ${packages[*]}" >&2
		exit 1
	fi
	# Keep the packages' services from starting during the install (Debian's policy-rc.d
	# protocol), unless the system already has a policy.
	policy=/usr/sbin/policy-rc.d
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\n# Written by sluice scripts/deps.sh for the duration of an install.\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		trap 'rm -f "$policy"' EXIT
	fi
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"
fi

if [ "$(id -u)" -eq 0 ] && [ "${SLUICE_KEEP_SERVICES:-}" != 1 ]; then
	stop_services
fi
echo "deps: ok"

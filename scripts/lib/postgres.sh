# Sourced by scripts: `start_postgres` starts a throwaway PostgreSQL cluster for the tests and benchmarks, and stops
# it when the script exits. Installs Debian's postgresql package if it is missing. PostgreSQL refuses to run as root,
# so the cluster runs as an unprivileged user (`nobody` when the script runs as root), in a temporary directory,
# on a free loopback port, with password authentication.
#
# With POSTGRES_DURABLE=1 the cluster keeps PostgreSQL's durable defaults (for benchmarks); otherwise fsync is off.
#
# Sets KEYSMITH_TEST_POSTGRES_URL (postgres://keysmith:…@127.0.0.1:PORT/postgres) and KEYSMITH_TEST_POSTGRES_CTL (a
# script taking start|stop, for the tests that stop the database under a running server) and
# KEYSMITH_TEST_POSTGRES_DATA (the cluster's data directory).

start_postgres() {
    local bindir
    bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
        source scripts/lib/debian.sh
        ensure_debian_package postgresql
        bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    fi
    if ! command -v psql >/dev/null 2>&1; then
        source scripts/lib/debian.sh
        ensure_debian_package postgresql-client psql
    fi
    local owner=""
    if [ "$(id -u)" = 0 ]; then owner=nobody; fi
    POSTGRES_DIR=$(mktemp -d /tmp/keysmith-postgres.XXXXXX)
    chmod 755 "$POSTGRES_DIR"
    local password
    password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    printf '%s\n' "$password" > "$POSTGRES_DIR/password"
    [ -z "$owner" ] || chown -R "$owner" "$POSTGRES_DIR"
    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    local as=""
    [ -z "$owner" ] || as="runuser -u $owner --"
    $as "$bindir/initdb" -D "$POSTGRES_DIR/data" -U keysmith --pwfile="$POSTGRES_DIR/password" \
        --auth=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$POSTGRES_DIR/initdb.log" 2>&1 \
        || { cat "$POSTGRES_DIR/initdb.log" >&2; return 1; }
    # The tests make a database each and run many servers at once: plenty of connections. fsync off: the cluster
    # is thrown away, and the crash tests kill Keysmith, not PostgreSQL. Benchmarks keep it on.
    local durability="-c fsync=off"
    if [ "${POSTGRES_DURABLE:-}" = 1 ]; then durability=""; fi
    cat > "$POSTGRES_DIR/control" <<CONTROL
#!/usr/bin/env bash
# start|stop the test cluster
exec $as "$bindir/pg_ctl" -D "$POSTGRES_DIR/data" -l "$POSTGRES_DIR/server.log" -w -t 60 \
    -o "-p $port -k $POSTGRES_DIR -c listen_addresses=127.0.0.1 -c max_connections=500 $durability -c shared_buffers=128MB" \
    "\$1" \$( [ "\$1" = stop ] && echo "-m fast" )
CONTROL
    chmod 755 "$POSTGRES_DIR/control"
    "$POSTGRES_DIR/control" start >/dev/null || { cat "$POSTGRES_DIR/server.log" >&2; return 1; }
    export KEYSMITH_TEST_POSTGRES_URL="postgres://keysmith:$password@127.0.0.1:$port/postgres?sslmode=disable"
    export KEYSMITH_TEST_POSTGRES_CTL="$POSTGRES_DIR/control"
    export KEYSMITH_TEST_POSTGRES_DATA="$POSTGRES_DIR/data"   # the benchmarks read postmaster.pid for CPU time
    trap stop_postgres EXIT
    echo "==> PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (throwaway cluster in $POSTGRES_DIR)"
}

stop_postgres() {
    if [ -n "${POSTGRES_DIR:-}" ] && [ -d "$POSTGRES_DIR" ]; then
        "$POSTGRES_DIR/control" stop >/dev/null 2>&1 || true
        rm -rf "$POSTGRES_DIR"
    fi
}

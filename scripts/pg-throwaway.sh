#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests, benchmarks and scripts/cluster.sh: initdb into a folder,
# pg_ctl on a loopback port (never the system service), removed again by `stop`.
#
#   scripts/pg-throwaway.sh start DIR [PORT]   # prints the connection URL (postgres://parley@127.0.0.1:PORT/parley)
#   scripts/pg-throwaway.sh stop DIR           # stops the server and removes DIR
#   scripts/pg-throwaway.sh restart DIR        # pg_ctl restart -m fast (the data stays)
#   scripts/pg-throwaway.sh halt DIR           # pg_ctl stop -m fast, keeping the data (tests: the database goes away)
#   scripts/pg-throwaway.sh resume DIR         # pg_ctl start again after halt
#
# The server binaries come from Debian's `postgresql` package (/usr/lib/postgresql/<version>/bin; scripts/setup.sh
# installs it when missing). initdb refuses to run as root: as root the server runs as the `postgres` user
# (created by the package), otherwise as the calling user. Authentication is `trust`, on 127.0.0.1 only.
set -euo pipefail

command=${1:-}
dir=${2:-}
if [ -z "$command" ] || [ -z "$dir" ]; then
  echo "usage: $0 start|stop|restart|halt|resume DIR [PORT]" >&2
  exit 2
fi

pg_bin() {
  local found
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -n "$found" ] && [ -x "$found/initdb" ]; then echo "$found"; return; fi
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return; fi
  echo "pg-throwaway: PostgreSQL server binaries not found (install Debian's postgresql package)" >&2
  exit 1
}

# Runs a server binary as the server's user: `postgres` when we are root, else ourselves.
as_server_user() {
  if [ "$(id -u)" = "0" ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

BIN=$(pg_bin)
case "$command" in
  start)
    port=${3:-$(free_port)}
    mkdir -p "$dir"
    if [ "$(id -u)" = "0" ]; then
      chown postgres: "$dir"
      runuser -u postgres -- test -w "$dir" || {
        echo "pg-throwaway: the postgres user cannot reach $dir (a parent folder is private); use a folder under /tmp" >&2
        exit 1
      }
    fi
    as_server_user "$BIN/initdb" -D "$dir/data" -U parley --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
      >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    # Loopback TCP only; the Unix socket goes into DIR (not /var/run/postgresql, which may not exist or be the
    # system server's). Settings for this workload: see deploy/postgresql.md.
    cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
shared_buffers = 256MB
synchronous_commit = on
fsync = on
wal_level = minimal
max_wal_senders = 0
wal_compression = on
checkpoint_timeout = 15min
max_wal_size = 2GB
logging_collector = off
EOF
    as_server_user "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    as_server_user "$BIN/createdb" -h 127.0.0.1 -p "$port" -U parley parley
    echo "postgres://parley@127.0.0.1:$port/parley"
    ;;
  restart)
    as_server_user "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -m fast restart >/dev/null
    ;;
  halt)
    as_server_user "$BIN/pg_ctl" -D "$dir/data" -w -t 60 -m fast stop >/dev/null
    ;;
  resume)
    as_server_user "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
    ;;
  stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_server_user "$BIN/pg_ctl" -D "$dir/data" -w -t 60 -m fast stop >/dev/null || true
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start|stop|restart|halt|resume DIR [PORT]" >&2
    exit 2
    ;;
esac

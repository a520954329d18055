#!/usr/bin/env bash
# A PostgreSQL cluster that lives only for one test run: `source` this file, call
# start_throwaway_postgres (it exports DATABASE_URL), and stop_throwaway_postgres at the end.
# initdb refuses to run as root, so as root the cluster runs as the `postgres` account (or
# a `sagaflow-pg` account this script creates) in a directory that account owns.

find_pg_bin() {
  if command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
    return
  fi
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then
    echo "$dir"
    return
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "no PostgreSQL server binaries found; installing Debian's postgresql package" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$dir" ] && echo "$dir" && return
  fi
  echo "error: PostgreSQL server binaries (initdb, pg_ctl) not found; install PostgreSQL or set DATABASE_URL" >&2
  return 1
}

start_throwaway_postgres() {
  local bin user run_as port
  bin=$(find_pg_bin)
  PG_THROWAWAY_DIR=$(mktemp -d /tmp/sagaflow-pg.XXXXXX)
  chmod 755 "$PG_THROWAWAY_DIR"
  run_as=()
  user=$(id -un)
  if [ "$(id -u)" = 0 ]; then
    user=postgres
    if ! id "$user" >/dev/null 2>&1; then
      user=sagaflow-pg
      id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
    fi
    chown "$user" "$PG_THROWAWAY_DIR"
    run_as=(runuser -u "$user" --)
  fi
  "${run_as[@]}" "$bin/initdb" -D "$PG_THROWAWAY_DIR/data" -U "$user" -A trust --no-sync -E UTF8 >/dev/null
  # A port nobody listens on: try a few random ones.
  for _ in $(seq 1 20); do
    port=$((20000 + RANDOM % 20000))
    if "${run_as[@]}" "$bin/pg_ctl" -D "$PG_THROWAWAY_DIR/data" -l "$PG_THROWAWAY_DIR/log" -w -t 30 \
        -o "-p $port -k $PG_THROWAWAY_DIR -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >/dev/null; then
      PG_THROWAWAY_BIN=$bin
      PG_THROWAWAY_RUN_AS=("${run_as[@]}")
      export DATABASE_URL="postgres://$user@127.0.0.1:$port/postgres"
      return 0
    fi
  done
  echo "error: could not start a throwaway PostgreSQL; its log:" >&2
  cat "$PG_THROWAWAY_DIR/log" >&2 || true
  return 1
}

stop_throwaway_postgres() {
  if [ -n "${PG_THROWAWAY_DIR:-}" ] && [ -d "$PG_THROWAWAY_DIR/data" ]; then
    "${PG_THROWAWAY_RUN_AS[@]}" "$PG_THROWAWAY_BIN/pg_ctl" -D "$PG_THROWAWAY_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PG_THROWAWAY_DIR"
  fi
}

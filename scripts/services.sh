# Shell helpers that start and stop private service instances under a run directory.
# Sourced by scripts/quickstart and bench/e2e; the C++ test fixtures do the same in-process.
# Every service binds 127.0.0.1 only and writes its pid file and log under $RUN_DIR.

PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {  # port [seconds]
  local port=$1 deadline=$((SECONDS + ${2:-20}))
  while ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}

# PostgreSQL refuses to run as root: run it as the postgres system user then.
as_pg_user() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_redis() {  # port
  local port=$1 dir=$RUN_DIR/redis
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
  wait_port "$port" || { echo "redis did not start; see $dir/redis.log" >&2; return 1; }
}

start_postgres() {  # port dbname
  local port=$1 db=$2 dir=$RUN_DIR/postgres
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_pg_user "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres --no-sync >"$dir/initdb.log" 2>&1 \
      || { echo "initdb failed; see $dir/initdb.log" >&2; return 1; }
  fi
  as_pg_user "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off" start >/dev/null \
    || { echo "postgres did not start; see $dir/postgres.log" >&2; return 1; }
  as_pg_user "$PG_BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$db'" \
    | grep -q 1 || as_pg_user "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres "$db"
}

start_sink() {  # port [extra smtp-sink args…]
  local port=$1; shift
  local dir=$RUN_DIR/sink
  mkdir -p "$dir/dump"
  chmod 777 "$dir/dump"
  local user_args=()
  [ "$(id -u)" -eq 0 ] && user_args=(-u nobody)
  smtp-sink "${user_args[@]}" -d "$dir/dump/%H%M%S." "$@" "127.0.0.1:$port" 1024 >"$dir/sink.log" 2>&1 &
  echo $! >"$dir/sink.pid"
  wait_port "$port" || { echo "smtp-sink did not start; see $dir/sink.log" >&2; return 1; }
}

stop_pidfile() {  # file
  local f=$1
  [ -f "$f" ] || return 0
  local pid
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

stop_all() {
  stop_pidfile "$RUN_DIR/deliverd.pid"
  stop_pidfile "$RUN_DIR/sink/sink.pid"
  stop_pidfile "$RUN_DIR/redis/redis.pid"
  if [ -f "$RUN_DIR/postgres/data/postmaster.pid" ]; then
    as_pg_user "$PG_BIN/pg_ctl" -D "$RUN_DIR/postgres/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

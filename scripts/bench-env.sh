# Sourced by the benchmark scripts that need PostgreSQL: a work folder and a
# private PostgreSQL instance (scripts/pg-instance.sh), both removed on exit
# together with the server the script started (its pid in $server_pid).
#
#   . scripts/bench-env.sh; bench_env NAME   # sets work, pg_dir, pg_url
bench_env() {
  work=$(mktemp -d "/tmp/wecare-$1.XXXXXX")
  pg_dir=$(mktemp -d "/tmp/wecare-$1-pg.XXXXXX")
  server_pid=""
  trap bench_env_cleanup EXIT
  pg_url=$(scripts/pg-instance.sh start "$pg_dir")
}

bench_env_cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  scripts/pg-instance.sh stop "$pg_dir" 2>/dev/null || true
  rm -rf "$work" "$pg_dir"
}

#!/usr/bin/env bash
# handoff on PostgreSQL under wrk, out of process: one replica, then two replicas sharing one
# database, each loaded by its own wrk at the same time. Prints req/s (2xx), p50/p99, the
# servers' CPU per delivery and whether every acknowledged delivery is in the database.
#
#   cargo build --release && bench/wrk-postgres.sh
#
# Knobs: HANDOFF_BIN (default target/release/handoff), PG (default
# postgres://postgres@127.0.0.1:5432), CONNS (per replica, default 32), DUR (default 15s),
# REPLICAS (default "1 2"), JOB (1: a job with debounce 5s / max_wait 1m listens, the default),
# PG_PARAMS (appended to the database URL, e.g. "?sslmode=disable"; default none: TLS if offered).
# Needs wrk and psql; uses the wrk script of ../shared/bench (run its run.sh once to make it).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${HANDOFF_BIN:-$ROOT/target/release/handoff}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
CONNS=${CONNS:-32}
DUR=${DUR:-15s}
REPLICAS=${REPLICAS:-"1 2"}
JOB=${JOB:-1}
PG_PARAMS=${PG_PARAMS:-}
LUA=${LUA:-/tmp/bench/post.lua}
SECRET=${WEBHOOK_SECRET:-bench-secret-do-not-use-in-prod-7f3a9c}
T=$(mktemp -d /tmp/handoff-wrk-pg.XXXXXX)
trap 'kill $(cat "$T"/*.pid 2>/dev/null) 2>/dev/null || true' EXIT
[ -f "$LUA" ] || { echo "no $LUA: run ../shared/bench/run.sh once first" >&2; exit 2; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

for n in $REPLICAS; do
  db="handoff_wrk_$$_$n"
  psql "$PG/postgres" -qc "CREATE DATABASE $db" >/dev/null
  pids=()
  for i in $(seq 1 "$n"); do
    port=$((8100 + i))
    { printf '[server]\nlisten = "127.0.0.1:%s"\n\n[store]\nurl = "%s/%s%s"\n\n' "$port" "$PG" "$db" "$PG_PARAMS"
      printf '[sources.prod]\nkind = "hmac"\nsecret = { env = "BENCH_SECRET" }\n'
      [ "$JOB" = 1 ] && printf '\n[jobs.transform]\nafter = ["prod"]\ndebounce = "5s"\nmax_wait = "1m"\n[[jobs.transform.actions]]\nkind = "command"\nprogram = "true"\n'
    } > "$T/r$i.toml"
    BENCH_SECRET=$SECRET RUST_LOG=warn "$BIN" serve --config "$T/r$i.toml" > "$T/r$i.log" 2>&1 &
    echo $! > "$T/r$i.pid"; pids+=($!)
  done
  for i in $(seq 1 "$n"); do
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$((8100 + i))/readyz" >/dev/null && break; sleep 0.1; done
    wrk -t2 -c"$CONNS" -d3s -s "$LUA" "http://127.0.0.1:$((8100 + i))/hooks/prod" >/dev/null   # warm-up
  done
  sleep 1
  already=$(psql "$PG/$db" -tAc "SELECT count(*) FROM events")
  before=0; for p in "${pids[@]}"; do before=$((before + $(cpu_ticks "$p"))); done
  loads=()
  for i in $(seq 1 "$n"); do
    wrk -t2 -c"$CONNS" -d"$DUR" --latency -s "$LUA" "http://127.0.0.1:$((8100 + i))/hooks/prod" > "$T/wrk$i.out" &
    loads+=($!)
  done
  wait "${loads[@]}"
  after=0; for p in "${pids[@]}"; do after=$((after + $(cpu_ticks "$p"))); done
  hz=$(getconf CLK_TCK)
  total=0
  for i in $(seq 1 "$n"); do
    line=$(grep WRKJSON "$T/wrk$i.out" | sed 's/^WRKJSON //')
    reqs=$(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d['requests'] - d['err_status'])" "$line")
    total=$((total + reqs))
    python3 -c "import json,sys; d=json.loads(sys.argv[1]); s=d['duration_us']/1e6; print(f'  replica $i: {(d[\"requests\"]-d[\"err_status\"])/s:,.0f} req/s 2xx, p50 {d[\"lat_p50_us\"]/1000:.2f} ms, p99 {d[\"lat_p99_us\"]/1000:.2f} ms, non-2xx {d[\"err_status\"]}')" "$line"
  done
  sleep 1
  recorded=$(( $(psql "$PG/$db" -tAc "SELECT count(*) FROM events") - already ))
  secs=${DUR%s}
  python3 -c "
n, total, secs, cpu, rec = $n, $total, $secs, ($after - $before) / $hz, $recorded
print(f'{n} replica(s), {$CONNS} connections each: {total/secs:,.0f} deliveries/s in all, '
      f'{cpu*1e6/max(total,1):.0f} us server CPU per delivery, recorded {rec} for {total} acknowledged (in flight at the end: recorded, not counted by wrk)')"
  for p in "${pids[@]}"; do kill "$p"; done
  for p in "${pids[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
  rm -f "$T"/*.pid
  psql "$PG/postgres" -qc "DROP DATABASE $db" >/dev/null
done

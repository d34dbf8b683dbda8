# shellcheck shell=bash
# Scenario A's "mxgate, N sessions" rows, sourced by scripts/bench.sh (see BENCHMARKS.md): the
# same mxgate as the "mxgate" row, started on a store that already holds N live sessions with N
# valid access tokens, measured with requests that cycle through those tokens (not one hot token).
#
# Seeding: examples/seed_sessions.rs stores the sessions through mxgate's own Sessions::create and
# Sessions::issue_tokens (what a login does), into the store of the row's own mxgate.yml, before
# that mxgate starts. Every durable redb write costs an fsync (about 3.5 ms on a VM disk, so
# 100,000 sessions of five writes each would take half an hour): the store is written on tmpfs
# (/dev/shm) when there is one and then moved to the row's data dir — the same bytes — before
# mxgate starts on it. Each mode seeds its own store, so its tokens are fresh and nothing carries
# over from the other mode.
#
# Measured per row besides what every row gets: the seeding time; RSS after start-up (once the
# start-up store purge has run; the store full, nothing cached) and after priming (every token used once, so the token cache holds
# what fits its memory budget, as after an access-token lifetime of traffic from all of them); and the store
# reads per request of each pass (mxgate_store_duration_seconds_count{op="get"} on the row's
# /metrics: 0 = every request answered from the in-memory cache). No fixed-rate passes: oha sends
# one fixed header set, so it cannot spread requests over many tokens.
#
# Settings: BENCH_SESSIONS="10000 100000" (one row per count; "" = none), BENCH_SESSION_TOKENS=0
# (distinct tokens the load cycles through, spread over the N; 0 = all N).

SESSION_COUNTS=${BENCH_SESSIONS-10000 100000}
SESSION_TOKENS=${BENCH_SESSION_TOKENS:-0}
SEED_BIN=$ROOT/target/release/examples/seed_sessions
SEED_TMPFS=/dev/shm
declare -A SESSION_FILE=()    # row target -> the file of tokens its load cycles through
declare -A SESSION_METRICS=() # row target -> its /metrics URL
declare -A SESSION_PORT=()    # <count>.<mode> -> listen port; <count>.<mode>.admin -> admin port
SESSION_GETS_BEFORE=""
SEED_DIRS=() # seeding dirs on tmpfs, removed once moved (or on exit)
PRIMED=""

for n in $SESSION_COUNTS; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "BENCH_SESSIONS must be session counts (\"10000 100000\"), not '$SESSION_COUNTS'"
done
[[ $SESSION_TOKENS =~ ^[0-9]+$ ]] || die "BENCH_SESSION_TOKENS must be a number (0 = all), not '$SESSION_TOKENS'"
want A || SESSION_COUNTS=""

sessions_label() { # sessions_label <count>: 10000 -> 10k, 100000 -> 100k, 1500 -> 1.5k
  awk -v n="$1" 'BEGIN {
    if (n >= 1000000 && n % 100000 == 0) printf "%gM", n / 1000000
    else if (n >= 1000 && n % 100 == 0) printf "%gk", n / 1000
    else printf "%d", n }'
}
sessions_target() { echo "mxgate, $(sessions_label "$1") sessions"; } # the row's name in the report

# sessions_prepare: builds the seeder (with BENCH_BUILD=1) and picks the rows' ports.
sessions_prepare() {
  [ -n "$SESSION_COUNTS" ] || return 0
  if [ "${BENCH_BUILD:-1}" = 1 ]; then
    say "building the session seeder (examples/seed_sessions.rs, release)"
    cargo build --release --quiet --example seed_sessions
  fi
  [ -x "$SEED_BIN" ] || die "$SEED_BIN is missing: cargo build --release --example seed_sessions (or BENCH_BUILD=1)"
  # shellcheck disable=SC2153 # PORT: bench.sh's ports, assigned before this is called
  local taken=" ${PORT[*]} $P_UP $P_NGX_B $P_GW_B $P_CORE $P_REDIS " free mode n key
  local -a keys=()
  for mode in pinned cores; do
    for n in $SESSION_COUNTS; do keys+=("$n.$mode" "$n.$mode.admin"); done
  done
  # Fresh ports, none of those bench.sh took already.
  for free in $(free_ports $((${#keys[@]} * 2))); do
    [[ $taken == *" $free "* ]] && continue
    key=${keys[${#SESSION_PORT[@]}]:-}
    [ -n "$key" ] || break
    SESSION_PORT[$key]=$free
  done
  [ "${#SESSION_PORT[@]}" = "${#keys[@]}" ] || die "could not find free ports for the session rows"
}

sessions_proc() { echo "mxgate-s$1.$2"; } # sessions_proc <count> <mode>: the process (and dir) name

# sessions_start <mode>: per count, seeds a store, starts mxgate on it, records its memory at
# start-up, primes its token cache and records its memory again (results/sessions.tsv).
sessions_start() {
  local mode=$1 n name dir port admin seed_dir started_at seed_s rss_start
  for n in $SESSION_COUNTS; do
    name=$(sessions_proc "$n" "$mode")
    dir=$TMP/$name
    port=${SESSION_PORT[$n.$mode]} admin=${SESSION_PORT[$n.$mode.admin]}
    write_mxgate_config "$name" "$port" "http://127.0.0.1:$P_UP" oidc
    echo "admin_listen: 127.0.0.1:$admin" >>"$dir/mxgate.yml"
    if [ -d "$SEED_TMPFS" ] && [ -w "$SEED_TMPFS" ]; then
      seed_dir=$(mktemp -d "$SEED_TMPFS/mxgate-bench-seed.XXXXXX")
      SEED_DIRS+=("$seed_dir")
      ln -s "$seed_dir" "$dir/data"
    else
      say "no writable $SEED_TMPFS: seeding on disk, one fsync per write (slow)"
      seed_dir=""
    fi
    say "scenario A, $mode mode: seeding $n sessions for $(sessions_target "$n")"
    started_at=$(date +%s.%N)
    (cd "$dir" && env BENCH_OIDC_CLIENT_SECRET="$MXGATE_OIDC_SECRET" MXGATE_LOG=warn \
      "$SEED_BIN" --config "$dir/mxgate.yml" --count "$n" --tokens-out "$dir/all-tokens.txt") >"$dir/seed.log" 2>&1 ||
      die "seeding $n sessions failed: $(tail -5 "$dir/seed.log")"
    seed_s=$(awk -v a="$started_at" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    if [ -n "$seed_dir" ]; then # the store onto the disk, where mxgate keeps it
      rm "$dir/data"
      cp -a "$seed_dir" "$dir/data"
      rm -rf "$seed_dir"
    fi
    sessions_pick_tokens "$dir/all-tokens.txt" "$n" >"$dir/tokens.txt"
    launch_mxgate "$name"
    wait_for "$name" "$dir/mxgate.log" curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz"
    # The store purge runs once at start-up and reads every entry: memory after it.
    wait_for "$name's start-up purge" "$dir/mxgate.log" store_purged "http://127.0.0.1:$admin/metrics"
    rss_start=$(mem_kb VmRSS "$(pid_of "$name")")
    sessions_prime "$name" "$dir/tokens.txt" "http://127.0.0.1:$port/mcp" "http://127.0.0.1:$admin/metrics"
    # mode, target, sessions, seeding s, RSS at start-up kB, RSS primed kB, the prime's summary
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$(sessions_target "$n")" "$n" "$seed_s" "$rss_start" \
      "$(mem_kb VmRSS "$(pid_of "$name")")" "$PRIMED" >>"$RESULTS/sessions.tsv"
  done
}

# sessions_prime <name> <tokens file> <url> <metrics url>: sends every token once (wrk cycling
# through the file, until mxgate counted as many admission decisions as there are tokens); sets
# PRIMED to "prime: tokens=N admitted=N refused=0"; a refusal stops the bench.
sessions_prime() {
  local name=$1 tokens ok0 all0 ok all out=$TMP/$1/prime.txt
  tokens=$(wc -l <"$2")
  say "$name: priming, every one of $tokens tokens once"
  read -r ok0 all0 < <(admissions "$4")
  BENCH_MODE=static BENCH_TOKEN="" BENCH_HOST="" BENCH_TOKENS_FILE=$2 \
    ${PIN_LOAD[@]+"${PIN_LOAD[@]}"} wrk -t1 -c32 -d600s --timeout "$TIMEOUT" -s "$LUA" "$3" >"$out" 2>&1 &
  started "prime-$name" $! INT
  while kill -0 "$(pid_of "prime-$name")" 2>/dev/null; do
    read -r ok all < <(admissions "$4")
    [ $((all - all0)) -ge "$tokens" ] && break
    sleep 0.2
  done
  # shellcheck disable=SC2154 # pids: bench.sh's started processes; the wrk above is the last
  stop_index $((${#pids[@]} - 1))
  read -r ok all < <(admissions "$4")
  [ $((all - all0)) -ge "$tokens" ] || die "priming $name ended early: $(cat "$out")"
  [ $((all - all0)) = $((ok - ok0)) ] || die "priming $name: $((all - all0 - ok + ok0)) of $((all - all0)) requests refused"
  PRIMED="prime: tokens=$tokens admitted=$((ok - ok0)) refused=0"
}

admissions() { # admissions <metrics url>: "<admitted> <all>" admission decisions so far
  curl -fsS "$1" | awk '/^mxgate_authentications_total\{/ { all += $NF; if ($0 ~ /reason="ok"/) ok += $NF }
    END { print ok + 0, all + 0 }'
}

# sessions_pick_tokens <file> <count>: the tokens the load cycles through, BENCH_SESSION_TOKENS of
# them spread evenly over the file (all when 0 or more than there are).
sessions_pick_tokens() {
  awk -v want="$SESSION_TOKENS" -v n="$2" 'want == 0 || want >= n || (NR - 1) % int(n / want) == 0 && ++k <= want' "$1"
}

sessions_add_rows() { # sessions_add_rows <mode>: the rows of this mode (after bench.sh's own)
  local mode=$1 n name target
  for n in $SESSION_COUNTS; do
    name=$(sessions_proc "$n" "$mode")
    target=$(sessions_target "$n")
    add_row "$target" "$name" "http://127.0.0.1:${SESSION_PORT[$n.$mode]}" "$(head -1 "$TMP/$name/tokens.txt")"
    SESSION_FILE[$target]=$TMP/$name/tokens.txt
    SESSION_METRICS[$target]=http://127.0.0.1:${SESSION_PORT[$n.$mode.admin]}/metrics
  done
}

sessions_row() { [ -n "${SESSION_FILE[$1]:-}" ]; } # sessions_row <target>: is it a session row?
sessions_tokens_file() { echo "${SESSION_FILE[$1]:-}"; }

store_gets() { # store_gets <metrics url>: store reads so far (stops the bench when not found)
  local gets
  gets=$(curl -fsS "$1" | awk '/^mxgate_store_duration_seconds_count\{op="get"\}/ { print $2 + 0; found = 1 }
    END { exit !found }') || die "no store read count in $1"
  echo "$gets"
}

store_purged() { # store_purged <metrics url>: succeeds once the store purge has run
  curl -fsS "$1" | awk '/^mxgate_store_duration_seconds_count\{op="purge"\}/ && $2 >= 1 { found = 1 } END { exit !found }'
}

sessions_before() { # sessions_before <target>: before a measurement of the row
  SESSION_GETS_BEFORE=""
  if sessions_row "$1"; then SESSION_GETS_BEFORE=$(store_gets "${SESSION_METRICS[$1]}"); fi
}

sessions_after() { # sessions_after <mode> <target> <connections> <round>: results/session_store_reads.tsv
  sessions_row "$2" || return 0
  local gets
  gets=$(store_gets "${SESSION_METRICS[$2]}")
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$((gets - SESSION_GETS_BEFORE))" >>"$RESULTS/session_store_reads.tsv"
}

sessions_rss_lines() { # sessions_rss_lines <mode>: memory after the mode's measurements, and logs
  local n name
  for n in $SESSION_COUNTS; do
    name=$(sessions_proc "$n" "$1")
    rss_line "$name" "A, $1: $(sessions_target "$n") ($WORKERS thread(s))"
    if [ -f "$TMP/$name/mxgate.log" ]; then cp "$TMP/$name/mxgate.log" "$RESULTS/$name.log"; fi
  done
}

# sessions_meta: what the report says about these rows (meta.tsv).
sessions_meta() {
  [ -n "$SESSION_COUNTS" ] || return 0
  local used="all N tokens"
  [ "$SESSION_TOKENS" -gt 0 ] && used="$SESSION_TOKENS tokens spread over the N (all when N is smaller)"
  printf 'sessions\t%s\n' "mxgate (full auth, redb store) started on a store already holding N live sessions, each with its access and refresh token, seeded by \`examples/seed_sessions.rs\` through mxgate's own \`Sessions::create\` and \`Sessions::issue_tokens\` (what a login does; sessions shaped like logins at the bench's OpenID provider). The load cycles through $used, one token per request (wrk, Lua), so no token is hot; before the measurements each token is used once (priming), so the token cache holds every session that fits (\`limits.token_cache_memory\`, default 8 MiB, about 2.5 KiB a session). \`store reads / req\` = store reads (a cache miss reads the token and its session, and mints a new assertion) per request; 0 = all from the cache. No fixed-rate passes for these rows (oha sends one header set)."
}

sessions_cleanup() { # on exit: no seeding dir left on tmpfs
  local d
  for d in ${SEED_DIRS[@]+"${SEED_DIRS[@]}"}; do rm -rf "$d"; done
}

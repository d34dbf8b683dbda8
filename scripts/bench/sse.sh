# shellcheck shell=bash
# "SSE time to first event" of scripts/bench.sh (sourced by it; uses its helpers and variables).
#
# An upstream that streams like an MCP tool result (scripts/bench/sse_upstream.py: `200
# text/event-stream`, the first event at once, the last one BENCH_SSE_HOLD_MS later) is measured
# direct and through every proxy of scenario A — nginx, HAProxy, Traefik, Caddy, bare Pingora,
# mxgate (full auth, valid token) and mxgate with `provider: none` — each started again, in the
# all-cores configuration, pointed at this upstream. scripts/bench/sse_ttfe.py sends
# BENCH_SSE_REQUESTS requests one after another on one keep-alive connection per target and
# records the time from sending each request to the first `data:` line, and to the end.
#
# Configured for SSE as users do: nginx with `proxy_buffering off` (already in scenario A's
# nginx config, scripts/bench.sh's proxy_location; the upstream sends no `X-Accel-Buffering`);
# HAProxy with `option http-no-delay` (its documented switch for interactive payloads: by default
# it sends with MSG_MORE, and the kernel then holds the first event for its 200 ms cork timeout,
# measured: first event 215-225 ms with a 500 ms hold, 0.2 ms with the option); Traefik, Caddy,
# Pingora and mxgate with their defaults (Pingora forwards each chunk as it comes; Traefik's and
# Caddy's reverse proxies flush at once for `text/event-stream`).

SSE_REQUESTS=${BENCH_SSE_REQUESTS:-20}
SSE_HOLD_MS=${BENCH_SSE_HOLD_MS:-200}
SSE_UPSTREAM=$ROOT/scripts/bench/sse_upstream.py
SSE_CLIENT=$ROOT/scripts/bench/sse_ttfe.py

# sse_run <SSE upstream port>: starts the upstream and the proxies (process names *.sse, ports
# PORT[<what>.sse]), measures every target into $RESULTS/sse.jsonl, then stops them.
sse_run() {
  local p_sse=$1 what name token
  use_mode cores
  say "SSE time to first event: $SSE_REQUESTS requests per target, the upstream holding each stream ${SSE_HOLD_MS} ms"
  mkdir -p "$TMP/sse-upstream"
  python3 "$SSE_UPSTREAM" --port "$p_sse" --hold-ms "$SSE_HOLD_MS" >"$TMP/sse-upstream/sse.log" 2>&1 &
  started sse-upstream.sse $! TERM
  wait_for "the SSE upstream" "$TMP/sse-upstream/sse.log" grep -q '^ready ' "$TMP/sse-upstream/sse.log"

  # The proxies' start functions point at $P_UP: here, at the SSE upstream.
  nginx_proxy_conf nginx.sse "$WORKERS" "${PORT[nginx.sse]}" "$p_sse" >"$TMP/nginx.sse.conf"
  start_nginx nginx.sse
  [ "$HAVE_HAPROXY" = 1 ] && HAPROXY_OPTIONS="option http-no-delay" P_UP=$p_sse start_haproxy haproxy.sse "${PORT[haproxy.sse]}"
  [ "$HAVE_TRAEFIK" = 1 ] && P_UP=$p_sse start_traefik traefik.sse "${PORT[traefik.sse]}"
  [ "$HAVE_CADDY" = 1 ] && P_UP=$p_sse start_caddy caddy.sse "${PORT[caddy.sse]}"
  [ "$HAVE_BARE" = 1 ] && P_UP=$p_sse start_bare_pingora bare-pingora.sse "${PORT[bare-pingora.sse]}"
  start_mxgate mxgate-a.sse "${PORT[mxgate-a.sse]}" "http://127.0.0.1:$p_sse" oidc
  start_mxgate mxgate-noauth.sse "${PORT[mxgate-noauth.sse]}" "http://127.0.0.1:$p_sse" none
  for what in nginx haproxy traefik caddy bare-pingora; do
    name=$what.sse
    [ -n "$(pid_of "$name")" ] || continue
    case $what in
      nginx | haproxy) wait_for "$name" "$TMP/$name.log" curl -fsS -o /dev/null "$(url_of "$name")/" ;;
      *) wait_for "$name" "$TMP/$name/$what.log" curl -fsS -o /dev/null "$(url_of "$name")/" ;;
    esac
  done
  wait_for mxgate-a.sse "$TMP/mxgate-a.sse/mxgate.log" curl -fsS -o /dev/null "$(url_of mxgate-a.sse)/readyz"
  wait_for mxgate-noauth.sse "$TMP/mxgate-noauth.sse/mxgate.log" curl -fsS -o /dev/null "$(url_of mxgate-noauth.sse)/healthz"
  token=$("$CLIENT_PY" "$HELPER" token "$(url_of mxgate-a.sse)")

  sse_row direct "http://127.0.0.1:$p_sse" "$token"
  sse_row nginx "$(url_of nginx.sse)" "$token"
  [ "$HAVE_HAPROXY" = 1 ] && sse_row HAProxy "$(url_of haproxy.sse)" "$token"
  [ "$HAVE_TRAEFIK" = 1 ] && sse_row Traefik "$(url_of traefik.sse)" "$token"
  [ "$HAVE_CADDY" = 1 ] && sse_row Caddy "$(url_of caddy.sse)" "$token"
  [ "$HAVE_BARE" = 1 ] && sse_row "bare Pingora" "$(url_of bare-pingora.sse)" "$token"
  sse_row mxgate "$(url_of mxgate-a.sse)" "$token"
  sse_row "mxgate, auth off" "$(url_of mxgate-noauth.sse)" "$token"
  for name in mxgate-a.sse mxgate-noauth.sse; do
    cp "$TMP/$name/mxgate.log" "$RESULTS/$name.log"
  done
  stop_mode sse
}

sse_row() { # sse_row <target> <base url> <token>
  "$CLIENT_PY" "$SSE_CLIENT" "$2/mcp" --label "$1" --token "$3" --requests "$SSE_REQUESTS" \
    --hold-ms "$SSE_HOLD_MS" --out "$RESULTS/sse.jsonl"
}

sse_meta() { # sse_meta: the report's note on the SSE table (a meta.tsv line)
  printf 'sse\t%s\n' "An upstream (scripts/bench/sse_upstream.py) answers each POST with \`200 text/event-stream\`, the first event at once and the last ${SSE_HOLD_MS} ms later; direct and through each of scenario A's proxies (all-cores configuration, started again for this upstream), $SSE_REQUESTS requests one after another on one keep-alive connection (after 3 unmeasured ones), timed from sending the request to the arrival of the body's first \`data:\` line (scripts/bench/sse_ttfe.py, raw sockets). nginx has \`proxy_buffering off\`, HAProxy \`option http-no-delay\` (without it the kernel holds the first event about 200 ms: HAProxy sends with MSG_MORE); the others run their defaults (each streams \`text/event-stream\` as it comes). A response whose first event arrived less than half the hold before its end counts as buffered, an error."
}

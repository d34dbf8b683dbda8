-- wrk script for mxgate's benchmark (scripts/bench.sh). Configured by environment variables:
--   BENCH_MODE     static: one fixed POST (scenario A, static upstream; wrk's fast path)
--                  tools:  MCP `tools/call` of BENCH_TOOL with a JSON-RPC id unique per request
--                          across all threads and connections (scenario B, real MXCP core)
--   BENCH_TOKEN    bearer token (sent as Authorization when set)
--   BENCH_HOST     Host header (when set)
--   BENCH_SESSION  mcp-session-id (tools mode)
--   BENCH_EXPECT   a string every successful tools/call response body must contain (tools mode)
--   BENCH_TOKENS_FILE  static mode: bearer tokens, one a line; each request carries the next one
--                  (round robin from a different start per wrk thread) instead of BENCH_TOKEN
-- In tools mode `done` prints one line:
--   mcp: responses=N ok=N jsonrpc_errors=N unexpected=N
-- where ok counts 2xx bodies that carry a result and contain BENCH_EXPECT.

local mode = os.getenv("BENCH_MODE") or "static"
local token = os.getenv("BENCH_TOKEN") or ""
local host = os.getenv("BENCH_HOST") or ""
local session = os.getenv("BENCH_SESSION") or ""
local tool = os.getenv("BENCH_TOOL") or "whoami"
local expect = os.getenv("BENCH_EXPECT") or ""

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
if token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
if host ~= "" then wrk.headers["Host"] = host end

if mode == "static" then
  -- The same small JSON-RPC request every time: the static upstream ignores it.
  wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"' .. tool .. '","arguments":{}}}'
  local tokens_file = os.getenv("BENCH_TOKENS_FILE") or ""
  if tokens_file ~= "" then
    -- Many sessions (scripts/bench/sessions.sh): the requests are formatted once, one per token.
    local threads = {}
    function setup(thread)
      thread:set("thread_index", #threads)
      table.insert(threads, thread)
    end

    local requests, next_request, tokens = {}, 0, 0
    function init(args)
      for token in io.lines(tokens_file) do
        wrk.headers["Authorization"] = "Bearer " .. token
        requests[#requests + 1] = wrk.format()
      end
      tokens = #requests
      if tokens == 0 then error("no tokens in " .. tokens_file) end
      -- wrk threads start a sixteenth of the list apart (the count is not known here).
      next_request = (thread_index or 0) * math.floor(tokens / 16) % tokens
    end

    function request()
      next_request = next_request % tokens + 1
      return requests[next_request]
    end
  end
else
  wrk.headers["mcp-session-id"] = session
  wrk.headers["mcp-protocol-version"] = "2025-06-18"

  -- setup() runs in the main Lua state once per thread, before the threads start: give each
  -- thread its own id range so that no two in-flight requests on the session share an id.
  local threads = {}
  function setup(thread)
    thread:set("thread_index", #threads)
    table.insert(threads, thread)
  end

  local counter = 0
  local base = 0
  -- globals, so that done() can read them from each thread with thread:get()
  responses, ok, rpc_errors, unexpected = 0, 0, 0, 0
  local template = '{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"'
      .. tool .. '","arguments":{}}}'

  function init(args)
    base = (thread_index or 0) * 1000000000 + 1000
  end

  function request()
    counter = counter + 1
    return wrk.format(nil, nil, nil, string.format(template, base + counter))
  end

  function response(status, headers, body)
    responses = responses + 1
    if status < 200 or status > 299 then return end
    if string.find(body, '"error":', 1, true) or string.find(body, '"isError":true', 1, true) then
      rpc_errors = rpc_errors + 1
    elseif string.find(body, '"result":', 1, true) and (expect == "" or string.find(body, expect, 1, true)) then
      ok = ok + 1
    else
      unexpected = unexpected + 1
    end
  end

  function done(summary, latency, requests)
    local r, o, e, u = 0, 0, 0, 0
    for _, thread in ipairs(threads) do
      r = r + (thread:get("responses") or 0)
      o = o + (thread:get("ok") or 0)
      e = e + (thread:get("rpc_errors") or 0)
      u = u + (thread:get("unexpected") or 0)
    end
    io.write(string.format("mcp: responses=%d ok=%d jsonrpc_errors=%d unexpected=%d\n", r, o, e, u))
  end
end

-- wrk script: the shared chat request (../shared/bench/wrk_chat.lua: same body and headers), sent
-- until BENCH_REQUESTS responses have come back; then it prints "WRKCOUNT <n> <non-2xx>" and exits
-- (wrk itself would wait out its -d duration). Run it with -t1.
--
-- Environment: BENCH_CHAT_LUA=path of wrk_chat.lua, BENCH_REQUESTS=10000, plus wrk_chat.lua's own.

dofile(os.getenv("BENCH_CHAT_LUA"))

local limit = tonumber(os.getenv("BENCH_REQUESTS") or "10000")
local seen = 0
local failed = 0

function response(status, headers, body)
  seen = seen + 1
  if status < 200 or status > 299 then
    failed = failed + 1
  end
  if seen >= limit then
    io.write(string.format("WRKCOUNT %d %d\n", seen, failed))
    io.flush()
    os.exit(0)
  end
end

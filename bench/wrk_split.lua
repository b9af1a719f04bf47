-- wrk script for the split-scope step of bench/fleet.py: the shared harness's chat completion
-- (../shared/bench/wrk_chat.lua: the same ~420-byte body), each request for another user out of
-- BENCH_USERS (default 10000) in turn, so a budget split by user keeps that many scopes.
local users = tonumber(os.getenv("BENCH_USERS") or "10000")
local label = os.getenv("BENCH_LABEL") or ""

local prompt = "You are benchmarking an LLM gateway. Summarise the following text in one " ..
  "sentence: The quick brown fox jumps over the lazy dog while the gateway routes the " ..
  "request, checks the budget, records token usage for cost metrics, and forwards it " ..
  "to the upstream provider, falling back to a second provider on error. Thanks!"

local body = '{"model":"gpt-4o-mini","messages":[' ..
  '{"role":"system","content":"You are a helpful assistant."},' ..
  '{"role":"user","content":"' .. prompt .. '"}],' ..
  '"max_tokens":64,"temperature":0}'

local counter = 0

function request()
  counter = counter + 1
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer sk-bench",
    ["X-Sluicegate-User"] = "user-" .. (counter % users),
  }
  return wrk.format("POST", "/v1/chat/completions", headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    'WRKJSON {"label":"%s","requests":%d,"duration_s":%.3f,"rps":%.2f,' ..
    '"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"mean_ms":%.3f,"max_ms":%.3f,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,"body_bytes":%d}\n',
    label, summary.requests, secs, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.mean / 1000, latency.max / 1000,
    e.connect, e.read, e.write, e.status, e.timeout, #body))
end

-- wrk script: POSTs the pre-signed callbacks of a pool file (bench/lib/request-pool.ts).
-- Usage: wrk ... -s callbacks.lua <url> -- <pool file> <threads>
-- Thread i takes every threads-th line from line i, so no two threads send the same request.
-- Prints one JSON line at the end: latency percentiles in microseconds, counts, wrap-arounds.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local pool = {}
local index = 0
wraps = 0

function init(args)
  local file = args[1]
  local count = tonumber(args[2])
  local n = 0
  for line in io.lines(file) do
    if n % count == id then
      local signature, body = line:match("^([^\t]+)\t(.*)$")
      pool[#pool + 1] = wrk.format("POST", "/callbacks/cxml", {
        ["Content-Type"] = "application/x-www-form-urlencoded",
        ["X-SignalWire-Signature"] = signature,
      }, body)
    end
    n = n + 1
  end
end

function request()
  index = index + 1
  if index > #pool then
    index = 1
    wraps = wraps + 1
  end
  return pool[index]
end

function done(summary, latency, requests)
  local wrapped = 0
  for _, thread in ipairs(threads) do
    wrapped = wrapped + (thread:get("wraps") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    '\nBENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"pool_wraps":%d}\n',
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout, wrapped))
end

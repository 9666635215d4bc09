-- wrk script: POST one valid gift event per request, each with a unique eventId.
-- Usage: wrk -s bench/wrk_post_event.lua <url>/v1/events  (env GIFTWHEEL_BENCH_KEY for auth)
local counter = 0
thread_id = 0  -- global: setup() sets it per thread with thread:set
local key = os.getenv("GIFTWHEEL_BENCH_KEY")
local run = os.getenv("GIFTWHEEL_BENCH_RUN") or tostring(os.time())

local next_thread = 0
function setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if key and key ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. key
  end
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"eventId":"bench:%s:%d:%d","event":"gift","platform":"tiktok","userId":"user_%d",' ..
    '"giftName":"Rose","diamond":1,"quantity":1,"timestamp":%d}',
    run, thread_id, counter, counter % 5000, os.time() * 1000)
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  io.write(string.format("GIFTWHEEL requests=%d non2xx=%d errors=%d p50_us=%d p99_us=%d duration_us=%d\n",
    summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), summary.duration))
end

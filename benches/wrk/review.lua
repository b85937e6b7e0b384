-- wrk script: POSTs one AdmissionReview, the file named by the environment
-- variable IMAGEGATE_BENCH_REVIEW (scripts/bench-webhook.sh writes it), to
-- the URL given to wrk, on every request of every keep-alive connection.
-- At the end prints one machine-readable line (WRK_JSON {...}) next to
-- wrk's own report, so the script need not scrape wrk's text.
--
--   IMAGEGATE_BENCH_REVIEW=review.json wrk -t2 -c16 -d10s --latency \
--     -s benches/wrk/review.lua https://127.0.0.1:8443/validate

local file = os.getenv("IMAGEGATE_BENCH_REVIEW")
    or error("set IMAGEGATE_BENCH_REVIEW to an AdmissionReview file")
local f = assert(io.open(file, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end

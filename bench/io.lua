-- bench/io: what the non-blocking helpers cost (smtpd.dns, smtpd.http,
-- smtpd.redis, rate_limits), against fast local peers so that our side
-- is what is measured:
--   1. smtpd.dns: a lookup answered from the cache, and one that misses
--      (a round trip to bench/iosink's DNS responder), per lookup
--   2. a handler that POSTs every message to a local HTTP server
--      (bench/iosink http) against the plain handler      goal: >= 50%
--   3. Redis round trips per second from handlers, against redis-benchmark
--      -t incr with as many clients                        goal: >= 0.5x
--   4. a rate-limited server's msg/s, the Redis store against the
--      per-process store (and the shared-memory one, the default)
-- The SMTP load is bench/pipeload lockstep: PROCS connections, one command
-- at a time. BENCH_SCALE scales the counts.
local H = require "helper"
local smtpd = require "smtpd"

local SCALE = tonumber(os.getenv("BENCH_SCALE") or "1") or 1
local PROCS = 8
local TOTAL = math.max(800, math.floor(12000 * SCALE))
local SIZE = 1000
local TRIPS = 20
local WORK = "bench/.work"
local LOAD, SINK = WORK .. "/pipeload", WORK .. "/iosink"

local function note(s) io.stderr:write("bench/io: ", s, "\n") end

assert(os.execute("mkdir -p " .. WORK .. " && cc -O2 -o " .. LOAD
                  .. " bench/pipeload.c && cc -O2 -o " .. SINK
                  .. " bench/iosink.c"), "cannot build the bench's C programs")

local function now() return smtpd.core.hrtime() end

-- 1. DNS -------------------------------------------------------------------
local dns_port = H.free_port()
local dns_pid = H.spawn(("exec %s dns %d </dev/null"):format(SINK, dns_port))
os.execute("sleep 0.2")
local map = smtpd.core.map()
assert(smtpd.dns.configure{servers = {"127.0.0.1:" .. dns_port}, map = map,
                           timeout = 2, tries = 2, cache = 100000})
local N = math.max(1000, math.floor(20000 * SCALE))
local function lookups(names)
  local t0 = now()
  for i = 1, N do
    local r, err = smtpd.dns.query(names(i), "A", {map = map})
    if not r then error("dns: " .. tostring(err)) end
  end
  return (now() - t0) / N * 1e6
end
local run = tostring(os.time())
local miss = lookups(function(i) return ("m%d-%s.bench.test"):format(i, run) end)
local hit = lookups(function() return "hit.bench.test" end)
H.kill(dns_pid)
map:close()
print("")
print(("smtpd.dns: %d lookups each, one at a time"):format(N))
print(("  cache hit    %8.1f us per lookup"):format(hit))
print(("  cache miss   %8.1f us per lookup (a round trip to a C responder "
       .. "on loopback)"):format(miss))

-- SMTP servers under load ---------------------------------------------------
local function serve(env)
  local port = H.free_port()
  local pid = H.spawn(("%s BENCH_COUNT_DIR=/tmp exec lua5.4 bin/lua-smtpd -n -c "
                       .. "bench/io_handler.lua 127.0.0.1:%d </dev/null")
                      :format(env, port))
  if not H.wait_listening(port, 15) then
    H.kill(pid)
    error("the server did not start: " .. env)
  end
  return pid, port
end

-- msg/s of one lock-step run of TOTAL messages over procs connections
-- (PROCS by default) against a fresh server, after a warm-up.
local function load(env, procs)
  procs = procs or PROCS
  local pid, port = serve(env)
  H.capture(("timeout 60 %s lockstep 127.0.0.1 %d 2 20 %d"):format(LOAD, port, SIZE))
  local out = H.capture(("timeout 300 %s lockstep 127.0.0.1 %d %d %d %d")
                        :format(LOAD, port, procs, TOTAL // procs, SIZE))
  H.kill(pid)
  local n, secs, fails = out:match("(%d+) ([%d.]+) (%d+)")
  n, secs, fails = tonumber(n), tonumber(secs), tonumber(fails)
  if not n or n == 0 or fails > 0 then
    error("the load failed (" .. env .. "): " .. out)
  end
  return n / secs, n
end

local function verdict(ok) return ok and "met" or "NOT met" end

-- 2. the webhook ------------------------------------------------------------
local http_port = H.free_port()
local http_pid = H.spawn(("exec %s http %d </dev/null"):format(SINK, http_port))
assert(H.wait_listening(http_port, 5), "iosink http did not start")
local hook_env = ("BENCH_IO=webhook BENCH_URL=http://127.0.0.1:%d/hook")
                 :format(http_port)
local plain = load("BENCH_IO=plain")
local hook = load(hook_env)
-- More sessions at once hide the webhook's round trip.
local plain32 = load("BENCH_IO=plain", 32)
local hook32 = load(hook_env, 32)
H.kill(http_pid)
print("")
print(("Handlers under bench/pipeload lockstep, %d messages of %d bytes")
      :format(TOTAL, SIZE))
print(("  plain handler, %2d connections      %9.0f msg/s"):format(PROCS, plain))
print(("  POST to a webhook, %2d connections  %9.0f msg/s  (%.0f%% of plain)")
      :format(PROCS, hook, hook / plain * 100))
print(("  plain handler, 32 connections      %9.0f msg/s"):format(plain32))
print(("  POST to a webhook, 32 connections  %9.0f msg/s  (%.0f%% of plain)")
      :format(hook32, hook32 / plain32 * 100))
print(("goal: a webhook handler keeps at least 50%% of the plain one's rate "
       .. "(%d connections): %s"):format(PROCS, verdict(hook >= 0.5 * plain)))

-- 3 and 4. Redis --------------------------------------------------------------
if not H.ensure("redis-server", "redis-server") then
  note("no redis-server here (and it cannot be installed): Redis rows skipped")
  return
end
local redis_port = H.free_port()
local redis_pid = H.spawn(("exec redis-server --port %d --bind 127.0.0.1 "
                           .. "--save '' --appendonly no </dev/null")
                          :format(redis_port))
assert(H.wait_listening(redis_port, 10), "redis-server did not start")
local rurl = ("redis://127.0.0.1:%d/0"):format(redis_port)
local out = H.capture(("redis-benchmark -p %d -t incr -c %d -n %d -q")
                      :format(redis_port, PROCS, math.floor(200000 * SCALE)))
local bench_rps = tonumber(out:match("INCR: ([%d.]+) requests per second"))
local rate, n = load(("BENCH_IO=redis BENCH_URL=%s BENCH_TRIPS=%d"):format(rurl, TRIPS))
local trips = rate * TRIPS
print("")
print(("Redis: %d handlers at once, %d INCRs per message (%d round trips)")
      :format(PROCS, TRIPS, n * TRIPS))
print(("  from handlers                      %9.0f round trips/s"):format(trips))
if bench_rps then
  print(("  redis-benchmark -t incr -c %d       %9.0f requests/s  (ours %.2fx)")
        :format(PROCS, bench_rps, trips / bench_rps))
  print(("goal: at least 0.5x redis-benchmark: %s"):format(verdict(trips >= 0.5 * bench_rps)))
else
  note("redis-benchmark said nothing usable: " .. out)
end
local mem = load("BENCH_IO=limits BENCH_STORE=memory:")
local shm = load("BENCH_IO=limits")
local red = load(("BENCH_IO=limits BENCH_STORE=%s"):format(rurl))
H.kill(redis_pid)
print("")
print(("rate_limits on messages and recipients per IP (never reached), %d "
       .. "connections"):format(PROCS))
print(("  per-process store (memory:)        %9.0f msg/s  (%.0f%% of plain)")
      :format(mem, mem / plain * 100))
print(("  shared memory (the default)        %9.0f msg/s  (%.0f%% of plain)")
      :format(shm, shm / plain * 100))
print(("  Redis store                        %9.0f msg/s  (%.0f%% of per-process)")
      :format(red, red / mem * 100))

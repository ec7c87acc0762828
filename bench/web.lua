-- bench/web: the catcher with its page (CatchingServer{web =}).
--   1. messages per second caught (1 KiB, bench/pipeload lockstep, 8
--      connections) with an event stream connected as the page keeps one
--      (curl -N on /api/events), against MailDev (npm maildev, its web UI
--      on; its page's updates come over socket.io, which no client here
--      holds) under the same load, and Mailpit's published 200-300 msg/s
--   2. the list API's latency with 100,000 messages stored (a page of 50,
--      and a search), the median of 21 requests by curl   goal: < 50 ms
--   3. memory per stored message: the process's RSS over the bytes kept
-- BENCH_SCALE scales the counts (not the 100,000).
local H = require "helper"
local smtpd = require "smtpd"
local json = require "smtpd.json"

local SCALE = tonumber(os.getenv("BENCH_SCALE") or "1") or 1
local PROCS, SIZE = 8, 1024
local MSGS = math.max(50, math.floor(500 * SCALE))      -- per connection
local STORED = tonumber(os.getenv("BENCH_WEB_STORED") or "") or 100000
local WORK = "bench/.work"
local LOAD = WORK .. "/pipeload"

local function note(s) io.stderr:write("bench/web: ", s, "\n") end
assert(os.execute("mkdir -p " .. WORK .. " && cc -O2 -o " .. LOAD .. " bench/pipeload.c"))

-- pipeload against host:port: msg/s
local function load(map, port)
  local out = H.run_client(map, ("%s lockstep 127.0.0.1 %d %d %d %d")
                           :format(LOAD, port, PROCS, MSGS, SIZE), 600)
  local n, secs, fails = out:match("(%d+) ([%d.]+) (%d+)")
  n, secs, fails = tonumber(n), tonumber(secs), tonumber(fails)
  if not n or fails > 0 then error("the load failed: " .. out) end
  return n / secs
end

-- 1. ours, with an event stream reading every event
local map = smtpd.core.map()
local srv = smtpd.CatchingServer({"127.0.0.1", 0}, nil, {map = map, web = "127.0.0.1:0",
                                                         max_messages = 1000000,
                                                         max_bytes = 1 << 34})
local _, port = srv:getsockname()
local events_out = os.tmpname()
local sse = H.spawn(("exec curl -s -N %sapi/events -o %s"):format(srv.web:url(), events_out))
H.run_until(map, function() return next(srv.web.streams) ~= nil end, 10, "the event stream")
local ours = load(map, port)
map:loop(0.2, 10)
H.kill(sse)
local got = select(2, (H.readfile(events_out) or ""):gsub("event: new", ""))
os.remove(events_out)
if got < PROCS * MSGS then note(("the stream saw %d of %d messages"):format(got, PROCS * MSGS)) end
srv:close(false)
map:loop(0.05, 10)

-- MailDev, its web UI on, under the same load
local maildev
local mods = H.node_module("maildev")
if mods then
  local sport, wport = H.free_port(), H.free_port()
  local pid = H.spawn(("exec node %s/maildev/dist/bin/maildev.js --ip 127.0.0.1 --smtp %d "
                       .. "--web %d --web-ip 127.0.0.1 </dev/null >/dev/null 2>&1")
                      :format(mods, sport, wport))
  if H.wait_listening(sport, 20) then
    maildev = load(map, sport)
  else
    note("MailDev did not start")
  end
  H.kill(pid)
else
  note("maildev (npm) is not installed: skipped")
end

-- 2. and 3.: 100,000 messages stored, then the API
collectgarbage()
local pid_self = tonumber((H.readfile("/proc/self/stat") or ""):match("^(%d+)"))
local rss0 = H.status_kb(pid_self, "VmRSS")
local big = smtpd.CatchingServer({"127.0.0.1", 0}, nil, {map = map, web = "127.0.0.1:0",
                                                         max_messages = STORED + 1,
                                                         max_bytes = 1 << 34})
local bytes = 0
local t0 = smtpd.core.hrtime()
for i = 1, STORED do
  local data = ("From: sender%d@example.com\r\nTo: rcpt%d@example.net\r\nSubject: message %d "
                .. "of the bench\r\nMessage-ID: <%d@bench>\r\n\r\n"):format(i % 97, i % 89, i, i)
               .. ("A line of the body of a stored message, for the list and the search.\r\n"):rep(12)
  bytes = bytes + #data
  big:process_message({"127.0.0.1", 40000}, "sender@example.com", {"rcpt@example.net"}, data, {})
end
local fill = smtpd.core.hrtime() - t0
collectgarbage()
collectgarbage()
local rss1 = H.status_kb(pid_self, "VmRSS")
local url = big.web:url()
local function latency(path)
  local times = {}
  for i = 1, 21 do
    local out = H.run_client(map, ("curl -s -o /dev/null -w '%%{time_total}' '%s%s'"):format(url, path), 30)
    times[i] = tonumber(out) * 1000
  end
  table.sort(times)
  return times[11]
end
local list_ms = latency("api/v1/messages?start=0&limit=50")
local deep_ms = latency("api/v1/messages?start=99900&limit=50")
local search_ms = latency("api/v1/search?query=subject:%22message+99999%22")
local check = json.decode(H.run_client(map, ("curl -s '%sapi/v1/messages?limit=1'"):format(url)))
assert(check and check.total == STORED, "the catcher does not hold them all")
big:close(false)
map:loop(0.05, 10)
map:close()

print("")
print(("The catcher's page (CatchingServer web =): 1 KiB messages, %d connections x %d, lockstep")
      :format(PROCS, MSGS))
print(("  lua-smtpd, an event stream connected   %8.0f msg/s  (the stream saw %d events)")
      :format(ours, got))
if maildev then
  print(("  MailDev 3 (npm maildev), its web UI on  %8.0f msg/s  (ours %.1fx; no client on its socket.io)")
        :format(maildev, ours / maildev))
end
print(("  Mailpit (its README: 200-300 msg/s)     ours %.0fx its best figure"):format(ours / 300))
print(("%d messages stored (%.1f s to take them in-process, their summaries made):")
      :format(STORED, fill))
print(("  GET /api/v1/messages, the newest 50      %8.1f ms  (median of 21, curl)"):format(list_ms))
print(("  GET /api/v1/messages, the oldest 50      %8.1f ms"):format(deep_ms))
print(("  GET /api/v1/search?query=subject:...     %8.1f ms  (every message looked at)"):format(search_ms))
print(("goal: a page under 50 ms at %d messages: %s"):format(STORED,
  (list_ms < 50 and deep_ms < 50) and "met" or "NOT met"))
if rss1 > 0 then
  local per = (rss1 - rss0) * 1024 / STORED
  print(("  memory per stored message               %8.0f bytes (%d bytes of mail each: "
         .. "%.0f bytes beside it)"):format(per, bytes // STORED, per - bytes / STORED))
end

-- bench/conns: RSS per idle connection. One lua-smtpd process (the bench's
-- Lua handler) takes CONNS connections that each get the greeting and then
-- stay silent; then each says EHLO once and is silent again.
local H = require "helper"
local core = H.core

local CONNS = tonumber(arg[1] or os.getenv("BENCH_CONNS") or "10000")
local LIMIT_KIB = 8
local BATCH = 500

local function rss(pid) return H.status_kb(pid, "VmRSS") end

local port = H.free_port()
local dir = os.tmpname()
local pid = H.spawn(("BENCH_COUNT_DIR=%s exec lua5.4 bin/lua-smtpd -n -c "
  .. "bench/handler.lua 127.0.0.1:%d </dev/null"):format(dir, port))
local ok, err = pcall(function()
  assert(H.wait_listening(port, 15), "the server did not start")
  local map = core.map()

  -- Waits until what every connection in conns[from..to] has received
  -- matches pattern.
  local function wait_for(conns, bufs, from, to, pattern, what)
    H.run_until(map, function()
      for i = from, to do
        if not bufs[i]:find(pattern) then
          bufs[i] = bufs[i] .. conns[i]:read()
          local _, eof = conns[i]:status()
          if eof then error(("connection %d closed: %q"):format(i, bufs[i])) end
          if not bufs[i]:find(pattern) then return false end
        end
      end
      return true
    end, 60, what)
  end
  local GREETED = "^220 [^\r\n]*\r\n"
  local EHLOED = "\r\n250 [^\r\n]*\r\n$"

  -- Warm up: a whole transaction and a batch of connections, closed again,
  -- so the allocator and the code are where they will stay.
  do
    local warm, wbuf = {}, {}
    for i = 1, BATCH do
      warm[i] = assert(core.tcp_connect(map, "127.0.0.1", port))
      wbuf[i] = ""
    end
    wait_for(warm, wbuf, 1, BATCH, GREETED, "warm-up greetings")
    warm[1]:write("EHLO warm\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"
                  .. "Subject: x\r\n\r\nwarm\r\n.\r\n")
    wait_for(warm, wbuf, 1, 1, "\r\n354 .*\r\n250 [^\r\n]*\r\n$",
             "warm-up message")
    for i = 1, BATCH do warm[i]:close() end
    local t0 = H.now()
    H.run_until(map, function() return H.now() - t0 > 0.5 end, 5)
  end
  local base = rss(pid)

  local conns, bufs = {}, {}
  local t0 = H.now()
  for from = 1, CONNS, BATCH do
    local to = math.min(CONNS, from + BATCH - 1)
    for i = from, to do
      conns[i] = assert(core.tcp_connect(map, "127.0.0.1", port))
      bufs[i] = ""
    end
    wait_for(conns, bufs, from, to, GREETED, "greetings")
  end
  local opened = H.now() - t0
  t0 = H.now()
  H.run_until(map, function() return H.now() - t0 > 0.5 end, 5)
  local greeted = rss(pid)

  for from = 1, CONNS, BATCH do
    local to = math.min(CONNS, from + BATCH - 1)
    for i = from, to do conns[i]:write("EHLO idle" .. i .. "\r\n") end
    wait_for(conns, bufs, from, to, EHLOED, "EHLO replies")
  end
  t0 = H.now()
  H.run_until(map, function() return H.now() - t0 > 0.5 end, 5)
  local talked = rss(pid)
  local peak = H.status_kb(pid, "VmHWM")

  local per_greeted = (greeted - base) / CONNS
  local per_talked = (talked - base) / CONNS
  print(("\nidle connections: %d opened in %.1f s against one lua-smtpd "
         .. "process"):format(CONNS, opened))
  print(("  server RSS: %.1f MiB before, %.1f MiB greeted, %.1f MiB after "
         .. "one EHLO each (peak %.1f MiB)"):format(base / 1024,
         greeted / 1024, talked / 1024, peak / 1024))
  print(("  RSS per idle connection: %.2f KiB greeted, %.2f KiB after EHLO "
         .. "(target %d KiB or less: %s)"):format(per_greeted, per_talked,
         LIMIT_KIB, math.max(per_greeted, per_talked) <= LIMIT_KIB
           and "met" or "MISSED"))
  for i = 1, CONNS do conns[i]:close() end
  map:loop(0, 2)
  map:close()
end)
H.kill(pid)
os.execute("rm -rf " .. dir)
if not ok then
  io.stderr:write("bench/conns: ", tostring(err), "\n")
  os.exit(1)
end

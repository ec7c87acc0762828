-- The soak driver (see bench/soak). The server runs as its own process so
-- its memory can be read from /proc.
local H = require "helper"
local core = H.core

local IDLE, CLIENTS, PER_CLIENT = 1000, 50, 100
-- 11 lines of 930 bytes: 10240 bytes (10 KiB) once joined with LF.
local LINES = {}
for i = 1, 11 do LINES[i] = ("m"):rep(930) end
local DATA = table.concat(LINES, "\r\n")

local rss = H.status_kb

local count_file = os.tmpname()
local port = H.free_port()
local pid = H.spawn(("SOAK_COUNT_FILE=%s exec lua5.4 bin/lua-smtpd -n -c "
  .. "bench/soak_handler.lua 127.0.0.1:%d </dev/null"):format(count_file,
                                                              port))
assert(H.wait_listening(port), "server did not start")

local map = core.map()
local function connect()
  return H.connect(map, "127.0.0.1", port)
end

-- Warm up: one full transaction, so the code paths are paged in.
local warm = connect()
warm:lines(1)
local msg = "MAIL FROM:<soak@x>\r\nRCPT TO:<sink@y>\r\nDATA\r\n" .. DATA
            .. "\r\n.\r\n"
warm:send("EHLO soak\r\n" .. msg)
warm:lines(4 + 4, 10)
local base = rss(pid, "VmRSS")

-- 1000 idle connections, greeted, then silent.
local idle = {}
for i = 1, IDLE do
  idle[i] = connect()
  if i % 100 == 0 then
    for j = i - 99, i do idle[j]:lines(1, 30) end
  end
end
local t0 = H.now()
H.run_until(map, function() return H.now() - t0 > 0.5 end, 2)
local with_idle = rss(pid, "VmRSS")

-- The slowloris and the non-reader.
local slow = connect()
slow:lines(1)
slow:send("EHLO slow\r\nMAIL FROM:<s@x>\r\nRCPT TO:<t@y>\r\nDATA\r\n")
local deaf = connect()
deaf:lines(1)
deaf.tcp:set_rcvbuf(65536)
deaf.tcp:pause()
deaf.tcp:write(("NOOP\r\n"):rep(200000))

-- 50 clients, 100 messages each, one transaction in flight per client.
local clients, sent, acked = {}, {}, {}
for i = 1, CLIENTS do
  clients[i] = connect()
  clients[i]:lines(1)
  clients[i]:send("EHLO c" .. i .. "\r\n")
  clients[i]:lines(4)
  sent[i], acked[i] = 0, 0
end
local function pump_clients()
  local busy = false
  for i, c in ipairs(clients) do
    if acked[i] < PER_CLIENT then
      busy = true
      if sent[i] == acked[i] then
        c.tcp:write(msg)
        sent[i] = sent[i] + 1
      end
      c:pump()
      local _, k = c.buf:gsub("\r\n", "")
      if k >= 4 then
        local last
        for l in c.buf:gmatch("(.-)\r\n") do last = l end
        assert(last == "250 OK", "client " .. i .. " got " .. tostring(last))
        c.buf = ""
        acked[i] = acked[i] + 1
      end
    end
  end
  return busy
end
local start = H.now()
local last_slow = H.now()
while pump_clients() do
  map:loop(0.005, 1)
  if H.now() - last_slow >= 1 then
    slow.tcp:write("x")
    last_slow = H.now()
  end
  if H.now() - start > 240 then error("soak took too long") end
end
local took = H.now() - start
-- The slowloris and the non-reader are still there, and still bounded.
assert(not slow:closed() or slow.buf:match("^421 "), "slowloris: " .. slow.buf)

local delivered, bad = 0, 0
H.run_until(map, function()
  local s = H.readfile(count_file) or ""
  delivered, bad = s:match("(%d+) (%d+)")
  -- The server also counted the warm-up message.
  delivered, bad = (tonumber(delivered) or 1) - 1, tonumber(bad) or 0
  return delivered >= CLIENTS * PER_CLIENT
end, 10, "the server's count")
local peak = rss(pid, "VmHWM")
H.kill(pid)

print(("messages delivered: %d of %d (%d of the wrong size) in %.1f s")
      :format(delivered, CLIENTS * PER_CLIENT, bad, took))
print(("server peak RSS: %.1f MiB"):format(peak / 1024))
print(("server RSS per idle connection: %.1f KiB (%d idle: %d -> %d kB)")
      :format((with_idle - base) / IDLE, IDLE, base, with_idle))
os.remove(count_file)
os.exit(delivered == CLIENTS * PER_CLIENT and bad == 0 and 0 or 1)

-- bench/tls: TLS figures of lua-smtpd against the peers that have TLS and
-- AUTH (nodemailer's smtp-server, aiosmtpd), all driven by one load
-- generator (bench/tlsload.c):
--   new     STARTTLS + AUTH PLAIN on a new connection for every message
--           (handshakes per second)
--   reuse   messages per second on TLS sessions kept open
--   idle    server RSS per idle TLS connection, 10,000 of them (after
--           STARTTLS and one EHLO each)
-- BENCH_SCALE scales the message counts, BENCH_TLS_CONNS the idle
-- connections, BENCH_ONLY=ours,node,aiosmtpd picks servers.
local H = require "helper"
local certs = require "certs"
local core = H.core

local SCALE = tonumber(os.getenv("BENCH_SCALE") or "1") or 1
local IDLE = tonumber(os.getenv("BENCH_TLS_CONNS") or "10000") or 10000
local ONLY = os.getenv("BENCH_ONLY")
local PROCS = 4
local NEW_MSGS = math.max(10, math.floor(250 * SCALE))
local REUSE_MSGS = math.max(10, math.floor(2500 * SCALE))
local SIZE = 1000
local IDLE_LIMIT_KIB = 20
local BATCH = 250
local LOAD = "bench/.work/tlsload"

local function note(s) io.stderr:write("bench/tls: ", s, "\n") end

local capture = H.capture

assert(os.execute("mkdir -p bench/.work && cc -O2 -o " .. LOAD
  .. " bench/tlsload.c $(pkg-config --cflags --libs openssl)"),
  "cannot build bench/tlsload.c")

local function cpu(pid) return H.cpu({pid}) end

local cert, key = certs.path("ec.pem"), certs.path("ec.key")

-- ---- the servers ---------------------------------------------------------

local servers = {}
local function want(tag) return not ONLY or ONLY:find(tag, 1, true) end

if want("ours") then
  servers[#servers + 1] = {tag = "ours", name = "lua-smtpd", cmd = function(port)
    return ("BENCH_COUNT_DIR=/tmp exec lua5.4 bin/lua-smtpd -n -c "
      .. "bench/tls_handler.lua --tls-cert %s --tls-key %s 127.0.0.1:%d")
      :format(cert, key, port)
  end}
end
if want("node") then
  local path, why = H.node_module("smtp-server")
  if path then
    servers[#servers + 1] = {tag = "node", name = "smtp-server (Node.js)",
      cmd = function(port)
        return ("NODE_PATH=%s exec node bench/peers/smtp_server_tls.js %d %s %s")
          :format(path, port, cert, key)
      end}
  else
    note("skipping smtp-server: " .. why)
  end
end
if want("aiosmtpd") then
  local py = H.python_with("aiosmtpd")
  if not py and H.is_root() then
    H.apt_install("python3-aiosmtpd")
    py = H.python_with("aiosmtpd")
  end
  if py then
    servers[#servers + 1] = {tag = "aiosmtpd", name = "aiosmtpd",
      cmd = function(port)
        return ("exec %s -W ignore bench/peers/aiosmtpd_tls.py %d %s %s")
          :format(py, port, cert, key)
      end}
  else
    note("skipping aiosmtpd: not installed (apt-get install python3-aiosmtpd)")
  end
end

-- ---- the measurements ------------------------------------------------------

local function load(mode, port, msgs)
  local out = capture(("%s %s 127.0.0.1 %d %d %d %d"):format(LOAD, mode, port,
    PROCS, msgs, SIZE))
  local n, secs, failed = out:match("^(%d+) ([%d.]+) (%d+)")
  assert(n, "tlsload said: " .. out)
  return tonumber(n), tonumber(secs), tonumber(failed)
end

-- Opens IDLE connections with STARTTLS and one EHLO each; the server's
-- RSS per connection in KiB, and how long opening took.
local function idle(pid, port)
  local map = core.map()
  local conns = {}
  local function step(from, to, pred, what)
    H.run_until(map, function()
      for i = from, to do
        local c = conns[i]
        if not c.done then
          c.buf = c.buf .. c.tcp:read()
          local _, eof = c.tcp:status()
          if eof then error(("connection %d closed: %q"):format(i, c.buf)) end
          if not pred(c) then return false end
          c.done = true
        end
      end
      return true
    end, 120, what)
    for i = from, to do conns[i].done = false end
  end
  local function settle()
    local t0 = H.now()
    H.run_until(map, function() return H.now() - t0 > 0.5 end, 5)
  end
  settle()
  local base = H.status_kb(pid, "VmRSS")
  local t0 = H.now()
  for from = 1, IDLE, BATCH do
    local to = math.min(IDLE, from + BATCH - 1)
    for i = from, to do
      conns[i] = {tcp = assert(core.tcp_connect(map, "127.0.0.1", port)),
                  buf = ""}
    end
    step(from, to, function(c) return c.buf:find("^220 .-\r\n") end,
         "greetings")
    for i = from, to do
      conns[i].buf = ""
      conns[i].tcp:write("EHLO idle\r\nSTARTTLS\r\n")
    end
    step(from, to, function(c) return c.buf:find("\r\n220 [^\r\n]*\r\n$") end,
         "STARTTLS")
    for i = from, to do
      conns[i].buf = ""
      assert(conns[i].tcp:starttls({verify = false}))
      conns[i].tcp:write("EHLO idle\r\n")
    end
    step(from, to, function(c) return c.buf:find("\r\n250 [^\r\n]*\r\n$")
                                      or c.buf:find("^250 [^\r\n]*\r\n$") end,
         "EHLO over TLS")
  end
  local opened = H.now() - t0
  settle()
  local per = (H.status_kb(pid, "VmRSS") - base) / IDLE
  for i = 1, IDLE do conns[i].tcp:close() end
  map:loop(0, 2)
  map:close()
  return per, opened
end

local results = {}
for _, s in ipairs(servers) do
  local port = H.free_port()
  local pid, out = H.spawn(s.cmd(port))
  local ok, err = pcall(function()
    assert(H.wait_listening(port, 20), "did not start: "
           .. (H.readfile(out) or ""))
    local r = {name = s.name, tag = s.tag}
    -- warm up
    load("new", port, 5)
    local c0 = cpu(pid)
    local n, secs, failed = load("new", port, NEW_MSGS)
    local c1 = cpu(pid)
    r.new_rate, r.new_cpu, r.new_failed = n / secs, (c1 - c0) / n * 1000,
                                          failed
    n, secs, failed = load("reuse", port, REUSE_MSGS)
    local c2 = cpu(pid)
    r.reuse_rate, r.reuse_cpu, r.reuse_failed = n / secs,
                                                (c2 - c1) / n * 1000, failed
    results[#results + 1] = r
    if IDLE > 0 then
      local iok, kib, opened = pcall(idle, pid, port)
      if iok then
        r.idle_kib, r.idle_secs = kib, opened
      else
        r.idle_err = tostring(kib):gsub("^.-:%d+: ", "")
        note(("%s could not hold %d idle TLS connections: %s"):format(
          s.name, IDLE, r.idle_err))
      end
    end
  end)
  H.kill(pid)
  os.remove(out)
  if not ok then note(s.name .. ": " .. tostring(err)) end
end

-- ---- the report ---------------------------------------------------------------

print(("\nTLS (STARTTLS + AUTH PLAIN, ECDSA P-256, %d load processes, "
       .. "%d-byte messages)"):format(PROCS, SIZE))
print(("  %-24s %12s %10s %12s %10s %12s"):format("server",
  "new conn/s", "CPU ms", "reused msg/s", "CPU ms", "idle KiB"))
local ours
for _, r in ipairs(results) do
  if r.tag == "ours" then ours = r end
  print(("  %-24s %12.0f %10.2f %12.0f %10.3f %12s%s"):format(r.name,
    r.new_rate, r.new_cpu, r.reuse_rate, r.reuse_cpu,
    r.idle_kib and ("%.2f"):format(r.idle_kib) or
      (r.idle_err and "failed" or "-"),
    (r.new_failed + r.reuse_failed > 0) and
      ("  (%d failed)"):format(r.new_failed + r.reuse_failed) or ""))
end
local status = 0
if ours then
  for _, r in ipairs(results) do
    if r ~= ours then
      print(("  lua-smtpd vs %s: %.2fx new connections, %.2fx reused "
             .. "sessions%s"):format(r.name, ours.new_rate / r.new_rate,
        ours.reuse_rate / r.reuse_rate, (ours.idle_kib and r.idle_kib)
          and (", %.2fx less memory per idle TLS connection"):format(
            r.idle_kib / ours.idle_kib) or ""))
    end
  end
  if ours.idle_kib then
    local met = ours.idle_kib <= IDLE_LIMIT_KIB
    print(("  lua-smtpd: %.2f KiB per idle TLS connection at %d (target %d "
           .. "KiB: %s)"):format(ours.idle_kib, IDLE, IDLE_LIMIT_KIB,
           met and "met" or "MISSED"))
  end
  if ours.new_failed + ours.reuse_failed > 0 then status = 1 end
else
  status = ONLY and ONLY:find("ours", 1, true) and 1 or 0
end
certs.cleanup()
os.exit(status)

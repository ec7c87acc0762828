-- bench/auth: what authenticating a message costs.
--   1. CPU per message for SPF + DKIM (one rsa-sha256 2048 and one
--      ed25519 signature) + DMARC with a warm DNS cache: ours, dkimpy with
--      pyspf (SPF and DKIM: they have no DMARC) and mailauth (Node; SPF,
--      DKIM, ARC, DMARC). Goal: at least 10x less CPU than the faster.
--   2. DATA throughput with authentication on against off, for 1 KiB and
--      1 MiB messages (bench/pipeload lockstep). Goal: at least 0.8x.
-- BENCH_SCALE scales the counts.
local H = require "helper"
local smtpd = require "smtpd"
local peers = require "peers"
local cjson = require "cjson"

local SCALE = tonumber(os.getenv("BENCH_SCALE") or "1") or 1
local N = math.max(50, math.floor(2000 * SCALE))
local WORK = "bench/.work"
local LOAD = WORK .. "/pipeload"

local function note(s) io.stderr:write("bench/auth: ", s, "\n") end
assert(os.execute("mkdir -p " .. WORK .. " && cc -O2 -o " .. LOAD .. " bench/pipeload.c"))

local rsa, ed = WORK .. "/auth-rsa.pem", WORK .. "/auth-ed.pem"
assert(os.execute(("[ -f %s ] || openssl genpkey -algorithm RSA -pkeyopt "
                   .. "rsa_keygen_bits:2048 -out %s 2>/dev/null"):format(rsa, rsa)))
assert(os.execute(("[ -f %s ] || openssl genpkey -algorithm ED25519 -out %s "
                   .. "2>/dev/null"):format(ed, ed)))

-- The records, for every side (ours from a DNS server on loopback).
local RECORDS = {
  ["example.com TXT"] = "v=spf1 ip4:192.0.2.0/24 -all",
  ["_dmarc.example.com TXT"] = "v=DMARC1; p=reject",
  ["r1._domainkey.example.com TXT"] = smtpd.dkim.key_record(rsa),
  ["e1._domainkey.example.com TXT"] = smtpd.dkim.key_record(ed, "ed25519-sha256"),
  -- pipeload's sender
  ["example.org TXT"] = "v=spf1 ip4:127.0.0.0/8 -all",
}
local zone = {}
for k, v in pairs(RECORDS) do
  local name = k:match("^(%S+)")
  zone[name] = {{TXT = v}}
end
local zone_path = WORK .. "/auth-zone.json"
local f = assert(io.open(zone_path, "w"))
f:write(cjson.encode(zone))
f:close()
local records_path = WORK .. "/auth-records.json"
f = assert(io.open(records_path, "w"))
f:write(cjson.encode(RECORDS))
f:close()
local server, why = peers.zone(zone_path)
if not server then
  note("no DNS server for the bench (" .. tostring(why) .. "): skipped")
  return
end

local lines = {"From: Alice <alice@example.com>", "To: bob@example.net",
               "Subject: a message to authenticate", "Date: Fri, 04 Dec 2026 10:00:00 +0000",
               "Message-ID: <bench@example.com>", "MIME-Version: 1.0",
               "Content-Type: text/plain; charset=utf-8", ""}
for i = 1, 60 do
  lines[#lines + 1] = ("Line %d of the body, long enough to be a line of mail text."):format(i)
end
local body = table.concat(lines, "\n") .. "\n"
local sigs = smtpd.dkim.sign(body, {domain = "example.com", keys = {
  {selector = "r1", key = rsa}, {selector = "e1", key = ed, algorithm = "ed25519-sha256"}}})
local msg = sigs:gsub("\r\n", "\n") .. "\n" .. body
local msg_path = WORK .. "/auth-message.eml"
f = assert(io.open(msg_path, "wb"))
f:write((msg:gsub("\n", "\r\n")))
f:close()

-- 1. ours, in this process, on a map whose resolver asks the zone server
local map = smtpd.core.map()
assert(smtpd.dns.configure{servers = {"127.0.0.1:" .. server.port}, map = map,
                           timeout = 2, tries = 2})
local function once(dkim_only)
  local spf = "pass"
  if not dkim_only then
    spf = smtpd.spf.check{ip = "192.0.2.1", helo = "mail.example.com",
                          mailfrom = "alice@example.com", map = map}
  end
  local d = smtpd.dkim.verify(msg, {map = map})
  assert(spf == "pass" and d[1].result == "pass" and d[2].result == "pass",
         "not a pass: " .. tostring(spf) .. " " .. tostring(d[1].reason))
  if not dkim_only then
    local r = smtpd.dmarc.check{from_domain = "example.com",
      spf = {result = spf, domain = "example.com"}, dkim = d, map = map}
    assert(r == "pass")
  end
end
local function cpu_us(fn)
  fn()
  local t0 = os.clock()
  for _ = 1, N do fn() end
  return (os.clock() - t0) / N * 1e6
end
local ours = cpu_us(function() once(false) end)
local ours_dkim = cpu_us(function() once(true) end)
map:close()

local dkimpy, mailauth
local py = H.python_with("dkim")
if py and H.python_with("spf") then
  local out = H.capture(("%s bench/peers/auth_dkimpy.py %s %s %d 2>&1")
                        :format(py, records_path, msg_path, math.max(20, N // 10)))
  dkimpy = tonumber(out:match("^([%d.]+)"))
  if not dkimpy then note("dkimpy: " .. out) end
else
  note("python3-dkim or python3-spf is not installed: dkimpy skipped")
end
local mods = H.node_module("mailauth")
if mods then
  local out = H.capture(("NODE_PATH=%s node bench/peers/auth_mailauth.js %s %s %d 2>&1")
                        :format(mods, records_path, msg_path, math.max(20, N // 4)))
  mailauth = tonumber(out:match("^([%d.]+)"))
  if not mailauth then note("mailauth: " .. out) end
else
  note("mailauth (npm) is not installed: skipped")
end
-- 2. DATA throughput, authentication on and off
local function load(auth, procs, msgs, size)
  local port = H.free_port()
  local pid = H.spawn(("BENCH_DNS=127.0.0.1:%d %s BENCH_COUNT_DIR=/tmp exec lua5.4 "
                       .. "bin/lua-smtpd -n -c bench/auth_handler.lua 127.0.0.1:%d "
                       .. "</dev/null"):format(server.port, auth and "BENCH_AUTH=1" or "", port))
  if not H.wait_listening(port, 15) then
    H.kill(pid)
    error("the server did not start")
  end
  H.capture(("timeout 60 %s lockstep 127.0.0.1 %d 2 5 %d"):format(LOAD, port, size))
  local out = H.capture(("timeout 600 %s lockstep 127.0.0.1 %d %d %d %d")
                        :format(LOAD, port, procs, msgs, size))
  H.kill(pid)
  local n, secs, fails = out:match("(%d+) ([%d.]+) (%d+)")
  n, secs, fails = tonumber(n), tonumber(secs), tonumber(fails)
  if not n or n == 0 or fails > 0 then error("the load failed: " .. out) end
  return n / secs
end
local small = math.max(20, math.floor(500 * SCALE))
local big = math.max(2, math.floor(10 * SCALE))
-- The best of three runs each, on and off in turn: one run on this
-- machine can be half as fast as the next.
local a_off, a_on, d_off, d_on = 0, 0, 0, 0
for _ = 1, 3 do
  a_off = math.max(a_off, load(false, 20, small, 1024))
  a_on = math.max(a_on, load(true, 20, small, 1024))
  d_off = math.max(d_off, load(false, 20, big, 1048576))
  d_on = math.max(d_on, load(true, 20, big, 1048576))
end
peers.stop()

print("")
print(("Authenticating one message (SPF, DKIM rsa-sha256 2048 + ed25519, DMARC), "
       .. "warm DNS cache, %d times"):format(N))
print(("  lua-smtpd, SPF + DKIM + DMARC        %9.1f us CPU per message"):format(ours))
print(("  lua-smtpd, DKIM only                 %9.1f us"):format(ours_dkim))
if dkimpy then
  print(("  dkimpy + pyspf (SPF + DKIM)          %9.1f us  (ours %.1fx less)")
        :format(dkimpy, dkimpy / ours))
end
if mailauth then
  print(("  mailauth (SPF + DKIM + ARC + DMARC)  %9.1f us  (ours %.1fx less)")
        :format(mailauth, mailauth / ours))
end
-- The floor under any implementation on OpenSSL: the two signature
-- verifies alone (openssl speed, this machine, now).
local function per_s(args)
  return tonumber(H.capture(("openssl speed -seconds 1 %s 2>/dev/null | tail -1"):format(args))
                  :match("([%d.]+)%s*$"))   -- the last column: verifies/s
end
local ed_s, rsa_s = per_s("ed25519"), per_s("rsa2048")
local floor = (ed_s and rsa_s) and (1e6 / ed_s + 1e6 / rsa_s) or nil
if floor then
  print(("  (OpenSSL's floor here, openssl speed: one Ed25519 verify %.1f us + one RSA-2048 "
         .. "verify %.1f us = %.1f us)"):format(1e6 / ed_s, 1e6 / rsa_s, floor))
end
local faster = math.min(dkimpy or math.huge, mailauth or math.huge)
if faster < math.huge then
  print(("goal: at least 10x less CPU than the faster of them: %s (%.1fx; 10x is %.1f us%s)")
        :format(faster / ours >= 10 and "met" or "NOT met", faster / ours, faster / 10,
                floor and floor >= faster / 10 and ", at or under the two verifies alone" or ""))
end

print("")
print("DATA throughput, authentication = true against none (bench/pipeload lockstep, 20 "
      .. "connections; the best of 3 runs each)")
print(("  (a) 1 KiB messages   off %8.0f msg/s   on %8.0f msg/s   %.2fx"):format(a_off, a_on, a_on / a_off))
print(("  (d) 1 MiB messages   off %8.1f msg/s   on %8.1f msg/s   %.2fx"):format(d_off, d_on, d_on / d_off))
print(("goal: at least 0.8x with authentication on: %s"):format(
  (a_on >= 0.8 * a_off and d_on >= 0.8 * d_off) and "met" or "NOT met"))

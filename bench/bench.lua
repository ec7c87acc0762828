-- make bench: lua-smtpd with a Lua handler against Postfix's smtp-sink,
-- nodemailer's smtp-server, CPython's smtpd and aiosmtpd, all driven by
-- Postfix's smtp-source on loopback, one server at a time. See
-- bench/README.md for how to read the table.
local H = require "helper"
local core = H.core

local SCALE = tonumber(os.getenv("BENCH_SCALE") or "1") or 1
local ONLY = os.getenv("BENCH_ONLY")        -- e.g. "ours,sink": a subset
local WHICH = os.getenv("BENCH_WORKLOADS")  -- e.g. "a,d"
-- One smtp-source drives each run: it holds every session in one process,
-- as in the figures the targets were set from. BENCH_CLIENTS=2 splits the
-- sessions over two processes.
local CLIENTS = tonumber(os.getenv("BENCH_CLIENTS") or "1") or 1
-- Loopback figures on a shared machine move by 10-20 % from run to run:
-- each server gets up to ROUNDS runs, interleaved, and keeps its best.
-- A run longer than SLOW seconds is not repeated.
local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS") or "3") or 3
local SLOW = 5
local DRIVE_TIMEOUT = 120
local ROOT = assert(os.getenv("PWD"))
local WORK = ROOT .. "/bench/.work"
local failures = {}

local function printf(fmt, ...) io.stdout:write(fmt:format(...)) end
local function note(fmt, ...) io.stderr:write("bench: ", fmt:format(...), "\n") end
local capture = H.capture

-- ---- peers: found, or installed when we are root ------------------------

local have = {}
local why = {}
if not H.ensure("smtp-source", "postfix") then
  io.stderr:write("bench: smtp-source (Debian postfix) is needed to drive "
    .. "the bench; run: sudo apt-get install -y postfix\n")
  os.exit(1)
end
have.sink = H.have("smtp-sink")
why.sink = "smtp-sink missing (apt-get install postfix)"
have.cpython = H.python_with_smtpd()
why.cpython = "no Python with the smtpd module (3.11 or earlier)"
have.aiosmtpd = H.python_with("aiosmtpd")
if not have.aiosmtpd and H.is_root() then
  note("installing python3-aiosmtpd")
  have.aiosmtpd = H.apt_install("python3-aiosmtpd") and H.python_with("aiosmtpd")
end
why.aiosmtpd = "aiosmtpd missing (apt-get install python3-aiosmtpd)"
do
  local node = H.ensure("node", "nodejs")
  local npm = node and H.ensure("npm", "npm")
  local function found()
    return os.execute("cd " .. WORK .. " 2>/dev/null && node -e "
      .. "\"require.resolve('smtp-server')\" >/dev/null 2>&1") == true
  end
  if npm and not found() then
    note("installing smtp-server from the npm registry into bench/.work")
    os.execute("mkdir -p " .. WORK .. " && cd " .. WORK .. " && npm install "
      .. "--no-audit --no-fund --no-save --loglevel=error smtp-server "
      .. ">/dev/null 2>&1")
  end
  have.node = node and found()
  why.node = node and "npm install smtp-server failed (is the npm registry "
    .. "reachable?)" or "node missing (apt-get install nodejs npm)"
end

-- ---- processes: CPU and memory from /proc --------------------------------

local function children(pid)
  local out = {}
  for c in capture("pgrep -P " .. pid .. " 2>/dev/null"):gmatch("%d+") do
    out[#out + 1] = tonumber(c)
  end
  return out
end

-- The server and its workers.
local function tree(pid)
  local t = {pid}
  for _, c in ipairs(children(pid)) do t[#t + 1] = c end
  return t
end

local cpu = H.cpu

local function hwm(pids)
  local kb = 0
  for _, p in ipairs(pids) do
    kb = kb + H.status_kb(p, "VmHWM")
  end
  return kb
end

local function stop(pid)
  local pids = tree(pid)
  os.execute("kill " .. pid .. " 2>/dev/null")
  local t0 = core.hrtime()
  while core.hrtime() - t0 < 5 do
    local any = false
    for _, p in ipairs(pids) do if H.alive(p) then any = true end end
    if not any then return end
    os.execute("sleep 0.05")
  end
  for _, p in ipairs(pids) do os.execute("kill -9 " .. p .. " 2>/dev/null") end
end

-- ---- the servers ---------------------------------------------------------

-- smtp-source's -l payload is lines of at most 80 bytes with CRLF; the last
-- CRLF is the one before ".". Our core hands Lua LF line ends.
local function body_len(payload)
  return payload - (math.ceil(payload / 80) - 1)
end

local function count_dir()
  local d = os.tmpname()
  os.remove(d)
  os.execute("mkdir -p " .. d)
  return d
end

local function ours(workers)
  return {
    id = workers > 1 and "ours" .. workers or "ours",
    name = workers > 1 and ("lua-smtpd, %d workers"):format(workers)
      or "lua-smtpd (Lua handler)",
    ours = true,
    start = function(self, port, w)
      self.dir = count_dir()
      return H.spawn(("BENCH_COUNT_DIR=%s BENCH_BODY=%d exec lua5.4 "
        .. "bin/lua-smtpd -n %s-c bench/handler.lua 127.0.0.1:%d </dev/null")
        :format(self.dir, body_len(w.size),
                workers > 1 and ("--workers %d "):format(workers) or "",
                port))
    end,
    -- Asks every process for its count (SIGUSR1) and adds them up.
    counted = function(self, pid)
      local pids = workers > 1 and children(pid) or {pid}
      os.execute("rm -f " .. self.dir .. "/*")
      os.execute("kill -USR1 " .. pid)
      local n, bad, files = 0, 0, 0
      local t0 = core.hrtime()
      while core.hrtime() - t0 < 5 do
        n, bad, files = 0, 0, 0
        for _, p in ipairs(pids) do
          local s = H.readfile(self.dir .. "/" .. p)
          if s then
            local a, b = s:match("(%d+) (%d+)")
            n, bad, files = n + tonumber(a), bad + tonumber(b), files + 1
          end
        end
        if files == #pids then break end
        os.execute("sleep 0.05")
      end
      os.execute("rm -rf " .. self.dir)
      return n, bad, files == #pids
    end,
  }
end

local SERVERS = {
  ours(1),
  {id = "sink", name = "smtp-sink (Postfix)",
   start = function(_, port)
     return H.spawn(("exec smtp-sink %s127.0.0.1:%d 1024 </dev/null")
       :format(H.is_root() and "-u nobody " or "", port))
   end},
  {id = "node", name = "smtp-server (Node.js)",
   start = function(_, port)
     return H.spawn(("NODE_PATH=%s/node_modules exec node "
       .. "bench/peers/smtp_server.js %d </dev/null"):format(WORK, port))
   end},
  {id = "cpython", name = "CPython smtpd",
   start = function(_, port)
     return H.spawn(("exec %s -W ignore bench/peers/smtpd_count.py %d "
       .. "</dev/null"):format(have.cpython, port))
   end},
  {id = "aiosmtpd", name = "aiosmtpd Sink",
   start = function(_, port)
     return H.spawn(("exec %s -m aiosmtpd -n -l 127.0.0.1:%d "
       .. "-c aiosmtpd.handlers.Sink </dev/null"):format(have.aiosmtpd, port))
   end},
}
have.ours = true

local function wanted(id)
  if not ONLY then return true end
  for x in ONLY:gmatch("[^,]+") do if x == id then return true end end
  return false
end

-- ---- the workloads -------------------------------------------------------

local KIB, MIB = 1024, 1024 * 1024
local WORKLOADS = {
  {id = "a", title = "1 KiB messages, 20 sessions, connections reused (-d)",
   sessions = 20, reuse = true, size = KIB, count = 40000},
  {id = "b", title = "1 KiB messages, 20 sessions, a new connection per "
     .. "message", sessions = 20, reuse = false, size = KIB, count = 10000},
  {id = "c", title = "1 KiB messages, 500 concurrent sessions (-d)",
   sessions = 500, reuse = true, size = KIB, count = 40000},
  {id = "d", title = "1 MiB messages, 20 sessions (-d)",
   sessions = 20, reuse = true, size = MIB, count = 800},
}
for i = #WORKLOADS, 1, -1 do
  local w = WORKLOADS[i]
  w.count = math.max(w.sessions, math.floor(w.count * SCALE))
  if WHICH and not WHICH:find(w.id, 1, true) then
    table.remove(WORKLOADS, i)
  end
end

-- Runs `k` smtp-source processes side by side, splitting sessions and
-- messages; returns ok, wall seconds, the clients' CPU seconds.
local function drive(port, sessions, count, size, reuse, k)
  k = math.min(k, sessions)
  local parts = {}
  for i = 1, k do
    local s = sessions // k + (i <= sessions % k and 1 or 0)
    local m = count // k + (i <= count % k and 1 or 0)
    -- smtp-source has no timeouts of its own: a stuck server must not
    -- hold the bench.
    parts[#parts + 1] = ("timeout -k 5 %d smtp-source %s-s %d -m %d -l %d "
      .. "127.0.0.1:%d || echo FAIL $?"):format(DRIVE_TIMEOUT,
        reuse and "-d " or "", s, m, size, port)
  end
  -- `times` prints the shell's and then its children's user/system time.
  local script = "(" .. table.concat(parts, ") & (") .. ") & wait; times"
  local t0 = core.hrtime()
  local out = capture("sh -c '" .. script .. "' 2>&1")
  local wall = core.hrtime() - t0
  local lines = {}
  for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
  local cu, cs = 0, 0
  local last = lines[#lines] or ""
  local um, us, sm, ss = last:match("(%d+)m([%d.]+)s%s+(%d+)m([%d.]+)s")
  if um then cu, cs = um * 60 + us, sm * 60 + ss end
  local ok = not out:find("FAIL", 1, true) and not out:find("fatal", 1, true)
  return ok, wall, cu + cs, ok and "" or out:gsub("\n", " "):sub(1, 200)
end

local results = {}   -- results[workload.id][server.id]

local function run(server, w)
  local r = {name = server.name}
  if not have[server.id:gsub("%d+$", "")] then
    r.skip = why[server.id]
    return r
  end
  local port = H.free_port()
  local pid = server:start(port, w)
  if not H.wait_listening(port, 15) then
    stop(pid)
    r.skip = "did not start listening"
    failures[#failures + 1] = server.name .. " did not start"
    return r
  end
  -- Warm up: code paged in, caches and pools filled.
  local warm = math.min(w.sessions, 20) * 2
  local ok, _, _, err = drive(port, math.min(w.sessions, 20), warm, w.size,
                              w.reuse, 1)
  if not ok then
    stop(pid)
    r.skip = "warm-up failed: " .. err
    return r
  end
  local pids = tree(pid)
  local c0 = cpu(pids)
  local wall, ccpu
  ok, wall, ccpu, err = drive(port, w.sessions, w.count, w.size, w.reuse,
                              CLIENTS)
  pids = tree(pid)
  local c1 = cpu(pids)
  r.rate = w.count / wall
  r.cpu = (c1 - c0) / w.count * 1000
  r.client_cpu = ccpu / w.count * 1000
  r.hwm = hwm(pids)
  r.wall = wall
  if not ok then
    r.failed = "smtp-source: " .. err
    failures[#failures + 1] = ("%s on (%s): %s"):format(server.name, w.id,
                                                         err)
  end
  if server.ours then
    local n, bad, all = server:counted(pid)
    local want = w.count + warm
    r.check = ("handler saw %d of %d, %d of the wrong size"):format(n, want,
                                                                   bad)
    if not all or n ~= want or bad ~= 0 then
      failures[#failures + 1] = server.name .. " (" .. w.id .. "): "
                                .. r.check
    end
  end
  stop(pid)
  return r
end

local function fmt_rate(x)
  local s = ("%d"):format(math.floor(x + 0.5))
  return (s:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", ""))
end

local started = core.hrtime()
printf("lua-smtpd bench: %s, %d cores, %d smtp-source processes per run\n",
       capture("uname -sr"):gsub("\n", ""), tonumber(capture("nproc")) or 0,
       CLIENTS)

local WORKERS = {ours(2)}
for _, w in ipairs(WORKLOADS) do
  printf("\n(%s) %s: %d messages\n", w.id, w.title, w.count)
  printf("  %-26s %9s %11s %11s %10s %5s %8s\n", "server", "msgs/s",
         "CPU s/1000", "client CPU", "peak RSS", "runs", "ours is")
  results[w.id] = {}
  local list = {}
  for _, s in ipairs(SERVERS) do list[#list + 1] = s end
  if w.id == "a" or w.id == "c" then
    for _, s in ipairs(WORKERS) do list[#list + 1] = s end
  end
  for round = 1, ROUNDS do
    for _, s in ipairs(list) do
      local prev = results[w.id][s.id]
      if wanted(s.id:gsub("%d+$", "")) and (not prev or (prev.rate and
          not prev.failed and prev.wall <= SLOW)) then
        local r = run(s, w)
        if not prev then
          r.runs = 1
          results[w.id][s.id] = r
        else
          -- The best rate, the lowest CPU per message; a failure in any
          -- round shows (run() also recorded it, failing the bench).
          local best = (r.rate and r.rate > prev.rate) and r or prev
          best.runs = prev.runs + 1
          best.cpu = math.min(r.cpu or math.huge, prev.cpu)
          best.failed = r.failed or prev.failed
          results[w.id][s.id] = best
        end
      end
    end
  end
  local mine = results[w.id].ours
  for _, s in ipairs(list) do
    local r = results[w.id][s.id]
    if r and r.skip then
      printf("  %-26s skipped: %s\n", s.name, r.skip)
    elseif r then
      local ratio = ""
      if mine and mine.rate and s.id ~= "ours" then
        ratio = ("%.2fx"):format(mine.rate / r.rate)
      end
      printf("  %-26s %9s %11.3f %11.3f %6.1f MiB %5d %8s%s\n", s.name,
             fmt_rate(r.rate), r.cpu, r.client_cpu, r.hwm / 1024, r.runs,
             ratio, r.failed and "  FAILED" or "")
    end
  end
  if mine and mine.check then printf("  check: %s\n", mine.check) end
end

-- ---- targets -------------------------------------------------------------

printf("\ntargets (ratios from the runs above)\n")
local function target(label, ok, detail)
  printf("  %-58s %s  %s\n", label, ok == nil and "n/a " or
         (ok and "met " or "MISSED"), detail)
end
for _, w in ipairs(WORKLOADS) do
  local mine, best, bestname = results[w.id].ours, nil, nil
  for _, id in ipairs({"sink", "node", "cpython", "aiosmtpd"}) do
    local r = results[w.id][id]
    if r and r.rate and not r.failed and (not best or r.rate > best) then
      best, bestname = r.rate, r.name
    end
  end
  if mine and mine.rate and best then
    target(("(%s) at least 1.0x the best peer"):format(w.id),
           mine.rate >= best, ("%.2fx %s"):format(mine.rate / best, bestname))
  end
  for _, p in ipairs({{"cpython", 5}, {"aiosmtpd", 8}}) do
    local r = results[w.id][p[1]]
    if mine and mine.rate and r and r.rate then
      target(("(%s) at least %dx %s"):format(w.id, p[2], r.name),
             mine.rate >= p[2] * r.rate, ("%.2fx"):format(mine.rate / r.rate))
    end
  end
end
do
  local mine, sink = results.a and results.a.ours, results.a and results.a.sink
  if mine and mine.cpu and sink and sink.cpu then
    target("(a) server CPU per message no higher than smtp-sink's",
           mine.cpu <= sink.cpu, ("%.3f vs %.3f s/1000"):format(mine.cpu,
                                                                sink.cpu))
  end
  local d = results.d and results.d.ours
  if d and d.hwm then
    local flight = 20 * MIB
    target("(d) peak RSS under 3x the bytes in flight",
           d.hwm * 1024 < 3 * flight, ("%.1f MiB, limit %.0f MiB"):format(
             d.hwm / 1024, 3 * flight / MIB))
  end
  local one, two = results.a and results.a.ours, results.a and results.a.ours2
  if one and two and one.rate and two.rate then
    target("(a) 2 workers vs 1 (reported, no target)", nil,
           ("%.2fx"):format(two.rate / one.rate))
  end
  one, two = results.c and results.c.ours, results.c and results.c.ours2
  if one and two and one.rate and two.rate then
    target("(c) 2 workers vs 1 (reported, no target)", nil,
           ("%.2fx"):format(two.rate / one.rate))
  end
end

printf("\nbench took %.0f s\n", core.hrtime() - started)
if #failures > 0 then
  printf("\nFAILED:\n")
  for _, f in ipairs(failures) do printf("  %s\n", f) end
  os.exit(1)
end

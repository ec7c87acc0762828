-- Shared test helpers: a private map per test, servers on 127.0.0.1:0,
-- clients on the same loop, and every wait bounded by a timeout.

local smtpd = require "smtpd"
local core = smtpd.core

local H = {}
H.smtpd = smtpd
H.core = core

-- busted's per-test functions (pending, finally) live in the environment
-- of the spec files, not in _G: the first spec that requires this module
-- lends us that environment (the same one for every spec file).
local function spec_env()
  for level = 2, 30 do
    local info = debug.getinfo(level, "f")
    if not info then break end
    local i = 1
    while true do
      local name, v = debug.getupvalue(info.func, i)
      if not name then break end
      if name == "_ENV" and v ~= _G then return v end
      i = i + 1
    end
  end
  return _G
end
H.env = spec_env()

-- H.defer(fn): fn runs after the current test, whether it passed or
-- failed (last deferred first), so that nothing a failed test opened
-- leaks into the tests after it. Outside a test (setup) it does nothing:
-- the teardown there cleans up.
local deferred, in_test = {}, false
function H.defer(fn)
  if in_test then deferred[#deferred + 1] = fn end
  return in_test
end
local function run_deferred()
  in_test = false
  while #deferred > 0 do
    local fn = table.remove(deferred)
    local ok, err = pcall(fn)
    if not ok then io.stderr:write("cleanup failed: ", tostring(err), "\n") end
  end
  return nil, true
end
do
  local ok, busted = pcall(require, "busted")
  if ok and type(busted) == "table" and busted.subscribe then
    busted.subscribe({"test", "start"}, function()
      in_test = true
      return nil, true
    end)
    busted.subscribe({"test", "end"}, run_deferred)
  end
end
-- The checkout (the specs run from its top).
H.root = os.getenv("PWD") or "."

-- Under `make asan` the sanitizer runtimes are preloaded into lua5.4; keep
-- them out of every other program the specs run (python, curl, cp, ...),
-- which would otherwise abort on their own leaks.
-- (The mark is on os itself: busted gives each spec file a fresh _G, but
-- the one os table, so a mark in _G wrapped it once per file.)
if os.getenv("LD_PRELOAD") and not rawget(os, "smtpd_shell_wrapped") then
  rawset(os, "smtpd_shell_wrapped", true)
  local function clean(cmd)
    -- Our own programs (lua5.4, and bin/lua-smtpd, which runs under it
    -- on the same build) keep them.
    if cmd and not cmd:find("lua5.4 ", 1, true)
       and not cmd:find("bin/lua-smtpd", 1, true) then
      return "unset LD_PRELOAD; " .. cmd
    end
    return cmd
  end
  local execute, popen = os.execute, io.popen
  os.execute = function(cmd) return execute(clean(cmd)) end
  io.popen = function(cmd, mode) return popen(clean(cmd), mode) end
end

-- Under a runner that set the module paths inside Lua only (luarocks test:
-- busted's lpath/cpath from .busted), the programs the specs start
-- (lua5.4 -i, scripts) get them through the environment too.
if not os.getenv("LUA_PATH") and not rawget(os, "smtpd_paths_exported") then
  rawset(os, "smtpd_paths_exported", true)
  local cwd = os.getenv("PWD") or "."
  local function absolute(paths)
    local out = {}
    for entry in paths:gmatch("[^;]+") do
      if entry:sub(1, 1) ~= "/" then entry = cwd .. "/" .. entry end
      out[#out + 1] = entry
    end
    return table.concat(out, ";") .. ";;"
  end
  local prefix = ("export LUA_PATH='%s' LUA_CPATH='%s'; "):format(
    absolute(package.path), absolute(package.cpath))
  local execute, popen = os.execute, io.popen
  os.execute = function(cmd)
    return execute(cmd and prefix .. cmd)
  end
  io.popen = function(cmd, mode) return popen(prefix .. cmd, mode) end
end

-- Runs the map until pred() is true; raises after timeout seconds.
function H.run_until(map, pred, timeout, what)
  local t0 = H.now()
  timeout = timeout or 5
  while not pred() do
    if H.now() - t0 > timeout then
      error("timed out after " .. timeout .. "s waiting for " .. (what or
            "a condition"), 2)
    end
    map:loop(0.01, 1)
  end
end

-- Seconds on a monotonic clock (os.time is too coarse, os.clock counts
-- CPU).
H.now = core.hrtime

-- Keeps Lua busy for `seconds` without running any loop: what a script
-- scanning many connections, or a user at the prompt, does to the loop.
function H.busy(seconds)
  local t0 = core.hrtime()
  while core.hrtime() - t0 < seconds do end
end

-- A fresh map, closed after the test (H.defer).
function H.map()
  local map = core.map()
  H.defer(function() H.cleanup(map) end)
  return map
end

-- A server of class cls on 127.0.0.1:0 in a fresh map (closed after the
-- test).
function H.server(cls, opts, map)
  map = map or (opts and opts.map) or H.map()
  opts = opts or {}
  opts.map = map
  local srv = cls({"127.0.0.1", 0}, nil, opts)
  local host, port = srv:getsockname()
  return srv, map, host, port
end

-- A recording server class: messages land in srv.messages.
H.Recorder = smtpd.SMTPServer:extend("Recorder")
function H.Recorder:process_message(peer, mailfrom, rcpttos, data, kwargs)
  self.messages = self.messages or {}
  self.messages[#self.messages + 1] = {
    peer = peer, mailfrom = mailfrom, rcpttos = rcpttos, data = data,
    kwargs = kwargs,
  }
  if self.reply then return self.reply end
end

local Client = {}
Client.__index = Client

function H.connect(map, host, port)
  local c = assert(core.tcp_connect(map, host, port))
  return setmetatable({map = map, tcp = c, buf = ""}, Client)
end

function Client:pump()
  self.buf = self.buf .. self.tcp:read()
end

function Client:closed()
  local _, eof = self.tcp:status()
  return eof
end

-- Sends data, split into pieces of at most `split` bytes, letting the loop
-- run between pieces so they arrive as separate reads.
function Client:send(data, split)
  split = split or #data
  if split < 1 then split = 1 end
  for i = 1, #data, split do
    self.tcp:write(data:sub(i, i + split - 1))
    if split < #data then self.map:loop(0, 1) end
  end
  self.map:loop(0, 1)
end

-- Waits for n complete reply lines (a multi-line reply counts each line).
function Client:lines(n, timeout)
  -- Count CRLFs incrementally: replies can run to megabytes.
  local function count()
    local from = math.max(1, (self.scanned or 1) - 1)
    local _, k = self.buf:sub(from):gsub("\r\n", "")
    self.nl = (self.nl or 0) + k
    self.scanned = #self.buf + 1
    -- a CRLF split across the scan boundary was counted once (from - 1)
  end
  H.run_until(self.map, function()
    self:pump()
    count()
    return self.nl >= n or self:closed()
  end, timeout or 5, n .. " reply lines")
  self:pump()
  local out, pos = {}, 1
  while #out < n do
    local s, e = self.buf:find("\r\n", pos, true)
    if not s then break end
    out[#out + 1] = self.buf:sub(pos, s - 1)
    pos = e + 1
  end
  self.buf = self.buf:sub(pos)
  self.nl, self.scanned = nil, nil
  return out
end

-- Waits for one whole reply (all continuation lines), returns its lines.
function Client:reply(timeout)
  local lines = {}
  repeat
    local l = self:lines(1, timeout)[1]
    if not l then error("connection closed while waiting for a reply", 2) end
    lines[#lines + 1] = l
  until not l:match("^%d%d%d%-")
  return lines
end

-- Waits until the server closes the connection; returns all it sent.
function Client:wait_closed(timeout)
  H.run_until(self.map, function()
    self:pump()
    return self:closed()
  end, timeout or 5, "the server to close the connection")
  self:pump()
  local rest = self.buf
  self.buf = ""
  return rest
end

function Client:close()
  self.tcp:close()
  self.map:loop(0, 1)
end

-- Splits "a\r\nb\r\n" into {"a", "b"}.
function H.split_lines(s)
  local out = {}
  for line in s:gmatch("(.-)\r\n") do out[#out + 1] = line end
  return out
end

-- Runs a whole conversation (ending in QUIT or a close) against host:port:
-- returns every reply line after the greeting, and the greeting.
function H.converse(map, host, port, input, split)
  local c = H.connect(map, host, port)
  local greeting = c:lines(1)[1]
  c:send(input, split)
  local rest = c:wait_closed(10)
  c:close()
  return H.split_lines(rest), greeting
end

-- The replies after the first one's lines (EHLO's, however many
-- extensions it lists), as a flat list.
function H.after_ehlo(replies)
  local first = 1
  while replies[first] and replies[first]:match("^%d%d%d%-") do
    first = first + 1
  end
  return {table.unpack(replies, first + 1)}
end

-- Closes everything in the map and runs the close callbacks; a map
-- closed already is left alone.
function H.cleanup(map)
  if tostring(map):find("(closed)", 1, true) then return end
  smtpd.close_all(map)
  map:loop(0, 2)
  map:close()
end

-- Starts a shell command in the background; returns its pid and the file
-- its output goes to. H.kill(pid) ends it.
function H.spawn(cmd)
  local out = os.tmpname()
  local p = io.popen(("(%s) >%s 2>&1 & echo $!"):format(cmd, out))
  local pid = p:read("n")
  p:close()
  return pid, out
end

-- Runs a client command in the background while map serves, until it
-- exits (at most timeout seconds); returns what it printed.
function H.run_client(map, cmd, timeout)
  local pid, out = H.spawn(cmd)
  local ok, err = pcall(H.run_until, map, function()
    return not H.alive(pid)
  end, timeout or 20, cmd)
  H.kill(pid)
  local text = H.readfile(out) or ""
  os.remove(out)
  if not ok then error(err .. "\n" .. text) end
  return text
end

-- Runs bin/lua-smtpd with args to the end: its exit code and output.
function H.run_cli(args)
  local out = os.tmpname()
  local _, _, code = os.execute(("lua5.4 bin/lua-smtpd %s >%s 2>&1 </dev/null")
                                :format(args, out))
  local text = H.readfile(out)
  os.remove(out)
  return code, text
end

-- Waits until something accepts connections on 127.0.0.1:port.
function H.wait_listening(port, timeout)
  local map = H.core.map()
  local t0 = H.now()
  while H.now() - t0 < (timeout or 5) do
    local c = H.core.tcp_connect(map, "127.0.0.1", port)
    local connected, eof
    H.run_until(map, function()
      connected, eof = c:status()
      return connected or eof
    end, 2)
    c:close()
    map:loop(0, 1)
    if connected then
      H.cleanup(map)
      return true
    end
    os.execute("sleep 0.05")
  end
  H.cleanup(map)
  return false
end

-- A port that was free a moment ago (bind 0, read it, close).
function H.free_port()
  local map = H.core.map()
  local srv = H.Recorder({"127.0.0.1", 0}, nil, {map = map})
  local _, port = srv:getsockname()
  H.cleanup(map)
  return port
end

function H.is_root()
  local p = io.popen("id -u")
  local uid = p:read("n")
  p:close()
  return uid == 0
end

-- apt-get install of a Debian package, when root; true if it went well.
function H.apt_install(pkg)
  if not H.is_root() then return false end
  return os.execute("(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
    .. pkg .. " || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
    .. "apt-get install -y -qq " .. pkg .. ")) >/dev/null 2>&1") == true
end

-- Installs a Debian package when root and `cmd` is missing; true if the
-- command is there afterwards.
function H.ensure(cmd, pkg)
  if H.have(cmd) then return true end
  H.apt_install(pkg)
  return H.have(cmd)
end

-- True while the process runs (an exited child waiting to be reaped,
-- a zombie, counts as gone). Linux's /proc, else ps.
function H.alive(pid)
  local stat = H.readfile("/proc/" .. pid .. "/stat")
  if not stat then
    if H.readfile("/proc/self/stat") then return false end
    local state = H.capture("ps -o stat= -p " .. pid .. " 2>/dev/null")
    return state:match("%S") ~= nil and not state:match("^%s*Z")
  end
  local state = stat:match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

function H.kill(pid)
  if pid then os.execute("kill " .. pid .. " 2>/dev/null; sleep 0.05; kill -9 "
                         .. pid .. " 2>/dev/null") end
end

function H.readfile(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function H.have(cmd)
  return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == true
end

-- A Python 3 that can import `module`, or nil.
function H.python_with(module)
  for _, py in ipairs({"python3", "/usr/bin/python3", "python3.11"}) do
    if os.execute(py .. " -W ignore -c 'import " .. module
                  .. "' >/dev/null 2>&1") == true then
      return py
    end
  end
  return nil
end

-- The folder (for NODE_PATH) holding the npm package name, installed
-- from the npm registry into bench/.work when missing; nil, why when
-- there is no node or the registry cannot be reached.
function H.node_module(name)
  if not H.ensure("node", "nodejs") then return nil, "node is not installed" end
  local dir = H.root .. "/bench/.work"
  local function found()
    -- an ES module only package has no require.resolve: its package.json
    return os.execute(("cd %s 2>/dev/null && { node -e \"require.resolve('%s')\" "
                       .. ">/dev/null 2>&1 || [ -f node_modules/%s/package.json ]; }")
                      :format(dir, name, name)) == true
  end
  if not found() then
    if not H.ensure("npm", "npm") then return nil, "npm is not installed" end
    -- saved in bench/.work/package.json: npm prunes what it does not
    -- list, so one module installed must not remove the others
    os.execute(("mkdir -p %s && cd %s && { [ -f package.json ] || echo '{}' "
                .. ">package.json; } && npm install --no-audit --no-fund "
                .. "--save --loglevel=error %s >/dev/null 2>&1")
               :format(dir, dir, name))
    if not found() then
      return nil, "npm install " .. name .. " failed (is the registry reachable?)"
    end
  end
  return dir .. "/node_modules"
end

-- Python 3 with the smtpd module (3.11 and earlier).
function H.python_with_smtpd()
  return H.python_with("smtpd")
end

-- What cmd printed.
function H.capture(cmd)
  local p = io.popen(cmd)
  local s = p:read("a")
  p:close()
  return s
end

local clock_ticks
-- CPU seconds (user + system) the processes in pids used so far.
function H.cpu(pids)
  clock_ticks = clock_ticks or tonumber(H.capture("getconf CLK_TCK")) or 100
  local sum = 0
  for _, p in ipairs(pids) do
    local st = H.readfile("/proc/" .. p .. "/stat")
    if st then
      local f = {}
      for x in st:match("^%d+ %b() (.*)$"):gmatch("%S+") do f[#f + 1] = x end
      -- utime and stime are fields 14 and 15; this list starts at 3.
      sum = sum + tonumber(f[12]) + tonumber(f[13])
    end
  end
  return sum / clock_ticks
end

-- A kB figure of /proc/PID/status (VmRSS, VmHWM...); 0 once it is gone.
function H.status_kb(pid, field)
  local s = H.readfile("/proc/" .. pid .. "/status") or ""
  return tonumber(s:match(field .. ":%s+(%d+) kB")) or 0
end

-- Prints why a test is skipped (busted's pending shows as skipped).
function H.skip(reason)
  io.stderr:write("SKIP: " .. reason .. "\n")
  H.env.pending(reason)
end

-- True in a test build (make test: -DSMTPD_TESTING, with core.engine and
-- the fault sites); otherwise the test is skipped with the reason.
function H.testing()
  if core.TESTING then return true end
  H.skip("needs a test build of the core (make test builds one; this is "
         .. "a release build)")
  return false
end

return H

-- Using every core: opts.reuse_port and lua-smtpd --workers N.
local H = require "helper"
local smtpd = H.smtpd
local core = H.core

local BIN = "bin/lua-smtpd"

local function run(args)
  local out = os.tmpname()
  local _, _, code = os.execute(("timeout -k 5 30 lua5.4 %s %s >%s 2>&1 "
                                 .. "</dev/null")
                                :format(BIN, args, out))
  local text = H.readfile(out)
  os.remove(out)
  return code, text
end

local function children(pid)
  local p = io.popen("pgrep -P " .. pid)
  local out = {}
  for c in p:read("a"):gmatch("%d+") do out[#out + 1] = tonumber(c) end
  p:close()
  table.sort(out)
  return out
end

-- Waits (bounded) until f() returns a true value; returns it.
local function eventually(f, timeout, what)
  local t0 = H.now()
  while true do
    local v = f()
    if v then return v end
    if H.now() - t0 > (timeout or 10) then error("timed out: " .. what, 2) end
    os.execute("sleep 0.05")
  end
end

-- How long process pid has run, in seconds (from /proc; nil elsewhere).
local TICKS
do
  local p = io.popen("getconf CLK_TCK 2>/dev/null")
  TICKS = tonumber(p:read("a")) or 100
  p:close()
end
local function age(pid)
  local stat = H.readfile("/proc/" .. pid .. "/stat")
  local up = H.readfile("/proc/uptime")
  if not stat or not up then return nil end
  -- Field 22 (starttime), counted after the command's closing paren.
  local fields = {}
  for f in stat:match("%)%s+(.*)"):gmatch("%S+") do fields[#fields + 1] = f end
  return tonumber(up:match("^%S+")) - tonumber(fields[20]) / TICKS
end

-- A class file whose process_message records which process took it.
local function recorder_class(dir)
  local path = dir .. "/count.lua"
  local f = assert(io.open(path, "w"))
  f:write(([[
local smtpd = require "smtpd"
local C = smtpd.SMTPServer:extend("PidRecorder")
local n = 0
function C:process_message(peer, mailfrom, rcpttos, data)
  n = n + 1
  local f = assert(io.open(%q .. "/" .. smtpd.core.getpid() .. "." .. n, "w"))
  f:write(data)
  f:close()
end
return C
]]):format(dir))
  f:close()
  return path
end

local function listing(dir)
  local p = io.popen("ls " .. dir)
  local names = {}
  for l in p:read("a"):gmatch("[^\n]+") do names[#names + 1] = l end
  p:close()
  return names
end

local function send_one(port, i)
  local map = core.map()
  local c = H.connect(map, "127.0.0.1", port)
  assert.matches("^220 ", c:lines(1)[1])
  c:send(("HELO c%d\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"
          .. "Subject: %d\r\n\r\nbody %d\r\n.\r\nQUIT\r\n"):format(i, i, i))
  local got = c:lines(6, 10)
  assert.equal("250 OK", got[5])
  c:wait_closed()
  c:close()
  H.cleanup(map)
end

describe("opts.reuse_port", function()
  it("lets two servers listen on one port, and only when both ask", function()
    local map = core.map()
    local a = H.Recorder({"127.0.0.1", 0}, nil, {map = map, reuse_port = true})
    local _, port = a:getsockname()
    local b = H.Recorder({"127.0.0.1", port}, nil, {map = map,
                                                   reuse_port = true})
    assert.equal(port, select(2, b:getsockname()))
    local ok, err = pcall(H.Recorder, {"127.0.0.1", port}, nil, {map = map})
    assert.is_false(ok)
    assert.matches("EADDRINUSE", err)
    -- Both take connections.
    local c = H.connect(map, "127.0.0.1", port)
    assert.matches("^220 ", c:lines(1)[1])
    c:close()
    H.cleanup(map)
  end)

  it("must be a boolean", function()
    local ok, err = pcall(H.Recorder, {"127.0.0.1", 0}, nil,
                          {map = core.map(), reuse_port = "yes"})
    assert.is_false(ok)
    assert.matches("reuse_port must be true or false", err)
  end)
end)

describe("lua-smtpd --workers", function()
  local pid, dir
  after_each(function()
    if pid then
      for _, c in ipairs(children(pid)) do H.kill(c) end
      H.kill(pid)
    end
    if dir then os.execute("rm -rf " .. dir) end
    pid, dir = nil, nil
  end)

  local function start(n, port)
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
    local cls = recorder_class(dir)
    port = port or H.free_port()
    local out
    pid, out = H.spawn(("exec lua5.4 %s -n --workers %d -c %s 127.0.0.1:%d "
                        .. "</dev/null"):format(BIN, n, cls, port))
    return port, out
  end

  -- Two workers, listening; returns the port and the workers' pids.
  local function start_two()
    local port = start(2)
    assert.is_true(H.wait_listening(port, 10))
    local kids = eventually(function()
      local k = children(pid)
      return #k == 2 and k
    end, 10, "two workers")
    return port, kids
  end

  it("rejects a bad count and port 0", function()
    for _, bad in ipairs({"0", "-1", "abc", "1025"}) do
      local code, text = run("-n --workers " .. bad .. " 127.0.0.1:8025")
      assert.equal(1, code, bad)
      assert.matches("Invalid number of workers", text)
    end
    local code, text = run("-n --workers 2 127.0.0.1:0")
    assert.equal(1, code)
    assert.matches("%-%-workers needs a fixed port", text)
  end)

  it("starts N processes on one port; every message is delivered once",
     function()
    local port, kids = start_two()
    for i = 1, 40 do send_one(port, i) end
    local names = eventually(function()
      local l = listing(dir)
      return #l == 41 and l   -- count.lua and 40 messages
    end, 10, "40 messages on disk")
    local seen, by = {}, {}
    for _, name in ipairs(names) do
      local p = name:match("^(%d+)%.%d+$")
      if p then
        by[p] = (by[p] or 0) + 1
        local body = H.readfile(dir .. "/" .. name)
        local i = body:match("Subject: (%d+)")
        assert.is_nil(seen[i], "message " .. tostring(i) .. " twice")
        seen[i] = true
      end
    end
    for i = 1, 40 do assert.is_true(seen[tostring(i)], "message " .. i) end
    -- Only workers took messages, never the parent.
    for p in pairs(by) do
      assert.is_truthy(tonumber(p) == kids[1] or tonumber(p) == kids[2])
    end
  end)

  it("SIGTERM to the parent stops every worker and frees the port", function()
    local port, kids = start_two()
    send_one(port, 1)
    os.execute("kill -TERM " .. pid)
    eventually(function()
      return not H.alive(pid) and not H.alive(kids[1])
        and not H.alive(kids[2])
    end, 10, "everything to exit")
    local map = core.map()
    local c = core.tcp_connect(map, "127.0.0.1", port)
    local connected, eof
    H.run_until(map, function()
      connected, eof = c:status()
      return connected or eof
    end, 5)
    assert.is_falsy(connected)
    c:close()
    H.cleanup(map)
    pid = nil
  end)

  it("replaces a worker that dies", function()
    local port, kids = start_two()
    -- Past the start-up window: a crash now is not a failure to start.
    eventually(function()
      local a = age(kids[1])
      if a == nil then os.execute("sleep 1.2") end
      return a == nil or a > 1.2
    end, 10, "the worker to be past its start-up second")
    os.execute("kill -KILL " .. kids[1])
    local now = eventually(function()
      local k = children(pid)
      if #k == 2 and k[1] ~= kids[1] and k[2] ~= kids[1] then return k end
    end, 10, "a new worker")
    assert.is_true(H.alive(pid))
    assert.equal(2, #now)
    for i = 1, 10 do send_one(port, i) end
  end)

  it("a parent killed outright takes its workers along", function()
    local port, kids = start_two()
    os.execute("kill -KILL " .. pid)
    eventually(function()
      return not H.alive(kids[1]) and not H.alive(kids[2])
    end, 10, "the workers to exit")
    pid = nil
  end)

  it("workers that cannot listen stop the whole thing, exit 1", function()
    -- A listener without SO_REUSEPORT holds the port.
    local map = core.map()
    local holder = H.Recorder({"127.0.0.1", 0}, nil, {map = map})
    local _, port = holder:getsockname()
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
    local code, text = run(("-n --workers 2 -c %s 127.0.0.1:%d")
                           :format(recorder_class(dir), port))
    assert.equal(1, code)
    assert.matches("EADDRINUSE", text)
    assert.matches("failed to start", text)
    H.cleanup(map)
    pid = nil
  end)
end)

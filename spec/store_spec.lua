-- smtpd.store (memory, shared memory, Redis) and the rate limits counted
-- in it: in one process, across lua-smtpd --workers (shared memory), and
-- across two servers behind HAProxy (Redis).
local H = require "helper"
local smtpd = H.smtpd
local store = require "smtpd.store"

local have_redis = H.ensure("redis-server", "redis-server")

local function start_redis()
  local port = H.free_port()
  local pid, out = H.spawn(("exec redis-server --bind 127.0.0.1 --port %d "
    .. "--save '' --appendonly no"):format(port))
  local t0 = H.now()
  while H.now() - t0 < 10 do
    if (H.readfile(out) or ""):find("Ready to accept", 1, true) then
      H.defer(function() H.kill(pid); os.remove(out) end)
      return port
    end
    os.execute("sleep 0.05")
  end
  H.kill(pid)
  error("redis-server did not start: " .. (H.readfile(out) or ""))
end

-- The store contract, the same on every backend.
local function contract(st)
  assert.is_nil(st:get("nope"))
  assert.is_true(st:set("a", "x"))
  assert.equal("x", st:get("a"))
  assert.is_true(st:set("a", 42))
  assert.equal("42", st:get("a"))
  assert.same({false, "exists"}, {st:add("a", "y")})
  assert.is_true(st:add("b", "y"))
  assert.equal(1, st:incr("c"))
  assert.equal(6, st:incr("c", 5))
  assert.equal(4, st:incr("c", -2))
  assert.equal("4", st:get("c"))
  local v, err = st:incr("b")
  assert.is_nil(v)
  assert.matches("not an integer", err)
  assert.is_true(st:delete("a"))
  assert.is_nil(st:get("a"))
  assert.is_true(st:delete("a"))
  -- expiry: incr's ttl is set when the key is made, and kept after
  assert.equal(1, st:incr("t", 1, 0.3))
  assert.equal(2, st:incr("t", 1, 100))
  assert.is_true(st:set("s", "v", 0.3))
  os.execute("sleep 0.45")
  assert.is_nil(st:get("t"))
  assert.is_nil(st:get("s"))
  assert.is_true(st:add("s", "again", 1))
  assert.has_error(function() st:set("", "x") end)
  assert.has_error(function() st:set("k", {}) end)
  assert.has_error(function() st:set("k", "v", -1) end)
  assert.has_error(function() st:incr("k", 1.5) end)
end

describe("smtpd.store", function()
  it("keeps the contract in this process (memory:)", function()
    contract(smtpd.store())
    contract(store("memory:"))
  end)

  it("keeps the contract in shared memory (shm:), bounded by its size",
     function()
    local st = assert(store("shm:spec-contract?size=64k"))
    contract(st)
    local used, cap = st:count()
    assert.is_true(cap >= 100 and cap < 1000, cap)
    for i = 1, cap * 2 do assert(st:set("k" .. i, i)) end
    used = st:count()
    assert.equal(cap, used)                      -- the oldest went
    assert.is_nil(st:get("k1"))
    assert.equal(tostring(cap * 2), st:get("k" .. cap * 2))
    local _, err = st:set(("x"):rep(300), "v")
    assert.matches("too large", err)
    -- the same name is the same memory
    assert.equal(tostring(cap * 2), store("shm:spec-contract"):get("k" .. cap * 2))
  end)

  it("keeps the contract in Redis (redis://)", function()
    if not have_redis then
      return H.skip("redis-server is not installed and cannot be (not root)")
    end
    local port = start_redis()
    contract(assert(store(("redis://127.0.0.1:%d/1"):format(port))))
    local dead = store(("redis://127.0.0.1:%d"):format(H.free_port()))
    assert.same({nil, "connection refused"}, {dead:get("x")})
  end)

  it("raises on a bad URL", function()
    assert.has_error(function() store("ftp://x") end)
    assert.has_error(function() store("shm:x?size=lots") end)
  end)
end)

-- A client session: EHLO, then MAIL and RCPT; what MAIL and RCPT said.
local function session(map, port, from, rcpts)
  local c = H.connect(map, "127.0.0.1", port)
  local greeting = c:reply(10)[1]
  if not greeting:match("^220") then
    c:close()
    return greeting
  end
  c:send("HELO c\r\n")
  c:reply(10)
  c:send("MAIL FROM:<" .. from .. ">\r\n")
  local mail = c:reply(10)[1]
  local out = {mail = mail, rcpt = {}}
  for _, r in ipairs(rcpts or {}) do
    c:send("RCPT TO:<" .. r .. ">\r\n")
    out.rcpt[#out.rcpt + 1] = c:reply(10)[1]
  end
  c:send("QUIT\r\n")
  c:close()
  return out
end

describe("rate_limits", function()
  it("refuse connections (421), messages and recipients (450) past their "
     .. "limits, counting in the server's store", function()
    local st = smtpd.store()
    local srv, map, _, port = H.server(H.Recorder, {store = st,
      rate_limits = {connections_per_ip = {4, 60}, messages_per_ip = {3, 60},
                     recipients_per_sender = {2, 60}}})
    assert.equal(st, srv.store)
    local r1 = session(map, port, "a@x", {"1@y", "2@y", "3@y"})
    assert.equal("250 OK", r1.mail)
    assert.same({"250 OK", "250 OK"}, {r1.rcpt[1], r1.rcpt[2]})
    assert.matches("^450 4%.7%.1 Too many recipients for this sender", r1.rcpt[3])
    local r2 = session(map, port, "b@x", {"1@y"})
    assert.equal("250 OK", r2.rcpt[1])
    assert.equal("250 OK", session(map, port, "c@x").mail)
    assert.matches("^450 4%.7%.1 Too many messages from your address",
                   session(map, port, "d@x").mail)
    assert.matches("^421 4%.7%.0 .* Too many connections", session(map, port, "e@x"))
  end)

  it("keep the class's own checks, and fail open or closed when the store "
     .. "fails", function()
    local S = H.Recorder:extend("Picky")
    function S:check_sender(_, address)
      if address == "bad@x" then return "550 5.7.1 not you" end
    end
    local dead = "redis://127.0.0.1:" .. H.free_port()
    local _, map, _, port = H.server(S, {store = store(),
      rate_limits = {messages_per_ip = {10, 60}}})
    assert.matches("^550 5.7.1 not you", session(map, port, "bad@x").mail)
    assert.equal("250 OK", session(map, port, "good@x").mail)
    local _, _, _, p2 = H.server(S, {store = dead, map = map,
      rate_limits = {messages_per_ip = {10, 60}}})
    assert.equal("250 OK", session(map, p2, "good@x").mail)    -- on_error accept
    local _, _, _, p3 = H.server(S, {store = dead, map = map,
      rate_limits = {messages_per_ip = {10, 60}, on_error = "tempfail"}})
    assert.matches("^451 ", session(map, p3, "good@x").mail)
  end)

  it("check their options", function()
    for _, bad in ipairs({{connections = {1, 2}}, {messages_per_ip = {0, 60}},
                          {messages_per_ip = {1}}, {messages_per_ip = 5},
                          {on_error = "maybe"}}) do
      assert.has_error(function()
        H.server(H.Recorder, {rate_limits = bad, store = store()})
      end)
    end
    local ok, err = pcall(H.server, H.Recorder,
                          {rate_limits = {mesages_per_ip = {1, 2}}, store = store()})
    assert.is_false(ok)
    assert.matches('did you mean "messages_per_ip"', err)
  end)

  it("hold across lua-smtpd --workers 2 (the shared-memory store)",
     function()
    local dir = H.capture("mktemp -d"):gsub("%s+$", "")
    H.defer(function() os.execute("rm -rf " .. dir) end)
    local cls = dir .. "/limited.lua"
    local f = assert(io.open(cls, "w"))
    f:write([[
local smtpd = require "smtpd"
local C = smtpd.SMTPServer:extend("Limited")
function C:initialize(l, r, opts)
  opts.rate_limits = {recipients_per_ip = {3, 600}}
  C.super.initialize(self, l, r, opts)
end
function C:check_sender() return "250 2.1.0 pid " .. smtpd.core.getpid() end
function C:process_message() end
return C
]])
    f:close()
    local port = H.free_port()
    local pid, out = H.spawn(("exec lua5.4 bin/lua-smtpd -n --workers 2 -c %s "
                              .. "127.0.0.1:%d"):format(cls, port))
    H.defer(function()
      local p = io.popen("pgrep -P " .. pid)
      for c in p:read("a"):gmatch("%d+") do H.kill(tonumber(c)) end
      p:close()
      H.kill(pid)
      os.remove(out)
    end)
    assert.is_true(H.wait_listening(port, 10), H.readfile(out))
    local map = H.map()
    local pids, accepted, refused = {}, 0, 0
    local n = 0
    while n < 40 and (n < 8 or next(pids, next(pids)) == nil) do
      n = n + 1
      local r = session(map, port, "s@x", {"r@y"})
      local p = r.mail:match("pid (%d+)")
      assert(p, r.mail)
      pids[p] = true
      if r.rcpt[1] == "250 OK" then accepted = accepted + 1
      else
        assert.matches("^450 4%.7%.1 Too many recipients", r.rcpt[1])
        refused = refused + 1
      end
    end
    assert(next(pids, next(pids)), "every session went to one worker")
    assert.equal(3, accepted)
    assert.equal(n - 3, refused)
  end)

  it("hold across two servers behind HAProxy (the Redis store)", function()
    if not have_redis then
      return H.skip("redis-server is not installed and cannot be (not root)")
    end
    if not H.ensure("haproxy", "haproxy") then
      return H.skip("HAProxy is not installed and cannot be (not root)")
    end
    local rport = start_redis()
    local url = ("redis://127.0.0.1:%d/0"):format(rport)
    local map = H.map()
    local S = H.Recorder:extend("Named")
    function S:check_sender() return "250 2.1.0 " .. self.name end
    local servers = {}
    for _, name in ipairs({"a", "b"}) do
      local s = S("127.0.0.1:0", nil, {map = map, store = url,
        proxy_protocol = {trusted = {"127.0.0.1"}},
        rate_limits = {recipients_per_ip = {5, 600}}})
      s.name = name
      servers[#servers + 1] = s
    end
    local front = H.free_port()
    local dir = H.capture("mktemp -d"):gsub("%s+$", "")
    H.defer(function() os.execute("rm -rf " .. dir) end)
    local cfg = io.open(dir .. "/haproxy.cfg", "w")
    cfg:write(([[
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend smtp
    bind 127.0.0.1:%d
    default_backend two
backend two
    balance roundrobin
    server a 127.0.0.1:%d send-proxy-v2
    server b 127.0.0.1:%d send-proxy-v2
]]):format(front, select(2, servers[1]:getsockname()),
           select(2, servers[2]:getsockname())))
    cfg:close()
    local pid, log = H.spawn("exec haproxy -db -f " .. dir .. "/haproxy.cfg")
    H.defer(function() H.kill(pid); os.remove(log) end)
    assert.is_true(H.wait_listening(front, 10), H.readfile(log))
    local seen, accepted = {}, 0
    for _ = 1, 10 do
      local r = session(map, front, "s@x", {"r@y"})
      seen[r.mail:match("250 2%.1%.0 (%a)")] = true
      if r.rcpt[1] == "250 OK" then accepted = accepted + 1
      else assert.matches("^450 ", r.rcpt[1]) end
    end
    assert.is_true(seen.a and seen.b)
    assert.equal(5, accepted)
  end)
end)

-- The hook rate limits use at connect time, for any script: it runs
-- before the greeting, may wait, and its verdict is the client's fate.
describe("server:check_connection(peer)", function()
  it("greets (nil), refuses and closes (a reply), waits without holding "
     .. "the server, and fails safe", function()
    local S = smtpd.SMTPServer:extend("Door")
    function S:check_connection(peer)
      assert.equal("127.0.0.1", peer[1])
      local mode = self.mode
      if mode == "refuse" then return "554 5.7.1 go away" end
      if mode == "wait" then smtpd.sleep(0.2) end
      if mode == "error" then error("boom") end
      if mode == "hang" then smtpd.sleep(30) end
      if mode == "bad" then return 42 end
    end
    function S:process_message() end
    local srv, map, host, port = H.server(S, {handler_timeout = 0.4})
    local function first_two()
      local c = H.connect(map, host, port)
      c:send("HELO x\r\n")          -- sent early: held until the greeting
      local a = c:reply(5)[1]
      local ok, b = pcall(c.reply, c, 5)
      c:close()
      return a, ok and b[1] or "closed"
    end
    srv.mode = "ok"
    local a, b = first_two()
    assert.matches("^220 ", a)
    assert.matches("^250 ", b)
    srv.mode = "refuse"
    assert.same({"554 5.7.1 go away", "closed"}, {first_two()})
    -- while one connection waits, another is served
    srv.mode = "wait"
    local slow = H.connect(map, host, port)
    srv.mode = "ok"
    local t0 = H.now()
    a = first_two()
    assert.matches("^220 ", a)
    assert.is_true(H.now() - t0 < 0.2)
    assert.matches("^220 ", slow:reply(5)[1])
    slow:close()
    for _, mode in ipairs({"error", "bad"}) do
      srv.mode = mode
      a, b = first_two()
      assert.matches("^421 4%.3%.0 .* try again later", a)
      assert.equal("closed", b)
    end
    -- past handler_timeout the client is greeted
    srv.mode = "hang"
    a, b = first_two()
    assert.matches("^220 ", a)
    assert.matches("^250 ", b)
  end)
end)

-- smtpd.redis against Debian's redis-server (started here on loopback):
-- commands, replies of every kind, error replies, pipelining, AUTH and
-- SELECT, the pool, TLS, unix sockets; a hook that counts in Redis while
-- other sessions are served; and hostile servers (a reply cut short, a
-- server that never answers).
local H = require "helper"
local certs = require "certs"
local smtpd = H.smtpd
local redis = require "smtpd.redis"

local have = H.ensure("redis-server", "redis-server")
local srv = {}

local function start(args)
  local port = H.free_port()
  local dir = os.tmpname()
  os.remove(dir)
  os.execute("mkdir -p " .. dir)
  local pid, out = H.spawn(("exec redis-server --bind 127.0.0.1 --port %d "
    .. "--save '' --appendonly no --dir %s --unixsocket %s/redis.sock %s")
    :format(port, dir, dir, args or ""))
  local r = {pid = pid, out = out, port = port, dir = dir}
  local t0 = H.now()
  while H.now() - t0 < 10 do
    if (H.readfile(out) or ""):find("Ready to accept connections", 1, true) then
      return r
    end
    if not H.alive(pid) then break end
    os.execute("sleep 0.05")
  end
  H.kill(pid)
  return nil, H.readfile(out)
end

local function stop(r)
  if not r then return end
  H.kill(r.pid)
  os.remove(r.out)
  os.execute("rm -rf " .. r.dir)
end

describe("smtpd.redis", function()
  setup(function()
    if have then srv.main = assert(start()) end
  end)
  teardown(function() stop(srv.main) end)

  local function need()
    if not have then
      H.skip("redis-server is not installed and cannot be (not root)")
      return false
    end
    return true
  end

  local function url(db)
    return ("redis://127.0.0.1:%d/%d"):format(srv.main.port, db or 0)
  end

  it("runs commands and reads every kind of reply", function()
    if not need() then return end
    local map = H.map()
    local r = assert(redis.connect({host = "127.0.0.1", port = srv.main.port,
                                    map = map}))
    assert.equal("PONG", r:ping())
    assert.equal("OK", r:set("k", "v"))
    assert.equal("v", r:get("k"))
    assert.equal(redis.null, r:get("missing"))
    assert.equal(1, r:incr("n"))
    assert.equal(11, r:call("INCRBY", "n", 10))
    assert.equal(3, r:rpush("list", "a", "b", 42))
    assert.same({"a", "b", "42"}, r:lrange("list", 0, -1))
    local bin = "\0\r\n" .. ("x"):rep(100000)
    assert.equal("OK", r:set("bin", bin))
    assert.equal(bin, r:get("bin"))
    -- an error reply is nil, "ERR ..."; the connection stays usable
    local v, err = r:incr("k")
    assert.is_nil(v)
    assert.matches("^ERR ", err)
    assert.same({nil, "WRONGTYPE Operation against a key holding the wrong kind of value"},
                {r:lpush("k", "x")})
    assert.equal("v", r:get("k"))
    -- pipelining: every reply in order, an error as {false, msg}
    r:init_pipeline()
    r:set("p1", 1)
    r:incr("p1")
    r:incr("k")
    r:get("p1")
    local res = assert(r:commit_pipeline())
    assert.equal("OK", res[1])
    assert.equal(2, res[2])
    assert.is_false(res[3][1])
    assert.matches("^ERR ", res[3][2])
    assert.equal("2", res[4])
    -- MULTI/EXEC: a nested array
    r:multi()
    r:incr("t")
    r:incr("t")
    assert.same({1, 2}, r:exec())
    assert.has_error(function() r:set({}, 1) end)
    r:close()
    assert.same({nil, "closed"}, {r:get("k")})
  end)

  it("selects the database of the URL, authenticates, and pools", function()
    if not need() then return end
    local map = H.map()
    local admin = assert(redis.connect({host = "127.0.0.1", port = srv.main.port,
                                        map = map}))
    assert.equal("OK", admin:acl("SETUSER", "alice", "on", ">s3cr%t", "~*", "+@all"))
    admin:close()
    local a = assert(redis.connect(url(2)))
    a:set("where", "db2")
    a:close()
    local b = assert(redis.connect({host = "127.0.0.1", port = srv.main.port,
                                    map = map, db = 3}))
    assert.equal(redis.null, b:get("where"))
    b:close()
    local c = assert(redis.connect(("redis://alice:s3cr%%25t@127.0.0.1:%d/2")
                                   :format(srv.main.port)))
    assert.equal("db2", c:get("where"))
    assert.equal("alice", c:acl("WHOAMI"))
    assert(c:set_keepalive(10, 4))
    local d = assert(redis.connect(("redis://alice:s3cr%%25t@127.0.0.1:%d/2")
                                   :format(srv.main.port)))
    assert.equal(1, d._sock:getreusedtimes())
    assert.equal("db2", d:get("where"))
    d:close()
    local _, err = redis.connect(("redis://alice:wrong@127.0.0.1:%d"):format(srv.main.port))
    assert.matches("^WRONGPASS", err)
    -- a unix socket
    local u = assert(redis.connect("unix:" .. srv.main.dir .. "/redis.sock?db=2"))
    assert.equal("db2", u:get("where"))
    u:close()
    assert.has_error(function() redis.connect("http://x") end)
    assert.has_error(function() redis.connect({db = -1}) end)
  end)

  it("speaks TLS (rediss://)", function()
    if not need() then return end
    local tport = H.free_port()
    local r, out = start(("--tls-port %d --tls-cert-file %s --tls-key-file %s "
      .. "--tls-ca-cert-file %s --tls-auth-clients no"):format(tport,
      certs.path("ec.pem"), certs.path("ec.key"), certs.path("ca.pem")))
    if not r then
      H.skip("this redis-server has no TLS: " .. tostring(out):sub(1, 200))
      return
    end
    H.defer(function() stop(r) end)
    local c = assert(redis.connect({host = "127.0.0.1", port = tport,
      tls = {ca = certs.path("ca.pem"), sni = "localhost"}}))
    assert.equal("PONG", c:ping())
    assert.matches("^TLSv1", c._sock:info().tls.version)
    c:close()
    local _, err = redis.connect(("rediss://127.0.0.1:%d"):format(tport))
    assert.is_string(err)    -- our test CA is not the system's
  end)

  it("counts in Redis from process_message while other sessions go on",
     function()
    if not need() then return end
    local S = smtpd.SMTPServer:extend("Counter")
    local port = srv.main.port
    function S:process_message(_, mailfrom)
      local r, err = redis.connect({host = "127.0.0.1", port = port})
      if not r then return "451 4.3.0 " .. err end
      local n = r:incr("count:" .. mailfrom)
      r:set_keepalive()
      return "250 seen " .. n
    end
    local _, map, host, sport = H.server(S)
    local clients = {}
    for i = 1, 5 do
      local c = H.connect(map, host, sport)
      c:send(("HELO c\r\nMAIL FROM:<s%d@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n"
              .. "hi\r\n.\r\nMAIL FROM:<s%d@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n"
              .. "hi\r\n.\r\n"):format(i, i))
      clients[i] = c
    end
    for _, c in ipairs(clients) do
      local seen = {}
      for _ = 1, 10 do
        local r = c:reply(5)
        local n = r[#r]:match("^250 seen (%d+)")
        if n then seen[#seen + 1] = tonumber(n) end
      end
      assert.same({1, 2}, seen)
      c:close()
    end
  end)

  it("gives a clear error for a reply cut short, a silent server, a "
     .. "refused connection", function()
    if not need() then return end
    local py = H.python_with("socket")
    local port = H.free_port()
    local pid, out = H.spawn(py .. [[ -u -c "
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', ]] .. port .. [[)); s.listen(5); print('ready', flush=True)
a, _ = s.accept(); a.recv(100); a.sendall(b'\$10\r\nabc'); a.close()
b, _ = s.accept(); b.recv(100); b.sendall(b'*2\r\n:1\r\n?what\r\n'); b.close()
c, _ = s.accept(); time.sleep(5)
"]])
    H.defer(function() H.kill(pid); os.remove(out) end)
    local t0 = H.now()
    while not (H.readfile(out) or ""):find("ready") and H.now() - t0 < 5 do
      os.execute("sleep 0.05")
    end
    local r = assert(redis.connect({host = "127.0.0.1", port = port}))
    assert.same({nil, "closed"}, {r:get("x")})
    r = assert(redis.connect({host = "127.0.0.1", port = port}))
    local v, err = r:get("x")
    assert.is_nil(v)
    assert.matches("^protocol error: unknown reply type", err)
    r = assert(redis.connect({host = "127.0.0.1", port = port, timeout = 0.3}))
    t0 = H.now()
    assert.same({nil, "timeout"}, {r:get("x")})
    assert.is_true(H.now() - t0 < 2)
    assert.same({nil, "connection refused"},
                {redis.connect({host = "127.0.0.1", port = H.free_port()})})
  end)
end)

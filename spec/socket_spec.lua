-- smtpd.socket: the parked socket (connect, send, receive by line, count
-- or until close, TLS, timeouts, the keep-alive pool), outside hooks and
-- inside them, where a wait parks only its own session.
local H = require "helper"
local certs = require "certs"
local smtpd = H.smtpd
local core = H.core
local socket = require "smtpd.socket"

-- Reads an SMTP reply (every line of it) from s.
local function reply(s)
  local lines = {}
  repeat
    local line, err = s:receive("*l")
    if not line then return nil, err end
    lines[#lines + 1] = line
  until line:sub(4, 4) ~= "-"
  return table.concat(lines, "\n")
end

-- Reads replies from client c until one starts with prefix.
local function expect(c, prefix, timeout)
  local t0 = H.now()
  while true do
    local r = c:reply(timeout)
    if r[#r]:sub(1, #prefix) == prefix then return r end
    assert(H.now() - t0 < timeout, "no reply " .. prefix)
  end
end

describe("smtpd.socket", function()

  it("talks SMTP to a server outside hooks: lines, counts, until close",
     function()
    local _, map, host, port = H.server(H.Recorder)
    local s = socket.tcp()
    s:settimeout(5)
    assert.is_true(s:connect(host, port, {map = map}))
    assert.matches("^220 ", reply(s))
    assert.equal(11, s:send("EHLO test\r\n"))
    assert.matches("250 HELP$", reply(s))
    assert(s:send({"NOOP\r\n", "NOOP\r\n"}))
    assert.equal("250", s:receive(3))         -- a count
    assert.equal(" OK", s:receive("*l"))
    assert.equal("250 OK", s:receive())
    assert(s:send("QUIT\r\n"))
    local rest = s:receive("*a")              -- until the server closes
    assert.matches("^221 ", rest)
    local line, err, partial = s:receive("*l")
    assert.is_nil(line)
    assert.equal("closed", err)
    assert.equal("", partial)
    s:close()
    assert.same({nil, "closed"}, {s:send("x")})
  end)

  it("says why: refused, a read timeout that keeps the socket, a line past "
     .. "its bound", function()
    local _, map, host, port = H.server(H.Recorder)
    local s = socket.tcp()
    s:settimeout(1)
    local free = H.free_port()
    assert.same({nil, "connection refused"},
                {s:connect("127.0.0.1", free, {map = map})})
    assert(s:connect(host, port, {map = map}))
    assert(reply(s))
    s:settimeouts(nil, nil, 0.2)
    local t0 = H.now()
    local line, err, partial = s:receive("*l")
    assert.is_nil(line)
    assert.equal("timeout", err)
    assert.equal("", partial)
    assert.is_true(H.now() - t0 >= 0.15)
    -- still usable after a read timeout
    assert(s:send("NOOP\r\n"))
    assert.equal("250 OK", s:receive())
    local saved = socket.MAX_LINE
    socket.MAX_LINE = 4
    assert(s:send("NOOP\r\n"))
    line, err, partial = s:receive()
    socket.MAX_LINE = saved
    assert.is_nil(line)
    assert.equal("line too long", err)
    assert.equal("250 OK\r\n", partial)
    s:close()
  end)

  it("parks a hook, not the server: a handler asks another server while "
     .. "a second session is served", function()
    local _, map, bhost, bport = H.server(H.Recorder)
    local A = smtpd.SMTPServer:extend("Asker")
    function A:process_message()
      local s = socket.tcp()
      s:settimeout(5)
      assert(s:connect(bhost, bport))
      local banner = reply(s)
      s:send("QUIT\r\n")
      reply(s)
      s:close()
      return "250 upstream said " .. banner:sub(1, 3)
    end
    local _, _, host, port = H.server(A, {}, map)
    local c1 = H.connect(map, host, port)
    c1:send("HELO a\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\nhi\r\n.\r\n")
    local c2 = H.connect(map, host, port)
    c2:send("HELO b\r\nNOOP\r\n")
    expect(c1, "250 upstream said 220", 5)
    expect(c2, "250 OK", 5)
    c1:close(); c2:close()
  end)

  it("cancels a hook's receive when the hook is given up (handler_timeout)",
     function()
    local _, map, bhost, bport = H.server(H.Recorder)
    local held
    local A = smtpd.SMTPServer:extend("Waiter")
    function A:process_message()
      held = socket.tcp()
      held:settimeout(30)
      assert(held:connect(bhost, bport))
      reply(held)
      held:receive()      -- the upstream says nothing more
      return "250 never"
    end
    local _, _, host, port = H.server(A, {handler_timeout = 0.3}, map)
    local c = H.connect(map, host, port)
    c:send("HELO a\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\nhi\r\n.\r\n")
    expect(c, "451 ", 5)
    assert.is_nil(held:info())       -- the socket was closed
    c:close()
  end)

  it("keeps a connection alive in its pool and refuses a dubious one",
     function()
    local srv, map, host, port = H.server(H.Recorder)
    local s = socket.tcp()
    s:settimeout(5)
    assert(s:connect(host, port, {map = map}))
    assert(reply(s))
    assert.is_true(s:setkeepalive(10, 2))
    assert.is_nil(s:info())
    local s2 = socket.tcp()
    assert(s2:connect(host, port, {map = map}))
    assert.equal(1, s2:getreusedtimes())
    assert(s2:send("NOOP\r\n"))
    assert.equal("250 OK", s2:receive())
    -- unread input: not pooled
    assert(s2:send("NOOP\r\n"))
    H.run_until(map, function() return s2:info().buffered > 0 end, 5)
    assert.same({nil, "connection in dubious state"}, {s2:setkeepalive()})
    local s3 = socket.tcp()
    assert(s3:connect(host, port, {map = map}))
    assert.equal(0, s3:getreusedtimes())
    -- an idle pooled connection the server closes is dropped
    assert(reply(s3))
    assert(s3:setkeepalive(10))
    smtpd.close_all(map)
    map:loop(0.1, 1)
    local _, _, h2, p2 = H.server(H.Recorder, {}, map)
    local s4 = socket.tcp()
    assert(s4:connect(h2, p2, {map = map, pool = host .. ":" .. port}))
    assert.equal(0, s4:getreusedtimes())
    s4:close()
    assert(srv)
  end)

  it("runs TLS after STARTTLS, verifying the server's certificate",
     function()
    local _, map, host, port = H.server(H.Recorder, {tls = certs.tls()})
    local s = socket.tcp()
    s:settimeout(5)
    assert(s:connect(host, port, {map = map}))
    assert(reply(s))
    s:send("EHLO t\r\n")
    assert.matches("STARTTLS", reply(s))
    s:send("STARTTLS\r\n")
    assert.matches("^220", reply(s))
    local ok, err = s:sslhandshake{ca = certs.path("ca.pem"), sni = "localhost"}
    assert.is_true(ok, err)
    assert.matches("^TLSv1%.[23]$", s:info().tls.version)
    assert.is_true(s:info().tls.verified)
    s:send("EHLO t\r\n")
    assert.matches("250 HELP$", reply(s))
    s:close()
    -- an untrusted certificate fails the handshake and closes the socket
    assert(s:connect(host, port, {map = map}))
    reply(s)
    s:send("STARTTLS\r\n")
    reply(s)
    ok, err = s:sslhandshake{sni = "localhost"}
    assert.is_nil(ok)
    assert.is_string(err)
    assert.is_nil(s:info())
  end)

  it("reaches unix:/path", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -m 700 " .. dir))
    H.defer(function() os.execute("rm -rf " .. dir) end)
    local map = H.map()
    H.Recorder("unix:" .. dir .. "/s", nil, {map = map})
    local s = assert(socket.connect("unix:" .. dir .. "/s", nil,
                                    {map = map, timeout = 5}))
    assert.matches("^220 ", reply(s))
    s:close()
  end)

  it("raises on misuse and leaves no handle behind", function()
    local map = H.map()
    local before = core.stats().handles
    local s = socket.tcp()
    assert.has_error(function() s:settimeout(-1) end)
    assert.has_error(function() s:connect(42, 1) end)
    assert.has_error(function() s:connect("127.0.0.1", 0, {map = map}) end)
    assert.has_error(function() s:connect("127.0.0.1", 70000) end)
    assert.has_error(function() s:receive("*x") end)
    assert.has_error(function() s:send(42) end)
    assert.same({nil, "closed", ""}, {s:receive()})
    local c = core.sock_connect
    assert.has_error(function() c(map, "127.0.0.1", 1, 0, function() end) end)
    assert.has_error(function() c(map, "127.0.0.1", 1, 1, nil) end)
    assert.has_error(function() c(map, "unix:", 1, 1, function() end) end)
    assert.is_nil((c(map, "not an ip", 1, 1, function() end)))
    map:loop(0, 1)
    assert.equal(before, core.stats().handles)
  end)
end)

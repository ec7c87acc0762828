-- TLS on the server: STARTTLS (RFC 3207) done right, implicit TLS (RFC
-- 8314), SNI, client certificates, reloading certificates, and the bad
-- inputs that hurt other servers.
local H = require "helper"
local certs = require "certs"
local smtpd = H.smtpd
local core = H.core

-- A server with TLS; returns srv, map, port.
local function tls_server(cls, opts)
  opts = opts or {}
  opts.tls = opts.tls or certs.tls()
  local srv, map, _, port = H.server(cls or H.Recorder, opts)
  return srv, map, port
end

-- Connects, reads the greeting, sends EHLO: returns the client and the
-- EHLO reply lines.
local function ehlo(map, port)
  local c = H.connect(map, "127.0.0.1", port)
  assert.matches("^220 ", c:lines(1)[1])
  c:send("EHLO client.example\r\n")
  return c, c:reply()
end

-- STARTTLS on an open client: the 220, then the handshake.
local function starttls(c, opts)
  c:send("STARTTLS\r\n")
  assert.same({"220 2.0.0 Ready to start TLS"}, c:reply())
  assert(c.tcp:starttls(opts or {verify = true, ca = certs.path("ca.pem"),
                                  sni = "localhost"}))
end

-- Runs until the handshake is done; the client's TLS facts.
local function handshake(c)
  local info, err
  H.run_until(c.map, function()
    info, err = c.tcp:tls()
    return info or err or c:closed()
  end, 5, "the TLS handshake")
  return info, err
end

local function has(lines, pat)
  for _, l in ipairs(lines) do
    if l:find(pat, 1, true) then return true end
  end
  return false
end

describe("STARTTLS", function()
  it("is advertised, upgrades, and resets the session (RFC 3207 4.2)",
     function()
    local srv, map, port = tls_server()
    local c, lines = ehlo(map, port)
    assert.is_true(has(lines, "250-STARTTLS"))
    c:send("MAIL FROM:<a@b>\r\n")
    assert.same({"250 OK"}, c:reply())
    starttls(c)
    local info = assert(handshake(c))
    assert.matches("^TLSv1%.[23]$", info.version)
    -- No greeting after the handshake; the transaction and the EHLO are
    -- forgotten.
    c:send("MAIL FROM:<a@b>\r\n")
    assert.same({"503 Error: send HELO first"}, c:reply())
    c:send("EHLO client.example\r\n")
    lines = c:reply()
    assert.is_false(has(lines, "STARTTLS"))
    c:send("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\n")
    assert.same({"250 OK", "250 OK", "354 End data with <CR><LF>.<CR><LF>",
                 "250 OK"}, c:lines(4))
    c:send("STARTTLS\r\n")
    assert.same({"503 5.5.1 Error: TLS already active"}, c:reply())
    c:send("QUIT\r\n")
    assert.same({"221 Bye"}, c:reply())
    c:wait_closed()
    local m = srv.messages[1]
    assert.equal("hi", m.data)
    assert.matches("^TLSv1%.[23]$", m.kwargs.tls.version)
    assert.is_nil(m.kwargs.auth_user)
    H.cleanup(map)
  end)

  for _, injected in ipairs({"RSET", "MAIL FROM:<evil@example.org>"}) do
    it("never executes what was sent with the STARTTLS line: " .. injected,
       function()
      local _, map, port = tls_server()
      local c = ehlo(map, port)
      -- One write: STARTTLS and a command behind it (CVE-2011-0411).
      c:send("STARTTLS\r\n" .. injected .. "\r\n")
      assert.same({"220 2.0.0 Ready to start TLS"}, c:reply())
      -- Nothing else came in plaintext...
      map:loop(0.05, 5)
      c:pump()
      assert.equal("", c.buf)
      assert(c.tcp:starttls({verify = false}))
      assert(handshake(c))
      -- ...nor after the handshake: the first reply is our EHLO's.
      c:send("EHLO x\r\nMAIL FROM:<a@b>\r\n")
      local lines = c:reply()
      assert.matches("^250[- ]", lines[1])
      assert.is_false(has(lines, "250 OK"))
      -- The MAIL sent now is the first one the session sees.
      assert.same({"250 OK"}, c:reply())
      c:close()
      H.cleanup(map)
    end)
  end

  it("drops a command split across reads before the handshake", function()
    local _, map, port = tls_server(nil, {
      tls = certs.tls({handshake_timeout = 0.5})})
    local c = ehlo(map, port)
    c:send("STARTTLS\r\nRS")
    assert.same({"220 2.0.0 Ready to start TLS"}, c:reply())
    -- Plaintext after the 220 is no ClientHello (here not even a whole
    -- record header): the connection ends with nothing executed.
    c:send("ET\r\n")
    local rest = c:wait_closed()
    assert.is_nil(rest:find("250", 1, true))
    c:close()
    H.cleanup(map)
  end)

  it("answers 501 to an argument; servers without tls say 500 as smtpd",
     function()
    local _, map, port = tls_server()
    local c = ehlo(map, port)
    c:send("STARTTLS now\r\n")
    assert.same({"501 5.5.4 Syntax: STARTTLS"}, c:reply())
    c:close()
    H.cleanup(map)
    -- Without tls the command is unknown, exactly as in smtpd.
    local _, map2, _, port2 = H.server(H.Recorder)
    local replies = H.converse(map2, "127.0.0.1", port2,
                               "EHLO x\r\nSTARTTLS\r\nQUIT\r\n")
    assert.is_false(has(replies, "STARTTLS\r"))
    assert.equal('500 Error: command "STARTTLS" not recognized', replies[#replies - 1])
    H.cleanup(map2)
  end)

  it("closes on random bytes instead of a ClientHello", function()
    local _, map, port = tls_server()
    local c = ehlo(map, port)
    c:send("STARTTLS\r\n")
    c:reply()
    local junk = {}
    for i = 1, 300 do junk[i] = string.char((i * 37 + 11) % 256) end
    c:send(table.concat(junk))
    c:wait_closed()
    c:close()
    -- and the server goes on
    local c2 = ehlo(map, port)
    c2:close()
    H.cleanup(map)
  end)

  it("closes a stalled handshake after tls.handshake_timeout", function()
    local _, map, port = tls_server(nil, {
      tls = certs.tls({handshake_timeout = 0.3})})
    local c = ehlo(map, port)
    c:send("STARTTLS\r\n")
    c:reply()
    -- Half a TLS record header, then silence.
    c:send("\22\3\1")
    local t0 = H.now()
    c:wait_closed(5)
    assert.is_true(H.now() - t0 < 3)
    c:close()
    H.cleanup(map)
  end)

  it("a client that closes mid-record costs nothing lasting", function()
    local _, map, port = tls_server()
    local before = core.stats().handles
    for _ = 1, 20 do
      local c = ehlo(map, port)
      c:send("STARTTLS\r\n")
      c:reply()
      c:send("\22\3\1\0\200\1\0\0")
      c:close()
    end
    map:loop(0.05, 10)
    assert.equal(before, core.stats().handles)
    H.cleanup(map)
  end)

  it("require_starttls: 530 for MAIL, RCPT, DATA and AUTH before TLS",
     function()
    local Auth = H.Recorder:extend()
    function Auth:authenticate() return true end
    local _, map, port = tls_server(Auth, {require_starttls = true})
    local c = ehlo(map, port)
    for _, cmd in ipairs({"MAIL FROM:<a@b>", "RCPT TO:<a@b>", "DATA",
                          "AUTH PLAIN AGEAYg=="}) do
      c:send(cmd .. "\r\n")
      assert.same({"530 5.7.0 Must issue a STARTTLS command first"},
                  c:reply(), cmd)
    end
    c:send("NOOP\r\n")
    assert.same({"250 OK"}, c:reply())
    starttls(c)
    assert(handshake(c))
    c:send("EHLO x\r\n")
    c:reply()
    c:send("MAIL FROM:<a@b>\r\n")
    assert.same({"250 OK"}, c:reply())
    c:close()
    H.cleanup(map)
    assert.has_error(function()
      H.server(H.Recorder, {require_starttls = true})
    end, "require_starttls needs tls = {cert=, key=}")
  end)
end)

describe("implicit TLS", function()
  it("greets only after the handshake; STARTTLS is not offered", function()
    local srv, map, port = tls_server(nil, {tls = certs.tls({implicit = true})})
    local c = H.connect(map, "127.0.0.1", port)
    assert(c.tcp:starttls({verify = true, ca = certs.path("ca.pem"),
                           sni = "localhost"}))
    assert.matches("^220 ", c:lines(1)[1])
    c:send("EHLO x\r\n")
    local lines = c:reply()
    assert.is_false(has(lines, "STARTTLS"))
    c:send("STARTTLS\r\n")
    assert.same({"503 5.5.1 Error: TLS already active"}, c:reply())
    c:send("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n")
    assert.same({"250 OK", "250 OK", "354 End data with <CR><LF>.<CR><LF>",
                 "250 OK", "221 Bye"}, c:lines(5))
    c:wait_closed()
    c:close()
    assert.truthy(srv.messages[1].kwargs.tls)
    H.cleanup(map)
  end)

  it("says nothing in plaintext to a plaintext client", function()
    local _, map, port = tls_server(nil, {tls = certs.tls({implicit = true,
                                            handshake_timeout = 0.5})})
    local c = H.connect(map, "127.0.0.1", port)
    c:send("EHLO x\r\n")
    local rest = c:wait_closed(5)
    assert.is_nil(rest:find("220", 1, true))
    c:close()
    H.cleanup(map)
  end)
end)

describe("certificates", function()
  it("verifies against our CA; an RSA certificate works too", function()
    local _, map, port = tls_server(nil, {tls = {
      cert = certs.path("rsa.pem"), key = certs.path("rsa.key")}})
    local c = ehlo(map, port)
    starttls(c)
    local info = assert(handshake(c))
    assert.matches("CN=localhost", info.peer_subject)
    c:close()
    H.cleanup(map)
  end)

  it("a client that trusts another CA refuses the certificate", function()
    local _, map, port = tls_server(nil, {tls = {
      cert = certs.path("wrong.pem"), key = certs.path("wrong.key")}})
    local c = ehlo(map, port)
    starttls(c)
    local info, err = handshake(c)
    assert.is_nil(info)
    assert.matches("certificate verify failed", err)
    c:close()
    H.cleanup(map)
  end)

  it("SNI picks the certificate of the name asked for", function()
    local _, map, port = tls_server(nil, {tls = certs.tls({sni = {
      ["other.example"] = {cert = certs.path("other.pem"),
                           key = certs.path("other.key")}}})})
    for _, case in ipairs({{"other.example", "CN=other.example"},
                           {"localhost", "CN=localhost"},
                           {"unknown.example", "CN=localhost"}}) do
      local c = ehlo(map, port)
      starttls(c, {verify = false, sni = case[1]})
      local info = assert(handshake(c))
      assert.matches(case[2], info.peer_subject, 1, true)
      c:close()
    end
    H.cleanup(map)
  end)

  it("refuses bad tls options before anything listens", function()
    local cases = {
      {{cert = certs.path("ec.pem")}, "tls needs both cert and key"},
      {{cert = "/nonexistent.pem", key = certs.path("ec.key")},
       "cannot read certificate /nonexistent.pem"},
      {{cert = certs.path("ec.pem"), key = certs.path("rsa.key")},
       "does not match"},
      {certs.tls({bogus = 1}), 'unknown tls option "bogus"'},
      {certs.tls({verify_client = true}), "verify_client needs tls.client_ca"},
      {certs.tls({min_version = "TLSv1.0"}), "min_version"},
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(H.server, H.Recorder, {tls = case[1]})
      assert.is_false(ok)
      assert.matches(case[2], err, 1, true)
    end
  end)

  it("client certificates: requested, verified, visible to hooks",
     function()
    local seen = {}
    local Chan = smtpd.SMTPChannel:extend()
    function Chan:smtp_XTLS()
      seen[#seen + 1] = self.tls or false
      self:push("250 ok")
    end
    local Srv = H.Recorder:extend()
    Srv.channel_class = Chan
    local _, map, port = tls_server(Srv, {tls = certs.tls({
      client_ca = certs.path("ca.pem")})})
    -- Without a certificate: TLS, but no peer facts.
    local c = ehlo(map, port)
    starttls(c)
    assert(handshake(c))
    c:send("XTLS\r\n")
    assert.same({"250 ok"}, c:reply())
    c:close()
    assert.is_nil(seen[1].peer_subject)
    -- With one.
    c = ehlo(map, port)
    starttls(c, {verify = false, cert = certs.path("client.pem"),
                 key = certs.path("client.key")})
    assert(handshake(c))
    c:send("XTLS\r\n")
    assert.same({"250 ok"}, c:reply())
    c:close()
    assert.equal("alice", seen[2].peer_cn)
    assert.is_true(seen[2].peer_verified)
    assert.matches("^%x+$", seen[2].peer_fingerprint)
    assert.equal(64, #seen[2].peer_fingerprint)
    -- One the CA did not sign: seen, but not verified.
    c = ehlo(map, port)
    starttls(c, {verify = false, cert = certs.path("wrong.pem"),
                 key = certs.path("wrong.key")})
    assert(handshake(c))
    c:send("XTLS\r\n")
    c:reply()
    c:close()
    assert.is_false(seen[3].peer_verified)
    H.cleanup(map)
    -- verify_client: no valid certificate, no TLS.
    _, map, port = tls_server(Srv, {tls = certs.tls({
      client_ca = certs.path("ca.pem"), verify_client = true})})
    c = ehlo(map, port)
    starttls(c, {verify = false})
    c:send("XTLS\r\n")
    local rest = c:wait_closed()
    assert.is_nil(rest:find("250 ok", 1, true))
    c:close()
    assert.equal(3, #seen)
    H.cleanup(map)
  end)

  it("reload_tls: new connections get the new certificate, live ones "
     .. "keep theirs; a bad file keeps the old one", function()
    local d = certs.dir()
    os.execute(("cp %s/ec.pem %s/live.pem && cp %s/ec.key %s/live.key")
               :format(d, d, d, d))
    local logged = {}
    local Srv = H.Recorder:extend()
    function Srv:log(level, fmt, ...) logged[#logged + 1] = fmt:format(...) end
    local srv, map, port = tls_server(Srv, {tls = {
      cert = d .. "/live.pem", key = d .. "/live.key"}})
    local old = ehlo(map, port)
    starttls(old, {verify = false})
    assert.matches("CN=localhost", assert(handshake(old)).peer_subject)
    os.execute(("cp %s/other.pem %s/live.pem && cp %s/other.key %s/live.key")
               :format(d, d, d, d))
    assert.is_true(srv:reload_tls())
    local new = ehlo(map, port)
    starttls(new, {verify = false})
    assert.matches("CN=other.example", assert(handshake(new)).peer_subject)
    -- the old connection still works
    old:send("EHLO x\r\n")
    assert.matches("^250", old:reply()[1])
    -- a broken file: nil, why; the old certificate stays
    local f = io.open(d .. "/live.pem", "w")
    f:write("not a certificate\n")
    f:close()
    local ok, why = srv:reload_tls()
    assert.is_nil(ok)
    assert.matches("cannot load certificate", why)
    assert.matches("keeping the old certificates", logged[#logged])
    local third = ehlo(map, port)
    starttls(third, {verify = false})
    assert.matches("CN=other.example", assert(handshake(third)).peer_subject)
    old:close()
    new:close()
    third:close()
    H.cleanup(map)
  end)
end)

-- SMTP AUTH (RFC 4954) on the server: the mechanisms, the authenticator
-- as a hook that may wait, safe defaults and every error path.
local H = require "helper"
local certs = require "certs"
local smtpd = H.smtpd
local core = H.core

local b64 = core.b64encode

-- Accepts alice/secret (and a token for the OAuth mechanisms); records
-- every call.
local Auth = H.Recorder:extend("Auth")
function Auth:authenticate(channel, mech, user, secret)
  self.calls = self.calls or {}
  self.calls[#self.calls + 1] = {mech, user, secret}
  if self.wait then smtpd.sleep(self.wait) end
  if self.answer ~= nil then return self.answer end
  return (user == "alice" and (secret == "secret" or secret == "tok"))
end
function Auth:get_password(user)
  if user == "alice" then return "secret" end
end

local function server(opts, cls)
  opts = opts or {}
  if opts.tls == nil then opts.tls = certs.tls() end
  if opts.auth_failure_delay == nil then opts.auth_failure_delay = 0 end
  local srv, map, _, port = H.server(cls or Auth, opts)
  return srv, map, port
end

-- A client after STARTTLS and EHLO (plaintext with tls = false).
local function client(map, port, plain)
  local c = H.connect(map, "127.0.0.1", port)
  c:lines(1)
  if not plain then
    c:send("STARTTLS\r\n")
    assert.same({"220 2.0.0 Ready to start TLS"}, c:reply())
    assert(c.tcp:starttls({verify = false}))
  end
  c:send("EHLO client.example\r\n")
  return c, c:reply()
end

local function say(c, line)
  c:send(line .. "\r\n")
  return table.concat(c:reply(), "\n")
end

local function has(lines, s)
  for _, l in ipairs(lines) do if l == s then return true end end
  return false
end

describe("AUTH", function()
  it("is neither advertised nor allowed before TLS, by default", function()
    local _, map, port = server()
    local c, lines = client(map, port, true)
    assert.is_false(has(lines, "250-AUTH PLAIN LOGIN"))
    assert.equal("538 5.7.11 Encryption required for requested "
                 .. "authentication mechanism", say(c, "AUTH PLAIN " ..
                 b64("\0alice\0secret")))
    c:close()
    c, lines = client(map, port)
    assert.is_true(has(lines, "250-AUTH PLAIN LOGIN"))
    c:close()
    H.cleanup(map)
    -- auth_require_tls = false: plaintext AUTH, on purpose.
    _, map, port = server({tls = false, auth_require_tls = false})
    c, lines = client(map, port, true)
    assert.is_true(has(lines, "250-AUTH PLAIN LOGIN"))
    assert.equal("235 2.7.0 Authentication successful",
                 say(c, "AUTH PLAIN " .. b64("\0alice\0secret")))
    c:close()
    H.cleanup(map)
  end)

  it("is smtpd's unknown command on a server without authenticate",
     function()
    local _, map, _, port = H.server(H.Recorder, {tls = certs.tls()})
    local c, lines = client(map, port)
    for _, l in ipairs(lines) do assert.is_nil(l:find("AUTH", 1, true)) end
    assert.equal('500 Error: command "AUTH" not recognized',
                 say(c, "AUTH PLAIN x"))
    c:close()
    H.cleanup(map)
  end)

  it("PLAIN: initial response, challenge, and what reaches the handler",
     function()
    local srv, map, port = server()
    local c = client(map, port)
    assert.equal("235 2.7.0 Authentication successful",
                 say(c, "AUTH PLAIN " .. b64("\0alice\0secret")))
    assert.equal("503 5.5.1 Error: already authenticated",
                 say(c, "AUTH PLAIN " .. b64("\0alice\0secret")))
    c:send("MAIL FROM:<a@b> AUTH=<>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n")
    assert.same({"250 OK", "250 OK", "354 End data with <CR><LF>.<CR><LF>",
                 "250 OK"}, c:lines(4))
    c:close()
    local m = srv.messages[1]
    assert.equal("alice", m.kwargs.auth_user)
    assert.same({"AUTH=<>"}, m.kwargs.mail_options)
    assert.same({"PLAIN", "alice", "secret"}, srv.calls[1])
    -- Without the initial response: an empty challenge ("334 ").
    c = client(map, port)
    assert.equal("334 ", say(c, "AUTH plain"))
    assert.equal("235 2.7.0 Authentication successful",
                 say(c, b64("alice\0alice\0secret")))
    c:close()
    H.cleanup(map)
  end)

  it("LOGIN, CRAM-MD5, XOAUTH2 and OAUTHBEARER", function()
    local srv, map, port = server({auth_mechanisms = {"PLAIN", "LOGIN",
      "CRAM-MD5", "XOAUTH2", "OAUTHBEARER"}})
    local c, lines = client(map, port)
    assert.is_true(has(lines,
                       "250-AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2 OAUTHBEARER"))
    assert.equal("334 " .. b64("Username:"), say(c, "AUTH LOGIN"))
    assert.equal("334 " .. b64("Password:"), say(c, b64("alice")))
    assert.equal("235 2.7.0 Authentication successful", say(c, b64("secret")))
    c:close()
    -- CRAM-MD5: a fresh challenge each time, answered with HMAC-MD5.
    local chals = {}
    for i = 1, 2 do
      c = client(map, port)
      local chal = core.b64decode(say(c, "AUTH CRAM-MD5"):match("^334 (.+)$"))
      assert.matches("^<%x+%.%d+@.+>$", chal)
      chals[i] = chal
      local pw = i == 1 and "secret" or "wrong"
      assert.equal(i == 1 and "235 2.7.0 Authentication successful"
                   or "535 5.7.8 Authentication credentials invalid",
                   say(c, b64("alice " .. core.hmac_md5_hex(pw, chal))))
      c:close()
    end
    assert.not_equal(chals[1], chals[2])
    -- XOAUTH2: the token goes to authenticate.
    c = client(map, port)
    assert.equal("235 2.7.0 Authentication successful", say(c,
      "AUTH XOAUTH2 " .. b64("user=alice\1auth=Bearer tok\1\1")))
    c:close()
    assert.same({"XOAUTH2", "alice", "tok"}, srv.calls[#srv.calls])
    c = client(map, port)
    local err = say(c, "AUTH XOAUTH2 " .. b64("user=alice\1auth=Bearer no\1\1"))
    assert.matches('"status"', core.b64decode(err:match("^334 (.+)$")))
    assert.equal("535 5.7.8 Authentication credentials invalid", say(c, ""))
    c:close()
    -- OAUTHBEARER (RFC 7628)
    c = client(map, port)
    assert.equal("235 2.7.0 Authentication successful", say(c,
      "AUTH OAUTHBEARER " .. b64("n,a=alice,\1auth=Bearer tok\1\1")))
    c:close()
    assert.same({"OAUTHBEARER", "alice", "tok"}, srv.calls[#srv.calls])
    H.cleanup(map)
  end)

  it("EXTERNAL: the client's verified certificate", function()
    local srv, map, port = server({auth_mechanisms = {"EXTERNAL"},
      tls = certs.tls({client_ca = certs.path("ca.pem")})})
    function srv:authenticate(channel, mech, user, fp)
      self.ext = {mech, user, fp, channel.tls.peer_cn}
      return user == "alice"
    end
    local c = H.connect(map, "127.0.0.1", port)
    c:lines(1)
    c:send("STARTTLS\r\n")
    c:reply()
    assert(c.tcp:starttls({cert = certs.path("client.pem"),
                           key = certs.path("client.key")}))
    c:send("EHLO x\r\n")
    c:reply()
    assert.equal("235 2.7.0 Authentication successful",
                 say(c, "AUTH EXTERNAL ="))
    c:close()
    assert.equal("alice", srv.ext[2])
    assert.equal(64, #srv.ext[3])
    -- No certificate: refused.
    c = client(map, port)
    assert.equal("535 5.7.8 Authentication credentials invalid",
                 say(c, "AUTH EXTERNAL ="))
    c:close()
    H.cleanup(map)
  end)

  it("custom mechanisms: auth_<MECH> with channel:challenge", function()
    local Chan = smtpd.SMTPChannel:extend()
    function Chan:auth_XSECRET(initial)
      assert(initial == nil)
      local name = self:challenge("who?")
      local word = self:challenge("password for " .. name .. "?")
      if word == "open sesame" then return name end
    end
    local Srv = H.Recorder:extend()
    Srv.channel_class = Chan
    local _, map, port = server({}, Srv)
    local c, lines = client(map, port)
    assert.is_true(has(lines, "250-AUTH XSECRET"))
    assert.equal("334 " .. b64("who?"), say(c, "AUTH XSECRET"))
    assert.equal("334 " .. b64("password for bob?"), say(c, b64("bob")))
    assert.equal("235 2.7.0 Authentication successful",
                 say(c, b64("open sesame")))
    c:close()
    H.cleanup(map)
  end)

  it("answers every error path as RFC 4954 says", function()
    local srv, map, port = server({max_auth_failures = 10})
    local c = client(map, port)
    local cases = {
      {"AUTH", "501 5.5.4 Syntax: AUTH mechanism [initial-response]"},
      {"AUTH PLAIN a b", "501 5.5.4 Syntax: AUTH mechanism [initial-response]"},
      {"AUTH NOSUCH", "504 5.5.4 Unrecognized authentication type"},
      {"AUTH PLAIN *", "501 5.7.0 Authentication cancelled"},
      {"AUTH PLAIN !!!!", "501 5.5.2 Cannot decode base64 response"},
      {"AUTH PLAIN YWJj=", "501 5.5.2 Cannot decode base64 response"},
      {"AUTH PLAIN YQ=a", "501 5.5.2 Cannot decode base64 response"},
      {"AUTH PLAIN =", "535 5.7.8 Authentication credentials invalid"},
      {"AUTH PLAIN " .. b64("\0alice\0wrong"),
       "535 5.7.8 Authentication credentials invalid"},
      {"AUTH PLAIN " .. b64("bob\0alice\0secret"),
       "535 5.7.8 Authentication credentials invalid"},
      {"AUTH PLAIN " .. b64("\0ali\rce\0secret"),
       "535 5.7.8 Authentication credentials invalid"},
    }
    for _, case in ipairs(cases) do
      assert.equal(case[2], say(c, case[1]), case[1])
    end
    -- cancel and bad base64 inside the exchange
    assert.equal("334 ", say(c, "AUTH PLAIN"))
    assert.equal("501 5.7.0 Authentication cancelled", say(c, "*"))
    assert.equal("334 ", say(c, "AUTH PLAIN"))
    assert.equal("501 5.5.2 Cannot decode base64 response", say(c, "a"))
    -- The session goes on (fresh state after each failure).
    assert.equal("235 2.7.0 Authentication successful",
                 say(c, "AUTH PLAIN " .. b64("\0alice\0secret")))
    c:close()
    -- AUTH inside a transaction
    c = client(map, port)
    say(c, "MAIL FROM:<a@b>")
    assert.equal("503 5.5.1 Error: AUTH not permitted during a mail "
                 .. "transaction", say(c, "AUTH PLAIN =")) 
    c:close()
    -- anything but true refuses; an error is 454
    for _, answer in ipairs({"yes", 1, false, {}}) do
      srv.answer = answer
      c = client(map, port)
      assert.equal("535 5.7.8 Authentication credentials invalid",
                   say(c, "AUTH PLAIN " .. b64("\0alice\0secret")))
      c:close()
    end
    srv.answer = nil
    local logged = {}
    function srv:log(level, fmt, ...) logged[#logged + 1] = fmt:format(...) end
    function srv:authenticate() error("database down") end
    c = client(map, port)
    assert.equal("454 4.7.0 Temporary authentication failure",
                 say(c, "AUTH PLAIN " .. b64("\0alice\0secret")))
    c:close()
    assert.matches("database down", logged[#logged])
    H.cleanup(map)
  end)

  it("AUTH lines up to 12288 octets; longer ones get 500 5.5.6", function()
    local srv, map, port = server({auth_mechanisms = {"XOAUTH2"}})
    local c = client(map, port)
    local token = ("t"):rep(9000)
    assert.equal("334 " .. b64('{"status":"401","schemes":"bearer"}'),
      say(c, "AUTH XOAUTH2 " .. b64("user=alice\1auth=Bearer " .. token
                                     .. "\1\1")))
    assert.equal(token, srv.calls[1][3])
    say(c, "")
    assert.equal("500 5.5.6 Authentication exchange line is too long",
                 say(c, "AUTH XOAUTH2 " .. ("A"):rep(12300)))
    -- other commands keep their limit
    assert.equal("500 Error: line too long", say(c, "NOOP " .. ("x"):rep(600)))
    c:close()
    H.cleanup(map)
  end)

  it("auth_required: MAIL before AUTH gets 530", function()
    local _, map, port = server({auth_required = true})
    local c = client(map, port)
    assert.equal("530 5.7.0 Authentication required", say(c, "MAIL FROM:<a@b>"))
    say(c, "AUTH PLAIN " .. b64("\0alice\0secret"))
    assert.equal("250 OK", say(c, "MAIL FROM:<a@b>"))
    c:close()
    H.cleanup(map)
    assert.has_error(function() H.server(H.Recorder, {auth_required = true}) end,
      "auth_required needs AUTH: define server:authenticate (or "
      .. "auth_<MECH> in the channel class)")
  end)

  it("the authenticator may wait; other sessions go on meanwhile", function()
    local srv, map, port = server()
    srv.wait = 0.3
    local c = client(map, port)
    c:send("AUTH PLAIN " .. b64("\0alice\0secret") .. "\r\n")
    local other = client(map, port)
    assert.equal("250 OK", say(other, "NOOP"))
    assert.same({"235 2.7.0 Authentication successful"}, c:reply())
    c:close()
    other:close()
    H.cleanup(map)
  end)

  it("brute force: growing delays, then 421 after max_auth_failures",
     function()
    local _, map, port = server({auth_failure_delay = 0.05})
    local c = client(map, port)
    local bad = "AUTH PLAIN " .. b64("\0alice\0guess")
    local t0 = H.now()
    assert.equal("535 5.7.8 Authentication credentials invalid", say(c, bad))
    local t1 = H.now()
    assert.equal("535 5.7.8 Authentication credentials invalid", say(c, bad))
    local t2 = H.now()
    assert.is_true(t1 - t0 >= 0.04)
    assert.is_true(t2 - t1 >= 0.09)    -- doubled
    c:send(bad .. "\r\n")
    local rest = c:wait_closed(5)
    assert.matches("^535 5%.7%.8 [^\r]*\r\n421 4%.7%.0 .*too many failed", rest)
    c:close()
    H.cleanup(map)
    assert.has_error(function()
      H.server(Auth, {max_auth_failures = 2, tls = certs.tls()})
    end)
  end)

  it("MAIL FROM's AUTH= parameter: xtext or <>", function()
    local _, map, port = server()
    local c = client(map, port)
    assert.equal("250 OK", say(c, "MAIL FROM:<a@b> AUTH=alice+2Bx@example.org"))
    say(c, "RSET")
    assert.equal("501 5.5.4 Syntax: AUTH=<mailbox> takes an xtext value",
                 say(c, "MAIL FROM:<a@b> AUTH=a+zz"))
    c:close()
    H.cleanup(map)
  end)

  it("compare_digest and the auth_mechanisms checks", function()
    assert.is_true(smtpd.compare_digest("abc", "abc"))
    assert.is_false(smtpd.compare_digest("abc", "abd"))
    assert.is_false(smtpd.compare_digest("abc", "abcd"))
    local NoPw = H.Recorder:extend()
    function NoPw:authenticate() return true end
    assert.has_error(function()
      H.server(NoPw, {auth_mechanisms = {"CRAM-MD5"}})
    end, "auth_mechanisms: CRAM-MD5 needs server:get_password")
    assert.has_error(function()
      H.server(NoPw, {auth_mechanisms = {"FOO"}})
    end, 'auth_mechanisms: unknown mechanism "FOO" (define auth_FOO in the '
         .. 'channel class)')
  end)
end)

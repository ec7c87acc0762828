-- TLS and AUTH on the relay client (PureProxy, smtpd.sendmail) against
-- upstreams no one here wrote: aiosmtpd with an SSL context and an
-- authenticator, nodemailer's smtp-server with secure/onAuth, and our
-- own server; a wrong certificate is refused, and a hostile upstream
-- cannot inject a reply ahead of the handshake.
local H = require "helper"
local certs = require "certs"
local smtpd = H.smtpd

local PEERS = H.root .. "/spec/peers/"

-- Starts cmd (exec'd), waits for it to print "ready"; returns pid, out.
local function start(cmd)
  local pid, out = H.spawn("exec " .. cmd)
  local t0 = H.now()
  while H.now() - t0 < 20 do
    local text = H.readfile(out) or ""
    if text:find("ready", 1, true) then return pid, out end
    if not H.alive(pid) then break end
    os.execute("sleep 0.05")
  end
  local text = H.readfile(out) or ""
  H.kill(pid)
  os.remove(out)
  error("peer did not start: " .. cmd .. "\n" .. text)
end

local function lines_of(path)
  local out = {}
  for l in (H.readfile(path) or ""):gmatch("[^\n]+") do out[#out + 1] = l end
  return out
end

-- Sends one message with smtpd.sendmail (outside a hook: it runs the
-- loop itself) and returns what it returned.
local function send(port, relay)
  relay.map = relay.map or H.map()
  local a, b, c = smtpd.sendmail({"127.0.0.1", port}, "sender@example.org",
    {"rcpt@example.net"}, "Subject: relayed\n\nover TLS\n", relay)
  return a, b, c
end

local function with_peer(cmd_of, body)
  local port = H.free_port()
  local record = os.tmpname()
  local pid, out = start(cmd_of(port, record))
  local ok, err = pcall(body, port, record)
  H.kill(pid)
  local log = H.readfile(out) or ""
  os.remove(out)
  os.remove(record)
  if not ok then error(tostring(err) .. "\npeer said:\n" .. log, 0) end
end

local CA = certs.path("ca.pem")
local AUTH = {user = "relay", password = "pw"}

describe("relay client TLS and AUTH", function()
  it("aiosmtpd: STARTTLS + AUTH PLAIN and LOGIN; implicit TLS", function()
    local py = H.python_with("aiosmtpd")
    if not py and H.is_root() then
      H.apt_install("python3-aiosmtpd")
      py = H.python_with("aiosmtpd")
    end
    if not py then return H.skip("aiosmtpd cannot be installed here") end
    local function cmd(mode)
      return function(port, record)
        return ("%s -W ignore %saiosmtpd_tls.py %s %d %s %s %s"):format(py,
          PEERS, mode, port, certs.path("ec.pem"), certs.path("ec.key"),
          record)
      end
    end
    with_peer(cmd("starttls"), function(port, record)
      for _, mech in ipairs({"PLAIN", "LOGIN"}) do
        local refused, err = send(port, {starttls = "require",
          tls = {ca = CA, sni = "localhost"},
          auth = {user = "relay", password = "pw", mechanism = mech}})
        assert.same({}, refused, err)
      end
      local got = lines_of(record)
      assert.equal(2, #got)
      assert.matches('"user": "relay"', got[1], 1, true)
      assert.matches('"tls": true', got[1], 1, true)
      -- it demands STARTTLS and AUTH: without them, no mail
      local refused, err = send(port, {})
      assert.is_nil(refused)
      assert.matches("530", err)
      assert.equal(2, #lines_of(record))
    end)
    with_peer(cmd("implicit"), function(port, record)
      local refused, err = send(port, {implicit_tls = true,
        tls = {ca = CA, sni = "localhost"}, auth = AUTH})
      assert.same({}, refused, err)
      assert.matches('"tls": true', lines_of(record)[1], 1, true)
    end)
  end)

  it("nodemailer's smtp-server: STARTTLS and secure, with onAuth",
     function()
    local path, why = H.node_module("smtp-server")
    if not path then return H.skip(why) end
    local function cmd(mode)
      return function(port, record)
        return ("env NODE_PATH=%s node %ssmtp_server_tls.js %s %d %s %s %s")
          :format(path, PEERS, mode, port, certs.path("rsa.pem"),
                  certs.path("rsa.key"), record)
      end
    end
    with_peer(cmd("starttls"), function(port, record)
      local refused, err = send(port, {starttls = "require",
        tls = {ca = CA, sni = "localhost"}, auth = AUTH})
      assert.same({}, refused, err)
      local got = lines_of(record)[1]
      assert.matches('"user":"relay"', got, 1, true)
      assert.matches('"tls":true', got, 1, true)
      -- wrong password: not sent, a failure naming AUTH
      local refused2, err1, info1 = send(port, {starttls = "require",
        tls = {ca = CA, sni = "localhost"},
        auth = {user = "relay", password = "nope"}})
      assert.is_nil(refused2)
      assert.equal("auth", info1.stage)
      assert.matches("^auth: 535", err1)
      -- The certificate is checked: another CA, or another name, fails.
      local _, err2, info = send(port, {starttls = "require",
        tls = {ca = certs.path("wrong.pem")}, auth = AUTH})
      assert.equal("tls", info.stage)
      assert.matches("certificate verify failed", err2)
      _, err2 = send(port, {starttls = "require",
        tls = {ca = CA, sni = "other.example"}, auth = AUTH})
      assert.matches("certificate verify failed", err2)
      assert.equal(1, #lines_of(record))
    end)
    with_peer(cmd("implicit"), function(port, record)
      local refused, err = send(port, {implicit_tls = true,
        tls = {ca = CA, sni = "localhost"}, auth = {user = "relay",
        password = "pw", mechanism = "LOGIN"}})
      assert.same({}, refused, err)
      assert.matches('"tls":true', lines_of(record)[1], 1, true)
    end)
  end)

  it("discards replies a hostile upstream sends ahead of the handshake",
     function()
    local py = H.python_with("ssl")
    if not py then return H.skip("python3 is not installed") end
    with_peer(function(port)
      return ("%s %sfake_starttls.py %d %s %s"):format(py, PEERS, port,
        certs.path("ec.pem"), certs.path("ec.key"))
    end, function(port)
      local refused, err = send(port, {starttls = "require",
        tls = {ca = CA, sni = "localhost"}})
      -- The injected 554 was dropped: the message went through.
      assert.same({}, refused, err)
    end)
  end)

  it("fails closed: required STARTTLS missing, no credentials in plaintext",
     function()
    local srv, map, _, port = H.server(H.Recorder)
    local _, err, info = send(port, {map = map, starttls = "require"})
    assert.equal("starttls", info.stage)
    assert.matches("does not offer STARTTLS", err)
    _, err, info = send(port, {map = map, auth = AUTH})
    assert.equal("auth", info.stage)
    assert.matches("no credentials sent", err)
    -- opportunistic: plaintext when there is no STARTTLS
    local refused = send(port, {map = map, starttls = "opportunistic"})
    assert.same({}, refused)
    assert.equal(1, #srv.messages)
    H.cleanup(map)
  end)

  it("PureProxy relays over STARTTLS + AUTH to our own server, and "
     .. "answers 4xx naming the cause when it cannot", function()
    local map = H.map()
    local Up = H.Recorder:extend()
    function Up:authenticate(_, _, user, pw)
      return user == "relay" and pw == "pw"
    end
    local up = Up({"127.0.0.1", 0}, nil, {map = map, tls = certs.tls(),
                                         auth_required = true,
                                         auth_failure_delay = 0})
    local _, uport = up:getsockname()
    local env = os.tmpname()
    local f = io.open(env, "w")
    f:write("pw\n")
    f:close()
    local proxy = smtpd.PureProxy({"127.0.0.1", 0}, {"127.0.0.1", uport},
      {map = map, relay = {starttls = "require",
       tls = {ca = CA, sni = "localhost"},
       auth = {user = "relay", password_file = env}}})
    local _, pport = proxy:getsockname()
    local replies = H.converse(map, "127.0.0.1", pport,
      "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n")
    assert.equal("250 OK", replies[5])
    assert.equal("relay", up.messages[1].kwargs.auth_user)
    assert.matches("X%-Peer: 127%.0%.0%.1", up.messages[1].data)
    -- a wrong password: 4xx, the cause named, nothing delivered
    f = io.open(env, "w")
    f:write("wrong\n")
    f:close()
    replies = H.converse(map, "127.0.0.1", pport,
      "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n")
    -- At RCPT time the client hears it at MAIL, and nothing follows.
    assert.matches("^451 4%.4%.1 Upstream unavailable: auth: 535", replies[2])
    assert.equal("503 Error: need MAIL command", replies[3])
    assert.equal(1, #up.messages)
    os.remove(env)
  end)

  it("checks the relay options before anything listens", function()
    local cases = {
      {{starttls = "yes"}, 'starttls must be "require", "opportunistic" or false'},
      {{starttls = "require", implicit_tls = true}, "exclude each other"},
      {{tls = {verfy = true}}, 'unknown tls option "verfy" (did you mean "verify"?)'},
      {{auth = {user = "u"}}, "auth needs one of password"},
      {{auth = {user = "u", password = "p", mechanism = "CRAM-MD5"}},
       'auth.mechanism must be "PLAIN", "LOGIN" or false'},
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(smtpd.PureProxy, {"127.0.0.1", 0},
                            {"127.0.0.1", 25}, {map = H.map(),
                                                relay = case[1]})
      assert.is_false(ok)
      assert.matches(case[2], err, 1, true)
    end
  end)
end)

-- The command line's TLS options: --tls-cert/--tls-key (STARTTLS),
-- --smtps, --require-starttls, SIGHUP reloading, and relaying with
-- --relay-starttls/--relay-tls/--relay-ca/--relay-user.
local H = require "helper"
local certs = require "certs"

local BIN = "bin/lua-smtpd"

local function start(args, port)
  port = port or H.free_port()
  local pid, out = H.spawn(("exec lua5.4 %s -n %s 127.0.0.1:%d </dev/null")
                           :format(BIN, args, port))
  finally(function() H.kill(pid) end)
  if H.wait_listening(port) then return pid, port, out end
  error("lua-smtpd did not start: " .. (H.readfile(out) or ""))
end

local run = H.run_cli

-- A client on map: STARTTLS (unless implicit), EHLO; returns it and the
-- server certificate's subject.
local function tls_session(map, port, implicit)
  local c = H.connect(map, "127.0.0.1", port)
  if not implicit then
    assert.matches("^220 ", c:lines(1)[1])
    c:send("EHLO x\r\nSTARTTLS\r\n")
    c:reply()
    assert.same({"220 2.0.0 Ready to start TLS"}, c:reply())
  end
  assert(c.tcp:starttls({verify = true, ca = certs.path("ca.pem"),
                         sni = "localhost"}))
  if implicit then assert.matches("^220 ", c:lines(1)[1]) end
  c:send("EHLO x\r\n")
  c:reply()
  return c, assert(c.tcp:tls()).peer_subject
end

describe("lua-smtpd TLS options", function()
  it("refuses options that do not go together", function()
    for _, bad in ipairs({"--smtps", "--tls-key k.pem",
                          "--require-starttls",
                          "--relay-starttls --relay-tls",
                          "--relay-password-env X"}) do
      local code, text = run(bad)
      assert.equal(1, code, bad)
      assert.matches("Usage:", text)
    end
    local code, text = run("-n -c DebuggingServer --relay-starttls "
                           .. "127.0.0.1:0")
    assert.equal(1, code)
    assert.matches("the --relay-* options are for relaying classes", text, 1,
                   true)
    code, text = run("-n -c DebuggingServer --tls-cert /nonexistent.pem "
                     .. "127.0.0.1:0")
    assert.equal(1, code)
    assert.matches("cannot read certificate /nonexistent.pem", text)
  end)

  it("--tls-cert offers STARTTLS; SIGHUP loads new files", function()
    local d = certs.dir()
    os.execute(("cp %s/ec.pem %s/cli.pem && cp %s/ec.key %s/cli.key")
               :format(d, d, d, d))
    local pid, port, out = start(("-c DebuggingServer --tls-cert %s/cli.pem "
      .. "--tls-key %s/cli.key --require-starttls"):format(d, d))
    local map = H.map()
    local c, subject = tls_session(map, port)
    assert.matches("CN=localhost", subject)
    c:send("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\ntls body\r\n.\r\n")
    assert.equal("250 OK", c:lines(4)[4])
    -- Swap the files, SIGHUP: a new session gets the new certificate,
    -- the old one goes on.
    os.execute(("cp %s/rsa.pem %s/cli.pem && cp %s/rsa.key %s/cli.key")
               :format(d, d, d, d))
    os.execute("kill -HUP " .. pid)
    H.run_until(map, function()
      return (H.readfile(out) or ""):find("certificates reloaded", 1, true)
    end, 5, "the reload")
    local c2 = tls_session(map, port)
    c2:send("NOOP\r\n")
    assert.same({"250 OK"}, c2:reply())
    c:send("NOOP\r\n")
    assert.same({"250 OK"}, c:reply())
    -- plaintext MAIL is refused
    local p = H.connect(map, "127.0.0.1", port)
    p:lines(1)
    p:send("HELO x\r\nMAIL FROM:<a@b>\r\n")
    assert.equal("530 5.7.0 Must issue a STARTTLS command first", p:lines(2)[2])
    c:close()
    c2:close()
    p:close()
    H.cleanup(map)
    H.kill(pid)
    assert.matches("tls body", H.readfile(out))
    assert.matches("STARTTLS; Ctrl%-C", H.readfile(out))
  end)

  it("--smtps: implicit TLS", function()
    local _, port = start(("-c DebuggingServer --smtps --tls-cert %s "
      .. "--tls-key %s"):format(certs.path("ec.pem"), certs.path("ec.key")))
    local map = H.map()
    local c, subject = tls_session(map, port, true)
    assert.matches("CN=localhost", subject)
    c:close()
  end)

  it("relays over STARTTLS with AUTH, the password from a file or the "
     .. "environment", function()
    local map = H.map()
    local Up = H.Recorder:extend()
    function Up:authenticate(_, _, user, pw)
      return user == "relay" and pw == "from-env"
    end
    local up = Up({"127.0.0.1", 0}, nil, {map = map, tls = certs.tls(),
                                         auth_required = true})
    local _, uport = up:getsockname()
    local port = H.free_port()
    local pid, out = H.spawn(("exec env LUA_SMTPD_RELAY_PASSWORD=from-env "
      .. "lua5.4 %s -n --relay-starttls --relay-ca %s --relay-user relay "
      .. "127.0.0.1:%d localhost:%d </dev/null"):format(BIN,
      certs.path("ca.pem"), port, uport))
    finally(function() H.kill(pid) end)
    assert.is_true(H.wait_listening(port), H.readfile(out))
    local replies = H.converse(map, "127.0.0.1", port,
      "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n")
    assert.equal("250 OK", replies[5], H.readfile(out))
    assert.equal("relay", up.messages[1].kwargs.auth_user)
    -- the password is nowhere on the command line
    local cmdline = H.readfile("/proc/" .. pid .. "/cmdline") or ""
    assert.is_nil(cmdline:find("from-env", 1, true))
    H.kill(pid)
    -- --relay-password-file, wrong password: 4xx naming the cause
    local pwfile = os.tmpname()
    local f = io.open(pwfile, "w")
    f:write("not-it\n")
    f:close()
    port = H.free_port()
    pid, out = H.spawn(("exec lua5.4 %s -n --relay-starttls --relay-ca %s "
      .. "--relay-user relay --relay-password-file %s 127.0.0.1:%d "
      .. "localhost:%d </dev/null"):format(BIN, certs.path("ca.pem"), pwfile,
      port, uport))
    assert.is_true(H.wait_listening(port), H.readfile(out))
    replies = H.converse(map, "127.0.0.1", port,
      "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n")
    H.kill(pid)
    os.remove(pwfile)
    -- Relaying at RCPT time, the client hears it at MAIL.
    assert.matches("^451 4%.4%.1 Upstream unavailable: auth: 535", replies[2])
    assert.equal(1, #up.messages)
  end)
end)

describe("lua-smtpd --workers with TLS", function()
  it("passes SIGHUP on: every worker reloads and goes on serving",
     function()
    local port = H.free_port()
    local pid, out = H.spawn(("exec lua5.4 %s -n --workers 2 -c "
      .. "DebuggingServer --tls-cert %s --tls-key %s 127.0.0.1:%d </dev/null")
      :format(BIN, certs.path("ec.pem"), certs.path("ec.key"), port))
    finally(function()
      os.execute("pkill -P " .. pid .. " 2>/dev/null")
      H.kill(pid)
    end)
    assert.is_true(H.wait_listening(port, 10), H.readfile(out))
    local map = H.map()
    local t0 = H.now()
    -- both workers listen once the parent has two children
    H.run_until(map, function()
      local p = io.popen("pgrep -P " .. pid .. " | wc -l")
      local n = tonumber(p:read("a"))
      p:close()
      return n == 2 or H.now() - t0 > 10
    end, 15, "two workers")
    os.execute("kill -HUP " .. pid)
    H.run_until(map, function()
      local _, n = (H.readfile(out) or ""):gsub("certificates reloaded", "")
      return n == 2
    end, 10, "both workers to reload")
    assert.is_true(H.alive(pid))
    local c = tls_session(map, port)
    c:send("QUIT\r\n")
    assert.same({"221 Bye"}, c:reply())
    c:close()
  end)
end)

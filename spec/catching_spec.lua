-- smtpd.CatchingServer: a mail catcher for test suites and the REPL.
local H = require "helper"
local smtpd = H.smtpd

describe("CatchingServer", function()
  it("is a test fixture in a few lines: start, point the app at it, "
     .. "assert", function()
    local map = H.map()
    local catcher = smtpd.CatchingServer("127.0.0.1:0", nil, {map = map})
    local host, port = catcher:getsockname()
    -- "The application": it sends with a Bcc recipient.
    local app = H.connect(map, host, port)
    app:lines(1)
    app:send("EHLO app\r\nMAIL FROM:<app@example.org> BODY=8BITMIME\r\n"
             .. "RCPT TO:<user@example.net>\r\nRCPT TO:<audit@example.net>\r\n"
             .. "DATA\r\nTo: user@example.net\r\nSubject: Welcome\r\n\r\n"
             .. "Hello!\r\n.\r\nQUIT\r\n")
    assert.is_true(catcher:wait_for(1, 5))
    local m = catcher.messages[1]
    assert.equal("app@example.org", m.mailfrom)
    assert.same({"user@example.net", "audit@example.net"}, m.rcpttos)
    assert.same({"BODY=8BITMIME"}, m.mail_options)
    assert.matches("\n\nHello!$", m.data)
    assert.equal(#m.data, m.size)
    assert.equal("127.0.0.1", m.peer[1])
    assert.is_number(m.received)
    assert.equal("Message(from app@example.org to user@example.net, "
                 .. "audit@example.net, " .. m.size .. " bytes, Subject: "
                 .. "Welcome)", tostring(m))
    assert.matches("^Message%(", smtpd.repr(catcher.messages[1]))
    app:close()
  end)

  it("wait_for gives up after its timeout, and counts from clear()",
     function()
    local map = H.map()
    local catcher = smtpd.CatchingServer("127.0.0.1:0", nil, {map = map})
    local t0 = H.now()
    assert.is_false(catcher:wait_for(1, 0.2))
    assert.is_true(H.now() - t0 >= 0.15)
    assert.is_true(catcher:wait_for(0, 0.2))
    local _, port = catcher:getsockname()
    for i = 1, 2 do
      H.converse(map, "127.0.0.1", port, ("HELO x\r\nMAIL FROM:<a@b>\r\n"
        .. "RCPT TO:<c@d>\r\nDATA\r\nn%d\r\n.\r\nQUIT\r\n"):format(i))
    end
    assert.is_true(catcher:wait_for(2, 1))
    catcher:clear()
    assert.same({}, catcher.messages)
    assert.is_false(catcher:wait_for(1, 0.05))
  end)

  it("wait_for parks inside a hook while mail comes in", function()
    local map = H.map()
    local catcher = smtpd.CatchingServer("127.0.0.1:0", nil, {map = map})
    local _, cport = catcher:getsockname()
    -- A server whose handler relays to the catcher, then waits for it.
    local Relay = H.Recorder:extend()
    function Relay:process_message(peer, mailfrom, rcpttos, data)
      smtpd.sendmail({"127.0.0.1", cport}, mailfrom, rcpttos, data,
                     {map = map})
      self.seen = catcher:wait_for(1, 2)
    end
    local relay, _, _, rport = H.server(Relay, {map = map})
    local replies = H.converse(map, "127.0.0.1", rport, "HELO x\r\n"
      .. "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nrelayed\r\n.\r\nQUIT\r\n")
    assert.equal("250 OK", replies[5])
    assert.is_true(relay.seen)
    assert.equal("relayed", catcher.messages[1].data)
  end)

  it("keeps memory bounded: max_messages and max_bytes drop the oldest",
     function()
    local map = H.map()
    local catcher = smtpd.CatchingServer("127.0.0.1:0", nil,
      {map = map, max_messages = 2, max_bytes = 25})
    local _, port = catcher:getsockname()
    for _, body in ipairs({"first", "second", "third", ("x"):rep(20)}) do
      H.converse(map, "127.0.0.1", port, "HELO x\r\nMAIL FROM:<a@b>\r\n"
        .. "RCPT TO:<c@d>\r\nDATA\r\n" .. body .. "\r\n.\r\nQUIT\r\n")
    end
    assert.equal(4, catcher.received_count)
    -- "third" (5) + 20 x's = 25 bytes: at the cap, kept.
    assert.equal(2, #catcher.messages)
    assert.equal("third", catcher.messages[1].data)
    assert.has_error(function()
      smtpd.CatchingServer("127.0.0.1:0", nil, {map = map, max_messages = 0})
    end, "max_messages must be a positive integer")
  end)

  it("keeps what TLS and AUTH said", function()
    local certs = require "certs"
    local Catch = smtpd.CatchingServer:extend()
    function Catch:authenticate(_, _, user, pw)
      return user == "u" and pw == "p"
    end
    local map = H.map()
    local catcher = Catch("127.0.0.1:0", nil, {map = map, tls = certs.tls(),
                                              auth_failure_delay = 0})
    local _, port = catcher:getsockname()
    local refused, err = smtpd.sendmail({"127.0.0.1", port}, "a@b", {"c@d"},
      "Subject: s\n\nsecret", {map = map, starttls = "require",
      tls = {verify = false}, auth = {user = "u", password = "p"}})
    assert.same({}, refused, err)
    assert.is_true(catcher:wait_for(1, 2))
    assert.equal("u", catcher.messages[1].auth_user)
    assert.matches("^TLSv1", catcher.messages[1].tls.version)
  end)
end)

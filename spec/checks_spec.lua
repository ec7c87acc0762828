-- Refusing senders and recipients safely: channel:getaddr parses as the
-- core does, and server:check_sender / server:check_recipient decide only
-- after the built-in checks (greeting, order, syntax, limits) passed.
local H = require "helper"
local R = require "replies"
local smtpd = H.smtpd

describe("channel:getaddr", function()
  it("parses MAIL/RCPT arguments exactly as the built-in commands do",
     function()
    local Chan = smtpd.SMTPChannel:extend()
    local seen = {}
    function Chan:smtp_XADDR(arg)
      local kw, rest = arg:match("^(%S+) ?(.*)$")
      if rest == "NIL" then rest = nil end
      local a, p = self:getaddr(kw, rest)
      seen[#seen + 1] = {a, p}
      self:push("250 ok")
    end
    local Srv = H.Recorder:extend()
    Srv.channel_class = Chan
    local _, map, host, port = H.server(Srv)
    local cases = {
      {"TO: TO:<a@b>", "a@b", {}},
      {"TO: to: <a@b>", "a@b", {}},
      {"TO: TO:a@b", "a@b", {}},
      {"TO: TO:<a@b> NOTIFY=never", "a@b", {NOTIFY = "NEVER"}},
      {"TO: TO:<>", nil, R.rcpt_syntax_ext},
      {"FROM: FROM:<>", "<>", {}},
      {"FROM: FROM:<a@b> SIZE=10 body=8bitmime smtputf8", "a@b",
       {SIZE = "10", BODY = "8BITMIME", SMTPUTF8 = true}},
      {"FROM: FROM:<a@b> =x", nil, R.mail_syntax_ext},
      {"TO: TO:", nil, R.rcpt_syntax_ext},
      {"TO: NIL", nil, R.rcpt_syntax_ext},
      {"TO: TO:<a b@c>", nil, R.rcpt_syntax_ext},
      {"TO: FROM:<a@b>", nil, R.rcpt_syntax_ext},
      {"TO: TO:<@r1,@r2:x@y>", "x@y", {}},
    }
    local input = "EHLO x\r\n"
    for _, c in ipairs(cases) do input = input .. "XADDR " .. c[1] .. "\r\n" end
    H.converse(map, host, port, input .. "QUIT\r\n")
    for i, c in ipairs(cases) do
      assert.equal(c[2], seen[i][1], c[1])
      if c[2] then assert.same(c[3], seen[i][2], c[1])
      else assert.equal(c[3], seen[i][2], c[1]) end
    end
    -- Before EHLO, no parameters are allowed, as the built-ins say.
    local replies = H.converse(map, host, port,
      "HELO x\r\nXADDR TO: TO:<a@b> X=1\r\nQUIT\r\n")
    assert.same({R.helo, "250 ok", R.bye}, replies)
    assert.same({nil, R.rcpt_syntax}, seen[#seen])
    H.cleanup(map)
  end)
end)

describe("server:check_recipient and check_sender", function()
  local Checked = H.Recorder:extend("Checked")
  function Checked:check_sender(channel, address, params)
    self.senders = self.senders or {}
    self.senders[#self.senders + 1] = {address, params,
                                       tostring(channel.mailfrom)}
    if address == "spammer@x" then return "550 5.7.1 Sender blocked" end
  end
  function Checked:check_recipient(channel, address, params)
    if address == "slow@x" then smtpd.sleep(0.05) end
    if address == "boom@x" then error("lookup failed") end
    if address == "odd@x" then return "250-not final" end
    if address == "fwd@x" then return "251 User not local; will forward" end
    if address:match("^nobody") then return "550 5.1.1 No such user" end
    assert(#channel.rcpttos < 10)
  end

  it("run after the built-in checks, and their verdict is the reply",
     function()
    local srv, map, host, port = H.server(Checked)
    local logged = {}
    function srv:log(level, fmt, ...) logged[#logged + 1] = fmt:format(...) end
    local replies = H.converse(map, host, port, table.concat({
      "RCPT TO:<nobody@x>",                 -- before HELO: 503, not 550
      "EHLO x",
      "RCPT TO:<nobody@x>",                 -- before MAIL: 503, not 550
      "MAIL FROM:<spammer@x>",              -- refused by check_sender
      "RCPT TO:<a@b>",                      -- so no MAIL yet
      "MAIL FROM:<a@b> SIZE=10",            -- accepted
      "RCPT TO:nobody@x extra",             -- syntax: 501, not 550
      "RCPT TO:<nobody@x>",                 -- refused
      "RCPT TO:<slow@x>",                   -- accepted after a wait
      "RCPT TO:<fwd@x>",                    -- accepted with its 251
      "RCPT TO:<boom@x>",                   -- error: 451, refused
      "RCPT TO:<odd@x>",                    -- malformed verdict: 451
      "DATA", "hello", ".", "QUIT", ""}, "\r\n"))
    assert.same({R.need_helo, R.ehlo[1], R.ehlo[2], R.ehlo[3], R.ehlo[4],
                 R.ehlo[5], R.ehlo[6], R.need_mail, "550 5.7.1 Sender blocked", R.need_mail, R.ok,
                 R.rcpt_params, "550 5.1.1 No such user", R.ok,
                 "251 User not local; will forward", R.local_error,
                 R.local_error, R.data, R.ok, R.bye}, replies)
    assert.same({"slow@x", "fwd@x"}, srv.messages[1].rcpttos)
    assert.same({"SIZE=10"}, srv.messages[1].kwargs.mail_options)
    -- The sender check saw the parameters, and no sender stored yet.
    assert.same({"a@b", {SIZE = "10"}, "nil"}, srv.senders[2])
    local text = table.concat(logged, "\n")
    assert.matches("error in check_recipient: [^\n]*lookup failed", text)
    assert.matches("check_recipient returned a malformed reply", text, 1,
                   true)
    H.cleanup(map)
  end)

  it("keep the other sessions going while a check waits", function()
    local srv, map, host, port = H.server(Checked)
    local slow = H.connect(map, host, port)
    slow:lines(1)
    slow:send("HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<slow@x>\r\n")
    local replies = H.converse(map, host, port, "HELO y\r\nMAIL FROM:<c@d>\r\n"
      .. "RCPT TO:<e@f>\r\nQUIT\r\n")
    assert.same({R.helo, R.ok, R.ok, R.bye}, replies)
    assert.same({R.helo, R.ok, R.ok}, slow:lines(3))
    slow:close()
    assert.is_nil(srv.messages)
    H.cleanup(map)
  end)

  it("also run under an overridden smtp_RCPT, and when set on a server "
     .. "object", function()
    local Chan = smtpd.SMTPChannel:extend()
    function Chan:smtp_RCPT(arg)
      self.tried = (self.tried or 0) + 1
      return Chan.super.smtp_RCPT(self, arg)
    end
    local Srv = H.Recorder:extend()
    Srv.channel_class = Chan
    local srv, map, host, port = H.server(Srv)
    local msg = "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<nobody@x>\r\nQUIT\r\n"
    assert.same({R.helo, R.ok, R.ok, R.bye},
                H.converse(map, host, port, msg))
    function srv:check_recipient(channel, address)
      if address == "nobody@x" then return "550 5.1.1 No such user" end
    end
    assert.same({R.helo, R.ok, "550 5.1.1 No such user", R.bye},
                H.converse(map, host, port, msg))
    H.cleanup(map)
  end)

  it("cost nothing when a server does not define them", function()
    local srv, map, host, port = H.server(H.Recorder)
    H.converse(map, host, port, "QUIT\r\n")
    local before = H.core.stats().lua_calls
    H.converse(map, host, port, "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>"
               .. "\r\nRCPT TO:<e@f>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n")
    assert.equal(1, H.core.stats().lua_calls - before)
    assert.equal(1, #srv.messages)
    H.cleanup(map)
  end)
end)

-- PureProxy and smtpd.sendmail: relaying without blocking, and never a 250
-- for a message that did not get through.
local H = require "helper"
local R = require "replies"
local smtpd = H.smtpd

local MSG = "EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"
            .. "Subject: relay\r\n\r\nbody\r\n.\r\nQUIT\r\n"

-- A proxy in map in front of upstream {host, port}; returns it, its port.
local function proxy(map, upstream, opts)
  opts = opts or {}
  opts.map = map
  local p = smtpd.PureProxy({"127.0.0.1", 0}, upstream, opts)
  p.logged = {}
  function p:log(level, fmt, ...)
    self.logged[#self.logged + 1] = fmt:format(...)
  end
  local _, port = p:getsockname()
  return p, port
end

-- The reply to DATA's end in a conversation after EHLO.
local function final_reply(replies)
  for i, l in ipairs(replies) do
    if l:match("^354 ") then return replies[i + 1] end
  end
end

-- Upstream whose channel answers RCPT per recipient from a table.
local Picky = smtpd.SMTPChannel:extend("Picky")
function Picky:smtp_RCPT(arg)
  local addr = self:getaddr("TO:", arg)
  local answer = addr and self.smtp_server.answers[addr]
  if answer then return self:push(answer) end
  return Picky.super.smtp_RCPT(self, arg)
end
local Upstream = H.Recorder:extend("Upstream")
Upstream.channel_class = Picky

local function upstream(map, answers)
  local up = Upstream({"127.0.0.1", 0}, nil, {map = map})
  up.answers = answers or {}
  return up, {up:getsockname()}
end

describe("smtpd.sendmail", function()
  -- It used to allocate its client before checking its arguments: each
  -- bad call leaked the client.
  it("raises on bad arguments and leaks nothing", function()
    local map = H.map()
    local _, addr = upstream(map)
    local before = H.core.stats().handles
    local BAD = {
      {rcpttos = {{}}}, {rcpttos = {"c@d", "two words"}},
      {rcpttos = {"c@d"}, opts = {helo = "two words"}},
      {rcpttos = {"c@d"}, opts = {timeout = "soon"}},
      {rcpttos = {"c@d"}, opts = {lmtp = "yes"}},
      {rcpttos = {"c@d"}, opts = {mail_options = {"A", false}}},
      {rcpttos = {"c@d"}, mailfrom = "a b@c"},
    }
    for i = 1, 210 do
      local bad = BAD[i % #BAD + 1]
      local opts = {map = map}
      for k, v in pairs(bad.opts or {}) do opts[k] = v end
      assert.has_error(function()
        smtpd.sendmail(addr, bad.mailfrom or "a@b", bad.rcpttos, "x", opts)
      end)
    end
    assert.equal(before, H.core.stats().handles)
  end)
end)

describe("PureProxy", function()
  it("relays with X-Peer after the headers", function()
    local map = H.map()
    local up, addr = upstream(map)
    local _, port = proxy(map, addr)
    local replies = H.converse(map, "127.0.0.1", port, MSG)
    assert.equal(R.ok, final_reply(replies))
    assert.equal(1, #up.messages)
    local m = up.messages[1]
    assert.equal("a@b", m.mailfrom)
    assert.same({"c@d"}, m.rcpttos)
    assert.equal("Subject: relay\nX-Peer: 127.0.0.1\n\nbody", m.data)
  end)

  it("inserts X-Peer exactly where smtpd does", function()
    local add = smtpd.PureProxy.add_peer_header
    assert.equal("X-Peer: h\n", add("", "h"))
    assert.equal("X-Peer: h\n\nbody", add("\nbody", "h"))
    assert.equal("a\nX-Peer: h\n\nb\n\nc", add("a\n\nb\n\nc", "h"))
    assert.equal("a\nX-Peer: h\n", add("a\n", "h"))
    assert.equal("a\nb\nX-Peer: h", add("a\nb", "h"))
  end)

  it("refuses enable_SMTPUTF8 in the message mode, as smtpd does",
     function()
    assert.has_error(function()
      smtpd.PureProxy({"127.0.0.1", 0}, {"127.0.0.1", 25},
                      {enable_SMTPUTF8 = true, map = H.map(),
                       relay = {at = "message"}})
    end, "PureProxy does not support SMTPUTF8.")
    -- A subclass that wants the whole message gets the message mode.
    local Sub = smtpd.PureProxy:extend()
    function Sub:process_message(...) return Sub.super.process_message(self,
                                                                        ...)
    end
    assert.has_error(function()
      Sub({"127.0.0.1", 0}, {"127.0.0.1", 25},
          {enable_SMTPUTF8 = true, map = H.map()})
    end, "PureProxy does not support SMTPUTF8.")
  end)

  it("message mode: answers 250 and logs when only some recipients are refused", function()
    local map = H.map()
    local up, addr = upstream(map, {["bad@d"] = "550 5.1.1 No such user"})
    local p, port = proxy(map, addr, {relay = {at = "message"}})
    local replies = H.converse(map, "127.0.0.1", port,
      "EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<good@d>\r\nRCPT TO:<bad@d>\r\n"
      .. "DATA\r\nx\r\n.\r\nQUIT\r\n")
    assert.equal(R.ok, final_reply(replies))
    assert.same({"good@d"}, up.messages[1].rcpttos)
    assert.matches("bad@d: 550 5.1.1 No such user", p.logged[1], 1, true)
  end)

  it("message mode: answers the 5xx when every recipient is refused permanently",
     function()
    local map = H.map()
    local up, addr = upstream(map, {["x@d"] = "550 5.1.1 Unknown x",
                                    ["y@d"] = "553 5.1.3 Bad y"})
    local _, port = proxy(map, addr, {relay = {at = "message"}})
    local replies = H.converse(map, "127.0.0.1", port,
      "EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@d>\r\nRCPT TO:<y@d>\r\n"
      .. "DATA\r\nx\r\n.\r\nQUIT\r\n")
    assert.equal("550 5.1.1 Unknown x", final_reply(replies))
    assert.is_nil(up.messages)
  end)

  it("message mode: answers 4xx when recipients are refused temporarily", function()
    local map = H.map()
    local up, addr = upstream(map, {["x@d"] = "450 4.2.1 Mailbox busy",
                                    ["y@d"] = "550 5.1.1 Unknown y"})
    local _, port = proxy(map, addr, {relay = {at = "message"}})
    local replies = H.converse(map, "127.0.0.1", port,
      "EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@d>\r\nRCPT TO:<y@d>\r\n"
      .. "DATA\r\nx\r\n.\r\nQUIT\r\n")
    assert.equal("450 Upstream: 4.2.1 Mailbox busy", final_reply(replies))
    assert.is_nil(up.messages)
  end)

  it("message mode: answers 4xx when the upstream refuses the message with 4xx",
     function()
    local map = H.map()
    local up, addr = upstream(map)
    up.reply = "451 4.3.0 Try later"
    local _, port = proxy(map, addr, {relay = {at = "message"}})
    local replies = H.converse(map, "127.0.0.1", port, MSG)
    assert.equal("451 Upstream: message: 451 4.3.0 Try later",
                 final_reply(replies))
  end)

  describe("message mode faults: the client gets 4xx and nothing counts as "
           .. "delivered",
           function()
    it("upstream not listening", function()
      local map = H.map()
      local p, port = proxy(map, {"127.0.0.1", H.free_port()}, {relay = {at = "message"}})
      local replies = H.converse(map, "127.0.0.1", port, MSG)
      assert.matches("^451 4%.4%.1 Upstream unavailable: connect to "
                     .. "127%.0%.0%.1:%d+: connection refused$",
                     final_reply(replies))
      assert.equal(1, #p.logged)
    end)

    it("upstream that accepts and never answers (timeout)", function()
      local map = H.map()
      -- A server on a map nobody runs: the kernel accepts, nobody speaks.
      local deaf_map = H.map()
      local deaf = H.Recorder({"127.0.0.1", 0}, nil, {map = deaf_map})
      local _, port = proxy(map, {deaf:getsockname()},
                            {relay = {timeout = 0.5, at = "message"}})
      local t0 = H.now()
      local replies = H.converse(map, "127.0.0.1", port, MSG)
      assert.equal("451 4.4.1 Upstream unavailable: greeting: timed out "
                   .. "after 0.5 s", final_reply(replies))
      assert.is_true(H.now() - t0 < 5)
      H.cleanup(map)
    end)

    it("upstream that drops the connection in DATA", function()
      local map = H.map()
      local Dropper = smtpd.SMTPChannel:extend()
      function Dropper:smtp_DATA(arg)
        Dropper.super.smtp_DATA(self, arg)
        self:close_when_done()
      end
      local Up = H.Recorder:extend()
      Up.channel_class = Dropper
      local up = Up({"127.0.0.1", 0}, nil, {map = map})
      local _, port = proxy(map, {up:getsockname()}, {relay = {at = "message"}})
      local replies = H.converse(map, "127.0.0.1", port, MSG)
      assert.equal("451 4.4.1 Upstream unavailable: message: connection "
                   .. "closed by the server", final_reply(replies))
      assert.is_nil(up.messages)
    end)

    it("upstream that refuses the connection with 554", function()
      local map = H.map()
      local Closed = smtpd.SMTPChannel:extend()
      function Closed:initialize(...)
        Closed.super.initialize(self, ...)
      end
      local Up = H.Recorder:extend()
      Up.channel_class = Closed
      local up = Up({"127.0.0.1", 0}, nil, {map = map,
                                            fqdn = "busy"})
      -- Every command is refused: the relay cannot even say EHLO.
      function Closed:smtp_EHLO() self:push("554 5.3.2 Not today") end
      function Closed:smtp_HELO() self:push("554 5.3.2 Not today") end
      local _, port = proxy(map, {up:getsockname()}, {relay = {at = "message"}})
      local replies = H.converse(map, "127.0.0.1", port, MSG)
      assert.equal("451 4.4.1 Upstream unavailable: HELO: 554 5.3.2 Not "
                   .. "today", final_reply(replies))
    end)
  end)

  it("does not block: one handler waits 2 s, another message goes through",
     function()
    local map = H.map()
    local Slow = H.Recorder:extend()
    function Slow:process_message(peer, mailfrom, ...)
      if mailfrom == "slow@x" then smtpd.sleep(2) end
      return Slow.super.process_message(self, peer, mailfrom, ...)
    end
    local srv = Slow({"127.0.0.1", 0}, nil, {map = map})
    local host, port = srv:getsockname()
    local slow = H.connect(map, host, port)
    slow:lines(1)
    slow:send("HELO s\r\nMAIL FROM:<slow@x>\r\nRCPT TO:<r@y>\r\nDATA\r\n"
              .. "slow\r\n.\r\n")
    slow:lines(4)
    local t0 = H.now()
    local replies = H.converse(map, host, port, "HELO f\r\nMAIL FROM:<fast@x>"
      .. "\r\nRCPT TO:<r@y>\r\nDATA\r\nfast\r\n.\r\nQUIT\r\n")
    local fast_time = H.now() - t0
    assert.equal(R.ok, replies[5])
    assert.is_true(fast_time < 1.5, "fast took " .. fast_time)
    assert.equal("fast@x", srv.messages[1].mailfrom)
    assert.same({R.ok}, slow:lines(1, 10))
    assert.is_true(H.now() - t0 >= 1.5)
    assert.equal("slow@x", srv.messages[2].mailfrom)
    slow:close()
  end)

  it("does not block while the upstream is slow", function()
    local map = H.map()
    local SlowUp = H.Recorder:extend()
    function SlowUp:process_message(...)
      smtpd.sleep(2)
      return SlowUp.super.process_message(self, ...)
    end
    local up = SlowUp({"127.0.0.1", 0}, nil, {map = map})
    local p, pport = proxy(map, {up:getsockname()})
    local other = H.Recorder({"127.0.0.1", 0}, nil, {map = map})
    local ohost, oport = other:getsockname()
    local c = H.connect(map, "127.0.0.1", pport)
    c:lines(1)
    c:send(MSG:gsub("QUIT\r\n", ""))
    c:lines(3 + #R.ehlo)          -- 220, EHLO, MAIL, RCPT, 354
    local t0 = H.now()
    local replies = H.converse(map, ohost, oport, MSG)
    assert.is_true(H.now() - t0 < 1.5)
    assert.equal(R.ok, final_reply(replies))
    assert.same({R.ok}, c:lines(1, 10))
    assert.equal(1, #up.messages)
    c:close()
  end)

  describe("SMTP smuggling through the proxy: the upstream gets one message",
           function()
    local endings = {"\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n", "\r.\r\n",
                     "\r\n.\r", "\r\n\0.\r\n", "\r\n.\r\r\n"}
    for _, ending in ipairs(endings) do
      it(("%q"):format(ending), function()
        local map = H.map()
        local up, addr = upstream(map)
        local _, port = proxy(map, addr)
        local replies = H.converse(map, "127.0.0.1", port,
          "EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"
          .. "Subject: one\r\n\r\nfirst" .. ending
          .. "MAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\n"
          .. "smuggled\r\n.\r\nQUIT\r\n")
        assert.equal(R.ok, final_reply(replies))
        assert.equal(1, #up.messages)
        assert.equal("a@b", up.messages[1].mailfrom)
        assert.same({"c@d"}, up.messages[1].rcpttos)
        assert.matches("MAIL FROM:<evil@x>", up.messages[1].data, 1, true)
        -- No bare CR or LF crossed the relay: the upstream saw CRLF lines.
        assert.is_nil(up.messages[1].data:find("\r", 1, true))
      end)
    end
  end)
end)

describe("a handler that inspects, then relays (README)", function()
  it("refuses spam, relays the rest, passes upstream refusals on", function()
    local map = H.map()
    local up, addr = upstream(map, {["gone@d"] = "550 5.1.1 Gone"})
    local Filter = smtpd.SMTPServer:extend("Filter")
    function Filter:process_message(peer, mailfrom, rcpttos, data)
      if data:find("\nX-Spam: yes", 1, true) then return "550 5.7.1 Spam" end
      local refused, err, info = smtpd.sendmail(addr, mailfrom, rcpttos, data)
      if not refused then
        return smtpd.PureProxy.reply_for(info.refused, rcpttos, info)
      end
    end
    local _, _, host, port = H.server(Filter, {}, map)
    local function send(rcpt, body)
      local r = H.converse(map, host, port, "HELO x\r\nMAIL FROM:<a@b>\r\n"
        .. "RCPT TO:<" .. rcpt .. ">\r\nDATA\r\n" .. body .. "\r\n.\r\nQUIT\r\n")
      return r[5]
    end
    assert.equal("550 5.7.1 Spam", send("c@d", "Subject: x\r\nX-Spam: yes"))
    assert.equal(R.ok, send("c@d", "Subject: fine"))
    assert.equal("550 5.1.1 Gone", send("gone@d", "Subject: fine"))
    assert.equal(1, #up.messages)
  end)
end)

describe("smtpd.sendmail and smtpd.sleep", function()
  it("return the refused table outside any hook (REPL use)", function()
    local map = H.map()
    local up, addr = upstream(map, {["no@d"] = "550 nope"})
    local refused = smtpd.sendmail(addr, "a@b", {"yes@d", "no@d"},
                                   "Subject: s\n\nhi", {map = map})
    assert.same({["no@d"] = {550, "nope", "rcpt"}}, refused)
    assert.same({"yes@d"}, up.messages[1].rcpttos)
    local none, err, info = smtpd.sendmail(addr, "a@b", "no@d", "x",
                                           {map = map})
    assert.is_nil(none)
    assert.equal("RCPT: every recipient was refused", err)
    assert.equal("rcpt", info.stage)
    assert.same({["no@d"] = {550, "nope", "rcpt"}}, info.refused)
  end)

  it("relays over IPv6", function()
    local map = H.map()
    local ok, up = pcall(H.Recorder, "[::1]:0", nil, {map = map})
    if not ok then
      H.cleanup(map)
      return H.skip("no IPv6 loopback here: " .. tostring(up))
    end
    local _, port = up:getsockname()
    assert.same({}, smtpd.sendmail("[::1]:" .. port, "a@b", {"c@d"}, "v6",
                                   {map = map}))
    assert.equal("v6", up.messages[1].data)
    assert.equal("::1", up.messages[1].peer[1])
  end)

  it("sends the null sender and falls back to HELO", function()
    local map = H.map()
    local NoEhlo = smtpd.SMTPChannel:extend()
    function NoEhlo:smtp_EHLO() self:push("502 Error: command not here") end
    local Up = H.Recorder:extend()
    Up.channel_class = NoEhlo
    local up = Up({"127.0.0.1", 0}, nil, {map = map})
    local refused = smtpd.sendmail({up:getsockname()}, "", {"c@d"},
                                   "x\n", {map = map, helo = "me.example"})
    assert.same({}, refused)
    assert.equal("<>", up.messages[1].mailfrom)
    assert.equal("x\n", up.messages[1].data .. "\n")
  end)

  it("honours SIZE and 8BITMIME when offered", function()
    local map = H.map()
    local up = H.Recorder({"127.0.0.1", 0}, nil, {map = map,
                                                  data_size_limit = 50})
    local addr = {up:getsockname()}
    local data = "caf\195\169"
    assert.same({}, smtpd.sendmail(addr, "a@b", "c@d", data, {map = map}))
    assert.same({"SIZE=" .. #data, "BODY=8BITMIME"},
                up.messages[1].kwargs.mail_options)
    local _, err, info = smtpd.sendmail(addr, "a@b", "c@d", ("x"):rep(60),
                                        {map = map})
    assert.equal(552, info.code)
    assert.matches("^MAIL: 552 ", err)
  end)

  it("sleeps in a hook without holding other connections", function()
    local map = H.map()
    local S = H.Recorder:extend()
    local woke
    function S:process_message(...)
      local t0 = H.now()
      smtpd.sleep(0.3)
      woke = H.now() - t0
      return S.super.process_message(self, ...)
    end
    local srv, _, host, port = H.server(S, {}, map)
    local replies = H.converse(map, host, port, MSG)
    assert.equal(R.ok, final_reply(replies))
    assert.is_true(woke >= 0.25)
    assert.equal(1, #srv.messages)
  end)

  it("refuses to run the loop from code the loop is running", function()
    local map = H.map()
    local err
    local t = H.core.after(map, 0, function()
      local ok, e = pcall(smtpd.sleep, 0.1, map)
      err = e
    end)
    map:loop(0.1, 2)
    assert.matches("outside a hook", err)
  end)
end)

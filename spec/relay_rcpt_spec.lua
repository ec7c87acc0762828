-- PureProxy at RCPT time (the default): each client transaction paired
-- with an upstream one, every recipient's verdict the upstream's own, and
-- never a 250 for mail that did not get through.
local H = require "helper"
local R = require "replies"
local smtpd = H.smtpd

-- An upstream whose answers the addresses choose:
--   RCPT ok-*@   250        defer-*@  451 4.3.0 try later
--        reject-*@ 550      slow-*@   250 after 0.2 s
--        stall-*@  250 after 2 s (past a 0.5 s relay timeout)
--   MAIL drop@     354 to DATA, then the connection closes
--        late@     451 to the end of the message
--        flood@    (EHLO floods instead, see Flood)
local Chan = smtpd.SMTPChannel:extend("Hostile")
function Chan:initialize(...)
  Chan.super.initialize(self, ...)
  local srv = rawget(self, "smtp_server")
  srv.connections = (srv.connections or 0) + 1
end
function Chan:smtp_RCPT(arg)
  local addr = self:getaddr("TO:", arg)
  local kind = addr and addr:match("^(%a+)%-") or ""
  if kind == "defer" then return self:push("451 4.3.0 try later") end
  if kind == "reject" then return self:push("550 5.1.1 no such user") end
  if kind == "slow" then smtpd.sleep(0.2) end
  if kind == "stall" then smtpd.sleep(2) end
  return Chan.super.smtp_RCPT(self, arg)
end
function Chan:smtp_DATA(arg)
  Chan.super.smtp_DATA(self, arg)
  if self.mailfrom == "drop@x" then self:close_when_done() end
end
local Up = smtpd.SMTPServer:extend("HostileUp")
Up.channel_class = Chan
function Up:process_message(peer, mailfrom, rcpttos, data, kwargs)
  if mailfrom == "late@x" then return "451 4.3.0 later, please" end
  self.messages = self.messages or {}
  self.messages[#self.messages + 1] = {mailfrom = mailfrom,
    rcpttos = rcpttos, data = data, kwargs = kwargs}
end

local function upstream(map, opts)
  opts = opts or {}
  opts.map = map
  local up = Up({"127.0.0.1", 0}, nil, opts)
  return up, {up:getsockname()}
end

local function proxy(map, addr, opts)
  opts = opts or {}
  opts.map = map
  local p = smtpd.PureProxy({"127.0.0.1", 0}, addr, opts)
  p.logged = {}
  function p:log(level, fmt, ...)
    self.logged[#self.logged + 1] = level .. ": " .. fmt:format(...)
  end
  return p, select(2, p:getsockname())
end

-- One client session of transactions: each {from =, to = {...}, body =}
-- is MAIL, RCPT each, DATA and the body (when some RCPT got 2xx), lock
-- step; returns per transaction {rcpt = {reply, ...}, final = reply}.
local function session(map, port, transactions)
  local c = H.connect(map, "127.0.0.1", port)
  c:lines(1)
  c:send("EHLO client\r\n")
  c:reply()
  local out = {}
  for _, t in ipairs(transactions) do
    local o = {rcpt = {}}
    c:send("MAIL FROM:<" .. t.from .. ">\r\n")
    o.mail = c:reply(5)[1]
    local taken = 0
    for _, r in ipairs(t.to) do
      c:send("RCPT TO:<" .. r .. ">\r\n")
      local l = c:reply(5)
      o.rcpt[#o.rcpt + 1] = l[#l]
      if l[#l]:match("^2") then taken = taken + 1 end
    end
    if taken > 0 then
      c:send("DATA\r\n")
      o.data = c:reply(5)[1]
      if o.data:match("^354") then
        c:send((t.body or "Subject: t\r\n\r\nbody") .. "\r\n.\r\n")
        local l = c:reply(10)
        o.final = l[#l]
      else
        c:send("RSET\r\n")
        c:reply(5)
      end
    else
      c:send("RSET\r\n")
      c:reply(5)
    end
    out[#out + 1] = o
  end
  c:send("QUIT\r\n")
  c:wait_closed(5)
  c:close()
  return out
end

describe("PureProxy at RCPT time", function()
  it("answers each RCPT with the upstream's verdict: a deferred recipient "
     .. "reaches the client, and only the taken one gets the message",
     function()
    local map = H.map()
    local up, addr = upstream(map)
    local _, port = proxy(map, addr)
    local py = H.python_with("smtplib")
    if py then
      -- A new user's test: smtplib's sendmail says which were refused.
      local script = os.tmpname()
      H.defer(function() os.remove(script) end)
      local f = assert(io.open(script, "w"))
      f:write(([[
import smtplib
s = smtplib.SMTP("127.0.0.1", %d)
refused = s.sendmail("a@x", ["ok-now@example.net", "defer-later@example.net"],
                     "Subject: hello\r\n\r\nbody\r\n")
print(sorted((k, v[0], v[1].decode()) for k, v in refused.items()))
s.quit()
]]):format(port))
      f:close()
      local text = H.run_client(map, py .. " " .. script, 20)
      assert.matches("%[%('defer%-later@example%.net', 451, '4%.3%.0 try "
                     .. "later'%)%]", text)
    else
      -- The same, through our own client.
      local refused = smtpd.sendmail({"127.0.0.1", port}, "a@x",
        {"ok-now@example.net", "defer-later@example.net"},
        "Subject: hello\r\n\r\nbody\r\n", {map = map})
      assert.same({451, "4.3.0 try later", "rcpt"},
                  refused["defer-later@example.net"])
    end
    assert.equal(1, #up.messages)
    assert.same({"ok-now@example.net"}, up.messages[1].rcpttos)
    assert.matches("\nX%-Peer: 127%.0%.0%.1\n\nbody", up.messages[1].data)
  end)

  it("passes every verdict on as it is, and one connection serves the "
     .. "session's transactions", function()
    local map = H.map()
    local up, addr = upstream(map)
    local _, port = proxy(map, addr)
    local got = session(map, port, {
      {from = "a@x", to = {"ok-1@y", "reject-2@y", "defer-3@y"}},
      {from = "b@x", to = {"ok-4@y", "slow-5@y"}},
      {from = "c@x", to = {"reject-6@y"}},
    })
    assert.equal("250 OK", got[1].mail)
    assert.same({"250 OK", "550 5.1.1 no such user", "451 4.3.0 try later"},
                got[1].rcpt)
    assert.equal("250 OK", got[1].final)
    assert.same({"250 OK", "250 OK"}, got[2].rcpt)
    assert.same({"550 5.1.1 no such user"}, got[3].rcpt)
    assert.equal(2, #up.messages)
    assert.same({"ok-1@y"}, up.messages[1].rcpttos)
    assert.same({"ok-4@y", "slow-5@y"}, up.messages[2].rcpttos)
    assert.equal(1, up.connections)
  end)

  it("with a hostile upstream, every recipient's outcome reaches the client "
     .. "exactly once", function()
    local map = H.map()
    local up, addr = upstream(map)
    local _, port = proxy(map, addr, {relay = {timeout = 1}})
    math.randomseed(19)
    local kinds = {"ok", "ok", "ok", "defer", "reject", "slow"}
    local senders = {"a@x", "a@x", "a@x", "drop@x", "late@x"}
    local plan, n = {}, 0
    for t = 1, 12 do
      local to = {}
      for k = 1, math.random(1, 4) do
        n = n + 1
        to[k] = kinds[math.random(#kinds)] .. "-" .. n .. "@y"
      end
      plan[t] = {from = senders[math.random(#senders)], to = to,
                 body = "Subject: m" .. t .. "\r\n\r\n"
                        .. ("line of the message\r\n"):rep(3000)}
    end
    local got = session(map, port, plan)
    local delivered = {}
    for _, m in ipairs(up.messages or {}) do
      local subject = m.data:match("^Subject: (m%d+)")
      assert.is_nil(delivered[subject], "delivered twice: " .. subject)
      delivered[subject] = m
    end
    for t, p in ipairs(plan) do
      local o = got[t]
      assert.equal(#p.to, #o.rcpt)      -- one reply per recipient
      local want = {}
      for k, r in ipairs(p.to) do
        local kind = r:match("^(%a+)")
        local expect = kind == "defer" and "451 4.3.0 try later"
                    or kind == "reject" and "550 5.1.1 no such user"
                    or "250 OK"
        assert.equal(expect, o.rcpt[k], r)
        if expect == "250 OK" then want[#want + 1] = r end
      end
      local m = delivered["m" .. t]
      if #want == 0 then
        assert.is_nil(o.final)
        assert.is_nil(m)
      elseif p.from == "a@x" then
        assert.equal("250 OK", o.final)
        assert.same(want, m.rcpttos)
        assert.matches("\nX%-Peer: 127%.0%.0%.1\n\n", m.data)
      else
        -- Dropped mid-DATA, or deferred at the end: 4xx, nothing taken.
        assert.matches("^4%d%d ", o.final or o.data)
        assert.is_nil(m)
      end
    end
  end)

  it("gives up an upstream that does not answer in time: 451, then a new "
     .. "connection for the next transaction", function()
    local map = H.map()
    local up, addr = upstream(map)
    local _, port = proxy(map, addr, {relay = {timeout = 0.5}})
    local t0 = H.now()
    local got = session(map, port, {
      {from = "a@x", to = {"ok-1@y", "stall-2@y", "ok-3@y"}},
      {from = "a@x", to = {"ok-4@y"}},
    })
    assert.is_true(H.now() - t0 < 5)
    assert.equal("250 OK", got[1].rcpt[1])
    assert.matches("^451 4%.4%.1 Upstream unavailable: rcpt: timed out",
                   got[1].rcpt[2])
    -- The transaction lost its upstream: everything after it is 451.
    assert.matches("^451 4%.4%.1 ", got[1].rcpt[3])
    assert.matches("^451 4%.4%.1 ", got[1].data)
    assert.equal("250 OK", got[2].final)
    assert.same({"ok-4@y"}, up.messages[1].rcpttos)
    assert.equal(1, #up.messages)
  end)

  it("answers 4xx, never 250, when the upstream goes away mid-DATA",
     function()
    local map = H.map()
    local up, addr = upstream(map)
    local _, port = proxy(map, addr)
    local got = session(map, port, {
      {from = "drop@x", to = {"ok-1@y"},
       body = "Subject: big\r\n\r\n" .. ("x"):rep(200000)},
      {from = "a@x", to = {"ok-2@y"}},
    })
    assert.matches("^451 4%.4%.1 Upstream unavailable: ", got[1].final)
    assert.equal("250 OK", got[2].final)
    assert.equal(1, #up.messages)
    assert.same({"ok-2@y"}, up.messages[1].rcpttos)
  end)

  it("resets the upstream transaction with the client's RSET", function()
    local map = H.map()
    local up, addr = upstream(map)
    local _, port = proxy(map, addr)
    local c = H.connect(map, "127.0.0.1", port)
    c:lines(1)
    c:send("HELO x\r\nMAIL FROM:<a@x>\r\nRCPT TO:<ok-1@y>\r\nRSET\r\n"
           .. "MAIL FROM:<b@x>\r\nRCPT TO:<ok-2@y>\r\nDATA\r\nhi\r\n.\r\n"
           .. "QUIT\r\n")
    assert.same({R.helo, R.ok, R.ok, R.ok, R.ok, R.ok, R.data, R.ok,
                 R.bye}, H.split_lines(c:wait_closed(5)))
    c:close()
    assert.equal(1, #up.messages)
    assert.equal("b@x", up.messages[1].mailfrom)
    assert.same({"ok-2@y"}, up.messages[1].rcpttos)
    assert.equal(1, up.connections)
  end)

  it("drops a message too big for us, never ends it upstream", function()
    local map = H.map()
    local up, addr = upstream(map)
    local _, port = proxy(map, addr, {data_size_limit = 1000})
    local got = session(map, port, {
      {from = "a@x", to = {"ok-1@y"}, body = ("x"):rep(5000)},
      {from = "a@x", to = {"ok-2@y"}, body = "small"},
    })
    assert.equal("552 Error: Too much mail data", got[1].final)
    assert.equal("250 OK", got[2].final)
    assert.equal(1, #up.messages)
    assert.same({"ok-2@y"}, up.messages[1].rcpttos)
  end)

  it("drops the upstream message when the client goes away mid-DATA",
     function()
    local map = H.map()
    local up, addr = upstream(map)
    local _, port = proxy(map, addr)
    local c = H.connect(map, "127.0.0.1", port)
    c:lines(1)
    c:send("HELO x\r\nMAIL FROM:<a@x>\r\nRCPT TO:<ok-1@y>\r\nDATA\r\n")
    c:lines(4)
    c:send("Subject: cut\r\n\r\n" .. ("line\r\n"):rep(1000))
    c:close()
    H.run_until(map, function() return map:stats().channels == 0 end, 5)
    -- The upstream's side ends too, with no message.
    local t0 = H.now()
    H.run_until(map, function() return H.now() - t0 > 0.3 end, 2)
    assert.is_nil(up.messages)
  end)

  it("relays BDAT chunks, and BINARYMIME to an upstream that takes it",
     function()
    local map = H.map()
    local up, addr = upstream(map, {binarymime = true})
    local _, port = proxy(map, addr, {binarymime = true})
    local c = H.connect(map, "127.0.0.1", port)
    c:lines(1)
    c:send("EHLO x\r\n")
    c:reply()
    c:send("MAIL FROM:<a@x>\r\nRCPT TO:<ok-1@y>\r\nBDAT 12\r\nSubject: b\r\n"
           .. "BDAT 7 LAST\r\n\r\nchunk")
    assert.same({R.ok, R.ok, "250 OK 12 octets received", R.ok}, c:lines(4))
    local binary = "Subject: bin\r\n\r\n\0\1\2\r\n\255"
    c:send("MAIL FROM:<a@x> BODY=BINARYMIME\r\nRCPT TO:<ok-2@y>\r\nBDAT "
           .. #binary .. " LAST\r\n" .. binary .. "QUIT\r\n")
    assert.same({R.ok, R.ok, R.ok, R.bye}, c:lines(4))
    c:close()
    assert.equal(2, #up.messages)
    assert.equal("Subject: b\nX-Peer: 127.0.0.1\n\nchunk", up.messages[1].data)
    assert.equal("X-Peer: 127.0.0.1\r\n" .. binary, up.messages[2].data)
  end)

  it("passes DSN and SMTPUTF8 on where both sides offer them", function()
    local map = H.map()
    local up, addr = upstream(map, {dsn = true, enable_SMTPUTF8 = true})
    local plain, plain_addr = upstream(map)
    local _, port = proxy(map, addr, {dsn = true, enable_SMTPUTF8 = true})
    local _, port2 = proxy(map, plain_addr, {enable_SMTPUTF8 = true})
    local c = H.connect(map, "127.0.0.1", port)
    c:lines(1)
    c:send("EHLO x\r\n")
    c:reply()
    c:send("MAIL FROM:<a@x> RET=HDRS ENVID=Id+2B1 SMTPUTF8\r\n"
           .. "RCPT TO:<ok-1@y> NOTIFY=SUCCESS ORCPT=rfc822;Ok-1@Y\r\n"
           .. "DATA\r\nhi\r\n.\r\nQUIT\r\n")
    assert.same({R.ok, R.ok, R.data, R.ok, R.bye}, c:lines(5))
    c:close()
    local k = up.messages[1].kwargs
    assert.equal("HDRS", k.dsn.ret)
    assert.equal("Id+2B1", k.dsn.envid)
    assert.same({notify = "SUCCESS", orcpt = "rfc822;Ok-1@Y"},
                k.dsn.rcpt["ok-1@y"])
    assert.same({"RET=HDRS", "ENVID=ID+2B1", "SMTPUTF8"}, k.mail_options)
    -- An upstream that does not take SMTPUTF8: refused at MAIL.
    c = H.connect(map, "127.0.0.1", port2)
    c:lines(1)
    c:send("EHLO x\r\n")
    c:reply()
    c:send("MAIL FROM:<a@x> SMTPUTF8\r\nQUIT\r\n")
    assert.same({"553 5.6.7 Error: the upstream does not take SMTPUTF8",
                 R.bye}, c:lines(2))
    c:close()
    assert.is_nil(plain.messages)
  end)

  it("answers 4xx, with bounded memory, to an upstream flooding 250- lines",
     function()
    local map = H.map()
    local Flood = smtpd.SMTPChannel:extend()
    function Flood:smtp_EHLO()
      for i = 1, 5000 do self:push("250-flood line " .. i) end
      self:push("250 HELP")
    end
    local Sink = H.Recorder:extend()
    Sink.channel_class = Flood
    local up = Sink({"127.0.0.1", 0}, nil, {map = map})
    local _, port = proxy(map, {up:getsockname()})
    local c = H.connect(map, "127.0.0.1", port)
    c:lines(1)
    c:send("HELO x\r\nMAIL FROM:<a@x>\r\nQUIT\r\n")
    local lines = c:lines(3)
    c:close()
    assert.equal(R.helo, lines[1])
    assert.matches("^451 4%.4%.1 Upstream unavailable: ehlo: a reply of "
                   .. "more than 100 lines or 16 KiB", lines[2])
    assert.is_nil(up.messages)
  end)

  it("relays to a unix socket, and smtpd.sendmail reaches one too",
     function()
    local map = H.map()
    local path = os.tmpname()
    os.remove(path)
    H.defer(function() os.remove(path) end)
    local up = H.Recorder("unix:" .. path, nil, {map = map, lmtp = true})
    local _, port = proxy(map, "unix:" .. path,
                          {relay = {lmtp = true}})
    local replies = H.converse(map, "127.0.0.1", port,
      "HELO x\r\nMAIL FROM:<a@x>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\n"
      .. "QUIT\r\n")
    assert.equal(R.ok, replies[5])
    assert.equal(1, #up.messages)
    local refused = smtpd.sendmail("unix:" .. path, "b@x", {"e@f", "g@h"},
                                   "Subject: s\n\nhi\n",
                                   {lmtp = true, map = map})
    assert.same({}, refused)
    assert.same({"e@f", "g@h"}, up.messages[2].rcpttos)
  end)

  it("keeps the message mode for subclasses that want the whole message",
     function()
    local map = H.map()
    local up, addr = upstream(map)
    local Tagger = smtpd.PureProxy:extend()
    function Tagger:process_message(peer, mailfrom, rcpttos, data, kwargs)
      return Tagger.super.process_message(self, peer, mailfrom, rcpttos,
                                          "X-Tag: yes\n" .. data, kwargs)
    end
    local p = Tagger({"127.0.0.1", 0}, addr, {map = map})
    assert.equal("message", p.relay_mode)
    local _, port = p:getsockname()
    local replies = H.converse(map, "127.0.0.1", port,
      "HELO x\r\nMAIL FROM:<a@x>\r\nRCPT TO:<ok-1@y>\r\nRCPT TO:<defer-2@y>\r\n"
      .. "DATA\r\nhi\r\n.\r\nQUIT\r\n")
    -- Every RCPT is ours (250), and a deferred one makes the message 451.
    assert.same({R.helo, R.ok, R.ok, R.ok, R.data}, {table.unpack(replies,
                                                                    1, 5)})
    assert.matches("^451 Upstream: .*4%.3%.0 try later", replies[6])
    assert.is_nil(up.messages)
  end)

  it("never says 250 in the message mode while a recipient was deferred",
     function()
    local map = H.map()
    local up, addr = upstream(map)
    local p = smtpd.PureProxy({"127.0.0.1", 0}, addr, {map = map,
      relay = {at = "message", tempfail_aborts = false}})
    function p:log() end
    local _, port = p:getsockname()
    local replies = H.converse(map, "127.0.0.1", port,
      "HELO x\r\nMAIL FROM:<a@x>\r\nRCPT TO:<ok-1@y>\r\nRCPT TO:<defer-2@y>\r\n"
      .. "DATA\r\nhi\r\n.\r\nQUIT\r\n")
    assert.matches("^451 Upstream: .*4%.3%.0 try later", replies[6])
    -- This upstream took it for ok-1 (tempfail_aborts = false sends the
    -- data); the client sends it again, for both.
    assert.equal(1, #up.messages)
  end)
end)

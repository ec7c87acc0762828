-- The Lua classes: subclassing, hooks, channel fields, errors in handlers.
local H = require "helper"
local R = require "replies"
local smtpd = H.smtpd

local MSG = "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nbody\r\n"
            .. ".\r\n"

describe("classes", function()
  it("subclass at any depth, with super and is_a", function()
    local A = smtpd.SMTPServer:extend("A")
    function A:initialize(l, r, o)
      A.super.initialize(self, l, r, o)
      self.tag = "A"
    end
    function A:process_message(peer, mailfrom) self.last = mailfrom end
    local B = A:extend("B")
    local C = B:extend()
    function C:initialize(l, r, o)
      C.super.initialize(self, l, r, o)
      self.tag = self.tag .. "C"
    end
    assert.equal(A, B.super)
    assert.equal(B, C.super)
    local srv, map, host, port = H.server(C)
    assert.equal("AC", srv.tag)
    assert.is_true(srv:is_a(C) and srv:is_a(A) and srv:is_a(smtpd.SMTPServer))
    assert.is_false(srv:is_a(smtpd.DebuggingServer))
    H.converse(map, host, port, MSG .. "QUIT\r\n")
    assert.equal("a@b", srv.last)
    assert.matches("^B%(127%.0%.0%.1:%d+, listening%)$", tostring(srv))
    srv:close()
    assert.equal("B(closed)", tostring(srv))
    H.cleanup(map)
  end)

  it("constructs with Class(...) and Class:new(...)", function()
    local map = H.map()
    local a = H.Recorder({"127.0.0.1", 0}, nil, {map = map})
    local b = H.Recorder:new("127.0.0.1:0", "127.0.0.1:2525", {map = map})
    assert.is_true(a:is_a(H.Recorder) and b:is_a(H.Recorder))
    assert.same({"127.0.0.1", 2525}, b._remoteaddr)
    assert.is_nil(a._remoteaddr)
  end)

  it("checks its options", function()
    local map = H.map()
    assert.has_error(function()
      H.Recorder({"127.0.0.1", 0}, nil, {map = map, enable_SMTPUTF8 = true,
                                         decode_data = true})
    end, "decode_data and enable_SMTPUTF8 cannot be set to true at the same "
         .. "time")
    assert.has_error(function()
      H.Recorder({"127.0.0.1", 0}, nil, {map = map, data_size_limit = -1})
    end)
    assert.has_error(function() H.Recorder("nohostport", nil, {map = map}) end)
    assert.has_error(function() H.Recorder({"127.0.0.1", 70000}) end)
    local srv = H.Recorder({"127.0.0.1", 0}, nil, {map = map})
    local _, port = srv:getsockname()
    local ok, err = pcall(H.Recorder, {"127.0.0.1", port}, nil, {map = map})
    assert.is_false(ok)
    assert.matches("cannot listen on 127.0.0.1:%d+: EADDRINUSE", err)
  end)

  -- A misspelt option used to be ignored: the server started without the
  -- limit (or the TLS) asked for.
  it("refuses option names it does not know, and says which", function()
    local map = H.map()
    -- Called from this file (not straight from pcall), so the error
    -- says where: at the user's line, not inside the library.
    local function err_of(f, ...)
      local args = table.pack(...)
      local ok, e = pcall(function()
        local r = f(table.unpack(args, 1, args.n))
        return r
      end)
      assert.is_false(ok, "no error")
      return e
    end
    local e = err_of(H.Recorder, "127.0.0.1:0", nil,
                     {map = map, max_recipient = 5})
    assert.matches('^spec/classes_spec.lua:%d+: unknown option '
                   .. '"max_recipient" %(did you mean "max_recipients"%?%)$', e)
    e = err_of(H.Recorder, "127.0.0.1:0", nil,
               {map = map, tls = {cert = "c.pem", key = "k.pem"}})
    -- tls is known: its files are checked before anything listens.
    assert.matches('^spec/classes_spec.lua:%d+: tls: cannot read '
                   .. 'certificate c.pem: No such file or directory$', e)
    e = err_of(H.Recorder, "127.0.0.1:0", nil, {map = map, [1] = true})
    assert.matches("unknown option 1", e, 1, true)
    -- Values are checked too, naming the option.
    e = err_of(H.Recorder, "127.0.0.1:0", nil, {map = map, timeout = "5"})
    assert.matches("^spec/classes_spec.lua:%d+: timeout must be a number of "
                   .. "seconds", e)
    e = err_of(H.Recorder, "127.0.0.1:0", nil, {map = map, decode_data = 1})
    assert.matches("decode_data must be true or false", e, 1, true)
    -- A subclass (or its channel class) declares the options it adds.
    local S = H.Recorder:extend()
    S.OPTIONS = {greeting_delay = true}
    local C = smtpd.SMTPChannel:extend()
    C.OPTIONS = {banner = true}
    S.channel_class = C
    assert.has_no.errors(function()
      S("127.0.0.1:0", nil, {map = map, greeting_delay = 1, banner = "x"})
    end)
    assert.matches('unknown option "banner"', err_of(H.Recorder,
      "127.0.0.1:0", nil, {map = map, banner = "x"}), 1, true)
    -- The relay's, Mailman's and sendmail's tables too.
    local up = "127.0.0.1:25"
    e = err_of(smtpd.PureProxy, "127.0.0.1:0", up,
               {map = map, relay = {timout = 5}})
    assert.matches('^spec/classes_spec.lua:%d+: unknown relay option '
                   .. '"timout" %(did you mean "timeout"%?%)$', e)
    e = err_of(smtpd.PureProxy, "127.0.0.1:0", up,
               {map = map, relay = {timeout = "soon"}})
    assert.matches("^spec/classes_spec.lua:%d+: timeout must be a number of "
                   .. "seconds", e)
    e = err_of(smtpd.MailmanProxy, "127.0.0.1:0", up,
               {map = map, mailman = {lmpt = "127.0.0.1:8024"}})
    assert.matches('unknown mailman option "lmpt" (did you mean "lmtp"?)', e,
                   1, true)
    e = err_of(smtpd.sendmail, up, "a@b", {"c@d"}, "x",
               {map = map, connect_timout = 1})
    assert.matches('^spec/classes_spec.lua:%d+: unknown sendmail option '
                   .. '"connect_timout" %(did you mean "connect_timeout"%?%)$',
                   e)
    -- Nothing was left listening by the failed constructors: only S.
    assert.equal(1, map:count())
    -- Nested tables are read by the core too, unknown keys refused there.
    e = err_of(H.Recorder, "127.0.0.1:0", nil, {map = map,
               proxy_protocol = {trusted = "::1", max_headr = 100}})
    assert.matches('unknown proxy_protocol option "max_headr" (did you mean '
                   .. '"max_header"?)', e, 1, true)
    e = err_of(H.Recorder, "127.0.0.1:0", nil, {map = map,
               tls = {cert = "c.pem", key = "k.pem", handshake_timeout = 0}})
    assert.matches("tls.handshake_timeout must be a positive number of "
                   .. "seconds", e, 1, true)
  end)

  -- One reader, in the core: the Lua side uses what it read, defaults
  -- and all, instead of working them out again.
  it("keeps what the core read of its options, defaults filled in",
     function()
    local srv = H.server(H.Recorder, {max_auth_failures = 5,
      proxy_protocol = {trusted = {"10.0.0.0/8", "::1"}}})
    local conf = srv._conf
    assert.equal(5, conf.max_auth_failures)
    assert.equal(1, conf.auth_failure_delay)
    assert.equal(33554432, conf.data_size_limit)
    assert.equal(srv.data_size_limit, conf.data_size_limit)
    assert.is_false(conf.enable_SMTPUTF8)
    assert.same({"10.0.0.0/8", "::1/128"}, conf.proxy_protocol.trusted)
    assert.equal(5, conf.proxy_protocol.timeout)
    assert.equal(536, conf.proxy_protocol.max_header)
    assert.is_nil(conf.tls)
    -- The relay's options likewise, read once into its conf.
    local relay = assert(H.core.relay_conf(srv._map, "127.0.0.1", 25, {
      starttls = "opportunistic", tls = {verify = false},
      auth = {user = "u", password = "secret", plaintext = true}}))
    local r = relay:options()
    assert.equal("opportunistic", r.starttls)
    assert.is_false(r.tls.verify)
    assert.equal(60, r.timeout)
    assert.equal(30, r.connect_timeout)
    assert.is_true(r.tempfail_aborts)
    assert.equal("u", r.auth.user)
    assert.equal("(set)", r.auth.password)   -- never the password itself
    assert.equal("127.0.0.1", r.host)
    assert.equal(25, r.port)
    -- A CA file that cannot be loaded: luv's nil, "ENAME: message", name.
    local none, err, name = H.core.relay_conf(srv._map, "127.0.0.1", 25,
      {starttls = "require", tls = {ca = "/nonexistent/ca.pem"}})
    assert.is_nil(none)
    assert.matches("^EINVAL: tls: cannot load CA file /nonexistent/ca.pem",
                   err)
    assert.equal("EINVAL", name)
  end)

  it("listens on IPv6 loopback", function()
    local map = H.map()
    local ok, srv = pcall(H.Recorder, "[::1]:0", nil, {map = map})
    if not ok then
      H.cleanup(map)
      return H.skip("no IPv6 loopback here: " .. tostring(srv))
    end
    local host, port = srv:getsockname()
    assert.equal("::1", host)
    local replies = H.converse(map, "::1", port, MSG .. "QUIT\r\n")
    assert.equal(R.ok, replies[5])
    assert.equal("::1", srv.messages[1].peer[1])
  end)

  it("passes smtpd's process_message arguments", function()
    local srv, map, host, port = H.server(H.Recorder)
    H.converse(map, host, port, "EHLO x\r\nMAIL FROM:<a@b> BODY=8BITMIME\r\n"
               .. "RCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\nl1\r\nl2\r\n.\r\n"
               .. "QUIT\r\n")
    local m = srv.messages[1]
    assert.equal("127.0.0.1", m.peer[1])
    assert.is_number(m.peer[2])
    assert.equal("a@b", m.mailfrom)
    assert.same({"c@d", "e@f"}, m.rcpttos)
    assert.equal("l1\nl2", m.data)
    assert.same({mail_options = {"BODY=8BITMIME"}, rcpt_options = {}},
                m.kwargs)
    H.cleanup(map)
  end)

  it("passes empty kwargs with decode_data", function()
    local srv, map, host, port = H.server(H.Recorder, {decode_data = true})
    H.converse(map, host, port, MSG .. "QUIT\r\n")
    assert.same({}, srv.messages[1].kwargs)
    H.cleanup(map)
  end)

  it("uses the returned reply, and 250 OK for nil or false", function()
    local srv, map, host, port = H.server(H.Recorder)
    for _, case in ipairs({{"550 No thanks", "550 No thanks"},
                           {false, R.ok}, {nil, R.ok}, {"250", "250"},
                           {"452 4.5.3 Too many", "452 4.5.3 Too many"},
                           {"250 " .. ("x"):rep(506), "250 " .. ("x"):rep(506)}
                          }) do
      srv.reply = case[1]
      local replies = H.converse(map, host, port, MSG .. "QUIT\r\n")
      assert.equal(case[2], replies[5])
    end
    H.cleanup(map)
  end)

  it("closes the session after a 421 from process_message", function()
    local srv, map, host, port = H.server(H.Recorder)
    srv.reply = "421 4.3.2 Going away"
    local replies = H.converse(map, host, port, MSG .. "NOOP\r\nQUIT\r\n")
    assert.same({R.helo, R.ok, R.ok, R.data, "421 4.3.2 Going away"}, replies)
    assert.equal(1, #srv.messages)
    H.cleanup(map)
  end)

  -- Not one final reply line of class 2, 4 or 5: an unfinished multi-line
  -- reply would hang the client, a 354 or 221 would tell it something
  -- untrue, and "" is no reply at all.
  it("answers 451 for a malformed reply and says why in server:log",
     function()
    local srv, map, host, port = H.server(H.Recorder)
    local logged = {}
    function srv:log(level, fmt, ...)
      logged[#logged + 1] = level .. " " .. fmt:format(...)
    end
    for _, bad in ipairs({"hello", "250 a\r\n250 b", "25", "199 x",
                          "250 \0", 42, {}, ("250 " .. ("x"):rep(507)),
                          "250-continued", "452-4.5.3 Too many", "250-",
                          "354 go ahead", "221 Bye", "", "250x", true}) do
      srv.reply = bad
      local replies = H.converse(map, host, port, MSG .. "NOOP\r\nQUIT\r\n")
      assert.same({R.helo, R.ok, R.ok, R.data, R.local_error, R.ok, R.bye},
                  replies)
      assert.matches("^error 127%.0%.0%.1:%d+ process_message returned a "
                     .. "malformed reply",
                     logged[#logged])
    end
    assert.matches('("250-continued")', logged[9], 1, true)
    H.cleanup(map)
  end)

  -- The core's own log lines used to go straight to stderr, out of reach
  -- of a subclass.
  it("sends the core's log lines through server:log", function()
    local S = H.Recorder:extend()
    local logged = {}
    function S:log(level, fmt, ...)
      logged[#logged + 1] = {level, fmt:format(...)}
    end
    function S:process_message(peer, mailfrom)
      if mailfrom == "boom@x" then error("kaboom") end
      if mailfrom == "wait@x" then smtpd.sleep(5) end
    end
    local _, map, host, port = H.server(S, {handler_timeout = 0.2})
    map:set_debug(true)
    local replies = H.converse(map, host, port, "HELO x\r\nMAIL FROM:<boom@x>"
      .. "\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\nMAIL FROM:<wait@x>\r\n"
      .. "RCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n")
    map:set_debug(false)
    assert.equal(R.local_error, replies[5])
    assert.equal(R.local_error, replies[9])
    local text = {}
    for _, l in ipairs(logged) do text[#text + 1] = l[1] .. ": " .. l[2] end
    text = table.concat(text, "\n")
    assert.matches("error: 127%.0%.0%.1:%d+ error in process_message: "
                   .. "[^\n]*kaboom\nstack "
                   .. "traceback:", text)
    assert.matches("error: 127%.0%.0%.1:%d+ a process_message still "
                   .. "waited after 0%.2 s; answering 451", text)
    assert.matches("debug: 127.0.0.1:%d+ Incoming connection %(to "
                   .. "127.0.0.1:%d+%)", text)
    assert.matches("debug: 127.0.0.1:%d+ < MAIL FROM:<boom@x>", text)
    assert.matches("debug: 127.0.0.1:%d+ > 250 OK", text)
    assert.matches("debug: 127.0.0.1:%d+ message: 1 bytes from <boom@x> "
                   .. "to 1 recipient%(s%)", text)
    H.cleanup(map)
  end)

  it("answers 451 when process_message raises, and the session goes on",
     function()
    local Boom = smtpd.SMTPServer:extend()
    local n = 0
    function Boom:process_message()
      n = n + 1
      if n == 1 then error("boom") end
    end
    local _, map, host, port = H.server(Boom)
    local replies = H.converse(map, host, port, MSG .. "MAIL FROM:<x@y>\r\n"
                               .. "RCPT TO:<z@w>\r\nDATA\r\nagain\r\n.\r\n"
                               .. "QUIT\r\n")
    assert.same({R.helo, R.ok, R.ok, R.data, R.local_error, R.ok, R.ok, R.data,
                 R.ok, R.bye}, replies)
    assert.equal(2, n)
    H.cleanup(map)
  end)

  it("answers 451 from the base class (not implemented)", function()
    local _, map, host, port = H.server(smtpd.SMTPServer)
    local replies = H.converse(map, host, port, MSG .. "QUIT\r\n")
    assert.equal(R.local_error, replies[5])
    H.cleanup(map)
  end)

  it("runs process_message in a coroutine", function()
    local S = smtpd.SMTPServer:extend()
    local yieldable, co
    function S:process_message()
      yieldable = coroutine.isyieldable()
      co = coroutine.running()
    end
    local _, map, host, port = H.server(S)
    H.converse(map, host, port, MSG .. "QUIT\r\n")
    assert.is_true(yieldable)
    assert.is_true(type(co) == "thread")
    H.cleanup(map)
  end)

  it("answers 451 when a hook yields outside smtpd's helpers", function()
    local S = smtpd.SMTPServer:extend()
    function S:process_message() coroutine.yield("nope") end
    local _, map, host, port = H.server(S)
    local replies = H.converse(map, host, port, MSG .. "QUIT\r\n")
    assert.equal(R.local_error, replies[5])
    H.cleanup(map)
  end)

  it("makes exactly one call into Lua per message by default", function()
    local srv, map, host, port = H.server(H.Recorder)
    -- First connection: the class is looked up once.
    H.converse(map, host, port, MSG .. "QUIT\r\n")
    local before = H.core.stats().lua_calls
    local one = "EHLO x\r\nNOOP\r\nHELP\r\nVRFY <a@b>\r\nFOO\r\nRSET\r\n"
    for i = 1, 5 do
      one = one .. "MAIL FROM:<a" .. i .. "@b>\r\nRCPT TO:<c@d>\r\n"
            .. "RCPT TO:<e@f>\r\nDATA\r\nline\r\n.\r\nNOOP\r\n"
    end
    H.converse(map, host, port, one .. "QUIT\r\n")
    for _ = 1, 3 do H.converse(map, host, port, MSG .. "QUIT\r\n") end
    assert.equal(8, #srv.messages - 1)
    assert.equal(8, H.core.stats().lua_calls - before)
    H.cleanup(map)
  end)
end)

describe("channels", function()
  -- Each read of a list field used to make a new proxy, so a hook could
  -- not hand self.rcpttos to smtpd.sendmail.
  it("keeps one live view per list, which the helpers take as a list",
     function()
    local map = H.map()
    local up = H.Recorder({"127.0.0.1", 0}, nil, {map = map})
    local upaddr = {up:getsockname()}
    local Chan = smtpd.SMTPChannel:extend()
    local same, refused, err
    function Chan:smtp_XRELAY()
      same = rawequal(self.rcpttos, self.rcpttos)
        and rawequal(self.mail_options, self.mail_options)
      refused, err = smtpd.sendmail(upaddr, self.mailfrom, self.rcpttos,
                                    "Subject: relayed\n\nbody",
                                    {map = map,
                                     mail_options = self.mail_options})
      -- Other helpers and the list functions take the view too.
      self.rcpt_options = self.mail_options
      local reply = smtpd.PureProxy.reply_for(refused or {}, self.rcpttos)
      self:push(("250 relayed to %s (%s, %d options)"):format(
        table.concat(self.rcpttos, ","), tostring(reply),
        #self.rcpt_options))
    end
    local Srv = H.Recorder:extend()
    Srv.channel_class = Chan
    local _, _, host, port = H.server(Srv, nil, map)
    local replies = H.converse(map, host, port, "EHLO x\r\nMAIL FROM:<a@b> "
      .. "BODY=8BITMIME\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nXRELAY\r\n"
      .. "QUIT\r\n")
    assert.same({}, refused, tostring(err))
    assert.is_true(same)
    assert.equal("250 relayed to c@d,e@f (nil, 1 options)",
                 replies[#R.ehlo + 4])
    assert.same({"c@d", "e@f"}, up.messages[1].rcpttos)
    -- The client adds SIZE= itself; BODY came from the list view.
    assert.same({"SIZE=22", "BODY=8BITMIME"},
                up.messages[1].kwargs.mail_options)
  end)

  it("lets a channel class override and extend commands", function()
    local Chan = smtpd.SMTPChannel:extend("Chan")
    function Chan:smtp_HELO(arg)
      if arg == "bad.example" then return self:push("550 go away") end
      return Chan.super.smtp_HELO(self, arg)
    end
    function Chan:smtp_XPING(arg)
      self:push("250 PONG " .. tostring(arg))
    end
    local Srv = H.Recorder:extend()
    Srv.channel_class = Chan
    local _, map, host, port = H.server(Srv)
    local replies = H.converse(map, host, port,
      "HELO bad.example\r\nHELO ok\r\nXPING\r\nxping 1 2\r\nXPONG\r\n"
      .. "NOOP\r\nQUIT\r\n")
    assert.same({"550 go away", R.helo, "250 PONG nil", "250 PONG 1 2",
                 R.unknown("XPONG"), R.ok, R.bye}, replies)
    H.cleanup(map)
  end)

  it("calls the channel class per connection with server, conn, addr, opts",
     function()
    local Chan = smtpd.SMTPChannel:extend()
    local seen = {}
    function Chan:initialize(server, conn, addr, opts)
      Chan.super.initialize(self, server, conn, addr, opts)
      seen[#seen + 1] = {server = server, addr = addr, opts = opts,
                         conn = conn}
    end
    local Srv = H.Recorder:extend()
    Srv.channel_class = Chan
    local srv, map, host, port = H.server(Srv, {data_size_limit = 1000})
    H.converse(map, host, port, "QUIT\r\n")
    H.converse(map, host, port, "QUIT\r\n")
    assert.equal(2, #seen)
    assert.equal(srv, seen[1].server)
    assert.equal("127.0.0.1", seen[1].addr[1])
    assert.equal(1000, seen[1].opts.data_size_limit)
    assert.matches("^smtpd.conn", tostring(seen[1].conn))
    H.cleanup(map)
  end)

  it("exposes the channel fields to hooks, readable and writable",
     function()
    local Chan = smtpd.SMTPChannel:extend()
    local snap = {}
    function Chan:smtp_XSHOW()
      snap = {
        smtp_server = self.smtp_server, smtp_state = self.smtp_state,
        seen_greeting = self.seen_greeting, mailfrom = self.mailfrom,
        rcpttos = {table.unpack({self.rcpttos[1], self.rcpttos[2]})},
        nrcpt = #self.rcpttos, fqdn = self.fqdn, peer = self.peer,
        addr = self.addr, extended_smtp = self.extended_smtp,
        data_size_limit = self.data_size_limit,
        command_size_limit = self.command_size_limit,
        mail_options = {self.mail_options[1]},
        received_data = self.received_data,
        received_lines = self.received_lines,
        num_bytes = self.num_bytes,
        COMMAND = self.COMMAND, DATA = self.DATA,
      }
      self:push("250 shown")
    end
    function Chan:smtp_XEDIT()
      -- Writes go to the C state the built-in commands use.
      self.mailfrom = "edited@x"
      table.insert(self.rcpttos, "added@x")
      self.rcpttos[1] = "replaced@x"
      self.fqdn = "renamed.example"
      self:push("250 edited")
    end
    local Srv = H.Recorder:extend()
    Srv.channel_class = Chan
    local srv, map, host, port = H.server(Srv)
    local replies = H.converse(map, host, port,
      "EHLO client.example\r\nMAIL FROM:<a@b> BODY=7BIT\r\nRCPT TO:<c@d>\r\n"
      .. "XSHOW\r\nXEDIT\r\nDATA\r\nhello\r\n.\r\nHELO again\r\nRSET\r\n"
      .. "EHLO z\r\nQUIT\r\n")
    assert.equal("250 shown", replies[#R.ehlo + 3])
    assert.equal("250 edited", replies[#R.ehlo + 4])
    assert.equal(srv, snap.smtp_server)
    assert.equal(0, snap.smtp_state)
    assert.equal(0, snap.COMMAND)
    assert.equal(1, snap.DATA)
    assert.equal("client.example", snap.seen_greeting)
    assert.equal("a@b", snap.mailfrom)
    assert.same({"c@d"}, snap.rcpttos)
    assert.equal(1, snap.nrcpt)
    assert.equal(R.fqdn, snap.fqdn)
    assert.equal("127.0.0.1", snap.peer[1])
    assert.same(snap.peer, snap.addr)
    assert.is_true(snap.extended_smtp)
    assert.equal(33554432, snap.data_size_limit)
    assert.equal(512, snap.command_size_limit)
    assert.same({"BODY=7BIT"}, snap.mail_options)
    assert.equal("", snap.received_data)
    assert.same({}, snap.received_lines)
    assert.equal(0, snap.num_bytes)     -- as smtpd: 0 between commands
    local m = srv.messages[1]
    assert.equal("edited@x", m.mailfrom)
    assert.same({"replaced@x", "added@x"}, m.rcpttos)
    assert.equal("503 Duplicate HELO/EHLO", replies[#R.ehlo + 7])
    assert.equal("503 Duplicate HELO/EHLO", replies[#R.ehlo + 9])
    H.cleanup(map)
  end)

  it("keeps received_data until RSET, as smtpd does", function()
    local Chan = smtpd.SMTPChannel:extend()
    local seen = {}
    function Chan:smtp_XDATA()
      seen[#seen + 1] = self.received_data
      self:push("250 ok")
    end
    local Srv = H.Recorder:extend()
    Srv.channel_class = Chan
    local _, map, host, port = H.server(Srv)
    H.converse(map, host, port, MSG .. "XDATA\r\nRSET\r\nXDATA\r\nQUIT\r\n")
    assert.same({"body", ""}, seen)
    H.cleanup(map)
  end)

  it("lets a hook set received_data, and clear it with nil", function()
    local Chan = smtpd.SMTPChannel:extend()
    local seen = {}
    function Chan:smtp_XSET(arg)
      if arg == "nil" then self.received_data = nil else self.received_data = arg end
      self:push("250 set")
    end
    function Chan:smtp_XDATA()
      seen[#seen + 1] = self.received_data
      self:push("250 ok")
    end
    local Srv = H.Recorder:extend()
    Srv.channel_class = Chan
    local _, map, host, port = H.server(Srv)
    H.converse(map, host, port, MSG .. "XDATA\r\nXSET a b\r\nXDATA\r\nXSET nil\r\n"
                                .. "XDATA\r\nQUIT\r\n")
    assert.same({"body", "a b", ""}, seen)
    H.cleanup(map)
  end)

  it("lets a hook change limits and state", function()
    local Chan = smtpd.SMTPChannel:extend()
    function Chan:smtp_XSMALL()
      self.data_size_limit = 3
      self.command_size_limit = 20
      self:push("250 small")
    end
    function Chan:smtp_XDATA()
      self.smtp_state = self.DATA
      self:push("354 go")
    end
    local Srv = H.Recorder:extend()
    Srv.channel_class = Chan
    local srv, map, host, port = H.server(Srv)
    local replies = H.converse(map, host, port,
      "XSMALL\r\nHELO x\r\nMAIL FROM:<a@bbbbbbbbbbbbb>\r\nMAIL FROM:<a@b>\r\n"
      .. "RCPT TO:<c@d>\r\nDATA\r\nabcd\r\n.\r\nMAIL FROM:<a@b>\r\n"
      .. "RCPT TO:<c@d>\r\nXDATA\r\nabc\r\n.\r\nQUIT\r\n")
    assert.same({"250 small", R.helo, R.too_long, R.ok, R.ok, R.data,
                 R.too_much, R.ok, R.ok, "354 go", R.ok, R.bye}, replies)
    assert.equal("abc", srv.messages[1].data)
    H.cleanup(map)
  end)

  it("raises a clear error when a hook pushes a line with CR/LF",
     function()
    local Chan = smtpd.SMTPChannel:extend()
    local err
    function Chan:smtp_XBAD()
      local ok, e = pcall(self.push, self, "250 a\r\n250 b")
      err = e
      self:push("250 fine")
    end
    function Chan:smtp_XRAISE() error("oops") end
    local Srv = H.Recorder:extend()
    Srv.channel_class = Chan
    local _, map, host, port = H.server(Srv)
    local replies = H.converse(map, host, port, "XBAD\r\nXRAISE\r\nNOOP\r\n"
                               .. "QUIT\r\n")
    assert.same({"250 fine", R.local_error, R.ok, R.bye}, replies)
    assert.matches("must not contain CR, LF or NUL", err)
    H.cleanup(map)
  end)

  it("notices methods added to a class while it serves", function()
    local Chan = smtpd.SMTPChannel:extend()
    local Srv = H.Recorder:extend()
    Srv.channel_class = Chan
    local _, map, host, port = H.server(Srv)
    local c = H.connect(map, host, port)
    c:lines(1)
    c:send("XLATE\r\n")
    assert.same({R.unknown("XLATE")}, c:lines(1))
    function Chan:smtp_XLATE() self:push("250 late") end
    function Chan:smtp_NOOP() self:push("250 my noop") end
    c:send("XLATE\r\nNOOP\r\n")
    assert.same({"250 late", "250 my noop"}, c:lines(2))
    c:close()
    H.cleanup(map)
  end)

  it("reads well in a REPL", function()
    local Chan = smtpd.SMTPChannel:extend("MyChan")
    local text
    function Chan:smtp_XSHOW()
      text = tostring(self)
      self:push("250 ok")
    end
    local Srv = H.Recorder:extend()
    Srv.channel_class = Chan
    local _, map, host, port = H.server(Srv)
    H.converse(map, host, port, "HELO me\r\nXSHOW\r\nQUIT\r\n")
    assert.matches('^MyChan%(peer=127%.0%.0%.1:%d+, state=COMMAND, '
                   .. 'greeting="me", mailfrom=nil, rcpts=0%)$', text)
    assert.equal("class MyChan", tostring(Chan))
    H.cleanup(map)
  end)
end)

-- The authentication option of a server: SPF at MAIL FROM (check_sender
-- sees it), DKIM, DMARC and one Authentication-Results field at the end
-- of the data, forged ones with our authserv-id removed, dmarc_reject;
-- and smtpd.authres's writer on hostile values.
local H = require "helper"
local smtpd = H.smtpd
local peers = require "peers"
local dns = require "smtpd.dns"
local dkim = require "smtpd.dkim"
local authres = require "smtpd.authres"

local z                   -- the zone server (peers.zone_server)
local server, why_not
local key_path

describe("smtpd.authres", function()
  it("writes results no client value can break out of", function()
    local f = authres.format("mx.example.org", {
      {method = "spf", result = "pass", props = {{"smtp.mailfrom", "alice@example.com"}}},
      {method = "dkim", result = "fail", reason = "bad\r\nX-Evil: yes; dkim=pass",
       props = {{"header.d", "a;b=c"}, {"header.s", "s\0el"}}},
    })
    assert.equal("Authentication-Results: mx.example.org;\n\tspf=pass "
      .. "smtp.mailfrom=alice@example.com;\n\tdkim=fail reason=\"badX-Evil: "
      .. "yes; dkim=pass\" header.d=\"a;b=c\" header.s=\"sel\"", f)
    assert.equal("Authentication-Results: h.example; none", authres.format("h.example", {}))
    assert.has_error(function() authres.format("h", {{method = "x y", result = "pass"}}) end)
  end)

  it("strips the fields that claim our id, whole, and keeps the others", function()
    local data = "Authentication-Results: mx.example.org; spf=pass\n"
      .. "Authentication-Results: other.example; dkim=pass\n"
      .. "Authentication-Results: (comment) MX.Example.Org 1;\n\tdkim=pass\n"
      .. "Authentication-Results: mx.example.org.evil.test; dmarc=pass\n"
      .. "Authentication-Results: example.net(.mx.example.org; x=y\n"
      .. "Subject: hi\n\nAuthentication-Results: mx.example.org; in the body\n"
    local out, n = authres.strip(data, "mx.example.org")
    assert.equal(2, n)
    assert.equal("Authentication-Results: other.example; dkim=pass\n"
      .. "Authentication-Results: mx.example.org.evil.test; dmarc=pass\n"
      .. "Authentication-Results: example.net(.mx.example.org; x=y\n"
      .. "Subject: hi\n\nAuthentication-Results: mx.example.org; in the body\n", out)
  end)
end)

describe("the authentication option", function()
  setup(function()
    key_path = os.tmpname()
    assert(os.execute(("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
                       .. "-out %s 2>/dev/null"):format(key_path)))
    local zone = {
      ["example.com"] = {{TXT = "v=spf1 ip4:127.0.0.1 -all"}},
      ["_dmarc.example.com"] = {{TXT = "v=DMARC1; p=reject"}},
      ["k._domainkey.example.com"] = {{TXT = dkim.key_record(key_path)}},
      ["strict.test"] = {{TXT = "v=spf1 -all"}},
      ["_dmarc.strict.test"] = {{TXT = "v=DMARC1; p=reject"}},
      ["_dmarc.slow.test"] = {"TIMEOUT"},
    }
    z = peers.zone_server(zone)
    server, why_not = z.peer, z.why
  end)
  teardown(function()
    z.stop()
    os.remove(key_path)
  end)

  it("authenticates each message and tells the handler", function()
    if not server then H.skip(why_not) return end
    local Seen = H.Recorder:extend("SeenAuth")
    local at_mail = {}
    function Seen:check_sender(channel, address)
      at_mail[#at_mail + 1] = channel.spf and channel.spf.result
    end
    local srv, map, host, port = H.server(Seen, {authentication = {spf = true,
      dkim = true, dmarc = true, arc = true, header = true, authserv_id = "mx.test",
      dmarc_reject = true}})
    assert(dns.configure{servers = {"127.0.0.1:" .. server.port}, timeout = 0.5,
                         tries = 1, map = map})
    local body = "From: Alice <alice@example.com>\nTo: b@x.test\nSubject: s\n\nhello\n"
    local sig = dkim.sign(body, {domain = "example.com", selector = "k", key = key_path})
    local msg = "Authentication-Results: mx.test; dkim=pass (forged)\n" .. sig .. "\n" .. body
    local c = H.connect(map, host, port)
    c:send("EHLO client.test\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<b@x.test>\r\n"
           .. "DATA\r\n" .. msg:gsub("\n", "\r\n") .. ".\r\n")
    local last
    for _ = 1, 6 do last = c:reply(10) end
    assert.equal("250 OK", last[1])
    local m = srv.messages[1]
    local a = m.kwargs.authentication
    assert.equal("pass", a.spf)
    assert.equal("pass", a.dkim[1].result, a.dkim[1].reason)
    assert.equal("pass", a.dmarc)
    assert.equal("none", a.arc)
    assert.is_true(a.dkim_streamed)          -- hashed while the data came
    assert.is_true(a.dkim[1].body_streamed)  -- and that hash was right
    assert.is_nil(m.kwargs._dkim_bodies)
    assert.same({"pass"}, at_mail)
    -- ours on top, the forged one gone
    assert.matches("^Authentication%-Results: mx%.test;\n\tspf=pass "
                   .. "smtp%.mailfrom=alice@example%.com;\n\tdkim=pass header%.d="
                   .. "example%.com header%.s=k header%.a=rsa%-sha256;\n\tarc=none;\n\tdmarc=pass "
                   .. "header%.from=example%.com policy%.dmarc=reject\n", m.data)
    assert.is_nil(m.data:find("(forged)", 1, true))
    -- DMARC failing under p=reject: 550 (SPF fails, no signature)
    c:send("MAIL FROM:<bob@strict.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n"
           .. "From: bob@strict.test\r\nSubject: x\r\n\r\nhi\r\n.\r\n")
    for _ = 1, 4 do last = c:reply(10) end
    assert.matches("^550 5%.7%.1 DMARC: strict%.test", last[1])
    assert.equal(1, #srv.messages)
    -- a From domain that is not one: a permerror and a 250, not a 451 forever
    c:send("MAIL FROM:<x@slow.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n"
           .. "From: root@localhost\r\nSubject: x\r\n\r\nhi\r\n.\r\n")
    for _ = 1, 4 do last = c:reply(10) end
    assert.equal("250 OK", last[1])
    assert.equal("permerror", srv.messages[2].kwargs.authentication.dmarc)
    table.remove(srv.messages, 2)
    -- a DMARC lookup that times out is a temperror: never a 5xx
    c:send("MAIL FROM:<x@slow.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n"
           .. "From: x@slow.test\r\nSubject: x\r\n\r\nhi\r\n.\r\n")
    for _ = 1, 4 do last = c:reply(10) end
    assert.equal("250 OK", last[1])
    assert.equal("temperror", srv.messages[2].kwargs.authentication.dmarc)
    table.remove(srv.messages, 2)
    -- the same signed message in small pieces, and by BDAT: the body
    -- hash made across reads and chunks still passes
    local wire = msg:gsub("\n", "\r\n")
    c:send("MAIL FROM:<alice@example.com>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n")
    for _ = 1, 3 do c:reply(10) end
    for i = 1, #wire, 7 do
      c:send(wire:sub(i, i + 6))
      map:loop(0.001, 1)
    end
    c:send(".\r\n")
    assert.equal("250 OK", c:reply(10)[1])
    a = srv.messages[2].kwargs.authentication
    assert.equal("pass", a.dkim[1].result, a.dkim[1].reason)
    assert.is_true(a.dkim[1].body_streamed)
    local half = #wire // 2
    c:send("MAIL FROM:<alice@example.com>\r\nRCPT TO:<b@x.test>\r\n"
           .. ("BDAT %d\r\n"):format(half) .. wire:sub(1, half)
           .. ("BDAT %d LAST\r\n"):format(#wire - half) .. wire:sub(half + 1))
    for _ = 1, 4 do last = c:reply(10) end
    assert.equal("250 OK", last[1])
    a = srv.messages[3].kwargs.authentication
    assert.equal("pass", a.dkim[1].result, a.dkim[1].reason)
    assert.is_true(a.dkim[1].body_streamed)
    c:close()
  end)

  it("checks its options", function()
    assert.has_error(function()
      H.server(H.Recorder, {authentication = {spff = true}})
    end)
    assert.has_error(function()
      H.server(H.Recorder, {authentication = {timeout = -1}})
    end)
  end)
end)

describe("the authentication option on PureProxy", function()
  it("relays in the message mode, the Authentication-Results field on top", function()
    local up, map, uhost, uport = H.server(H.Recorder)
    local proxy = smtpd.PureProxy({"127.0.0.1", 0}, {uhost, uport},
      {map = map, authentication = {header = true, authserv_id = "relay.test"}})
    assert.equal("message", proxy.relay_mode)
    local _, pport = proxy:getsockname()
    local c = H.connect(map, "127.0.0.1", pport)
    c:send("HELO a\r\nMAIL FROM:<>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n"
           .. "Authentication-Results: relay.test; spf=pass (forged)\r\nSubject: s\r\n\r\nhi\r\n.\r\n")
    local last
    for _ = 1, 6 do last = c:reply(10) end
    assert.equal("250 OK", last[1])
    c:close()
    H.run_until(map, function() return up.messages and #up.messages == 1 end, 5)
    local got = up.messages[1].data
    assert.matches("^Authentication%-Results: relay%.test; none\n", got)
    assert.is_nil(got:find("(forged)", 1, true))
    assert.has_error(function()
      smtpd.PureProxy({"127.0.0.1", 0}, {uhost, uport},
                      {map = map, authentication = true, relay = {at = "rcpt"}})
    end)
  end)
end)

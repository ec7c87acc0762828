-- smtpd.dns against a real DNS server on loopback (spec/peers/
-- dns_server.py, dnslib): every record type, the errors and whether they
-- are temporary, the helpers, the cache, hooks that park on a query and
-- are cancelled when given up; and the answer parser on hostile bytes.
local H = require "helper"
local smtpd = H.smtpd
local core = H.core
local dns = require "smtpd.dns"

local peers = require "peers"
local server = {}
local why_not

-- How many times the server was asked name/qtype.
local function asked(name, qtype)
  local n = 0
  for line in (H.readfile(server.out) or ""):gmatch("[^\n]+") do
    local qn, qt = line:match("^q (%S+) (%S+)")
    if qn == name .. "." and qt == qtype then n = n + 1 end
  end
  return n
end

local function configure(map, extra)
  local opts = {servers = {"127.0.0.1:" .. server.port}, timeout = 1,
                tries = 1, map = map}
  for k, v in pairs(extra or {}) do opts[k] = v end
  assert(dns.configure(opts))
end

describe("smtpd.dns", function()
  setup(function()
    local peer
    peer, why_not = peers.dns()
    server = peer or {}
  end)
  teardown(peers.stop)

  local function need()
    if not server.port then
      H.skip(why_not)
      return false
    end
    return true
  end

  it("answers every record type, each record with its ttl", function()
    if not need() then return end
    local map = H.map()
    configure(map)
    local o = {map = map}
    local a = assert(dns.query("www.test", "A", o))
    assert.same({"192.0.2.10", "192.0.2.11"}, {a[1].address, a[2].address})
    assert.equal(300, a[1].ttl)
    assert.equal("A", a[1].type)
    assert.equal("www.test", a[1].owner)
    assert.is_false(a.ad)
    assert.equal("2001:db8::10", assert(dns.query("www.test", "AAAA", o))[1].address)
    local mx = assert(dns.query("test", "MX", o))
    assert.equal(2, #mx)
    local txt = assert(dns.query("test", "TXT", o))[1]
    assert.same({"v=spf1 ip4:192.0.2.0/24", " -all"}, txt.strings)
    assert.equal("v=spf1 ip4:192.0.2.0/24 -all", txt.text)
    local alias = assert(dns.query("alias.test", "A", o))
    assert.equal("www.test", alias.cname)
    assert.equal("192.0.2.10", alias[1].address)
    assert.equal("alias2.test", assert(dns.query("alias.test", "CNAME", o))[1].name)
    assert.equal("ns.test", assert(dns.query("test", "NS", o))[1].name)
    local srv = assert(dns.query("_smtp._tcp.test", "SRV", o))[1]
    assert.same({10, 5, 25, "mx1.test"}, {srv.priority, srv.weight, srv.port, srv.target})
    local tlsa = assert(dns.query("_25._tcp.mx1.test", "TLSA", o))[1]
    assert.same({3, 1, 1}, {tlsa.usage, tlsa.selector, tlsa.mtype})
    assert.equal(("%02x"):rep(32):format(table.unpack((function()
      local t = {} for i = 0, 31 do t[#t + 1] = i end return t end)())), tlsa.data)
    assert.equal("mail.test",
                 assert(dns.query("1.0.0.127.in-addr.arpa", "PTR", o))[1].name)
    -- a big TXT comes over TCP after a truncated UDP answer
    local big = assert(dns.query("big.test", "TXT", o))[1]
    assert.equal(12, #big.strings)
    assert.equal(3000, #big.text)
    assert.is_true(asked("big.test", "TXT") >= 2)
    -- the AD bit is reported
    assert.is_true(assert(dns.query("ad.test", "A", o)).ad)
    -- a server that answers FORMERR to EDNS is asked again without it
    assert.equal("192.0.2.41", assert(dns.query("noedns.test", "A", o))[1].address)
  end)

  it("says what failed and whether it is temporary", function()
    if not need() then return end
    local map = H.map()
    configure(map)
    local o = {map = map}
    local function fails(name, qtype, err, temporary, opts)
      local r, e, info = dns.query(name, qtype, opts or o)
      assert.is_nil(r)
      assert.equal(err, e, name)
      assert.equal(temporary, info.temporary, name)
      return info
    end
    local info = fails("nope.test", "A", "nxdomain", false)
    assert.equal(3, info.rcode)
    assert.equal(30, info.ttl)           -- the SOA's minimum (RFC 2308)
    fails("www.test", "MX", "nodata", false)
    fails("servfail.test", "A", "servfail", true)
    fails("refused.test", "A", "refused", true)
    local t0 = H.now()
    fails("slow.test", "A", "timeout", true, {map = map, timeout = 0.3})
    assert.is_true(H.now() - t0 < 0.9)
    -- answers c-ares cannot match to the question are dropped: a timeout
    fails("garbage.test", "A", "timeout", true, {map = map, timeout = 0.5})
    fails("loop.test", "A", "timeout", true, {map = map, timeout = 0.5})
    fails("bad..name", "A", "badname", false)
    fails(("a"):rep(64) .. ".test", "A", "badname", false)
    -- nobody at that port: temporary
    local dead = H.map()
    assert(dns.configure{servers = {"127.0.0.1:" .. H.free_port()},
                         timeout = 0.3, tries = 1, map = dead})
    local _, e, i = dns.query("www.test", "A", {map = dead, timeout = 2})
    assert.is_true(e == "unreachable" or e == "timeout", e)
    assert.is_true(i.temporary)
  end)

  it("caches answers and NXDOMAIN for their TTL, bounded", function()
    if not need() then return end
    local map = H.map()
    configure(map)
    local o = {map = map}
    local n0 = asked("mx1.test", "A")
    assert(dns.query("mx1.test", "A", o))
    local again = assert(dns.query("MX1.test.", "A", o))
    assert.equal("192.0.2.21", again[1].address)
    assert.equal(n0 + 1, asked("mx1.test", "A"))
    again[1].address = "changed"          -- a copy: the cache is not touched
    assert.equal("192.0.2.21", assert(dns.query("mx1.test", "A", o))[1].address)
    local m0 = asked("gone.test", "A")
    assert.equal("nxdomain", select(2, dns.query("gone.test", "A", o)))
    assert.equal("nxdomain", select(2, dns.query("gone.test", "A", o)))
    assert.equal(m0 + 1, asked("gone.test", "A"))
    -- temporary failures are not cached
    local s0 = asked("servfail.test", "A")
    dns.query("servfail.test", "A", o)
    dns.query("servfail.test", "A", o)
    assert.equal(s0 + 2, asked("servfail.test", "A"))
    -- expiry: short.test has a TTL of 1 s
    local t0 = asked("short.test", "A")
    assert(dns.query("short.test", "A", o))
    assert(dns.query("short.test", "A", o))
    assert.equal(t0 + 1, asked("short.test", "A"))
    local w = H.now()
    while H.now() - w < 1.2 do map:loop(0.05, 1) end
    assert(dns.query("short.test", "A", o))
    assert.equal(t0 + 2, asked("short.test", "A"))
    -- the bound: with room for 2 entries, the oldest goes first
    assert(dns.configure{servers = {"127.0.0.1:" .. server.port}, cache = 2,
                         map = map})
    for _, n in ipairs({"mx1.test", "mx2.test", "www.test"}) do
      assert(dns.query(n, "A", o))
    end
    assert.equal(2, dns.stats(map).entries)
    local k0 = asked("mx1.test", "A")
    assert(dns.query("mx1.test", "A", o))
    assert.equal(k0 + 1, asked("mx1.test", "A"))
    assert(dns.configure{servers = {"127.0.0.1:" .. server.port},
                         cache = 10000, map = map})
  end)

  it("helpers: resolve, reverse, fcrdns, listed, mx", function()
    if not need() then return end
    local map = H.map()
    configure(map)
    local o = {map = map}
    assert.same({"192.0.2.10", "192.0.2.11", "2001:db8::10"}, dns.resolve("www.test", o))
    assert.same({"127.0.0.1"}, dns.resolve("127.0.0.1", o))
    assert.same({"mail.test"}, dns.reverse("127.0.0.1", o))
    assert.equal("mail.test", dns.fcrdns("127.0.0.1", o))
    assert.same({nil, "mismatch", {temporary = false}}, {dns.fcrdns("127.0.0.2", o)})
    local codes = dns.listed("127.0.0.2", "bl.test", o)
    assert.same({"127.0.0.2", "127.0.0.4"}, {codes[1], codes[2]})
    assert.equal("listed for testing", codes.txt)
    assert.is_false(dns.listed("127.0.0.3", "bl.test", o))
    assert.equal("127.0.0.2", dns.listed("spammer.test", "bl.test", o)[1])
    local mx = assert(dns.mx("test", o))
    assert.same({"mx1.test", "mx2.test"}, {mx[1].exchange, mx[2].exchange})
    local imp = assert(dns.mx("implicit.test", o))
    assert.same({0, "implicit.test", true}, {imp[1].preference, imp[1].exchange, imp[1].implicit})
    assert.same({nil, "nullmx"}, {(dns.mx("nullmx.test", o)), (select(2, dns.mx("nullmx.test", o)))})
    assert.equal("nxdomain", select(2, dns.mx("nowhere.test", o)))
  end)

  it("parks a hook on a query while other sessions are served, and "
     .. "cancels it when the hook is given up", function()
    if not need() then return end
    local S = smtpd.SMTPServer:extend("Asker")
    function S:process_message(_, mailfrom)
      local domain = mailfrom:match("@(.+)$")
      local mx, err, info = dns.mx(domain, {timeout = 5})
      if not mx then
        return info.temporary and "451 4.4.3 DNS: " .. err or "550 5.1.2 " .. err
      end
      return "250 mx " .. mx[1].exchange
    end
    local srv, map, host, port = H.server(S, {handler_timeout = 0.5})
    configure(map, {timeout = 5})
    local c1 = H.connect(map, host, port)
    c1:send("HELO a\r\nMAIL FROM:<a@test>\r\nRCPT TO:<b@x>\r\nDATA\r\nhi\r\n.\r\n")
    local c2 = H.connect(map, host, port)
    c2:send("HELO b\r\nMAIL FROM:<a@slow.test>\r\nRCPT TO:<b@x>\r\nDATA\r\nhi\r\n.\r\n")
    local c3 = H.connect(map, host, port)
    c3:send("HELO c\r\nMAIL FROM:<a@nowhere.test>\r\nRCPT TO:<b@x>\r\nDATA\r\nhi\r\n.\r\n")
    local function last(c)
      local r
      for _ = 1, 6 do r = c:reply(5) end
      return r[#r]
    end
    assert.equal("250 mx mx1.test", last(c1))
    assert.equal("550 5.1.2 nxdomain", last(c3))
    local t0 = H.now()
    assert.matches("^451 ", last(c2))   -- handler_timeout, not the 5 s
    assert.is_true(H.now() - t0 < 3)
    -- the abandoned query and its timer are gone: the server, three
    -- sessions, the three clients and the resolver are what is left
    local ok = pcall(H.run_until, map, function() return map:count() == 8 end, 2)
    assert(ok, "open handles: " .. map:count())
    assert(srv)
    c1:close(); c2:close(); c3:close()
  end)

  it("is what smtpd.sendmail and the relays resolve names with", function()
    if not need() then return end
    local srv, map, _, port = H.server(H.Recorder)
    configure(map)
    local n0 = asked("mail.test", "A")
    local refused, err = smtpd.sendmail({"mail.test", port}, "a@x", {"b@y"},
                                        "Subject: hi\r\n\r\nhello\r\n",
                                        {map = map, timeout = 5})
    assert.same({}, refused, err)
    assert.equal(1, #srv.messages)
    assert.equal(n0 + 1, asked("mail.test", "A"))
    local _, e, info = smtpd.sendmail({"nowhere.test", port}, "a@x", {"b@y"},
                                      "x\r\n", {map = map, timeout = 5})
    assert.equal("resolve nowhere.test: nxdomain", e)
    assert.equal("resolve", info.stage)
    -- a PureProxy relaying to a name, at RCPT time
    local p = smtpd.PureProxy({"127.0.0.1", 0}, {"mail.test", port}, {map = map})
    local _, pport = p:getsockname()
    local c = H.connect(map, "127.0.0.1", pport)
    c:send("HELO a\r\nMAIL FROM:<c@x>\r\nRCPT TO:<d@y>\r\nDATA\r\nhi\r\n.\r\n")
    local last
    for _ = 1, 6 do last = c:reply(5) end
    assert.matches("^250 ", last[#last])
    assert.equal(2, #srv.messages)
    assert.same({"d@y"}, srv.messages[2].rcpttos)
    c:close()
  end)

  it("raises on misuse", function()
    assert.has_error(function() dns.query(1, "A") end)
    assert.has_error(function() dns.query("x", "BOGUS") end)
    assert.has_error(function() dns.query("x", "A", {timeout = -1}) end)
    assert.has_error(function() dns.configure{servers = {"a b"}} end)
    assert.has_error(function() dns.configure{tries = 0} end)
    assert.has_error(function() dns.reverse("not-an-ip") end)
    assert.has_error(function() dns.listed("1.2.3.4") end)
    local map = H.map()
    assert.is_nil((dns.configure{servers = "not an address", map = map}))
  end)
end)

-- The parser on bytes built by hand (no server): what a hostile answer
-- can hold is a clean "formerr".
describe("the DNS answer parser", function()
  local A, TXT = 1, 16
  local function header(id, flags, qd, an, ns, ar)
    return string.pack(">I2I2I2I2I2I2", id, flags, qd, an, ns, ar)
  end
  local q = "\3www\4test\0" .. string.pack(">I2I2", A, 1)
  local function rr(name, t, ttl, rdata)
    return name .. string.pack(">I2I2I4s2", t, 1, ttl, rdata)
  end

  it("reads a well-formed answer with a compressed name", function()
    local msg = header(1, 0x8180, 1, 1, 0, 0) .. q
                .. rr("\192\12", A, 60, "\192\0\2\1")
    local r = assert(core.dns_answer(msg, A))
    assert.equal("192.0.2.1", r[1].address)
    assert.equal("www.test", r[1].owner)
    assert.equal(60, r[1].ttl)
  end)

  it("turns every malformation into formerr", function()
    local bad = {
      "",                                                  -- empty
      header(1, 0x8180, 1, 0, 0, 0),                       -- no question
      header(1, 0x8180, 1, 1, 0, 0) .. q,                  -- missing record
      header(1, 0x8180, 1, 1, 0, 0) .. q .. rr("\192\12", A, 60, "\1\2\3"), -- short A
      header(1, 0x8180, 1, 1, 0, 0) .. q .. "\192\12" .. string.pack(">I2I2I4I2", A, 1, 1, 40) .. "\1\2\3\4", -- rdlen past the end
      header(1, 0x8180, 1, 1, 0, 0) .. q .. rr("\192\40", A, 60, "\1\2\3\4"),   -- forward pointer
      header(1, 0x8180, 1, 1, 0, 0) .. q .. rr("\192\26", A, 60, "\1\2\3\4"),   -- self pointer
      header(1, 0x8180, 1, 1, 0, 0) .. q .. rr("\64abc\0", A, 60, "\1\2\3\4"), -- label type 01
      header(1, 0x8180, 1, 1, 0, 0) .. ("\63" .. ("a"):rep(63)):rep(5) .. "\0"
        .. string.pack(">I2I2", A, 1),                      -- name > 255
      header(1, 0x8180, 1, 1, 0, 0) .. "\3www\4test\0" .. string.pack(">I2I2", TXT, 1)
        .. rr("\192\12", TXT, 60, "\5ab"),                  -- TXT string overruns
      header(1, 0x0180, 1, 0, 0, 0) .. q,                   -- not a response
      header(1, 0x8180, 2, 0, 0, 0) .. q .. q,              -- two questions
    }
    for i, msg in ipairs(bad) do
      local qt = msg:find("\0\16\0\1", 1, true) and TXT or A
      local r, err, info = core.dns_answer(msg, qt)
      assert.is_nil(r, "case " .. i)
      assert.equal("formerr", err, "case " .. i)
      assert.is_true(info.temporary)
    end
  end)

  it("builds queries and refuses names that are not", function()
    local qb = assert(core.dns_build("www.test.", A, 0, 7))
    assert.equal(header(7, 0x0100, 1, 0, 0, 0) .. q, qb)
    local e = assert(core.dns_build("www.test", A, 1 | 2))
    assert.equal(12 + #q + 11, #e)                         -- OPT record
    for _, n in ipairs({"", ".", "a..b", ("x"):rep(64), "8bit\200.test",
                        ("abcdefghi."):rep(26), "tab\t.test"}) do
      assert.is_nil(core.dns_build(n, A), n)
    end
    assert(core.dns_build("a b%20c.test", A))  -- a label may hold a space
    assert.equal("4.3.2.1.in-addr.arpa", core.dns_reverse_name("1.2.3.4"))
    assert.equal("4.3.2.1.zen.test", core.dns_reverse_name("1.2.3.4", "zen.test"))
    assert.equal("1." .. ("0."):rep(31) .. "ip6.arpa",
                 core.dns_reverse_name("::1"))
    assert.is_nil(core.dns_reverse_name("x"))
  end)
end)

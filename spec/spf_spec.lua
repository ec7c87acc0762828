-- smtpd.spf: the record and macro parser (csrc/auth/spf.c) on the RFC's
-- own examples, our cases from RFC 7208 against a DNS server on loopback
-- (spec/peers/zone_server.py), and the openspf RFC 7208 test suite when
-- SMTPD_SPF_SUITE names its rfc7208-tests.yml.
local H = require "helper"
local core = H.core
local peers = require "peers"
local spf = require "smtpd.spf"
local dns = require "smtpd.dns"
local cjson = require "cjson"

local z                   -- the zone server (peers.zone_server)
local server, why_not

local function use_zone(map, zonedata) z.use(map, zonedata) end
local function new_map() return z.map() end

-- Runs one test of the suite's shape; returns nil or why it failed.
local function run_case(map, name, t)
  local result, facts = spf.check{ip = t.host, helo = t.helo,
    mailfrom = t.mailfrom, map = map, timeout = 5, query_timeout = 0.5,
    receiver = "receiver.example.net"}
  local want = type(t.result) == "table" and t.result or {t.result}
  local ok = false
  for _, w in ipairs(want) do if w == result then ok = true end end
  if not ok then
    return ("%s: %s, not %s (%s)"):format(name, result, table.concat(want, " or "),
                                         tostring(facts.problem or facts.mechanism))
  end
  -- "DEFAULT": the checker's own (none: no exp, or an exp that failed)
  local explanation = t.explanation ~= "DEFAULT" and t.explanation or nil
  if t.explanation and result == "fail" and facts.explanation ~= explanation then
    return ("%s: explanation %q, not %q"):format(name, tostring(facts.explanation),
                                               tostring(explanation))
  end
  return nil
end

describe("the SPF parser", function()
  it("expands the macros of RFC 7208 section 7.4's examples", function()
    local ctx = {s = "strong-bad@email.example.com", l = "strong-bad",
                 o = "email.example.com", d = "email.example.com",
                 i = "192.0.2.3", v = "in-addr", h = "mx.example.org",
                 c = "192.0.2.3", r = "receiver.example", t = "1700000000",
                 p = "mx.example.org"}
    local cases = {
      {"%{s}", "strong-bad@email.example.com"},
      {"%{o}", "email.example.com"},
      {"%{d}", "email.example.com"},
      {"%{d4}", "email.example.com"},
      {"%{d3}", "email.example.com"},
      {"%{d2}", "example.com"},
      {"%{d1}", "com"},
      {"%{dr}", "com.example.email"},
      {"%{d2r}", "example.email"},
      {"%{l}", "strong-bad"},
      {"%{l-}", "strong.bad"},
      {"%{lr}", "strong-bad"},
      {"%{lr-}", "bad.strong"},
      {"%{l1r-}", "strong"},
      {"%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"},
      {"%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"},
      {"%{lr-}.lp.%{ir}.%{v}._spf.%{d2}",
       "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"},
      {"%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}",
       "3.2.0.192.in-addr.strong.lp._spf.example.com"},
      {"%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"},
      {"%%%_%-", "% %20"},
      {"%{S}", "strong-bad%40email.example.com"},
    }
    for _, c in ipairs(cases) do
      assert.equal(c[2], core.spf_expand(c[1], ctx, false, false), c[1])
    end
    ctx.i = "2.0.0.1.0.d.b.8.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.c.b.0.1"
    ctx.v = "ip6"
    assert.equal("1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
                 .. ".ip6._spf.example.com",
                 core.spf_expand("%{ir}.%{v}._spf.%{d2}", ctx, false, false))
    -- c, r and t only in exp text; bad macros are errors
    assert.is_nil(core.spf_expand("%{c}", ctx, false, true))
    assert.equal("192.0.2.3 receiver.example", core.spf_expand("%{c} %{r}", ctx, true, false))
    for _, bad in ipairs({"%{x}", "%", "%{d", "%{d0}", "%z"}) do
      assert.is_nil(core.spf_expand(bad, ctx, false, false), bad)
    end
    -- a domain-spec past 253 bytes loses labels from the left
    local long = ("a"):rep(60) .. "." .. ("b"):rep(60) .. "." .. ("c"):rep(60)
                 .. "." .. ("d"):rep(60) .. ".%{d}"
    local out = core.spf_expand(long, ctx, false, true)
    assert.is_true(#out <= 253)
    assert.equal(("b"):rep(60) .. "." .. ("c"):rep(60) .. "." .. ("d"):rep(60)
                 .. ".email.example.com", out)
  end)

  it("reads every term and refuses a record with any syntax error", function()
    local rec = assert(core.spf_parse("v=spf1 +a mx/24 -ip4:192.0.2.0/24 "
      .. "~ip6:2001:DB8::/32 ?include:_spf.example.com a:%{d}//64 "
      .. "exists:%{ir}.bl.example ptr redirect=_spf.example.org "
      .. "exp=why.%{d} moo.cow-2=x  "))
    local kinds = {}
    for _, t in ipairs(rec) do kinds[#kinds + 1] = t.q .. t.kind end
    assert.same({"+a", "+mx", "-ip4", "~ip6", "?include", "+a", "+exists",
                 "+ptr", "+redirect", "+exp", "+modifier"}, kinds)
    assert.equal(24, rec[2].cidr4)
    assert.equal("192.0.2.0", rec[3].addr)
    assert.equal("2001:db8::", rec[4].addr)
    assert.equal(32, rec[4].cidr6)
    assert.equal(64, rec[6].cidr6)
    assert.equal("%{d}", rec[6].spec)
    for _, bad in ipairs({
      "v=spf1 foo", "v=spf1 a:", "v=spf1 ip4:192.0.2.0/33", "v=spf1 ip4:1.2.3",
      "v=spf1 ip6:::1/129", "v=spf1 a/024", "v=spf1 all:x", "v=spf1 -exp=x.com",
      "v=spf1 redirect=a.com redirect=b.com", "v=spf1 include:foo",
      "v=spf1 a:foo.123", "v=spf1 exists:%{c}.example.com", "v=spf1 \ta",
      "v=spf1 mx:example.com/", "v=spf1 include", "v=spf1 x=%{q}",
    }) do
      assert.is_nil(core.spf_parse(bad), bad)
    end
  end)

  it("matches addresses in networks, IPv4-mapped clients as IPv4", function()
    assert.is_true(core.ip_in("192.0.2.77", "192.0.2.0", 24))
    assert.is_false(core.ip_in("192.0.3.1", "192.0.2.0", 24))
    assert.is_true(core.ip_in("::ffff:192.0.2.1", "192.0.2.0", 24))
    assert.is_false(core.ip_in("2001:db8::1", "192.0.2.0", 0))
    assert.is_true(core.ip_in("2001:db8::1", "2001:db8::", 32))
    assert.is_true(core.ip_in("8.8.8.8", "0.0.0.0", 0))
  end)
end)

describe("smtpd.spf.check", function()
  setup(function()
    z = peers.zone_server()
    server, why_not = z.peer, z.why
  end)
  teardown(function() z.stop() end)

  it("runs the openspf RFC 7208 test suite (SMTPD_SPF_SUITE)", function()
    local scenarios, why = peers.env_suite("SMTPD_SPF_SUITE", "rfc7208-tests.yml")
    if not scenarios then H.skip(why) return end
    if not server then H.skip(why_not) return end
    local map = new_map()
    local total, failures = 0, {}
    for _, sc in ipairs(scenarios) do
      use_zone(map, sc.zonedata or {})
      for name, t in peers.tests(sc) do
        total = total + 1
        local why = run_case(map, name, t)
        if why then failures[#failures + 1] = why end
      end
    end
    io.stdout:write(("\nopenspf RFC 7208 suite: %d of %d passed\n")
                    :format(total - #failures, total))
    for _, f in ipairs(failures) do io.stdout:write("  ", f, "\n") end
    assert.same({}, failures)
  end)

  -- Our cases, from RFC 7208's sections (the section in each comment).
  local ZONE = {
    ["pass.test"] = {{TXT = "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all"}},
    ["soft.test"] = {{TXT = "v=spf1 ~all"}},
    ["neutral.test"] = {{TXT = "v=spf1 ?all"}},
    ["default.test"] = {{TXT = "v=spf1 ip4:10.0.0.1"}},
    ["nospf.test"] = {{TXT = "hello"}, {TXT = "spf1 but not v="}},
    ["two.test"] = {{TXT = "v=spf1 -all"}, {TXT = "v=spf1 +all"}},
    ["syntax.test"] = {{TXT = "v=spf1 ip4:192.0.2.300 -all"}},
    ["split.test"] = {{TXT = {"v=spf1 ip4:192.0.2.0/24", " -all"}}},
    ["inc.test"] = {{TXT = "v=spf1 include:pass.test -all"}},
    ["incnone.test"] = {{TXT = "v=spf1 include:nospf.test -all"}},
    ["redir.test"] = {{TXT = "v=spf1 redirect=pass.test"}},
    ["amx.test"] = {{TXT = "v=spf1 a mx/24 -all"}, {A = "198.51.100.10"},
                    {MX = {10, "mx.amx.test"}}},
    ["mx.amx.test"] = {{A = "203.0.113.5"}},
    ["ptr.test"] = {{TXT = "v=spf1 ptr -all"}},
    ["99.2.0.192.in-addr.arpa"] = {{PTR = "host.ptr.test"}},
    ["host.ptr.test"] = {{A = "192.0.2.99"}},
    ["exists.test"] = {{TXT = "v=spf1 exists:%{ir}.list.exists.test -all"}},
    ["5.2.0.192.list.exists.test"] = {{A = "127.0.0.2"}},
    ["exp.test"] = {{TXT = "v=spf1 -all exp=why.exp.test"}},
    ["why.exp.test"] = {{TXT = "%{i} may not send for %{d}"}},
    ["loop.test"] = {{TXT = "v=spf1 include:loop.test -all"}},
    ["void.test"] = {{TXT = "v=spf1 a:no1.void.test a:no2.void.test "
                            .. "a:no3.void.test -all"}},
    ["slow.test"] = {"TIMEOUT"},
    ["mail.helo.test"] = {{TXT = "v=spf1 ip4:192.0.2.50 -all"}},
    ["lp.test"] = {{TXT = "v=spf1 exists:%{l}.users.lp.test -all"}},
    ["alice.users.lp.test"] = {{A = "127.0.0.1"}},
  }
  local many = {}
  for i = 1, 11 do
    many[#many + 1] = ("a:x%d.many.test"):format(i)
    ZONE[("x%d.many.test"):format(i)] = {{A = "10.0.0." .. i}}
  end
  ZONE["many.test"] = {{TXT = "v=spf1 " .. table.concat(many, " ") .. " -all"}}
  local CASES = {
    {"192.0.2.5", "x@pass.test", "pass"},                 -- 5.6 ip4
    {"198.51.100.1", "x@pass.test", "fail"},              -- 5.1 all
    {"2001:db8::1", "x@pass.test", "pass"},               -- 5.6 ip6
    {"::ffff:192.0.2.1", "x@pass.test", "pass"},          -- 5 mapped
    {"192.0.2.5", "x@soft.test", "softfail"},             -- 4.6.2
    {"192.0.2.5", "x@neutral.test", "neutral"},
    {"192.0.2.5", "x@default.test", "neutral"},           -- 4.7
    {"192.0.2.5", "x@nospf.test", "none"},                -- 4.5
    {"192.0.2.5", "x@missing.test", "none"},              -- 4.3
    {"192.0.2.5", "x@two.test", "permerror"},             -- 4.5
    {"192.0.2.5", "x@syntax.test", "permerror"},          -- 4.6
    {"192.0.2.5", "x@split.test", "pass"},                -- 3.3 strings
    {"192.0.2.5", "x@inc.test", "pass"},                  -- 5.2
    {"198.51.100.1", "x@inc.test", "fail"},
    {"192.0.2.5", "x@incnone.test", "permerror"},         -- 5.2 none
    {"192.0.2.5", "x@redir.test", "pass"},                -- 6.1
    {"198.51.100.10", "x@amx.test", "pass"},              -- 5.3
    {"203.0.113.77", "x@amx.test", "pass"},               -- 5.4 /24
    {"203.0.114.1", "x@amx.test", "fail"},
    {"192.0.2.99", "x@ptr.test", "pass"},                 -- 5.5
    {"192.0.2.98", "x@ptr.test", "fail"},
    {"192.0.2.5", "x@exists.test", "pass"},               -- 5.7
    {"192.0.2.6", "x@exists.test", "fail"},
    {"192.0.2.6", "x@exp.test", "fail"},                  -- 6.2
    {"192.0.2.6", "x@loop.test", "permerror"},            -- 4.6.4
    {"192.0.2.6", "x@void.test", "permerror"},            -- 4.6.4 void
    {"192.0.2.6", "x@many.test", "permerror"},            -- 4.6.4 ten
    {"192.0.2.6", "x@slow.test", "temperror"},            -- 4.4
    {"192.0.2.50", "", "pass"},                           -- 2.4 postmaster@helo
    {"192.0.2.51", "", "fail"},
    {"192.0.2.6", "alice@lp.test", "pass"},               -- 7 %{l}
    {"192.0.2.6", "bob@lp.test", "fail"},
  }

  it("gives RFC 7208's results on our cases, and pyspf agrees", function()
    if not server then H.skip(why_not) return end
    local map = new_map()
    use_zone(map, ZONE)
    local got = {}
    for _, c in ipairs(CASES) do
      local result, facts = spf.check{ip = c[1], mailfrom = c[2],
        helo = "mail.helo.test", map = map, timeout = 3, query_timeout = 0.5}
      got[#got + 1] = result
      assert.equal(c[3], result, c[1] .. " " .. c[2] .. ": " .. tostring(facts.problem))
      if c[2] == "x@exp.test" then
        assert.equal("192.0.2.6 may not send for exp.test", facts.explanation)
        assert.equal("-all", facts.mechanism)
      end
      if c[2] == "" then assert.equal("postmaster@mail.helo.test", facts.sender) end
    end
    local _, facts = spf.check{ip = "192.0.2.5", mailfrom = "x@inc.test",
                               helo = "h.test", map = map}
    assert.equal("pass", _)
    assert.equal(1, facts.lookups)
    assert.equal("inc.test", facts.domain)
    -- the HELO identity alone
    assert.equal("pass", (spf.check{ip = "192.0.2.50", identity = "helo",
      helo = "mail.helo.test", mailfrom = "x@other.test", map = map}))
    -- pyspf, on the same zone, agrees case by case
    local py = H.python_with("spf")
    if not py and H.apt_install("python3-spf") then py = H.python_with("spf") end
    if not py then H.skip("python3-spf is not installed") return end
    local cases = {}
    for _, c in ipairs(CASES) do
      cases[#cases + 1] = {ip = c[1], mailfrom = c[2], helo = "mail.helo.test"}
    end
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(cjson.encode(cases))
    f:close()
    local out = H.capture(("%s %s/spec/peers/pyspf_check.py %d %s 2>&1")
                          :format(py, H.root, server.port, path))
    os.remove(path)
    local theirs = {}
    for line in out:gmatch("[^\n]+") do theirs[#theirs + 1] = line end
    assert.equal(#CASES, #theirs, out)
    for i, c in ipairs(CASES) do
      assert.equal(theirs[i], got[i], "pyspf on " .. c[1] .. " " .. c[2])
    end
  end)

  it("raises on misuse", function()
    assert.has_error(function() spf.check() end)
    assert.has_error(function() spf.check{ip = "not an ip"} end)
    assert.has_error(function() spf.check{ip = "192.0.2.1", timeout = 0} end)
  end)
end)

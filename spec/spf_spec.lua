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

local zone_path = os.tmpname()
local server, why_not

local function use_zone(map, zonedata)
  local f = assert(io.open(zone_path, "w"))
  f:write(cjson.encode(zonedata))
  f:close()
  peers.reload(map)
end

local function new_map()
  local map = H.map()
  assert(dns.configure{servers = {"127.0.0.1:" .. server.port}, timeout = 0.5,
                       tries = 1, map = map})
  return map
end

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
    local f = assert(io.open(zone_path, "w"))
    f:write("{}")
    f:close()
    server, why_not = peers.zone(zone_path)
  end)
  teardown(function()
    peers.stop()
    os.remove(zone_path)
  end)

  it("runs the openspf RFC 7208 test suite (SMTPD_SPF_SUITE)", function()
    local suite = os.getenv("SMTPD_SPF_SUITE")
    if not suite or suite == "" then
      H.skip("SMTPD_SPF_SUITE is not set (the path of rfc7208-tests.yml)")
      return
    end
    if not server then H.skip(why_not) return end
    local py = H.python_with("yaml")
    if not py and H.apt_install("python3-yaml") then py = H.python_with("yaml") end
    if not py then H.skip("python3-yaml is not installed") return end
    local json = os.tmpname()
    assert(os.execute(("%s %s/spec/peers/yaml2json.py %s %s")
                      :format(py, H.root, suite, json)))
    local scenarios = cjson.decode((assert(H.readfile(json))))
    os.remove(json)
    local map = new_map()
    local total, failures = 0, {}
    for _, sc in ipairs(scenarios) do
      use_zone(map, sc.zonedata or {})
      local names = {}
      for name in pairs(sc.tests) do names[#names + 1] = name end
      table.sort(names)
      for _, name in ipairs(names) do
        total = total + 1
        local why = run_case(map, name, sc.tests[name])
        if why then failures[#failures + 1] = why end
      end
    end
    io.stdout:write(("\nopenspf RFC 7208 suite: %d of %d passed\n")
                    :format(total - #failures, total))
    for _, f in ipairs(failures) do io.stdout:write("  ", f, "\n") end
    assert.same({}, failures)
  end)
end)

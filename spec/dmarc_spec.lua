-- smtpd.dmarc: policy discovery, alignment and the policy that applies
-- (RFC 7489; the DMARCbis tree walk), against a DNS server on loopback;
-- organizational domains by the public suffix list (libpsl).
local H = require "helper"
local peers = require "peers"
local dmarc = require "smtpd.dmarc"

local z                   -- the zone server (peers.zone_server)
local server, why_not

local ZONE = {
  ["_dmarc.example.com"] = {{TXT = "v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@example.com"}},
  ["_dmarc.strict.test"] = {{TXT = "v=DMARC1; p=reject; adkim=s; aspf=s"}},
  ["_dmarc.none.test"] = {{TXT = "v=DMARC1; p=none"}},
  ["_dmarc.half.test"] = {{TXT = "v=DMARC1; p=reject; pct=0"}},
  ["_dmarc.two.test"] = {{TXT = "v=DMARC1; p=none"}, {TXT = "v=DMARC1; p=reject"}},
  ["_dmarc.bad.test"] = {{TXT = "p=reject; v=DMARC1"}},
  ["_dmarc.ruaonly.test"] = {{TXT = "v=DMARC1; p=bogus; rua=mailto:x@ruaonly.test"}},
  ["_dmarc.slow.test"] = {"TIMEOUT"},
  ["_dmarc.org.example.co.uk"] = {{TXT = "v=DMARC1; p=quarantine"}},
  ["_dmarc.walk.test"] = {{TXT = "v=DMARC1; p=reject; sp=none"}},
}

describe("smtpd.dmarc", function()
  setup(function()
    z = peers.zone_server(ZONE)
    server, why_not = z.peer, z.why
  end)
  teardown(function() z.stop() end)

  it("finds organizational domains with the public suffix list", function()
    assert.equal("example.com", dmarc.org_domain("a.b.example.com"))
    assert.equal("example.co.uk", dmarc.org_domain("Mail.Example.CO.UK."))
    assert.equal("co.uk", dmarc.org_domain("co.uk"))
    assert.is_string(H.core.psl_info())
  end)

  it("reads records, and refuses what is not one", function()
    local r = assert(dmarc.parse("v=DMARC1; p=Quarantine; pct=50; adkim=s"))
    assert.same({"quarantine", 50, "s", "r"}, {r.p, r.pct, r.adkim, r.aspf})
    assert.is_nil(dmarc.parse("p=reject; v=DMARC1"))
    assert.is_nil(dmarc.parse("v=DMARC1"))
    assert.is_nil(dmarc.parse("v=DMARC1; p=reject; p=none"))
    assert.equal("none", dmarc.parse("v=DMARC1; p=x; rua=mailto:a@b.c").p)
    assert.equal(100, dmarc.parse("v=DMARC1; p=none; pct=200").pct)
  end)

  it("passes on aligned SPF or DKIM, and says which policy applies", function()
    if not server then H.skip(why_not) return end
    local map = z.map()
    local function check(from, spf, dkim, extra)
      local o = {from_domain = from, spf = spf, dkim = dkim, map = map, timeout = 1}
      for k, v in pairs(extra or {}) do o[k] = v end
      return dmarc.check(o)
    end
    local function spf(d) return {result = "pass", domain = d} end
    -- relaxed: a subdomain's SPF aligns; DKIM of the domain aligns
    local r, f = check("example.com", spf("bounce.example.com"))
    assert.equal("pass", r)
    assert.is_true(f.alignment.spf)
    r, f = check("example.com", {result = "fail", domain = "example.com"},
                 {{result = "pass", domain = "other.test"}, {result = "pass", domain = "mail.example.com"}})
    assert.equal("pass", r)
    assert.same({spf = false, dkim = true}, f.alignment)
    -- failing: p=; a subdomain gets sp= from the organizational domain
    r, f = check("example.com", spf("other.test"))
    assert.same({"fail", "reject", "reject", "example.com"}, {r, f.policy, f.disposition, f.domain})
    r, f = check("news.example.com", spf("other.test"))
    assert.same({"fail", "quarantine", "example.com"}, {r, f.policy, f.domain})
    -- strict alignment wants the same name
    r, f = check("strict.test", spf("mail.strict.test"))
    assert.equal("fail", r)
    assert.equal("pass", (check("strict.test", spf("strict.test"))))
    -- pct=0: the policy one step lighter
    r, f = check("half.test", spf("x.test"))
    assert.same({"fail", "reject", "quarantine"}, {r, f.policy, f.disposition})
    -- none: no record, two records, a record that is not one
    assert.equal("none", (check("norecord.test", spf("x.test"))))
    assert.equal("none", (check("two.test", spf("x.test"))))
    assert.equal("none", (check("bad.test", spf("x.test"))))
    r, f = check("ruaonly.test", spf("x.test"))
    assert.same({"fail", "none"}, {r, f.policy})
    -- a DNS failure is temporary
    assert.equal("temperror", (check("slow.test", spf("x.test"))))
    -- the public suffix list: a.org.example.co.uk's organizational domain
    r, f = check("a.org.example.co.uk", spf("x.test"))
    assert.same({"none", "example.co.uk"}, {r, f.org_domain})
    r, f = check("org.example.co.uk", spf("x.test"))
    assert.same({"fail", "quarantine"}, {r, f.policy})
    -- the DMARCbis tree walk finds the nearest record up the labels
    r, f = check("a.b.c.walk.test", spf("x.test"), nil, {mode = "bis"})
    assert.same({"fail", "walk.test", "none"}, {r, f.domain, f.policy})
    -- where the two differ: RFC 7489 asks only the organizational domain
    -- (example.co.uk, no record), the walk finds org.example.co.uk's
    assert.equal("none", (check("a.b.org.example.co.uk", spf("x.test"))))
    r, f = check("a.b.org.example.co.uk", spf("x.test"), nil, {mode = "bis"})
    assert.same({"fail", "org.example.co.uk", "quarantine"}, {r, f.domain, f.policy})
  end)

  it("raises on misuse", function()
    assert.has_error(function() dmarc.check() end)
    assert.has_error(function() dmarc.check{from_domain = "nodot"} end)
  end)
end)

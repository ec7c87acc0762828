-- smtpd.arc: chain validation (RFC 8617) on our own sets, and the ARC
-- validation suite (draft-18 format) when SMTPD_ARC_SUITE names its
-- arc-draft-validation-tests.yml; keys from a loopback DNS server.
local H = require "helper"
local peers = require "peers"
local arc = require "smtpd.arc"
local dns = require "smtpd.dns"

local z                   -- the zone server (peers.zone_server)
local server, why_not

local function new_map() return z.map() end
local function use_zone(map, zone) z.use(map, zone) end

-- The zone of a suite's scenario: its txt-records.
local function suite_zone(sc)
  local zone = {}
  for name, text in pairs(sc["txt-records"] or {}) do zone[name] = {{TXT = text}} end
  return zone
end

describe("smtpd.arc", function()
  setup(function()
    z = peers.zone_server()
    server, why_not = z.peer, z.why
  end)
  teardown(function() z.stop() end)

  it("says none without sets and fail for a broken structure", function()
    if not server then H.skip(why_not) return end
    local map = new_map()
    use_zone(map, {})
    local msg = "From: a@b.example\nSubject: x\n\nhi\n"
    assert.equal("none", (arc.verify(msg, {map = map})))
    local cv, facts = arc.verify("ARC-Seal: i=1; cv=none; a=rsa-sha256; d=b.example; "
                                 .. "s=x; b=AAAA\n" .. msg, {map = map})
    assert.equal("fail", cv)
    assert.matches("not whole", facts.reason)
    cv, facts = arc.verify("ARC-Seal: i=77; cv=none; a=rsa-sha256; d=b.example; "
                           .. "s=x; b=AAAA\n" .. msg, {map = map})
    assert.equal("fail", cv)
    -- a whole set whose key cannot be had for now: fail, said to be temporary
    use_zone(map, {["slow._domainkey.b.example"] = {"TIMEOUT"}})
    local set = "ARC-Seal: i=1; cv=none; a=rsa-sha256; d=b.example; s=slow; b=AAAA\n"
      .. "ARC-Message-Signature: i=1; a=rsa-sha256; d=b.example; s=slow; h=from; "
      .. "bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA\n"
      .. "ARC-Authentication-Results: i=1; b.example; none\n"
    cv, facts = arc.verify(set .. "From: a@b.example\n\n", {map = map, timeout = 0.5})
    assert.equal("fail", cv)
    assert.is_true(facts.temporary, facts.reason)
    assert.has_error(function() arc.verify(nil) end)
  end)

  it("runs the ARC validation suite (SMTPD_ARC_SUITE)", function()
    local scenarios, why = peers.env_suite("SMTPD_ARC_SUITE", "arc-draft-validation-tests.yml")
    if not scenarios then H.skip(why) return end
    if not server then H.skip(why_not) return end
    local map = new_map()
    local total, undefined, failures = 0, 0, {}
    for _, sc in ipairs(scenarios) do
      use_zone(map, suite_zone(sc))
      for name, t in peers.tests(sc) do
        local want = tostring(t.cv or ""):lower()
        if want == "" then
          undefined = undefined + 1      -- the suite leaves it undefined
        else
          total = total + 1
          local cv, facts = arc.verify(t.message or "", {map = map, timeout = 1})
          if cv ~= want then
            failures[#failures + 1] = ("%s: %s, not %s (%s)"):format(name, cv, want,
                                                                   tostring(facts.reason))
          end
        end
      end
    end
    io.stdout:write(("\nARC validation suite: %d of %d passed (%d undefined, not run)\n")
                    :format(total - #failures, total, undefined))
    for _, f in ipairs(failures) do io.stdout:write("  ", f, "\n") end
    assert.same({}, failures)
  end)

  -- The suite's fields compared as sets of tags, whitespace made one space.
  local function tagset(v)
    local out = {}
    for t in (v:gsub("%s+", " ")):gmatch("[^;]+") do
      t = t:gsub("^%s+", ""):gsub("%s+$", "")
      -- a signature's folding is anywhere in it
      if t:find("^b%s*=") then t = t:gsub("%s", "") end
      if t ~= "" then out[#out + 1] = (t:gsub("%s*=%s*", "=", 1)) end
    end
    table.sort(out)
    return out
  end

  it("runs the ARC signing suite (SMTPD_ARC_SIGN_SUITE): its message signatures and "
     .. "results are ours, and what we seal validates", function()
    local scenarios, why = peers.env_suite("SMTPD_ARC_SIGN_SUITE", "arc-draft-sign-tests.yml")
    if not scenarios then H.skip(why) return end
    if not server then H.skip(why_not) return end
    local map = new_map()
    local total, failures, seals_same = 0, {}, 0
    for _, sc in ipairs(scenarios) do
      use_zone(map, suite_zone(sc))
      for name, t in peers.tests(sc) do
        total = total + 1
        local headers = {}
        for h in t["sig-headers"]:gmatch("[^:]+") do headers[#headers + 1] = h end
        local ok, _, list = pcall(arc.seal, t.message, {domain = sc.domain,
          selector = sc.sel, key = sc.privatekey, authserv_id = t["srv-id"],
          headers = headers, timestamp = t.t, map = map, timeout = 1})
        if not ok then
          failures[#failures + 1] = name .. ": " .. tostring(_)
        elseif (t.AS or "") == "" then
          -- the suite wants no set here (a chain that failed already)
          if _ ~= nil then failures[#failures + 1] = name .. ": sealed, but should not" end
        elseif _ == nil then
          failures[#failures + 1] = name .. ": not sealed: " .. tostring(list)
        else
          local got = {AS = list[1], AMS = list[2], AAR = list[3]}
          local function same(k)
            local value = got[k]:match("^[^:]*:(.*)$")
            return table.concat(tagset(value), ";") == table.concat(tagset(t[k] or ""), ";"),
                   value
          end
          for _, k in ipairs({"AMS", "AAR"}) do
            local equal, value = same(k)
            if not equal then
              failures[#failures + 1] = ("%s: %s differs:\n    ours   %s\n    theirs %s")
                :format(name, k, table.concat(tagset(value), "; "),
                        table.concat(tagset(t[k] or ""), "; "))
            end
          end
          if same("AS") then seals_same = seals_same + 1 end
          -- what we sealed validates (a chain that failed stays failed)
          local sealed = table.concat(list, "\n") .. "\n" .. t.message
          local cv = arc.verify(sealed, {map = map, timeout = 1})
          local sealed_cv = list[1]:match("cv=(%a+)")
          local want = sealed_cv == "fail" and "fail" or "pass"
          if cv ~= want then
            failures[#failures + 1] = ("%s: sealed with cv=%s, then %s"):format(name, sealed_cv, cv)
          end
        end
      end
    end
    io.stdout:write(("\nARC signing suite: %d of %d with the suite's AMS and AAR, and a "
                     .. "seal that validates; the seal's b= the suite's in %d of %d\n")
                    :format(total - #failures, total, seals_same, total))
    for _, f in ipairs(failures) do io.stdout:write("  ", f, "\n") end
    assert.same({}, failures)
  end)
end)

-- smtpd.dmarc: DMARC (RFC 7489; the DMARCbis tree walk with mode =
-- "bis") on smtpd.dns: the From domain's policy, and whether SPF or DKIM
-- passed for a domain aligned with it.
--
--   local result, facts = smtpd.dmarc.check{from_domain = "example.com",
--     spf = {result = "pass", domain = "bounce.example.com"},
--     dkim = {{result = "pass", domain = "example.com"}, ...}}
--   -- result: "pass" | "fail" | "none" | "temperror" | "permerror"
--   -- facts: {domain = (where the record was), org_domain =, policy =
--   --   ("none" | "quarantine" | "reject", the p=, sp= or np= that applies),
--   --   disposition = (the policy after pct=), alignment = {spf =, dkim =},
--   --   record = {p =, sp =, np =, pct =, adkim =, aspf =, ...}, problem =}
--
-- The organizational domain is the public suffix list's registrable
-- domain (libpsl, Debian's publicsuffix list); mode = "bis" walks up the
-- From domain's labels instead (at most 8 lookups) and honours psd=.

local core = require "smtpd.core"
local dns = require "smtpd.dns"

local M = {}

M.DEFAULT_TIMEOUT = 10
M.MAX_WALK = 8

local function lower(s) return s and s:lower():gsub("%.$", "") or nil end

-- The organizational domain of name (RFC 7489 3.2): the registrable
-- domain, or name itself when it is a public suffix.
function M.org_domain(name)
  name = lower(name)
  return core.psl_org_domain(name) or name
end

-- Reads a DMARC record (the C core's csrc/auth/dmarc.c): {p =, sp =,
-- np =, pct =, adkim =, aspf =, rua = (the addresses, or nil), ruf =,
-- psd =}, or nil and why it is not one.
function M.parse(text)
  if type(text) ~= "string" then return nil, "not a string" end
  local rec, err = core.dmarc_parse(text)
  if not rec then return nil, err end
  local tags = core.dkim_tags(text)
  rec.rua = rec.rua and tags.rua or nil
  rec.ruf = rec.ruf and tags.ruf or nil
  return rec
end

-- The one DMARC record at _dmarc.domain: rec, or nil and "none" /
-- "temperror" (with why).
local function lookup(domain, opts)
  local res, err, info = dns.query("_dmarc." .. domain, "TXT",
    {timeout = opts.timeout or M.DEFAULT_TIMEOUT, map = opts.map, _shared = true})
  if not res then
    if info and info.temporary then return nil, "temperror", err end
    return nil, "none", err
  end
  local found, text
  for _, r in ipairs(res) do
    local t = r.text or ""
    if t:sub(1, 8) == "v=DMARC1" then
      if found then return nil, "none", "more than one DMARC record" end
      found, text = M.parse(t), t
    end
  end
  if not found then return nil, "none", text and "not a valid record" or "no record" end
  return found
end

local function aligned(a, b, mode)
  a, b = lower(a), lower(b)
  if not a or not b then return false end
  if mode == "s" then return a == b end
  return M.org_domain(a) == M.org_domain(b)
end

-- check{from_domain =, spf =, dkim = [, mode =, timeout =, map =,
-- random =]} -> result, facts
function M.check(opts)
  if type(opts) ~= "table" then error("dmarc.check: a table of options", 2) end
  local from = opts.from_domain
  if type(from) ~= "string" or not from:find("%.") then
    error("dmarc.check: from_domain must be a domain name", 2)
  end
  from = lower(from)
  local facts = {from_domain = from, org_domain = M.org_domain(from),
                 alignment = {spf = false, dkim = false}}
  -- policy discovery (RFC 7489 6.6.3, or the tree walk)
  local rec, why, detail = lookup(from, opts)
  local at = from
  if not rec and why == "none" then
    if opts.mode == "bis" then
      local labels = {}
      for l in from:gmatch("[^.]+") do labels[#labels + 1] = l end
      local first = math.max(2, #labels - M.MAX_WALK + 2)
      for i = first, #labels - 1 do
        local d = table.concat(labels, ".", i)
        rec, why, detail = lookup(d, opts)
        if rec or why ~= "none" then
          at = d
          break
        end
      end
    elseif facts.org_domain ~= from then
      at = facts.org_domain
      rec, why, detail = lookup(at, opts)
    end
  end
  if not rec then
    facts.problem = detail
    return why, facts
  end
  -- psd=y: a public suffix domain, not an organizational one (DMARCbis)
  if opts.mode == "bis" and at ~= from and rec.psd ~= "y" then
    facts.org_domain = at
  end
  facts.domain, facts.record = at, rec
  -- alignment
  local spf = opts.spf
  if spf and spf.result == "pass" and aligned(spf.domain, from, rec.aspf) then
    facts.alignment.spf = true
  end
  for _, d in ipairs(opts.dkim or {}) do
    if d.result == "pass" and aligned(d.domain, from, rec.adkim) then
      facts.alignment.dkim = true
      facts.dkim_domain = lower(d.domain)
      break
    end
  end
  -- the policy that applies: p=, sp= for a subdomain, np= for a name
  -- that does not exist
  local policy = rec.p
  if at ~= from then
    policy = rec.sp or rec.p
    if rec.np and opts.from_exists == false then policy = rec.np end
  end
  facts.policy = policy
  if facts.alignment.spf or facts.alignment.dkim then
    facts.disposition = "none"
    return "pass", facts
  end
  -- pct=: the policy on that share of failing mail, one step lighter on
  -- the rest (RFC 7489 6.6.4)
  local disposition = policy
  local roll = (opts.random or math.random)()
  if rec.pct < 100 and roll * 100 >= rec.pct then
    disposition = policy == "reject" and "quarantine" or "none"
  end
  facts.disposition = disposition
  return "fail", facts
end

return M

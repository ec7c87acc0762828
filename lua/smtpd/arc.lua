-- smtpd.arc: the Authenticated Received Chain (RFC 8617): whether the
-- chain of ARC sets a message carries holds (cv), checked with the
-- DKIM machinery (smtpd.dkim) and keys from smtpd.dns.
--
--   local cv, facts = smtpd.arc.verify(data [, {timeout =, map =}])
--   -- cv: "none" | "pass" | "fail"; facts: {instances = N, reason =
--   --   (why it failed), sets = {{domain =, selector =, cv =}, ...},
--   --   oldest_pass = (the lowest instance whose AMS still verifies)}

local core = require "smtpd.core"
local dkim = require "smtpd.dkim"

local I = dkim._internal
local M = {}

M.MAX_INSTANCES = 50

local NAMES = {["arc-seal"] = "as", ["arc-message-signature"] = "ams",
               ["arc-authentication-results"] = "aar"}

local function fail(facts, why)
  facts.reason = why
  return "fail", facts
end

-- The instance of an ARC field: its i= (the AAR's comes first in its
-- value), or nil.
local function instance(kind, raw)
  local value = I.field_value(raw)
  if kind == "aar" then
    local i = value:match("^%s*i%s*=%s*(%d+)%s*;")
    return tonumber(i)
  end
  local tags = core.dkim_tags(value)
  return tags and tags.i and tonumber(I.strip_ws(tags.i)), tags
end

-- Why a signature's tags cannot be checked, or nil.
local function missing(tags)
  for _, t in ipairs({"a", "b", "d", "s"}) do
    if not tags[t] then return "the " .. t .. "= tag is missing" end
  end
  if not I.ALGS[tags.a] or tags.a == "rsa-sha1" then
    return "an algorithm ARC does not take: " .. tags.a
  end
  return nil
end

-- Checks one signature (AMS or AS) over hdata with the key of its tags.
local function check_sig(tags, hdata, opts, keys)
  local sig = {selector = I.strip_ws(tags.s), domain = I.strip_ws(tags.d):lower(),
               alg = tags.a}
  local key, kres, kwhy = I.fetch_key(sig, opts, keys)
  if not key then return false, kwhy, kres end
  local why = I.check_key(sig, key)
  if why then return false, why end
  local ok, vwhy, bits = core.dkim_verify(tags.a, I.strip_ws(key.p), hdata,
                                          I.strip_ws(tags.b))
  if ok == nil then return false, vwhy end
  bits = ok and vwhy or bits
  if bits < dkim.MIN_RSA_BITS then
    return false, ("an RSA key of %d bits (at least %d)"):format(bits, dkim.MIN_RSA_BITS)
  end
  if not ok then return false, vwhy end
  return true
end

-- The AMS of one instance, as DKIM does a signature (no v=).
local function check_ams(data, fields, body_at, raw, tags, opts, keys)
  local why = missing(tags)
  if why then return false, why end
  for _, t in ipairs({"bh", "h"}) do
    if not tags[t] then return false, "the AMS has no " .. t .. "=" end
  end
  local h = {}
  for name in I.strip_ws(tags.h):gmatch("[^:]+") do
    name = name:lower()
    if name == "arc-seal" then return false, "the AMS signs an ARC-Seal" end
    h[#h + 1] = name
  end
  -- Without c=, DKIM's default (simple/simple), then relaxed/relaxed:
  -- the ARC suite signs so, and either is a canonicalisation of what
  -- was signed.
  local canons = {tags.c and I.strip_ws(tags.c) or "simple/simple"}
  if not tags.c then canons[2] = "relaxed/relaxed" end
  local hashname = tags.a == "rsa-sha1" and "rsa-sha1" or "rsa-sha256"
  local l = tags.l and tonumber(tags.l)
  local ok = false
  for _, c in ipairs(canons) do
    local hc, bc = c:match("^(%a+)/?(%a*)$")
    if bc == "" then bc = "simple" end
    if not hc then return false, "a bad c=" end
    local digest = core.dkim_body_hash(data, body_at, bc == "relaxed", hashname, l)
    if I.strip_ws(tags.bh) ~= digest then
      why = "the AMS body hash does not verify"
    else
      local hdata = I.header_data(fields, h, I.without_b(raw), hc == "relaxed")
      ok, why = check_sig(tags, hdata, opts, keys)
      if ok then return true end
    end
  end
  return ok, why
end

-- verify(data [, opts]) -> cv, facts
function M.verify(data, opts)
  if type(data) ~= "string" then error("arc.verify: data must be a string", 2) end
  opts = opts or {}
  local fields, body_at = core.dkim_fields(data)
  local sets, n = {}, 0
  local facts = {sets = {}}
  for _, f in ipairs(fields) do
    local kind = NAMES[f.name]
    if kind then
      local i, tags = instance(kind, f.raw)
      if not i or i < 1 or i > M.MAX_INSTANCES then
        facts.instances = n
        return fail(facts, "an ARC field without a usable i=")
      end
      local set = sets[i] or {}
      sets[i] = set
      if set[kind] then return fail(facts, ("two %s fields for i=%d"):format(kind, i)) end
      set[kind] = {raw = f.raw, tags = tags}
      if i > n then n = i end
    end
  end
  facts.instances = n
  if n == 0 then return "none", facts end
  for i = 1, n do
    local s = sets[i]
    if not s or not s.aar or not s.ams or not s.as then
      return fail(facts, ("the set of i=%d is not whole"):format(i))
    end
    if not s.as.tags or not s.ams.tags then
      return fail(facts, ("a malformed field in the set of i=%d"):format(i))
    end
    local cv = s.as.tags.cv and I.strip_ws(s.as.tags.cv):lower()
    facts.sets[i] = {domain = s.as.tags.d, selector = s.as.tags.s, cv = cv}
    if i == n and cv == "fail" then return fail(facts, "the last seal says cv=fail") end
    if (i == 1 and cv ~= "none") or (i > 1 and cv ~= "pass") then
      return fail(facts, ("the seal of i=%d says cv=%s"):format(i, tostring(cv)))
    end
    -- a seal signs no header list of its own
    if s.as.tags.h then return fail(facts, "a seal with h=") end
    local why = missing(s.as.tags)
    if why then return fail(facts, ("the seal of i=%d: %s"):format(i, why)) end
  end
  local keys = {}
  -- the newest AMS must verify
  local ok, why, temp = check_ams(data, fields, body_at, sets[n].ams.raw,
                                  sets[n].ams.tags, opts, keys)
  if not ok then
    return fail(facts, ("the AMS of i=%d: %s"):format(n, why))
  end
  facts.oldest_pass = n
  for i = n - 1, 1, -1 do
    if not check_ams(data, fields, body_at, sets[i].ams.raw, sets[i].ams.tags,
                     opts, keys) then
      break
    end
    facts.oldest_pass = i
  end
  -- every seal, newest first, over the sets up to its own
  for i = n, 1, -1 do
    local parts = {}
    for j = 1, i do
      local s = sets[j]
      parts[#parts + 1] = core.dkim_canon_header(s.aar.raw, true, true)
      parts[#parts + 1] = core.dkim_canon_header(s.ams.raw, true, true)
      if j < i then
        parts[#parts + 1] = core.dkim_canon_header(s.as.raw, true, true)
      else
        parts[#parts + 1] = core.dkim_canon_header(I.without_b(s.as.raw), true, false)
      end
    end
    ok, why, temp = check_sig(sets[i].as.tags, table.concat(parts), opts, keys)
    if not ok then
      return fail(facts, ("the seal of i=%d: %s"):format(i, why))
    end
  end
  local _ = temp
  return "pass", facts
end

return M

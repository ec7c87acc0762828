-- smtpd.arc: the Authenticated Received Chain (RFC 8617): whether the
-- chain of ARC sets a message carries holds (cv), checked with the
-- DKIM machinery (smtpd.dkim) and keys from smtpd.dns.
--
--   local cv, facts = smtpd.arc.verify(data [, {timeout =, map =}])
--   -- cv: "none" | "pass" | "fail"; facts: {instances = N, reason =
--   --   (why it failed), temporary = (a key lookup failed for now: try
--   --   again rather than trust the fail), sets = {{domain =, selector =, cv =}, ...},
--   --   oldest_pass = (the lowest instance whose AMS still verifies)}
--   local fields = smtpd.arc.seal(data, {domain =, selector =, key =,
--     authserv_id =, headers =, results =, cv =, timestamp =})
--   -- the new set's ARC-Seal, ARC-Message-Signature and
--   -- ARC-Authentication-Results fields, to put on top (CRLF between)

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
  local ok, temp = false, nil
  for _, c in ipairs(canons) do
    local hc, bc = c:match("^(%a+)/?(%a*)$")
    if bc == "" then bc = "simple" end
    if not hc then return false, "a bad c=" end
    local digest = core.dkim_body_hash(data, body_at, bc == "relaxed", hashname, l)
    if I.strip_ws(tags.bh) ~= digest then
      why = "the AMS body hash does not verify"
    else
      local hdata = I.header_data(fields, h, I.without_b(raw), hc == "relaxed")
      ok, why, temp = check_sig(tags, hdata, opts, keys)
      if ok then return true end
    end
  end
  return ok, why, temp
end

-- verify(data [, opts]) -> cv, facts
function M.verify(data, opts)
  if type(data) ~= "string" then error("arc.verify: data must be a string", 2) end
  opts = opts or {}
  local fields, body_at = opts.fields, opts.body_at   -- read already, or
  if not fields then fields, body_at = core.dkim_fields(data) end
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
    facts.temporary = temp == "temperror" or nil
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
      facts.temporary = temp == "temperror" or nil
      return fail(facts, ("the seal of i=%d: %s"):format(i, why))
    end
  end
  return "pass", facts
end

-- ---- sealing (RFC 8617 section 5.1) ---------------------------------------------

M.SEALED_HEADERS = {"from", "to", "cc", "subject", "date", "message-id",
                    "reply-to", "mime-version", "content-type",
                    "content-transfer-encoding", "dkim-signature"}


-- The results our Authentication-Results fields hold (their values
-- after the authserv-id, merged in order), or nil.
local function our_results(fields, id)
  local out = {}
  for _, f in ipairs(fields) do
    if f.name == "authentication-results" then
      local value = I.field_value(f.raw)
      local fid = core.authres_id(value)
      if fid and fid:lower() == id:lower() then
        local rest = (value:match("^[^;]*;(.*)$") or ""):gsub("^%s+", ""):gsub("%s+$", "")
        rest = rest:gsub(";$", "")
        if rest ~= "" and rest ~= "none" then out[#out + 1] = rest end
      end
    end
  end
  if #out == 0 then return nil end
  return table.concat(out, ";\r\n ")
end

-- A signature folded as the ARC suite's signer does (the seal signs the
-- message signature's folding too, so it is fixed): 70 bytes after the
-- "b=", then lines of 72.
local function fold(s)
  local parts = {s:sub(1, 70)}
  for i = 71, #s, 72 do parts[#parts + 1] = s:sub(i, i + 71) end
  return table.concat(parts, "\r\n ")
end

-- seal(data, opts) -> the three fields joined by CRLF, and a list of them
-- (ARC-Seal first, as they go on top); nil, why when the chain is past
-- 50 sets or its newest seal says cv=fail.
function M.seal(data, opts)
  if type(data) ~= "string" then error("arc.seal: data must be a string", 2) end
  if type(opts) ~= "table" then error("arc.seal: a table of options", 2) end
  for _, k in ipairs({"domain", "selector", "authserv_id"}) do
    if type(opts[k]) ~= "string" or not opts[k]:find("^[%w._-]+$") then
      error("arc.seal: " .. k .. " must be a name", 2)
    end
  end
  local pem = I.read_key(opts.key)
  local cv, facts = opts.cv, nil
  if cv == nil then cv, facts = M.verify(data, opts) else facts = {instances = opts.instances} end
  local fields, body_at = core.dkim_fields(data)
  local n = facts.instances
  if n == nil then
    n = 0
    for _, f in ipairs(fields) do
      if f.name == "arc-seal" then
        local i = instance("as", f.raw)
        if i and i > n then n = i end
      end
    end
  end
  if n >= M.MAX_INSTANCES then return nil, "the chain has 50 sets already" end
  -- RFC 8617 5.1.1: a chain whose newest seal says cv=fail gets no more
  local last = facts.sets and facts.sets[n]
  if last and last.cv == "fail" then
    return nil, "the chain failed already (cv=fail): no set is added"
  end
  local i = n + 1
  local t = math.floor(opts.timestamp or os.time())
  local results = opts.results or our_results(fields, opts.authserv_id)
                  or ("arc=" .. cv)
  local aar = ("ARC-Authentication-Results: i=%d; %s; %s"):format(i,
                opts.authserv_id, results)
  -- the message signature, over the fields named (the new AAR among them)
  local names = {}
  for _, h in ipairs(opts.headers or M.SEALED_HEADERS) do names[#names + 1] = h:lower() end
  local with_aar = {{name = "arc-authentication-results", raw = aar}}
  for _, f in ipairs(fields) do with_aar[#with_aar + 1] = f end
  local bh = core.dkim_body_hash(data, body_at, true, "rsa-sha256", nil)
  local ams_head = ("ARC-Message-Signature: a=rsa-sha256; b=; bh=%s; c=relaxed/relaxed;"
                    .. " d=%s; h=%s; i=%d; s=%s; t=%d"):format(bh, opts.domain,
                    table.concat(names, ":"), i, opts.selector, t)
  local hdata = I.header_data(with_aar, names, ams_head, true)
  local b, err = core.dkim_sign("rsa-sha256", pem, hdata)
  if not b then error("arc.seal: " .. err, 2) end
  local ams = ams_head:gsub("; b=; ", "; b=" .. fold(b) .. "; ", 1)
  -- the seal, over every set up to this one
  local sets = {}
  for _, f in ipairs(fields) do
    local kind = NAMES[f.name]
    if kind then
      local j = instance(kind, f.raw)
      if j then
        sets[j] = sets[j] or {}
        sets[j][kind] = f.raw
      end
    end
  end
  sets[i] = {aar = aar, ams = ams}
  local as_head = ("ARC-Seal: a=rsa-sha256; b=; cv=%s; d=%s; i=%d; s=%s; t=%d")
                  :format(cv, opts.domain, i, opts.selector, t)
  local parts = {}
  for j = 1, i do
    local st = sets[j] or {}
    if st.aar then parts[#parts + 1] = core.dkim_canon_header(st.aar, true, true) end
    if st.ams then parts[#parts + 1] = core.dkim_canon_header(st.ams, true, true) end
    if j < i and st.as then parts[#parts + 1] = core.dkim_canon_header(st.as, true, true) end
  end
  parts[#parts + 1] = core.dkim_canon_header(as_head, true, false)
  b, err = core.dkim_sign("rsa-sha256", pem, table.concat(parts))
  if not b then error("arc.seal: " .. err, 2) end
  local as = as_head:gsub("; b=; ", "; b=" .. fold(b) .. "; ", 1)
  local list = {as, ams, aar}
  return table.concat(list, "\r\n"), list
end

return M

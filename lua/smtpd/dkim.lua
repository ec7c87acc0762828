-- smtpd.dkim: DKIM signatures (RFC 6376), checked and made; rsa-sha256
-- and ed25519-sha256 (RFC 8463); rsa-sha1 is reported, never a pass
-- unless allowed (RFC 8301). Keys come from smtpd.dns, so a hook that
-- verifies parks while every other session goes on.
--
--   local results = smtpd.dkim.verify(data [, {timeout =, now =,
--     allow_sha1 =, max_signatures =, map =, bodies =}])
--   -- one entry per DKIM-Signature, top first: {result = "pass" | "fail"
--   --   | "policy" | "neutral" | "temperror" | "permerror", reason =,
--   --   domain =, selector =, algorithm =, identity =, headers = {...},
--   --   length = (l=), unsigned_body = (bytes l= leaves out), oversigned =
--   --   {names signed more often than they occur}, bits =, testing =}
--   local field = smtpd.dkim.sign(data, {domain =, selector =,
--     key = pem_or_path, algorithm = "rsa-sha256" | "ed25519-sha256",
--     headers =, oversign =, keys = {{selector =, key =, algorithm =}, ...}})
--
-- The byte work (tag lists, fields, canonicalisation, hashes and
-- signatures) is the C core's (csrc/auth/dkim.c).

local core = require "smtpd.core"

local M = {}

M.DEFAULT_TIMEOUT = 10
M.MAX_SIGNATURES = 10       -- verified per message; the rest "neutral"
M.MIN_RSA_BITS = 1024       -- RFC 8301
-- What sign() signs when not told: the fields a reader sees and trusts.
M.SIGNED_HEADERS = {"from", "to", "cc", "subject", "date", "message-id",
                    "reply-to", "in-reply-to", "references", "mime-version",
                    "content-type", "content-transfer-encoding", "list-id",
                    "list-unsubscribe"}
M.OVERSIGNED = {"from", "subject", "to", "cc", "date", "reply-to",
                "content-type"}

local ALGS = {["rsa-sha256"] = "rsa", ["rsa-sha1"] = "rsa",
              ["ed25519-sha256"] = "ed25519"}

local function strip_ws(s) return (s:gsub("[ \t\r\n]", "")) end

local function field_value(raw)
  return raw:match("^[^:]*:(.*)$") or ""
end

-- The field with its b= tag's value removed (RFC 6376 3.7), the FWS in
-- and around it too.
local function without_b(raw)
  local name, value = raw:match("^([^:]*:)(.*)$")
  local v, n = (";" .. value):gsub("(;[ \t\r\n]*b[ \t\r\n]*=)[^;]*", "%1", 1)
  if n == 0 then return nil end
  return name .. v:sub(2)
end

local function parse_sig(raw)
  local tags, err = core.dkim_tags(field_value(raw))
  if not tags then return nil, "malformed: " .. err end
  for _, t in ipairs({"v", "a", "b", "bh", "d", "h", "s"}) do
    if not tags[t] then return nil, "the " .. t .. "= tag is missing" end
  end
  if tags.v ~= "1" then return nil, "v= is not 1" end
  if not ALGS[tags.a] then return nil, "an unknown algorithm: " .. tags.a end
  local hc, bc = (tags.c or "simple"):match("^(%a+)/?(%a*)$")
  if bc == "" then bc = "simple" end
  if not hc or (hc ~= "simple" and hc ~= "relaxed") or
     (bc ~= "simple" and bc ~= "relaxed") then
    return nil, "an unknown canonicalization: " .. tostring(tags.c)
  end
  local h = {}
  for name in strip_ws(tags.h):gmatch("[^:]+") do h[#h + 1] = name:lower() end
  local has_from = false
  for _, n in ipairs(h) do if n == "from" then has_from = true end end
  if not has_from then return nil, "h= does not sign From" end
  local d = strip_ws(tags.d):lower()
  local i = tags.i and strip_ws(tags.i) or ("@" .. d)
  local idom = i:match("@(.*)$")
  if not idom then return nil, "i= has no @" end
  idom = idom:lower()
  if idom ~= d and idom:sub(-#d - 1) ~= "." .. d then
    return nil, "i= is not in d="
  end
  local l
  if tags.l then
    if not tags.l:match("^%d+$") or #tags.l > 76 then return nil, "a bad l=" end
    l = math.tointeger(tonumber(tags.l)) or math.maxinteger
  end
  if tags.q then
    local ok = false
    for q in strip_ws(tags.q):gmatch("[^:]+") do if q == "dns/txt" then ok = true end end
    if not ok then return nil, "q= does not offer dns/txt" end
  end
  local t = tags.t and tonumber(strip_ws(tags.t))
  local x = tags.x and tonumber(strip_ws(tags.x))
  if (tags.t and not t) or (tags.x and not x) then return nil, "a bad t= or x=" end
  if t and x and x < t then return nil, "x= is before t=" end
  return {tags = tags, alg = tags.a, hcanon = hc, bcanon = bc, h = h,
          domain = d, selector = strip_ws(tags.s), identity = i,
          idomain = idom, l = l, t = t, x = x}
end

-- The key record for sig: the key's tags, or nil, result, reason.
local function fetch_key(sig, opts, keys)
  local name = sig.selector .. "._domainkey." .. sig.domain
  local cached = keys[name]
  if cached then return table.unpack(cached, 1, 3) end
  local dns = require "smtpd.dns"
  local res, err, info = dns.query(name, "TXT",
    {timeout = opts.timeout or M.DEFAULT_TIMEOUT, map = opts.map, _shared = true})
  local out
  if not res then
    if info and info.temporary then
      out = {nil, "temperror", "key lookup: " .. err}
    else
      out = {nil, "permerror", "no key record (" .. err .. ")"}
    end
  else
    local why = "no usable key record"
    for _, r in ipairs(res) do
      local k, kerr = core.dkim_tags(r.text or "")
      if k and (not k.v or k.v == "DKIM1") then
        out = {k}
        break
      end
      why = kerr and ("a malformed key record: " .. kerr) or "v= is not DKIM1"
    end
    out = out or {nil, "permerror", why}
  end
  keys[name] = out
  return table.unpack(out, 1, 3)
end

local function check_key(sig, key)
  local kt = (key.k and strip_ws(key.k) or "rsa"):lower()
  if kt ~= ALGS[sig.alg] then return "the key is " .. kt .. ", not " .. ALGS[sig.alg] end
  if key.h then
    local want, ok = sig.alg:match("%-(sha%d+)$"), false
    for hname in strip_ws(key.h):gmatch("[^:]+") do if hname == want then ok = true end end
    if not ok then return "the key does not allow " .. want end
  end
  if key.s then
    local ok = false
    for s in strip_ws(key.s):gmatch("[^:]+") do if s == "*" or s == "email" then ok = true end end
    if not ok then return "the key is not for email" end
  end
  if strip_ws(key.p or "") == "" then return "the key was revoked (empty p=)" end
  return nil
end

-- Picks the fields h= names, each instance from the bottom up (RFC 6376
-- 5.4.2); a name with no instance left signs as the empty string.
local function signed_fields(fields, h)
  local used, out, over = {}, {}, {}
  for _, name in ipairs(h) do
    local found
    for j = #fields, 1, -1 do
      if not used[j] and fields[j].name == name then
        found = j
        break
      end
    end
    if found then
      used[found] = true
      out[#out + 1] = fields[found].raw
    else
      over[name] = true
    end
  end
  local list = {}
  for name in pairs(over) do list[#list + 1] = name end
  table.sort(list)
  return out, list
end

local function header_data(fields, h, sigraw, relaxed)
  local parts = {}
  local chosen, over = signed_fields(fields, h)
  for _, raw in ipairs(chosen) do
    parts[#parts + 1] = core.dkim_canon_header(raw, relaxed, true)
  end
  parts[#parts + 1] = core.dkim_canon_header(sigraw, relaxed, false)
  return table.concat(parts), over
end

local function verify_one(data, fields, body_at, raw, opts, keys, bodies)
  local sig, why = parse_sig(raw)
  local r = {result = "permerror", reason = why}
  if not sig then
    local tags = core.dkim_tags(field_value(raw)) or {}
    r.domain, r.selector, r.algorithm = tags.d, tags.s, tags.a
    return r
  end
  r.domain, r.selector, r.algorithm = sig.domain, sig.selector, sig.alg
  r.identity, r.headers, r.length = sig.identity, sig.h, sig.l
  r.timestamp, r.expires = sig.t, sig.x
  local now = opts.now or os.time()
  if sig.x and now > sig.x then
    r.result, r.reason = "fail", "the signature expired"
    return r
  end
  local key, kres, kwhy = fetch_key(sig, opts, keys)
  if not key then
    r.result, r.reason = kres, kwhy
    return r
  end
  why = check_key(sig, key)
  if why then
    r.result, r.reason = "permerror", why
    return r
  end
  if key.t then
    for f in strip_ws(key.t):gmatch("[^:]+") do
      if f == "y" then r.testing = true end
      if f == "s" and sig.idomain ~= sig.domain then
        r.result, r.reason = "permerror", "the key wants i= to be d= exactly (t=s)"
        return r
      end
    end
  end
  -- the body hash, once per (canonicalization, hash, l)
  local hashname = sig.alg == "rsa-sha1" and "rsa-sha1" or "rsa-sha256"
  local bkey = sig.bcanon .. " " .. hashname .. " " .. tostring(sig.l)
  local b = bodies[bkey]
  if not b then
    local digest, total, hashed = core.dkim_body_hash(data, body_at,
      sig.bcanon == "relaxed", hashname, sig.l)
    b = {digest = digest, total = total, hashed = hashed}
    bodies[bkey] = b
  end
  if sig.l then
    if sig.l > b.total then
      r.result, r.reason = "permerror", "l= is past the end of the body"
      return r
    end
    if b.total > sig.l then r.unsigned_body = b.total - sig.l end
  end
  if strip_ws(sig.tags.bh) ~= b.digest and b.streamed then
    -- hashed as the data arrived: made again from the message before
    -- saying fail (the stream only ever saves work)
    local digest, total, hashed = core.dkim_body_hash(data, body_at,
      sig.bcanon == "relaxed", hashname, sig.l)
    b = {digest = digest, total = total, hashed = hashed}
    bodies[bkey] = b
  end
  if strip_ws(sig.tags.bh) ~= b.digest then
    r.result, r.reason = "fail", "the body hash does not verify"
    return r
  end
  r.body_streamed = b.streamed or nil   -- the hash made as the data came
  local sigraw = without_b(raw)
  local hdata, over = header_data(fields, sig.h, sigraw, sig.hcanon == "relaxed")
  r.oversigned = over
  local ok, vwhy, bits = core.dkim_verify(sig.alg, strip_ws(key.p), hdata,
                                          strip_ws(sig.tags.b))
  if ok == nil then
    r.result, r.reason = "permerror", vwhy
    return r
  end
  r.bits = ok and vwhy or bits
  if ALGS[sig.alg] == "rsa" and r.bits < M.MIN_RSA_BITS then
    r.result, r.reason = "permerror", ("an RSA key of %d bits (at least %d)")
                                      :format(r.bits, M.MIN_RSA_BITS)
    return r
  end
  if not ok then
    r.result, r.reason = "fail", vwhy
    return r
  end
  if sig.alg == "rsa-sha1" and not opts.allow_sha1 then
    r.result, r.reason = "policy", "rsa-sha1 is not accepted (RFC 8301)"
    return r
  end
  r.result, r.reason = "pass", nil
  return r
end

-- What smtpd.arc shares (the same byte work, keys and header picking).
M._internal = {strip_ws = strip_ws, field_value = field_value,
               without_b = without_b, fetch_key = fetch_key,
               check_key = check_key, header_data = header_data,
               signed_fields = signed_fields, ALGS = ALGS}

-- verify(data [, opts]) -> {results}, one per DKIM-Signature field.
function M.verify(data, opts)
  if type(data) ~= "string" then error("dkim.verify: data must be a string", 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error("dkim.verify: opts must be a table", 2) end
  -- the message's fields, once (opts.fields / opts.body_at: read already)
  local fields, body_at = opts.fields, opts.body_at
  if not fields then fields, body_at = core.dkim_fields(data) end
  local max = opts.max_signatures or M.MAX_SIGNATURES
  local out, keys, bodies = {}, {}, {}
  -- body hashes made while the data arrived (the core's dkim_body_hash)
  for k, v in pairs(opts.bodies or {}) do
    bodies[k] = {digest = v.digest, total = v.total, hashed = v.hashed, streamed = true}
  end
  for _, f in ipairs(fields) do
    if f.name == "dkim-signature" then
      if #out >= max then
        out[#out + 1] = {result = "neutral", reason = ("not checked: more than "
                         .. "%d signatures"):format(max)}
      else
        out[#out + 1] = verify_one(data, fields, body_at, f.raw, opts, keys, bodies)
      end
    end
  end
  return out
end

-- ---- signing --------------------------------------------------------------------

local function read_key(key)
  if type(key) ~= "string" then error("dkim.sign: key must be PEM or a path", 3) end
  if key:find("-----BEGIN", 1, true) then return key end
  local f, err = io.open(key)
  if not f then error("dkim.sign: " .. err, 3) end
  local pem = f:read("a")
  f:close()
  return pem
end

-- Folds a value into lines of at most 76 bytes, at its spaces, and long
-- base64 every 72 bytes.
local function fold_b64(s)
  local parts = {}
  for i = 1, #s, 72 do parts[#parts + 1] = s:sub(i, i + 71) end
  return table.concat(parts, "\r\n\t ")
end

local function sign_one(data, fields, body_at, o, pem, alg)
  local hc, bc = (o.canonicalization or "relaxed/relaxed"):match("^(%a+)/(%a+)$")
  if not hc then error("dkim.sign: canonicalization is header/body", 3) end
  local names = {}
  local wanted = o.headers or M.SIGNED_HEADERS
  local present = {}
  for _, f in ipairs(fields) do present[f.name] = (present[f.name] or 0) + 1 end
  for _, n in ipairs(wanted) do
    n = n:lower()
    for _ = 1, present[n] or 0 do names[#names + 1] = n end
  end
  local over = o.oversign
  if over == nil then over = M.OVERSIGNED end
  if over == true then over = wanted end
  for _, n in ipairs(over or {}) do
    n = n:lower()
    if present[n] or n == "from" then names[#names + 1] = n end
  end
  local seen_from = false
  for _, n in ipairs(names) do if n == "from" then seen_from = true end end
  if not seen_from then names[#names + 1] = "from" end
  local hashname = alg == "rsa-sha1" and "rsa-sha1" or "rsa-sha256"
  local bh = core.dkim_body_hash(data, body_at, bc == "relaxed", hashname, nil)
  local tags = {"v=1", "a=" .. alg, "c=" .. hc .. "/" .. bc,
                "d=" .. o.domain, "s=" .. o.selector}
  if o.identity then tags[#tags + 1] = "i=" .. o.identity end
  local t = o.timestamp or os.time()
  if t ~= false then tags[#tags + 1] = "t=" .. math.floor(t) end
  if o.expire then tags[#tags + 1] = "x=" .. math.floor((t or os.time()) + o.expire) end
  tags[#tags + 1] = "h=" .. table.concat(names, ":")
  tags[#tags + 1] = "bh=" .. bh
  -- the first tags on the field's line, each later one on its own
  local head = "DKIM-Signature: " .. table.concat(tags, "; ", 1, 5) .. ";\r\n\t"
               .. table.concat(tags, ";\r\n\t", 6) .. ";\r\n\tb="
  local hdata = header_data(fields, names, head, hc == "relaxed")
  local b, err = core.dkim_sign(alg, pem, hdata)
  if not b then error("dkim.sign: " .. err, 3) end
  return head .. fold_b64(b)
end

-- sign(data, opts) -> the DKIM-Signature field (several, joined by CRLF,
-- for opts.keys), and the list of fields.
function M.sign(data, opts)
  if type(data) ~= "string" then error("dkim.sign: data must be a string", 2) end
  if type(opts) ~= "table" then error("dkim.sign: a table of options", 2) end
  if type(opts.domain) ~= "string" or not opts.domain:find("^[%w.-]+$") then
    error("dkim.sign: domain must be a domain name", 2)
  end
  local keys = opts.keys or {{selector = opts.selector, key = opts.key,
                              algorithm = opts.algorithm}}
  local fields, body_at = core.dkim_fields(data)
  local out = {}
  for _, k in ipairs(keys) do
    local alg = k.algorithm or "rsa-sha256"
    if not ALGS[alg] then error("dkim.sign: an unknown algorithm: " .. tostring(alg), 2) end
    if type(k.selector) ~= "string" or not k.selector:find("^[%w._-]+$") then
      error("dkim.sign: selector must be a name", 2)
    end
    local o = setmetatable({selector = k.selector}, {__index = opts})
    out[#out + 1] = sign_one(data, fields, body_at, o, read_key(k.key), alg)
  end
  return table.concat(out, "\r\n"), out
end

M._internal.read_key = read_key

-- The key record to publish for a private key (PEM or a path).
function M.key_record(key, algorithm)
  local pem = read_key(key)
  local k = (algorithm or "rsa-sha256"):match("^(%w+)") == "ed25519" and "ed25519" or "rsa"
  return ("v=DKIM1; k=%s; p=%s"):format(k, core.dkim_public_key(pem))
end

return M

-- smtpd.spf: the Sender Policy Framework (RFC 7208) on smtpd.dns, so a
-- hook that checks parks while every other session goes on.
--
--   local result, facts = smtpd.spf.check{ip = "192.0.2.1",
--     helo = "mx.example.org", mailfrom = "alice@example.org"}
--   -- result: "pass" | "fail" | "softfail" | "neutral" | "none" |
--   --         "temperror" | "permerror"
--   -- facts: {identity = "mailfrom" | "helo", domain =, sender =,
--   --         mechanism = (the term that matched), explanation = (a fail's),
--   --         problem = (why a temperror or permerror), lookups =,
--   --         void_lookups =}
--
-- Records and macros are read by the C core (csrc/auth/spf.c: the whole
-- record's syntax is checked before it is evaluated); the evaluation,
-- which asks DNS, is here. Options: timeout (seconds for the whole check,
-- default 20, RFC 7208 section 4.6.4), max_lookups (10), max_void (2),
-- receiver (the %{r} macro, default the host's FQDN), map, identity
-- ("helo" checks the HELO name alone).

local core = require "smtpd.core"
local dns = require "smtpd.dns"

local M = {}

M.DEFAULT_TIMEOUT = 20
M.MAX_LOOKUPS = 10
M.MAX_VOID = 2
-- Section 4.6.4: at most 10 MX names and 10 PTR names looked at.
M.MAX_NAMES = 10

local QUALIFIERS = {["+"] = "pass", ["-"] = "fail", ["~"] = "softfail",
                    ["?"] = "neutral"}

-- An error that ends the whole check with a result (raised, caught in
-- check: every depth of include and redirect stops at once).
local Stop = {}
Stop.__index = Stop
local function stop(result, problem)
  error(setmetatable({result = result, problem = problem}, Stop), 0)
end

local function is_ipv4(ip) return ip:match("^%d+%.%d+%.%d+%.%d+$") ~= nil end

-- Section 4.3: a domain that is malformed or has one label is "none".
local function good_domain(d)
  d = d:gsub("%.$", "")
  if #d == 0 or #d > 253 or not d:find(".", 1, true) then return false end
  for label in (d .. "."):gmatch("([^.]*)%.") do
    if #label == 0 or #label > 63 then return false end
  end
  return true
end

local function remaining(st)
  local left = st.deadline - core.hrtime()
  if left <= 0 then stop("temperror", "the check ran out of time") end
  return left
end

-- A DNS query charged to the check: records, or nil and whether the
-- name was void (nxdomain or nodata); temporary errors stop it.
local function ask(st, name, qtype)
  local res, err, info = dns.query(name, qtype,
    {timeout = math.min(remaining(st), st.query_timeout), map = st.map, _shared = true})
  if res then return res end
  if info and info.temporary then
    stop("temperror", ("DNS %s %s: %s"):format(qtype, name, err))
  end
  return nil, err == "nxdomain" or err == "nodata" or err == "badname"
end

-- The same for a term that counts as a void lookup when nothing comes.
local function ask_counted(st, name, qtype)
  local res, void = ask(st, name, qtype)
  if not res and void then
    st.void = st.void + 1
    if st.void > st.max_void then
      stop("permerror", "more than " .. st.max_void .. " void lookups")
    end
  end
  return res
end

local function charge(st)
  st.lookups = st.lookups + 1
  if st.lookups > st.max_lookups then
    stop("permerror", "more than " .. st.max_lookups .. " DNS lookups")
  end
end

-- The client's addresses' kind of record.
local function addr_type(st) return st.v4 and "A" or "AAAA" end

local function matches_any(st, records, cidr4, cidr6)
  for _, r in ipairs(records or {}) do
    if r.address then
      local prefix = st.v4 and cidr4 or (not st.v4 and cidr6) or nil
      if core.ip_in(st.ip, r.address, prefix) then return true end
    end
  end
  return false
end

-- Section 5.5: the names of the client's PTR records whose own addresses
-- include the client's (at most MAX_NAMES looked at).
local function validated_names(st)
  if st.validated then return st.validated end
  local out = {}
  local rname = core.dns_reverse_name(st.ip)
  local ptrs = rname and dns.query(rname, "PTR",
    {timeout = math.min(remaining(st), st.query_timeout), map = st.map, _shared = true})
  for i, r in ipairs(ptrs or {}) do
    if i > M.MAX_NAMES then break end
    local addrs = dns.query(r.name, addr_type(st),
      {timeout = math.min(remaining(st), st.query_timeout), map = st.map, _shared = true})
    if matches_any(st, addrs) then out[#out + 1] = r.name:gsub("%.$", "") end
  end
  st.validated = out
  return out
end

local function under(name, domain)
  name, domain = name:lower(), domain:lower():gsub("%.$", "")
  return name == domain or name:sub(-#domain - 1) == "." .. domain
end

-- The %{p} macro: a validated name, the domain's own first (section 7.3).
local function p_macro(st, domain)
  local names = validated_names(st)
  for _, n in ipairs(names) do if under(n, domain) then return n end end
  return names[1] or "unknown"
end

-- Expands a domain-spec (a permerror when it is malformed) or, with exp,
-- an explanation's text (nil when it is).
local function expand(st, spec, domain, exp)
  local ctx = st.ctx
  if not ctx then
    ctx = st.make_ctx()
    st.ctx = ctx
  end
  ctx.d = domain
  if spec:find("%%{[pP]") then ctx.p = p_macro(st, domain) end
  local out, err = core.spf_expand(spec, ctx, exp, not exp)
  if not out and not exp then stop("permerror", err) end
  return out
end

local check_host

-- The explanation of a fail (section 6.2): any trouble means none.
local function explain(st, rec, domain)
  local term
  for _, t in ipairs(rec) do if t.kind == "exp" then term = t end end
  if not term then return nil end
  local ok, text = pcall(function()
    local name = expand(st, term.spec, domain, false)
    local res = dns.query(name, "TXT",
      {timeout = math.min(remaining(st), st.query_timeout), map = st.map, _shared = true})
    if not res or #res ~= 1 then return nil end
    local out = expand(st, res[1].text, domain, true)
    if out and out:find("^[\32-\126]*$") then return out end
    return nil
  end)
  return ok and text or nil
end

local function describe(t)
  local s = (t.q ~= "+" and t.q or "") .. t.kind
  if t.addr then s = s .. ":" .. t.addr
  elseif t.spec then s = s .. ":" .. t.spec end
  if t.cidr4 then s = s .. "/" .. t.cidr4 end
  if t.cidr6 then s = s .. "//" .. t.cidr6 end
  return s
end

-- One mechanism: true when it matches.
local function mechanism(st, t, domain, depth)
  local kind = t.kind
  if kind == "all" then return true end
  if kind == "ip4" then return core.ip_in(st.ip, t.addr, t.cidr4) end
  if kind == "ip6" then return core.ip_in(st.ip, t.addr, t.cidr6) end
  charge(st)
  local target = t.spec and expand(st, t.spec, domain, false) or domain
  if kind == "include" then
    local r = check_host(st, target, depth + 1)
    if r == "pass" then return true end
    if r == "temperror" then stop("temperror", "in include:" .. target) end
    if r == "permerror" or r == "none" then
      stop("permerror", "include:" .. target .. " gave " .. r)
    end
    return false
  elseif kind == "a" then
    return matches_any(st, ask_counted(st, target, addr_type(st)),
                       t.cidr4, t.cidr6)
  elseif kind == "mx" then
    local mx = ask_counted(st, target, "MX")
    if not mx then return false end
    if #mx > M.MAX_NAMES then
      stop("permerror", "more than " .. M.MAX_NAMES .. " MX names for " .. target)
    end
    for _, r in ipairs(mx) do
      local ex = (r.exchange or ""):gsub("%.$", "")
      if ex ~= "" and matches_any(st, ask(st, ex, addr_type(st)),
                                  t.cidr4, t.cidr6) then
        return true
      end
    end
    return false
  elseif kind == "ptr" then
    for _, n in ipairs(validated_names(st)) do
      if under(n, target) then return true end
    end
    return false
  elseif kind == "exists" then
    local r = ask_counted(st, target, "A")
    return r ~= nil and #r > 0
  end
  return false
end

-- check_host() of section 4: the result for domain.
-- Records read, by their text (a busy server sees the same few again and
-- again); bounded, and read-only to their users.
local parsed, parsed_n = {}, 0
local PARSED_MAX = 512
local function parse(text)
  local hit = parsed[text]
  if hit then return hit[1], hit[2] end
  local rec, err = core.spf_parse(text)
  if parsed_n >= PARSED_MAX then parsed, parsed_n = {}, 0 end
  parsed[text] = {rec, err}
  parsed_n = parsed_n + 1
  return rec, err
end

function check_host(st, domain, depth)
  if depth > 20 then stop("permerror", "includes and redirects nest too deep") end
  domain = domain:gsub("%.$", "")
  if not good_domain(domain) then return "none" end
  local txt = ask(st, domain, "TXT")
  if not txt then return "none" end   -- nxdomain or nodata (temporary: stopped)
  local found
  for _, r in ipairs(txt) do
    local text = r.text or ""
    if text:sub(1, 6):lower() == "v=spf1" and (#text == 6 or text:sub(7, 7) == " ") then
      if found then stop("permerror", "more than one SPF record for " .. domain) end
      found = text
    end
  end
  if not found then return "none" end
  local rec, err = parse(found)
  if not rec then stop("permerror", err .. " (" .. domain .. ")") end
  local redirect
  for _, t in ipairs(rec) do
    if t.kind == "redirect" then
      redirect = t
    elseif t.kind ~= "exp" and t.kind ~= "modifier" then
      if mechanism(st, t, domain, depth) then
        local result = QUALIFIERS[t.q]
        if depth == 0 or not st.facts.mechanism then
          st.facts.mechanism = describe(t)
          st.facts.matched_domain = domain
        end
        if result == "fail" then
          st.facts.explanation = explain(st, rec, domain)
        end
        return result
      end
    end
  end
  if redirect then
    charge(st)
    local target = expand(st, redirect.spec, domain, false)
    local r = check_host(st, target, depth + 1)
    if r == "none" then
      stop("permerror", "redirect=" .. target .. " has no SPF record")
    end
    return r
  end
  return "neutral"
end

-- The i macro: dotted IPv4, or the 32 nibbles of IPv6 separated by dots,
-- written in the case the address was given in (the openspf suite's
-- reading).
local function i_macro(ip, v4)
  if v4 then return ip end
  local function groups(part)
    local out = {}
    for g in part:gmatch("[^:]+") do
      local a, b, c, d = g:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
      if a then
        out[#out + 1] = ("%02x%02x"):format(a, b)
        out[#out + 1] = ("%02x%02x"):format(c, d)
      else
        out[#out + 1] = ("0"):rep(4 - #g) .. g
      end
    end
    return out
  end
  local head, tail = ip:match("^(.-)::(.*)$")
  local all
  if head then
    local h, t = groups(head), groups(tail)
    all = h
    for _ = 1, 8 - #h - #t do all[#all + 1] = "0000" end
    for _, g in ipairs(t) do all[#all + 1] = g end
  else
    all = groups(ip)
  end
  return (table.concat(all):gsub(".", "%0."):gsub("%.$", ""))
end

-- check{ip =, helo =, mailfrom = [, timeout =, ...]} -> result, facts
function M.check(opts)
  if type(opts) ~= "table" then error("spf.check: a table of options", 2) end
  local ip, helo, mailfrom = opts.ip, opts.helo, opts.mailfrom
  if type(ip) ~= "string" then error("spf.check: ip must be a string", 2) end
  if helo ~= nil and type(helo) ~= "string" then
    error("spf.check: helo must be a string", 2)
  end
  if mailfrom ~= nil and type(mailfrom) ~= "string" then
    error("spf.check: mailfrom must be a string", 2)
  end
  local timeout = opts.timeout or M.DEFAULT_TIMEOUT
  if type(timeout) ~= "number" or timeout <= 0 then
    error("spf.check: timeout must be seconds above 0", 2)
  end
  -- An IPv4-mapped IPv6 client is its IPv4 address (section 5).
  local mapped = ip:lower():match("^::ffff:(%d+%.%d+%.%d+%.%d+)$")
  if mapped then ip = mapped end
  if not core.dns_reverse_name(ip) then
    error("spf.check: not an IP address: " .. ip, 2)
  end
  local v4 = is_ipv4(ip)
  local identity = opts.identity == "helo" and "helo" or "mailfrom"
  mailfrom = (mailfrom or ""):gsub("^<(.*)>$", "%1")
  helo = helo or ""
  -- An empty MAIL FROM is checked as postmaster@ the HELO name (2.4).
  local sender = (identity == "helo" or mailfrom == "") and "postmaster@" .. helo
                 or mailfrom
  local lp, dom = sender:match("^(.*)@([^@]*)$")
  if not lp then lp, dom = "postmaster", sender end
  if lp == "" then lp = "postmaster" end
  sender = lp .. "@" .. dom
  local st = {
    ip = ip, v4 = v4, lookups = 0, void = 0, map = opts.map,
    max_lookups = opts.max_lookups or M.MAX_LOOKUPS,
    max_void = opts.max_void or M.MAX_VOID,
    deadline = core.hrtime() + timeout,
    query_timeout = opts.query_timeout or math.min(timeout, dns.DEFAULT_TIMEOUT),
    facts = {identity = identity, domain = dom, sender = sender},
  }
  -- the macros' values, made when a macro is first expanded
  st.make_ctx = function()
    return {s = sender, l = lp, o = dom, h = helo ~= "" and helo or "unknown",
            i = i_macro(ip, v4), v = v4 and "in-addr" or "ip6",
            c = v4 and ip or core.ip_text(ip),
            r = opts.receiver or core.getfqdn() or "unknown",
            t = tostring(os.time())}
  end
  local ok, result = pcall(check_host, st, dom, 0)
  if not ok then
    if getmetatable(result) ~= Stop then error(result, 0) end
    st.facts.problem = result.problem
    result = result.result
  end
  st.facts.lookups, st.facts.void_lookups = st.lookups, st.void
  return result, st.facts
end

return M

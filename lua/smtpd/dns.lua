-- smtpd.dns: DNS without blocking. Queries go through c-ares on the
-- map's loop (a hook that asks parks, every other session goes on);
-- answers are read by lua-smtpd's own parser and kept in a bounded cache
-- (positive and negative, RFC 2308) shared by every server on the map.
--
--   local dns = require "smtpd.dns"
--   local mx, err, info = dns.query("example.org", "MX")
--   -- mx[1].preference, mx[1].exchange, mx[1].ttl, mx[1].owner; mx.ad
--   -- (A/AAAA: address; TXT: text, strings; PTR/CNAME/NS: name; SRV:
--   -- priority, weight, port, target; SOA: mname, rname, serial, ...;
--   -- TLSA: usage, selector, mtype, data in hex)
--   -- or nil, "nxdomain" | "nodata" | "servfail" | "refused" | "timeout"
--   --        | "formerr" | ..., {temporary = bool, rcode =, ttl =}
--
-- Helpers: resolve(host), reverse(ip), fcrdns(ip), listed(ip_or_name,
-- zone), mx(domain). configure{servers =, timeout =, tries =, cache =,
-- map =} (default: /etc/resolv.conf's servers).

local core = require "smtpd.core"
local wait = require "smtpd.wait"
local util = require "smtpd.util"

local M = {available = true}

local TYPES = {A = 1, NS = 2, CNAME = 5, SOA = 6, PTR = 12, MX = 15,
               TXT = 16, AAAA = 28, SRV = 33, TLSA = 52}
M.TYPES = TYPES

M.DEFAULT_TIMEOUT = 10
-- Cache bounds: entries, the longest a positive answer is kept, the
-- longest a negative one is (RFC 2308 section 5: one to three hours).
local cache_max, ttl_max, neg_ttl_max = 10000, 86400, 3600

-- caches[map] = {entries = {key -> entry}, order = {keys}, head, count}
local caches = setmetatable({}, {__mode = "k"})
local hosts_cache

local function cache_of(map)
  local c = caches[map]
  if not c then
    c = {entries = {}, order = {}, head = 1, count = 0, hits = 0,
         misses = 0}
    caches[map] = c
  end
  return c
end

local function now() return core.hrtime() end

local function copy_records(res, age)
  local out = {ad = res.ad, rcode = res.rcode, cname = res.cname}
  for i, r in ipairs(res) do
    local c = {}
    for k, v in pairs(r) do c[k] = v end
    c.ttl = math.max(0, r.ttl - age)
    out[i] = c
  end
  out.ttl = math.max(0, (res.ttl or 0) - age)
  return out
end

-- shared: the cache's own records (smtpd's own readers, which only read
-- them), not a copy with its ttls aged.
local function cache_get(map, key, shared)
  local c = caches[map]
  local e = c and c.entries[key]
  if not e then
    if c then c.misses = c.misses + 1 end
    return nil
  end
  local t = now()
  if t >= e.expires then
    c.entries[key] = nil
    c.count = c.count - 1
    c.misses = c.misses + 1
    return nil
  end
  c.hits = c.hits + 1
  if shared and e.records then return e.records end
  local age = math.floor(t - e.stored)
  if e.records then return copy_records(e.records, age) end
  local info = {}
  for k, v in pairs(e.info) do info[k] = v end
  info.ttl = math.max(0, (info.ttl or 0) - age)
  return nil, e.err, info
end

local function cache_put(map, key, ttl, records, err, info)
  if cache_max == 0 or ttl <= 0 then return end
  local c = cache_of(map)
  if not c.entries[key] then
    c.count = c.count + 1
    c.order[#c.order + 1] = key
  end
  local t = now()
  c.entries[key] = {expires = t + ttl, stored = t, records = records,
                    err = err, info = info}
  -- Oldest first out; keys already gone are skipped.
  while c.count > cache_max do
    local k = c.order[c.head]
    c.order[c.head] = nil
    c.head = c.head + 1
    if k and c.entries[k] then
      c.entries[k] = nil
      c.count = c.count - 1
    end
  end
  if c.head > 4096 and c.head > #c.order / 2 then
    local order = {}
    for i = c.head, #c.order do order[#order + 1] = c.order[i] end
    c.order, c.head = order, 1
  end
end

local function qtype_code(qtype)
  if type(qtype) == "string" then
    local code = TYPES[qtype:upper()]
    if code then return code, qtype:upper() end
  elseif math.type(qtype) == "integer" and qtype > 0 and qtype < 65536 then
    return qtype, tostring(qtype)
  end
  error("dns: qtype must be one of A, AAAA, MX, TXT, PTR, CNAME, NS, SOA, "
        .. "SRV, TLSA (or a type number)", 3)
end

local function check_opts(opts, what)
  if opts ~= nil and type(opts) ~= "table" then
    error(what .. ": options must be a table", 3)
  end
  opts = opts or {}
  local t = opts.timeout
  if t ~= nil and (type(t) ~= "number" or t <= 0 or t >= 1e6) then
    error(what .. ": timeout must be a positive number of seconds", 3)
  end
  return opts
end

-- One query on the wire, with our own deadline on top of c-ares's.
local function ask(map, name, code, timeout, edns)
  return wait.wait(map, function(m, done)
    local timer, q
    local finished = false
    local function finish(...)
      if finished then return end
      finished = true
      if timer then timer:cancel() end
      if q then q:cancel() end
      done(...)
    end
    local r1, r2, r3 = core.dns_query(m, name, code, edns and 3 or 2, finish)
    if r1 == nil then
      finish(nil, r2, r3)
      return
    end
    q = r1
    if finished then return end
    timer = core.after(m, timeout, function()
      finish(nil, "timeout", {temporary = true, ad = false})
    end)
    return {cancel = function()
      finished = true
      timer:cancel()
      q:cancel()
    end}
  end, "smtpd.dns")
end

-- query(name, qtype [, opts]) -> records | nil, err, info.
-- opts: timeout (seconds), cache (false: neither read nor fill it), map.
function M.query(name, qtype, opts)
  if type(name) ~= "string" then error("dns.query: name must be a string", 2) end
  local code, tname = qtype_code(qtype)
  opts = check_opts(opts, "dns.query")
  local map = wait.current_map(opts.map)
  local key = tname .. " " .. name:lower():gsub("%.$", "")
  local use_cache = opts.cache ~= false
  if use_cache then
    local r, err, info = cache_get(map, key, opts._shared)
    if r or err then return r, err, info end
  end
  local timeout = opts.timeout or M.DEFAULT_TIMEOUT
  local res, err, info = ask(map, name, code, timeout, true)
  if err == "formerr" and info and info.rcode == 1 then
    -- A server that does not know EDNS (RFC 6891 section 7).
    res, err, info = ask(map, name, code, timeout, false)
  end
  if use_cache then
    if res then
      cache_put(map, key, math.min(res.ttl or 0, ttl_max), res)
      res = copy_records(res, 0)
    elseif info and not info.temporary and info.ttl then
      cache_put(map, key, math.min(info.ttl, neg_ttl_max), nil, err, info)
    end
  end
  return res, err, info
end

-- The hosts file, read once (until configure).
local function hosts()
  if hosts_cache then return hosts_cache end
  hosts_cache = {}
  local f = io.open(M.HOSTS or "/etc/hosts")
  if f then
    for line in f:lines() do
      line = line:gsub("#.*", "")
      local ip, names = line:match("^%s*(%S+)%s+(.+)$")
      if ip then
        for n in names:gmatch("%S+") do
          local l = hosts_cache[n:lower()] or {}
          l[#l + 1] = ip
          hosts_cache[n:lower()] = l
        end
      end
    end
    f:close()
  end
  return hosts_cache
end

local function is_ip(s)
  return s:match("^%d+%.%d+%.%d+%.%d+$") ~= nil or s:find(":", 1, true) ~= nil
end

-- resolve(host [, opts]) -> {addresses} (IPv4 first, then IPv6) | nil,
-- err, info. An IP address is itself; the hosts file is read first.
function M.resolve(host, opts)
  if type(host) ~= "string" then error("dns.resolve: host must be a string", 2) end
  opts = check_opts(opts, "dns.resolve")
  if is_ip(host) then return {host} end
  local h = hosts()[host:lower():gsub("%.$", "")]
  if h then return {table.unpack(h)} end
  local out = {}
  local a, err4, info4 = M.query(host, "A", opts)
  local aaaa, err6, info6 = M.query(host, "AAAA", opts)
  for _, r in ipairs(a or {}) do out[#out + 1] = r.address end
  for _, r in ipairs(aaaa or {}) do out[#out + 1] = r.address end
  if #out > 0 then return out end
  -- Both failed: a temporary failure of either is the answer.
  if info4 and info4.temporary then return nil, err4, info4 end
  if info6 and info6.temporary then return nil, err6, info6 end
  return nil, err4 or err6, info4 or info6
end

-- reverse(ip [, opts]) -> {names} | nil, err, info
function M.reverse(ip, opts)
  if type(ip) ~= "string" then error("dns.reverse: ip must be a string", 2) end
  local name = core.dns_reverse_name(ip)
  if not name then error("dns.reverse: not an IP address: " .. ip, 2) end
  local res, err, info = M.query(name, "PTR", opts)
  if not res then return nil, err, info end
  local out = {}
  for _, r in ipairs(res) do out[#out + 1] = r.name end
  return out
end

local function same_ip(a, b)
  return a:lower() == b:lower()
end

-- fcrdns(ip [, opts]) -> name | nil, err, info: forward-confirmed reverse
-- DNS (a PTR name whose addresses include ip). err "mismatch" when no
-- PTR name leads back.
function M.fcrdns(ip, opts)
  local names, err, info = M.reverse(ip, opts)
  if not names then return nil, err, info end
  local temp
  for _, n in ipairs(names) do
    local addrs, e, i = M.resolve(n, opts)
    for _, a in ipairs(addrs or {}) do
      if same_ip(a, ip) then return n end
    end
    if not addrs and i and i.temporary then temp = {e, i} end
  end
  if temp then return nil, temp[1], temp[2] end
  return nil, "mismatch", {temporary = false}
end

-- listed(ip_or_name, zone [, opts]) -> {codes} ("127.0.0.2", ..., and
-- .txt when the list says why) | false (not listed) | nil, err, info
-- (temporary: the list could not be asked).
function M.listed(what, zone, opts)
  if type(what) ~= "string" or type(zone) ~= "string" or zone == "" then
    error("dns.listed: an address or a name, and a zone", 2)
  end
  local name
  if is_ip(what) then
    name = core.dns_reverse_name(what, zone)
    if not name then error("dns.listed: not an IP address: " .. what, 2) end
  else
    name = what:gsub("%.$", "") .. "." .. zone
  end
  local res, err, info = M.query(name, "A", opts)
  if not res then
    if err == "nxdomain" or err == "nodata" then return false end
    return nil, err, info
  end
  local codes = {}
  for _, r in ipairs(res) do codes[#codes + 1] = r.address end
  local txt = M.query(name, "TXT", opts)
  if txt and txt[1] then codes.txt = txt[1].text end
  return codes
end

-- mx(domain [, opts]) -> {{preference =, exchange =}, ...} sorted by
-- preference | nil, err, info. No MX record: the domain itself (RFC 5321
-- section 5.1, implicit = true); a null MX (RFC 7505): nil, "nullmx".
function M.mx(domain, opts)
  if type(domain) ~= "string" then error("dns.mx: domain must be a string", 2) end
  local res, err, info = M.query(domain, "MX", opts)
  if not res then
    if err == "nodata" then
      return {{preference = 0, exchange = domain:gsub("%.$", ""),
               implicit = true, ttl = info.ttl or 0}}
    end
    return nil, err, info
  end
  if #res == 1 and (res[1].exchange == "." or res[1].exchange == "") then
    return nil, "nullmx", {temporary = false}
  end
  table.sort(res, function(a, b)
    if a.preference ~= b.preference then return a.preference < b.preference end
    return a.exchange < b.exchange
  end)
  return res
end

-- configure{servers = {"127.0.0.1:5353", ...} | "csv", timeout = seconds
-- (one try), tries =, cache = entries (0 or false: no cache), map =}
function M.configure(opts)
  if type(opts) ~= "table" then error("dns.configure: a table", 2) end
  local map = opts.map or util.socket_map
  local servers = opts.servers
  if type(servers) == "table" then
    for _, s in ipairs(servers) do
      if type(s) ~= "string" or s:find("[,%s]") then
        error("dns.configure: each server is \"ip\" or \"ip:port\" "
              .. "(\"[ipv6]:port\")", 2)
      end
    end
    servers = table.concat(servers, ",")
  elseif servers ~= nil and type(servers) ~= "string" then
    error("dns.configure: servers must be a list of addresses", 2)
  end
  local t = opts.timeout
  if t ~= nil and (type(t) ~= "number" or t <= 0 or t > 600) then
    error("dns.configure: timeout must be seconds in (0, 600]", 2)
  end
  local tries = opts.tries
  if tries ~= nil and (math.type(tries) ~= "integer" or tries < 1 or tries > 20) then
    error("dns.configure: tries must be an integer 1..20", 2)
  end
  if opts.cache ~= nil then
    local n = opts.cache
    if n == false then n = 0 end
    if math.type(n) ~= "integer" or n < 0 then
      error("dns.configure: cache must be a number of entries or false", 2)
    end
    cache_max = n
  end
  local ok, err = core.dns_configure(map, {servers = servers,
    timeout = t and math.floor(t * 1000 + 0.5), tries = tries})
  if not ok then return nil, err end
  caches[map] = nil
  hosts_cache = nil
  return true
end

-- flush([map]): empties the cache. stats([map]) -> {entries, hits, misses}
function M.flush(map)
  caches[map or util.socket_map] = nil
end

function M.stats(map)
  local c = caches[map or util.socket_map]
  if not c then return {entries = 0, hits = 0, misses = 0} end
  return {entries = c.count, hits = c.hits, misses = c.misses}
end

return M

-- smtpd.store(url): one small key-value API over three backends.
--
--   local store = smtpd.store()                  -- this process only
--   local store = smtpd.store("shm:limits?size=8m")  -- shared by --workers
--   local store = smtpd.store("redis://127.0.0.1:6379/0")  -- many machines
--
--   store:set(key, value [, ttl])  -> true | nil, err
--   store:add(key, value [, ttl])  -> true | false, "exists" | nil, err
--   store:get(key)                 -> value (a string) | nil | nil, err
--   store:incr(key [, n [, ttl]])  -> the new integer | nil, err  (atomic;
--                                     the ttl is set when the key is made)
--   store:delete(key)              -> true | nil, err
--
-- ttl in seconds (nil or 0: none). Values are strings (numbers are
-- stored as their text); incr keeps integers. "shm:" stores must be
-- opened before the workers fork (at a script's top level, or by
-- lua-smtpd itself for the default one): memory mapped then is the same
-- in every worker. Redis calls park the hook that makes them.

local core = require "smtpd.core"

local M = {}

local function check_key(k, what)
  if type(k) ~= "string" or k == "" then
    error("store:" .. what .. ": the key must be a non-empty string", 3)
  end
end

local function check_ttl(ttl, what)
  if ttl ~= nil and (type(ttl) ~= "number" or ttl < 0 or ttl ~= ttl) then
    error("store:" .. what .. ": ttl must be seconds, 0 or more", 3)
  end
  return ttl or 0
end

local function check_value(v, what)
  local t = type(v)
  if t ~= "string" and t ~= "number" then
    error("store:" .. what .. ": the value must be a string or a number", 3)
  end
  return tostring(v)
end

local function check_by(n)
  if n ~= nil and math.type(n) ~= "integer" then
    error("store:incr: n must be an integer", 3)
  end
  return n or 1
end

-- ---- memory: this process --------------------------------------------

local Memory = {}
Memory.__index = Memory

M.MEMORY_MAX = 100000

local function mem_live(self, key)
  local e = self._t[key]
  if e and e.exp and e.exp <= core.hrtime() then
    self._t[key] = nil
    self._n = self._n - 1
    return nil
  end
  return e
end

local function mem_put(self, key, e)
  if not self._t[key] then
    self._n = self._n + 1
    if self._n > self._max then
      -- Full: drop what expired; if nothing did, an arbitrary half goes
      -- (a per-process cache of limits, not a database).
      local now = core.hrtime()
      for k, v in pairs(self._t) do
        if v.exp and v.exp <= now then self._t[k] = nil; self._n = self._n - 1 end
      end
      if self._n > self._max then
        local drop = self._n // 2
        for k in pairs(self._t) do
          if drop == 0 then break end
          self._t[k] = nil
          self._n, drop = self._n - 1, drop - 1
        end
      end
    end
  end
  self._t[key] = e
end

local function expiry(ttl)
  return ttl > 0 and core.hrtime() + ttl or nil
end

function Memory:get(key)
  check_key(key, "get")
  local e = mem_live(self, key)
  if e then return tostring(e.v) end
  return nil
end

function Memory:set(key, value, ttl)
  check_key(key, "set")
  value = check_value(value, "set")
  mem_put(self, key, {v = value, exp = expiry(check_ttl(ttl, "set"))})
  return true
end

function Memory:add(key, value, ttl)
  check_key(key, "add")
  value = check_value(value, "add")
  ttl = check_ttl(ttl, "add")
  if mem_live(self, key) then return false, "exists" end
  mem_put(self, key, {v = value, exp = expiry(ttl)})
  return true
end

function Memory:incr(key, n, ttl)
  check_key(key, "incr")
  n = check_by(n)
  ttl = check_ttl(ttl, "incr")
  local e = mem_live(self, key)
  if not e then
    mem_put(self, key, {v = n, exp = expiry(ttl)})
    return n
  end
  local cur = math.tointeger(tonumber(e.v))
  if not cur then return nil, "not an integer" end
  e.v = cur + n
  return e.v
end

function Memory:delete(key)
  check_key(key, "delete")
  if mem_live(self, key) then
    self._t[key] = nil
    self._n = self._n - 1
  end
  return true
end

function Memory:close() end

-- ---- shm: the workers of one machine ----------------------------------

local Shm = {}
Shm.__index = Shm

local dicts = {}      -- name -> core.dict, this process

local function parse_size(s)
  if not s then return nil end
  local n, unit = s:lower():match("^(%d+)([kmg]?)$")
  if not n then return nil end
  local mult = ({[""] = 1, k = 1024, m = 1024 * 1024, g = 1024 * 1024 * 1024})[unit]
  return tonumber(n) * mult
end

M.SHM_DEFAULT_SIZE = 8 * 1024 * 1024

local function open_shm(name, size)
  local d = dicts[name]
  if d then return d end
  if core.worker_index() > 0 then
    return nil, ("the shared store %q must be opened before the workers "
                 .. "start (at the script's top level)"):format(name)
  end
  local err
  d, err = core.dict(size or M.SHM_DEFAULT_SIZE)
  if not d then return nil, err end
  dicts[name] = d
  return d
end

function Shm:get(key)
  check_key(key, "get")
  local v = self._d:get(key)
  if v == nil then return nil end
  return tostring(v)
end

function Shm:set(key, value, ttl)
  check_key(key, "set")
  value = check_value(value, "set")
  return self._d:set(key, value, check_ttl(ttl, "set"))
end

function Shm:add(key, value, ttl)
  check_key(key, "add")
  value = check_value(value, "add")
  return self._d:add(key, value, check_ttl(ttl, "add"))
end

function Shm:incr(key, n, ttl)
  check_key(key, "incr")
  return self._d:incr(key, check_by(n), check_ttl(ttl, "incr"))
end

function Shm:delete(key)
  check_key(key, "delete")
  self._d:delete(key)
  return true
end

function Shm:count()
  return self._d:count()
end

function Shm:close() end

-- ---- redis: many machines ---------------------------------------------

local Redis = {}
Redis.__index = Redis

-- INCRBY and, when that made the key (or it has no expiry), PEXPIRE: one
-- atomic step, so a crash between them cannot leave a counter forever.
local INCR_SCRIPT = [[
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if tonumber(ARGV[2]) > 0 and redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return v]]

local function with_redis(self, fn)
  local redis = require "smtpd.redis"
  local r, err = redis.connect(self._opts)
  if not r then return nil, err end
  local a, b = fn(r)
  if a == nil and b and not b:match("^%u+ ") then
    r:close()                         -- a transport error: not reused
  else
    r:set_keepalive(60, 64)
  end
  return a, b
end

local function ms(ttl) return math.floor(ttl * 1000 + 0.5) end

function Redis:get(key)
  check_key(key, "get")
  local redis = require "smtpd.redis"
  local v, err = with_redis(self, function(r) return r:get(key) end)
  if v == redis.null then return nil end
  return v, err
end

function Redis:set(key, value, ttl)
  check_key(key, "set")
  value = check_value(value, "set")
  ttl = check_ttl(ttl, "set")
  local ok, err = with_redis(self, function(r)
    if ttl > 0 then return r:set(key, value, "PX", math.max(1, ms(ttl))) end
    return r:set(key, value)
  end)
  if not ok then return nil, err end
  return true
end

function Redis:add(key, value, ttl)
  check_key(key, "add")
  value = check_value(value, "add")
  ttl = check_ttl(ttl, "add")
  local redis = require "smtpd.redis"
  local ok, err = with_redis(self, function(r)
    if ttl > 0 then return r:set(key, value, "NX", "PX", math.max(1, ms(ttl))) end
    return r:set(key, value, "NX")
  end)
  if ok == redis.null then return false, "exists" end
  if not ok then return nil, err end
  return true
end

function Redis:incr(key, n, ttl)
  check_key(key, "incr")
  n = check_by(n)
  ttl = check_ttl(ttl, "incr")
  local v, err = with_redis(self, function(r)
    return r:eval(INCR_SCRIPT, 1, key, n, ms(ttl))
  end)
  if not v then
    if err and err:find("not an integer", 1, true) then
      return nil, "not an integer"
    end
    return nil, err
  end
  return v
end

function Redis:delete(key)
  check_key(key, "delete")
  local ok, err = with_redis(self, function(r) return r:del(key) end)
  if not ok then return nil, err end
  return true
end

function Redis:close() end

-- ---- opening ------------------------------------------------------------

-- smtpd.store(url) -> a store | nil, err. url: nil or "memory:" (this
-- process), "shm:NAME[?size=8m]" (shared by --workers), "redis://...",
-- "rediss://..." or "unix:/path" (Redis).
function M.open(url)
  if url == nil or url == "memory:" or url == "memory" then
    return setmetatable({_t = {}, _n = 0, _max = M.MEMORY_MAX,
                         kind = "memory"}, Memory)
  end
  if type(url) ~= "string" then
    error("smtpd.store: a URL (memory:, shm:NAME, redis://...)", 2)
  end
  local name, query = url:match("^shm:([^?]*)%??(.*)$")
  if name then
    local size
    if query ~= "" then
      size = parse_size(query:match("size=([^&]+)"))
      if not size then error("smtpd.store: shm size must be like 8m", 2) end
    end
    local d, err = open_shm(name ~= "" and name or "default", size)
    if not d then return nil, err end
    return setmetatable({_d = d, kind = "shm", name = name}, Shm)
  end
  if url:match("^rediss?://") or url:match("^unix:/") then
    local redis = require "smtpd.redis"
    local opts = redis.parse(url)
    opts.timeout = opts.timeout or 2
    return setmetatable({_opts = opts, kind = "redis", url = url}, Redis)
  end
  error("smtpd.store: unknown kind of store " .. url
        .. " (memory:, shm:NAME, redis://...)", 2)
end

-- The default shared store of rate_limits: lua-smtpd opens it before it
-- forks its workers.
M.DEFAULT_SHARED = "shm:smtpd"

function M.prefork()
  return open_shm("smtpd")
end

return setmetatable(M, {__call = function(_, url) return M.open(url) end})

-- smtpd.redis: a Redis (RESP2) client on smtpd.socket, so a hook that
-- waits for Redis parks and every other session goes on.
--
--   local redis = require "smtpd.redis"
--   local r = assert(redis.connect("redis://127.0.0.1:6379/0"))
--   r:set("k", "v", "EX", 60)          -- one method per command
--   local v = r:get("k")                -- "v", or redis.null when absent
--   local n, err = r:call("INCR", "k")  -- an error reply: nil, "ERR ..."
--   r:init_pipeline(); r:incr("a"); r:incr("b")
--   local results = r:commit_pipeline() -- {1, 1}; errors as {false, msg}
--   r:set_keepalive()                   -- back to the pool (or r:close())
--
-- connect(url | {host =, port =, path = (unix socket), username =,
-- password =, db =, tls = true | {verify =, ca =, sni =}, timeout =,
-- pool =}); urls: redis://[user:password@]host[:port][/db],
-- rediss://... (TLS), unix:/path[?db=N].

local socket = require "smtpd.socket"

local M = {}

-- What a nil reply is (a missing key, a nil array): distinct from false.
M.null = setmetatable({}, {__tostring = function() return "redis.null" end,
                           __name = "redis.null"})

M.MAX_BULK = 512 * 1024 * 1024   -- Redis's own bound on a string
M.MAX_ARRAY = 1024 * 1024
M.MAX_DEPTH = 16

local Client = {}
M.Client = Client

local function url_decode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- The options of a URL, or of a table (checked).
function M.parse(spec)
  if type(spec) == "table" then return spec end
  if type(spec) ~= "string" then
    error("redis.connect: a URL or a table of options", 3)
  end
  local o = {}
  local path, query = spec:match("^unix:(/[^?]*)%??(.*)$")
  if path then
    o.path = path
    o.db = tonumber(query:match("db=(%d+)"))
    return o
  end
  local scheme, rest = spec:match("^(rediss?)://(.*)$")
  if not scheme then
    error("redis.connect: the URL must start with redis://, rediss:// or "
          .. "unix:/", 3)
  end
  o.tls = scheme == "rediss" or nil
  local auth, hostpart = rest:match("^([^@/]*)@(.*)$")
  if auth then
    local user, pass = auth:match("^([^:]*):(.*)$")
    if user then
      o.username = user ~= "" and url_decode(user) or nil
      o.password = url_decode(pass)
    else
      o.password = url_decode(auth)
    end
    rest = hostpart
  end
  local hp, db = rest:match("^([^/]*)/?(%d*)$")
  if not hp then error("redis.connect: cannot read the URL " .. spec, 3) end
  local host, port = hp:match("^%[(.+)%]:?(%d*)$")
  if not host then host, port = hp:match("^([^:]*):?(%d*)$") end
  o.host = host ~= "" and host or "127.0.0.1"
  o.port = tonumber(port) or 6379
  o.db = tonumber(db)
  return o
end

local function encode(args, n)
  local out = {"*" .. n .. "\r\n"}
  for i = 1, n do
    local a = args[i]
    local t = type(a)
    if t == "number" then
      a = math.type(a) == "integer" and tostring(a) or ("%.17g"):format(a)
    elseif t ~= "string" then
      error("redis: argument " .. i .. " is a " .. t
            .. " (strings and numbers only)", 4)
    end
    out[#out + 1] = "$" .. #a .. "\r\n"
    out[#out + 1] = a
    out[#out + 1] = "\r\n"
  end
  return table.concat(out)
end

-- Reads one reply: value | nil, err (transport) | false, msg (error
-- reply), depth bounded.
local function read_reply(sock, depth)
  local line, err = sock:receive("*l")
  if not line then return nil, err end
  local kind, rest = line:sub(1, 1), line:sub(2)
  if kind == "+" then return rest end
  if kind == "-" then return false, rest end
  if kind == ":" then
    local n = math.tointeger(tonumber(rest))
    if not n then return nil, "protocol error: bad integer " .. rest end
    return n
  end
  if kind == "$" then
    local n = math.tointeger(tonumber(rest))
    if n == -1 then return M.null end
    if not n or n < -1 or n > M.MAX_BULK then
      return nil, "protocol error: bad bulk length " .. rest
    end
    local data
    data, err = sock:receive(n + 2)
    if not data then return nil, err end
    if data:sub(-2) ~= "\r\n" then return nil, "protocol error: bulk end" end
    return data:sub(1, n)
  end
  if kind == "*" then
    local n = math.tointeger(tonumber(rest))
    if n == -1 then return M.null end
    if not n or n < -1 or n > M.MAX_ARRAY then
      return nil, "protocol error: bad array length " .. rest
    end
    if depth >= M.MAX_DEPTH then return nil, "protocol error: nested too deep" end
    local arr = {}
    for i = 1, n do
      local v, e = read_reply(sock, depth + 1)
      if v == nil then return nil, e end
      if v == false then v = {false, e} end
      arr[i] = v
    end
    return arr
  end
  return nil, "protocol error: unknown reply type " .. line:sub(1, 20)
end

local Meta = {__index = function(self, name)
  local m = Client[name]
  if m then return m end
  if type(name) ~= "string" or not name:match("^%a[%w_]*$") then return nil end
  local cmd = name:upper()
  -- A command method: cached on the class, shared by every client.
  local f = function(c, ...) return c:call(cmd, ...) end
  Client[name] = f
  return f
end}

-- call(cmd, ...) -> reply | nil, "ERR ..." (an error reply) | nil, err.
-- While a pipeline is open, it is queued (returns true).
function Client:call(...)
  local n = select("#", ...)
  if n == 0 then error("redis: call needs a command", 2) end
  local args = {...}
  if self._pipe then
    self._pipe[#self._pipe + 1] = encode(args, n)
    return true
  end
  local sock = self._sock
  if not sock then return nil, "closed" end
  local ok, err = sock:send(encode(args, n))
  if not ok then
    self:close()
    return nil, err
  end
  local v
  v, err = read_reply(sock, 0)
  if v == nil then
    self:close()
    return nil, err
  end
  if v == false then return nil, err end
  return v
end

function Client:init_pipeline()
  self._pipe = {}
end

function Client:cancel_pipeline()
  self._pipe = nil
end

-- commit_pipeline() -> {replies} (an error reply as {false, msg}) | nil, err
function Client:commit_pipeline()
  local pipe = self._pipe
  if not pipe then error("redis: no pipeline (init_pipeline first)", 2) end
  self._pipe = nil
  local sock = self._sock
  if not sock then return nil, "closed" end
  if #pipe == 0 then return {} end
  local ok, err = sock:send(table.concat(pipe))
  if not ok then
    self:close()
    return nil, err
  end
  local out = {}
  for i = 1, #pipe do
    local v, e = read_reply(sock, 0)
    if v == nil then
      self:close()
      return nil, e
    end
    if v == false then v = {false, e} end
    out[i] = v
  end
  return out
end

function Client:settimeout(t)
  if self._sock then self._sock:settimeout(t) end
end

-- set_keepalive([idle_seconds [, pool_size]]): the connection goes back
-- to its pool for the next connect to the same server and database.
function Client:set_keepalive(idle, size)
  local sock = self._sock
  self._sock = nil
  if not sock then return nil, "closed" end
  return sock:setkeepalive(idle, size)
end

function Client:close()
  local sock = self._sock
  self._sock = nil
  if sock then sock:close() end
  return true
end

-- connect(url_or_table) -> client | nil, err
function M.connect(spec)
  local o = M.parse(spec)
  if o.timeout ~= nil and (type(o.timeout) ~= "number" or o.timeout <= 0) then
    error("redis.connect: timeout must be a positive number of seconds", 2)
  end
  if o.db ~= nil and (math.type(o.db) ~= "integer" or o.db < 0) then
    error("redis.connect: db must be a non-negative integer", 2)
  end
  local host = o.path and ("unix:" .. o.path) or o.host or "127.0.0.1"
  local port = o.path and nil or o.port or 6379
  -- A pool per server, user and database: a pooled connection is ready.
  local pool = o.pool or table.concat({"redis", host, tostring(port),
    o.username or "", o.db and tostring(o.db) or "0",
    o.tls and "tls" or ""}, "|")
  local sock = socket.tcp()
  sock:settimeout(o.timeout or 5)
  local ok, err = sock:connect(host, port, {pool = pool, map = o.map})
  if not ok then return nil, err end
  local c = setmetatable({_sock = sock, _opts = o}, Meta)
  if sock:getreusedtimes() > 0 then return c end
  if o.tls then
    ok, err = sock:sslhandshake(type(o.tls) == "table" and o.tls or nil)
    if not ok then return nil, err end
  end
  if o.password then
    if o.username then ok, err = c:call("AUTH", o.username, o.password)
    else ok, err = c:call("AUTH", o.password) end
    if not ok then
      c:close()
      return nil, err
    end
  end
  if o.db and o.db ~= 0 then
    ok, err = c:call("SELECT", o.db)
    if not ok then
      c:close()
      return nil, err
    end
  end
  return c
end

return M

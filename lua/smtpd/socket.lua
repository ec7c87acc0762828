-- smtpd.socket: a TCP (or unix-domain) socket whose calls park the hook
-- that makes them, while the loop serves every other session; at the
-- live prompt and in scripts they run the loop until done. The shape is
-- OpenResty's ngx.socket.tcp (and LuaSocket's names):
--
--   local socket = require "smtpd.socket"
--   local s = socket.tcp()
--   s:settimeout(5)
--   local ok, err = s:connect("127.0.0.1", 6379)
--   s:send("PING\r\n")
--   local line, err, partial = s:receive("*l")
--   s:setkeepalive(60, 10)     -- back to the pool, for the next connect
--
-- Errors are nil, err ("timeout", "closed", "connection refused", ...);
-- misuse raises. Names are resolved by smtpd.dns when it is built in.

local core = require "smtpd.core"
local wait = require "smtpd.wait"

local M = {}

M.DEFAULT_TIMEOUT = 30
-- Bounds of what one receive may buffer.
M.MAX_LINE = 1024 * 1024
M.MAX_ALL = 64 * 1024 * 1024

-- pools[map][name] = {idle sockets (C), oldest first}
local pools = setmetatable({}, {__mode = "k"})

local Socket = {}
Socket.__index = Socket
M.Socket = Socket

function M.tcp()
  return setmetatable({_ct = M.DEFAULT_TIMEOUT, _st = M.DEFAULT_TIMEOUT,
                       _rt = M.DEFAULT_TIMEOUT, _reused = 0}, Socket)
end

local function check_timeout(t, what)
  if t == nil then return nil end
  if type(t) ~= "number" or t <= 0 or t >= 1e7 then
    error(what .. ": a timeout is a number of seconds above 0", 3)
  end
  return t
end

-- settimeout(seconds): every later call's timeout.
function Socket:settimeout(t)
  t = check_timeout(t, "settimeout") or M.DEFAULT_TIMEOUT
  self._ct, self._st, self._rt = t, t, t
end

-- settimeouts(connect, send, read), seconds.
function Socket:settimeouts(c, s, r)
  self._ct = check_timeout(c, "settimeouts") or self._ct
  self._st = check_timeout(s, "settimeouts") or self._st
  self._rt = check_timeout(r, "settimeouts") or self._rt
end

-- Runs method on the C socket, parking until its callback when it does
-- not complete at once.
local function park(self, what, method, n, a, b, c)
  local cs = self._c
  return wait.wait(self._map, function(_, done)
    local r1, r2, r3
    if n == 2 then r1, r2, r3 = cs[method](cs, a, b, done)
    else r1, r2, r3 = cs[method](cs, a, b, c, done) end
    if r1 ~= nil or r2 ~= nil then done(r1, r2, r3) return end
    return cs
  end, what)
end

local function is_ip(host)
  return host:match("^%d+%.%d+%.%d+%.%d+$") or host:find(":", 1, true)
end

-- M.resolve(host, timeout, map) -> {addresses} | nil, err: smtpd.dns
-- installs its resolver here; without it, the system's (thread pool).
function M.resolve(host, timeout, map)
  local ok, dns = pcall(require, "smtpd.dns")
  if ok and dns.available then
    return dns.resolve(host, {timeout = timeout, map = map})
  end
  local res = table.pack(wait.wait(map, function(m, done)
    local h, e = core.resolve_async(m, host, done)
    if not h then done(nil, e) end
    return h
  end, "socket:connect"))
  if not res[1] then return nil, res[2] end
  return {res[1]}
end

local function pool_take(map, name)
  local p = pools[map] and pools[map][name]
  while p and #p > 0 do
    local cs = table.remove(p)
    if cs:wake() then return cs end
  end
end

-- connect(host, port [, opts]) -> true | nil, err. host: a name, an IP
-- address or "unix:/path". opts: pool (its name; default "host:port"),
-- map (outside hooks: the map whose loop runs it).
function Socket:connect(host, port, opts)
  if type(host) ~= "string" or host == "" then
    error("connect: host must be a non-empty string", 2)
  end
  local unix = host:sub(1, 5) == "unix:"
  if not unix and (math.type(port) ~= "integer" or port < 1 or port > 65535) then
    error("connect: port must be an integer 1..65535", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("connect: options must be a table", 2)
  end
  opts = opts or {}
  if self._c then self:close() end
  local map = wait.current_map(opts.map)
  local name = opts.pool or (unix and host or host .. ":" .. port)
  self._map, self._pool, self._host = map, name, host
  local cs = pool_take(map, name)
  if cs then
    self._c = cs
    self._reused = self._reused + 1
    return true
  end
  self._reused = 0
  local addrs
  if unix or is_ip(host) then
    addrs = {host}
  else
    local err
    addrs, err = M.resolve(host, self._ct, map)
    if not addrs then return nil, err end
    if #addrs == 0 then return nil, "no address for " .. host end
  end
  local last = "no address"
  for _, addr in ipairs(addrs) do
    local ok, err = wait.wait(map, function(m, done)
      local s, e = core.sock_connect(m, addr, port, self._ct, done)
      if not s then done(nil, e) return end
      self._c = s
      return s
    end, "socket:connect")
    if ok then return true end
    self._c = nil
    last = err
  end
  return nil, last
end

function Socket:getreusedtimes()
  return self._reused
end

-- sslhandshake([opts]) -> true | nil, err. opts: verify (default true),
-- ca (a PEM file; default the system's), sni (default the host name
-- connected to), cert and key (a client certificate). A socket taken
-- from a pool is already in TLS: true at once.
function Socket:sslhandshake(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("sslhandshake: options must be a table", 2)
  end
  if not self._c then return nil, "closed" end
  opts = opts or {}
  local info = self._c:info()
  if info and info.tls then return true end
  local spec = {verify = opts.verify ~= false, ca = opts.ca,
                sni = opts.sni or (not is_ip(self._host) and self._host or nil),
                cert = opts.cert, key = opts.key}
  local ok, err = park(self, "socket:sslhandshake", "starttls", 2, spec,
                         self._rt)
  if not ok then self._c = nil end
  return ok, err
end

-- send(data) -> bytes sent | nil, err
function Socket:send(data)
  if type(data) == "table" then data = table.concat(data) end
  if type(data) ~= "string" then
    error("send: data must be a string or an array of strings", 2)
  end
  if not self._c then return nil, "closed" end
  local ok, err = park(self, "socket:send", "send", 2, data, self._st)
  if not ok then return nil, err end
  return #data
end

-- receive([pattern [, prefix]]) -> data | nil, err, partial. pattern:
-- "*l" (a line, without its CR LF; the default), "*a" (until the peer
-- closes) or a number of bytes.
function Socket:receive(pattern, prefix)
  local kind, n
  if pattern == nil or pattern == "*l" or pattern == "l" then
    kind, n = "l", M.MAX_LINE
  elseif pattern == "*a" or pattern == "a" then
    kind, n = "a", M.MAX_ALL
  elseif math.type(pattern) == "integer" and pattern >= 0 then
    kind, n = "n", pattern
  else
    error("receive: pattern must be \"*l\", \"*a\" or a byte count", 2)
  end
  local cs = self._c
  if not cs then return nil, "closed", "" end
  local data, err, partial = cs:receive(kind, n, self._rt)
  if data == false then
    data, err, partial = park(self, "socket:receive", "receive", 3, kind, n,
                              self._rt)
  end
  if prefix then
    if data then data = prefix .. data else partial = prefix .. partial end
  end
  return data, err, partial
end

-- setkeepalive([idle_seconds [, pool_size]]) -> true | nil, err: the
-- connection waits in its pool for the next connect to the same place;
-- this object is closed. Unread input refuses it (and closes it).
function Socket:setkeepalive(idle, size)
  idle = check_timeout(idle, "setkeepalive") or 60
  if size ~= nil and (math.type(size) ~= "integer" or size < 1) then
    error("setkeepalive: pool size must be a positive integer", 2)
  end
  size = size or 30
  local cs = self._c
  if not cs then return nil, "closed" end
  self._c = nil
  if not cs:idle(idle) then
    cs:close()
    return nil, "connection in dubious state"
  end
  local byname = pools[self._map]
  if not byname then
    byname = {}
    pools[self._map] = byname
  end
  local p = byname[self._pool]
  if not p then
    p = {}
    byname[self._pool] = p
  end
  p[#p + 1] = cs
  while #p > size do table.remove(p, 1):close() end
  return true
end

function Socket:close()
  local cs = self._c
  self._c = nil
  if cs then cs:close() end
  return true
end

-- info() -> {buffered, received, sent, connected, peer, sock, tls} | nil
function Socket:info()
  return self._c and self._c:info()
end

-- socket.connect(host, port [, opts]) -> a connected socket | nil, err.
-- opts: timeout, pool, map, and tls (true or sslhandshake's options).
function M.connect(host, port, opts)
  local s = M.tcp()
  if opts and opts.timeout then s:settimeout(opts.timeout) end
  local ok, err = s:connect(host, port, opts)
  if not ok then return nil, err end
  if opts and opts.tls then
    ok, err = s:sslhandshake(type(opts.tls) == "table" and opts.tls or nil)
    if not ok then return nil, err end
  end
  return s
end

return M

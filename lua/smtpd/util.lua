-- What several modules share: the default socket map and address parsing.

local core = require "smtpd.core"

local M = {}

-- The default map: servers made without opts.map run in it.
M.socket_map = core.map()

-- Raises msg at the first caller outside this library (a user's call
-- through any depth of constructors and super calls), or at the first C
-- frame (pcall) on the way.
function M.raise(msg)
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    if not info or info.what == "C" or info.what == "main"
        or not info.source:find("[/\\]smtpd[/\\][%w_]+%.lua$") then
      break
    end
    level = level + 1
  end
  error(msg, level)
end

-- "host:port" or "[v6]:port" -> host, port (nil unless it is 0..65535);
-- nil when there is no ":" at all.
function M.split_addr(s)
  local host, port = s:match("^%[(.*)%]:(.*)$")
  if not host then host, port = s:match("^(.*):(.*)$") end
  if not host then return nil end
  port = port:match("^%d+$") and math.tointeger(tonumber(port))
  if port and port > 65535 then port = nil end
  return host, port or nil
end

-- {host, port}, "host:port", "[v6]:port" -> {host, port}. Raises an error
-- naming `what` (at the user's call) when addr is bad.
function M.parse_addr(addr, what)
  what = what or "address"
  local host, port
  if type(addr) == "string" and addr:sub(1, 5) == "unix:" then
    -- A unix domain socket: "unix:/path" (port 0).
    if #addr == 5 then M.raise(("bad %s %q: unix: needs a path"):format(
      what, addr)) end
    return {addr, 0}
  end
  if type(addr) == "table" then
    host, port = addr[1] or addr.host, addr[2] or addr.port
  elseif type(addr) == "string" then
    host, port = M.split_addr(addr)
    if not host then
      M.raise(("bad %s %q: expected \"host:port\""):format(what, addr))
    end
  else
    M.raise(("bad %s: expected {host, port} or \"host:port\", got %s")
            :format(what, type(addr)))
  end
  port = math.tointeger(tonumber(port))
  if type(host) ~= "string" or not port or port < 0 or port > 65535 then
    M.raise(("bad %s: host must be a string and port 0..65535"):format(what))
  end
  return {host, port}
end

-- A plain list of strings from v: a string (one item), a table, or a
-- list-like value (with __len and __index, such as a channel's rcpttos).
-- nil when v is none of these.
function M.strings(v)
  if type(v) == "string" then return {v} end
  local mt = getmetatable(v)
  if type(v) ~= "table" and not (type(mt) == "table" and mt.__len) then
    return nil
  end
  local t = {}
  for i = 1, #v do t[i] = v[i] end
  return t
end

return M

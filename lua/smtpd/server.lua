-- SMTPServer: listens, makes a channel per connection, and hands each
-- message to process_message.

local core = require "smtpd.core"
local Object = require("smtpd.class").Object
local SMTPChannel = require "smtpd.channel"

local M = {}

M.DATA_SIZE_DEFAULT = core.DATA_SIZE_DEFAULT
M.socket_map = core.map()

-- {host, port}, "host:port", "[v6]:port" -> {host, port}
function M.parse_addr(addr, what)
  what = what or "address"
  local host, port
  if type(addr) == "table" then
    host, port = addr[1] or addr.host, addr[2] or addr.port
  elseif type(addr) == "string" then
    host, port = addr:match("^%[(.*)%]:(%d+)$")
    if not host then host, port = addr:match("^(.*):(%d+)$") end
    if not host then
      error(("bad %s %q: expected \"host:port\""):format(what, addr), 3)
    end
  else
    error(("bad %s: expected {host, port} or \"host:port\", got %s")
          :format(what, type(addr)), 3)
  end
  port = math.tointeger(tonumber(port))
  if type(host) ~= "string" or not port or port < 0 or port > 65535 then
    error(("bad %s: host must be a string and port 0..65535"):format(what), 3)
  end
  return {host, port}
end

local SMTPServer = Object:extend("SMTPServer")
SMTPServer.channel_class = SMTPChannel

-- SMTPServer(localaddr, remoteaddr, opts)
function SMTPServer:initialize(localaddr, remoteaddr, opts)
  if type(opts) == "number" or opts == false then
    opts = {data_size_limit = opts}   -- smtpd's positional data_size_limit
  end
  opts = opts or {}
  if type(opts) ~= "table" then
    error("opts must be a table, got " .. type(opts), 3)
  end
  local limit = opts.data_size_limit
  if limit == nil then limit = M.DATA_SIZE_DEFAULT end
  if limit and (math.type(limit) ~= "integer" or limit < 0) then
    error("data_size_limit must be a non-negative integer, 0 or false", 3)
  end
  if limit == 0 then limit = false end
  if opts.enable_SMTPUTF8 and opts.decode_data then
    error("decode_data and enable_SMTPUTF8 cannot be set to true at the "
          .. "same time", 3)
  end
  local function seconds(name, default)
    local v = opts[name]
    if v == nil then return default end
    if v == false or v == 0 then return 0 end
    if type(v) ~= "number" or v < 0 then
      error(name .. " must be a number of seconds (0 or false: none)", 4)
    end
    return v
  end
  local function count(name, default, min)
    local v = opts[name]
    if v == nil then return default end
    if v == false or v == 0 then return 0 end
    if math.type(v) ~= "integer" or v < min then
      error(("%s must be an integer of at least %d (0 or false: no limit)")
            :format(name, min), 4)
    end
    return v
  end
  local limits = {
    timeout = seconds("timeout", 300),
    handler_timeout = seconds("handler_timeout", 300),
    -- RFC 5321 4.5.3.1.8: a server must take at least 100 recipients.
    max_recipients = count("max_recipients", 1000, 100),
    max_bad_commands = count("max_bad_commands", 20, 1),
    max_connections = count("max_connections", 1000, 1),
    max_connections_per_ip = count("max_connections_per_ip", 50, 1),
    data_timeout = seconds("data_timeout", 600),
    data_rate_grace = seconds("data_rate_grace", 30),
    min_data_rate = count("min_data_rate", 128, 1),
    max_data_memory = opts.max_data_memory ~= nil
      and count("max_data_memory", 0, 1) or nil,
    backlog = count("backlog", 1024, 1),
  }
  if opts.reuse_port ~= nil and type(opts.reuse_port) ~= "boolean" then
    error("reuse_port must be true or false", 3)
  end
  local map = opts.map or M.socket_map
  local laddr = M.parse_addr(localaddr, "localaddr")
  self._localaddr = laddr
  self._remoteaddr = remoteaddr ~= nil and M.parse_addr(remoteaddr,
                                                        "remoteaddr") or nil
  self.data_size_limit = limit
  self.enable_SMTPUTF8 = opts.enable_SMTPUTF8 and true or false
  self._decode_data = opts.decode_data and true or false
  self._opts = opts
  self._map = map
  local ip, err = core.resolve(laddr[1])
  if not ip then
    error(("cannot resolve %s: %s"):format(laddr[1], err), 3)
  end
  local handle
  handle, err = core.listen(map, self, ip, laddr[2], {
    data_size_limit = limit or 0,
    enable_SMTPUTF8 = self.enable_SMTPUTF8,
    decode_data = self._decode_data,
    fqdn = opts.fqdn,
    timeout = limits.timeout,
    handler_timeout = limits.handler_timeout,
    max_recipients = limits.max_recipients,
    max_bad_commands = limits.max_bad_commands,
    max_connections = limits.max_connections,
    max_connections_per_ip = limits.max_connections_per_ip,
    data_timeout = limits.data_timeout,
    data_rate_grace = limits.data_rate_grace,
    min_data_rate = limits.min_data_rate,
    max_data_memory = limits.max_data_memory,
    backlog = limits.backlog,
    reuse_port = opts.reuse_port,
  })
  if not handle then
    error(("cannot listen on %s:%d: %s"):format(laddr[1], laddr[2], err), 3)
  end
  self._handle = handle
end

function SMTPServer:process_message(peer, mailfrom, rcpttos, data, kwargs)
  error("process_message is not implemented: subclass SMTPServer and "
        .. "override it", 2)
end

-- Writes one line to stderr (a subclass may send it elsewhere).
function SMTPServer:log(fmt, ...)
  io.stderr:write("smtpd: ", fmt:format(...), "\n")
end

-- Returns host, port of the listening socket.
function SMTPServer:getsockname()
  if not self._handle:is_open() then return nil, "server is closed" end
  return self._handle:getsockname()
end

-- Stops listening and ends the server's sessions: idle ones get
-- "421 ... shutting down" now; one in DATA (or waiting in a hook) may
-- finish its message within grace seconds (default 30), then gets 421.
-- close(false) only stops listening, as asyncore's close did.
function SMTPServer:close(grace)
  if grace == false then return self._handle:close() end
  if grace ~= nil and (type(grace) ~= "number" or grace < 0) then
    error("close: grace must be a number of seconds", 2)
  end
  self._handle:close(grace or 30)
end

function SMTPServer:__tostring()
  local name = getmetatable(self).__name or "SMTPServer"
  if not (self._handle and self._handle:is_open()) then
    return name .. "(closed)"
  end
  local host, port = self._handle:getsockname()
  if host and host:find(":") then host = "[" .. host .. "]" end
  local r = self._remoteaddr
  return ("%s(%s:%s%s, listening)"):format(name, host, port,
    r and (" -> " .. r[1] .. ":" .. r[2]) or "")
end

M.SMTPServer = SMTPServer
return M

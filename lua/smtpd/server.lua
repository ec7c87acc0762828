-- SMTPServer: listens, makes a channel per connection, and hands each
-- message to process_message.

local core = require "smtpd.core"
local Object = require("smtpd.class").Object
local SMTPChannel = require "smtpd.channel"
local options = require "smtpd.options"
local util = require "smtpd.util"
local auth = require "smtpd.auth"

local SMTPServer = Object:extend("SMTPServer")
SMTPServer.channel_class = SMTPChannel

-- The options it takes: the core's (core.OPTIONS.server) and map. A
-- subclass that takes more lists them in its own OPTIONS (so does a
-- channel class): SMTPServer(...) refuses any other key.
SMTPServer.OPTIONS = options.set(core.OPTIONS.server)
SMTPServer.OPTIONS.map = true
-- Read here and by the core: tls = {cert=, key=, implicit=, sni=,
-- client_ca=, verify_client=, handshake_timeout=, ciphers=, min_version=},
-- and the AUTH mechanisms to offer.
SMTPServer.OPTIONS.tls = true
SMTPServer.OPTIONS.proxy_protocol = true
SMTPServer.OPTIONS.auth_mechanisms = true
-- Rate limits (smtpd.limits) and the store they count in (smtpd.store:
-- a URL, or a store object); server.store is that store.
SMTPServer.OPTIONS.rate_limits = true
SMTPServer.OPTIONS.store = true
-- SPF, DKIM, DMARC and Authentication-Results (smtpd.authenticate).
SMTPServer.OPTIONS.authentication = true

-- A check method set on a server object (not its class) must be noticed
-- too: the core looks such methods up once per class change.
function SMTPServer.__newindex(t, k, v)
  rawset(t, k, v)
  if k == "check_sender" or k == "check_recipient" then
    core.class_changed()
  end
end

-- The address to listen on: an address as it is; a name looked up off
-- the loop when the server is made inside a hook or at the live prompt
-- (the lookup waits there, as smtpd.sleep does), else here and now,
-- before the loop runs.
local function resolve(map, host)
  local co, main = coroutine.running()
  local wait = package.loaded["smtpd.wait"]
  if not main and wait and (core.hook(co) or wait.parkable[co]) then
    return wait.wait(map, function(m, done)
      return core.resolve_async(m, host, done)
    end, "SMTPServer")
  end
  return core.resolve(host)
end

-- SMTPServer(localaddr, remoteaddr, opts). The C core reads and checks
-- the options it knows (core.OPTIONS.server: their names and defaults).
function SMTPServer:initialize(localaddr, remoteaddr, opts)
  if type(opts) == "number" or opts == false then
    opts = {data_size_limit = opts}   -- smtpd's positional data_size_limit
  end
  opts = opts or {}
  if type(opts) ~= "table" then
    util.raise("opts must be a table, got " .. type(opts))
  end
  local cls = getmetatable(self)
  options.check(opts, options.known(cls, options.known(self.channel_class)),
                "option")
  if opts.enable_SMTPUTF8 and opts.decode_data then
    util.raise("decode_data and enable_SMTPUTF8 cannot be set to true at the "
          .. "same time")
  end
  if opts.tls and type(opts.tls) ~= "table" then
    util.raise("tls must be a table {cert=, key=, ...}")
  end
  if opts.require_starttls and not opts.tls then
    util.raise("require_starttls needs tls = {cert=, key=}")
  end
  if opts.require_starttls and opts.tls.implicit then
    util.raise("require_starttls makes no sense with tls.implicit (the "
               .. "connection is encrypted from the start)")
  end
  local mechs, merr = auth.mechanisms(self, self.channel_class,
                                      opts.auth_mechanisms)
  if merr then util.raise(merr) end
  if opts.auth_required and not mechs then
    util.raise("auth_required needs AUTH: define server:authenticate (or "
               .. "auth_<MECH> in the channel class)")
  end
  self.auth_mechanisms = mechs
  local map = opts.map or util.socket_map
  local laddr = util.parse_addr(localaddr, "localaddr")
  self._localaddr = laddr
  self._remoteaddr = remoteaddr ~= nil and util.parse_addr(remoteaddr,
                                                           "remoteaddr") or nil
  self._opts = opts
  self._map = map
  -- Authentication first: the rate limits' checks go around its own.
  if opts.authentication ~= nil and opts.authentication ~= false then
    local spec = require("smtpd.authenticate").install(self, opts.authentication)
    if spec.dkim or spec.dmarc then
      -- DKIM's body hashes are made by the core while the data arrives
      local copy = {}
      for k, v in pairs(opts) do copy[k] = v end
      copy.dkim_body_hash = true
      opts = copy
    end
  end
  if opts.store ~= nil or opts.rate_limits ~= nil then
    local limits = require "smtpd.limits"
    if opts.rate_limits ~= nil then limits.check(opts.rate_limits) end
    local store = opts.store
    if store == nil or type(store) == "string" then
      local serr
      store, serr = require("smtpd.store").open(store or "shm:smtpd")
      if not store then util.raise("store: " .. tostring(serr)) end
    elseif type(store) ~= "table" or type(store.incr) ~= "function" then
      util.raise("store must be a URL or a store (smtpd.store)")
    end
    rawset(self, "store", store)
    if opts.rate_limits then limits.install(self, opts.rate_limits, store) end
  end
  local ip, err = laddr[1], nil
  if ip:sub(1, 5) ~= "unix:" then
    ip, err = resolve(map, laddr[1])
    if not ip then
      util.raise(("cannot resolve %s: %s"):format(laddr[1], err))
    end
  end
  local ok, handle
  -- A relay at RCPT time (PureProxy) names the upstreams each session
  -- is paired with.
  local upstreams = self._upstreams and self:_upstreams() or nil
  ok, handle, err = pcall(core.listen, map, self, ip, laddr[2], opts, mechs,
                          upstreams)
  if not ok then util.raise(handle) end        -- a bad option
  if not handle then
    util.raise(("cannot listen on %s:%d: %s"):format(laddr[1], laddr[2],
                                                     err))
  end
  self._handle = handle
  -- What the core read of opts, every default filled in (false: none):
  -- the one place the Lua side reads an option's value from.
  self._conf = handle:options()
  -- The map's own messages (errors in timers, signals, relay callbacks)
  -- go to the first server's log unless map:set_log chose otherwise. The
  -- server is held weakly: the map must not keep it alive.
  local ref = setmetatable({server = self}, {__mode = "v"})
  local prev = map:set_log(function(level, line)
    local srv = ref.server
    if srv then srv:log(level, "%s", line)
    else io.stderr:write("smtpd: ", line, "\n") end
  end)
  if prev then map:set_log(prev) end
  -- smtpd's attributes.
  self.data_size_limit = self._conf.data_size_limit
  self.enable_SMTPUTF8 = opts.enable_SMTPUTF8 and true or false
  self._decode_data = opts.decode_data and true or false
end

function SMTPServer:process_message(peer, mailfrom, rcpttos, data, kwargs)
  error("process_message is not implemented: subclass SMTPServer and "
        .. "override it", 2)
end

-- server:log(level, fmt, ...): one line of this server's, at level
-- "debug", "info", "warning" or "error". Everything the server and its
-- sessions say goes through here: errors raised in hooks (with their
-- traceback), malformed replies, hooks given up, relay refusals, and the
-- debug lines of lua-smtpd -d. This one writes to stderr; a subclass may
-- send the lines elsewhere.
function SMTPServer:log(level, fmt, ...)
  local line = fmt:format(...)
  if level == "info" or level == "debug" then
    io.stderr:write("smtpd: ", line, "\n")
  else
    io.stderr:write("smtpd: ", tostring(level), ": ", line, "\n")
  end
end

-- server:reload_tls([tls]) -> true | nil, why: loads the certificates
-- again (the files named by opts.tls, or a new tls table) for new
-- connections; live ones keep theirs. On failure the old certificates
-- stay and why is logged.
function SMTPServer:reload_tls(tls)
  tls = tls or (self._opts and self._opts.tls)
  if type(tls) ~= "table" then
    error("reload_tls: the server has no tls option", 2)
  end
  local ok, res, why = pcall(self._handle.reload_tls, self._handle, tls)
  if not ok then why, res = res, nil end
  if not res then
    self:log("error", "reload_tls: %s; keeping the old certificates",
             tostring(why))
    return nil, why
  end
  self._opts.tls = tls
  return true
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
  local here
  if host and host:sub(1, 5) == "unix:" then here = host
  else
    if host and host:find(":") then host = "[" .. host .. "]" end
    here = host .. ":" .. tostring(port)
  end
  local r = self._remoteaddr
  return ("%s(%s%s, listening)"):format(name, here,
    r and (" -> " .. r[1] .. ":" .. r[2]) or "")
end

return SMTPServer

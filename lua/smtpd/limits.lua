-- Declarative rate limits on any server, counted in a store (smtpd.store)
-- so that they hold across --workers (the shared-memory store, the
-- default) or across machines (a Redis store):
--
--   Server(addr, nil, {rate_limits = {connections_per_ip = {20, 60},
--                                     messages_per_ip = {100, 3600},
--                                     recipients_per_sender = {500, 3600}},
--                      store = "redis://127.0.0.1:6379/0"})
--
-- Each limit is {n, seconds}: at most n in each window of that many
-- seconds (fixed windows on the wall clock, so every machine counts in
-- the same one). Over a limit: a connection gets 421 and is closed, a
-- MAIL or RCPT gets 450; each refusal is logged. on_error = "accept"
-- (the default: a store that cannot be reached lets mail through, and
-- says so in the log) or "tempfail" (451 / 421).

local options = require "smtpd.options"
local util = require "smtpd.util"

local M = {}

-- name -> where it is counted and what identifies the client
local KINDS = {
  connections_per_ip = {at = "connect", reply =
    "421 4.7.0 %s Too many connections from your address, try again later"},
  messages_per_ip = {at = "mail", reply =
    "450 4.7.1 Too many messages from your address, try again later"},
  messages_per_sender = {at = "mail", reply =
    "450 4.7.1 Too many messages from this sender, try again later"},
  recipients_per_ip = {at = "rcpt", reply =
    "450 4.7.1 Too many recipients from your address, try again later"},
  recipients_per_sender = {at = "rcpt", reply =
    "450 4.7.1 Too many recipients for this sender, try again later"},
}
M.KINDS = KINDS

local KNOWN = {on_error = true}
for k in pairs(KINDS) do KNOWN[k] = true end

-- Checks a rate_limits table: {name = {n, seconds}, on_error =}.
function M.check(spec)
  if type(spec) ~= "table" then util.raise("rate_limits must be a table") end
  options.check(spec, KNOWN, "rate limit")
  for name in pairs(KINDS) do
    local l = spec[name]
    if l ~= nil then
      if type(l) ~= "table" or math.type(l[1]) ~= "integer" or l[1] < 1
         or type(l[2]) ~= "number" or l[2] < 1 or l[2] > 86400 * 366 then
        util.raise(("rate_limits.%s must be {n, seconds}: n a positive "
                    .. "integer, seconds 1 or more"):format(name))
      end
    end
  end
  local oe = spec.on_error
  if oe ~= nil and oe ~= "accept" and oe ~= "tempfail" then
    util.raise('rate_limits.on_error must be "accept" or "tempfail"')
  end
end

local function window_key(name, id, seconds)
  local w = math.floor(os.time() / seconds)
  return ("rl:%s:%s:%d"):format(name, id, w)
end

-- Counts one event of kind name for id: nil (go on) or the refusal.
local function count(server, st, spec, name, id, fqdn)
  local l = spec[name]
  if not l or id == nil or id == "" then return nil end
  local n, err = st:incr(window_key(name, id, l[2]), 1, l[2] + 1)
  if not n then
    server:log("error", "rate limit %s: the store failed: %s", name,
               tostring(err))
    if spec.on_error == "tempfail" then
      return KINDS[name].at == "connect"
        and ("421 4.3.0 %s Service not available, try again later"):format(fqdn)
        or "451 4.3.0 Rate limits cannot be checked, try again later"
    end
    return nil
  end
  if n > l[1] then
    server:log("warning", "rate limit %s: %s: %d in %gs (limit %d)", name,
               id, n, l[2], l[1])
    local r = KINDS[name].reply
    return r:find("%s", 1, true) and r:format(fqdn) or r
  end
  return nil
end

-- Installs the checks on server (before it listens): check_connection,
-- and check_sender / check_recipient around the class's own.
function M.install(server, spec, store)
  local fqdn = require("smtpd.core").getfqdn()
  local function peer_ip(channel)
    local p = channel and channel.peer
    return p and p[1]
  end
  local function any(at)
    for name, k in pairs(KINDS) do
      if k.at == at and spec[name] then return true end
    end
    return false
  end
  if any("connect") then
    local own = server.check_connection
    rawset(server, "check_connection", function(self, peer)
      local r = count(self, store, spec, "connections_per_ip", peer[1], fqdn)
      if r then return r end
      if own then return own(self, peer) end
    end)
  end
  if any("mail") then
    local own = server.check_sender
    server.check_sender = function(self, channel, address, params)
      local r = count(self, store, spec, "messages_per_ip", peer_ip(channel), fqdn)
        or count(self, store, spec, "messages_per_sender",
                 address and address:lower(), fqdn)
      if r then return r end
      if own then return own(self, channel, address, params) end
    end
  end
  if any("rcpt") then
    local own = server.check_recipient
    server.check_recipient = function(self, channel, address, params)
      local r = count(self, store, spec, "recipients_per_ip", peer_ip(channel), fqdn)
        or count(self, store, spec, "recipients_per_sender",
                 (channel.mailfrom or ""):lower(), fqdn)
      if r then return r end
      if own then return own(self, channel, address, params) end
    end
  end
end

return M

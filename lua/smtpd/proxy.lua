-- PureProxy: relays every message to remoteaddr without blocking the
-- server, and never answers 250 for mail that did not get through.
--
-- By default it relays at RCPT time, as a before-queue proxy does (the C
-- core pairs each client session with an upstream one, csrc/smtp/
-- upstream.c): the upstream transaction opens with the client's MAIL,
-- each RCPT gets the upstream's own verdict, the message streams through
-- with X-Peer after its headers, and the client hears the upstream's
-- final reply, or a 4xx when anything went wrong on the way.
--
-- relay = {at = "message"} (or a subclass that overrides process_message
-- or _deliver) keeps smtpd's shape instead: the whole message reaches
-- process_message, which relays it at once (_deliver); then a recipient
-- the upstream deferred makes the whole message 451, unless the subclass
-- decides otherwise (message_reply).

local SMTPServer = require "smtpd.server"
local util = require "smtpd.util"
local raise = util.raise
local relay = require "smtpd.sendmail"
local core = require "smtpd.core"

local PureProxy = SMTPServer:extend("PureProxy")
PureProxy.OPTIONS = {relay = true}
-- The library's relaying classes: methods defined here are not a
-- subclass's own (see relay_mode).
PureProxy._relay_class = true

-- Whether a class below the library's (a user's subclass) overrides
-- process_message or _deliver: it then wants the whole message.
local function wants_message(self)
  local c = getmetatable(self)
  while c and not rawget(c, "_relay_class") do
    if rawget(c, "process_message") ~= nil or rawget(c, "_deliver") ~= nil
    then
      return true
    end
    c = rawget(c, "super")
  end
  return false
end

-- Everything is checked before the server listens: a failed constructor
-- leaves nothing open.
function PureProxy:initialize(localaddr, remoteaddr, opts)
  local t = type(opts) == "table" and opts or {}
  if remoteaddr == nil then
    raise("PureProxy needs a remoteaddr to relay to")
  end
  -- Options for the upstream connection (see smtpd.sendmail).
  local r = t.relay or {}
  if type(r) ~= "table" then raise("opts.relay must be a table") end
  -- relay.dkim: what is relayed is signed first (smtpd.dkim.sign's
  -- options), so the whole message is needed: the message mode.
  -- relay.arc: what is relayed is sealed (smtpd.arc.seal's options) too.
  local dk, seal = r.dkim, r.arc
  if dk ~= nil or seal ~= nil then
    local copy = {}
    for k, v in pairs(r) do if k ~= "dkim" and k ~= "arc" then copy[k] = v end end
    r = copy
    if dk ~= nil then relay.check_dkim(dk) end
    if seal ~= nil then relay.check_arc(seal) end
    if r.at == "rcpt" then
      raise("relay.dkim and relay.arc sign the whole message: they need relay.at = \"message\"")
    end
  end
  relay.check_options(r, "relay option")
  -- authentication checks the whole message before it is relayed
  local auth = t.authentication ~= nil and t.authentication ~= false
  if auth and r.at == "rcpt" then
    raise("authentication checks the whole message: it needs relay.at = \"message\"")
  end
  local mode = r.at or ((dk or seal or auth or wants_message(self)) and "message" or "rcpt")
  if t.enable_SMTPUTF8 and mode == "message" then
    -- smtpd's PureProxy cannot relay SMTPUTF8; at RCPT time the client's
    -- SMTPUTF8 goes on to an upstream that offers it.
    raise("PureProxy does not support SMTPUTF8.")
  end
  if t.lmtp and mode == "rcpt" then
    raise("PureProxy relays at RCPT time over SMTP; lmtp = true needs "
          .. "relay = {at = \"message\"}")
  end
  local conf, why = relay.conf(t.map, remoteaddr, r)
  if not conf then raise("relay " .. why) end
  self._relay_conf = conf
  self._relay_dkim = dk
  self._relay_arc = seal
  self.relay = r
  self.relay_mode = mode
  PureProxy.super.initialize(self, localaddr, remoteaddr, opts)
end

-- The upstreams the core pairs each session with (RCPT-time mode): nil
-- in the message mode.
function PureProxy:_upstreams()
  if self.relay_mode == "rcpt" then return {{self._relay_conf, false}} end
end

-- Inserts "X-Peer: host" where smtpd's PureProxy does: before the first
-- empty line (after the headers), or at the end when there is none.
function PureProxy.add_peer_header(data, host)
  local hdr = "X-Peer: " .. host
  if data == "" or data:sub(1, 1) == "\n" then return hdr .. "\n" .. data end
  local p = data:find("\n\n", 1, true)
  if p then return data:sub(1, p) .. hdr .. "\n" .. data:sub(p + 1) end
  if data:sub(-1) == "\n" then return data .. hdr .. "\n" end
  return data .. "\n" .. hdr
end

-- smtpd's _deliver: relays and returns the refused recipients, each
-- mapped to {code, message}; when the whole relay failed every recipient
-- is in it (code -1 when the upstream gave none, as smtpd's). A second
-- value, on failure, says where it failed (see smtpd.sendmail).
function PureProxy:_deliver(mailfrom, rcpttos, data, dsn)
  if self._relay_dkim then data = relay.dkim_sign(data, self._relay_dkim) end
  if self._relay_arc then data = relay.arc_seal(data, self._relay_arc) end
  local refused, _, info = relay.send(self._relay_conf, self._map,
                                      mailfrom, rcpttos, data, {dsn = dsn})
  if refused then return refused end
  return info.refused, info
end

-- Failures before MAIL say nothing about the message: the upstream is
-- not serving (down, refusing service, misconfigured).
local UNAVAILABLE = {resolve = true, connect = true, greeting = true,
                     ehlo = true, helo = true, starttls = true, tls = true,
                     auth = true}

-- 451 4.4.1 <name> unavailable: <why> (the core's words for it too).
local UNAVAILABLE_REPLY = core.REPLIES.UPSTREAM_UNAVAILABLE

-- Upstream text made safe for one reply line.
local function clean(text)
  text = tostring(text or ""):gsub("[\r\n]+", " "):gsub("[^\32-\126]", "?")
  if #text > 400 then text = text:sub(1, 400) .. "..." end
  return text
end
PureProxy.clean = clean
PureProxy.UNAVAILABLE_REPLY = UNAVAILABLE_REPLY

-- Logs the recipients some upstream refused (when others took the mail).
function PureProxy:log_refusals(refused)
  if not next(refused) then return end
  local parts = {}
  for r, e in pairs(refused) do
    parts[#parts + 1] = ("%s: %s %s"):format(r, e[1], clean(e[2]))
  end
  table.sort(parts)
  self:log("warning", "we got some refusals: %s", table.concat(parts, "; "))
end

-- The reply for a message not every recipient got, from the refused
-- table (and the failure info when there is one). nil: every recipient
-- that was not refused for good took it (250). A recipient deferred
-- (4xx) makes the whole message 4xx: a 250 would lose it.
function PureProxy.reply_for(refused, rcpttos, info)
  if info and (UNAVAILABLE[info.stage] or info.timeout) then
    return UNAVAILABLE_REPLY:format("Upstream", clean(info.error))
  end
  local distinct, nrefused = {}, 0
  local first5, first4, first_other
  for _, r in ipairs(rcpttos) do
    local e = refused[r]
    if not distinct[r] then
      distinct[r] = true
      if e then nrefused = nrefused + 1 end
    end
    local code = e and tonumber(e[1]) or nil
    if code and code >= 500 and code <= 599 then first5 = first5 or e
    elseif code and code >= 400 and code <= 499 then first4 = first4 or e
    elseif e then first_other = first_other or e end
  end
  if first4 then
    return ("%d Upstream: %s"):format(first4[1], clean(first4[2]))
  end
  local total = 0
  for _ in pairs(distinct) do total = total + 1 end
  if nrefused < total then return nil end
  -- Nobody took it. A 5xx only when every refusal is permanent.
  if first5 and not first_other then
    return ("%d %s"):format(first5[1], clean(first5[2]))
  end
  return UNAVAILABLE_REPLY:format("Upstream",
                                  clean(first_other and first_other[2]))
end

-- The reply process_message gives for a relayed message: by default
-- PureProxy.reply_for's; a subclass may decide otherwise.
function PureProxy:message_reply(refused, rcpttos, info)
  return PureProxy.reply_for(refused, rcpttos, info)
end

function PureProxy:process_message(peer, mailfrom, rcpttos, data, kwargs)
  data = PureProxy.add_peer_header(data, peer[1])
  local refused, info = self:_deliver(mailfrom, rcpttos, data,
                                      kwargs and kwargs.dsn)
  local reply = self:message_reply(refused, rcpttos, info)
  if reply then
    self:log("warning", "relay of a message from %s failed: %s", mailfrom,
             reply)
    return reply
  end
  self:log_refusals(refused)
end

return PureProxy

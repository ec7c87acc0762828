-- PureProxy: relays every message to remoteaddr without blocking the
-- server, and answers 250 only when the upstream took the message.

local SMTPServer = require "smtpd.server"
local raise = require("smtpd.util").raise
local relay = require "smtpd.sendmail"
local sendmail = relay.sendmail

local PureProxy = SMTPServer:extend("PureProxy")
PureProxy.OPTIONS = {relay = true}

-- Everything is checked before the server listens: a failed constructor
-- leaves nothing open.
function PureProxy:initialize(localaddr, remoteaddr, opts)
  local t = type(opts) == "table" and opts or {}
  if t.enable_SMTPUTF8 then
    raise("PureProxy does not support SMTPUTF8.")
  end
  if remoteaddr == nil then
    raise("PureProxy needs a remoteaddr to relay to")
  end
  -- Options for the upstream connection (see smtpd.sendmail).
  local r = t.relay or {}
  if type(r) ~= "table" then raise("opts.relay must be a table") end
  relay.check_options(r, "relay option")
  PureProxy.super.initialize(self, localaddr, remoteaddr, opts)
  self.relay = r
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
  local opts = {}
  for k, v in pairs(self.relay) do opts[k] = v end
  -- The client's DSN requests travel on (where the upstream takes them).
  if dsn and opts.dsn == nil then opts.dsn = dsn end
  opts.map = opts.map or self._map
  local refused, _, info = sendmail(self._remoteaddr, mailfrom, rcpttos,
                                         data, opts)
  if refused then return refused end
  return info.refused, info
end

-- Failures before MAIL say nothing about the message: the upstream is
-- not serving (down, refusing service, misconfigured).
local UNAVAILABLE = {resolve = true, connect = true, greeting = true,
                     ehlo = true, helo = true, starttls = true, tls = true,
                     auth = true}

-- Upstream text made safe for one reply line.
local function clean(text)
  text = tostring(text or ""):gsub("[\r\n]+", " "):gsub("[^\32-\126]", "?")
  if #text > 400 then text = text:sub(1, 400) .. "..." end
  return text
end
PureProxy.clean = clean

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
-- table (and the failure info when there is one). nil: at least one
-- recipient took it (250).
function PureProxy.reply_for(refused, rcpttos, info)
  if info and (UNAVAILABLE[info.stage] or info.timeout) then
    return "451 4.4.1 Upstream unavailable: " .. clean(info.error)
  end
  local distinct, nrefused = {}, 0
  for _, r in ipairs(rcpttos) do
    if not distinct[r] then
      distinct[r] = true
      if refused[r] then nrefused = nrefused + 1 end
    end
  end
  local total = 0
  for _ in pairs(distinct) do total = total + 1 end
  if nrefused < total then return nil end
  -- Nobody took it. A 5xx only when every refusal is permanent.
  local first5, first4, first_other
  for _, r in ipairs(rcpttos) do
    local e = refused[r]
    local code = e and tonumber(e[1]) or -1
    if code >= 500 and code <= 599 then first5 = first5 or e
    elseif code >= 400 and code <= 499 then first4 = first4 or e
    else first_other = first_other or e end
  end
  if first5 and not first4 and not first_other then
    return ("%d %s"):format(first5[1], clean(first5[2]))
  end
  if first4 then
    return ("%d Upstream: %s"):format(first4[1], clean(first4[2]))
  end
  return "451 4.4.1 Upstream unavailable: " .. clean(first_other
                                                    and first_other[2])
end

function PureProxy:process_message(peer, mailfrom, rcpttos, data, kwargs)
  data = PureProxy.add_peer_header(data, peer[1])
  local refused, info = self:_deliver(mailfrom, rcpttos, data,
                                      kwargs and kwargs.dsn)
  local reply = PureProxy.reply_for(refused, rcpttos, info)
  if reply then
    self:log("warning", "relay of a message from %s failed: %s", mailfrom,
             reply)
    return reply
  end
  self:log_refusals(refused)
end

return PureProxy

-- MailmanProxy for Mailman 3: list mail goes to Mailman over LMTP, every
-- other recipient is relayed to remoteaddr as PureProxy does.
--
-- Mailman itself says which addresses are lists: over LMTP it answers RCPT
-- with 250 for every list address (list@, -request, -owner, -bounces,
-- -join, -leave, -confirm+token, -subscribe, -unsubscribe, any case) and
-- 550 for anything else. At RCPT time (the default) each recipient is
-- asked of Mailman first, and of the relay when Mailman says 550; the
-- message then streams to both. In the message mode one LMTP transaction
-- both asks and delivers.

local PureProxy = require "smtpd.proxy"
local core = require "smtpd.core"
local options = require "smtpd.options"
local util = require "smtpd.util"
local raise = util.raise
local relay = require "smtpd.sendmail"

local MailmanProxy = PureProxy:extend("MailmanProxy")
MailmanProxy.OPTIONS = {mailman = true}
MailmanProxy._relay_class = true

MailmanProxy.DEFAULT_LMTP = "127.0.0.1:8024"   -- Mailman 3's default
local MAILMAN_OPTIONS = options.set(core.OPTIONS.mailman)

-- MailmanProxy(localaddr, remoteaddr, opts); opts.mailman = {lmtp =
-- "host:port" or "unix:/path", timeout =, connect_timeout =, helo =}.
function MailmanProxy:initialize(localaddr, remoteaddr, opts)
  local mm = type(opts) == "table" and opts.mailman or {}
  if type(mm) ~= "table" then
    raise("opts.mailman must be a table like {lmtp = \"127.0.0.1:8024\"}")
  end
  options.check(mm, MAILMAN_OPTIONS, "mailman option")
  local ok, read = pcall(core.read_options, "mailman", mm)
  if not ok then raise("mailman." .. read) end
  local lmtp = util.parse_addr(read.lmtp or MailmanProxy.DEFAULT_LMTP,
                               "mailman.lmtp")
  local conf, why = relay.conf(type(opts) == "table" and opts.map, lmtp, {
    lmtp = true, timeout = read.timeout, connect_timeout =
    read.connect_timeout, helo = read.helo,
  })
  if not conf then raise("mailman " .. why) end
  self._mailman_conf = conf
  MailmanProxy.super.initialize(self, localaddr, remoteaddr, opts)
  self.mailman = {lmtp = lmtp, timeout = read.timeout,
                  connect_timeout = read.connect_timeout, helo = read.helo}
end

-- At RCPT time: Mailman first (a 550 there means "not a list": the relay
-- is asked), then the relay.
function MailmanProxy:_upstreams()
  if self.relay_mode == "rcpt" then
    return {{self._mailman_conf, true, "Mailman"}, {self._relay_conf, false}}
  end
end

local clean = PureProxy.clean

-- The message mode: delivers to Mailman over LMTP. Returns
--   lists: recipients Mailman took,
--   others: recipients that are not Mailman's (to be relayed),
--   refused: list recipients Mailman refused after the data,
--   tempfail: the 4xx reply when the message must be retried (nil
--     otherwise).
function MailmanProxy:_deliver_mailman(mailfrom, rcpttos, data)
  local refused, err, info = relay.send(self._mailman_conf, self._map,
                                        mailfrom, rcpttos, data, {})
  local lists, others, failed = {}, {}, {}
  local all = refused or info.refused
  if not refused then
    -- Nothing was delivered. Only "every address is not a list" lets the
    -- relay go on; anything else is Mailman being unavailable.
    for _, r in ipairs(rcpttos) do
      local e = all[r]
      if not (e and e[3] == "rcpt" and e[1] >= 500 and e[1] <= 599) then
        return {}, {}, {},
               PureProxy.UNAVAILABLE_REPLY:format("Mailman", clean(err))
      end
    end
    return {}, rcpttos, {}, nil
  end
  for _, r in ipairs(rcpttos) do
    local e = all[r]
    if not e then
      lists[#lists + 1] = r
    elseif e[3] == "rcpt" then
      others[#others + 1] = r       -- 5xx at RCPT: not a list address
    elseif e[1] >= 400 and e[1] <= 499 then
      return lists, others, failed,
             ("451 4.4.1 Mailman: %d %s (<%s>)"):format(e[1], clean(e[2]),
                                                         r)
    else
      failed[r] = e                 -- the list refused the message
    end
  end
  return lists, others, failed, nil
end

-- The message mode's rules: everything delivered: 250. Mailman
-- unavailable or answering 4xx: 4xx for the whole message (never guess
-- which addresses are lists). The relay part follows PureProxy's rule.
-- Permanent refusals on both sides: 5xx only when every recipient was
-- refused; otherwise 250 with the refusals logged.
function MailmanProxy:process_message(peer, mailfrom, rcpttos, data)
  data = PureProxy.add_peer_header(data, peer[1])
  local lists, others, refused, tempfail =
    self:_deliver_mailman(mailfrom, rcpttos, data)
  local function retry(reason)
    if #lists > 0 then
      self:log("warning", "lists %s already have the message from %s, "
               .. "which the client will send again: %s",
               table.concat(lists, ", "), mailfrom, reason)
    else
      self:log("warning", "message from %s not accepted: %s", mailfrom,
               reason)
    end
    return reason
  end
  if tempfail then return retry(tempfail) end
  if #others > 0 then
    local r, info = self:_deliver(mailfrom, others, data)
    local reply = self:message_reply(r, others, info)
    if reply and reply:match("^4") then return retry(reply) end
    for k, v in pairs(r) do refused[k] = v end
  end
  local reply = PureProxy.reply_for(refused, rcpttos)
  if reply then
    self:log("warning", "message from %s refused: %s", mailfrom, reply)
    return reply
  end
  self:log_refusals(refused)
end

return MailmanProxy

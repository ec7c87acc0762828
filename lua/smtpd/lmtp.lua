-- LMTPServer: an SMTPServer that speaks LMTP (RFC 2033), as a final
-- delivery agent does (Dovecot, Mailman 3, Cyrus): LHLO instead of
-- HELO/EHLO, and after the data one reply per accepted recipient.
--
--   local Inbox = smtpd.LMTPServer:extend()
--   function Inbox:process_message(peer, mailfrom, rcpttos, data)
--     local replies = {}
--     for i, rcpt in ipairs(rcpttos) do
--       replies[i] = deliver(rcpt, data) and "250 OK" or "550 No such user"
--     end
--     return replies               -- or one reply for all of them
--   end
--   Inbox("unix:/run/lmtp.sock")
--
-- Any server takes opts.lmtp = true for the same; this class defaults it.

local SMTPServer = require "smtpd.server"

local LMTPServer = SMTPServer:extend("LMTPServer")

function LMTPServer:initialize(localaddr, remoteaddr, opts)
  local o = {}
  for k, v in pairs(type(opts) == "table" and opts or {}) do o[k] = v end
  if o.lmtp == nil then o.lmtp = true end
  LMTPServer.super.initialize(self, localaddr, remoteaddr, o)
end

return LMTPServer

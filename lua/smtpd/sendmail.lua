-- smtpd.sendmail: one message to an SMTP or LMTP server, through the C
-- client (csrc/client.c), waiting as the helpers of smtpd.wait do.

local core = require "smtpd.core"
local util = require "smtpd.util"
local wait = require "smtpd.wait"

-- smtpd.sendmail(remoteaddr, mailfrom, rcpttos, data, opts) -> refused
-- | nil, err, info. refused maps each refused recipient to {code, message}
-- (empty when all were accepted). On failure err says why and info holds
-- stage, code, message, timeout and refused (every recipient).
-- Each refusal is {code, message, stage}: stage "rcpt" (refused at RCPT),
-- "message" (LMTP: refused after the data) or where the whole relay failed.
-- opts: helo, timeout (each step, default 60 s), connect_timeout (30 s),
-- mail_options, lmtp, tempfail_aborts (a 4xx to any RCPT sends no data and
-- fails the whole transaction), map.
local function sendmail(remoteaddr, mailfrom, rcpttos, data, opts)
  opts = opts or {}
  local addr = util.parse_addr(remoteaddr, "remoteaddr")
  rcpttos = util.strings(rcpttos)
  if not rcpttos or #rcpttos == 0 then
    error("sendmail: rcpttos must be a recipient or a non-empty list", 2)
  end
  if type(data) ~= "string" then
    error("sendmail: data must be a string", 2)
  end
  if mailfrom == nil or mailfrom == "" then mailfrom = "<>" end
  local spec = {
    host = addr[1], port = addr[2], mailfrom = mailfrom, rcpttos = rcpttos,
    data = data, helo = opts.helo, timeout = opts.timeout,
    connect_timeout = opts.connect_timeout, lmtp = opts.lmtp,
    mail_options = opts.mail_options, tempfail_aborts = opts.tempfail_aborts,
  }
  local result = wait.wait(opts.map, function(map, done)
    return core.client_send(map, spec, done)
  end, "smtpd.sendmail")
  if result.ok then return result.refused, result end
  return nil, result.error, result
end

return sendmail

-- smtpd.sendmail: one message to an SMTP or LMTP server, through the C
-- client (csrc/client.c), waiting as the helpers of smtpd.wait do.

local core = require "smtpd.core"
local options = require "smtpd.options"
local util = require "smtpd.util"
local wait = require "smtpd.wait"

-- The options it takes: the client's (core.OPTIONS.relay), its MAIL
-- parameters and the map to run on.
local KNOWN = options.set(core.OPTIONS.relay)
KNOWN.mail_options = true
KNOWN.map = true

-- smtpd.sendmail(remoteaddr, mailfrom, rcpttos, data, opts) -> refused
-- | nil, err, info. refused maps each refused recipient to {code, message}
-- (empty when all were accepted). On failure err says why and info holds
-- stage, code, message, timeout and refused (every recipient).
-- Each refusal is {code, message, stage}: stage "rcpt" (refused at RCPT),
-- "message" (LMTP: refused after the data) or where the whole relay failed.
-- opts: helo, timeout (each step, default 60 s), connect_timeout (30 s),
-- mail_options, lmtp, tempfail_aborts (a 4xx to any RCPT sends no data and
-- fails the whole transaction), map.
local check_options

local function sendmail(remoteaddr, mailfrom, rcpttos, data, opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    util.raise("sendmail: opts must be a table")
  end
  check_options(opts, "sendmail option")
  local addr = util.parse_addr(remoteaddr, "remoteaddr")
  rcpttos = util.strings(rcpttos)
  if not rcpttos or #rcpttos == 0 then
    util.raise("sendmail: rcpttos must be a recipient or a non-empty list")
  end
  if type(data) ~= "string" then
    util.raise("sendmail: data must be a string")
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

-- Checks a table of sendmail's options (PureProxy's relay): unknown
-- names and wrong values raise, at the user's call.
function check_options(opts, what)
  options.check(opts, KNOWN, what)
  local ok, err = pcall(core.check_options, "relay", opts)
  if not ok then util.raise(err) end
end

return {sendmail = sendmail, check_options = check_options}

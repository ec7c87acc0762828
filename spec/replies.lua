-- Every reply line the engine sends, in one place (smtpd's texts).
local core = require "smtpd.core"
local R = {}

R.fqdn = core.getfqdn()
R.greeting = "220 " .. R.fqdn .. " " .. core.version
R.ok = "250 OK"
R.bye = "221 Bye"
R.helo = "250 " .. R.fqdn
R.ehlo = {"250-" .. R.fqdn, "250-SIZE 33554432", "250-8BITMIME",
          "250-PIPELINING", "250-CHUNKING", "250 HELP"}
R.data = "354 End data with <CR><LF>.<CR><LF>"
R.helo_syntax = "501 Syntax: HELO hostname"
R.ehlo_syntax = "501 Syntax: EHLO hostname"
R.dup = "503 Duplicate HELO/EHLO"
R.noop_syntax = "501 Syntax: NOOP"
R.rset_syntax = "501 Syntax: RSET"
R.data_syntax = "501 Syntax: DATA"
R.need_helo = "503 Error: send HELO first"
R.need_mail = "503 Error: need MAIL command"
R.need_rcpt = "503 Error: need RCPT command"
R.nested = "503 Error: nested MAIL command"
R.mail_syntax = "501 Syntax: MAIL FROM: <address>"
R.mail_syntax_ext = "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]"
R.rcpt_syntax = "501 Syntax: RCPT TO: <address>"
R.rcpt_syntax_ext = "501 Syntax: RCPT TO: <address> [SP <mail-parameters>]"
R.body = "501 Error: BODY can only be one of 7BIT, 8BITMIME"
R.smtputf8_arg = "501 Error: SMTPUTF8 takes no arguments"
R.size_exceeds = "552 Error: message size exceeds fixed maximum message size"
R.mail_params = "555 MAIL FROM parameters not recognized or not implemented"
R.rcpt_params = "555 RCPT TO parameters not recognized or not implemented"
R.too_much = "552 Error: Too much mail data"
R.bad_syntax = "500 Error: bad syntax"
R.too_long = "500 Error: line too long"
R.bad_utf8 = "500 Error: command line is not valid UTF-8"
R.bad_utf8_data = "500 Error: message data is not valid UTF-8"
R.help = "250 Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY"
R.help_bad = "501 Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY"
R.vrfy = "252 Cannot VRFY user, but will accept message and attempt delivery"
R.vrfy_syntax = "501 Syntax: VRFY <address>"
R.expn = "502 EXPN not implemented"
R.local_error = "451 4.3.0 Requested action aborted: local error in processing"

function R.unknown(verb)
  return '500 Error: command "' .. verb .. '" not recognized'
end

return R

-- Conversations replayed against CPython's smtpd and ours by
-- differential_spec.lua. Each ends with QUIT so both sides close.
local q = "QUIT\r\n"
local M = {}

local function sp(n) return string.rep(" ", n) end

M.default = {
  "HELO\r\nHELO x\r\nHELO y\r\nEHLO z\r\n" .. q,
  "EHLO x\r\nEHLO\r\nEHLO y\r\n" .. q,
  "NOOP\r\nNOOP x\r\nnoop\r\nNoOp\r\n" .. q,
  "HELP\r\nHELP ehlo\r\nHELP HELO\r\nHELP MAIL\r\nHELP RCPT\r\nHELP DATA\r\n"
    .. "HELP RSET\r\nHELP NOOP\r\nHELP QUIT\r\nHELP VRFY\r\nHELP foo\r\n"
    .. "HELP EXPN\r\nHELP mail from\r\n" .. q,
  "EHLO x\r\nHELP MAIL\r\nHELP RCPT\r\nHELP rcpt\r\n" .. q,
  "VRFY\r\nVRFY a@b\r\nVRFY <a@b>\r\nVRFY foo bar\r\nVRFY <>\r\nEXPN\r\n"
    .. "EXPN x\r\n" .. q,
  "MAIL FROM:<a@b>\r\nRCPT TO:<a@b>\r\nDATA\r\n" .. q,
  "HELO x\r\nMAIL\r\nMAIL FROM\r\nMAIL FROM:\r\nMAIL FROM <a@b>\r\n"
    .. "MAIL TO:<a@b>\r\nMAIL FROM:<a@b> SIZE=10\r\n" .. q,
  "HELO x\r\nMAIL FROM:<a@b>\r\nMAIL FROM:<c@d>\r\nRCPT\r\nRCPT TO\r\n"
    .. "RCPT TO:\r\nRCPT FROM:<x@y>\r\nRCPT TO:<x@y> FOO=1\r\nRCPT TO:<x@y>\r\n"
    .. "RCPT to:<z@y>\r\nDATA\r\nhello\r\n.\r\n" .. q,
  "HELO x\r\nRCPT TO:<a@b>\r\nDATA\r\nMAIL FROM:<>\r\nDATA\r\n"
    .. "RCPT TO:<a@b>\r\nDATA x\r\nRSET x\r\nRSET\r\nDATA\r\n" .. q,
  "EHLO x\r\nMAIL FROM:<a@b> BODY=8BITMIME SIZE=100\r\nRCPT TO:<c@d>\r\n"
    .. "DATA\r\nSubject: x\r\n\r\n..dot\r\nbody\n bare\rcr\r\n.\r\n" .. q,
  "EHLO x\r\nMAIL FROM:<a@b> BODY=9BIT\r\nMAIL FROM:<a@b> BODY\r\n"
    .. "MAIL FROM:<a@b> SIZE=abc\r\nMAIL FROM:<a@b> SIZE=999999999999\r\n"
    .. "MAIL FROM:<a@b> SMTPUTF8\r\nMAIL FROM:<a@b> FOO\r\n"
    .. "MAIL FROM:<a@b> FOO=\r\nMAIL FROM:<a@b> =x\r\nMAIL FROM:<a@b> F-O\r\n"
    .. "MAIL FROM:<a@b> body=7bit\r\nRCPT TO:<x@y>\r\nDATA\r\nm\r\n.\r\n" .. q,
  "EHLO x\r\nMAIL FROM:a@b\r\nRCPT TO:c@d SIZE=1\r\nRCPT TO:c@d\r\n"
    .. "RCPT TO:<\"q u\"@d>\r\nRCPT TO:<\"qu\"@d>\r\nRCPT TO:<@r1,@r2:x@y>\r\n"
    .. "RCPT TO:<x@[1.2.3.4]>\r\nRCPT TO:<postmaster>\r\n"
    .. "RCPT TO:<a.b.c@d.e>\r\nRCPT TO:<a+tag@d>\r\nRCPT TO:<\"a\\\"b\"@d>\r\n"
    .. "DATA\r\nx\r\n.\r\n" .. q,
  "\r\n  \r\nfoo\r\nFOO bar\r\nmail\r\nhelo\r\nx y z\r\n" .. q,
  string.rep("x", 512) .. "\r\n" .. string.rep("x", 513) .. "\r\nNOOP"
    .. sp(508) .. "\r\nNOOP" .. sp(509) .. "\r\n" .. q,
  "EHLO x\r\nMAIL FROM:<a@b>" .. sp(515) .. "\r\nRSET\r\nMAIL FROM:<a@b>"
    .. sp(523) .. "\r\nRSET\r\nMAIL FROM:<a@b>" .. sp(524) .. "\r\n" .. q,
  "HELO x\r\nMAIL FROM:<a@b>" .. sp(498) .. "\r\n" .. q,
  "EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n"
    .. "\r\n.\r\nMAIL FROM:<b@c>\r\nRCPT TO:<c@d>\r\nDATA\r\n...\r\n..\r\n"
    .. ".x\r\n\r\n.\r\n" .. q,
  "HELO x\r\nMAIL FROM:<a@b> x\r\nMAIL FROM: <a@b>\r\nRCPT TO: <c@d>\r\n" .. q,
  "HELO x\r\nMAIL FROM:<a@b>\r\nRSET\r\nMAIL FROM:<c@d>\r\nHELO y\r\n" .. q,
  "EHLO x\r\nMAIL FROM:<a@b>SIZE=10\r\nRCPT TO:<x@y>\r\nDATA\r\nz\r\n.\r\n" .. q,
  "EHLO \t x \t\r\nMAIL FROM:<a@b>\r\n" .. q,
  "EHLO x\r\nMAIL FROM:<\195\169@b>\r\nRCPT TO:<\195\188@\195\159>\r\nDATA\r\n"
    .. "\195\188n\r\n.\r\n" .. q,
  "EHLO x\r\nMAIL FROM:<a@b> SIZE=10 SIZE=20 BODY=7BIT\r\nRCPT TO:<a@b>\r\n"
    .. "DATA\r\nq\r\n.\r\n" .. q,
  "EHLO x\r\nMAIL FROM:<a@b> size=33554433\r\nMAIL FROM:<a@b> size=33554432\r\n"
    .. q,
  "quit\r\n",
  "EHLO x\r\nMAIL FROM:<a@b> SIZE=\r\nMAIL FROM:<a@b> BODY=8bitmime\r\n" .. q,
  -- pipelined transactions and CRLF-only data edge cases
  "HELO h\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nl1\r\nl2\r\n\r\n\r\n"
    .. ".\r\nMAIL FROM:<e@f>\r\nRCPT TO:<g@h>\r\nDATA\r\n\r\n\r\n.\r\n" .. q,
  "HELO h\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\na\r\n.\r\r\n.\r\n" .. q,
  "HELO h\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\rfoo\r\n"
    .. ".\r\n" .. q,
  "HELO h\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\r\n.\r\n" .. q,
  "HELO h\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n\r\r\n.\r\n" .. q,
}

-- enable_SMTPUTF8 = true
M.smtputf8 = {
  "EHLO x\r\nMAIL FROM:<a@b> SMTPUTF8\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n"
    .. q,
  "EHLO x\r\nMAIL FROM:<a@b> SMTPUTF8=yes\r\nMAIL FROM:<a@b> smtputf8\r\n"
    .. "RCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n" .. q,
  "EHLO x\r\nMAIL FROM:<a@b>" .. sp(533) .. "\r\nRSET\r\nMAIL FROM:<a@b>"
    .. sp(534) .. "\r\n" .. q,
  "HELO x\r\nMAIL FROM:<a@b> SMTPUTF8\r\n" .. q,
}

-- decode_data = true
M.decode = {
  "EHLO x\r\nMAIL FROM:<a@b> BODY=8BITMIME\r\nMAIL FROM:<a@b>\r\n"
    .. "RCPT TO:<c@d>\r\nDATA\r\nSubject: t\r\n\r\nbody\r\n.\r\n" .. q,
  "HELP\r\nEHLO x\r\nMAIL FROM:<a@b> SIZE=5\r\nRCPT TO:<c@d>\r\nDATA\r\n"
    .. "\195\169t\195\169\r\n.\r\n" .. q,
}

-- data_size_limit = 100
M.size100 = {
  "EHLO x\r\nMAIL FROM:<a@b> SIZE=100\r\nMAIL FROM:<a@b> SIZE=101\r\n"
    .. "RCPT TO:<c@d>\r\n" .. q,
  "EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"
    .. string.rep("y", 98) .. "\r\n.\r\n" .. q,
}

-- data_size_limit = 0 (no limit)
M.nolimit = {
  "EHLO x\r\nMAIL FROM:<a@b> SIZE=99999999999\r\nRCPT TO:<c@d>\r\n" .. q,
  "EHLO x\r\nMAIL FROM:<a@b>" .. sp(511) .. "\r\n" .. q,
}

return M

-- Every reply path of the built-in commands, over real sockets on
-- 127.0.0.1, each conversation sent in 1-, 7- and 1500-byte writes.
local H = require "helper"
local R = require "replies"

local function flat(...)
  local out = {}
  for _, v in ipairs({...}) do
    if type(v) == "table" then
      for _, x in ipairs(v) do out[#out + 1] = x end
    else
      out[#out + 1] = v
    end
  end
  return out
end

local HELO, EHLO = "HELO x\r\n", "EHLO x\r\n"
local ENV = "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"

local CASES = {
  {"HELO and duplicates", HELO .. "HELO y\r\nEHLO y\r\nHELO\r\n",
   {R.helo, R.dup, R.dup, R.helo_syntax}},
  {"EHLO lists extensions", EHLO, R.ehlo},
  {"EHLO without a name", "EHLO\r\nEHLO  \r\n", {R.ehlo_syntax, R.ehlo_syntax}},
  {"EHLO with SMTPUTF8", EHLO,
   {"250-" .. R.fqdn, "250-SIZE 33554432", "250-8BITMIME", "250-SMTPUTF8",
    "250-PIPELINING", "250-CHUNKING", "250 HELP"}, opts = {enable_SMTPUTF8 = true}},
  {"EHLO with decode_data", EHLO,
   {"250-" .. R.fqdn, "250-SIZE 33554432", "250-PIPELINING", "250-CHUNKING", "250 HELP"},
   opts = {decode_data = true}},
  {"EHLO without a size limit", EHLO,
   {"250-" .. R.fqdn, "250-8BITMIME", "250-PIPELINING", "250-CHUNKING", "250 HELP"},
   opts = {data_size_limit = 0}},
  {"NOOP", "NOOP\r\nnoop\r\nNOOP x\r\n", {R.ok, R.ok, R.noop_syntax}},
  {"RSET", HELO .. "MAIL FROM:<a@b>\r\nRSET\r\nRSET x\r\nRCPT TO:<c@d>\r\n",
   {R.helo, R.ok, R.ok, R.rset_syntax, R.need_mail}},
  {"HELP", "HELP\r\nHELP data\r\nHELP MAIL\r\nHELP zzz\r\n",
   {R.help, "250 Syntax: DATA", "250 Syntax: MAIL FROM: <address>",
    R.help_bad}},
  {"HELP after EHLO", EHLO .. "HELP RCPT\r\n",
   flat(R.ehlo, "250 Syntax: RCPT TO: <address> [SP <mail-parameters>]")},
  {"VRFY and EXPN", "VRFY\r\nVRFY <a@b>\r\nVRFY <a@@b>\r\nEXPN list\r\n",
   {R.vrfy_syntax, R.vrfy, "502 Could not VRFY <a@@b>", R.expn}},
  {"commands before HELO", ENV .. "DATA\r\n",
   {R.need_helo, R.need_helo, R.need_helo}},
  {"MAIL syntax", HELO .. "MAIL\r\nMAIL FROM:\r\nMAIL TO:<a@b>\r\n"
     .. "MAIL FROM:<a@b> SIZE=1\r\n",
   {R.helo, R.mail_syntax, R.mail_syntax, R.mail_syntax, R.mail_syntax}},
  {"nested MAIL", HELO .. "MAIL FROM:<a@b>\r\nMAIL FROM:<c@d>\r\n",
   {R.helo, R.ok, R.nested}},
  {"RCPT ordering and syntax", HELO .. "RCPT TO:<c@d>\r\nMAIL FROM:<a@b>\r\n"
     .. "RCPT\r\nRCPT TO:<>\r\nRCPT TO:<c@d>\r\n",
   {R.helo, R.need_mail, R.ok, R.rcpt_syntax, R.rcpt_syntax, R.ok}},
  {"DATA ordering", HELO .. "DATA\r\nMAIL FROM:<a@b>\r\nDATA\r\n"
     .. "RCPT TO:<c@d>\r\nDATA x\r\n",
   {R.helo, R.need_rcpt, R.ok, R.need_rcpt, R.ok, R.data_syntax}},
  {"BODY=", EHLO .. "MAIL FROM:<a@b> BODY=BINARYMIME\r\n"
     .. "MAIL FROM:<a@b> BODY=8BITMIME\r\n",
   flat(R.ehlo, R.body, R.ok)},
  {"SIZE=", EHLO .. "MAIL FROM:<a@b> SIZE\r\nMAIL FROM:<a@b> SIZE=x\r\n"
     .. "MAIL FROM:<a@b> SIZE=33554433\r\nMAIL FROM:<a@b> SIZE=33554432\r\n",
   flat(R.ehlo, R.mail_syntax_ext, R.mail_syntax_ext, R.size_exceeds, R.ok)},
  {"unknown MAIL parameters", EHLO .. "MAIL FROM:<a@b> SMTPUTF8\r\n"
     .. "MAIL FROM:<a@b> X=1\r\nMAIL FROM:<a@b> X=\r\n",
   flat(R.ehlo, R.mail_params, R.mail_params, R.mail_syntax_ext)},
  {"SMTPUTF8 parameter", EHLO .. "MAIL FROM:<a@b> SMTPUTF8=1\r\n"
     .. "MAIL FROM:<a@b> SMTPUTF8\r\n",
   {"250-" .. R.fqdn, "250-SIZE 33554432", "250-8BITMIME", "250-SMTPUTF8",
    "250-PIPELINING", "250-CHUNKING", "250 HELP", R.smtputf8_arg, R.ok}, opts = {enable_SMTPUTF8 = true}},
  {"RCPT parameters", EHLO .. "MAIL FROM:<a@b>\r\nRCPT TO:<c@d> NOTIFY=NEVER\r\n"
     .. "RCPT TO:<c@d> X=\r\n",
   flat(R.ehlo, R.ok, R.rcpt_params, R.rcpt_syntax_ext)},
  {"unknown commands", "FOO\r\nfoo bar\r\n\r\n",
   {R.unknown("FOO"), R.unknown("FOO"), R.bad_syntax}},
  {"line limits", ("N"):rep(512) .. "\r\n" .. ("N"):rep(513) .. "\r\n",
   {R.unknown(("N"):rep(512)), R.too_long}},
  {"MAIL limit after EHLO", EHLO .. "MAIL FROM:<a@b>" .. (" "):rep(523)
     .. "\r\nRSET\r\nMAIL FROM:<a@b>" .. (" "):rep(524) .. "\r\n",
   flat(R.ehlo, R.ok, R.ok, R.too_long)},
  {"a message", HELO .. ENV .. "DATA\r\nSubject: s\r\n\r\n..a\r\nb\r\n.\r\n",
   {R.helo, R.ok, R.ok, R.data, R.ok},
   messages = {{mailfrom = "a@b", rcpttos = {"c@d"},
                data = "Subject: s\n\n.a\nb"}}},
  {"too much data", EHLO .. ENV .. "DATA\r\n" .. ("z"):rep(150) .. "\r\n.\r\n"
     .. "MAIL FROM:<e@f>\r\n",
   {"250-" .. R.fqdn, "250-SIZE 100", "250-8BITMIME", "250-PIPELINING",
    "250-CHUNKING", "250 HELP", R.ok, R.ok,
    R.data, R.too_much, R.ok},
   opts = {data_size_limit = 100}, messages = {}},
  {"QUIT", "QUIT\r\nNOOP\r\n", {R.bye}},
}

describe("built-in commands", function()
  for _, case in ipairs(CASES) do
    for _, split in ipairs({1, 7, 1500}) do
      it(("%s (%d-byte writes)"):format(case[1], split), function()
        local opts = {}
        for k, v in pairs(case.opts or {}) do opts[k] = v end
        local srv, map, host, port = H.server(H.Recorder, opts)
        local input = case[2]
        if not input:find("QUIT\r\n") then input = input .. "QUIT\r\n" end
        local replies, greeting = H.converse(map, host, port, input, split)
        assert.equal(R.greeting, greeting)
        local expected = flat(case[3])
        if not case[2]:find("QUIT\r\n") then
          expected[#expected + 1] = R.bye
        end
        assert.same(expected, replies)
        if case.messages then
          local got = srv.messages or {}
          assert.equal(#case.messages, #got)
          for i, m in ipairs(case.messages) do
            for k, v in pairs(m) do assert.same(v, got[i][k]) end
          end
        end
        H.cleanup(map)
      end)
    end
  end
end)

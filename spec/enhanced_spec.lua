-- ENHANCEDSTATUSCODES (RFC 2034, codes of RFC 3463): opt-in; every 2xx,
-- 4xx and 5xx reply then carries class.subject.detail, but the greeting
-- and the replies to HELO/EHLO (as RFC 2034 says), and a code a reply
-- has already is kept.
local H = require "helper"
local R = require "replies"

local function opts() return {enhanced_status_codes = true} end

describe("ENHANCEDSTATUSCODES", function()
  it("is off by default: smtpd's replies", function()
    local _, map, host, port = H.server(H.Recorder)
    local replies = H.converse(map, host, port, "EHLO x\r\nNOOP\r\nQUIT\r\n")
    for _, l in ipairs(replies) do
      assert.is_nil(l:find("ENHANCEDSTATUSCODES", 1, true))
    end
    assert.same({R.ok, R.bye}, {table.unpack(replies, #replies - 1)})
    H.cleanup(map)
  end)

  it("puts a code on every reply of a session when on", function()
    local _, map, host, port = H.server(H.Recorder, opts())
    local replies, greeting = H.converse(map, host, port, table.concat({
      "EHLO x", "MAIL FROM:<a@b> FOO=1", "MAIL FROM:<a@b>", "MAIL FROM:<e@f>",
      "RCPT TO:<c@d>", "RCPT TO:<>", "VRFY x", "XYZ", "DATA", "hi", ".",
      "DATA", "BDAT 3 LAST", "abcRSET x", "RSET", "NOOP", "HELP", "QUIT", ""},
      "\r\n"))
    assert.matches("^220 %S+ Lua SMTP", greeting)
    local n = #R.ehlo + 1
    assert.same({"250-" .. R.fqdn, "250-SIZE 33554432", "250-8BITMIME",
                 "250-PIPELINING", "250-CHUNKING", "250-ENHANCEDSTATUSCODES",
                 "250 HELP"}, {table.unpack(replies, 1, n)})
    assert.same({
      "555 5.5.4 MAIL FROM parameters not recognized or not implemented",
      "250 2.1.0 OK",
      "503 5.5.1 Error: nested MAIL command",
      "250 2.1.5 OK",
      "501 5.5.4 Syntax: RCPT TO: <address> [SP <mail-parameters>]",
      "252 2.0.0 Cannot VRFY user, but will accept message and attempt "
        .. "delivery",
      '500 5.5.2 Error: command "XYZ" not recognized',
      R.data,                                   -- 3xx: no class, no code
      "250 2.6.0 OK",
      "503 5.5.1 Error: need RCPT command",
      "503 5.5.1 Error: need RCPT command",
      "501 5.5.2 Syntax: RSET",
      "250 2.0.0 OK",
      "250 2.0.0 OK",
      "250 2.0.0 " .. R.help:sub(5),
      "221 2.0.0 Bye",
    }, {table.unpack(replies, n + 1)})
    H.cleanup(map)
  end)

  it("codes the replies of hooks by what they answer, and keeps theirs",
     function()
    local Srv = H.Recorder:extend()
    function Srv:check_recipient(_, rcpt)
      if rcpt == "no@x" then return "550 No such user here" end
      if rcpt == "full@x" then return "452 4.2.2 Mailbox full" end
    end
    function Srv:process_message(peer, mailfrom)
      if mailfrom == "spam@x" then return "550 Looks like spam" end
      return "250 Queued as 42"
    end
    local _, map, host, port = H.server(Srv, opts())
    local replies = H.converse(map, host, port, "HELO x\r\nMAIL FROM:<spam@x>"
      .. "\r\nRCPT TO:<no@x>\r\nRCPT TO:<full@x>\r\nRCPT TO:<ok@x>\r\nDATA\r\n"
      .. "x\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<ok@x>\r\nDATA\r\nx\r\n.\r\n"
      .. "QUIT\r\n")
    assert.same({R.helo, "250 2.1.0 OK", "550 5.1.1 No such user here",
                 "452 4.2.2 Mailbox full", "250 2.1.5 OK", R.data,
                 "550 5.6.0 Looks like spam", "250 2.1.0 OK", "250 2.1.5 OK",
                 R.data, "250 2.6.0 Queued as 42", "221 2.0.0 Bye"}, replies)
    H.cleanup(map)
  end)

  it("keeps a coded reply within 512 octets", function()
    local Srv = H.Recorder:extend()
    function Srv:process_message() return "250 " .. ("y"):rep(506) end
    local _, map, host, port = H.server(Srv, opts())
    local replies = H.converse(map, host, port, "HELO x\r\nMAIL FROM:<a@b>"
      .. "\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n")
    local long = replies[#replies - 1]
    assert.equal(510, #long)
    assert.equal("250 2.6.0 yyy", long:sub(1, 13))
    H.cleanup(map)
  end)

  it("works with smtplib, which reads the codes as text", function()
    local py = H.python_with("smtplib")
    if not py then return H.skip("no python3") end
    local srv, map, _, port = H.server(H.Recorder, opts())
    local out = H.run_client(map, ("%s -c \"import smtplib\n"
      .. "s = smtplib.SMTP('127.0.0.1', %d)\n"
      .. "print(s.ehlo()[0], s.has_extn('enhancedstatuscodes'))\n"
      .. "print(s.sendmail('a@b', ['c@d'], 'Subject: e\\r\\n\\r\\nx\\r\\n'))\n"
      .. "print(s.noop())\n"
      .. "s.quit()\""):format(py, port))
    assert.matches("250 True\n{}\n%(250, b'2.0.0 OK'%)\n", out)
    assert.equal(1, #srv.messages)
    H.cleanup(map)
  end)
end)

-- Bad inputs that hurt real SMTP servers (SMTP smuggling: Postfix
-- CVE-2023-51764, aiosmtpd CVE-2024-27305; bare CR/LF/NUL in commands;
-- oversized data), over real sockets, each sent in 1-, 7- and 1500-byte
-- writes. (Limits and timeouts: limits_spec.lua; the 1 MiB
-- line and NUL: badinput_spec.lua; relays: proxy_spec.lua.)
local H = require "helper"
local R = require "replies"
local smtpd = H.smtpd

local ENV = "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"
local ENDINGS = {"\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r\n.\r",
                 "\r\n\0.\r\n", "\r\n.\r\r\n"}

for _, split in ipairs({1, 7, 1500}) do
  describe(("bad inputs real servers were hurt by (%d-byte writes)")
           :format(split),
           function()
    it("SMTP smuggling: only CRLF . CRLF ends DATA", function()
      local srv, map, host, port = H.server(H.Recorder)
      for _, ending in ipairs(ENDINGS) do
        local replies = H.converse(map, host, port, ENV .. "first" .. ending
          .. "MAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\nDATA\r\nsmuggled"
          .. "\r\n.\r\nQUIT\r\n", split)
        assert.same({R.helo, R.ok, R.ok, R.data, R.ok, R.bye}, replies)
      end
      assert.equal(#ENDINGS, #srv.messages)
      for _, m in ipairs(srv.messages) do
        assert.equal("a@b", m.mailfrom)
        assert.matches("MAIL FROM:<evil@x>", m.data, 1, true)
      end
      H.cleanup(map)
    end)

    it("STARTTLS is not offered: nothing to inject into", function()
      local srv, map, host, port = H.server(H.Recorder)
      local replies = H.converse(map, host, port, "EHLO x\r\nSTARTTLS\r\n"
        .. "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n",
        split)
      for _, l in ipairs(R.ehlo) do assert.is_nil(l:find("STARTTLS")) end
      assert.equal(R.unknown("STARTTLS"), replies[#R.ehlo + 1])
      assert.equal(1, #srv.messages)
      H.cleanup(map)
    end)

    it("bare LF, CR and NUL inside command lines never make extra lines",
       function()
      local srv, map, host, port = H.server(H.Recorder)
      local replies = H.converse(map, host, port,
        "HELO x\nMAIL FROM:<evil@x>\r\nHELO y\rRSET\r\nHELO z\0NOOP\r\n"
        .. "HELO ok\r\nMAIL FROM:<a@b>\nRCPT TO:<c@d>\r\nQUIT\r\n", split)
      assert.same({R.bad_syntax, R.bad_syntax, R.bad_syntax, R.helo,
                   R.bad_syntax, R.bye}, replies)
      assert.is_nil(srv.messages)
      H.cleanup(map)
    end)

    it("oversized DATA: dropped while it streams, 552 after the dot; SIZE= "
       .. "over the limit: 552 at MAIL", function()
      local srv, map, host, port = H.server(H.Recorder,
                                            {data_size_limit = 1000})
      local replies = H.converse(map, host, port,
        "EHLO x\r\nMAIL FROM:<a@b> SIZE=1001\r\nMAIL FROM:<a@b>\r\n"
        .. "RCPT TO:<c@d>\r\nDATA\r\n" .. ("x"):rep(5000) .. "\r\n.\r\n"
        .. "QUIT\r\n", split)
      local n = #R.ehlo
      assert.equal(R.size_exceeds, replies[n + 1])
      assert.equal(R.too_much, replies[n + 5])
      assert.is_nil(srv.messages)
      H.cleanup(map)
    end)

    it("a long DATA line is judged only after the final dot", function()
      local srv, map, host, port = H.server(H.Recorder)
      local line = ("L"):rep(20000)
      local replies = H.converse(map, host, port, ENV .. line .. "\r\n.\r\n"
                                 .. "QUIT\r\n", split)
      assert.equal(R.ok, replies[5])
      assert.equal(line, srv.messages[1].data)
      H.cleanup(map)
    end)

    it("a failing handler: 451, never 250, and the session goes on",
       function()
      local S = smtpd.SMTPServer:extend()
      local calls = 0
      function S:process_message()
        calls = calls + 1
        error("database down")
      end
      local _, map, host, port = H.server(S)
      local replies = H.converse(map, host, port, ENV .. "x\r\n.\r\nNOOP\r\n"
                                 .. "QUIT\r\n", split)
      assert.same({R.helo, R.ok, R.ok, R.data, R.local_error, R.ok, R.bye},
                  replies)
      assert.equal(1, calls)
      H.cleanup(map)
    end)

    it("many recipients: the first 100 are always accepted", function()
      local srv, map, host, port = H.server(H.Recorder,
                                            {max_recipients = 100})
      local input = "HELO x\r\nMAIL FROM:<a@b>\r\n"
      for i = 1, 101 do input = input .. "RCPT TO:<u" .. i .. "@d>\r\n" end
      local replies = H.converse(map, host, port, input .. "DATA\r\nx\r\n.\r\n"
                                 .. "QUIT\r\n", split == 1 and 16 or split)
      for i = 3, 102 do assert.equal(R.ok, replies[i]) end
      assert.equal("452 4.5.3 Error: too many recipients", replies[103])
      assert.equal(100, #srv.messages[1].rcpttos)
      H.cleanup(map)
    end)
  end)
end

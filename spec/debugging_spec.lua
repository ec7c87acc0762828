-- DebuggingServer prints each message in smtpd's format.
local H = require "helper"
local smtpd = H.smtpd

local function capture(srv)
  local path = os.tmpname()
  srv.stdout = io.open(path, "w+")
  return function()
    srv.stdout:close()
    local s = H.readfile(path)
    os.remove(path)
    return s
  end
end

describe("DebuggingServer", function()
  -- The envelope first: Bcc recipients are in no header.
  it("prints the envelope, then the message with X-Peer after the headers",
     function()
    local srv, map, host, port = H.server(smtpd.DebuggingServer)
    local done = capture(srv)
    local c = H.connect(map, host, port)
    c:lines(1)
    c:send("EHLO x\r\nMAIL FROM:<a@b> BODY=8BITMIME\r\n"
           .. "RCPT TO:<c@d>\r\nRCPT TO:<bcc@e>\r\nDATA\r\nSubject: hi\r\n"
           .. "From: a@b\r\n\r\nline 1\r\n\r\nline 3\r\n.\r\nQUIT\r\n")
    c:wait_closed()
    c:close()
    local text = done()
    local peer_port = text:match("Peer: 127%.0%.0%.1:(%d+)\n")
    assert.is_truthy(peer_port, text)
    assert.equal(table.concat({
      "---------- ENVELOPE ----------",
      "Peer: 127.0.0.1:" .. peer_port,
      "MAIL FROM: <a@b>",
      "RCPT TO: <c@d>, <bcc@e>",
      "---------- MESSAGE FOLLOWS ----------",
      "mail options: ['BODY=8BITMIME']",
      "Subject: hi",
      "From: a@b",
      "X-Peer: 127.0.0.1",
      "",
      "line 1",
      "",
      "line 3",
      "------------ END MESSAGE ------------",
      ""}, "\n"), text)
    H.cleanup(map)
  end)

  it("prints smtpd's block alone with show_envelope = false, and <> as "
     .. "such", function()
    local srv, map, host, port = H.server(smtpd.DebuggingServer)
    local done = capture(srv)
    H.converse(map, host, port, "HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<c@d>\r\n"
               .. "DATA\r\nSubject: s\r\n\r\nb\r\n.\r\nQUIT\r\n")
    assert.matches("\nMAIL FROM: <>\n", done(), 1, true)
    srv.show_envelope = false
    done = capture(srv)
    H.converse(map, host, port, "HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<c@d>\r\n"
               .. "DATA\r\nSubject: s\r\n\r\nb\r\n.\r\nQUIT\r\n")
    assert.equal("---------- MESSAGE FOLLOWS ----------\nSubject: s\nX-Peer: "
                 .. "127.0.0.1\n\nb\n------------ END MESSAGE ------------\n",
                 done())
    H.cleanup(map)
  end)

  it("prints no X-Peer for a message without a body", function()
    local srv, map, host, port = H.server(smtpd.DebuggingServer,
                                          {decode_data = true})
    srv.show_envelope = false
    local done = capture(srv)
    H.converse(map, host, port, "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
               .. "DATA\r\nSubject: only\r\n.\r\nQUIT\r\n")
    assert.equal("---------- MESSAGE FOLLOWS ----------\nSubject: only\n"
                 .. "------------ END MESSAGE ------------\n", done())
    H.cleanup(map)
  end)

  it("splits lines as Python's splitlines does", function()
    local split = smtpd.DebuggingServer._splitlines
    assert.same({"a", "b", "c", "", "d"}, split("a\nb\r\nc\r\rd"))
    assert.same({"a"}, split("a\n"))
    assert.same({}, split(""))
  end)
end)

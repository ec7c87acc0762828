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
  it("prints the message with X-Peer after the headers", function()
    local srv, map, host, port = H.server(smtpd.DebuggingServer)
    local done = capture(srv)
    H.converse(map, host, port, "EHLO x\r\nMAIL FROM:<a@b> BODY=8BITMIME\r\n"
               .. "RCPT TO:<c@d>\r\nDATA\r\nSubject: hi\r\nFrom: a@b\r\n\r\n"
               .. "line 1\r\n\r\nline 3\r\n.\r\nQUIT\r\n")
    assert.equal(table.concat({
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
      ""}, "\n"), done())
    H.cleanup(map)
  end)

  it("prints no X-Peer for a message without a body", function()
    local srv, map, host, port = H.server(smtpd.DebuggingServer,
                                          {decode_data = true})
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

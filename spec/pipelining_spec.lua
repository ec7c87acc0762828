-- PIPELINING (RFC 2920): advertised; a pipelined group is answered in
-- order and together; a command never runs before the one before it has
-- finished, hooks included.
local H = require "helper"
local R = require "replies"
local smtpd = H.smtpd

local GROUP = "EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\n"
  .. "DATA\r\n"

describe("PIPELINING", function()
  it("is advertised, and pipelining = false (with chunking = false) "
     .. "leaves smtpd's EHLO as it was",
     function()
    local _, map, host, port = H.server(H.Recorder)
    local replies = H.converse(map, host, port, "EHLO x\r\nQUIT\r\n")
    assert.same(R.ehlo, {table.unpack(replies, 1, #R.ehlo)})
    assert.equal("250-PIPELINING", replies[4])
    H.cleanup(map)
    _, map, host, port = H.server(H.Recorder, {pipelining = false,
                                               chunking = false})
    replies = H.converse(map, host, port, "EHLO x\r\nQUIT\r\n")
    assert.same({"250-" .. R.fqdn, "250-SIZE 33554432", "250-8BITMIME",
                 "250 HELP", R.bye}, replies)
    H.cleanup(map)
  end)

  it("answers a group sent in one write in order, in one piece", function()
    local srv, map, host, port = H.server(H.Recorder)
    local c = H.connect(map, host, port)
    c:lines(1)
    c:send(GROUP)
    -- Everything the server wrote for the group arrives before we read:
    -- the replies of a group leave in one write.
    local want = {}
    for _, l in ipairs(R.ehlo) do want[#want + 1] = l end
    for _, l in ipairs({R.ok, R.ok, R.ok, R.data}) do want[#want + 1] = l end
    H.run_until(map, function()
      c:pump()
      local _, n = c.buf:gsub("\r\n", "")
      return n >= #want
    end, 5, "the group's replies")
    assert.same(want, H.split_lines(c.buf))
    c.buf = ""
    -- The message and the next transaction, pipelined behind the dot.
    c:send("hello\r\n.\r\nMAIL FROM:<g@h>\r\nRCPT TO:<i@j>\r\nDATA\r\n"
           .. "again\r\n.\r\nQUIT\r\n")
    assert.same({R.ok, R.ok, R.ok, R.data, R.ok, R.bye}, c:lines(6))
    assert.equal(2, #srv.messages)
    assert.equal("again", srv.messages[2].data)
    c:close()
    H.cleanup(map)
  end)

  it("runs no command of a group before the hook of the one before it "
     .. "finished", function()
    local Srv = H.Recorder:extend()
    local order = {}
    function Srv:check_sender(_, mailfrom)
      order[#order + 1] = "mail " .. mailfrom .. " start"
      smtpd.sleep(0.2)
      order[#order + 1] = "mail " .. mailfrom .. " done"
    end
    function Srv:check_recipient(channel, rcpt)
      order[#order + 1] = "rcpt " .. rcpt .. " (from " .. channel.mailfrom
                          .. ")"
    end
    local _, map, host, port = H.server(Srv)
    local replies = H.converse(map, host, port, GROUP .. "x\r\n.\r\n"
      .. "MAIL FROM:<k@l>\r\nRCPT TO:<m@n>\r\nRSET\r\nQUIT\r\n")
    assert.same({"mail a@b start", "mail a@b done", "rcpt c@d (from a@b)",
                 "rcpt e@f (from a@b)", "mail k@l start", "mail k@l done",
                 "rcpt m@n (from k@l)"}, order)
    local n = #R.ehlo
    assert.same({R.ok, R.ok, R.ok, R.data, R.ok, R.ok, R.ok, R.ok, R.bye},
                {table.unpack(replies, n + 1)})
    H.cleanup(map)
  end)

  it("swaks --pipeline delivers, pipelining its commands", function()
    if not H.ensure("swaks", "swaks") then
      return H.skip("swaks is not installed and cannot be installed here")
    end
    local srv, map, _, port = H.server(H.Recorder)
    local text = H.run_client(map, ("swaks --pipeline --server 127.0.0.1:%d "
      .. "--from a@example.org --to b@example.net,c@example.net "
      .. "--header 'Subject: piped' --body 'pipelined body'"):format(port))
    -- swaks shows a pipelined group as several "->" lines before the
    -- "<-" replies.
    assert.matches(" %-> MAIL FROM:<a@example%.org>\n %-> RCPT TO:"
                   .. "<b@example%.net>\n %-> RCPT TO:<c@example%.net>\n", text)
    local m = assert(srv.messages and srv.messages[1], text)
    assert.same({"b@example.net", "c@example.net"}, m.rcpttos)
    assert.matches("\npipelined body\n", m.data)
    H.cleanup(map)
  end)
end)

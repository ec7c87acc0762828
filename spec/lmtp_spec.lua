-- LMTP (RFC 2033): LHLO instead of HELO/EHLO, and after the data one
-- reply per accepted recipient: process_message returns one reply for all
-- or a table with one each.
local H = require "helper"
local R = require "replies"
local smtpd = H.smtpd

-- The index of the last line of the LHLO reply.
local function lhlo_lines(replies)
  local n = 1
  while replies[n] and not replies[n]:match("^250%-") do n = n + 1 end
  while replies[n] and replies[n]:match("^%d%d%d%-") do n = n + 1 end
  return n
end

describe("LMTP", function()
  it("takes LHLO, refuses HELO and EHLO, and answers each recipient",
     function()
    local srv, map, host, port = H.server(H.Recorder, {lmtp = true})
    local replies = H.converse(map, host, port, "HELO x\r\nEHLO x\r\n"
      .. "LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\n"
      .. "RCPT TO:<g@h>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n")
    assert.equal(R.unknown("HELO"), replies[1])
    assert.equal(R.unknown("EHLO"), replies[2])
    assert.equal("250-" .. R.fqdn, replies[3])
    local n = lhlo_lines(replies)
    assert.equal("250 HELP", replies[n])
    assert.same({R.ok, R.ok, R.ok, R.ok, R.data, R.ok, R.ok, R.ok, R.bye},
                {table.unpack(replies, n + 1)})
    assert.same({"c@d", "e@f", "g@h"}, srv.messages[1].rcpttos)
    H.cleanup(map)
  end)

  it("gives each recipient its own reply from a table, in RCPT order",
     function()
    local Inbox = smtpd.LMTPServer:extend()
    function Inbox:process_message(peer, mailfrom, rcpttos)
      local out = {}
      for i, r in ipairs(rcpttos) do
        out[i] = r:match("^full") and "452 4.2.2 Mailbox full"
                 or r:match("^gone") and "550 5.1.1 No such user"
                 or "250 2.0.0 Delivered"
      end
      return out
    end
    local _, map, host, port = H.server(Inbox)
    local replies = H.converse(map, host, port, "LHLO x\r\nMAIL FROM:<a@b>"
      .. "\r\nRCPT TO:<ok@x>\r\nRCPT TO:<full@x>\r\nRCPT TO:<gone@x>\r\n"
      .. "DATA\r\nhi\r\n.\r\nQUIT\r\n")
    local n = lhlo_lines(replies)
    assert.same({R.ok, R.ok, R.ok, R.ok, R.data, "250 2.0.0 Delivered",
                 "452 4.2.2 Mailbox full", "550 5.1.1 No such user", R.bye},
                {table.unpack(replies, n + 1)})
    H.cleanup(map)
  end)

  it("answers 451 to each recipient for a wrong table, an error, a "
     .. "message too big, or a BDAT message", function()
    local Inbox = smtpd.LMTPServer:extend()
    local mode
    function Inbox:process_message()
      if mode == "short" then return {"250 OK"} end
      if mode == "boom" then error("boom") end
      return nil
    end
    function Inbox:log() end
    local _, map, host, port = H.server(Inbox, {data_size_limit = 50})
    local two = "LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>"
                .. "\r\n"
    local function run(input)
      local replies = H.converse(map, host, port, two .. input .. "QUIT\r\n")
      return {table.unpack(replies, lhlo_lines(replies) + 4)}
    end
    mode = "short"
    assert.same({R.data, R.local_error, R.local_error, R.bye},
                run("DATA\r\nx\r\n.\r\n"))
    mode = "boom"
    assert.same({R.data, R.local_error, R.local_error, R.bye},
                run("DATA\r\nx\r\n.\r\n"))
    mode = nil
    assert.same({R.data, R.too_much, R.too_much, R.bye},
                run("DATA\r\n" .. ("x"):rep(80) .. "\r\n.\r\n"))
    assert.same({R.ok, R.ok, R.bye}, run("BDAT 3 LAST\r\nabc"))
    assert.same({R.too_much, R.too_much, R.bye},
                run("BDAT 60 LAST\r\n" .. ("y"):rep(60)))
    H.cleanup(map)
  end)

  it("is what our relay client expects (sendmail{lmtp = true})", function()
    local Inbox = smtpd.LMTPServer:extend()
    function Inbox:process_message(_, _, rcpttos)
      return {"250 OK", "550 5.1.1 No such user"}
    end
    local _, map, host, port = H.server(Inbox)
    -- Outside a hook, sendmail runs the loop itself.
    local refused = smtpd.sendmail({host, port}, "a@b", {"ok@x", "gone@x"},
                                   "Subject: s\r\n\r\nx\r\n",
                                   {lmtp = true, map = map})
    local names = {}
    for k in pairs(refused) do names[#names + 1] = k end
    assert.same({"gone@x"}, names)
    assert.equal(550, refused["gone@x"][1])
    H.cleanup(map)
  end)

  it("Postfix's smtp-source -L delivers: every recipient answered",
     function()
    if not H.ensure("smtp-source", "postfix") then
      return H.skip("Postfix's smtp-source is not installed and cannot be")
    end
    local Inbox = smtpd.LMTPServer:extend()
    local rcpts = 0
    function Inbox:process_message(_, _, rcpttos)
      rcpts = rcpts + #rcpttos
      return nil
    end
    local _, map, _, port = H.server(Inbox)
    local out = H.run_client(map, ("smtp-source -L -c -m 20 -s 2 -r 3 "
      .. "-f a@example.org -t b@example.net 127.0.0.1:%d 2>&1; echo exit=$?")
      :format(port), 30)
    assert.matches("exit=0", out)
    assert.equal(60, rcpts)
    H.cleanup(map)
  end)
end)

-- Clients that vanish mid-command and mid-DATA, over and over: the handler
-- runs exactly once per 250 a client saw, and never for a cut message.
local H = require "helper"
local R = require "replies"

describe("vanishing clients", function()
  it("handler count equals the 250s clients saw, over 300 sessions",
     function()
    local srv, map, host, port = H.server(H.Recorder)
    local script = "EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"
                   .. "Subject: t\r\n\r\n" .. ("body line\r\n"):rep(200)
                   .. ".\r\n"
    math.randomseed(5)
    local seen_250, cut = 0, 0
    for i = 1, 300 do
      local split = ({1, 7, 1500})[i % 3 + 1]
      -- Cut anywhere, or (one time in four) send it all.
      local n = math.random(1, #script - 1)
      if i % 4 == 0 then n = #script end
      local c = H.connect(map, host, port)
      c:lines(1)
      local part = script:sub(1, n)
      if split == 1 then split = 64 end    -- keep 300 sessions quick
      c:send(part, split)
      if n == #script then
        -- Whole message sent: wait for the reply to the final dot.
        -- 220, EHLO's lines, MAIL, RCPT, 354, then the one that counts.
        local last = 4 + #R.ehlo
        local lines = c:lines(last, 10)
        if lines[last] == R.ok then seen_250 = seen_250 + 1 end
      else
        cut = cut + 1
      end
      c:close()
    end
    H.run_until(map, function() return map:stats().channels == 0 end, 10,
                "every channel to be freed")
    assert.is_true(cut > 100)
    assert.equal(75, seen_250)
    assert.equal(seen_250, #(srv.messages or {}))
    assert.equal(0, map:stats().data_held)
    H.cleanup(map)
  end)
end)

-- Storing a greeting, a sender or a recipient can fail (out of memory).
-- core.fault_alloc(n) makes the n-th string allocation from now fail:
-- whichever one it hits, the client gets either the usual reply with the
-- state stored, or 451 4.3.0 with the state as it was; never a 250 for
-- something that was not kept, and never no reply at all.
describe("allocation failures", function()
  local CASES = {
    {name = "HELO", before = "", cmd = "HELO client.example",
     ok = R.helo, after = "MAIL FROM:<a@b>", stored = R.ok,
     lost = R.need_helo},
    {name = "MAIL", before = "EHLO x\r\n",
     cmd = "MAIL FROM:<a@b> SIZE=10 BODY=8BITMIME", ok = R.ok,
     after = "RCPT TO:<c@d>", stored = R.ok, lost = R.need_mail},
    {name = "RCPT", before = "EHLO x\r\nMAIL FROM:<a@b>\r\n",
     cmd = "RCPT TO:<c@d>", ok = R.ok, after = "DATA", stored = R.data,
     lost = R.need_rcpt},
  }
  for _, case in ipairs(CASES) do
    it(case.name .. " answers 451 4.3.0 and keeps its state consistent",
       function()
      if not H.testing() then return end
      local _, map, host, port = H.server(H.Recorder)
      local failed = 0
      for n = 1, 6 do
        local c = H.connect(map, host, port)
        c:lines(1)
        local _, k = case.before:gsub("\r\n", "")
        c:send(case.before)
        c:lines(k == 0 and 0 or (#R.ehlo + (case.name == "RCPT" and 1 or 0)))
        H.core.fault_alloc(n)
        c:send(case.cmd .. "\r\n")
        local reply = c:reply()[1]
        H.core.fault_alloc(0)
        c:send(case.after .. "\r\n")
        local next_reply = c:reply()[1]
        if reply == R.local_error then
          failed = failed + 1
          assert.equal(case.lost, next_reply, "n = " .. n)
        else
          assert.equal(case.ok, reply, "n = " .. n)
          assert.equal(case.stored, next_reply, "n = " .. n)
        end
        if next_reply == R.data then     -- end the message it began
          c:send("x\r\n.\r\n")
          assert.equal(R.ok, c:reply()[1])
        end
        c:send("NOOP\r\n")
        -- The session goes on either way.
        assert.equal(R.ok, c:reply()[1])
        c:close()
      end
      assert.is_true(failed > 0, "no allocation failed")
      H.cleanup(map)
    end)
  end
end)

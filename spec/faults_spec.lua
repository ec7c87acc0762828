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
        local lines = c:lines(8, 10)
        if lines[8] == R.ok then seen_250 = seen_250 + 1 end
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

-- Socket maps and the asyncore-style loop.
local H = require "helper"
local R = require "replies"
local smtpd = H.smtpd

describe("loop", function()
  it("runs only the map it is given", function()
    local a, amap, host, aport = H.server(H.Recorder)
    local b, bmap, _, bport = H.server(H.Recorder)
    -- A client of server a, on map b's loop: a's map never runs.
    local c = H.connect(bmap, host, aport)
    for _ = 1, 10 do smtpd.loop(0.01, nil, bmap, 1) end
    assert.equal("", c.tcp:peek())
    c:close()
    -- Each map serves its own server when it runs.
    local ra = H.converse(amap, host, aport, "NOOP\r\nQUIT\r\n")
    local rb = H.converse(bmap, host, bport, "NOOP\r\nQUIT\r\n")
    assert.same({R.ok, R.bye}, ra)
    assert.same({R.ok, R.bye}, rb)
    assert.is_nil(a.messages)
    assert.is_nil(b.messages)
    H.cleanup(amap)
    H.cleanup(bmap)
  end)

  it("returns after count iterations, each bounded by timeout", function()
    local _, map = H.server(H.Recorder)
    local t0 = H.now()
    smtpd.loop(0.05, nil, map, 3)
    local dt = H.now() - t0
    assert.is_true(dt >= 0.1 and dt < 2, "took " .. dt)
    t0 = H.now()
    smtpd.loop{timeout = 0.05, map = map, count = 2}
    assert.is_true(H.now() - t0 < 2)
    H.cleanup(map)
  end)

  -- libuv caches the loop's time between iterations. A step armed from
  -- that stale time after Lua ran for longer than the step's timeout used
  -- to fire before the poll, which then waited for the next timer (here
  -- the idle connection's 10 s timeout; with none, forever).
  it("never oversleeps after Lua ran longer than a step's timeout",
     function()
    local _, map, host, port = H.server(H.Recorder, {timeout = 10})
    local c = H.connect(map, host, port)
    c:lines(1)                       -- greeted, then idle: no traffic
    local function step(f)
      local t0 = H.now()
      f()
      return H.now() - t0
    end
    H.busy(0.3)                      -- Lua busy between steps
    local dt = step(function() map:loop(0.1, 2) end)
    assert.is_true(dt >= 0.15 and dt < 3, "map:loop(0.1, 2) took " .. dt)
    os.execute("sleep 0.3")          -- or blocked in a call
    dt = step(function() smtpd.loop(0.1, nil, map, 2) end)
    assert.is_true(dt >= 0.15 and dt < 3, "smtpd.loop took " .. dt)
    -- A step much shorter than the pause, many times over.
    H.busy(0.2)
    dt = step(function() for _ = 1, 5 do map:loop(0.001, 1) end end)
    assert.is_true(dt < 3, "5 steps of 1 ms took " .. dt)
    -- sleep outside a hook waits the whole time, not "already due".
    H.busy(0.3)
    dt = step(function() smtpd.sleep(0.3, map) end)
    assert.is_true(dt >= 0.25 and dt < 3, "sleep(0.3) took " .. dt)
    -- The idle connection was never touched.
    assert.is_false(c:closed())
    c:close()
    H.cleanup(map)
  end)

  it("returns at once when the map is empty", function()
    local map = H.map()
    local t0 = H.now()
    smtpd.loop(5, nil, map, 10)
    smtpd.loop(5, nil, map)
    assert.is_true(H.now() - t0 < 1)
  end)

  it("close_all closes servers, channels and clients; loop() then returns",
     function()
    local srv, map, host, port = H.server(H.Recorder)
    -- A client on its own map sees the server side close.
    local cmap = H.map()
    local c = H.connect(cmap, host, port)
    H.run_until(cmap, function()
      map:loop(0.01, 1)
      return c.tcp:peek() ~= ""
    end, 5, "the greeting")
    -- A client in the map itself is closed with it.
    local inner = H.core.tcp_connect(map, host, port)
    map:loop(0.01, 2)
    smtpd.close_all(map)
    assert.equal("Recorder(closed)", tostring(srv))
    c:wait_closed(5)
    c:close()
    assert.is_nil((inner:write("x")))   -- EPIPE: it was closed
    local t0 = H.now()
    smtpd.loop(1, nil, map)
    assert.is_true(H.now() - t0 < 1)
    assert.equal(0, map:count())
    H.cleanup(cmap)
    map:close()
  end)

  it("keeps serving open channels after server:close(false)", function()
    local srv, map, host, port = H.server(H.Recorder)
    local c = H.connect(map, host, port)
    c:lines(1)
    srv:close(false)
    c:send("HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n")
    assert.same({R.helo, R.ok, R.ok, R.data, R.ok}, c:lines(5))
    assert.equal(1, #srv.messages)
    c:close()
    H.cleanup(map)
  end)

  it("refuses to run a map from inside one of its hooks", function()
    local S = smtpd.SMTPServer:extend()
    local err
    function S:process_message()
      local ok, e = pcall(smtpd.loop, 0.1, nil, self._map, 1)
      err = e
    end
    local _, map, host, port = H.server(S)
    H.converse(map, host, port, "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
               .. "DATA\r\nx\r\n.\r\nQUIT\r\n")
    assert.matches("already running", err)
    H.cleanup(map)
  end)

  it("has the module's constants", function()
    assert.equal(33554432, smtpd.DATA_SIZE_DEFAULT)
    assert.equal(H.core.version, smtpd.__version__)
    assert.matches("^smtpd.map", tostring(smtpd.socket_map))
    assert.equal(0, smtpd.SMTPChannel.COMMAND)
    assert.equal(1, smtpd.SMTPChannel.DATA)
  end)
end)

-- Limits and timeouts (smtpd had none), each input sent in 1-, 7- and
-- 1500-byte writes.
local H = require "helper"
local R = require "replies"
local smtpd = H.smtpd

local SPLITS = {1, 7, 1500}

describe("limits", function()
  it("checks the limit options", function()
    local map = H.map()
    for _, bad in ipairs({{max_recipients = 99}, {max_recipients = 1.5},
                          {max_bad_commands = -1}, {timeout = "x"},
                          {handler_timeout = -2}}) do
      bad.map = map
      assert.has_error(function() H.Recorder("127.0.0.1:0", nil, bad) end)
    end
  end)

  for _, split in ipairs(SPLITS) do
    describe(("(%d-byte writes)"):format(split), function()
      it("answers 452 past max_recipients and keeps the earlier ones",
         function()
        local srv, map, host, port = H.server(H.Recorder,
                                              {max_recipients = 100})
        local input = "HELO x\r\nMAIL FROM:<a@b>\r\n"
        for i = 1, 102 do input = input .. "RCPT TO:<r" .. i .. "@d>\r\n" end
        input = input .. "DATA\r\nx\r\n.\r\nQUIT\r\n"
        local replies = H.converse(map, host, port, input,
                                   split == 1 and 64 or split)
        assert.equal(R.ok, replies[102])
        assert.equal("452 4.5.3 Error: too many recipients", replies[103])
        assert.equal("452 4.5.3 Error: too many recipients", replies[104])
        assert.equal(R.ok, replies[106])
        assert.equal(100, #srv.messages[1].rcpttos)
        assert.equal("r100@d", srv.messages[1].rcpttos[100])
        H.cleanup(map)
      end)

      it("takes 1000 recipients by default", function()
        local srv, map, host, port = H.server(H.Recorder)
        local parts = {"HELO x\r\nMAIL FROM:<a@b>\r\n"}
        for i = 1, 1001 do parts[#parts + 1] = "RCPT TO:<r" .. i .. "@d>\r\n" end
        parts[#parts + 1] = "DATA\r\nx\r\n.\r\nQUIT\r\n"
        local replies = H.converse(map, host, port, table.concat(parts),
                                   split == 1 and 512 or split)
        assert.equal("452 4.5.3 Error: too many recipients", replies[1003])
        assert.equal(1000, #srv.messages[1].rcpttos)
        H.cleanup(map)
      end)

      it("closes with 421 after too many bad commands", function()
        local _, map, host, port = H.server(H.Recorder, {max_bad_commands = 3})
        local replies = H.converse(map, host, port,
          "FOO\r\nHELO\r\nNOOP\r\nBAR\r\nBAZ\r\nNOOP\r\n", split)
        assert.same({R.unknown("FOO"), R.helo_syntax, R.ok, R.unknown("BAR"),
                     R.unknown("BAZ"), "421 4.7.0 " .. R.fqdn
                     .. " Error: too many bad commands, closing"}, replies)
        H.cleanup(map)
      end)
    end)
  end

  it("closes an idle connection with 421", function()
    local _, map, host, port = H.server(H.Recorder, {timeout = 0.3})
    local c = H.connect(map, host, port)
    c:lines(1)
    c:send("HELO x\r\n")
    assert.same({R.helo}, c:lines(1))
    local t0 = H.now()
    local rest = c:wait_closed(5)
    assert.equal("421 4.4.2 " .. R.fqdn .. " Error: timeout exceeded\r\n", rest)
    assert.is_true(H.now() - t0 >= 0.25)
    c:close()
    H.cleanup(map)
  end)

  it("counts the idle time from the last read", function()
    -- A NOOP every 0.1 s for 1.5 s keeps a session with a 1 s timeout.
    local _, map, host, port = H.server(H.Recorder, {timeout = 1})
    local c = H.connect(map, host, port)
    c:lines(1)
    for _ = 1, 15 do
      local t0 = H.now()
      H.run_until(map, function() return H.now() - t0 > 0.1 end, 1)
      c:send("NOOP\r\n")
      assert.same({R.ok}, c:lines(1))
    end
    assert.is_false(c:closed())
    c:wait_closed(5)
    c:close()
    H.cleanup(map)
  end)

  it("gives up a handler that waits past handler_timeout: 451, the session"
     .. " goes on, nothing is accepted", function()
    local S = H.Recorder:extend()
    local finished = false
    function S:process_message(peer, mailfrom, ...)
      if mailfrom == "slow@x" then
        smtpd.sleep(1)
        finished = true
        return "250 accepted late"
      end
      return S.super.process_message(self, peer, mailfrom, ...)
    end
    local srv, map, host, port = H.server(S, {handler_timeout = 0.2})
    local c = H.connect(map, host, port)
    c:lines(1)
    c:send("HELO x\r\nMAIL FROM:<slow@x>\r\nRCPT TO:<r@y>\r\nDATA\r\nx\r\n.\r\n"
           .. "MAIL FROM:<fast@x>\r\nRCPT TO:<r@y>\r\nDATA\r\ny\r\n.\r\n")
    assert.same({R.helo, R.ok, R.ok, R.data, R.local_error, R.ok, R.ok, R.data,
                 R.ok}, c:lines(9, 5))
    -- The given-up handler is never resumed: its sleep ends, and there is
    -- no second reply and no message from it.
    local t0 = H.now()
    H.run_until(map, function() return H.now() - t0 > 1.2 end, 3)
    c:send("NOOP\r\n")
    assert.same({R.ok}, c:lines(1))
    assert.is_false(finished)
    assert.equal(1, #srv.messages)
    assert.equal("fast@x", srv.messages[1].mailfrom)
    c:close()
    H.cleanup(map)
  end)
end)

describe("back-pressure", function()
  for _, split in ipairs(SPLITS) do
    it(("stops reading a client that does not read its replies (%d-byte "
        .. "writes)"):format(split), function()
      local _, map, host, port = H.server(H.Recorder,
                                          {max_bad_commands = false})
      local c = H.connect(map, host, port)
      c:lines(1)
      -- A small receive buffer, so the kernel cannot hide the replies.
      assert(c.tcp:set_rcvbuf(65536))
      c.tcp:pause()
      -- 1,000,000 NOOPs: 8 MB of replies the client does not read, more
      -- than the kernel's socket buffers hold on loopback.
      local n = 1000000
      local input = ("NOOP\r\n"):rep(n)
      -- Megabytes cannot go a byte at a time: scale the writes.
      local step = ({[1] = 4096, [7] = 7 * 1024})[split] or split * 10
      for i = 1, #input, step do
        c.tcp:write(input:sub(i, i + step - 1))
        map:loop(0, 1)
      end
      local t0 = H.now()
      H.run_until(map, function() return H.now() - t0 > 0.5 end, 2)
      local st = map:stats()
      -- The server holds at most the bound plus one read's replies.
      assert.is_true(st.out_max <= 64 * 1024 + 65536, "out " .. st.out_max)
      assert.is_true(st.in_held <= 2 * 65536 + 4096, "in " .. st.in_held)
      -- Once the client reads, every reply arrives.
      c.tcp:set_rcvbuf(4 * 1024 * 1024)
      c.tcp:resume()
      local got = c:lines(n, 20)
      assert.equal(n, #got)
      assert.equal(R.ok, got[n])
      c:close()
      H.cleanup(map)
    end)
  end
end)

describe("connection limits", function()
  local function open(map, host, port, n)
    local cs = {}
    for i = 1, n do
      cs[i] = H.connect(map, host, port)
      cs[i]:lines(1)
    end
    return cs
  end

  for _, opt in ipairs({"max_connections", "max_connections_per_ip"}) do
    it(opt .. ": 421 over the limit, room again when one leaves", function()
      local srv, map, host, port = H.server(H.Recorder, {[opt] = 2})
      local cs = open(map, host, port, 2)
      local third = H.connect(map, host, port)
      assert.equal("421 4.7.0 " .. R.fqdn .. " Error: too many connections, "
                   .. "try again later\r\n", third:wait_closed(5))
      third:close()
      cs[1]:send("QUIT\r\n")
      cs[1]:wait_closed(5)
      cs[1]:close()
      H.run_until(map, function() return map:stats().channels == 1 end, 5)
      local again = H.connect(map, host, port)
      assert.equal(R.greeting, again:lines(1)[1])
      again:send("NOOP\r\n")
      assert.same({R.ok}, again:lines(1))
      again:close()
      cs[2]:close()
      H.cleanup(map)
    end)
  end

  it("releases the count of a channel that outlives its closed server",
     function()
    local map = H.map()
    local a = H.Recorder({"127.0.0.1", 0}, nil, {map = map,
                                                 max_connections = 1})
    local b = H.Recorder({"127.0.0.1", 0}, nil, {map = map,
                                                 max_connections = 1})
    local ahost, aport = a:getsockname()
    local _, bport = b:getsockname()
    local ca = open(map, ahost, aport, 1)
    local cb = open(map, ahost, bport, 1)
    -- A channel in DATA outlives its server's close(); its count goes
    -- with it, into state a's close left alive for it (the sanitizer
    -- and valgrind runs would see it freed).
    ca[1]:send("HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
    ca[1]:lines(4)
    a:close(5)
    ca[1]:send("x\r\n.\r\nNOOP\r\n")
    assert.same({R.ok}, ca[1]:lines(1))
    assert.matches("^421 4%.3%.2 ", ca[1]:wait_closed(5) or "")
    ca[1]:close()
    assert.equal("x", a.messages[1].data)
    H.run_until(map, function() return map:stats().channels == 1 end, 5)
    assert.equal(1, map:stats().channels)
    -- b's count is its own: full until its one channel leaves.
    local over = H.connect(map, ahost, bport)
    assert.matches("^421 4%.7%.0 ", over:wait_closed(5) or "")
    over:close()
    cb[1]:close()
    H.run_until(map, function() return map:stats().channels == 0 end, 5)
    local again = H.connect(map, ahost, bport)
    assert.equal(R.greeting, again:lines(1)[1])
    again:close()
  end)
end)

describe("graceful shutdown", function()
  local BYE = "421 4.3.2 " .. R.fqdn .. " Service shutting down, closing channel"
  local ENV = "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"

  for _, split in ipairs(SPLITS) do
    it(("close(): idle sessions get 421, one in DATA finishes first "
        .. "(%d-byte writes)"):format(split), function()
      local srv, map, host, port = H.server(H.Recorder)
      local idle = H.connect(map, host, port)
      idle:lines(1)
      local busy = H.connect(map, host, port)
      busy:lines(1)
      busy:send(ENV .. "DATA\r\nfirst part\r\n", split)
      busy:lines(4)
      srv:close(5)
      assert.equal(BYE .. "\r\n", idle:wait_closed(5))
      -- New connections are refused: the server no longer listens.
      local late = H.core.tcp_connect(map, host, port)
      H.run_until(map, function() return select(2, late:status()) end, 5)
      assert.equal("ECONNREFUSED", select(3, late:status()))
      busy:send("second part\r\n.\r\nNOOP\r\n", split)
      assert.same({R.ok, BYE}, busy:lines(2))
      busy:wait_closed(5)
      assert.equal("first part\nsecond part", srv.messages[1].data)
      idle:close()
      busy:close()
      late:close()
      H.cleanup(map)
    end)
  end

  it("lets a waiting handler finish within the grace period", function()
    local S = H.Recorder:extend()
    function S:process_message(...)
      smtpd.sleep(0.3)
      return S.super.process_message(self, ...)
    end
    local srv, map, host, port = H.server(S)
    local c = H.connect(map, host, port)
    c:lines(1)
    c:send(ENV .. "DATA\r\nx\r\n.\r\n")
    c:lines(4)
    srv:close(5)
    assert.same({R.ok, BYE}, c:lines(2, 5))
    assert.equal(1, #srv.messages)
    c:close()
    H.cleanup(map)
  end)

  it("ends what is still running when the grace period is over", function()
    local srv, map, host, port = H.server(H.Recorder)
    local c = H.connect(map, host, port)
    c:lines(1)
    c:send(ENV .. "DATA\r\nnever ends\r\n")
    c:lines(4)
    local t0 = H.now()
    srv:close(0.3)
    assert.equal(BYE .. "\r\n", c:wait_closed(5))
    assert.is_true(H.now() - t0 >= 0.25)
    assert.is_nil(srv.messages)
    c:close()
    H.cleanup(map)
  end)
end)

describe("slow DATA", function()
  local ENV = "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"

  -- Sends one byte every `every` seconds until the server closes.
  local function trickle(c, map, every, limit)
    local t0 = H.now()
    local i = 0
    while not c:closed() and H.now() - t0 < limit do
      i = i + 1
      c.tcp:write("x")
      local t1 = H.now()
      H.run_until(map, function()
        c:pump()
        return H.now() - t1 >= every or c:closed()
      end, every + 1)
    end
    return H.now() - t0
  end

  it("cuts a client that trickles past data_timeout", function()
    local srv, map, host, port = H.server(H.Recorder, {data_timeout = 0.5,
                                                       min_data_rate = false})
    local c = H.connect(map, host, port)
    c:lines(1)
    c:send(ENV)
    c:lines(4)
    local took = trickle(c, map, 0.05, 5)
    assert.equal("421 4.4.2 " .. R.fqdn .. " Error: DATA took too long\r\n",
                 c:wait_closed(5))
    assert.is_true(took >= 0.4 and took < 3, "took " .. took)
    assert.is_nil(srv.messages)
    c:close()
    H.cleanup(map)
  end)

  it("cuts a client below min_data_rate after the grace period", function()
    local srv, map, host, port = H.server(H.Recorder, {min_data_rate = 100,
                                                       data_rate_grace = 0.3})
    local c = H.connect(map, host, port)
    c:lines(1)
    c:send(ENV)
    c:lines(4)
    local took = trickle(c, map, 0.1, 5)          -- about 10 bytes/s
    assert.equal("421 4.4.2 " .. R.fqdn .. " Error: data arrives too slowly"
                 .. "\r\n", c:wait_closed(5))
    assert.is_true(took >= 0.25 and took < 3, "took " .. took)
    assert.is_nil(srv.messages)
    c:close()
    H.cleanup(map)
  end)

  for _, split in ipairs(SPLITS) do
    it(("lets a client that keeps the rate through (%d-byte writes)")
       :format(split), function()
      local srv, map, host, port = H.server(H.Recorder, {min_data_rate = 100,
                                                         data_rate_grace = 0.2})
      local replies = H.converse(map, host, port, ENV .. ("y"):rep(3000)
                                 .. "\r\n.\r\nQUIT\r\n", split)
      assert.equal(R.ok, replies[5])
      assert.equal(3000, #srv.messages[1].data)
      H.cleanup(map)
    end)
  end
end)

describe("max_data_memory", function()
  for _, split in ipairs(SPLITS) do
    it(("answers DATA with 451 while messages in memory pass the cap "
        .. "(%d-byte writes)"):format(split), function()
      local srv, map, host, port = H.server(H.Recorder,
                                            {max_data_memory = 100000})
      local a = H.connect(map, host, port)
      a:lines(1)
      a:send("HELO a\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", split)
      a:lines(4)
      a:send(("z"):rep(150000) .. "\r\n", split == 1 and 4096 or split)
      H.run_until(map, function() return map:stats().data_held > 100000 end,
                  5, "a's message to be held")
      local b = H.connect(map, host, port)
      b:lines(1)
      b:send("HELO b\r\nMAIL FROM:<e@f>\r\nRCPT TO:<g@h>\r\nDATA\r\n", split)
      assert.same({R.helo, R.ok, R.ok, "451 4.3.1 Error: insufficient system "
                   .. "storage, try again later"}, b:lines(4))
      a:send(".\r\n", split)
      assert.same({R.ok}, a:lines(1))
      assert.equal(0, map:stats().data_held)
      b:send("DATA\r\nsmall\r\n.\r\n", split)
      assert.same({R.data, R.ok}, b:lines(2))
      assert.equal(2, #srv.messages)
      a:close()
      b:close()
      H.cleanup(map)
    end)
  end
end)

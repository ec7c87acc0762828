-- Bad input over real sockets: no crash, no hang, no leak, no lost mail.
local H = require "helper"
local R = require "replies"

local ENV = "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"

describe("bad input", function()
  for _, split in ipairs({1, 7, 1500}) do
    it(("a 1 MiB line without LF gets 500 (%d-byte writes)"):format(split),
       function()
      local _, map, host, port = H.server(H.Recorder)
      local c = H.connect(map, host, port)
      c:lines(1)
      local chunk = ("A"):rep(split == 1 and 64 * 1024 or 1024 * 1024)
      c:send(chunk, split == 1 and 4096 or split * 100)
      c:send("\r\nNOOP\r\n", split)
      assert.same({R.too_long, R.ok}, c:lines(2, 20))
      c:close()
      H.cleanup(map)
    end)

    it(("NUL bytes get a clear reply (%d-byte writes)"):format(split),
       function()
      local srv, map, host, port = H.server(H.Recorder)
      local replies = H.converse(map, host, port,
        "HELO a\0b\r\n" .. ENV .. "DATA\r\nnul\0inside\r\n.\r\nQUIT\r\n", split)
      assert.same({R.bad_syntax, R.helo, R.ok, R.ok, R.data, R.ok, R.bye},
                  replies)
      assert.equal("nul\0inside", srv.messages[1].data)
      H.cleanup(map)
    end)

    it(("invalid UTF-8 gets a clear reply (%d-byte writes)"):format(split),
       function()
      local _, map, host, port = H.server(H.Recorder)
      local replies = H.converse(map, host, port,
        "HELO \255\r\nEHLO \192\175\r\nNOOP\r\nQUIT\r\n", split)
      assert.same({R.bad_utf8, R.bad_utf8, R.ok, R.bye}, replies)
      H.cleanup(map)
    end)
  end

  it("does not call the handler when the client vanishes mid-DATA, and "
     .. "frees the connection", function()
    local srv, map, host, port = H.server(H.Recorder)
    for _, cut in ipairs({"DATA\r\npartial", "DATA\r\nline\r\n", "DATA\r\n.",
                          "DATA\r\nx\r\n.\r", "DAT"}) do
      local c = H.connect(map, host, port)
      c:lines(1)
      c:send(ENV .. cut)
      c:lines(3)
      c:close()
    end
    -- Only the server is left in the map once the channels are freed.
    H.run_until(map, function() return map:count() == 1 end, 5,
                "channels to be freed")
    assert.is_nil(srv.messages)
    H.cleanup(map)
  end)

  it("survives a client that vanishes while the reply is written", function()
    local srv, map, host, port = H.server(H.Recorder)
    for _ = 1, 20 do
      local c = H.connect(map, host, port)
      c:send(ENV .. "DATA\r\nx\r\n.\r\nHELP\r\nHELP\r\n")
      c:close()
    end
    H.run_until(map, function() return map:count() == 1 end, 5)
    local replies = H.converse(map, host, port, "NOOP\r\nQUIT\r\n")
    assert.same({R.ok, R.bye}, replies)
    assert.is_true(#(srv.messages or {}) <= 20)
    H.cleanup(map)
  end)

  it("takes many pipelined transactions in one write", function()
    local srv, map, host, port = H.server(H.Recorder)
    local input = "HELO x\r\n"
    for i = 1, 200 do
      input = input .. "MAIL FROM:<s" .. i .. "@x>\r\nRCPT TO:<r@y>\r\nDATA\r\n"
              .. "msg " .. i .. "\r\n.\r\n"
    end
    local replies = H.converse(map, host, port, input .. "QUIT\r\n")
    assert.equal(1 + 4 * 200 + 1, #replies)
    assert.equal(200, #srv.messages)
    assert.equal("msg 200", srv.messages[200].data)
    H.cleanup(map)
  end)

  it("handles a large message at the size limit", function()
    local srv, map, host, port = H.server(H.Recorder,
                                          {data_size_limit = 4 * 1024 * 1024})
    local line = ("0123456789"):rep(99) .. "\r\n"    -- 992 bytes
    local body = line:rep(4096)                       -- ~4 MiB
    local c = H.connect(map, host, port)
    c:lines(1)
    c:send(ENV .. "DATA\r\n", 1500)
    c:lines(4)
    c:send(body .. ".\r\n")
    assert.same({R.ok}, c:lines(1, 20))
    c:send(ENV:gsub("HELO x\r\n", "") .. "DATA\r\n" .. body .. line:rep(300)
           .. ".\r\n")
    assert.same({R.ok, R.ok, R.data, R.too_much}, c:lines(4, 20))
    c:close()
    assert.equal(1, #srv.messages)
    assert.equal(#body - 4096 - 1, #srv.messages[1].data)  -- CRLF -> LF, last one ends DATA
    H.cleanup(map)
  end)
end)

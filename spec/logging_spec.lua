-- server:log and -d: every line of a session names its peer; commands and
-- replies both appear; the map's own messages reach a server's log too.
local H = require "helper"
local smtpd = H.smtpd

describe("logging", function()
  it("with debug on, server:log sees the connection, each command and "
     .. "each reply, prefixed with the peer", function()
    local map = H.map()
    local Srv = smtpd.SMTPServer:extend()
    function Srv:process_message() return nil end
    local lines = {}
    function Srv:log(level, fmt, ...)
      lines[#lines + 1] = level .. " " .. fmt:format(...)
    end
    local srv = Srv("127.0.0.1:0", nil, {map = map})
    local host, port = srv:getsockname()
    map:set_debug(true)
    local replies = H.converse(map, host, port, "EHLO me\r\nMAIL FROM:<a@x>"
      .. "\r\nRCPT TO:<b@y>\r\nDATA\r\nSubject: s\r\n\r\nhi\r\n.\r\nQUIT\r\n")
    map:set_debug(false)
    assert.equal("221 Bye", replies[#replies])
    local c = H.connect(map, host, port)  -- debug off: nothing logged
    c:lines(1)
    c:close()
    local peer
    for _, l in ipairs(lines) do
      peer = peer or l:match("^debug (127%.0%.0%.1:%d+) Incoming connection")
    end
    assert.is_string(peer)
    local want = {
      "Incoming connection (to " .. host .. ":" .. port .. ")",
      "> 220 ", "< EHLO me", "> 250-", "> 250 HELP", "< MAIL FROM:<a@x>",
      "> 250 OK", "< RCPT TO:<b@y>", "> 250 OK", "< DATA", "> 354 ",
      "message: 14 bytes from <a@x> to 1 recipient(s)", "> 250 OK",
      "< QUIT", "> 221 Bye", "Connection closed",
    }
    -- The client sent everything in one write: replies go out (and are
    -- logged) when a batch is answered, so only presence is checked.
    local bodies = {}
    for _, l in ipairs(lines) do
      assert.equal("debug " .. peer .. " ", l:sub(1, #peer + 7))
      bodies[#bodies + 1] = l:sub(#peer + 8)
    end
    for _, w in ipairs(want) do
      local found = false
      for _, b in ipairs(bodies) do
        if b:sub(1, #w) == w then found = true end
      end
      assert.is_true(found, "missing: " .. w)
    end
  end)

  it("the map's own messages (a failing timer callback) go to the first "
     .. "server's log, or to map:set_log's function", function()
    local map = H.map()
    local Srv = smtpd.SMTPServer:extend()
    local got = {}
    function Srv:log(level, fmt, ...)
      got[#got + 1] = level .. " " .. fmt:format(...)
    end
    local srv = Srv("127.0.0.1:0", nil, {map = map})
    local fired = 0
    H.core.after(map, 0, function() fired = fired + 1; error("tick boom") end)
    H.run_until(map, function() return fired == 1 end, 5)
    assert.matches("^error error in a timer callback: .*tick boom", got[1])
    local mine = {}
    local prev = map:set_log(function(level, line)
      mine[#mine + 1] = level .. " " .. line
    end)
    assert.is_function(prev)
    H.core.after(map, 0, function() fired = fired + 1; error("tock") end)
    H.run_until(map, function() return fired == 2 end, 5)
    assert.matches("tock", mine[1])
    assert.equal(1, #got)
    -- A second server leaves the map's choice alone.
    local other = Srv("127.0.0.1:0", nil, {map = map})
    H.core.after(map, 0, function() fired = fired + 1; error("tuck") end)
    H.run_until(map, function() return fired == 3 end, 5)
    assert.matches("tuck", mine[2])
    srv:close()
    other:close()
  end)

  it("lua-smtpd -d prints greppable lines with the peer on stderr",
     function()
    local port = H.free_port()
    local err = os.tmpname()
    local pid = H.spawn(("exec lua5.4 bin/lua-smtpd -n -d -c DebuggingServer "
      .. "127.0.0.1:%d >/dev/null 2>%s"):format(port, err))
    finally(function() H.kill(pid); os.remove(err) end)
    assert.is_true(H.wait_listening(port, 10))
    local map = H.map()
    H.converse(map, "127.0.0.1", port, "HELO x\r\nNOOP\r\nQUIT\r\n")
    local text
    H.run_until(map, function()
      text = H.readfile(err) or ""
      return text:find("Connection closed", 1, true) ~= nil
    end, 5, "the debug lines")
    H.cleanup(map)
    assert.matches("smtpd: 127%.0%.0%.1:%d+ < HELO x\n", text)
    assert.matches("smtpd: 127%.0%.0%.1:%d+ > 250 OK\n", text)
    assert.matches("smtpd: 127%.0%.0%.1:%d+ > 221 Bye\n", text)
  end)
end)

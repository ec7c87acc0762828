-- The live prompt: lua-smtpd --repl (smtpd.interact) reads chunks on the
-- map's own loop, so the server serves while the prompt waits; chunks that
-- wait (smtpd.sendmail, smtpd.sleep) park while other clients are served.
local H = require "helper"

-- lua-smtpd --repl fed through a FIFO; wait_for runs map (the spec's own
-- servers) while it waits.
local function prompt(args, map)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir .. " && mkfifo " .. dir .. "/in"))
  local port = H.free_port()
  local pid, out = H.spawn(("exec lua5.4 bin/lua-smtpd -n --repl %s "
    .. "127.0.0.1:%d <%s/in"):format(args, port, dir))
  local input = assert(io.open(dir .. "/in", "w"))
  local r = {pid = pid, out = out, port = port}
  function r.type(line)
    input:write(line, "\n")
    input:flush()
  end
  function r.output() return H.readfile(out) or "" end
  function r.wait_for(text, timeout)
    H.run_until(map, function() return r.output():find(text, 1, true) end,
                timeout or 10, ("%q in the prompt's output"):format(text))
  end
  function r.close()
    if input then input:close() end
    input = nil
    pcall(H.run_until, map, function() return not H.alive(pid) end, 10)
    H.kill(pid)
    os.execute("rm -rf " .. dir)
  end
  finally(function() r.close(); os.remove(out) end)
  assert.is_true(H.wait_listening(port, 10), r.output())
  return r
end

local function deliver(map, port, body)
  return H.converse(map, "127.0.0.1", port, "HELO x\r\nMAIL FROM:<a@b>\r\n"
    .. "RCPT TO:<c@d>\r\nDATA\r\n" .. body .. "\r\n.\r\nQUIT\r\n")
end

describe("lua-smtpd --repl", function()
  it("serves while the prompt waits; a redefined process_message takes "
     .. "effect on the next message", function()
    local map = H.map()
    local r = prompt("-c DebuggingServer", map)
    r.wait_for("smtpd> ")
    -- Mail arrives while nothing is typed.
    local replies = deliver(map, r.port, "Subject: one\r\n\r\nfirst")
    assert.equal("250 OK", replies[5])
    r.wait_for("first")
    -- Expressions print readably; errors print and the prompt goes on.
    r.type("return {a = 1, list = {2, 3}}, server")
    r.wait_for('{a = 1, list = {2, 3}}\tDebuggingServer(127.0.0.1:')
    r.type("error('oops' .. '!')")
    r.wait_for("stdin:1: oops!")
    r.type("function f(")
    r.type("  x) return x * 2 end")
    r.type("print('twice=' .. f(21))")
    r.wait_for("twice=42")
    -- Redefine the handler at the prompt: the next message sees it.
    r.type("function server:process_message(peer, mf, rcpts, data)")
    r.type("  print('REDEFINED:' .. data:upper()) end")
    replies = deliver(map, r.port, "second")
    assert.equal("250 OK", replies[5])
    r.wait_for("REDEFINED:SECOND")
    r.close()
    assert.matches("Ctrl%-D at the prompt stops it", r.output())
  end)

  it("sendmail typed at the prompt waits while another client is served",
     function()
    local map = H.map()
    local up = H.Recorder({"127.0.0.1", 0}, nil, {map = map})
    local _, uport = up:getsockname()
    local r = prompt("-c DebuggingServer", map)
    r.wait_for("smtpd> ")
    -- A client in the middle of DATA on the prompt's own server.
    local busy = H.connect(map, "127.0.0.1", r.port)
    busy:lines(1)
    busy:send("HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhalf\r\n")
    busy:lines(4)
    r.type(("res = smtpd.sendmail('127.0.0.1:%d', 'me@prompt', {'you@up'}, "
            .. "'Subject: typed\\n\\nfrom the prompt')"):format(uport))
    r.type("print('sent=' .. smtpd.repr(res))")
    r.wait_for("sent={}")
    assert.equal("from the prompt", up.messages[1].data:match("\n\n(.*)$"))
    -- The busy client was served meanwhile and still is.
    busy:send("rest\r\n.\r\nQUIT\r\n")
    assert.same({"250 OK", "221 Bye"}, busy:lines(2))
    r.wait_for("half\nrest")
    busy:close()
    -- smtpd.sleep at the prompt parks the chunk, not the server.
    r.type("smtpd.sleep(0.3) print('woke' .. '=1')")
    local replies = deliver(map, r.port, "during sleep")
    assert.equal("250 OK", replies[5])
    r.wait_for("woke=1")
    r.close()
  end)

  it("Ctrl-C cancels a waiting chunk, never the server; Ctrl-D closes "
     .. "gracefully", function()
    local map = H.map()
    local r = prompt("-c DebuggingServer", map)
    r.wait_for("smtpd> ")
    r.type("smtpd.sleep(60) print('never' .. '=1')")
    -- Let the chunk start waiting, then Ctrl-C.
    local t0 = H.now()
    H.run_until(map, function() return H.now() - t0 > 0.3 end, 2)
    os.execute("kill -INT " .. r.pid)
    r.wait_for("interrupted")
    assert.is_true(H.alive(r.pid))
    r.type("print('after' .. '=ok')")
    r.wait_for("after=ok")
    local replies = deliver(map, r.port, "still serving")
    assert.equal("250 OK", replies[5])
    r.wait_for("still serving")
    -- Ctrl-D: the prompt ends and the process exits.
    r.close()
    assert.is_false(H.alive(r.pid))
    assert.is_nil(r.output():find("never=1", 1, true))
  end)

  it("is refused with --workers", function()
    local code, text = H.run_cli("-n --repl --workers 2 127.0.0.1:8025")
    assert.equal(1, code)
    assert.matches("--repl and --workers exclude each other", text, 1, true)
  end)
end)

describe("smtpd.reload", function()
  it("patches a live class; a module that fails to load keeps the old code",
     function()
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
    local path = dir .. "/live_handler.lua"
    local function write(body)
      local f = assert(io.open(path, "w"))
      f:write(body)
      f:close()
    end
    write([[
local H = require "helper"
local C = H.Recorder:extend("Live")
function C:process_message(...) self.tag = "v1" end
return C
]])
    local saved = package.path
    package.path = dir .. "/?.lua;" .. package.path
    finally(function()
      package.path = saved
      package.loaded.live_handler = nil
      os.execute("rm -rf " .. dir)
    end)
    local Live = require "live_handler"
    local srv, map, _, port = H.server(Live)
    deliver(map, port, "x")
    assert.equal("v1", srv.tag)
    write([[
local H = require "helper"
local C = H.Recorder:extend("Live")
function C:process_message(...) self.tag = "v2" end
return C
]])
    local mod, changed = H.smtpd.reload("live_handler")
    assert.equal(Live, mod)
    assert.same({"live_handler.process_message"}, changed)
    deliver(map, port, "x")
    assert.equal("v2", srv.tag)
    write("return {")
    local ok, why = H.smtpd.reload("live_handler")
    assert.is_nil(ok)
    assert.matches("live_handler", why)
    deliver(map, port, "x")
    assert.equal("v2", srv.tag)
    H.cleanup(map)
  end)
end)

-- The lua-smtpd command line.
local H = require "helper"
local R = require "replies"

local BIN = "bin/lua-smtpd"

local run = H.run_cli

local free_port = H.free_port

-- Starts the CLI; waits until it accepts; returns pid, port, output file.
local function start(args)
  local port = free_port()
  local pid, out = H.spawn(("exec lua5.4 %s %s 127.0.0.1:%d </dev/null")
                           :format(BIN, args, port))
  if H.wait_listening(port) then return pid, port, out end
  H.kill(pid)
  error("lua-smtpd did not start: " .. (H.readfile(out) or ""))
end

describe("lua-smtpd", function()
  it("prints its version", function()
    local code, text = run("-V")
    assert.equal(0, code)
    assert.equal(H.core.version .. "\n", text)
    code, text = run("--version")
    assert.equal(H.core.version .. "\n", text)
  end)

  it("prints usage for -h, exit 0", function()
    local code, text = run("-h")
    assert.equal(0, code)
    assert.matches("Usage: lua%-smtpd %[options%]", text)
    assert.matches("%-%-smtputf8", text)
  end)

  it("exits 1 with usage on bad options", function()
    for _, bad in ipairs({"-x", "--bogus", "-c", "--size=abc",
                          "a:1 b:2 c:3", "nocolon", "host:port"}) do
      local code, text = run(bad)
      assert.equal(1, code, bad)
      assert.is_truthy(text:find("Usage:", 1, true) or
                       text:find("Invalid size", 1, true), bad)
    end
  end)

  it("exits 1 when the class cannot be found", function()
    local code, text = run("-n -c NoSuchServer 127.0.0.1:0")
    assert.equal(1, code)
    assert.matches("cannot load class NoSuchServer", text)
  end)

  -- cli.parse used to print and os.exit: a script (or a spec) that
  -- parses a command line of its own was ended by a typo.
  it("parses into a table, or returns why it cannot, never exiting",
     function()
    local cli = require "smtpd.cli"
    local opts = assert(cli.parse({"-n", "-c", "DebuggingServer", "-s",
                                   "100", "127.0.0.1:2525"}))
    assert.is_false(opts.setuid)
    assert.equal("DebuggingServer", opts.classname)
    assert.equal(100, opts.size_limit)
    assert.equal("127.0.0.1", opts.localhost)
    assert.equal(2525, opts.localport)
    assert.equal("help", cli.parse({"-h"}).action)
    assert.equal("version", cli.parse({"--version"}).action)
    for _, case in ipairs({
      {{"--bogus"}, "option --bogus not recognized"},
      {{"-s", "many"}, "Invalid size: many"},
      {{"--workers", "0"}, "Invalid number of workers: 0 (1 to 1024)"},
      {{"a:1", "b:2", "c:3"}, "Invalid arguments: a:1, b:2, c:3"},
      {{"nohost"}, "Bad local spec: nohost"},
      {{"-c"}, "option -c requires argument"},
    }) do
      local none, why, code = cli.parse(case[1])
      assert.is_nil(none)
      assert.equal(case[2], why)
      assert.equal(1, code)
    end
  end)

  it("becomes nobody without -n, or says why it cannot", function()
    local port = free_port()
    local pid, out = H.spawn(("exec lua5.4 %s -c DebuggingServer "
                              .. "127.0.0.1:%d </dev/null"):format(BIN, port))
    finally(function() H.kill(pid) end)
    local map = H.map()
    local uid
    H.run_until(map, function()
      local status = H.readfile("/proc/" .. pid .. "/status")
      if not status then return true end      -- exited
      uid = tonumber(status:match("\nUid:%s+(%d+)"))
      return uid ~= 0 and uid ~= nil and H.alive(pid)
        and (H.readfile(out) or ""):find("listening on", 1, true)
    end, 5, "setuid or exit")
    local alive = H.alive(pid)
    H.kill(pid)
    if alive then
      local nobody = io.popen("id -u nobody"):read("n")
      assert.equal(nobody, uid)
    else
      assert.matches('Cannot setuid "nobody"; try running with %-n option',
                     H.readfile(out))
    end
  end)

  -- Dropping to nobody keeps none of root's supplementary groups (they
  -- used to stay: setgid and setuid alone do not clear them).
  it("drops root's supplementary groups with its uid and gid", function()
    if not H.is_root() then return H.skip("needs root to drop privileges") end
    if not H.have("setpriv") then return H.skip("setpriv is not installed") end
    local port = free_port()
    local pid, out = H.spawn(("exec setpriv --groups 0,4,27 lua5.4 %s "
      .. "-c DebuggingServer 127.0.0.1:%d </dev/null"):format(BIN, port))
    H.defer(function() H.kill(pid) end)
    local status
    H.run_until(H.map(), function()
      status = H.readfile("/proc/" .. pid .. "/status") or ""
      return status:match("\nUid:%s+(%d+)") ~= "0" and
             (H.readfile(out) or ""):find("listening on", 1, true)
    end, 5, "the drop to nobody")
    local nobody = H.capture("id -u nobody"):match("%d+")
    local nogroup = H.capture("id -g nobody"):match("%d+")
    assert.equal(nobody, status:match("\nUid:%s+(%d+)"))
    assert.equal(nogroup, status:match("\nGid:%s+(%d+)"))
    assert.equal("", status:match("\nGroups:([^\n]*)"):gsub("%s", ""))
  end)

  -- make run is a newcomer's first command: it says where it listens,
  -- PORT= (or SMTPD_ADDR=) moves it, and it shows each envelope.
  it("make run: a DebuggingServer that says where it listens and where its "
     .. "page is; PORT= moves it", function()
    local port, wport = free_port(), free_port()
    -- Its own process group: make and the server it starts end together.
    local pid, out = H.spawn(("exec setsid make -s run PORT=%d WEB_ADDR=127.0.0.1:%d "
                              .. "</dev/null"):format(port, wport))
    finally(function()
      os.execute("kill -TERM -" .. pid .. " 2>/dev/null")
      H.kill(pid)
    end)
    assert.is_true(H.wait_listening(port, 60), H.readfile(out))
    local map = H.map()
    local replies = H.converse(map, "127.0.0.1", port,
      "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<bcc@e>\r\n"
      .. "DATA\r\nSubject: s\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    assert.same({R.helo, R.ok, R.ok, R.ok, R.data, R.ok, R.bye}, replies)
    H.run_until(map, function()
      return (H.readfile(out) or ""):find("END MESSAGE", 1, true)
    end, 5, "the printed message")
    local text = H.readfile(out)
    assert.matches(("DebuggingServer listening on 127%%.0%%.0%%.1:%d "
                    .. "%%(localhost%%), its mail in a browser at "
                    .. "http://127%%.0%%.0%%.1:%d/; Ctrl%%-C stops it"):format(port, wport), text)
    -- the page's API has the message
    local list = H.capture(("curl -s --max-time 5 http://127.0.0.1:%d/api/v1/messages"):format(wport))
    assert.matches('"Subject":"s"', list, 1, true)
    assert.matches('"Address":"bcc@e"', list, 1, true)
    assert.matches("MAIL FROM: <a@b>\nRCPT TO: <c@d>, <bcc@e>\n%-+ MESSAGE "
                   .. "FOLLOWS", text)
    -- SMTPD_ADDR= names the whole address (the dry run shows the command).
    local p = io.popen("make -n run SMTPD_ADDR=127.0.0.1:2626 2>&1")
    local dry = p:read("a")
    p:close()
    assert.matches("bin/lua-smtpd -n -c DebuggingServer --web=127.0.0.1:8026 127.0.0.1:2626",
                   dry, 1, true)
  end)

  it("runs from a checkout without installing, from any directory",
     function()
    local out = os.tmpname()
    local ok = os.execute(("cd / && env -u LUA_PATH -u LUA_CPATH %s/%s -V "
                           .. ">%s 2>&1"):format(os.getenv("PWD"), BIN, out))
    local text = H.readfile(out)
    os.remove(out)
    assert.is_true(ok == true, text)
    assert.equal(H.core.version .. "\n", text)
  end)

  it("runs a DebuggingServer that prints each message", function()
    local pid, port, out = start("-n -c DebuggingServer")
    local map = H.map()
    local replies = H.converse(map, "127.0.0.1", port,
      "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: s\r\n"
      .. "\r\nbody\r\n.\r\nQUIT\r\n")
    assert.same({R.helo, R.ok, R.ok, R.data, R.ok, R.bye}, replies)
    H.run_until(map, function()
      return (H.readfile(out) or ""):find("END MESSAGE", 1, true)
    end, 5, "the printed message")
    H.kill(pid)
    assert.matches("Subject: s\nX%-Peer: 127%.0%.0%.1\n\nbody\n",
                   H.readfile(out))
  end)

  it("relays as a PureProxy when no class is given", function()
    local map = H.map()
    local up = H.Recorder({"127.0.0.1", 0}, nil, {map = map})
    local _, upport = up:getsockname()
    local port = free_port()
    local pid, out = H.spawn(("exec lua5.4 %s -n 127.0.0.1:%d 127.0.0.1:%d "
                              .. "</dev/null"):format(BIN, port, upport))
    assert.is_true(H.wait_listening(port), H.readfile(out))
    local replies = H.converse(map, "127.0.0.1", port,
      "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: s\r\n"
      .. "\r\nbody\r\n.\r\nQUIT\r\n")
    H.kill(pid)
    assert.same({R.helo, R.ok, R.ok, R.data, R.ok, R.bye}, replies)
    assert.equal("Subject: s\nX-Peer: 127.0.0.1\n\nbody", up.messages[1].data)
  end)

  -- Starts a DebuggingServer on port (a free one when nil) and a session
  -- that is in the middle of DATA. Returns pid, output file, port, map and
  -- the busy client; the process is killed after the test.
  local function start_busy(port)
    port = port or free_port()
    local pid, out = H.spawn(("exec lua5.4 %s -n -c DebuggingServer "
                              .. "127.0.0.1:%d </dev/null"):format(BIN, port))
    finally(function() H.kill(pid) end)
    assert.is_true(H.wait_listening(port), H.readfile(out))
    local map = H.map()
    local busy = H.connect(map, "127.0.0.1", port)
    busy:lines(1)
    busy:send("HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhalf\r\n")
    busy:lines(4)
    return pid, out, port, map, busy
  end

  -- Starts lua-smtpd with an idle session and one in DATA, sends signal,
  -- and checks the shutdown is graceful: the idle session gets 421 at
  -- once, the message in progress is taken, then 421, and it exits.
  -- Returns what it printed.
  local function graceful_shutdown(signal)
    local pid, out, port, map, busy = start_busy()
    local idle = H.connect(map, "127.0.0.1", port)
    idle:lines(1)
    os.execute("kill -" .. signal .. " " .. pid)
    local bye = "421 4.3.2 " .. R.fqdn .. " Service shutting down, closing "
                .. "channel"
    assert.equal(bye .. "\r\n", idle:wait_closed(5))
    busy:send("rest\r\n.\r\n")
    assert.same({R.ok, bye}, busy:lines(2))
    H.run_until(map, function() return not H.alive(pid) end, 5,
                "lua-smtpd to exit")
    local text = H.readfile(out)
    assert.matches("half\nrest", text)
    idle:close()
    busy:close()
    H.cleanup(map)
    return text, port
  end

  it("shuts down gracefully on SIGTERM", function()
    assert.matches("SIGTERM: shutting down", (graceful_shutdown("TERM")))
  end)

  -- The Lua interpreter's own SIGINT handler used to make the next Lua
  -- code raise "interrupted!": the first Ctrl-C dropped the next client
  -- and the server went on serving.
  it("shuts down gracefully on SIGINT (Ctrl-C); a second one exits at once",
     function()
    local text, port = graceful_shutdown("INT")
    assert.matches("SIGINT: shutting down", text)
    assert.is_nil(text:find("interrupted", 1, true))

    -- A message still in DATA holds the shutdown for its grace period: a
    -- second Ctrl-C ends it at once.
    local pid, out, _, map, busy = start_busy(port)
    os.execute("kill -INT " .. pid)
    H.run_until(map, function()
      return (H.readfile(out) or ""):find("shutting down", 1, true)
    end, 5, "the first SIGINT to be seen")
    assert.is_true(H.alive(pid))
    os.execute("kill -INT " .. pid)
    H.run_until(map, function() return not H.alive(pid) end, 5,
                "lua-smtpd to exit on the second SIGINT")
    assert.matches("SIGINT again: exiting now", H.readfile(out))
    busy:close()
    H.cleanup(map)
  end)

  it("takes -s and -u", function()
    local pid, port = start("-n -u -s 1000 -c DebuggingServer")
    local map = H.map()
    local replies = H.converse(map, "127.0.0.1", port, "EHLO x\r\nQUIT\r\n")
    H.kill(pid)
    assert.same({"250-" .. R.fqdn, "250-SIZE 1000", "250-8BITMIME",
                 "250-SMTPUTF8", "250-PIPELINING", "250-CHUNKING", "250 HELP", R.bye}, replies)
  end)

  it("loads a class from a file and from module.Class", function()
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
    local f = io.open(dir .. "/handler.lua", "w")
    f:write([[
local smtpd = require "smtpd"
local Reject = smtpd.SMTPServer:extend("Reject")
function Reject:process_message(peer, mailfrom, rcpttos, data)
  return "554 rejected " .. mailfrom
end
return Reject
]])
    f:close()
    f = io.open(dir .. "/myhandlers.lua", "w")
    f:write([[
local smtpd = require "smtpd"
local M = {}
M.Tagged = smtpd.SMTPServer:extend("Tagged")
function M.Tagged:process_message() return "250 tagged" end
return M
]])
    f:close()
    local msg = "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r\n"
                .. ".\r\nQUIT\r\n"
    local pid, port = start("-n -c " .. dir .. "/handler.lua")
    local map = H.map()
    local replies = H.converse(map, "127.0.0.1", port, msg)
    H.kill(pid)
    assert.equal("554 rejected a@b", replies[5])
    -- module.Class is looked up on package.path: run with LUA_PATH set.
    local p2 = free_port()
    local pid2, out2 = H.spawn(("LUA_PATH='%s/?.lua;'\"$LUA_PATH\" exec lua5.4"
                                .. " %s -n -c myhandlers.Tagged 127.0.0.1:%d")
                               :format(dir, BIN, p2))
    local ok = H.wait_listening(p2)
    assert.is_true(ok, H.readfile(out2))
    replies = H.converse(map, "127.0.0.1", p2, msg)
    H.kill(pid2)
    assert.equal("250 tagged", replies[5])
    os.execute("rm -rf " .. dir)
  end)
end)

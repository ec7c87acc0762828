-- The REPL use: step the default map with count/timeout and get the
-- prompt back (lua5.4 -i reading a session from stdin).
local H = require "helper"

describe("REPL", function()
  it("steps a server and returns to the prompt", function()
    local script = os.tmpname()
    local f = io.open(script, "w")
    f:write([[
smtpd = require "smtpd"
srv = smtpd.DebuggingServer("127.0.0.1:0")
srv
host, port = srv:getsockname()
c = smtpd.core.tcp_connect(smtpd.socket_map, host, port)
c:write("HELO repl\r\nMAIL FROM:<me@here>\r\nRCPT TO:<you@there>\r\nDATA\r\nSubject: hi\r\n\r\nfrom the REPL\r\n.\r\nQUIT\r\n")
smtpd.loop(0.1, nil, nil, 5)
print(c:read())
print("back at the prompt")
]])
    f:close()
    local out = os.tmpname()
    local ok = os.execute(("timeout 20 lua5.4 -i <%s >%s 2>&1"):format(script,
                                                                     out))
    local text = H.readfile(out)
    os.remove(script)
    os.remove(out)
    assert.is_true(ok == true, text)
    assert.matches("DebuggingServer%(127%.0%.0%.1:%d+, listening%)", text)
    assert.matches("MESSAGE FOLLOWS ----------\nSubject: hi\nX%-Peer: "
                   .. "127%.0%.0%.1\n\nfrom the REPL\n%-%-%-", text)
    assert.matches("354 End data with <CR><LF>.<CR><LF>\r\n250 OK\r\n221 Bye",
                   text, 1, true)
    assert.matches("back at the prompt", text, 1, true)
  end)
end)

-- A lua5.4 -i fed through a FIFO, so the spec decides when each chunk is
-- typed and can signal the interpreter in between.
local function interpreter()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir .. " && mkfifo " .. dir .. "/in"))
  local pid, out = H.spawn(("exec lua5.4 -i <%s/in"):format(dir))
  local input = assert(io.open(dir .. "/in", "w"))
  local r = {pid = pid, out = out}
  function r.type(line)
    input:write(line, "\n")
    input:flush()
  end
  function r.output() return H.readfile(out) or "" end
  -- Waits for text in what the interpreter printed. The typed lines are
  -- echoed too: chunks print markers built at run time ("=" .. "x") so
  -- that the echo never matches.
  function r.wait_for(text, timeout)
    local map = H.map()
    H.run_until(map, function() return r.output():find(text, 1, true) end,
                timeout or 10, ("%q in the REPL's output"):format(text))
    map:close()
  end
  function r.close()
    input:close()
    local map = H.map()
    pcall(H.run_until, map, function() return not H.alive(pid) end, 5)
    map:close()
    H.kill(pid)
    os.execute("rm -rf " .. dir)
    os.remove(out)
  end
  return r
end

describe("REPL and Ctrl-C", function()
  it("Ctrl-C raises 'interrupted' out of smtpd.loop(); the servers and "
     .. "their clients go on", function()
    local repl = interpreter()
    local ok, err = pcall(function()
      repl.type([[smtpd = require "smtpd"]])
      repl.type([[srv = smtpd.DebuggingServer("127.0.0.1:0")]])
      repl.type([[host, port = srv:getsockname()]])
      repl.type([[c = smtpd.core.tcp_connect(smtpd.socket_map, host, port)]])
      repl.type([[c:write("HELO repl\r\nMAIL FROM:<me@here>\r\n")]])
      repl.type([[print("=" .. "looping"); smtpd.loop(); print("=" .. "returned")]])
      repl.wait_for("=looping")
      H.busy(0.2)
      os.execute("kill -INT " .. repl.pid)
      repl.wait_for("\ninterrupted\n")
      -- Back at the prompt, with the same server and the same client.
      repl.type([[c:write("RCPT TO:<you@there>\r\nDATA\r\nSubject: hi\r\n\r\n]]
                .. [[after Ctrl-C\r\n.\r\nQUIT\r\n")]])
      repl.type([[smtpd.loop(0.05, nil, nil, 20); print(srv)]])
      repl.type([[print((c:read():gsub("\r\n", "|")))]])
      repl.type([[print("=" .. "done")]])
      repl.wait_for("=done")
    end)
    local text = repl.output()
    repl.close()
    assert.is_true(ok, tostring(err) .. "\n" .. text)
    assert.is_nil(text:find("=returned", 1, true), text)
    assert.matches("DebuggingServer(127.0.0.1:", text, 1, true)
    assert.matches("Subject: hi\nX-Peer: 127.0.0.1\n\nafter Ctrl-C\n", text,
                   1, true)
    assert.matches("|250 OK|250 OK|354 End data with <CR><LF>.<CR><LF>|250 OK"
                   .. "|221 Bye|", text, 1, true)
  end)

  it("Ctrl-C ends smtpd.sleep at the prompt the same way", function()
    local repl = interpreter()
    local ok, err = pcall(function()
      repl.type([[smtpd = require "smtpd"]])
      repl.type([[t0 = smtpd.core.hrtime()]])
      repl.type([[print("=" .. "sleeping"); smtpd.sleep(30)]])
      repl.wait_for("=sleeping")
      H.busy(0.2)
      os.execute("kill -INT " .. repl.pid)
      repl.wait_for("\ninterrupted\n")
      repl.type([[print(("=slept %.0f s"):format(smtpd.core.hrtime() - t0))]])
      repl.wait_for("\n=slept")
    end)
    local text = repl.output()
    repl.close()
    assert.is_true(ok, tostring(err) .. "\n" .. text)
    assert.matches("\n=slept [0-9] s", text)
  end)

  it("Ctrl-C ends a DNS query or an HTTP request at the prompt, and what "
     .. "comes next works", function()
    local peers = require "peers"
    local web, why = peers.http()
    local ns, why2 = peers.dns()
    if not (web and ns) then
      H.skip(why or why2)
      return
    end
    local repl = interpreter()
    local ok, err = pcall(function()
      repl.type([[smtpd = require "smtpd"]])
      repl.type(([[assert(smtpd.dns.configure{servers = {"127.0.0.1:%d"}})]])
                :format(ns.port))
      repl.type([[t0 = smtpd.core.hrtime()]])
      repl.type([[print("=" .. "asking"); print(smtpd.dns.query("slow.test", "A", {timeout = 30}))]])
      repl.wait_for("=asking")
      H.busy(0.3)
      os.execute("kill -INT " .. repl.pid)
      repl.wait_for("\ninterrupted\n")
      repl.type([[print("=" .. "mx", smtpd.dns.mx("test")[1].exchange)]])
      repl.wait_for("=mx\tmx1.test")
      repl.type(([[print("=" .. "fetching"); print(smtpd.http.get("http://127.0.0.1:%d/slow", {timeout = 30}))]])
                :format(web.port))
      repl.wait_for("=fetching")
      H.busy(0.3)
      os.execute("kill -INT " .. repl.pid)
      repl.wait_for("\ninterrupted\n", 5)
      repl.type(([[print("=" .. "got", smtpd.http.get("http://127.0.0.1:%d/hello").body)]])
                :format(web.port))
      repl.wait_for("=got\thello")
      repl.type([[print(("=took %.0f s"):format(smtpd.core.hrtime() - t0))]])
      repl.wait_for("\n=took")
    end)
    local text = repl.output()
    repl.close()
    peers.stop()
    assert.is_true(ok, tostring(err) .. "\n" .. text)
    assert.matches("\n=took [0-4] s", text)   -- neither waited its 5 s
  end)
end)

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

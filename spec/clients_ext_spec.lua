-- Real clients against a server with every extension on (PIPELINING,
-- CHUNKING, BINARYMIME, ENHANCEDSTATUSCODES, DSN): swaks, curl and
-- smtplib still deliver; smtplib's LMTP class over a unix socket too.
local H = require "helper"
local smtpd = H.smtpd

local function all_on()
  return {enhanced_status_codes = true, dsn = true, binarymime = true}
end

describe("real clients with every extension on", function()
  it("swaks --pipeline", function()
    if not H.ensure("swaks", "swaks") then
      return H.skip("swaks is not installed and cannot be installed here")
    end
    local srv, map, _, port = H.server(H.Recorder, all_on())
    local out = H.run_client(map, ("swaks --pipeline --server 127.0.0.1:%d "
      .. "--from a@example.org --to b@example.net --header 'Subject: s' "
      .. "--body 'swaks body'"):format(port))
    assert.matches("250 2%.6%.0 OK", out)
    assert.matches("\nswaks body\n", srv.messages[1].data)
    H.cleanup(map)
  end)

  it("curl", function()
    if not H.have("curl") then return H.skip("curl is not installed") end
    local srv, map, _, port = H.server(H.Recorder, all_on())
    local file = os.tmpname()
    local f = io.open(file, "wb")
    f:write("Subject: curl\r\n\r\ncurl body\r\n")
    f:close()
    H.run_client(map, ("curl -sS smtp://127.0.0.1:%d --mail-from x@y.org "
                       .. "--mail-rcpt z@w.org -T %s"):format(port, file))
    os.remove(file)
    assert.equal("Subject: curl\n\ncurl body", srv.messages[1].data)
    H.cleanup(map)
  end)

  it("smtplib, and smtplib.LMTP over a unix socket", function()
    local py = H.python_with("smtplib")
    if not py then return H.skip("no python3") end
    local srv, map, _, port = H.server(H.Recorder, all_on())
    local dir = H.capture("mktemp -d"):gsub("%s+$", "")
    finally(function() os.execute("rm -rf " .. dir) end)
    local sock = dir .. "/lmtp.sock"
    local Inbox = smtpd.LMTPServer:extend()
    local got
    function Inbox:process_message(peer, mailfrom, rcpttos, data)
      got = {peer = peer, rcpttos = rcpttos, data = data}
    end
    Inbox("unix:" .. sock, nil, {map = map, enhanced_status_codes = true})
    local out = H.run_client(map, ("%s -c \"import smtplib\n"
      .. "s = smtplib.SMTP('127.0.0.1', %d)\n"
      .. "print(s.sendmail('a@b', ['c@d'], 'Subject: p\\r\\n\\r\\nsmtp\\r\\n',"
      .. " rcpt_options=['NOTIFY=SUCCESS']))\n"
      .. "s.quit()\n"
      .. "l = smtplib.LMTP('%s')\n"
      .. "print(l.sendmail('a@b', ['u@x'], 'Subject: l\\r\\n\\r\\nlmtp\\r\\n'))\n"
      .. "l.quit()\""):format(py, port, sock))
    assert.equal("{}\n{}\n", out)
    assert.equal("Subject: p\n\nsmtp", srv.messages[1].data)
    assert.equal("SUCCESS", srv.messages[1].kwargs.dsn.rcpt["c@d"].notify)
    assert.same({"u@x"}, got.rcpttos)
    assert.equal("unix:" .. sock, got.peer[1])
    assert.equal("Subject: l\n\nlmtp", got.data)
    H.cleanup(map)
  end)
end)

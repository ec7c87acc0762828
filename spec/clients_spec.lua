-- Real clients send mail to our server; the handler sees what they sent.
local H = require "helper"

local client = H.run_client

local ensure = H.ensure

describe("real clients", function()
  it("swaks", function()
    if not ensure("swaks", "swaks") then
      return H.skip("swaks is not installed and cannot be installed here")
    end
    local srv, map, _, port = H.server(H.Recorder)
    local text = client(map, ("swaks --server 127.0.0.1:%d --from a@example.org"
      .. " --to b@example.net,c@example.net --header 'Subject: swaks'"
      .. " --body 'Hello from swaks\n.dot line'"):format(port))
    assert.matches("250 OK", text)
    local m = assert(srv.messages and srv.messages[1], text)
    assert.equal("a@example.org", m.mailfrom)
    assert.same({"b@example.net", "c@example.net"}, m.rcpttos)
    assert.matches("Subject: swaks\n", m.data)
    assert.matches("\nHello from swaks\n%.dot line", m.data)
    assert.is_nil(m.data:find("\r", 1, true))
    H.cleanup(map)
  end)

  it("curl", function()
    if not H.have("curl") then return H.skip("curl is not installed") end
    local srv, map, _, port = H.server(H.Recorder)
    local file = os.tmpname()
    local f = io.open(file, "wb")
    f:write("Subject: curl\r\n\r\n.starts with a dot\r\nsecond\r\n")
    f:close()
    client(map, ("curl -sS smtp://127.0.0.1:%d --mail-from x@y.org "
                 .. "--mail-rcpt z@w.org -T %s"):format(port, file))
    os.remove(file)
    local m = assert(srv.messages and srv.messages[1])
    assert.equal("x@y.org", m.mailfrom)
    assert.equal("Subject: curl\n\n.starts with a dot\nsecond", m.data)
    H.cleanup(map)
  end)

  it("Python's smtplib", function()
    if not H.have("python3") then return H.skip("python3 is not installed") end
    local srv, map, _, port = H.server(H.Recorder)
    local script = os.tmpname()
    local f = io.open(script, "w")
    f:write(([[
import smtplib
with smtplib.SMTP("127.0.0.1", %d, timeout=10) as s:
    s.ehlo("client.example")
    refused = s.sendmail("from@example.org", ["to1@example.net", "to2@example.net"],
                         b"Subject: smtplib\r\n\r\nline\r\n.dotted\r\n",
                         mail_options=["BODY=8BITMIME"])
    print("refused", refused)
    code, msg = s.noop()
    print("noop", code)
]]):format(port))
    f:close()
    local text = client(map, "python3 " .. script)
    os.remove(script)
    assert.matches("refused {}", text, 1, true)
    assert.matches("noop 250", text, 1, true)
    local m = assert(srv.messages and srv.messages[1], text)
    assert.equal("from@example.org", m.mailfrom)
    assert.same({"to1@example.net", "to2@example.net"}, m.rcpttos)
    assert.equal("Subject: smtplib\n\nline\n.dotted", m.data)
    -- smtplib adds SIZE= when the server offers SIZE.
    local opts = table.concat(m.kwargs.mail_options, " ")
    assert.matches("^SIZE=%d+ BODY=8BITMIME$", opts)
    H.cleanup(map)
  end)
end)

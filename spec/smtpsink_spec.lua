-- PureProxy in front of Postfix's smtp-sink: the dump of what smtp-sink
-- received is checked byte for byte.
local H = require "helper"
local R = require "replies"
local smtpd = H.smtpd

local function is_root() return io.popen("id -u"):read("n") == 0 end

-- What smtp-sink writes for a message: each line as received (CRLF, CR
-- and LF each end one), dots unstuffed, LF-terminated, then one empty line.
local function dump_body(data)
  return table.concat(smtpd.DebuggingServer._splitlines(data), "\n") .. "\n\n"
end

-- Drops the Received header smtp-sink adds (its date and id vary).
local function without_received(dump)
  return (dump:gsub("Received: [^\n]*\n\t[^\n]*\n\t[^\n]*\n", "", 1))
end

describe("PureProxy in front of smtp-sink", function()
  local dir, pid, port, log

  setup(function()
    if not H.ensure("smtp-sink", "postfix") then return end
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir .. " && chmod 777 " .. dir)
    port = H.free_port()
    pid, log = H.spawn(("exec smtp-sink %s -d %s/%%M. 127.0.0.1:%d 10")
                       :format(is_root() and "-u nobody" or "", dir, port))
    if not H.wait_listening(port) then
      error("smtp-sink did not start: " .. (H.readfile(log) or ""))
    end
  end)

  teardown(function()
    H.kill(pid)
    if dir then os.execute("rm -rf " .. dir) end
  end)

  local function dumps()
    local files = {}
    local p = io.popen("ls " .. dir .. " 2>/dev/null")
    for f in p:lines() do files[#files + 1] = dir .. "/" .. f end
    p:close()
    return files
  end

  local function take_dump(map)
    local files
    H.run_until(map, function()
      files = dumps()
      return #files > 0
    end, 5, "smtp-sink's dump")
    os.execute("sleep 0.1")
    assert.equal(1, #files)
    local text = H.readfile(files[1])
    os.remove(files[1])
    return text
  end

  it("relays a message that smtp-sink dumps byte for byte", function()
    if not pid then
      return H.skip("smtp-sink (Debian postfix) is not installed and "
                    .. "cannot be installed here")
    end
    local map = H.map()
    local p = smtpd.PureProxy({"127.0.0.1", 0}, {"127.0.0.1", port},
                              {map = map})
    local _, pport = p:getsockname()
    local body = "Subject: sink\r\nFrom: a@example.org\r\n\r\n..leading dot"
                 .. "\r\ncaf\195\169\r\n\r\n...\r\nlast line"
    local replies = H.converse(map, "127.0.0.1", pport,
      "EHLO client.example\r\nMAIL FROM:<a@example.org>\r\n"
      .. "RCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n"
      .. body .. "\r\n.\r\nQUIT\r\n")
    -- Relayed at RCPT time: smtp-sink's own reply, and MAIL's parameters
    -- as the client gave them (no BODY: it did not say one).
    assert.matches("^250 ", replies[#replies - 1])
    local data = "Subject: sink\nFrom: a@example.org\nX-Peer: 127.0.0.1\n\n"
                 .. ".leading dot\ncaf\195\169\n\n..\nlast line"
    local expected = "X-Client-Addr: 127.0.0.1\nX-Client-Proto: ESMTP\n"
      .. "X-Helo-Args: " .. R.fqdn .. "\n"
      .. "X-Mail-Args: <a@example.org>\n"
      .. "X-Rcpt-Args: <b@example.net>\nX-Rcpt-Args: <c@example.net>\n"
      .. dump_body(data)
    assert.equal(expected, without_received(take_dump(map)))
  end)

  it("never forwards a bare CR or LF as such", function()
    if not pid then
      return H.skip("smtp-sink (Debian postfix) is not installed")
    end
    local map = H.map()
    local refused = smtpd.sendmail({"127.0.0.1", port}, "", {"x@example.net"},
                                   "a\rb\nc\r\n.\n.\r\nd", {map = map})
    assert.same({}, refused)
    local expected = "X-Client-Addr: 127.0.0.1\nX-Client-Proto: ESMTP\n"
      .. "X-Helo-Args: " .. R.fqdn .. "\nX-Mail-Args: <>\n"
      .. "X-Rcpt-Args: <x@example.net>\n"
      .. "a\nb\nc\n.\n.\nd\n\n"
    assert.equal(expected, without_received(take_dump(map)))
  end)
end)

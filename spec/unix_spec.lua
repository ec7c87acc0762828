-- Unix domain sockets: "unix:/path" as the address, for SMTP and LMTP;
-- permissions, stale socket files, a live or foreign file refused, and
-- the file removed on close.
local H = require "helper"
local R = require "replies"
local smtpd = H.smtpd

local function tmpdir()
  return (H.capture("mktemp -d"):gsub("%s+$", ""))
end

-- io.open cannot open a socket file: ask test(1).
local function is_socket(path)
  return os.execute("test -S " .. path) == true
end

-- A Python string literal for any bytes.
local function pybytes(s)
  return "b'" .. s:gsub(".", function(c)
    return ("\\x%02x"):format(c:byte())
  end) .. "'"
end

-- A Python client over the socket: sends input, prints what came back.
local function converse(map, path, input)
  local py = assert(H.python_with("socket"), "python3 is needed")
  local script = os.tmpname()
  local f = io.open(script, "w")
  f:write(([[
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(%q)
s.sendall(%s)
s.settimeout(5)
data = b''
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode('latin-1'))
]]):format(path, pybytes(input)))
  f:close()
  local out = H.run_client(map, py .. " " .. script)
  os.remove(script)
  return H.split_lines(out)
end

describe("unix sockets", function()
  it("serve SMTP on unix:/path; the peer is the path; the file goes on "
     .. "close", function()
    local dir = tmpdir()
    finally(function() os.execute("rm -rf " .. dir) end)
    local path = dir .. "/smtp.sock"
    local srv, map = H.server(H.Recorder, {}, nil)
    srv:close(false)
    srv = H.Recorder("unix:" .. path, nil, {map = map})
    assert.equal("Recorder(unix:" .. path .. ", listening)", tostring(srv))
    assert.same({"unix:" .. path, 0}, {srv:getsockname()})
    assert.matches("^srw%-rw%-rw%-", H.capture("ls -l " .. path))
    local replies = converse(map, path, "HELO x\r\nMAIL FROM:<a@b>\r\n"
      .. "RCPT TO:<c@d>\r\nDATA\r\nSubject: u\r\n\r\nhi\r\n.\r\nQUIT\r\n")
    assert.matches("^220 ", replies[1])
    assert.same({R.helo, R.ok, R.ok, R.data, R.ok, R.bye},
                {table.unpack(replies, 2)})
    local m = srv.messages[1]
    assert.same({"unix:" .. path, 0}, m.peer)
    assert.equal("Subject: u\n\nhi", m.data)
    assert.is_true(is_socket(path))
    srv:close()
    map:loop(0, 2)
    assert.is_false(is_socket(path))
    H.cleanup(map)
  end)

  it("take unix_mode, replace a stale socket file, refuse a live one or "
     .. "another file", function()
    local dir = tmpdir()
    finally(function() os.execute("rm -rf " .. dir) end)
    local path = dir .. "/s.sock"
    local map = H.map()
    finally(function() H.cleanup(map) end)
    local a = H.Recorder("unix:" .. path, nil, {map = map, unix_mode = 384})
    assert.matches("^srw%-%-%-%-%-%-%- ", H.capture("ls -l " .. path))
    local ok, err = pcall(H.Recorder, "unix:" .. path, nil, {map = map})
    assert.is_false(ok)
    assert.matches("cannot listen on unix:" .. path .. ": another server "
                   .. "listens there", err, 1, true)
    -- A server that died without cleaning up leaves a stale file.
    assert(os.execute(("python3 -c \"import socket; s = socket.socket("
      .. "socket.AF_UNIX); s.bind('%s')\""):format(dir .. "/stale.sock")))
    local b = H.Recorder("unix:" .. dir .. "/stale.sock", nil, {map = map})
    assert.equal("unix:" .. dir .. "/stale.sock", (b:getsockname()))
    io.open(dir .. "/plain", "w"):close()
    ok, err = pcall(H.Recorder, "unix:" .. dir .. "/plain", nil, {map = map})
    assert.is_false(ok)
    assert.matches("the file exists and is not a socket", err, 1, true)
    assert.is_not_nil(io.open(dir .. "/plain"))
    ok, err = pcall(H.Recorder, "unix:" .. dir .. "/w.sock", nil,
                    {map = map, reuse_port = true})
    assert.is_false(ok)
    assert.matches("needs a TCP port", err, 1, true)
    a:close(false)
    b:close(false)
  end)

  it("serve LMTP to Postfix's smtp-source -L over the socket", function()
    if not H.ensure("smtp-source", "postfix") then
      return H.skip("Postfix's smtp-source is not installed and cannot be")
    end
    local dir = tmpdir()
    finally(function() os.execute("rm -rf " .. dir) end)
    local path = dir .. "/lmtp.sock"
    local map = H.map()
    local Inbox = smtpd.LMTPServer:extend()
    local rcpts = 0
    function Inbox:process_message(peer, _, rcpttos)
      assert(peer[1] == "unix:" .. path)
      rcpts = rcpts + #rcpttos
    end
    Inbox("unix:" .. path, nil, {map = map})
    local out = H.run_client(map, ("smtp-source -L -c -m 10 -s 2 -r 2 "
      .. "-f a@example.org -t b@example.net unix:%s 2>&1; echo exit=$?")
      :format(path), 30)
    assert.matches("exit=0", out)
    assert.equal(20, rcpts)
  end)

  it("lua-smtpd listens on unix:/path and removes it when stopped",
     function()
    local dir = tmpdir()
    finally(function() os.execute("rm -rf " .. dir) end)
    local path = dir .. "/cli.sock"
    local pid, log = H.spawn(("exec lua5.4 bin/lua-smtpd -n -c "
                              .. "DebuggingServer unix:%s"):format(path))
    finally(function() H.kill(pid); os.remove(log) end)
    local map = H.map()
    H.run_until(map, function() return is_socket(path) end, 10,
                "the socket file")
    local replies = converse(map, path, "HELO x\r\nQUIT\r\n")
    assert.same({R.helo, R.bye}, {table.unpack(replies, 2)})
    assert.matches("listening on unix:" .. path, H.readfile(log), 1, true)
    os.execute("kill " .. pid)
    H.run_until(map, function() return not H.alive(pid) end, 10, "exit")
    assert.is_false(is_socket(path))
    local code, text = H.run_cli("-n --workers 2 -c DebuggingServer unix:"
                                 .. path)
    assert.equal(1, code)
    assert.matches("--workers needs a TCP port", text, 1, true)
  end)
end)

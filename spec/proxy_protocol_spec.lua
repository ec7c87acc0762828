-- The PROXY protocol (v1 and v2): a server behind HAProxy or a load
-- balancer learns the real client; only the trusted proxies may connect,
-- and a bad, missing or late header closes the connection.
local H = require "helper"
local R = require "replies"
local smtpd = H.smtpd

local function proxied(opts)
  opts = opts or {}
  opts.proxy_protocol = opts.proxy_protocol or {trusted = {"127.0.0.1"}}
  return H.server(H.Recorder, opts)
end

local MSG = "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\n"
            .. "QUIT\r\n"

-- A v2 header for TCP over IPv4 from ip:port.
local function v2(ip, port)
  local a, b, c, d = ip:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  return "\r\n\r\n\0\r\nQUIT\n" .. "\x21\x11\0\12"
         .. string.char(a, b, c, d) .. "\127\0\0\1"
         .. string.pack(">I2I2", port, 25)
end

describe("the PROXY protocol", function()
  it("v1: the peer is the client the header names", function()
    local srv, map, host, port = proxied()
    local c = H.connect(map, host, port)
    c:send("PROXY TCP4 203.0.113.7 127.0.0.1 40001 25\r\n")
    assert.matches("^220 ", c:lines(1)[1])
    c:send(MSG)
    c:wait_closed(5)
    c:close()
    assert.same({"203.0.113.7", 40001}, srv.messages[1].peer)
    local c6 = H.connect(map, host, port)
    c6:send("PROXY TCP6 2001:db8::1 ::1 40002 25\r\n" .. MSG)
    c6:wait_closed(5)
    c6:close()
    assert.same({"2001:db8::1", 40002}, srv.messages[2].peer)
    -- UNKNOWN (a health check): the socket's own address.
    local hc = H.connect(map, host, port)
    hc:send("PROXY UNKNOWN\r\n" .. MSG)
    hc:wait_closed(5)
    hc:close()
    assert.equal("127.0.0.1", srv.messages[3].peer[1])
    H.cleanup(map)
  end)

  it("v2: the peer is the client, in a header sent with the first "
     .. "command", function()
    local srv, map, host, port = proxied({proxy_protocol = {
      trusted = {"10.0.0.0/8", "127.0.0.0/8"}}})
    -- The proxy speaks first: no greeting before its header.
    local c = H.connect(map, host, port)
    c:send(v2("198.51.100.9", 51234) .. MSG)
    local replies = H.split_lines(c:wait_closed(5))
    c:close()
    assert.matches("^220 ", replies[1])
    assert.same({R.helo, R.ok, R.ok, R.data, R.ok, R.bye},
                {table.unpack(replies, 2)})
    assert.same({"198.51.100.9", 51234}, srv.messages[1].peer)
    H.cleanup(map)
  end)

  it("closes, without a word, connections from untrusted addresses and "
     .. "bad, oversized or late headers", function()
    local _, map, host, port = proxied({proxy_protocol = {
      trusted = {"10.0.0.0/8"}}})
    local c = H.connect(map, host, port)
    assert.equal("", c:wait_closed(5))           -- 127.0.0.1: not trusted
    c:close()
    H.cleanup(map)
    local srv
    srv, map, host, port = proxied({proxy_protocol = {trusted = "127.0.0.1",
                                                      timeout = 0.3,
                                                      max_header = 64}})
    for _, bad in ipairs({"HELO x\r\n", "PROXY TCP4 1.2.3.4\r\n",
                          "PROXY TCP4 999.1.1.1 1.1.1.1 1 2\r\n",
                          "PROXY TCP4 1.2.3.4 5.6.7.8 65536 25\r\n",
                          "PROXY " .. ("x"):rep(200),
                          "\r\n\r\n\0\r\nQUIT\n\x21\x11\1\0" .. ("z"):rep(300)}) do
      c = H.connect(map, host, port)
      c:send(bad)
      assert.equal("", c:wait_closed(5), bad)
      c:close()
    end
    c = H.connect(map, host, port)                 -- says nothing
    local t0 = H.now()
    assert.equal("", c:wait_closed(5))
    assert.is_true(H.now() - t0 >= 0.25)
    c:close()
    assert.is_nil(srv.messages)
    assert.equal(0, map:stats().channels)
    H.cleanup(map)
  end)

  -- Behind a balancer every connection comes from it: the per-address
  -- limit used to count nobody, so one client could take every slot.
  it("applies max_connections_per_ip to the client the header names",
     function()
    local _, map, host, port = proxied({max_connections_per_ip = 2,
      proxy_protocol = {trusted = {"127.0.0.1"}}})
    local function from(ip, sport)
      local c = H.connect(map, host, port)
      c:send(("PROXY TCP4 %s 127.0.0.1 %d 25\r\n"):format(ip, sport))
      return c
    end
    local a1, a2 = from("198.51.100.1", 1001), from("198.51.100.1", 1002)
    assert.equal(R.greeting, a1:lines(1)[1])
    assert.equal(R.greeting, a2:lines(1)[1])
    local a3 = from("198.51.100.1", 1003)
    assert.equal("421 4.7.0 " .. R.fqdn .. " Error: too many connections, "
                 .. "try again later\r\n", a3:wait_closed(5))
    -- Another client behind the same balancer is served.
    local b = from("198.51.100.2", 2001)
    assert.equal(R.greeting, b:lines(1)[1])
    -- A slot freed is a slot again.
    a1:send("QUIT\r\n")
    a1:wait_closed(5)
    H.run_until(map, function() return map:stats().channels == 2 end, 5)
    local a4 = from("198.51.100.1", 1004)
    assert.equal(R.greeting, a4:lines(1)[1])
    for _, c in ipairs({a1, a2, a3, b, a4}) do c:close() end
  end)

  it("PureProxy's X-Peer names the real client", function()
    local map = H.map()
    local up = H.Recorder("127.0.0.1:0", nil, {map = map})
    local relay = smtpd.PureProxy("127.0.0.1:0", {up:getsockname()},
      {map = map, proxy_protocol = {trusted = {"127.0.0.1"}}})
    local host, port = relay:getsockname()
    local c = H.connect(map, host, port)
    c:send("PROXY TCP4 192.0.2.44 127.0.0.1 4444 25\r\n" .. MSG)
    c:wait_closed(5)
    c:close()
    assert.matches("\nX%-Peer: 192%.0%.2%.44$", up.messages[1].data)
  end)

  it("refuses a malformed option clearly", function()
    for _, case in ipairs({
      {{}, "proxy_protocol.trusted must list"},
      {{trusted = {"nope"}}, "proxy_protocol.trusted: bad address nope"},
      {{trusted = {"10.0.0.0/33"}}, "bad address 10.0.0.0/33"},
      {{trusted = "::1", timeout = -1}, "proxy_protocol.timeout"},
      {"yes", "proxy_protocol must be a table"},
    }) do
      local ok, err = pcall(H.Recorder, "127.0.0.1:0", nil,
                            {map = H.map(), proxy_protocol = case[1]})
      assert.is_false(ok)
      assert.matches(case[2], err, 1, true)
    end
  end)

  it("behind HAProxy (send-proxy-v2) in front of two servers: every "
     .. "message once, each with its real client", function()
    if not H.ensure("haproxy", "haproxy") then
      return H.skip("HAProxy is not installed and cannot be (not root)")
    end
    local map = H.map()
    finally(function() H.cleanup(map) end)
    local a = H.Recorder("127.0.0.1:0", nil, {map = map,
      proxy_protocol = {trusted = {"127.0.0.1"}}})
    local b = H.Recorder("127.0.0.1:0", nil, {map = map,
      proxy_protocol = {trusted = {"127.0.0.1"}}})
    local front = H.free_port()
    local dir = H.capture("mktemp -d"):gsub("%s+$", "")
    finally(function() os.execute("rm -rf " .. dir) end)
    local cfg = io.open(dir .. "/haproxy.cfg", "w")
    cfg:write(([[
global
    maxconn 200
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend smtp
    bind 127.0.0.1:%d
    default_backend lua_smtpd
backend lua_smtpd
    balance roundrobin
    server a 127.0.0.1:%d send-proxy-v2
    server b 127.0.0.1:%d send-proxy-v2
]]):format(front, select(2, a:getsockname()), select(2, b:getsockname())))
    cfg:close()
    local pid, log = H.spawn("exec haproxy -db -f " .. dir .. "/haproxy.cfg")
    finally(function() H.kill(pid); os.remove(log) end)
    assert.is_true(H.wait_listening(front, 10), H.readfile(log))
    -- 20 clients, each from a port we note, through HAProxy.
    local ports = {}
    for i = 1, 20 do
      local c = H.connect(map, "127.0.0.1", front)
      local greeting = c:lines(1, 10)[1]
      assert.matches("^220 ", greeting)
      c:send(("HELO c%d\r\nMAIL FROM:<s%d@x>\r\nRCPT TO:<r@y>\r\nDATA\r\n"
              .. "n %d\r\n.\r\nQUIT\r\n"):format(i, i, i))
      c:wait_closed(10)
      local _, cport = c.tcp:getsockname()
      ports[cport] = i
      c:close()
    end
    local got = {}
    for _, srv in ipairs({a, b}) do
      for _, m in ipairs(srv.messages or {}) do
        assert.equal("127.0.0.1", m.peer[1])
        -- The client's own port, not HAProxy's.
        assert.equal(tonumber(m.data:match("^n (%d+)$")), ports[m.peer[2]])
        got[#got + 1] = m.data
      end
    end
    assert.equal(20, #got)
    assert.is_true(#(a.messages or {}) >= 5 and #(b.messages or {}) >= 5)
    table.sort(got)
    for i = 2, #got do assert.are_not.equal(got[i - 1], got[i]) end
  end)
end)

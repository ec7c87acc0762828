-- Our servers inside a luv program: require("smtpd.luv").attach(map, uv)
-- embeds our loop in luv's (its backend fd, a prepare and a timer), so
-- one uv.run() serves both.
local H = require "helper"
local smtpd = H.smtpd

local function have_luv()
  local ok, uv = pcall(require, "luv")
  if ok then return uv end
  if H.is_root() and H.apt_install("lua-luv") then
    ok, uv = pcall(require, "luv")
    if ok then return uv end
  end
  return nil
end

local uv = have_luv()

-- Runs luv's loop until done() or 5 s; returns whether done() came true.
local function run_until(done)
  local guard = uv.new_timer()
  local timed_out = false
  guard:start(5000, 0, function() timed_out = true; uv.stop() end)
  local check = uv.new_timer()
  check:start(5, 5, function() if done() then uv.stop() end end)
  uv.run()
  guard:close()
  check:close()
  uv.run("nowait")
  return not timed_out
end

-- A luv TCP client that sends input and collects everything it gets.
local function luv_client(port, input)
  local c = {buf = "", closed = false}
  local tcp = uv.new_tcp()
  tcp:connect("127.0.0.1", port, function(err)
    assert(not err, err)
    tcp:read_start(function(rerr, chunk)
      if chunk then c.buf = c.buf .. chunk
      else
        c.closed = true
        if not tcp:is_closing() then tcp:close() end
      end
      assert(not rerr, rerr)
    end)
    tcp:write(input)
  end)
  c.tcp = tcp
  return c
end

describe("smtpd.luv", function()
  if not uv then
    it("needs lua-luv", function()
      H.skip("lua-luv is not installed and cannot be installed here")
    end)
    return
  end

  it("one uv.run() serves our server and runs luv timers", function()
    local map = H.map()
    local handle = require("smtpd.luv").attach(map, uv)
    local srv = H.Recorder({"127.0.0.1", 0}, nil, {map = map})
    local _, port = srv:getsockname()
    local ticks = 0
    local ticker = uv.new_timer()
    ticker:start(10, 10, function() ticks = ticks + 1 end)
    local c = luv_client(port, "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
                                 .. "DATA\r\nhello luv\r\n.\r\nQUIT\r\n")
    -- Both make progress in the one loop.
    assert.is_true(run_until(function() return c.closed and ticks >= 3 end))
    ticker:close()
    assert.matches("221 Bye\r\n$", c.buf)
    assert.equal("hello luv", srv.messages[1].data)
    assert.is_true(ticks > 0)
    handle:detach()
    H.cleanup(map)
    uv.run("nowait")
  end)

  it("a listen started from a luv timer accepts", function()
    local map = H.map()
    local handle = require("smtpd.luv").attach(map, uv)
    local c
    local t = uv.new_timer()
    t:start(20, 0, function()
      local srv = H.Recorder({"127.0.0.1", 0}, nil, {map = map})
      local _, port = srv:getsockname()
      c = luv_client(port, "QUIT\r\n")
    end)
    assert.is_true(run_until(function() return c and c.closed end))
    t:close()
    assert.matches("^220 .*\r\n221 Bye\r\n$", c.buf)
    handle:detach()
    H.cleanup(map)
    uv.run("nowait")
  end)

  it("hooks wait (smtpd.sleep) while luv timers go on; a coroutine may "
     .. "sendmail", function()
    local map = H.map()
    local handle = require("smtpd.luv").attach(map, uv)
    local Slow = H.Recorder:extend()
    function Slow:process_message(...)
      smtpd.sleep(0.1, map)
      return H.Recorder.process_message(self, ...)
    end
    local srv = Slow({"127.0.0.1", 0}, nil, {map = map})
    local _, port = srv:getsockname()
    local ticks, result, err = 0, nil, nil
    local ticker = uv.new_timer()
    ticker:start(10, 10, function() ticks = ticks + 1 end)
    coroutine.wrap(function()
      result, err = smtpd.sendmail({"127.0.0.1", port}, "a@b", {"c@d"},
                                   "Subject: from a coroutine\n\nbody",
                                   {map = map})
    end)()
    assert.is_true(run_until(function() return result or err end))
    ticker:close()
    assert.same({}, result, err)
    assert.is_true(ticks >= 5)
    assert.matches("from a coroutine", srv.messages[1].data)
    -- From the main thread it says why it cannot.
    assert.has_error(function()
      smtpd.sendmail({"127.0.0.1", port}, "a@b", {"c@d"}, "x", {map = map})
    end)
    handle:detach()
    H.cleanup(map)
    uv.run("nowait")
  end)

  it("interact{uv = uv}: the prompt on luv's loop, luv timers ticking",
     function()
    local script = os.tmpname()
    local f = io.open(script, "w")
    f:write([[
local uv = require "luv"
smtpd = require "smtpd"
local srv = smtpd.DebuggingServer("127.0.0.1:0")
_, port = srv:getsockname()
ticks = 0
local t = uv.new_timer()
t:start(10, 10, function() ticks = ticks + 1 end)
uv.unref(t)
smtpd.interact{uv = uv}
t:close()
print("back=" .. tostring(ticks > 0))
smtpd.close_all()
uv.run("nowait")
]])
    f:close()
    local input = os.tmpname()
    f = io.open(input, "w")
    f:write([[x = smtpd.sendmail("127.0.0.1:" .. port, "a@b", {"c@d"}, "Subject: luv\n\nhi")
print("sent=" .. smtpd.repr(x))
smtpd.sleep(0.1)
print("ticked=" .. tostring(ticks > 0))
]])
    f:close()
    local out = os.tmpname()
    -- A pipe, not a file: stdin is polled on the loop.
    local ok = os.execute(("cat %s | timeout 20 lua5.4 %s >%s 2>&1")
                          :format(input, script, out))
    local text = H.readfile(out) or ""
    os.remove(script)
    os.remove(input)
    os.remove(out)
    assert.is_true(ok == true, text)
    assert.matches("Subject: luv\nX%-Peer: 127%.0%.0%.1\n\nhi", text)
    assert.matches("sent={}", text, 1, true)
    assert.matches("ticked=true", text, 1, true)
    assert.matches("back=true", text, 1, true)
  end)

  it("an error in a hook is answered, never reaches luv", function()
    local map = H.map()
    local handle = require("smtpd.luv").attach(map, uv)
    local Bad = H.Recorder:extend()
    function Bad:process_message() error("boom") end
    function Bad:log() end
    local srv = Bad({"127.0.0.1", 0}, nil, {map = map})
    local _, port = srv:getsockname()
    local c = luv_client(port, "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
                                 .. "DATA\r\nx\r\n.\r\nQUIT\r\n")
    assert.is_true(run_until(function() return c.closed end))
    assert.matches("451 4%.3%.0", c.buf)
    handle:detach()
    H.cleanup(map)
    uv.run("nowait")
  end)

  it("smtpd.dns, smtpd.http and smtpd.socket park a luv coroutine while "
     .. "luv timers tick", function()
    local map = H.map()
    local handle = require("smtpd.luv").attach(map, uv)
    -- A DNS server made with luv: every A question answered 192.0.2.7.
    local udp = uv.new_udp()
    assert(udp:bind("127.0.0.1", 0))
    local dns_port = udp:getsockname().port
    udp:recv_start(function(err, q, addr)
      assert(not err, err)
      if not q then return end
      local pos = 13
      while q:byte(pos) ~= 0 do pos = pos + q:byte(pos) + 1 end
      local question = q:sub(13, pos + 4)
      udp:send(q:sub(1, 2) .. "\129\128\0\1\0\1\0\0\0\0" .. question
               .. "\192\12\0\1\0\1\0\0\0\60\0\4\192\0\2\7",
               addr.ip, addr.port, function() end)
    end)
    -- An HTTP server made with luv: one answer per connection.
    local web = uv.new_tcp()
    assert(web:bind("127.0.0.1", 0))
    local web_port = web:getsockname().port
    web:listen(16, function()
      local client = uv.new_tcp()
      web:accept(client)
      local got = ""
      client:read_start(function(_, chunk)
        if not chunk then client:close(); return end
        got = got .. chunk
        if got:find("\r\n\r\n", 1, true) then
          client:write("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n"
                       .. "Connection: close\r\n\r\nfrom uv", function()
            client:close()
          end)
        end
      end)
    end)
    assert(smtpd.dns.configure{servers = {"127.0.0.1:" .. dns_port},
                               map = map, timeout = 2, tries = 1})
    local ticks, got, err = 0, nil, nil
    local ticker = uv.new_timer()
    ticker:start(5, 5, function() ticks = ticks + 1 end)
    coroutine.wrap(function()
      local ok, e = pcall(function()
        local a = assert(smtpd.dns.query("luv.test", "A", {map = map}))
        local res = assert(smtpd.http.get(("http://127.0.0.1:%d/"):format(web_port),
                                          {map = map, timeout = 5}))
        local s = smtpd.socket.tcp()
        s:settimeout(5)
        assert(s:connect("127.0.0.1", web_port, {map = map}))
        assert(s:send("GET / HTTP/1.0\r\n\r\n"))
        local raw = assert(s:receive("*a"))
        s:close()
        got = {a[1].address, a[1].ttl, res.status, res.body, raw:match("\r\n\r\n(.*)$")}
      end)
      if not ok then err = e end
    end)()
    assert.is_true(run_until(function() return got or err end))
    ticker:close()
    udp:close()
    web:close()
    assert.is_nil(err)
    assert.same({"192.0.2.7", 60, 200, "from uv", "from uv"}, got)
    assert.is_true(ticks > 0)
    handle:detach()
    H.cleanup(map)
    uv.run("nowait")
  end)
end)

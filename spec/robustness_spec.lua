-- What a careless or hostile caller can do to the core, and what it must
-- not do: leave a value half stored, leak a handle, break the loop, or
-- stop the listener.
local H = require "helper"
local R = require "replies"
local smtpd = H.smtpd
local core = H.core

describe("bad arguments", function()
  -- Each call raises, and every value is checked before anything is
  -- stored or allocated: no handle is left behind (and, under make asan,
  -- no memory).
  it("raise on every bad-argument path and leave the handles as they were",
     function()
    local map = H.map()
    local up = H.Recorder({"127.0.0.1", 0}, nil, {map = map})
    local conf = assert(core.relay_conf(map, "127.0.0.1",
                                        select(2, up:getsockname()), {}))
    local before = core.stats().handles
    local bad = {
      function() core.after(map, -1, function() end) end,
      function() core.after(map, 1, "not a function") end,
      function() core.after(map, 1e12, function() end) end,
      function() core.on_signal(map, "SIGNOPE", function() end) end,
      function() core.on_signal(map, "SIGUSR2", 42) end,
      function() core.deliver(map, {data = "x"}, function() end) end,
      function() core.deliver(map, {maildir = "/tmp/x", mbox = "/tmp/y",
                                    data = "x"}, function() end) end,
      function() core.deliver(map, {maildir = "/tmp/x"}, function() end) end,
      function() core.deliver(map, {mbox = ("/x"):rep(3000), data = "x"},
                              function() end) end,
      function() core.deliver(map, {mbox = "/tmp/y", data = "x",
                                    lock_timeout = -1}, function() end) end,
      function() core.deliver(map, {maildir = "/tmp/x", data = {}},
                              function() end) end,
      function() core.listen(map, {}, "127.0.0.1", 0, {timeout = "soon"}) end,
      function() core.listen(map, {}, "127.0.0.1", 70000, {}) end,
      function() core.listen(map, {}, "127.0.0.1", 0, {proxy_protocol = {
                   trusted = {"nope"}}}) end,
      function() core.listen(map, {}, "127.0.0.1", 0, {proxy_protocol = {}})
      end,
      function() core.listen(map, {}, "127.0.0.1", 0, {tls = {cert = "x"}})
      end,
      function() core.listen(map, {}, "127.0.0.1", 0, {}, nil, {{}}) end,
      function() core.listen(map, {}, "unix:", 0, {}) end,
      function() core.client_send(map, conf, {rcpttos = {}, data = "x"},
                                  function() end) end,
      function() core.client_send(map, conf, {rcpttos = {"a@b", "c d"},
                                              data = "x"}, function() end) end,
      function() core.client_send(map, conf, {rcpttos = {"a@b"}},
                                  function() end) end,
      function() core.client_send(map, conf, {rcpttos = {"a@b"}, data = "x",
        mail_options = {"OK", {}}}, function() end) end,
      function() core.client_send(map, conf, {rcpttos = {"a@b"}, data = "x",
        mailfrom = "a b"}, function() end) end,
      function() core.relay_conf(map, "127.0.0.1", 25, {timeout = -1}) end,
      function() core.relay_conf(map, "127.0.0.1", 0, {}) end,
      function() core.relay_conf(map, "unix:", 0, {}) end,
      function() core.relay_conf(map, "127.0.0.1", 25, {auth = {user = "u"}})
      end,
      function() core.relay_conf(map, "127.0.0.1", 25, {tls = {ca = 3}}) end,
    }
    for round = 1, 20 do
      for i, f in ipairs(bad) do
        local ok = pcall(f)
        assert.is_false(ok, ("call %d raised nothing (round %d)"):format(i,
                                                                       round))
      end
    end
    assert.equal(before, core.stats().handles)
  end)

  it("leave a channel's fields as they were when an assignment is refused",
     function()
    local Chan = smtpd.SMTPChannel:extend()
    local seen = {}
    function Chan:smtp_XTEST()
      self.rcpttos = {"a@b", "c@d"}
      seen.raised = {
        pcall(function() self.command_size_limit = 0 end),
        pcall(function() self.command_size_limit = 2 ^ 40 end),
        pcall(function() self.smtp_state = 7 end),
        pcall(function() self.rcpttos = {"x@y", {}} end),
        -- A list whose __index raises half way: nothing of it is kept.
        (pcall(function()
          self.rcpttos = setmetatable({}, {
            __len = function() return 3 end,
            __index = function(_, i)
              if i == 2 then error("boom") end
              return "new@x"
            end})
        end)),
      }
      seen.limit = self.command_size_limit
      seen.state = self.smtp_state
      seen.rcpttos = require("smtpd.util").strings(self.rcpttos)
      self:push("250 tested")
    end
    local srv, map, host, port = H.server(H.Recorder)
    srv.channel_class = Chan
    local replies = H.converse(map, host, port, "HELO x\r\nXTEST\r\nQUIT\r\n")
    assert.same({R.helo, "250 tested", R.bye}, replies)
    for i, ok in ipairs(seen.raised) do assert.is_false(ok, "case " .. i) end
    assert.equal(512, seen.limit)
    assert.equal(0, seen.state)
    assert.same({"a@b", "c@d"}, seen.rcpttos)
  end)
end)

describe("the loop", function()
  -- map:close_all() used to look a server's close method up inside
  -- uv_walk: an error there (a user's __index) longjmp'd out of libuv and
  -- left the loop's handle queue pointing into a dead stack frame.
  it("survives an error raised while close_all closes a server", function()
    local map = H.map()
    local Bad = H.Recorder:extend()
    local closed = 0
    local srv = Bad({"127.0.0.1", 0}, nil, {map = map})
    local host, port = srv:getsockname()
    local c = H.connect(map, host, port)
    assert.equal(R.greeting, c:lines(1)[1])
    Bad.__index = function(_, k)
      if k == "close" then
        closed = closed + 1
        error("no close for you")
      end
      return H.Recorder[k]
    end
    local logged = {}
    map:set_log(function(_, line) logged[#logged + 1] = line end)
    map:close_all()
    assert.equal(1, closed)
    assert.matches("no close for you", logged[1])
    map:loop(0, 2)
    assert.equal(0, map:count())
    assert.is_true(c:closed() or c:wait_closed(5) ~= nil)
    -- The map still works.
    local again, _, h2, p2 = H.server(H.Recorder, {map = map})
    local c2 = H.connect(map, h2, p2)
    assert.equal(R.greeting, c2:lines(1)[1])
    c2:close()
    again:close(false)
  end)
end)

describe("the loop never blocks", function()
  it("looks a listen address up off the loop inside a hook; an address is "
     .. "no lookup at all", function()
    assert.equal("127.0.0.1", core.resolve("127.0.0.1"))
    assert.equal("::1", core.resolve("::1"))
    local made
    local Maker = H.Recorder:extend()
    function Maker:process_message(...)
      local orig = core.resolve
      core.resolve = function(host)
        error("a blocking lookup of " .. host .. " inside a hook")
      end
      local ok, srv = pcall(H.Recorder, {"localhost", 0}, nil,
                            {map = self._map})
      core.resolve = orig
      made = ok and srv or tostring(srv)
      return Maker.super.process_message(self, ...)
    end
    local _, map, host, port = H.server(Maker)
    local replies = H.converse(map, host, port, "HELO x\r\nMAIL FROM:<a@b>"
      .. "\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n")
    assert.equal(R.ok, replies[5])
    assert.is_table(made, made)
    local h2, p2 = made:getsockname()
    local c = H.connect(map, h2, p2)
    assert.equal(R.greeting, c:lines(1)[1])
    c:close()
    made:close(false)
  end)
end)

describe("accept", function()
  -- A listener whose connection is never accepted is no longer watched
  -- by libuv: after one failed allocation at accept, nobody was served.
  it("goes on accepting after it had no memory for a connection",
     function()
    if not H.testing() then return end
    local srv, map, host, port = H.server(H.Recorder)
    function srv:log() end
    core.fault("accept", 1)
    local first = H.connect(map, host, port)
    assert.equal("421 4.3.2 Service not available: out of memory, try again "
                 .. "later\r\n", first:wait_closed(5))
    first:close()
    local second = H.connect(map, host, port)
    assert.equal(R.greeting, second:lines(1)[1])
    second:send("QUIT\r\n")
    second:wait_closed(5)
    second:close()
    core.fault("accept", 0)
  end)
end)

describe("a channel's lists", function()
  -- tostring of a list pushed each string before adding the quote
  -- before it to the buffer: once the buffer had to grow, it took the
  -- string for its own box, and the result (or the memory) was wrong.
  it("print as a Lua list, however long", function()
    local Chan = smtpd.SMTPChannel:extend()
    local text
    function Chan:smtp_XLIST()
      local many = {}
      -- The first fills Lua's first buffer (1024 bytes) right up to the
      -- quote before the second; the rest vary, so that the buffer grows
      -- at every kind of step after that.
      many[1] = "a" .. ("x"):rep(1016) .. "@e"
      for i = 2, 300 do many[i] = ("r%s%d@e"):format(("x"):rep(i % 23), i)
      end
      self.rcpttos = many
      text = tostring(self.rcpttos)
      self:push("250 listed")
    end
    local srv, map, host, port = H.server(H.Recorder)
    srv.channel_class = Chan
    H.converse(map, host, port, "HELO x\r\nXLIST\r\nQUIT\r\n")
    local want = {}
    want[1] = '"a' .. ("x"):rep(1016) .. '@e"'
    for i = 2, 300 do want[i] = ('"r%s%d@e"'):format(("x"):rep(i % 23), i)
    end
    assert.equal("{" .. table.concat(want, ", ") .. "}", text)
  end)
end)

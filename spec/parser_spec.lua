-- The protocol engine with no socket: the same input, split every possible
-- way, must give the same replies and the same messages.
local H = require "helper"
local R = require "replies"
local core = H.core

if not core.TESTING then
  describe("parser", function()
    it("runs on a test build of the core", function() H.testing() end)
  end)
  return
end

local function run(input, splits, opts)
  local e = core.engine(opts or {fqdn = R.fqdn})
  local out, msgs = {}, {}
  local pos = 1
  for _, n in ipairs(splits) do
    local o, m = e:feed(input:sub(pos, pos + n - 1))
    out[#out + 1] = o
    for _, x in ipairs(m) do msgs[#msgs + 1] = x end
    pos = pos + n
  end
  local o, m = e:feed(input:sub(pos))
  out[#out + 1] = o
  for _, x in ipairs(m) do msgs[#msgs + 1] = x end
  return table.concat(out), msgs
end

-- Every way to cut input in two, every fixed chunk size, and some random
-- cuttings into many pieces.
local function check_all_splits(input, opts)
  local whole_out, whole_msgs = run(input, {}, opts)
  for cut = 1, #input - 1 do
    local o, m = run(input, {cut}, opts)
    assert.equal(whole_out, o, "split at " .. cut)
    assert.same(whole_msgs, m, "split at " .. cut)
  end
  for size = 1, math.min(#input, 64) do
    local splits = {}
    for _ = 1, #input // size do splits[#splits + 1] = size end
    local o, m = run(input, splits, opts)
    assert.equal(whole_out, o, "chunks of " .. size)
    assert.same(whole_msgs, m, "chunks of " .. size)
  end
  math.randomseed(#input)
  for _ = 1, 100 do
    local splits, left = {}, #input
    while left > 0 do
      local n = math.random(1, math.max(1, math.min(left, 9)))
      splits[#splits + 1] = n
      left = left - n
    end
    local o, m = run(input, splits, opts)
    assert.equal(whole_out, o)
    assert.same(whole_msgs, m)
  end
  return whole_out, whole_msgs
end

local SESSIONS = {
  "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhi\r\n..x\r\n.\r\n",
  "EHLO x\r\nMAIL FROM:<a@b> BODY=8BITMIME\r\nRCPT TO:<c@d>\r\nDATA\r\n"
    .. ".\r\nNOOP\r\n",
  "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\na\rb\nc\r\r\n"
    .. ".\r\r\n.\r\n",
  "NOOP\r\r\nNO\rOP\r\nFOO\n\r\nHELO \0\r\n\r\n",
  "EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"
    .. ("y"):rep(120) .. "\r\n.\r\nMAIL FROM:<e@f>\r\n",
}

describe("parser", function()
  for i, input in ipairs(SESSIONS) do
    it("gives one result however session " .. i .. " is split", function()
      check_all_splits(input, {fqdn = R.fqdn, data_size_limit = 100})
    end)
  end

  it("dot-unstuffs and joins lines with LF", function()
    local _, msgs = check_all_splits(
      "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n..a\r\n...\r\n"
      .. "b.\r\n.c\r\n\r\n.\r\n")
    assert.equal(".a\n..\nb.\nc\n", msgs[1].data)
  end)

  it("ends an empty message at a dot right after DATA", function()
    local out, msgs = run("HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
                          .. "DATA\r\n.\r\n", {})
    assert.equal("", msgs[1].data)
    assert.matches("250 OK\r\n$", out)
  end)

  it("keeps bare CR and LF inside the message", function()
    local _, msgs = check_all_splits(
      "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"
      .. "a\nb\rc\r\r\nd\n.\ne\r\n.\r\n")
    assert.equal("a\nb\rc\r\nd\n.\ne", msgs[1].data)
  end)

  describe("SMTP smuggling: only CRLF . CRLF ends DATA", function()
    local endings = {"\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n", "\r.\r\n",
                     "\r\n.\r", "\r\n\0.\r\n", "\r\n.\r\r\n"}
    for _, ending in ipairs(endings) do
      it(("%q"):format(ending), function()
        local smuggled = "MAIL FROM:<evil@x>\r\nRCPT TO:<victim@y>\r\n"
                         .. "DATA\r\nsmuggled\r\n"
        local input = "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"
                      .. "first" .. ending .. smuggled .. ".\r\nQUIT\r\n"
        local out, msgs = check_all_splits(input)
        assert.equal(1, #msgs)
        assert.equal("a@b", msgs[1].mailfrom)
        assert.matches("MAIL FROM:<evil@x>", msgs[1].data, 1, true)
        assert.matches("smuggled", msgs[1].data, 1, true)
        assert.equal(1, select(2, out:gsub("354 ", "")))
      end)
    end
  end)

  it("answers 552 for too much data and never buffers past the limit",
     function()
    local e = core.engine{data_size_limit = 1000}
    e:feed("HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
    local peak = 0
    for _ = 1, 1000 do
      e:feed(("x"):rep(1000) .. "\r\n")
      peak = math.max(peak, e:buffered())
    end
    local out, msgs = e:feed(".\r\nNOOP\r\n")
    assert.equal(R.too_much .. "\r\n" .. R.ok .. "\r\n", out)
    assert.equal(0, #msgs)
    assert.is_true(peak < 4096, "buffered " .. peak)
  end)

  it("counts the limit as smtpd does: raw bytes before CRLF.CRLF", function()
    local function size_ok(body, limit)
      local e = core.engine{data_size_limit = limit}
      local out = e:feed("HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
                         .. "DATA\r\n" .. body .. "\r\n.\r\n")
      return out:match("250 OK\r\n$") ~= nil
    end
    assert.is_true(size_ok(("a"):rep(10), 10))
    assert.is_false(size_ok(("a"):rep(11), 10))
    assert.is_true(size_ok("a\r\n..b", 6))   -- dots and CRLF count raw
    assert.is_false(size_ok("a\r\n..b", 5))
  end)

  it("answers a 1 MiB line without LF with 500, memory bounded", function()
    local e = core.engine{}
    local peak = 0
    for _ = 1, 1024 do
      e:feed(("A"):rep(1024))
      peak = math.max(peak, e:buffered())
    end
    local out = e:feed("\r\nNOOP\r\n")
    assert.equal(R.too_long .. "\r\n" .. R.ok .. "\r\n", out)
    assert.is_true(peak <= 2048, "buffered " .. peak)
  end)

  it("refuses NUL, bare CR and bare LF inside command lines", function()
    local out = run("NOOP\0\r\nHELO a\nMAIL FROM:<x@y>\r\nHELO b\rc\r\n", {})
    assert.equal(R.bad_syntax .. "\r\n" .. R.bad_syntax .. "\r\n"
                 .. R.bad_syntax .. "\r\n", out)
  end)

  it("answers invalid UTF-8 in a command with 500", function()
    local out = run("HELO \255\254\r\nMAIL FROM:<\192\128@x>\r\n"
                    .. "HELO \237\160\128\r\nHELO ok\r\n", {})
    assert.equal(("%s\r\n"):rep(3):format(R.bad_utf8, R.bad_utf8, R.bad_utf8)
                 .. R.helo .. "\r\n", out)
  end)

  it("answers invalid UTF-8 in data with decode_data", function()
    local e = core.engine{decode_data = true}
    local out, msgs = e:feed("HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
                             .. "DATA\r\n\255\r\n.\r\n")
    assert.matches(R.bad_utf8_data, out, 1, true)
    assert.equal(0, #msgs)
  end)

  it("never echoes control bytes or non-ASCII in replies", function()
    local out = run("F\1O\127\195\169\r\nVRFY <\2@@>\r\n", {})
    assert.equal(R.unknown("F?O???") .. "\r\n"
                 .. "502 Could not VRFY <?@@>\r\n", out)
  end)

  it("keeps the verb case-insensitive and the argument as sent", function()
    local out, msgs = run("hElO Mixed.Case\r\nmail from:<A@B>\r\n"
                          .. "rcpt to:<C@D>\r\ndata\r\nx\r\n.\r\n", {})
    assert.equal("A@B", msgs[1].mailfrom)
    assert.same({"C@D"}, msgs[1].rcpttos)
    assert.matches("^250 ", out)
  end)

  it("strips Unicode whitespace around arguments as Python does", function()
    local _, msgs = run("HELO x\r\nMAIL FROM:\194\160<a@b>\226\128\131\r\n"
                        .. "RCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\n", {})
    assert.equal("a@b", msgs[1].mailfrom)
  end)
end)

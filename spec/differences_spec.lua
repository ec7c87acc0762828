-- Where CPython's smtpd breaks RFC 5321 or crashes we follow the RFC
-- (README.md, "Where it differs from CPython's smtpd"). Each case pins
-- both behaviours: ours always, CPython's when its smtpd is installed (so
-- a change on either side is noticed).
local H = require "helper"
local R = require "replies"

local py = H.python_with_smtpd()
local ENV = "EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
-- Replies after EHLO, as a flat list: the EHLO reply's lines (however
-- many extensions a server lists) are dropped.
local after_ehlo = H.after_ehlo

local CASES = {
  {
    name = "after 552 the session is back in command state",
    opts = {data_size_limit = 10}, pyflags = "--size 10",
    input = ENV .. "DATA\r\n" .. ("x"):rep(20) .. "\r\n.\r\nNOOP\r\n.\r\n"
            .. "QUIT\r\n",
    ours = {R.ok, R.ok, R.data, R.too_much, R.ok, R.unknown("."), R.bye},
    ours_msgs = {},
    -- smtpd stays in DATA: NOOP becomes a message.
    python = {R.ok, R.ok, R.data, R.too_much, R.ok, R.bye},
    python_msgs = {"NOOP"},
  },
  {
    name = "a dot right after DATA ends an empty message",
    input = ENV .. "DATA\r\n.\r\nx\r\n.\r\nQUIT\r\n",
    ours = {R.ok, R.ok, R.data, R.ok, R.unknown("X"), R.unknown("."), R.bye},
    ours_msgs = {""},
    python = {R.ok, R.ok, R.data, R.ok, R.bye},
    python_msgs = {"\nx"},
  },
  {
    name = "options of a refused RCPT do not leak into rcpt_options",
    input = ENV .. "RCPT TO:<e@f> FOO=1\r\nDATA\r\nm\r\n.\r\nQUIT\r\n",
    ours = {R.ok, R.ok, R.rcpt_params, R.data, R.ok, R.bye},
    ours_msgs = {"m"}, ours_rcpt_options = {},
    python = {R.ok, R.ok, R.rcpt_params, R.data, R.ok, R.bye},
    python_msgs = {"m"}, python_rcpt_options = {"FOO=1"},
  },
  {
    name = "invalid UTF-8 gets 500 (smtpd drops the connection)",
    input = "EHLO x\r\nHELO \255\r\nQUIT\r\n",
    ours = {R.bad_utf8, R.bye},
    python = {},
  },
  {
    name = "SIZE without a value gets 501 (smtpd drops the connection)",
    input = "EHLO x\r\nMAIL FROM:<a@b> SIZE\r\nQUIT\r\n",
    ours = {R.mail_syntax_ext, R.bye},
    python = {},
  },
  {
    name = "an address ending in a dot gets 501 (smtpd drops)",
    input = "EHLO x\r\nMAIL FROM:<a@b.>\r\nQUIT\r\n",
    ours = {R.mail_syntax_ext, R.bye},
    python = {},
  },
  {
    name = "a local part with two dots in a row gets 501",
    input = "EHLO x\r\nMAIL FROM:<a..b@c>\r\nQUIT\r\n",
    ours = {R.mail_syntax_ext, R.bye},
    python = {R.ok, R.bye},
  },
  {
    name = "RCPT TO:<> is not a recipient",
    input = "EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<>\r\nQUIT\r\n",
    ours = {R.ok, R.rcpt_syntax_ext, R.bye},
    python = {R.ok, R.ok, R.bye},
  },
  {
    name = "a path without its closing > gets 501",
    input = "EHLO x\r\nMAIL FROM:<a@b\r\nQUIT\r\n",
    ours = {R.mail_syntax_ext, R.bye},
    python = {R.ok, R.bye},
  },
  {
    name = "a bare LF inside a command line gets 500",
    input = "EHLO x\r\nNOOP\nNOOP\r\nQUIT\r\n",
    ours = {R.bad_syntax, R.bye},
    python = {'500 Error: command "NOOP\nNOOP" not recognized', R.bye},
  },
  {
    name = "a non-ASCII verb is echoed as '?' (smtpd drops)",
    input = "EHLO x\r\n\195\137\r\nQUIT\r\n",
    ours = {R.unknown("??"), R.bye},
    python = {},
  },
}

local function messages_since(srv, before)
  local out = {}
  for i = before + 1, #(srv.messages or {}) do
    out[#out + 1] = srv.messages[i]
  end
  return out
end

describe("pinned differences from CPython smtpd", function()
  for _, case in ipairs(CASES) do
    it("ours: " .. case.name, function()
      local srv, map, host, port = H.server(H.Recorder, case.opts)
      local replies = H.converse(map, host, port, case.input)
      if case.input:match("^EHLO") then replies = after_ehlo(replies) end
      assert.same(case.ours, replies)
      if case.ours_msgs then
        local msgs = messages_since(srv, 0)
        assert.equal(#case.ours_msgs, #msgs)
        for i, d in ipairs(case.ours_msgs) do assert.equal(d, msgs[i].data) end
      end
      if case.ours_rcpt_options then
        assert.same(case.ours_rcpt_options, srv.messages[1].kwargs.rcpt_options)
      end
      H.cleanup(map)
    end)

    it("CPython: " .. case.name, function()
      if not py then
        return H.skip("python3 with the smtpd module is not installed")
      end
      local rec = os.tmpname()
      local pid, log = H.spawn(("%s -W ignore spec/py/recorder.py %s %s")
                               :format(py, rec, case.pyflags or ""))
      local port
      local map = H.map()
      H.run_until(map, function()
        port = tonumber((H.readfile(log) or ""):match("(%d+)\n"))
        return port
      end, 10, "CPython smtpd to start")
      local c = H.connect(map, "127.0.0.1", port)
      c:lines(1)
      c:send(case.input)
      -- smtpd may close (crash) or answer QUIT; either way it closes.
      local rest = c:wait_closed(5)
      c:close()
      H.kill(pid)
      local replies = {}
      for line in rest:gmatch("(.-)\r\n") do replies[#replies + 1] = line end
      if case.input:match("^EHLO") then replies = after_ehlo(replies) end
      assert.same(case.python, replies)
      if case.python_msgs then
        local text = H.readfile(rec) or ""
        local msgs = assert(load("return {" .. text .. "}"))()
        assert.equal(#case.python_msgs, #msgs)
        for i, d in ipairs(case.python_msgs) do assert.equal(d, msgs[i].data) end
        if case.python_rcpt_options then
          assert.same(case.python_rcpt_options, msgs[1].kwargs.rcpt_options)
        end
      end
      os.remove(rec)
    end)
  end
end)

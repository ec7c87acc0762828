-- Replays the same conversations against CPython's smtpd and ours and
-- asserts identical replies and identical process_message arguments.
local H = require "helper"
local convs = require "conversations"

local py = H.python_with_smtpd()

local CONFIGS = {
  {name = "default", py = "", opts = {}},
  {name = "smtputf8", py = "--smtputf8", opts = {enable_SMTPUTF8 = true}},
  {name = "decode", py = "--decode", opts = {decode_data = true}},
  {name = "size100", py = "--size 100", opts = {data_size_limit = 100}},
  {name = "nolimit", py = "--size 0", opts = {data_size_limit = 0}},
}

-- Starts CPython's smtpd recorder; returns its port, pid and record file.
local function start_python(flags)
  local rec = os.tmpname()
  local pid, log = H.spawn(("%s -W ignore spec/py/recorder.py %s %s")
                           :format(py, rec, flags))
  local port
  local t0 = H.now()
  while not port and H.now() - t0 < 10 do
    port = tonumber((H.readfile(log) or ""):match("(%d+)\n"))
    if not port then os.execute("sleep 0.05") end
  end
  assert(port, "CPython smtpd did not start: " .. (H.readfile(log) or ""))
  return port, pid, rec, log
end

local function python_messages(rec, n, map)
  -- The record is written when process_message runs, before the reply,
  -- so it is complete once the conversation is over; wait a moment anyway.
  local text
  H.run_until(map, function()
    text = H.readfile(rec) or ""
    return select(2, text:gsub("\n", "")) >= n
  end, 5, n .. " python records")
  return assert(load("return {" .. text .. "}"))()
end

describe("differential against CPython smtpd", function()
  if not py then
    it("needs Python's smtpd", function()
      H.skip("python3 with the smtpd module (3.11 or earlier) is not "
             .. "installed")
    end)
    return
  end

  for _, cfg in ipairs(CONFIGS) do
    describe(cfg.name, function()
      local port, pid, rec, map, srv, ourport

      setup(function()
        port, pid, rec = start_python(cfg.py)
        local opts = {}
        for k, v in pairs(cfg.opts) do opts[k] = v end
        srv, map, _, ourport = H.server(H.Recorder, opts)
      end)

      teardown(function()
        H.kill(pid)
        H.cleanup(map)
        os.remove(rec)
      end)

      for i, conv in ipairs(convs[cfg.name]) do
        it(("conversation %d: %s"):format(i, conv:sub(1, 40):gsub("[\r\n]",
                                                                  "|")),
           function()
          local before = srv.messages and #srv.messages or 0
          local pyr, pyg = H.converse(map, "127.0.0.1", port, conv)
          local our, ourg = H.converse(map, "127.0.0.1", ourport, conv)
          assert.matches("^220 .- Python SMTP proxy version", pyg)
          assert.matches("^220 .- Lua SMTP proxy version 0%.1$", ourg)
          assert.same(pyr, our)
          local mine = {}
          for j = before + 1, srv.messages and #srv.messages or 0 do
            mine[#mine + 1] = srv.messages[j]
          end
          local all = python_messages(rec, before + #mine, map)
          assert.equal(#all, before + #mine)
          for j, m in ipairs(mine) do
            local p = all[before + j]
            assert.equal(p.peer_host, m.peer[1])
            assert.equal(p.mailfrom, m.mailfrom)
            assert.same(p.rcpttos, m.rcpttos)
            assert.equal(p.data, m.data)
            assert.same(p.kwargs, m.kwargs)
          end
        end)
      end
    end)
  end
end)

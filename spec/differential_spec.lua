-- Replays the same conversations against ours and CPython's smtpd and
-- asserts identical replies and process_message arguments. CPython's side
-- comes from spec/golden/cpython.lua, so this runs everywhere; where a
-- Python with smtpd exists, CPython is also run live and must still give
-- what the golden file says (`make golden` rewrites it and shows the
-- diff).
local H = require "helper"
local cpython = require "cpython"

local golden = cpython.load_golden()
local py = H.python_with_smtpd()

describe("differential against CPython smtpd", function()
  it("has a golden file for every conversation", function()
    assert.is_table(golden, "no " .. cpython.GOLDEN .. ": run make golden")
    for _, cfg in ipairs(cpython.CONFIGS) do
      local list = cpython.conversations[cfg.name]
      assert.equal(#list, #golden[cfg.name], cfg.name .. ": run make golden")
      for i, conv in ipairs(list) do
        assert.equal(conv, golden[cfg.name][i].input,
                     ("%s %d changed: run make golden"):format(cfg.name, i))
      end
    end
  end)

  for _, cfg in ipairs(cpython.CONFIGS) do
    describe(cfg.name, function()
      local srv, map, port
      setup(function()
        local opts = {}
        for k, v in pairs(cfg.opts) do opts[k] = v end
        srv, map, _, port = H.server(H.Recorder, opts)
      end)
      teardown(function() H.cleanup(map) end)

      for i, conv in ipairs(cpython.conversations[cfg.name]) do
        it(("conversation %d: %s"):format(i, conv:sub(1, 40):gsub("[\r\n]",
                                                                  "|")),
           function()
          local want = assert(golden and golden[cfg.name][i],
                              "no golden entry: run make golden")
          local before = srv.messages and #srv.messages or 0
          local our, ourg = H.converse(map, "127.0.0.1", port, conv)
          assert.equal(H.core.version, ourg:match("^220 %S+ (.*)$"))
          assert.same(want.replies, cpython.normalize(our, ourg))
          local mine = {}
          for j = before + 1, srv.messages and #srv.messages or 0 do
            mine[#mine + 1] = cpython.record(srv.messages[j])
          end
          assert.same(want.messages, mine)
        end)
      end
    end)
  end

  it("golden file still says what CPython says here", function()
    if not py then
      return H.skip("python3 with the smtpd module (3.11 or earlier) is not "
                    .. "installed: compared with the golden file only")
    end
    local live = cpython.record_python(py)
    for _, cfg in ipairs(cpython.CONFIGS) do
      for i, entry in ipairs(live[cfg.name]) do
        assert.same(golden[cfg.name][i], entry,
                    ("%s %d: CPython here differs from the golden file (make "
                     .. "golden rewrites it)"):format(cfg.name, i))
      end
    end
  end)
end)

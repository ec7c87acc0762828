-- The rock builds offline with luarocks and `require "smtpd"` works from
-- the tree it was installed into.
local H = require "helper"

describe("rockspec", function()
  it("luarocks make installs a working module and CLI", function()
    if not H.ensure("luarocks", "luarocks") then
      return H.skip("luarocks is not installed and cannot be installed")
    end
    -- Build from a copy so the checkout stays clean.
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute(("mkdir -p %s/src && cp -r csrc lua bin rockspec %s/src")
                      :format(dir, dir)))
    local log = dir .. "/build.log"
    local ok = os.execute(("cd %s/src && env -u LD_PRELOAD luarocks "
      .. "--lua-version 5.4 make --tree %s/tree rockspec/smtpd-scm-1.rockspec"
      .. " >%s 2>&1"):format(dir, dir, log))
    assert.is_true(ok == true, H.readfile(log))
    local out = dir .. "/out.txt"
    ok = os.execute(("cd / && env -u LD_PRELOAD LUA_PATH='%s/tree/share/lua/"
      .. "5.4/?.lua;%s/tree/share/lua/5.4/?/init.lua' LUA_CPATH='%s/tree/lib/"
      .. "lua/5.4/?.so' lua5.4 -e 'local s = require \"smtpd\"; "
      .. "local m = s.new_map(); local d = s.DebuggingServer(\"127.0.0.1:0\", "
      .. "nil, {map = m}); print(s.__version__, select(2, d:getsockname()) > 0)'"
      .. " >%s 2>&1"):format(dir, dir, dir, out))
    local text = H.readfile(out)
    assert.is_true(ok == true, text)
    assert.equal("Lua SMTP proxy version 0.1\ttrue\n", text)
    ok = os.execute(("env -u LD_PRELOAD %s/tree/bin/lua-smtpd -V >%s 2>&1")
                    :format(dir, out))
    assert.is_true(ok == true, H.readfile(out))
    assert.equal("Lua SMTP proxy version 0.1\n", H.readfile(out))
    os.execute("rm -rf " .. dir)
  end)
end)

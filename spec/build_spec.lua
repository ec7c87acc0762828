-- The tree as it is built: the layout's rule (pure files include only
-- pure headers, and touch neither Lua nor libuv), and a core that builds
-- with gcc and with clang without a warning, with and without the test
-- code.
local H = require "helper"

-- The pure headers: a pure file includes these and nothing else of ours.
local PURE_HEADERS = {
  ["base/base.h"] = true, ["smtp/smtp.h"] = true, ["tls/tls.h"] = true,
  ["mime/mime.h"] = true, ["testing/testing.h"] = true,
  ["dns/dns.h"] = true, ["store/dict.h"] = true, ["auth/spf.h"] = true,
  ["auth/dkim.h"] = true, ["auth/authres.h"] = true, ["auth/dmarc.h"] = true,
  ["web/httpd.h"] = true,
}

local function files(pattern)
  local out = {}
  local p = io.popen("ls " .. pattern .. " 2>/dev/null")
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  return out
end

describe("the layout", function()
  it("keeps every C file pure (pure headers only, no Lua, no libuv) or "
     .. "glue (core/glue.h)", function()
    local pure, glue = 0, 0
    for _, path in ipairs(files("csrc/*/*.c csrc/*/*.h")) do
      local text = assert(H.readfile(path))
      local ours = {}
      for inc in text:gmatch('#include "([^"]+)"') do ours[#ours + 1] = inc end
      local is_glue = path == "csrc/core/glue.h"
      for _, inc in ipairs(ours) do
        if inc == "core/glue.h" then is_glue = true end
      end
      if is_glue then
        glue = glue + 1
      else
        pure = pure + 1
        for _, inc in ipairs(ours) do
          assert.is_true(PURE_HEADERS[inc] == true,
                         path .. " is pure but includes " .. inc)
        end
        assert.is_nil(text:find("#include <lua", 1, true), path)
        assert.is_nil(text:find("#include <uv.h>", 1, true), path)
        assert.is_nil(text:match("[^%w_]lua_%a"), path .. " calls Lua")
        assert.is_nil(text:match("[^%w_]uv_%a"), path .. " calls libuv")
      end
    end
    assert.is_true(pure >= 15, "pure files: " .. pure)
    assert.is_true(glue >= 15, "glue files: " .. glue)
  end)
end)

describe("the build", function()
  local function build(cc, testing)
    local dir = H.capture("mktemp -d"):gsub("%s+$", "")
    H.defer(function() os.execute("rm -rf " .. dir) end)
    local out = H.capture(("make -s -j2 BUILD=%s CC=%s %s %s/smtpd/core.so 2>&1"
                           .. "; echo status=$?"):format(dir, cc,
                           testing and "TESTING=1" or "", dir))
    return out
  end

  for _, cc in ipairs({"gcc", "clang"}) do
    it("builds with " .. cc .. " without a warning, with and without the "
       .. "test code", function()
      if not H.ensure(cc, cc) then
        return H.skip(cc .. " is not installed and cannot be installed")
      end
      for _, testing in ipairs({false, true}) do
        local out = build(cc, testing)
        assert.matches("status=0\n$", out, nil, false)
        assert.is_nil(out:find("warning", 1, true), out)
      end
    end)
  end

  it("leaves the test code out of a release build", function()
    local d = H.capture("mktemp -d"):gsub("%s+$", "")
    H.defer(function() os.execute("rm -rf " .. d) end)
    local out = H.capture(("make -s -j2 BUILD=%s %s/smtpd/core.so 2>&1; echo "
                           .. "status=$?"):format(d, d))
    assert.matches("status=0\n$", out)
    local f = os.tmpname()
    H.defer(function() os.remove(f) end)
    local fh = assert(io.open(f, "w"))
    fh:write(("package.cpath = %q; local c = require 'smtpd.core'; "
              .. "print(c.TESTING, c.engine, c.fault, c.fault_alloc)")
             :format(d .. "/?.so"))
    fh:close()
    assert.equal("nil\tnil\tnil\tnil\n", H.capture("lua5.4 " .. f))
  end)
end)

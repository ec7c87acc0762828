-- The rock: lua-smtpd (module smtpd), one version everywhere, a source
-- rock `make rock` packs and luarocks installs offline, `luarocks make`
-- leaving nothing `make clean` misses, and `luarocks test` running the
-- suite.
local H = require "helper"

local VERSION = H.core.VERSION
local ROCKSPEC = "rockspec/lua-smtpd-" .. VERSION .. "-1.rockspec"

local function load_rockspec(path)
  local env = {}
  local chunk = assert(loadfile(path, "t", env))
  chunk()
  return env
end

-- A temporary directory, removed after the test.
local function tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  finally(function() os.execute("rm -rf " .. dir) end)
  return dir
end

-- Runs cmd (in the background of nothing: output to a log); true or the
-- log's text.
-- The copy and the rock tree use their own builds, never the one these
-- specs run on (SMTPD_BUILD: make test's or make asan's).
local function sh(cmd, log)
  local ok = os.execute(("(unset SMTPD_BUILD; %s) >%s 2>&1"):format(cmd, log))
  return ok == true, H.readfile(log)
end

-- The checkout's files as they are (tracked, or new and not ignored).
local function copy_checkout(dest)
  assert(os.execute(("mkdir -p %s && git ls-files -co --exclude-standard -z "
    .. "| xargs -0 sh -c 'for f; do [ -e \"$f\" ] && printf \"%%s\\0\" "
    .. "\"$f\"; done' sh | tar --null -T - -cf - | tar -C %s -xf -")
    :format(dest, dest)))
end

local function luarocks()
  if not H.ensure("luarocks", "luarocks") then
    H.skip("luarocks is not installed and cannot be installed")
    return false
  end
  return true
end

-- What require "smtpd" gives from a tree, in a fresh process elsewhere.
local function from_tree(tree, log)
  return sh(("cd / && env -u LD_PRELOAD LUA_PATH='%s/share/lua/5.4/?.lua;"
    .. "%s/share/lua/5.4/?/init.lua' LUA_CPATH='%s/lib/lua/5.4/?.so' "
    .. "lua5.4 -e 'local s = require \"smtpd\"; local m = s.new_map(); "
    .. "local d = s.DebuggingServer(\"127.0.0.1:0\", nil, {map = m}); "
    .. "print(s._VERSION, s.__version__, select(2, d:getsockname()) > 0)'")
    :format(tree, tree, tree), log)
end

describe("the rock", function()
  it("has one version: core, rockspec, its tag and the changelog", function()
    local spec = load_rockspec(ROCKSPEC)
    assert.equal("lua-smtpd", spec.package)
    assert.equal(VERSION .. "-1", spec.version)
    assert.equal("v" .. VERSION, spec.source.tag)
    assert.matches("^git%+https://", spec.source.url)
    assert.equal("MIT", spec.description.license)
    assert.same({type = "busted"}, spec.test)
    local scm = load_rockspec("rockspec/lua-smtpd-scm-1.rockspec")
    assert.equal("lua-smtpd", scm.package)
    assert.equal("scm-1", scm.version)
    assert.equal(spec.source.url, scm.source.url)
    assert.equal("Lua SMTP proxy version " .. VERSION, H.core.version)
    assert.equal(VERSION, H.smtpd._VERSION)
    local changelog = H.readfile("CHANGELOG.md")
    assert.equal(VERSION, changelog:match("\n## (%S+)"))
    assert.matches("^MIT License", H.readfile("LICENSE"))
  end)

  it("make rock packs a source rock that luarocks installs offline",
     function()
    if not luarocks() then return end
    local dir = tmpdir()
    local log = dir .. "/log"
    local ok, text = sh(("env -u LD_PRELOAD make -s rock ROCK_OUT=%s")
                        :format(dir), log)
    assert.is_true(ok, text)
    local rock = ("%s/lua-smtpd-%s-1.src.rock"):format(dir, VERSION)
    assert.equal(rock, text:match("[^\n]+"))
    -- A fresh tree, no network: the rock carries all it builds from.
    ok, text = sh(("cd %s && env -u LD_PRELOAD luarocks --lua-version 5.4 "
                   .. "install --tree %s/tree %s"):format(dir, dir, rock), log)
    assert.is_true(ok, text)
    ok, text = from_tree(dir .. "/tree", log)
    assert.is_true(ok, text)
    assert.equal(VERSION .. "\t" .. H.core.version .. "\ttrue\n", text)
    ok, text = sh(("env -u LD_PRELOAD %s/tree/bin/lua-smtpd -V"):format(dir),
                  log)
    assert.is_true(ok, text)
    assert.equal(H.core.version .. "\n", text)
  end)

  it("luarocks make leaves nothing make clean misses; luarocks test runs "
     .. "the specs", function()
    if not luarocks() then return end
    local dir = tmpdir()
    local src, tree, log = dir .. "/src", dir .. "/tree", dir .. "/log"
    copy_checkout(src)
    local list = "cd " .. src .. " && find . -type f | sort"
    local p = io.popen(list)
    local before = p:read("a")
    p:close()
    local ok, text = sh(("cd %s && env -u LD_PRELOAD luarocks --lua-version "
      .. "5.4 make --tree %s rockspec/lua-smtpd-scm-1.rockspec"):format(src,
      tree), log)
    assert.is_true(ok, text)
    ok, text = from_tree(tree, log)
    assert.is_true(ok, text)
    assert.matches("\ttrue\n$", text)

    -- busted as a rock of the tree: luarocks.org's busted is this same
    -- busted (2.1) that Debian installs; offline, a local rock runs it.
    local shim = dir .. "/busted-rock"
    assert(os.execute("mkdir -p " .. shim))
    local f = assert(io.open(shim .. "/busted", "w"))
    f:write("#!/bin/sh\nexec lua5.4 \"$(command -v busted)\" \"$@\"\n")
    f:close()
    f = assert(io.open(shim .. "/busted-2.1.1-1.rockspec", "w"))
    f:write([[
package = "busted"
version = "2.1.1-1"
source = {url = "file:///dev/null"}
build = {type = "none", install = {bin = {busted = "busted"}}}
]])
    f:close()
    ok, text = sh(("cd %s && chmod +x busted && env -u LD_PRELOAD luarocks "
      .. "--lua-version 5.4 make --tree %s busted-2.1.1-1.rockspec"):format(
      shim, tree), log)
    assert.is_true(ok, text)
    -- luarocks test looks for busted in its configured trees (--tree
    -- alone is not searched): a config that names the tree.
    f = assert(io.open(dir .. "/config.lua", "w"))
    f:write(("rocks_trees = {{name = \"spec\", root = %q}}\n"):format(tree))
    f:close()
    -- No LUA_PATH from make test: busted's paths (.busted) are all the
    -- specs and the programs they start get.
    ok, text = sh(("cd %s && env -u LD_PRELOAD -u LUA_PATH -u LUA_CPATH "
      .. "LUAROCKS_CONFIG=%s/config.lua luarocks --lua-version 5.4 --tree %s "
      .. "test rockspec/lua-smtpd-scm-1.rockspec spec/classes_spec.lua "
      .. "spec/loop_spec.lua spec/cli_spec.lua"):format(src, dir, tree), log)
    assert.is_true(ok, text)
    assert.matches("\n(%d+) passed, 0 failed, 0 skipped\n", text)
    assert.is_true(tonumber(text:match("\n(%d+) passed, 0 failed")) > 20)

    -- make clean takes back everything the builds left in the tree.
    ok, text = sh("cd " .. src .. " && make -s clean", log)
    assert.is_true(ok, text)
    p = io.popen(list)
    local after = p:read("a")
    p:close()
    assert.equal(before, after)
  end)
end)

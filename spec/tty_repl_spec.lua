-- The live prompt on a real terminal, under tmux: line editing and
-- history (readline or libedit, loaded at run time), a message arriving
-- while a line is typed, Ctrl-C, Ctrl-D, and the terminal as it was after
-- smtpd.interact() returns to lua5.4 -i.
local H = require "helper"

local function have_tmux()
  return H.ensure("tmux", "tmux")
end

-- A tmux server of our own (socket name), one window running cmd.
local function terminal(cmd)
  local name = ("lsmtpd-spec-%d"):format(math.random(1, 1e9))
  local dir = os.tmpname()
  os.remove(dir)
  os.execute("mkdir -p " .. dir)
  local rc = dir .. "/inputrc"
  local f = io.open(rc, "w")
  f:write("set enable-bracketed-paste off\n")
  f:close()
  local tmux = "tmux -L " .. name .. " -f /dev/null"
  local t = {dir = dir}
  local script = dir .. "/run.sh"
  f = io.open(script, "w")
  -- The shell survives the Ctrl-C the spec types (its child still gets
  -- it): a trap with a command is not inherited, unlike an ignore.
  f:write("trap 'true' INT\n")
  -- Under make asan the sanitizer runtimes must come first in the
  -- program inside the terminal too (tmux does not pass LD_PRELOAD on);
  -- its leak report would land in the pane, so leaks are make asan's
  -- own processes' business.
  local preload = os.getenv("LD_PRELOAD")
  if preload then
    f:write(("export LD_PRELOAD=%q ASAN_OPTIONS=detect_leaks=0\n")
            :format(preload))
  end
  f:write(("cd %q && export INPUTRC=%q LUA_PATH=%q LUA_CPATH=%q && %s\n")
          :format(H.root, rc, os.getenv("LUA_PATH") or package.path,
                  os.getenv("LUA_CPATH") or package.cpath, cmd))
  f:write("echo EXITED=$?; sleep 30\n")
  f:close()
  assert(os.execute(("%s new-session -d -x 120 -y 40 'sh %s'")
                    :format(tmux, script)))
  finally(function()
    os.execute(tmux .. " kill-server 2>/dev/null")
    os.execute(("rm -rf %s /tmp/tmux-$(id -u)/%s"):format(dir, name))
  end)
  function t.keys(...)
    local args = {}
    for i = 1, select("#", ...) do
      args[i] = ("%q"):format((select(i, ...)))
    end
    os.execute(tmux .. " send-keys " .. table.concat(args, " "))
  end
  function t.screen()
    local p = io.popen(tmux .. " capture-pane -p -S -100 2>&1")
    local s = p:read("a")
    p:close()
    return s
  end
  -- capture-pane drops trailing blanks: so does what we look for.
  function t.wait_for(text, map, timeout)
    text = text:gsub(" +$", "")
    map = map or H.map()
    H.run_until(map, function() return t.screen():find(text, 1, true) end,
                timeout or 10, ("%q on the screen:\n%s"):format(text,
                                                              t.screen()))
  end
  return t
end

describe("the live prompt on a terminal", function()
  it("edits lines, keeps history, and keeps a typed line whole when mail "
     .. "arrives", function()
    if not have_tmux() then
      return H.skip("tmux is not installed and cannot be installed here")
    end
    local port = H.free_port()
    local t = terminal(("lua5.4 bin/lua-smtpd -n --repl -c DebuggingServer "
                        .. "127.0.0.1:%d"):format(port))
    t.wait_for("smtpd> ")
    -- Half a line typed, then a message arrives.
    t.keys("x = 1 + ")
    t.wait_for("smtpd> x = 1 + ")
    local map = H.map()
    local replies = H.converse(map, "127.0.0.1", port, "HELO a\r\n"
      .. "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: mid-line\r\n"
      .. "\r\nbody\r\n.\r\nQUIT\r\n")
    assert.equal("250 OK", replies[5])
    t.wait_for("END MESSAGE")
    -- The line is still there, after the message, and goes on.
    t.keys("41", "Enter")
    t.keys("x * 2", "Enter")
    t.wait_for("84")
    local screen = t.screen()
    assert.matches("END MESSAGE[^\n]*\n.-smtpd> x = 1 %+ 41\n", screen)
    -- Ctrl-C drops the line being typed; the server is untouched.
    t.keys("this is not lua", "C-c")
    t.keys("print('after' .. '-ctrl-c')", "Enter")
    t.wait_for("after-ctrl-c")
    assert.is_nil(t.screen():find("unexpected symbol", 1, true))
    -- History: Up brings the last line back.
    t.keys("Up", "Enter")
    H.run_until(map, function()
      local _, n = t.screen():gsub("after%-ctrl%-c\n", "")
      return n >= 2
    end, 10, "the line from history to run again")
    -- Ctrl-D: the server closes gracefully and the process exits.
    t.keys("C-d")
    t.wait_for("EXITED=0")
    map:close()
  end)

  it("gives lua5.4 -i its terminal back", function()
    if not have_tmux() then
      return H.skip("tmux is not installed and cannot be installed here")
    end
    local t = terminal("lua5.4 -i")
    t.wait_for("> ")
    local before, after = t.dir .. "/before", t.dir .. "/after"
    t.keys(("os.execute('stty -g > %s')"):format(before), "Enter")
    t.keys("smtpd = require 'smtpd'; srv = smtpd.DebuggingServer('127.0.0.1:0')",
           "Enter")
    t.keys(("smtpd.interact{history = %q}"):format(t.dir .. "/history"),
           "Enter")
    t.wait_for("smtpd> ")
    t.keys("1 + 1", "Enter")
    t.wait_for("\n2\n")
    t.keys("C-d")
    -- Back at lua5.4's own prompt, which still reads and edits lines.
    t.keys(("os.execute('stty -g > %s')"):format(after), "Enter")
    t.keys("print('lua' .. '-is-back')", "Enter")
    t.wait_for("lua-is-back")
    assert.equal(H.readfile(before), H.readfile(after))
    -- and the prompt's history was saved
    assert.matches("1 %+ 1", H.readfile(t.dir .. "/history") or "")
    t.keys("C-d")
    t.wait_for("EXITED=0")
  end)
end)

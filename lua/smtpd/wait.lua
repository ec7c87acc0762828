-- Waiting: what smtpd.sleep and smtpd.sendmail are built on.
--
-- Inside a hook (process_message, any smtp_<VERB>: they run as coroutines)
-- a helper parks the hook and the loop serves everything else until the
-- result arrives. Outside any hook (a script, the REPL) it runs the map's
-- loop itself until the result arrives.

local core = require "smtpd.core"
local socket_map = require("smtpd.util").socket_map

local M = {}

-- Coroutines that wait by parking outside hooks: co -> the function that
-- resumes it (smtpd.interact registers its chunks here).
M.parkable = setmetatable({}, {__mode = "k"})
-- co -> what a parked coroutine waits for (a handle with :cancel(), or
-- true), so that it can be cancelled (Ctrl-C at the prompt).
M.waiting = setmetatable({}, {__mode = "k"})

-- Calls start(map, done) and returns what done(...) receives. start may
-- return a handle with :cancel(), used when the wait is cut short.
function M.wait(map, start, what)
  local co, main = coroutine.running()
  local conn, server
  if not main then conn, server = core.hook(co) end
  if conn then
    local parked, early = false, nil
    local handle = start(server._map, function(...)
      if parked then
        parked = false
        M.waiting[co] = nil
        conn:wake(co, ...)
      elseif not early then
        early = table.pack(...)
      end
    end)
    if early then return table.unpack(early, 1, early.n) end
    parked = true
    -- Cancelled if the hook is given up (handler_timeout, its connection
    -- closing): the C side calls M.abandon(co).
    M.waiting[co] = handle or true
    return coroutine.yield(core.WAIT)
  end
  map = map or socket_map
  local luv = package.loaded["smtpd.luv"]
  local on_luv = luv and luv.attached[map]
  if on_luv and main then
    error(what .. ": the map runs on luv (smtpd.luv): call it from a "
          .. "coroutine, or from a hook", 3)
  end
  local resume = not main and (M.parkable[co] or on_luv and function(c, ...)
    local ok, err = coroutine.resume(c, ...)
    if not ok then io.stderr:write(what, ": ", tostring(err), "\n") end
  end)
  if resume then
    -- A chunk at the live prompt, or a coroutine of a luv program: park
    -- it instead of running a loop of our own (which is running already,
    -- or would stop luv's); whoever runs it resumes it when done.
    local done
    local waiting = false
    local handle = start(map, function(...)
      if waiting then
        waiting = false
        resume(co, ...)
      elseif not done then
        done = table.pack(...)
      end
    end)
    if done then return table.unpack(done, 1, done.n) end
    waiting = true
    M.waiting[co] = handle or true
    local r = table.pack(coroutine.yield())
    M.waiting[co] = nil
    return table.unpack(r, 1, r.n)
  end
  local done
  local handle = start(map, function(...)
    if not done then done = table.pack(...) end
  end)
  while not done do
    local ok, err = pcall(map.loop, map, 1, 1)
    if not ok then
      if handle and handle.cancel then handle:cancel() end
      if tostring(err):find("already running", 1, true) then
        error(what .. ": " .. tostring(err) .. " (outside a hook, a waiting "
              .. "helper runs the loop itself, so it cannot be called from "
              .. "code the loop is running; call it from process_message or "
              .. "an smtp_ method)", 3)
      end
      error(err, 0)     -- "interrupted" (Ctrl-C), as loop() raises it
    end
  end
  return table.unpack(done, 1, done.n)
end

-- The map a helper called now works on: the hook's server's, else map,
-- else the default map.
function M.current_map(map)
  local co, main = coroutine.running()
  if not main then
    local conn, server = core.hook(co)
    if conn then return server._map end
  end
  return map or socket_map
end

-- A hook given up while it waited: what it waited for is cancelled.
function M.abandon(co)
  local h = M.waiting[co]
  M.waiting[co] = nil
  if h ~= nil and h ~= true then
    pcall(function() h:cancel() end)
  end
end

-- smtpd.sleep(seconds): waits without blocking other connections.
function M.sleep(seconds, map)
  if type(seconds) ~= "number" or seconds < 0 then
    error("sleep: seconds must be a non-negative number", 2)
  end
  M.wait(map, function(m, done) return core.after(m, seconds, done) end,
         "smtpd.sleep")
end

return M

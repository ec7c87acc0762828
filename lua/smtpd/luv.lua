-- smtpd.luv: our servers inside a program built on luv (the libuv binding
-- of Lua), run by luv's own uv.run().
--
--   local uv = require "luv"
--   local smtpd = require "smtpd"
--   local handle = require("smtpd.luv").attach(smtpd.socket_map, uv)
--   MyServer("127.0.0.1:8025")
--   uv.run()                  -- luv timers, TCP, processes and our servers
--   handle:detach()
--
-- Our map keeps its own uv_loop_t; luv's loop watches it through its
-- backend fd (a poll handle), steps it before every poll of its own (a
-- prepare handle, which also picks up handles started from luv callbacks)
-- and wakes for our next timer (a timer). Sharing one uv_loop_t is not
-- an option: luv assumes every handle on its loop is its own.
--
-- Hooks work as everywhere (they park and are resumed). Outside a hook,
-- smtpd.sleep and smtpd.sendmail called from a coroutine park it and
-- resume it when done; from the main thread they raise (running our loop
-- there would stop luv's). Errors in these callbacks are printed, never
-- passed to luv (whose default handler exits the process).

local util = require "smtpd.util"

local M = {}

-- map -> its attachment, for the waiting helpers.
M.attached = setmetatable({}, {__mode = "k"})

local function report(err)
  io.stderr:write("smtpd.luv: ", tostring(err), "\n")
end

function M.attach(map, uv)
  map = map or util.socket_map
  if uv == nil then uv = require "luv" end
  if M.attached[map] then
    error("attach: this map is already attached", 2)
  end
  local fd = map:backend_fd()
  if type(fd) ~= "number" or fd < 0 then
    error("attach: this platform's libuv has no backend fd to poll", 2)
  end
  local poll = uv.new_poll(fd)
  local prepare = uv.new_prepare()
  local timer = uv.new_timer()
  local handle = {map = map}

  local function rearm()
    local ok, ms = pcall(map.backend_timeout, map)
    timer:stop()
    -- 0 means work is pending (the prepare handle steps again before
    -- luv's next poll): wait at most 1 ms, never re-fire within this
    -- round of luv's timers.
    if ok and ms >= 0 then timer:start(math.max(ms, 1), 0, handle.step) end
  end

  -- One NOWAIT step of our loop, then our next deadline on luv's timer.
  function handle.step()
    local ok, err = pcall(map.step, map)
    if not ok and not tostring(err):find("already running", 1, true) then
      report(err)
    end
    rearm()
  end

  poll:start("r", function(err)
    if err then report(err) end
    handle.step()
  end)
  prepare:start(handle.step)
  -- Only the poll keeps uv.run() going: our servers count, our timers
  -- alone do not.
  uv.unref(prepare)
  uv.unref(timer)

  function handle:detach()
    if not M.attached[map] then return end
    M.attached[map] = nil
    for _, h in ipairs({poll, prepare, timer}) do
      if not h:is_closing() then h:close() end
    end
  end

  M.attached[map] = handle
  handle.step()
  return handle
end

return M

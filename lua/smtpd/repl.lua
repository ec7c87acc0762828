-- The live prompt: smtpd.interact{map=, env=, prompt=, out=, uv=,
-- history = file, editor = "plain"} reads Lua
-- chunks from stdin on the map's own loop, so every server of the map
-- keeps serving while the prompt waits, and evaluates them as lua5.4 does
-- (an expression first, then a statement; an incomplete chunk continues
-- on ">> "). Each chunk runs in a coroutine: smtpd.sleep and
-- smtpd.sendmail typed at the prompt park it while the servers go on.
-- Ctrl-C cancels a waiting chunk (or the line being typed); Ctrl-D (end
-- of input) returns. With uv (luv), the map is attached to luv's loop
-- (smtpd.luv) and uv.run() drives the prompt, luv's handles and ours.
-- On a terminal, GNU readline or libedit (loaded at run time when
-- present) edits lines and keeps history, unless editor = "plain".

local core = require "smtpd.core"
local util = require "smtpd.util"
local wait = require "smtpd.wait"

local M = {}

-- ---- readable values ---------------------------------------------------------

local function is_ident(k)
  return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil
end

-- A value as a person reads it: strings quoted, tables as constructors
-- (sorted keys, nested to depth 3, long ones cut), and objects with
-- __tostring (servers, channels, maps) as their own text.
function M.repr(v, depth, seen)
  depth = depth or 3
  seen = seen or {}
  local t = type(v)
  if t == "string" then return ("%q"):format(v):gsub("\\\n", "\\n") end
  if t ~= "table" then return tostring(v) end
  local mt = getmetatable(v)
  if mt and mt.__tostring then return tostring(v) end
  if seen[v] then return "{...}" end
  if depth <= 0 then return "{...}" end
  seen[v] = true
  local parts, n = {}, #v
  for i = 1, n do parts[#parts + 1] = M.repr(v[i], depth - 1, seen) end
  local keys = {}
  for k in pairs(v) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then
      keys[#keys + 1] = k
    end
  end
  table.sort(keys, function(a, b)
    if type(a) == type(b) and (type(a) == "string" or type(a) == "number")
    then return a < b end
    return type(a) < type(b)
  end)
  for _, k in ipairs(keys) do
    local ks = is_ident(k) and k or ("[" .. M.repr(k, 0, seen) .. "]")
    parts[#parts + 1] = ks .. " = " .. M.repr(v[k], depth - 1, seen)
    if #parts > 40 then
      parts[#parts + 1] = "..."
      break
    end
  end
  seen[v] = nil
  return "{" .. table.concat(parts, ", ") .. "}"
end

-- ---- evaluation ------------------------------------------------------------------

-- lua.c's rule: "return <chunk>" first, then the chunk; a syntax error
-- at <eof> means the chunk goes on.
local function compile(src, env)
  local f, err = load("return " .. src .. ";", "=stdin", "t", env)
  if f then return f end
  f, err = load(src, "=stdin", "t", env)
  if f then return f end
  if err:find("<eof>$") then return nil, nil, true end
  return nil, err
end

local function traceback(err)
  if type(err) ~= "string" and not (getmetatable(err) or {}).__tostring then
    err = "(error object is a " .. type(err) .. " value)"
  end
  -- The chunk's frames only, not the prompt's machinery below them.
  local tb = debug.traceback(tostring(err), 2)
  return (tb:gsub("\n%s*%[C%]: in function 'xpcall'.*$", ""))
end

function M.interact(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("interact: opts must be a table", 2) end
  local map = opts.map or util.socket_map
  local env = opts.env or _G
  local prompt = opts.prompt or "smtpd> "
  local prompt2 = opts.prompt2 or ">> "
  local out = opts.out or io.stdout
  local pending = ""          -- the lines of an incomplete chunk
  local partial = ""          -- input not ended by a newline yet
  local queue = {}            -- lines typed while a chunk waits
  local running               -- the coroutine of the chunk that waits
  local eof = false

  local watcher              -- stdin on the map's loop
  local function say(s) out:write(s); out:flush() end
  local function show_prompt()
    local p = pending == "" and prompt or prompt2
    if watcher and watcher:editing() then watcher:prompt(p) else say(p) end
  end

  local function finish(co, ok, ...)
    if coroutine.status(co) ~= "dead" then return end   -- it waits
    running = nil
    wait.parkable[co] = nil
    if not ok then
      say(tostring((...)) .. "\n")
    elseif select("#", ...) > 0 then
      local parts = {}
      for i = 1, select("#", ...) do
        parts[i] = M.repr((select(i, ...)))
      end
      say(table.concat(parts, "\t") .. "\n")
    end
  end

  local run_queue

  -- Resumes a chunk's coroutine (at start, or when what it waited for
  -- came); its results are printed when it ends.
  local function resume(co, ...)
    if running ~= co then return end     -- cancelled meanwhile
    finish(co, coroutine.resume(co, ...))
    if running == nil then
      show_prompt()
      run_queue()
    end
  end

  local function run_chunk(f)
    local co = coroutine.create(function()
      local r = table.pack(xpcall(f, traceback))
      if not r[1] then error(r[2], 0) end
      return table.unpack(r, 2, r.n)
    end)
    running = co
    wait.parkable[co] = resume
    resume(co)
  end

  local function line_in(line)
    local src = pending == "" and line or (pending .. "\n" .. line)
    if pending == "" and src:match("^%s*$") then
      show_prompt()
      return
    end
    local f, err, more = compile(src, env)
    if more then
      pending = src
      show_prompt()
      return
    end
    pending = ""
    if not f then
      say(err .. "\n")
      show_prompt()
      return
    end
    run_chunk(f)
  end

  function run_queue()
    while running == nil and #queue > 0 do
      line_in(table.remove(queue, 1))
    end
  end

  local function input(chunk)
    if chunk == nil then
      eof = true
      if partial ~= "" then queue[#queue + 1] = partial end
      partial = ""
      run_queue()
      return
    end
    partial = partial .. chunk
    for line in partial:gmatch("([^\n]*)\n") do
      queue[#queue + 1] = line:gsub("\r$", "")
    end
    partial = partial:match("[^\n]*$")
    run_queue()
  end

  -- Ctrl-C: the chunk that waits is cancelled (what it waited for too);
  -- otherwise the line being typed is dropped.
  local function interrupt()
    if running then
      local h = wait.waiting[running]
      if h ~= true then pcall(function() h:cancel() end) end
      wait.parkable[running] = nil
      running = nil
      say("\ninterrupted\n")
    else
      if watcher and watcher:editing() then watcher:cancel_line() end
      pending, partial, queue = "", "", {}
      say("\n")
    end
    show_prompt()
  end

  local function finished()
    return eof and running == nil and #queue == 0
  end
  local uv = opts.uv
  local luv, attached
  if uv then
    -- luv runs the show: our map rides on its loop (smtpd.luv), and
    -- uv.run() returns once the prompt is done.
    luv = require "smtpd.luv"
    if not luv.attached[map] then attached = luv.attach(map, uv) end
  end
  local werr
  watcher, werr = core.stdin_watch(map, input,
                                   {readline = opts.editor ~= "plain"})
  -- While readline edits a line, output from servers and hooks goes
  -- through the watcher, which takes the line off the screen and puts it
  -- back after the text.
  local restore_io = function() end
  local editing = watcher and watcher:editing()
  if editing and type(opts.history) == "string" then
    watcher:history(opts.history)
  end
  if watcher and watcher:editing() then
    local real = {stdout = io.stdout, stderr = io.stderr, print = print,
                  write = io.write}
    local function text(sep, ...)
      local parts = {}
      for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
      return table.concat(parts, sep)
    end
    local function proxy(fd, file)
      return setmetatable({}, {__index = function(_, k)
        if k == "write" then
          return function(self, ...)
            watcher:write(text("", ...), fd)
            return self
          end
        end
        local v = file[k]
        if type(v) == "function" then
          return function(_, ...) return v(file, ...) end
        end
        return v
      end, __tostring = function() return tostring(file) end})
    end
    io.stdout, io.stderr = proxy(1, real.stdout), proxy(2, real.stderr)
    io.write = function(...) watcher:write(text("", ...), 1) return io.stdout end
    print = function(...) watcher:write(text("\t", ...) .. "\n", 1) end
    restore_io = function()
      io.stdout, io.stderr, print, io.write = real.stdout, real.stderr,
                                                real.print, real.write
    end
  end
  if not watcher then
    -- Not pollable (a regular file): read it whole.
    if werr and not werr:find("EPERM") then
      if attached then attached:detach() end
      error("interact: cannot read stdin: " .. tostring(werr), 2)
    end
  end
  show_prompt()
  if not watcher then
    input(io.read("a") or "")
    input(nil)
  end
  if uv then
    local sig = uv.new_signal()
    sig:start("sigint", function() pcall(interrupt) end)
    -- uv.run() ends once the prompt is done (checked every 50 ms).
    local check = uv.new_timer()
    check:start(50, 50, function() if finished() then uv.stop() end end)
    uv.unref(check)
    if not finished() then uv.run() end
    sig:close()
    check:close()
    if attached then attached:detach() end
  else
    while not finished() do
      local ok, err = pcall(map.loop, map, 1, 1)
      if not ok then
        if tostring(err) == "interrupted" then interrupt()
        else
          if watcher then watcher:close() end
          restore_io()
          error(err, 0)
        end
      end
      if map:count() == 0 and not eof then break end
    end
  end
  if editing and type(opts.history) == "string" then
    watcher:history(opts.history, true)
  end
  if watcher then watcher:close() end
  restore_io()
  say("\n")
end

-- ---- hot reload ------------------------------------------------------------------

-- Copies what a new version of a class defines into the live class, so
-- objects made from it (servers, channels) see the new methods at once.
local function patch(old, new, changed, name)
  for k, v in pairs(new) do
    if rawget(old, k) ~= v and k ~= "super" and k ~= "__index" then
      old[k] = v               -- through __newindex: class_changed fires
      changed[#changed + 1] = name .. "." .. tostring(k)
    end
  end
end

local function is_class(t)
  return type(t) == "table" and type(rawget(t, "extend")) ~= "function"
         and type(t.extend) == "function" and type(t.is_a) == "function"
end

-- smtpd.reload(modname) -> module, changed | nil, why: requires modname
-- again and patches the classes it had returned (a class, or a table of
-- classes) in place, so running servers take the new code from their next
-- command or message. A module that fails to load leaves the old code
-- in place and says why.
function M.reload(modname)
  if type(modname) ~= "string" then
    error("reload: modname must be a string", 2)
  end
  local old = package.loaded[modname]
  package.loaded[modname] = nil
  local ok, new = pcall(require, modname)
  if not ok then
    package.loaded[modname] = old
    return nil, new
  end
  local changed = {}
  if old == nil or type(old) ~= "table" or type(new) ~= "table" then
    return new, changed
  end
  if is_class(old) and is_class(new) then
    patch(old, new, changed, modname)
  else
    for k, v in pairs(new) do
      if is_class(old[k]) and is_class(v) then
        patch(old[k], v, changed, modname .. "." .. tostring(k))
      elseif old[k] ~= v then
        old[k] = v
        changed[#changed + 1] = modname .. "." .. tostring(k)
      end
    end
  end
  package.loaded[modname] = old    -- the same table, for those holding it
  core.class_changed()
  table.sort(changed)
  return old, changed
end

return M

-- CPython's smtpd as the reference peer: running its recorder
-- (spec/py/recorder.py), conversing with a server, and the golden file
-- (spec/golden/cpython.lua) that keeps what CPython answered, so the
-- differential spec runs where no Python has smtpd (3.12 and later).
local H = require "helper"
local convs = require "conversations"

local M = {}

M.GOLDEN = "spec/golden/cpython.lua"

-- The configurations every conversation list runs under.
M.CONFIGS = {
  {name = "default", py = "", opts = {}},
  {name = "smtputf8", py = "--smtputf8", opts = {enable_SMTPUTF8 = true}},
  {name = "decode", py = "--decode", opts = {decode_data = true}},
  {name = "size100", py = "--size 100", opts = {data_size_limit = 100}},
  {name = "nolimit", py = "--size 0", opts = {data_size_limit = 0}},
}
M.conversations = convs

-- Starts CPython's smtpd recorder; returns its port, pid and record file.
function M.start_python(py, flags)
  local rec = os.tmpname()
  local pid, log = H.spawn(("%s -W ignore spec/py/recorder.py %s %s")
                           :format(py, rec, flags))
  local port
  local t0 = H.now()
  while not port and H.now() - t0 < 10 do
    port = tonumber((H.readfile(log) or ""):match("(%d+)\n"))
    if not port then os.execute("sleep 0.05") end
  end
  if not port then
    H.kill(pid)
    error("CPython smtpd did not start: " .. (H.readfile(log) or ""))
  end
  return port, pid, rec
end

-- The records CPython wrote, once there are n.
function M.python_messages(rec, n, map)
  local text
  H.run_until(map, function()
    text = H.readfile(rec) or ""
    return select(2, text:gsub("\n", "")) >= n
  end, 5, n .. " python records")
  return assert(load("return {" .. text .. "}"))()
end

-- Reply lines that are the host's name (HELO's "250 name", EHLO's first
-- line) with it made "%FQDN%": the golden file was written on some other
-- machine. The name is the greeting's. The EHLO lines of the extensions
-- smtpd never had (PIPELINING, CHUNKING) are left out: we advertise them, on
-- purpose (README: "Where it differs from CPython's smtpd").
M.OUR_EXTENSIONS = {["250-PIPELINING"] = true, ["250-CHUNKING"] = true}
function M.normalize(replies, greeting)
  local fqdn = greeting:match("^220 (%S+) ")
  local out = {}
  for _, l in ipairs(replies) do
    if not M.OUR_EXTENSIONS[l] then
      out[#out + 1] = l:sub(5) == fqdn and l:sub(1, 4) .. "%FQDN%" or l
    end
  end
  return out
end

-- One message as the recorder writes it, from a process_message call.
function M.record(m)
  return {peer_host = m.peer[1], mailfrom = m.mailfrom, rcpttos = m.rcpttos,
          data = m.data, kwargs = m.kwargs}
end

-- Runs every conversation of every configuration against CPython (py):
-- {config = {{input =, replies =, messages =}, ...}, ...}.
function M.record_python(py)
  local golden = {}
  for _, cfg in ipairs(M.CONFIGS) do
    local port, pid, rec = M.start_python(py, cfg.py)
    local map = H.core.map()
    local ok, err = pcall(function()
      local list, seen = {}, 0
      for i, conv in ipairs(convs[cfg.name]) do
        local replies, greeting = H.converse(map, "127.0.0.1", port, conv)
        local all = M.python_messages(rec, seen, map)
        -- Records are written before the reply: all of this conversation's
        -- are in once it is over.
        all = M.python_messages(rec, #all, map)
        local msgs = {}
        for j = seen + 1, #all do msgs[#msgs + 1] = all[j] end
        seen = #all
        list[i] = {input = conv, replies = M.normalize(replies, greeting),
                   messages = msgs}
      end
      golden[cfg.name] = list
    end)
    H.kill(pid)
    os.remove(rec)
    H.cleanup(map)
    if not ok then error(err, 0) end
  end
  return golden
end

-- A Lua literal for v: strings with printable ASCII kept and every other
-- byte as \ddd, tables with sorted keys, one conversation per block.
local function literal(v, indent)
  local t = type(v)
  if t == "string" then
    return '"' .. v:gsub(".", function(c)
      local b = c:byte()
      if b < 32 or b > 126 or c == '"' or c == "\\" then
        return ("\\%03d"):format(b)
      end
    end) .. '"'
  elseif t ~= "table" then
    return tostring(v)
  end
  indent = indent or ""
  local inner = indent .. "  "
  local parts = {}
  for i = 1, #v do parts[#parts + 1] = inner .. literal(v[i], inner) end
  local keys = {}
  for k in pairs(v) do
    if math.type(k) ~= "integer" or k < 1 or k > #v then keys[#keys + 1] = k end
  end
  table.sort(keys)
  for _, k in ipairs(keys) do
    parts[#parts + 1] = inner .. k .. " = " .. literal(v[k], inner)
  end
  if #parts == 0 then return "{}" end
  return "{\n" .. table.concat(parts, ",\n") .. ",\n" .. indent .. "}"
end

function M.write_golden(golden, path)
  local f = assert(io.open(path or M.GOLDEN, "w"))
  f:write("-- CPython 3.11 smtpd's replies and process_message arguments for\n",
          "-- every conversation of spec/conversations.lua. Written by\n",
          "-- `make golden` (spec/make_golden.lua); do not edit by hand.\n",
          "return ", literal(golden), "\n")
  f:close()
end

function M.load_golden()
  local chunk = loadfile(M.GOLDEN)
  return chunk and chunk()
end

return M

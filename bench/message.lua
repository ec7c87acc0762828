-- bench/message: smtpd.message against Python's email package
-- (email.message_from_bytes(data, policy=email.policy.default)) on a
-- 5 KiB plain message and a 1 MiB multipart one (text, html, three
-- base64 attachments), both built by Python's email package.
--   parse  the parse call alone
--   full   parse, then for every part: content type, filename, charset
--          and the body decoded; plus the Subject and the From addresses
-- Goal: at least 10x Python's speed. BENCH_SCALE scales the rounds.
local H = require "helper"
local message = require "smtpd.message"

local SCALE = tonumber(os.getenv("BENCH_SCALE") or "1") or 1
local DIR = "bench/.work/messages"
local GOAL = 10

local py = H.python_with("email.policy")
if not py then
  io.stderr:write("bench/message: no python3 with the email package\n")
  os.exit(0)
end
assert(os.execute(("%s bench/peers/email_parse.py make %s"):format(py, DIR)))

local function full(data)
  local msg = message.parse(data)
  local n = 0
  for _, part in ipairs(msg:walk()) do
    part:get_content_type()
    part:get_filename()
    part:get_content_charset()
    if not part:is_multipart() then n = n + #part:get_payload(true) end
  end
  msg:get("Subject")
  msg:addresses("From")
  return n
end

-- Microseconds per call, the best of 3 runs of n calls.
local function time_us(fn, n)
  local best = math.huge
  for _ = 1, 3 do
    local t0 = H.now()
    for _ = 1, n do fn() end
    best = math.min(best, (H.now() - t0) / n * 1e6)
  end
  return best
end

print("")
print("smtpd.message against Python's email package (policy=default), "
      .. "microseconds per message:")
print(("%-18s %10s %10s %8s %10s %10s %8s"):format("message", "ours parse",
  "py parse", "ratio", "ours full", "py full", "ratio"))
local ok = true
for _, case in ipairs({{"plain-5k.eml", 2000}, {"multipart-1m.eml", 20}}) do
  local path = DIR .. "/" .. case[1]
  local data = H.readfile(path)
  local n = math.max(1, math.floor(case[2] * SCALE))
  local ours_parse = time_us(function() message.parse(data) end, n * 5)
  local ours_full = time_us(function() full(data) end, n * 5)
  local pyn = math.max(1, math.floor(n / 2))
  local out = H.capture(("%s bench/peers/email_parse.py time %s %d")
                        :format(py, path, pyn))
  local py_parse, py_full = out:match("([%d.]+) ([%d.]+)")
  py_parse, py_full = tonumber(py_parse), tonumber(py_full)
  local r1, r2 = py_parse / ours_parse, py_full / ours_full
  print(("%-18s %10.1f %10.1f %7.1fx %10.1f %10.1f %7.1fx"):format(
    ("%s (%d KiB)"):format(case[1]:match("^[^.]+"), #data // 1024),
    ours_parse, py_parse, r1, ours_full, py_full, r2))
  if r1 < GOAL or r2 < GOAL then ok = false end
end
print(("goal: at least %dx faster than Python in both columns: %s"):format(
  GOAL, ok and "met" or "NOT met"))

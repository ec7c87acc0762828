-- Option tables: a key nobody reads is a mistake (a misspelt limit would
-- otherwise start a server without it), so unknown keys raise an error
-- that names them, with the nearest known name when one is close.

local raise = require("smtpd.util").raise

local M = {}

-- Levenshtein distance, for "did you mean".
local function distance(a, b)
  local prev, cur = {}, {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    cur[0] = i
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev, cur = cur, prev
  end
  return prev[#b]
end

-- The known name nearest to name, if it is near enough to be a typo.
function M.suggest(name, known)
  local best, bestd
  for k in pairs(known) do
    local d = distance(name:lower(), k:lower())
    if d <= math.max(2, #k // 4) and (not bestd or d < bestd
        or (d == bestd and k < best)) then
      best, bestd = k, d
    end
  end
  return best
end

-- Raises (at the user's call) for the first key of opts that known
-- lacks; what names the table ("option", "relay option").
function M.check(opts, known, what)
  for k in pairs(opts) do
    if type(k) ~= "string" or not known[k] then
      local msg = ("unknown %s %s"):format(what, type(k) == "string"
        and ("%q"):format(k) or tostring(k))
      local near = type(k) == "string" and M.suggest(k, known)
      if near then msg = msg .. (" (did you mean %q?)"):format(near) end
      raise(msg)
    end
  end
end

-- The option names a class accepts: the OPTIONS sets of the class and of
-- every ancestor, merged (a subclass lists only what it adds).
function M.known(cls, into)
  into = into or {}
  local c = cls
  while c do
    local own = rawget(c, "OPTIONS")
    if type(own) == "table" then
      for k in pairs(own) do into[k] = true end
    end
    c = rawget(c, "super")
  end
  return into
end

-- A set from a list or a set.
function M.set(t)
  local s = {}
  for k, v in pairs(t) do
    if type(k) == "number" then s[v] = true else s[k] = true end
  end
  return s
end

return M

-- smtpd.json: the JSON the catcher's API speaks (RFC 8259), small and
-- strict, so that the library needs no JSON module of its own.
--
--   json.encode(v)   tables with json.array(t) (or a non-empty sequence)
--                    become arrays, other tables objects (keys sorted, so
--                    the output is stable); json.null is null; strings
--                    that are not UTF-8 get U+FFFD for their bad bytes
--   json.decode(s)   -> value | nil, why (at most 64 levels deep); null
--                    decodes to json.null
local M = {}

M.null = setmetatable({}, {__name = "json.null", __tostring = function() return "null" end})
local ARRAY = {__name = "json.array"}

-- t (or a new table) marked as an array: encoded [] even when empty.
function M.array(t) return setmetatable(t or {}, ARRAY) end

-- Strings are escaped in C (core.web_json_string: control characters,
-- quotes, U+2028/U+2029, bad UTF-8 bytes as U+FFFD); object keys, which
-- repeat, once each.
local json_string = require("smtpd.core").web_json_string
local key_cache, key_count = {}, 0
local function encode_key(k)
  local e = key_cache[k]
  if e then return e end
  e = json_string(k)
  if key_count < 4096 then
    key_cache[k] = e
    key_count = key_count + 1
  end
  return e
end
local encode_string = json_string

local encode_value

local function is_array(t)
  if getmetatable(t) == ARRAY then return true end
  local n = #t
  if n == 0 then return false end
  local count = 0
  for _ in pairs(t) do count = count + 1 end
  return count == n
end

encode_value = function(v, out, depth)
  local t = type(v)
  if v == nil or v == M.null then
    out[#out + 1] = "null"
  elseif t == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      error("json.encode: a number JSON cannot carry: " .. tostring(v), 0)
    end
    out[#out + 1] = math.type(v) == "integer" and tostring(v) or ("%.17g"):format(v)
  elseif t == "string" then
    out[#out + 1] = encode_string(v)
  elseif t == "table" then
    if depth > 64 then error("json.encode: nested deeper than 64 levels", 0) end
    if is_array(v) then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        encode_value(v[i], out, depth + 1)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do
        if type(k) ~= "string" then
          error("json.encode: an object key that is not a string: " .. tostring(k), 0)
        end
        keys[#keys + 1] = k
      end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = encode_key(k)
        out[#out + 1] = ":"
        encode_value(v[k], out, depth + 1)
      end
      out[#out + 1] = "}"
    end
  else
    error("json.encode: a " .. t .. " has no JSON form", 0)
  end
end

function M.encode(v)
  local out = {}
  encode_value(v, out, 0)
  return table.concat(out)
end

-- ---- decoding ------------------------------------------------------------------

local UNESC = {['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f",
               n = "\n", r = "\r", t = "\t"}

local decode_value

local function skip(s, i) return s:find("[^ \t\r\n]", i) or #s + 1 end

local function fail(i, why) error({json = ("%s at byte %d"):format(why, i)}, 0) end

local function decode_string(s, i)
  local out, j = {}, i + 1
  while true do
    local a, b = s:find('["\\%c]', j)
    if not a then fail(i, "an unterminated string") end
    out[#out + 1] = s:sub(j, a - 1)
    local c = s:sub(a, a)
    if c == '"' then
      local str = table.concat(out)
      if not utf8.len(str) then fail(i, "a string that is not UTF-8") end
      return str, b + 1
    elseif c == "\\" then
      local e = s:sub(a + 1, a + 1)
      if UNESC[e] then
        out[#out + 1] = UNESC[e]
        j = a + 2
      elseif e == "u" then
        local hex = s:match("^%x%x%x%x", a + 2)
        if not hex then fail(a, "a bad \\u escape") end
        local cp = tonumber(hex, 16)
        j = a + 6
        if cp >= 0xD800 and cp <= 0xDBFF then
          local lo = s:match("^\\u(%x%x%x%x)", j)
          lo = lo and tonumber(lo, 16)
          if not lo or lo < 0xDC00 or lo > 0xDFFF then fail(a, "a lone surrogate") end
          cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
          j = j + 6
        elseif cp >= 0xDC00 and cp <= 0xDFFF then
          fail(a, "a lone surrogate")
        end
        out[#out + 1] = utf8.char(cp)
      else
        fail(a, "a bad escape")
      end
    else
      fail(a, "a control character in a string")
    end
  end
end

decode_value = function(s, i, depth)
  if depth > 64 then fail(i, "nesting deeper than 64 levels") end
  i = skip(s, i)
  local c = s:sub(i, i)
  if c == "{" then
    local obj = {}
    i = skip(s, i + 1)
    if s:sub(i, i) == "}" then return obj, i + 1 end
    while true do
      if s:sub(i, i) ~= '"' then fail(i, "an object key that is not a string") end
      local k
      k, i = decode_string(s, i)
      i = skip(s, i)
      if s:sub(i, i) ~= ":" then fail(i, "a missing ':'") end
      obj[k], i = decode_value(s, i + 1, depth + 1)
      i = skip(s, i)
      local d = s:sub(i, i)
      if d == "}" then return obj, i + 1 end
      if d ~= "," then fail(i, "a missing ',' or '}'") end
      i = skip(s, i + 1)
    end
  elseif c == "[" then
    local arr = M.array()
    i = skip(s, i + 1)
    if s:sub(i, i) == "]" then return arr, i + 1 end
    while true do
      arr[#arr + 1], i = decode_value(s, i, depth + 1)
      i = skip(s, i)
      local d = s:sub(i, i)
      if d == "]" then return arr, i + 1 end
      if d ~= "," then fail(i, "a missing ',' or ']'") end
      i = i + 1
    end
  elseif c == '"' then
    return decode_string(s, i)
  elseif s:find("^true", i) then return true, i + 4
  elseif s:find("^false", i) then return false, i + 5
  elseif s:find("^null", i) then return M.null, i + 4
  else
    -- -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][-+]?[0-9]+)?
    local j = i
    if s:sub(j, j) == "-" then j = j + 1 end
    if s:sub(j, j) == "0" then j = j + 1
    else
      local a, b = s:find("^[1-9]%d*", j)
      if not a then fail(i, "an unexpected character") end
      j = b + 1
    end
    if s:sub(j, j) == "." then
      local _, b = s:find("^%d+", j + 1)
      if not b then fail(j, "a number with nothing after its '.'") end
      j = b + 1
    end
    if s:find("^[eE]", j) then
      local _, b = s:find("^[-+]?%d+", j + 1)
      if not b then fail(j, "a number with a bad exponent") end
      j = b + 1
    end
    local num = s:sub(i, j - 1)
    return math.tointeger(tonumber(num)) or tonumber(num), i + #num
  end
end

function M.decode(s)
  if type(s) ~= "string" then return nil, "json.decode: a string" end
  local ok, v, i = pcall(decode_value, s, 1, 0)
  if not ok then
    if type(v) == "table" and v.json then return nil, v.json end
    error(v, 0)
  end
  if skip(s, i) <= #s then return nil, ("text after the value at byte %d"):format(i) end
  return v
end

return M

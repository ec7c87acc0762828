-- smtpd.authres: the Authentication-Results header field (RFC 8601).
--
--   local field = smtpd.authres.format("mx.example.org", {
--     {method = "spf", result = "pass", props = {{"smtp.mailfrom", "a@b.c"}}},
--     {method = "dkim", result = "fail", reason = "body hash", props = ...}})
--   -- "Authentication-Results: mx.example.org;\n\tspf=pass smtp.mailfrom=a@b.c;..."
--   local data, removed = smtpd.authres.strip(data, "mx.example.org")
--
-- Property values are written by the C core (csrc/auth/authres.c): as a
-- token, or a quoted string without control characters, so nothing a
-- client sent can end the field or add results. strip removes every
-- earlier Authentication-Results field that claims our authserv-id,
-- compared whole (RFC 8601 section 5), before ours is added.

local core = require "smtpd.core"

local M = {}

local METHOD = "^[%a][%w%-]*$"

-- format(authserv_id, results [, eol]) -> the field, folded with eol
-- (default "\n") and a tab.
function M.format(id, results, eol)
  if type(id) ~= "string" or id == "" then
    error("authres.format: the authserv-id must be a string", 2)
  end
  eol = eol or "\n"
  local parts = {core.authres_value(id, 255)}
  if #(results or {}) == 0 then
    return "Authentication-Results: " .. parts[1] .. "; none"
  end
  local out = {}
  for _, r in ipairs(results) do
    if type(r.method) ~= "string" or not r.method:find(METHOD) or
       type(r.result) ~= "string" or not r.result:find(METHOD) then
      error("authres.format: a result needs a method and a result (words)", 2)
    end
    local s = r.method .. "=" .. r.result
    if r.reason then s = s .. " reason=" .. core.authres_value(tostring(r.reason), 200) end
    for _, p in ipairs(r.props or {}) do
      if type(p[1]) == "string" and p[1]:find("^%a+%.[%w%-]+$") and p[2] ~= nil then
        s = s .. " " .. p[1] .. "=" .. core.authres_value(tostring(p[2]), 255)
      end
    end
    out[#out + 1] = s
  end
  return "Authentication-Results: " .. parts[1] .. ";" .. eol .. "\t"
         .. table.concat(out, ";" .. eol .. "\t")
end

-- strip(data, authserv_id) -> data without the Authentication-Results
-- fields that carry authserv_id (its header only), and how many went.
function M.strip(data, id)
  id = id:lower()
  local kept, removed, i, n = {}, 0, 1, #data
  local in_drop = false
  -- the header's lines kept, up to where the body starts (rest)
  local rest = n + 1
  while i <= n do
    local e = data:find("\n", i, true) or n
    local line = data:sub(i, e)
    if line == "\n" or line == "\r\n" then
      rest = i
      break
    end
    if line:find("^[ \t]") then
      if not in_drop then kept[#kept + 1] = line end
    else
      local name, value = line:match("^([^:%s]+)%s*:(.*)$")
      in_drop = false
      if not name then
        rest = i            -- not a field: the header ended without its blank line
        break
      end
      if name:lower() == "authentication-results" then
        -- the whole field's value, folded lines too, for the id
        local j, full = e + 1, value
        while j <= n and data:find("^[ \t]", j) do
          local k = data:find("\n", j, true) or n
          full = full .. data:sub(j, k)
          j = k + 1
        end
        local fid = core.authres_id(full)
        if fid and fid:lower() == id then
          in_drop = true
          removed = removed + 1
        end
      end
      if not in_drop then kept[#kept + 1] = line end
    end
    i = e + 1
  end
  -- nothing removed: the data itself (a message may be large)
  if removed == 0 then return data, 0 end
  return table.concat(kept) .. data:sub(rest), removed
end

return M

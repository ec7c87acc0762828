-- The catcher page's files (lua/smtpd/web/, installed beside this module
-- by `make install` and the rock): read once, when the web server first
-- starts, and served from memory.
local M = {}

local TYPES = {
  ["index.html"] = "text/html; charset=utf-8",
  ["app.js"] = "text/javascript; charset=utf-8",
  ["app.css"] = "text/css; charset=utf-8",
  ["favicon.svg"] = "image/svg+xml",
}

local here = debug.getinfo(1, "S").source:match("^@(.*)[/\\][^/\\]*$")
local dir = (here or ".") .. "/web"

for name, ctype in pairs(TYPES) do
  local f, err = io.open(dir .. "/" .. name, "rb")
  if not f then error("smtpd.web: the page's file " .. name .. " is missing: " .. tostring(err)) end
  M[name] = {type = ctype, body = f:read("a")}
  f:close()
end

return M

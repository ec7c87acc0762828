-- smtpd.http: HTTP and HTTPS requests through libcurl on the map's loop.
-- A hook that asks parks and every other session goes on; connections
-- are kept alive and reused (libcurl's cache, one per map). Names are
-- resolved by smtpd.dns and handed to libcurl, so it never waits for a
-- resolver thread; proxies from the environment and redirects are not
-- followed (a redirect is a 3xx response with its location header).
--
--   local http = require "smtpd.http"
--   local res, err, info = http.request{method = "POST", url = "https://...",
--     headers = {["Content-Type"] = "application/json"}, body = "{}",
--     timeout = 10, tls = {verify = true, ca = "/path/ca.pem"},
--     max_body = 1048576}
--   -- res.status, res.headers["content-type"], res.body
--   -- or nil, "timeout" | "body too large" | "resolve x: nxdomain" | ...,
--   --        {curl_code =, stage = "resolve" | "transfer"}

local core = require "smtpd.core"
local wait = require "smtpd.wait"

local M = {}

M.DEFAULT_TIMEOUT = 30
M.DEFAULT_MAX_BODY = 16 * 1024 * 1024

local METHODS = {GET = true, POST = true, PUT = true, DELETE = true,
                 HEAD = true, PATCH = true, OPTIONS = true}

-- scheme, host, port of a URL (http and https only).
local function split_url(url)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, "not a URL: " .. url end
  scheme = scheme:lower()
  if scheme ~= "http" and scheme ~= "https" then
    return nil, "only http and https URLs: " .. url
  end
  local authority = rest:match("^([^/?#]*)")
  authority = authority:gsub("^.*@", "")
  local host, port = authority:match("^%[([^%]]+)%]:?(%d*)$")
  if not host then host, port = authority:match("^([^:]+):?(%d*)$") end
  if not host or host == "" then return nil, "no host in " .. url end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  if port < 1 or port > 65535 then return nil, "bad port in " .. url end
  return scheme, host, port
end
M.split_url = split_url

local function is_ip(h)
  return h:match("^%d+%.%d+%.%d+%.%d+$") ~= nil or h:find(":", 1, true) ~= nil
end

local function header_lines(headers, what)
  local out = {}
  if headers == nil then return out end
  if type(headers) ~= "table" then
    error(what .. ": headers must be a table", 3)
  end
  for k, v in pairs(headers) do
    if type(k) ~= "string" or k:find("[%c: ]") or k == "" then
      error(what .. ": a header name must be a token: " .. tostring(k), 3)
    end
    -- a list is the same header repeated (rspamd's Rcpt)
    for _, x in ipairs(type(v) == "table" and v or {v}) do
      x = tostring(x)
      if x:find("[\r\n%z]") then
        error(what .. ": a header value cannot hold CR, LF or NUL (" .. k .. ")", 3)
      end
      -- "K:" alone tells curl to drop a header of its own; "K;" sends it
      -- empty.
      out[#out + 1] = x == "" and (k .. ";") or (k .. ": " .. x)
    end
  end
  return out
end

-- The response's header block as {status line, lower-case name = value}
-- (repeated names joined with ", ", as RFC 9110 allows; set-cookie is
-- kept as a list in headers_list too).
local function parse_headers(block)
  local headers, list = {}, {}
  for line in block:gmatch("[^\r\n]+") do
    local name, value = line:match("^([^:%s]+):%s*(.-)%s*$")
    if name then
      name = name:lower()
      list[#list + 1] = {name, value}
      if headers[name] then headers[name] = headers[name] .. ", " .. value
      else headers[name] = value end
    end
  end
  return headers, list
end

-- request{...} -> {status =, headers =, headers_list =, body =} | nil,
-- err, info
function M.request(spec)
  if type(spec) ~= "table" then error("http.request: a table of options", 2) end
  local url = spec.url
  if type(url) ~= "string" then error("http.request: url must be a string", 2) end
  local method = (spec.method or (spec.body and "POST" or "GET"))
  if type(method) ~= "string" or not METHODS[method:upper()] then
    error("http.request: method must be one of GET, POST, PUT, DELETE, "
          .. "HEAD, PATCH, OPTIONS", 2)
  end
  method = method:upper()
  if spec.body ~= nil and type(spec.body) ~= "string" then
    error("http.request: body must be a string", 2)
  end
  local timeout = spec.timeout or M.DEFAULT_TIMEOUT
  if type(timeout) ~= "number" or timeout <= 0 or timeout > 86400 then
    error("http.request: timeout must be seconds above 0", 2)
  end
  local ct = spec.connect_timeout or math.min(timeout, 10)
  if type(ct) ~= "number" or ct <= 0 then
    error("http.request: connect_timeout must be seconds above 0", 2)
  end
  local max_body = spec.max_body or M.DEFAULT_MAX_BODY
  if math.type(max_body) ~= "integer" or max_body < 0 then
    error("http.request: max_body must be a number of bytes", 2)
  end
  local tls = spec.tls or {}
  if type(tls) ~= "table" then error("http.request: tls must be a table", 2) end
  local headers = header_lines(spec.headers, "http.request")
  local scheme, host, port = split_url(url)
  if not scheme then error("http.request: " .. host, 2) end
  local map = wait.current_map(spec.map)
  local resolve
  if not is_ip(host) then
    local dns = require "smtpd.dns"
    local addrs, err, info = dns.resolve(host, {timeout = ct, map = map})
    if not addrs then
      info = info or {}
      info.stage = "resolve"
      return nil, "resolve " .. host .. ": " .. tostring(err), info
    end
    for i, a in ipairs(addrs) do
      if a:find(":", 1, true) then addrs[i] = "[" .. a .. "]" end
    end
    resolve = {("+%s:%d:%s"):format(host, port, table.concat(addrs, ","))}
  end
  local req = {url = url, method = method, headers = headers,
               body = spec.body, timeout = math.floor(timeout * 1000 + 0.5),
               connect_timeout = math.floor(ct * 1000 + 0.5),
               max_body = max_body, verify = tls.verify ~= false,
               ca = tls.ca, resolve = resolve}
  local status, block, body = wait.wait(map, function(m, done)
    local h, err = core.http_request(m, req, done)
    if not h then done(nil, err, {stage = "transfer"}) end
    return h
  end, "smtpd.http")
  if not status then
    local info = body or {}
    info.stage = info.stage or "transfer"
    return nil, block, info
  end
  local hs, list = parse_headers(block)
  return {status = status, headers = hs, headers_list = list, body = body}
end

-- get(url [, opts]), post(url, body [, opts]): request's shorthands.
function M.get(url, opts)
  local spec = {}
  for k, v in pairs(opts or {}) do spec[k] = v end
  spec.url, spec.method = url, "GET"
  return M.request(spec)
end

function M.post(url, body, opts)
  local spec = {}
  for k, v in pairs(opts or {}) do spec[k] = v end
  spec.url, spec.method, spec.body = url, "POST", body
  return M.request(spec)
end

function M.version()
  return core.http_version()
end

return M

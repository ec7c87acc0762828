-- The Python peers several specs start (spec/peers/*.py): each started
-- once per spec file, on a port it picks and prints, and stopped by stop().
-- start_*() returns the running peer ({port = ..., out = ...}) or nil and
-- the reason it cannot run here (then the spec skips, saying so).
local H = require "helper"
local certs = require "certs"

local M = {}
local running = {}

local function start(name, module, pkg, args, keys)
  if running[name] then return running[name] end
  local py = H.python_with(module)
  if not py and pkg and H.apt_install(pkg) then py = H.python_with(module) end
  if not py then
    return nil, ("python3 with %s is not installed and cannot be (not root)")
                :format(module)
  end
  local pid, out = H.spawn(("%s -u %s/spec/peers/%s.py %s")
                           :format(py, H.root, name, args or ""))
  local t0 = H.now()
  while H.now() - t0 < 10 do
    local text = H.readfile(out) or ""
    local peer, all = {pid = pid, out = out}, true
    for _, key in ipairs(keys) do
      local v = text:match(key .. " (%d+)")
      if v then peer[key] = tonumber(v) else all = false end
    end
    if all then
      running[name] = peer
      return peer
    end
    os.execute("sleep 0.05")
  end
  H.kill(pid)
  error(name .. " did not start: " .. (H.readfile(out) or ""))
end

-- spec/peers/dns_server.py (dnslib): the zone test. and its hostile names.
function M.dns()
  return start("dns_server", "dnslib", "python3-dnslib", nil, {"port"})
end

-- spec/peers/http_server.py: plain HTTP on .port, TLS (the specs' CA) on .tls.
function M.http()
  return start("http_server", "http.server", nil,
               certs.path("ec.pem") .. " " .. certs.path("ec.key"),
               {"port", "tls"})
end

-- spec/peers/zone_server.py: serves the zone in the JSON file at path
-- (the openspf suite's zonedata shape); M.reload(map) after rewriting it.
function M.zone(path)
  return start("zone_server", "dnslib", "python3-dnslib", path, {"port"})
end

-- Makes the zone server read its file again (a query it answers itself).
function M.reload(map)
  local dns = require "smtpd.dns"
  assert(dns.query("reload.zone.control", "TXT", {cache = false, map = map}))
  dns.flush(map)
end

-- A zone server with a zone file of its own (started once per spec
-- file): z.peer (nil, and z.why, when it cannot run), z.use(map, zone)
-- serves zone (the zonedata shape) from then on, z.map([timeout]) makes a
-- map whose resolver asks the server, z.stop() stops it.
function M.zone_server(zone)
  local cjson = require "cjson"
  local dns = require "smtpd.dns"
  local z = {path = os.tmpname()}
  local function write(t)
    local f = assert(io.open(z.path, "w"))
    f:write(cjson.encode(t or {}))
    f:close()
  end
  write(zone)
  z.peer, z.why = M.zone(z.path)
  function z.use(map, t)
    write(t)
    M.reload(map)
  end
  function z.map(timeout)
    local map = H.map()
    assert(dns.configure{servers = {"127.0.0.1:" .. z.peer.port}, tries = 1,
                         timeout = timeout or 0.5, map = map})
    return map
  end
  function z.stop()
    M.stop()
    os.remove(z.path)
  end
  return z
end

-- The documents of the YAML test suite at path (python3-yaml reads it):
-- a list of tables, or nil and why not.
function M.suite(path)
  local py = H.python_with("yaml")
  if not py and H.apt_install("python3-yaml") then py = H.python_with("yaml") end
  if not py then return nil, "python3-yaml is not installed" end
  local json = os.tmpname()
  local ok = os.execute(("%s %s/spec/peers/yaml2json.py %s %s")
                        :format(py, H.root, path, json))
  local text = H.readfile(json)
  os.remove(json)
  if not ok or not text then return nil, "cannot read " .. path end
  return require("cjson").decode(text)
end

-- The scenarios of the suite whose path the environment variable var
-- names (file: what it is called), or nil and why they cannot run.
function M.env_suite(var, file)
  local path = os.getenv(var)
  if not path or path == "" then
    return nil, ("%s is not set (the path of %s)"):format(var, file)
  end
  return M.suite(path)
end

-- A scenario's tests, name and test, in the order of their names.
function M.tests(scenario)
  local names = {}
  for name in pairs(scenario.tests or {}) do names[#names + 1] = name end
  table.sort(names)
  local i = 0
  return function()
    i = i + 1
    local name = names[i]
    if name then return name, scenario.tests[name] end
  end
end

function M.stop()
  for name, peer in pairs(running) do
    H.kill(peer.pid)
    os.remove(peer.out)
    running[name] = nil
  end
end

return M

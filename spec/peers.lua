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

function M.stop()
  for name, peer in pairs(running) do
    H.kill(peer.pid)
    os.remove(peer.out)
    running[name] = nil
  end
end

return M

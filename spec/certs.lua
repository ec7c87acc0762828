-- Certificates made at test time with openssl(1), once per run: a test CA
-- (ECDSA P-256), server certificates for localhost/127.0.0.1 signed by it
-- (ECDSA and RSA-2048), one for another name (SNI), a client certificate,
-- and a self-signed "wrong" one no one trusts.
local M = {}

local dir

local function sh(cmd)
  local ok = os.execute("cd " .. dir .. " && (" .. cmd .. ") >/dev/null 2>&1")
  if not ok then error("openssl failed: " .. cmd) end
end

local function newkey(kind)
  if kind == "rsa" then return "-newkey rsa:2048" end
  return "-newkey ec -pkeyopt ec_paramgen_curve:P-256"
end

-- A certificate name.pem / name.key for cn, signed by the test CA.
local function signed(name, kind, cn, san, ext)
  sh(("openssl req %s -nodes -keyout %s.key -out %s.csr -subj '/CN=%s'")
     :format(newkey(kind), name, name, cn))
  local f = assert(io.open(dir .. "/" .. name .. ".ext", "w"))
  f:write(san and ("subjectAltName=" .. san .. "\n") or "")
  f:write(ext or "")
  f:close()
  sh(("openssl x509 -req -in %s.csr -CA ca.pem -CAkey ca.key "
      .. "-CAcreateserial -out %s.pem -days 3 -extfile %s.ext")
     :format(name, name, name))
end

function M.dir()
  if dir then return dir end
  local p = io.popen("mktemp -d /tmp/smtpd-certs.XXXXXX")
  dir = p:read("l")
  p:close()
  sh("openssl req -x509 " .. newkey("ec") .. " -nodes -keyout ca.key "
     .. "-out ca.pem -days 3 -subj '/CN=lua-smtpd test CA'")
  signed("ec", "ec", "localhost", "DNS:localhost,IP:127.0.0.1")
  signed("rsa", "rsa", "localhost", "DNS:localhost,IP:127.0.0.1")
  signed("other", "ec", "other.example", "DNS:other.example")
  signed("client", "ec", "alice", nil, "extendedKeyUsage=clientAuth\n")
  sh("openssl req -x509 " .. newkey("ec") .. " -nodes -keyout wrong.key "
     .. "-out wrong.pem -days 3 -subj '/CN=localhost' "
     .. "-addext subjectAltName=DNS:localhost,IP:127.0.0.1")
  return dir
end

-- The path of a file of the set ("ec.pem", "ca.pem", ...).
function M.path(name)
  return M.dir() .. "/" .. name
end

-- tls = {...} for a server with the ECDSA certificate, plus extra keys.
function M.tls(extra)
  local t = {cert = M.path("ec.pem"), key = M.path("ec.key")}
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

function M.cleanup()
  if dir then os.execute("rm -rf " .. dir) end
  dir = nil
end

return M

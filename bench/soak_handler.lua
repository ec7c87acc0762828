-- The soak's server class: counts messages, checks their size, and writes
-- the count where the soak driver reads it.
local smtpd = require "smtpd"
local Soak = smtpd.SMTPServer:extend("Soak")
local out = os.getenv("SOAK_COUNT_FILE") or "/tmp/soak-count"
local n, bad = 0, 0

-- Everything in the soak comes from 127.0.0.1: widen the connection limits.
function Soak:initialize(localaddr, remoteaddr, opts)
  opts = opts or {}
  opts.max_connections = 5000
  opts.max_connections_per_ip = 5000
  Soak.super.initialize(self, localaddr, remoteaddr, opts)
end
function Soak:process_message(peer, mailfrom, rcpttos, data)
  n = n + 1
  if #data ~= 10240 then bad = bad + 1 end
  if n % 100 == 0 or n >= 5000 then
    local f = io.open(out, "w")
    f:write(n, " ", bad, "\n")
    f:close()
  end
end
return Soak

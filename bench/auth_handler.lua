-- bench/auth.lua's server class (`lua-smtpd -c bench/auth_handler.lua`):
-- bench/handler.lua's counting handler with authentication = true when
-- $BENCH_AUTH is set, its DNS from the server at $BENCH_DNS.
local smtpd = require "smtpd"
local Bench = dofile("bench/handler.lua")

if os.getenv("BENCH_DNS") then
  assert(smtpd.dns.configure{servers = {os.getenv("BENCH_DNS")}, timeout = 2, tries = 2})
end

local Auth = Bench:extend("BenchAuth")

function Auth:initialize(localaddr, remoteaddr, opts)
  opts = opts or {}
  if os.getenv("BENCH_AUTH") == "noheader" then
    opts.authentication = {spf = true, dkim = true, dmarc = true, arc = true}
  elseif os.getenv("BENCH_AUTH") then
    opts.authentication = true
  end
  Auth.super.initialize(self, localaddr, remoteaddr, opts)
end

return Auth

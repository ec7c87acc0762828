-- The TLS bench's server class (lua-smtpd -c bench/tls_handler.lua
-- --tls-cert ...): the bench's counting handler, plus AUTH for the load
-- generator's user (bench/bench).
local Bench = dofile("bench/handler.lua")

local BenchTLS = Bench:extend("BenchTLS")

function BenchTLS:authenticate(channel, mechanism, user, password)
  return user == "bench" and password == "bench"
end

return BenchTLS

-- The bench's server class (run as `lua-smtpd -c bench/handler.lua`): a Lua
-- process_message that counts messages and checks each body's size. The
-- driver sends SIGUSR1 and reads the count from $BENCH_COUNT_DIR/<pid>, so
-- counting costs nothing per command and nothing per connection.
local smtpd = require "smtpd"

local Bench = smtpd.SMTPServer:extend("BenchCounter")

-- The body length smtp-source's payload has once the core turned CRLF into
-- LF (the driver works it out from -l).
local BODY = tonumber(os.getenv("BENCH_BODY") or "")
local DIR = os.getenv("BENCH_COUNT_DIR") or "/tmp"
local n, bad = 0, 0

-- Every bench client comes from 127.0.0.1, 500 at a time and more.
function Bench:initialize(localaddr, remoteaddr, opts)
  opts = opts or {}
  opts.max_connections = 20000
  opts.max_connections_per_ip = 20000
  Bench.super.initialize(self, localaddr, remoteaddr, opts)
end

function Bench:process_message(peer, mailfrom, rcpttos, data)
  n = n + 1
  if BODY then
    local eoh = data:find("\n\n", 1, true)
    if not eoh or #data - eoh - 1 ~= BODY then bad = bad + 1 end
  end
end

local function report()
  local path = ("%s/%d"):format(DIR, smtpd.core.getpid())
  local f = assert(io.open(path .. ".tmp", "w"))
  f:write(n, " ", bad, "\n")
  f:close()
  assert(os.rename(path .. ".tmp", path))
end
Bench.usr1 = smtpd.core.on_signal(smtpd.socket_map, "SIGUSR1", report)

return Bench

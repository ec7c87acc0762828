-- The server class of bench/io.lua (`lua-smtpd -c bench/io_handler.lua`):
-- bench/handler.lua's counting handler, doing one more thing per message
-- as $BENCH_IO says:
--   plain     nothing more (the baseline)
--   webhook   POSTs the message to $BENCH_URL and answers 451 if that fails
--   redis     $BENCH_TRIPS INCRs on $BENCH_URL, one round trip each
--   limits    rate_limits on messages and recipients per IP (never reached)
--             counted in the store $BENCH_STORE names (unset: the servers'
--             default, shared memory)
local smtpd = require "smtpd"
local Bench = dofile("bench/handler.lua")

local MODE = os.getenv("BENCH_IO") or "plain"
local URL = os.getenv("BENCH_URL")
local TRIPS = tonumber(os.getenv("BENCH_TRIPS") or "") or 20

local IO = Bench:extend("BenchIO")

function IO:initialize(localaddr, remoteaddr, opts)
  opts = opts or {}
  if MODE == "limits" then
    opts.rate_limits = {messages_per_ip = {1000000000, 3600},
                        recipients_per_ip = {1000000000, 3600}}
    opts.store = os.getenv("BENCH_STORE")
  end
  IO.super.initialize(self, localaddr, remoteaddr, opts)
end

local process = Bench.process_message

if MODE == "webhook" then
  function IO:process_message(peer, mailfrom, rcpttos, data, kwargs)
    local res, err = smtpd.http.post(URL, data,
      {headers = {["Content-Type"] = "message/rfc822"}, timeout = 10})
    if not res or res.status ~= 200 then
      return "451 4.3.0 webhook: " .. tostring(err or res.status)
    end
    return process(self, peer, mailfrom, rcpttos, data, kwargs)
  end
elseif MODE == "redis" then
  function IO:process_message(peer, mailfrom, rcpttos, data, kwargs)
    local r, err = smtpd.redis.connect(URL)
    if not r then return "451 4.3.0 redis: " .. err end
    for _ = 1, TRIPS do
      local n
      n, err = r:incr("bench:trips")
      if not n then
        r:close()
        return "451 4.3.0 redis: " .. err
      end
    end
    r:set_keepalive()
    return process(self, peer, mailfrom, rcpttos, data, kwargs)
  end
end

return IO

-- bench/pipeline: pipelined workloads, driven by one load generator for
-- every server (bench/pipeload.c): PROCS connections, each sending its
-- messages
--   lockstep  one command at a time (as smtp-source does)
--   pipeline  MAIL/RCPT/DATA in one write, the message and the next group
--             in one write (PIPELINING; one round trip a message)
--   bdat      MAIL/RCPT/BDAT LAST and the message in one write (CHUNKING)
-- For ours, smtp-sink and smtp-server: messages per second and server CPU
-- per message; for ours, system calls per message (strace -c).
-- Goal: at most 4 system calls per message pipelined.
-- BENCH_SCALE scales the messages, BENCH_ONLY=ours,sink,node picks servers.
local H = require "helper"

local SCALE = tonumber(os.getenv("BENCH_SCALE") or "1") or 1
local ONLY = os.getenv("BENCH_ONLY")
local PROCS = 8
local MSGS = math.max(50, math.floor(2500 * SCALE))
local SIZE = 1000
local LOAD = "bench/.work/pipeload"
local GOAL = 4

local function note(s) io.stderr:write("bench/pipeline: ", s, "\n") end

assert(os.execute("mkdir -p bench/.work && cc -O2 -o " .. LOAD
                  .. " bench/pipeload.c"), "cannot build bench/pipeload.c")

local function wanted(id)
  if not ONLY then return true end
  for x in ONLY:gmatch("[^,]+") do if x == id then return true end end
  return false
end

local node_path = wanted("node") and H.node_module("smtp-server")
local SERVERS = {
  {id = "ours", name = "lua-smtpd", start = function(port)
    return H.spawn(("BENCH_COUNT_DIR=/tmp exec lua5.4 bin/lua-smtpd -n -c "
                    .. "bench/handler.lua 127.0.0.1:%d </dev/null"):format(port))
  end, have = true},
  {id = "sink", name = "smtp-sink (Postfix)", start = function(port)
    return H.spawn(("exec smtp-sink %s127.0.0.1:%d 1024 </dev/null")
      :format(H.is_root() and "-u nobody " or "", port))
  end, have = H.ensure("smtp-sink", "postfix")},
  {id = "node", name = "smtp-server (Node.js)", start = function(port)
    return H.spawn(("NODE_PATH=%s exec node bench/peers/smtp_server.js %d "
                    .. "</dev/null"):format(node_path or "", port))
  end, have = node_path and true or false},
}

-- strace -c's count of every system call, or nil.
local function strace_start(pid)
  if not H.have("strace") then return nil end
  local out = os.tmpname()
  local spid = H.spawn(("exec strace -c -f -p %d -o %s"):format(pid, out))
  os.execute("sleep 0.5")
  return {pid = spid, out = out}
end

local function strace_stop(st)
  if not st then return nil end
  os.execute("kill -INT " .. st.pid)
  local t0 = H.now()
  while H.alive(st.pid) and H.now() - t0 < 5 do os.execute("sleep 0.05") end
  local text = H.readfile(st.out) or ""
  os.remove(st.out)
  local nums = {}
  local total = text:match("\n([^\n]*total)%s*$") or ""
  for n in total:gmatch("[%d.]+") do nums[#nums + 1] = tonumber(n) end
  return nums[4]
end

-- One run of the load against a fresh server; traced: under strace -c
-- (slow: only the count of system calls is kept from it).
local function run(server, mode, traced)
  local port = H.free_port()
  local pid = server.start(port)
  if not H.wait_listening(port, 15) then
    H.kill(pid)
    return {failed = "did not start"}
  end
  local st = traced and strace_start(pid) or nil
  local cpu0 = H.cpu({pid})
  local out = H.capture(("timeout 300 %s %s 127.0.0.1 %d %d %d %d"):format(
    LOAD, mode, port, PROCS, traced and math.max(50, MSGS // 5) or MSGS,
    SIZE))
  local cpu = H.cpu({pid}) - cpu0
  local calls = strace_stop(st)
  H.kill(pid)
  local n, secs, fails = out:match("(%d+) ([%d.]+) (%d+)")
  n, secs, fails = tonumber(n), tonumber(secs), tonumber(fails)
  if not n or fails > 0 or n == 0 then
    return {failed = mode == "bdat" and "no CHUNKING" or
                     ("failed: " .. out:gsub("\n", " "))}
  end
  return {rate = n / secs, cpu = cpu / n * 1000, calls = calls and calls / n}
end

print("")
print(("Pipelined workloads: %d connections x %d messages of %d bytes "
       .. "(bench/pipeload)"):format(PROCS, MSGS, SIZE))
print(("%-22s %-9s %12s %14s %14s"):format("server", "mode", "msg/s",
                                           "CPU ms/msg", "syscalls/msg"))
local ours_calls
for _, server in ipairs(SERVERS) do
  if wanted(server.id) then
    for _, mode in ipairs({"lockstep", "pipeline", "bdat"}) do
      if not server.have then
        print(("%-22s %-9s %s"):format(server.name, mode, "not installed"))
      else
        local r = run(server, mode)
        if not r.failed and server.id == "ours" then
          r.calls = run(server, mode, true).calls
        end
        if r.failed then
          print(("%-22s %-9s %s"):format(server.name, mode, r.failed))
        else
          print(("%-22s %-9s %12.0f %14.4f %14s"):format(server.name, mode,
            r.rate, r.cpu, r.calls and ("%.2f"):format(r.calls) or "-"))
          if server.id == "ours" then
            ours_calls = ours_calls or {}
            ours_calls[mode] = r.calls
          end
        end
      end
    end
  end
end
if ours_calls and ours_calls.pipeline then
  print(("goal: at most %d system calls per message pipelined (ours: %.2f, "
         .. "lock-step: %.2f): %s"):format(GOAL, ours_calls.pipeline,
    ours_calls.lockstep or 0, ours_calls.pipeline <= GOAL and "met"
                                                        or "NOT met"))
elseif wanted("ours") then
  note("no strace here: system calls not counted")
end

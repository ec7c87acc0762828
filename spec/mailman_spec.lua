-- MailmanProxy in front of a real Mailman 3 (Debian mailman3), with
-- Postfix's smtp-sink as both the upstream relay and Mailman's own MTA.
-- Mailman takes seconds to start: it is started once for this file.
local H = require "helper"
local R = require "replies"
local smtpd = H.smtpd

local function is_root() return io.popen("id -u"):read("n") == 0 end

local function sh(cmd)
  return os.execute(cmd .. " >/dev/null 2>&1") == true
end

local CFG = [[
[mailman]
layout: private
site_owner: owner@example.com

[paths.private]
var_dir: %s/var
bin_dir: /usr/lib/mailman3/bin
log_dir: %s/var/logs
pid_file: %s/var/master.pid
lock_file: %s/var/locks/master.lck
etc_dir: %s

[mta]
incoming: mailman.mta.null.NullMTA
lmtp_host: 127.0.0.1
lmtp_port: %d
smtp_host: 127.0.0.1
smtp_port: %d

[webservice]
hostname: 127.0.0.1
port: %d
admin_user: restadmin
admin_pass: restpass

[archiver.prototype]
enable: no
[archiver.mhonarc]
enable: no
[archiver.mail_archive]
enable: no

[runner.archive]
start: no
[runner.bounces]
start: no
[runner.digest]
start: no
[runner.nntp]
start: no
[runner.retry]
start: no
[runner.task]
start: no
]]

describe("MailmanProxy with Mailman 3", function()
  local dir, cfg, lmtp, rest, sink, sink_pid, why_not
  local MSG_FROM = "member@example.org"

  local function mailman(cmd)
    return os.execute(("cd / && runuser -u nobody -- mailman -C %s %s "
                       .. ">>%s/mailman-cli.log 2>&1"):format(cfg, cmd, dir))
           == true
  end

  local function rest_post(path, fields)
    local args = {}
    for k, v in pairs(fields) do args[#args + 1] = ("-d %s=%s"):format(k, v) end
    return sh(("curl -sf -u restadmin:restpass -X POST "
               .. "http://127.0.0.1:%d/3.1/%s %s"):format(rest, path,
                                                          table.concat(args,
                                                                       " ")))
  end

  setup(function()
    if not is_root() then
      why_not = "Mailman 3 is installed and started as nobody here, which "
                .. "needs root"
      return
    end
    if not (H.ensure("mailman", "mailman3") and H.ensure("smtp-sink", "postfix")
            and H.ensure("curl", "curl")) then
      why_not = "mailman3, postfix or curl cannot be installed here"
      return
    end
    dir = os.tmpname()
    os.remove(dir)
    assert(sh(("mkdir -p %s/var/logs %s/dumps && chmod 755 %s"):format(dir,
                                                                     dir, dir)))
    lmtp, rest, sink = H.free_port(), H.free_port(), H.free_port()
    cfg = dir .. "/mailman.cfg"
    local f = io.open(cfg, "w")
    f:write(CFG:format(dir, dir, dir, dir, dir, lmtp, sink, rest))
    f:close()
    assert(sh(("chown -R nobody:nogroup %s/var %s/dumps"):format(dir, dir)))
    sink_pid = H.spawn(("exec smtp-sink -u nobody -d %s/dumps/%%M. "
                        .. "127.0.0.1:%d 50"):format(dir, sink))
    assert(H.wait_listening(sink), "smtp-sink did not start")
    assert(mailman("start"), "mailman start failed")
    local t0 = H.now()
    while not sh(("curl -sf -u restadmin:restpass http://127.0.0.1:%d/3.1/"
                  .. "system/versions"):format(rest)) do
      if H.now() - t0 > 60 then
        error("Mailman's REST API did not come up: "
              .. (H.readfile(dir .. "/mailman-cli.log") or "") .. "\n"
              .. (H.readfile(dir .. "/var/logs/mailman.log") or ""))
      end
      os.execute("sleep 0.3")
    end
    assert(H.wait_listening(lmtp, 30), "Mailman's LMTP did not come up")
    assert(rest_post("domains", {mail_host = "example.com"}))
    assert(rest_post("lists", {fqdn_listname = "test@example.com"}))
    assert(rest_post("members", {list_id = "test.example.com",
                                 subscriber = MSG_FROM, pre_verified = "true",
                                 pre_confirmed = "true",
                                 pre_approved = "true"}))
  end)

  teardown(function()
    if cfg then
      mailman("stop")
      os.execute("sleep 0.5")
      sh("pkill -f " .. cfg)
    end
    H.kill(sink_pid)
    if dir then sh("rm -rf " .. dir) end
  end)

  -- Waits for an smtp-sink dump holding every string of `wanted`.
  local function dump_with(wanted, timeout)
    local t0 = H.now()
    while H.now() - t0 < (timeout or 30) do
      local p = io.popen("ls " .. dir .. "/dumps")
      for name in p:lines() do
        local text = H.readfile(dir .. "/dumps/" .. name) or ""
        local all = true
        for _, w in ipairs(wanted) do
          if not text:find(w, 1, true) then all = false end
        end
        if all then
          p:close()
          return text
        end
      end
      p:close()
      os.execute("sleep 0.2")
    end
    error("no smtp-sink dump with " .. table.concat(wanted, " + "))
  end

  local function proxy(map, lmtp_port)
    local p = smtpd.MailmanProxy({"127.0.0.1", 0}, {"127.0.0.1", sink},
      {map = map, mailman = {lmtp = "127.0.0.1:" .. (lmtp_port or lmtp)}})
    p.logged = {}
    function p:log(level, fmt, ...)
      self.logged[#self.logged + 1] = fmt:format(...)
    end
    return p, select(2, p:getsockname())
  end

  local function send(port, map, rcpts, subject, body)
    local input = "EHLO client.example\r\nMAIL FROM:<" .. MSG_FROM .. ">\r\n"
    for _, r in ipairs(rcpts) do input = input .. "RCPT TO:<" .. r .. ">\r\n" end
    input = input .. "DATA\r\nFrom: " .. MSG_FROM .. "\r\nTo: " .. rcpts[1]
            .. "\r\nSubject: " .. subject .. "\r\nMessage-ID: <" .. subject
            .. "@example.org>\r\n\r\n" .. (body or "hello") .. "\r\n.\r\n"
            .. "QUIT\r\n"
    local replies = H.converse(map, "127.0.0.1", port, input, nil)
    return replies[#replies - 1], replies
  end

  local function check()
    if why_not then H.skip(why_not) return false end
    return true
  end

  it("delivers a post to the list's members through Mailman", function()
    if not check() then return end
    local map = H.map()
    local _, port = proxy(map)
    -- At RCPT time the reply is Mailman's own.
    assert.matches("^250 ", send(port, map, {"test@example.com"}, "post-1"))
    local dump = dump_with({"List-Id: <test.example.com>",
                            "Subject: [Test] post-1",
                            "X-Rcpt-Args: <" .. MSG_FROM .. ">"})
    assert.matches("X%-Peer: 127%.0%.0%.1", dump)
  end)

  it("sends list-request mail to Mailman, which answers the command",
     function()
    if not check() then return end
    local map = H.map()
    local _, port = proxy(map)
    assert.matches("^250 ", send(port, map, {"TEST-Request@Example.com"},
                                  "request-1", "help"))
    dump_with({"Subject: The results of your email commands",
               "X-Rcpt-Args: <" .. MSG_FROM .. ">", "Subject: request-1"})
  end)

  it("relays an address that is not a list, with X-Peer", function()
    if not check() then return end
    local map = H.map()
    local _, port = proxy(map)
    assert.matches("^250 ", send(port, map, {"someone@elsewhere.org"},
                                  "relay-1"))
    local dump = dump_with({"Subject: relay-1",
                            "X-Rcpt-Args: <someone@elsewhere.org>"})
    assert.matches("X%-Mail%-Args: <member@example%.org>", dump)
    assert.matches("\nX%-Peer: 127%.0%.0%.1\n", dump)
    assert.is_nil(dump:find("List-Id:", 1, true))
  end)

  it("splits a message to a list and an outside address", function()
    if not check() then return end
    local map = H.map()
    local _, port = proxy(map)
    assert.equal(R.ok, send(port, map, {"test@example.com",
                                        "outside@elsewhere.org"}, "split-1"))
    local relayed = dump_with({"Subject: split-1",
                               "X-Rcpt-Args: <outside@elsewhere.org>"})
    assert.is_nil(relayed:find("X-Rcpt-Args: <test@example.com>", 1, true))
    dump_with({"Subject: [Test] split-1", "List-Id: <test.example.com>"})
  end)

  it("works from the command line: lua-smtpd -c MailmanProxy", function()
    if not check() then return end
    local map = H.map()
    local port = H.free_port()
    local pid, out = H.spawn(("exec lua5.4 bin/lua-smtpd -n -c MailmanProxy "
                              .. "--mailman-lmtp 127.0.0.1:%d 127.0.0.1:%d "
                              .. "127.0.0.1:%d </dev/null"):format(lmtp, port,
                                                                  sink))
    assert.is_true(H.wait_listening(port), H.readfile(out))
    local reply = send(port, map, {"test@example.com", "far@elsewhere.org"},
                       "cli-1")
    H.kill(pid)
    assert.equal(R.ok, reply)
    dump_with({"Subject: cli-1", "X-Rcpt-Args: <far@elsewhere.org>"})
    dump_with({"Subject: [Test] cli-1", "List-Id: <test.example.com>"})
  end)

  it("answers 4xx when Mailman is not there", function()
    if not check() then return end
    local map = H.map()
    local p, port = proxy(map, H.free_port())
    local _, replies = send(port, map, {"test@example.com",
                                        "x@elsewhere.org"}, "down-1")
    -- Which addresses are lists is Mailman's to say: without it, each
    -- recipient is deferred (never relayed on a guess), and no message
    -- goes anywhere.
    local rcpt = H.after_ehlo(replies)
    assert.matches("^250 ", rcpt[1])     -- the relay took the MAIL
    for i = 2, 3 do
      assert.matches("^451 4%.4%.1 Mailman unavailable: connect to "
                     .. "127%.0%.0%.1:%d+: connection refused$", rcpt[i])
    end
    assert.equal("503 Error: need RCPT command", rcpt[4])
    assert.equal(1, #p.logged)
  end)

  it("Mailman's LMTP is the reference for our LMTPServer's replies",
     function()
    if not check() then return end
    local map = H.map()
    local Inbox = smtpd.LMTPServer:extend()
    function Inbox:process_message() return nil end
    local inbox = Inbox("127.0.0.1:0", nil, {map = map})
    local _, ours = inbox:getsockname()
    local conversation = "HELO x\r\nLHLO client.example\r\n"
      .. "MAIL FROM:<" .. MSG_FROM .. ">\r\nRCPT TO:<test@example.com>\r\n"
      .. "RCPT TO:<test-request@example.com>\r\nDATA\r\n"
      .. "Subject: lmtp reference\r\n\r\nhelp\r\n.\r\nQUIT\r\n"
    -- The codes of each reply line, and where the LHLO reply ends.
    local function shape(port)
      local replies = H.converse(map, "127.0.0.1", port, conversation)
      local codes = {}
      for i, l in ipairs(replies) do codes[i] = l:sub(1, 4) end
      return codes, replies
    end
    local theirs, their_lines = shape(lmtp)
    local mine, my_lines = shape(ours)
    -- HELO refused alike; then LHLO's lines (their extensions differ),
    -- then one reply per command, and one per recipient after the data.
    assert.equal(their_lines[1], my_lines[1])
    local function after_lhlo(codes)
      local out, i = {}, 2
      while codes[i] == "250-" do i = i + 1 end
      for k = i, #codes do out[#out + 1] = codes[k] end
      return out
    end
    assert.same({"250 ", "250 ", "250 ", "250 ", "354 ", "250 ", "250 ",
                 "221 "}, after_lhlo(theirs))
    assert.same(after_lhlo(theirs), after_lhlo(mine))
  end)

  it("answers 4xx once Mailman is stopped", function()
    if not check() then return end
    assert.is_true(mailman("stop"))
    local t0 = H.now()
    while H.wait_listening(lmtp, 0.2) and H.now() - t0 < 20 do
      os.execute("sleep 0.2")
    end
    local map = H.map()
    local _, port = proxy(map)
    local _, replies = send(port, map, {"test@example.com"}, "stopped-1")
    assert.matches("^451 4%.4%.1 Mailman unavailable: ",
                   H.after_ehlo(replies)[2])
  end)
end)

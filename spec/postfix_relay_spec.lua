-- A real sender: a private Postfix instance (its own configuration and
-- queue, started as root and stopped afterwards) relays mail to our
-- server. It pipelines (MAIL, RCPT... and DATA in one group); every
-- message reaches the handler intact. Postfix's SMTP client sends DATA
-- even to a server offering CHUNKING (it has no BDAT), which the spec
-- checks rather than assumes.
local H = require "helper"
local smtpd = H.smtpd

local MASTER_CF = [[
127.0.0.1:%d inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache   unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
]]

local MAIN_CF = [[
compatibility_level = 3.6
queue_directory = %s/queue
data_directory = %s/data
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.test
mydomain = test
myorigin = relay.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
%s
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
alias_maps =
alias_database =
maillog_file = %s/maillog
maillog_file_prefixes = %s
smtp_tls_security_level = none
smtpd_tls_security_level = none
biff = no
]]

-- postfix(1) reports to syslog, or to a terminal: give it one (script).
local function postfix(conf, cmd)
  return H.capture(("script -qc 'postfix -c %s %s' /dev/null 2>&1")
                   :format(conf, cmd))
end

-- A private Postfix instance taking mail on 127.0.0.1:front and handing
-- it on as `route` says (a main.cf line); stopped and removed by finally.
-- Returns the configuration directory.
local function start_postfix(front, route)
  local dir = H.capture("mktemp -d"):gsub("%s+$", "")
  local conf = dir .. "/conf"
  os.execute(("chmod 755 %s && mkdir %s %s/queue %s/data && chown "
              .. "postfix:postfix %s/data"):format(dir, conf, dir, dir, dir))
  local f = io.open(conf .. "/main.cf", "w")
  f:write(MAIN_CF:format(dir, dir, route, dir, dir))
  f:close()
  f = io.open(conf .. "/master.cf", "w")
  f:write(MASTER_CF:format(front))
  f:close()
  finally(function()
    postfix(conf, "stop")
    os.execute("pkill -9 -f 'postfix/master -c " .. conf .. "' 2>/dev/null")
    os.execute("rm -rf " .. dir)
  end)
  local out = postfix(conf, "start")
  assert.is_true(H.wait_listening(front, 15), out .. (H.readfile(dir
    .. "/maillog") or ""))
  return conf
end

local function can_run()
  if not H.is_root() then
    return nil, "starting a Postfix instance needs root"
  end
  if not (H.ensure("postfix", "postfix") and H.have("script")) then
    return nil, "Postfix (or script(1)) is not installed and cannot be"
  end
  return true
end

describe("Postfix relays to us", function()
  it("pipelining, every message intact", function()
    local ok, why = can_run()
    if not ok then return H.skip(why) end
    local map = H.map()
    finally(function() H.cleanup(map) end)
    local srv = H.Recorder("127.0.0.1:0", nil, {map = map})
    local lines = {}
    function srv:log(_, fmt, ...) lines[#lines + 1] = fmt:format(...) end
    map:set_debug(true)
    local _, ours = srv:getsockname()
    local front = H.free_port()
    start_postfix(front, ("relayhost = [127.0.0.1]:%d"):format(ours))
    -- Ten messages, three recipients each, of several shapes, into
    -- Postfix; it queues them and relays them to us.
    local bodies = {}
    for i = 1, 10 do
      local body = ("line %d\r\n.starts with a dot\r\n"):format(i)
      if i == 5 then body = body .. ("x"):rep(998) .. "\r\n" end
      if i == 7 then body = body .. ("long\r\n"):rep(50000) end
      bodies[i] = body
      local refused, err = smtpd.sendmail({"127.0.0.1", front},
        "sender@example.org", {"a@example.net", "b@example.net",
                               "c@example.net"},
        ("Subject: relayed %d\r\n\r\n"):format(i) .. body, {map = map})
      assert.same({}, refused, tostring(err))
    end
    H.run_until(map, function()
      return srv.messages and #srv.messages >= 10
    end, 60, "Postfix to relay ten messages")
    local seen = {}
    for _, m in ipairs(srv.messages) do
      local i = tonumber(m.data:match("\nSubject: relayed (%d+)\n"))
      assert.is_number(i, m.data:sub(1, 300))
      seen[i] = (seen[i] or 0) + 1
      assert.same({"a@example.net", "b@example.net", "c@example.net"},
                  m.rcpttos)
      assert.equal("sender@example.org", m.mailfrom)
      -- Postfix adds its headers; the body is ours, byte for byte in
      -- smtpd's form (CRLF made LF, the dot-stuffing undone).
      local want = bodies[i]:gsub("\r\n", "\n"):gsub("\n$", "")
      assert.equal(want, m.data:sub(-#want))
    end
    for i = 1, 10 do assert.equal(1, seen[i]) end
    -- Pipelined: MAIL, the RCPTs and DATA arrived before any reply.
    local text = table.concat(lines, "\n")
    assert.matches("< MAIL FROM:<sender@example%.org>[^\n]*\n[^\n]*"
                   .. "< RCPT TO:<a@example%.net>\n[^\n]*< RCPT TO:"
                   .. "<b@example%.net>\n[^\n]*< RCPT TO:<c@example%.net>\n"
                   .. "[^\n]*< DATA\n", text)
    assert.is_nil(text:find("< BDAT", 1, true))
  end)

  it("through its lmtp client to our LMTPServer: one reply per recipient "
     .. "honoured", function()
    local ok, why = can_run()
    if not ok then return H.skip(why) end
    local map = H.map()
    finally(function() H.cleanup(map) end)
    local Inbox = smtpd.LMTPServer:extend()
    local delivered, bounces = {}, {}
    function Inbox:process_message(_, _, rcpttos, data)
      local replies = {}
      for i, r in ipairs(rcpttos) do
        if r:match("^gone@") then
          replies[i] = "550 5.1.1 No such user"
        elseif r == "sender@example.org" then
          bounces[#bounces + 1] = data          -- Postfix's bounce to us
          replies[i] = "250 2.0.0 Delivered"
        else
          delivered[#delivered + 1] = r .. " " .. data:match("Subject: (%S+)")
          replies[i] = "250 2.0.0 Delivered"
        end
      end
      return replies
    end
    local inbox = Inbox("127.0.0.1:0", nil, {map = map})
    local _, port = inbox:getsockname()
    local front = H.free_port()
    -- Every domain goes to us by LMTP (Postfix's lmtp(8) client).
    start_postfix(front, ("default_transport = lmtp:inet:127.0.0.1:%d"
                          .. "\nrelay_transport = lmtp:inet:127.0.0.1:%d")
                         :format(port, port))
    for i = 1, 3 do
      local refused, err = smtpd.sendmail({"127.0.0.1", front},
        "sender@example.org", {"u1@example.net", "gone@example.net",
                               "u2@example.net"},
        ("Subject: lmtp%d\r\n\r\nbody\r\n"):format(i), {map = map})
      assert.same({}, refused, tostring(err))
    end
    H.run_until(map, function() return #delivered >= 6 end, 60,
                "Postfix to deliver by LMTP")
    table.sort(delivered)
    assert.same({"u1@example.net lmtp1", "u1@example.net lmtp2",
                 "u1@example.net lmtp3", "u2@example.net lmtp1",
                 "u2@example.net lmtp2", "u2@example.net lmtp3"}, delivered)
    -- The 550 for the middle recipient reached Postfix: it bounces to the
    -- sender (by LMTP to us too) naming that recipient only.
    H.run_until(map, function() return #bounces >= 1 end, 60,
                "Postfix's bounce")
    assert.matches("gone@example%.net", bounces[1])
    assert.matches("No such user", bounces[1])
    assert.is_nil(bounces[1]:find("u1@example.net>: ", 1, true))
  end)
end)

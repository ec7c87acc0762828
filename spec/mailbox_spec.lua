-- MaildirServer and MboxServer: 250 only once the message is on disk, 451
-- (and nothing partial left behind) on any failure; read back by Python's
-- mailbox module and, where it can be installed, by mutt.
local H = require "helper"
local R = require "replies"
local smtpd = H.smtpd

local function tmpdir()
  local d = H.capture("mktemp -d"):gsub("%s+$", "")
  return d
end

local function ls(dir)
  local out = {}
  local p = io.popen("ls -A " .. dir .. " 2>/dev/null")
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  return out
end

local function split(s)
  local out = {}
  for l in s:gmatch("([^\n]*)\n") do out[#out + 1] = l end
  return out
end

local function python(script)
  local py = H.python_with("mailbox")
  assert(py, "python3 is needed")
  local f = os.tmpname()
  local fh = io.open(f, "w")
  fh:write(script)
  fh:close()
  local out = H.capture(py .. " " .. f .. " 2>&1")
  os.remove(f)
  return out
end

local MSG = "EHLO client.example\r\nMAIL FROM:<alice@example.org>\r\n"
  .. "RCPT TO:<bob@example.net>\r\nRCPT TO:<bcc@example.net>\r\nDATA\r\n"
  .. "From: Alice <alice@example.org>\r\nTo: bob@example.net\r\n"
  .. "Subject: stored\r\n\r\nFrom the start\r\n>From quoted\r\n"
  .. "..dot\r\nend\r\n.\r\n"

local function send(map, host, port, extra)
  return H.converse(map, host, port, MSG .. (extra or "") .. "QUIT\r\n")
end

local function size(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local n = f:seek("end")
  f:close()
  return n
end

-- A tiny filesystem that fills up (root only: mount).
local function small_fs(kb)
  if not H.is_root() then return nil, "mounting a small tmpfs needs root" end
  local d = tmpdir()
  if not os.execute(("mount -t tmpfs -o size=%dk tmpfs %s 2>/dev/null")
                    :format(kb, d)) then
    return nil, "cannot mount a tmpfs here (a container without CAP_SYS_ADMIN?)"
  end
  return d
end

describe("MaildirServer", function()
  it("stores each message in new/, readable by Python's mailbox.Maildir, "
     .. "with Return-Path, Delivered-To and Received", function()
    local dir = tmpdir() .. "/deep/Maildir"
    local srv, map, host, port = H.server(smtpd.MaildirServer,
                                          {maildir = dir})
    finally(function() H.cleanup(map); os.execute("rm -rf " .. dir) end)
    local replies = send(map, host, port)
    assert.equal(R.ok, replies[#replies - 1])
    assert.same({}, ls(dir .. "/tmp"))
    assert.equal(1, #ls(dir .. "/new"))
    local name = ls(dir .. "/new")[1]
    assert.equal(srv.last_delivered, name)
    -- time.M<usec>P<pid>Q<n>.<host>,S=<size>
    assert.matches("^%d+%.M%d+P%d+Q%d+%.[^/:]+,S=(%d+)$", name)
    assert.equal(size(dir .. "/new/" .. name),
                 tonumber(name:match(",S=(%d+)$")))
    local out = python(([[
import mailbox
box = mailbox.Maildir(%q, create=False)
msgs = list(box)
print(len(msgs))
m = msgs[0]
print(m['Subject'])
print(m['Return-Path'])
print(m.get_all('Delivered-To'))
print(' '.join(m['Received'].split()))
print(repr(m.get_payload()))
]]):format(dir))
    local lines = split(out)
    assert.equal("1", lines[1], out)
    assert.equal("stored", lines[2])
    assert.equal("<alice@example.org>", lines[3])
    assert.equal("['bob@example.net', 'bcc@example.net']", lines[4])
    assert.matches("^from client%.example %(%[127%.0%.0%.1%]%) by [^ ]+ "
                   .. "%(lua%-smtpd%) with ESMTP; %a%a%a, %d%d %a%a%a "
                   .. "%d%d%d%d %d%d:%d%d:%d%d [+-]%d%d%d%d$", lines[5])
    assert.equal("'From the start\\n>From quoted\\n.dot\\nend\\n'", lines[6])
  end)

  it("keeps 20 messages sent at once apart, each under its own name",
     function()
    local dir = tmpdir()
    local srv, map, host, port = H.server(smtpd.MaildirServer,
                                          {maildir = dir})
    finally(function() H.cleanup(map); os.execute("rm -rf " .. dir) end)
    local clients = {}
    for i = 1, 20 do
      local c = H.connect(map, host, port)
      c:send(("HELO c%d\r\nMAIL FROM:<s%d@x>\r\nRCPT TO:<r@y>\r\nDATA\r\n"
              .. "Subject: n%d\r\n\r\nbody %d\r\n.\r\nQUIT\r\n")
             :format(i, i, i, i))
      clients[i] = c
    end
    for _, c in ipairs(clients) do
      local replies = c:lines(7, 10)
      assert.equal(R.ok, replies[6])
      c:close()
    end
    assert.equal(20, #ls(dir .. "/new"))
    assert.equal(20, srv.delivered)
    local out = python(([[
import mailbox
print(sorted(int(m['Subject'][1:]) for m in mailbox.Maildir(%q, create=False)) == list(range(1, 21)))
]]):format(dir))
    assert.equal("True\n", out)
  end)

  for _, step in ipairs({"open", "write", "fsync", "rename", "dirsync"}) do
    it("answers 451 and leaves nothing in new/ or tmp/ when " .. step
       .. " fails; the next message is stored", function()
      if not H.testing() then return end
      local dir = tmpdir()
      local srv, map, host, port = H.server(smtpd.MaildirServer,
                                            {maildir = dir})
      finally(function() H.cleanup(map); os.execute("rm -rf " .. dir) end)
      local logged = {}
      function srv:log(level, fmt, ...)
        logged[#logged + 1] = level .. " " .. fmt:format(...)
      end
      srv._deliver_test = {fail_at = step}
      local replies = send(map, host, port)
      assert.equal(R.local_error, replies[#replies - 1])
      assert.same({}, ls(dir .. "/new"))
      assert.same({}, ls(dir .. "/tmp"))
      assert.matches("^error MaildirServer: cannot .*Input/output error; "
                     .. "answering 451$", logged[#logged])
      srv._deliver_test = nil
      replies = send(map, host, port)
      assert.equal(R.ok, replies[#replies - 1])
      assert.equal(1, #ls(dir .. "/new"))
    end)
  end

  it("answers 451 when new/ is not a directory (a real rename failure)",
     function()
    local dir = tmpdir()
    local srv, map, host, port = H.server(smtpd.MaildirServer,
                                          {maildir = dir})
    finally(function() H.cleanup(map); os.execute("rm -rf " .. dir) end)
    function srv:log() end
    os.execute("rmdir " .. dir .. "/new && touch " .. dir .. "/new")
    local replies = send(map, host, port)
    assert.equal(R.local_error, replies[#replies - 1])
    assert.same({}, ls(dir .. "/tmp"))
  end)

  it("answers 451 when the disk is full, leaving no partial file",
     function()
    local fs, why = small_fs(64)
    if not fs then return H.skip(why) end
    local srv, map, host, port = H.server(smtpd.MaildirServer,
                                          {maildir = fs .. "/box"})
    finally(function()
      H.cleanup(map)
      os.execute("umount " .. fs .. " && rmdir " .. fs)
    end)
    local logged = {}
    function srv:log(level, fmt, ...)
      logged[#logged + 1] = fmt:format(...)
    end
    local big = ("x"):rep(76) .. "\r\n"
    local replies = H.converse(map, host, port, "HELO a\r\nMAIL FROM:<a@x>"
      .. "\r\nRCPT TO:<b@y>\r\nDATA\r\n" .. big:rep(2000) .. ".\r\nQUIT\r\n")
    assert.equal(R.local_error, replies[#replies - 1])
    assert.matches("No space left on device", logged[#logged])
    assert.same({}, ls(fs .. "/box/new"))
    assert.same({}, ls(fs .. "/box/tmp"))
    replies = send(map, host, port)
    assert.equal(R.ok, replies[#replies - 1])
  end)

  it("serves other sessions while a message is being synced", function()

    if not H.testing() then return end
    local dir = tmpdir()
    local srv, map, host, port = H.server(smtpd.MaildirServer,
                                          {maildir = dir})
    finally(function() H.cleanup(map); os.execute("rm -rf " .. dir) end)
    srv._deliver_test = {delay_ms = 1500}
    local slow = H.connect(map, host, port)
    slow:send("HELO a\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nx\r\n"
              .. ".\r\n")
    H.run_until(map, function() return #ls(dir .. "/tmp") == 1 end, 5,
                "the write to start")
    -- The slow message sits in tmp/ (written, not yet synced) ...
    local other = H.connect(map, host, port)
    other:send("HELO b\r\nNOOP\r\nNOOP\r\nQUIT\r\n")
    local r = other:lines(5, 5)
    assert.equal(R.bye, r[5])
    -- ... and its client has had no answer to the data yet.
    assert.equal(R.data, slow:lines(5, 5)[5])
    slow:pump()
    assert.equal("", slow.buf)
    assert.same({}, ls(dir .. "/new"))
    assert.equal(R.ok, slow:lines(1, 10)[1])
    assert.equal(1, #ls(dir .. "/new"))
    slow:close()
    other:close()
  end)

  it("refuses a bad maildir at start, clearly", function()
    local f = os.tmpname()
    finally(function() os.remove(f) end)
    local ok, err = pcall(smtpd.MaildirServer, "127.0.0.1:0", nil,
                          {maildir = f, map = H.map()})
    assert.is_false(ok)
    assert.matches("maildir: " .. f .. " is not a directory", err, 1, true)
    ok, err = pcall(smtpd.MaildirServer, "127.0.0.1:0", nil, {})
    assert.is_false(ok)
    assert.matches("MaildirServer needs opts.maildir", err, 1, true)
  end)
end)

describe("MboxServer", function()
  it("appends mboxrd entries that Python's mailbox.mbox reads back",
     function()
    local dir = tmpdir()
    local path = dir .. "/box.mbox"
    local srv, map, host, port = H.server(smtpd.MboxServer, {mbox = path})
    finally(function() H.cleanup(map); os.execute("rm -rf " .. dir) end)
    send(map, host, port)
    local replies = H.converse(map, host, port, "HELO x\r\nMAIL FROM:<>\r\n"
      .. "RCPT TO:<b@y>\r\nDATA\r\nSubject: bounce\r\n\r\nno newline at "
      .. "the end\r\n.\r\nQUIT\r\n")
    assert.equal(R.ok, replies[5])
    local text = H.readfile(path)
    assert.matches("^From alice@example%.org %a%a%a %a%a%a [ %d]%d "
                   .. "%d%d:%d%d:%d%d %d%d%d%d\nReturn%-Path: "
                   .. "<alice@example%.org>\n", text)
    assert.matches("\n\n>From the start\n>>From quoted\n%.dot\nend\n\n"
                   .. "From MAILER%-DAEMON ", text)
    assert.matches("no newline at the end\n\n$", text)
    assert.is_nil(io.open(path .. ".lock"))
    local out = python(([[
import mailbox
msgs = list(mailbox.mbox(%q))
print(len(msgs))
print(msgs[0].get_from().split()[0], msgs[1].get_from().split()[0])
print(msgs[0]['Subject'], msgs[1]['Subject'])
print(msgs[0].get_all('Delivered-To'), msgs[1]['Return-Path'])
print(repr(msgs[0].get_payload()))
]]):format(path))
    local lines = split(out)
    assert.equal("2", lines[1], out)
    assert.equal("alice@example.org MAILER-DAEMON", lines[2])
    assert.equal("stored bounce", lines[3])
    assert.equal("['bob@example.net', 'bcc@example.net'] <>", lines[4])
    -- Python's mbox keeps the quoting it reads (as mboxo readers do).
    assert.equal("'>From the start\\n>>From quoted\\n.dot\\nend\\n'",
                 lines[5])
  end)

  it("quotes every >*From line once more (mboxrd), and only those",
     function()
    local q = require("smtpd.mailbox").mboxrd_quote
    assert.equal(">From a\n>>From b\n>>>From c\nFromage\n From x\n",
                 q("From a\n>From b\n>>From c\nFromage\n From x\n"))
  end)

  it("waits for a dot-lock another program holds, then gives up with 451 "
     .. "and the mbox untouched", function()
    local dir = tmpdir()
    local path = dir .. "/box.mbox"
    local srv, map, host, port = H.server(smtpd.MboxServer,
                                          {mbox = path, lock_timeout = 0.4})
    finally(function() H.cleanup(map); os.execute("rm -rf " .. dir) end)
    local logged = {}
    function srv:log(level, fmt, ...) logged[#logged + 1] = fmt:format(...) end
    send(map, host, port)
    local before = size(path)
    io.open(path .. ".lock", "w"):close()
    local replies = send(map, host, port)
    assert.equal(R.local_error, replies[#replies - 1])
    assert.matches("timed out waiting for the lock " .. path .. ".lock",
                   logged[#logged], 1, true)
    assert.equal(before, size(path))
    -- The other program is done: its lock goes, ours works again.
    os.remove(path .. ".lock")
    replies = send(map, host, port)
    assert.equal(R.ok, replies[#replies - 1])
    assert.is_true(size(path) > before)
  end)

  -- Where the dot-lock cannot be had (a directory we may not write, as
  -- /var/mail is to a server that is not root), only the file lock was
  -- left, and fcntl's is per process: two deliveries of ours ran at once,
  -- and one's failed append was cut back over the other's message.
  it("delivers to one mbox one message at a time within the process",
     function()
    if not H.testing() then return end
    local dir = tmpdir()
    local path = dir .. "/box.mbox"
    local Box = smtpd.MboxServer:extend()
    function Box:_store(spec)
      spec.no_dotlock = true
      if spec.data:find("From fail@x", 1, true) then
        spec.fail_at, spec.delay_ms = "fsync", 400
      end
      return Box.super._store(self, spec)
    end
    local srv, map, host, port = H.server(Box, {mbox = path})
    H.defer(function() os.execute("rm -rf " .. dir) end)
    function srv:log() end
    local first = H.connect(map, host, port)
    local second = H.connect(map, host, port)
    first:lines(1)
    second:lines(1)
    first:send("HELO a\r\nMAIL FROM:<fail@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n"
               .. "Subject: one\r\n\r\nfirst\r\n.\r\n")
    first:lines(4)
    second:send("HELO a\r\nMAIL FROM:<ok@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n"
                .. "Subject: two\r\n\r\nsecond\r\n.\r\n")
    second:lines(4)
    assert.same({R.local_error}, first:lines(1, 5))
    assert.same({R.ok}, second:lines(1, 5))
    first:close()
    second:close()
    local text = H.readfile(path)
    assert.is_nil(text:find("first", 1, true))
    local _, n = text:gsub("\nsecond\n", "")
    assert.equal(1, n)
    assert.matches("^From ok@x ", text)
  end)

  -- Waiting for a lock used to sleep on libuv's thread pool: four
  -- waiters took its four threads, and every other delivery (and the
  -- relays' name lookups) waited for them.
  it("waits for locks from the loop, never on the thread pool", function()
    local dir = tmpdir()
    local Box = smtpd.MboxServer:extend()
    function Box:mailbox_for(mailfrom)
      return dir .. "/" .. mailfrom:match("^[^@]+") .. ".mbox"
    end
    local srv, map, host, port = H.server(Box, {mbox = dir .. "/x.mbox",
                                                lock_timeout = 3})
    H.defer(function() os.execute("rm -rf " .. dir) end)
    function srv:log() end
    local mdir = dir .. "/maildir"
    local md, _, mhost, mport = H.server(smtpd.MaildirServer,
                                         {maildir = mdir, map = map})
    function md:log() end
    local waiting = {}
    for i = 1, 6 do
      io.open(dir .. "/u" .. i .. ".mbox.lock", "w"):close()
      local c = H.connect(map, host, port)
      c:lines(1)
      c:send("HELO a\r\nMAIL FROM:<u" .. i .. "@x>\r\nRCPT TO:<b@y>\r\n"
             .. "DATA\r\nlocked out\r\n.\r\n")
      c:lines(4)
      waiting[i] = c
    end
    local t0 = H.now()
    local m = H.connect(map, mhost, mport)
    m:lines(1)
    m:send("HELO a\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nhi\r\n"
           .. ".\r\n")
    assert.same({R.helo, R.ok, R.ok, R.data, R.ok}, m:lines(5, 10))
    -- The Maildir's message is stored while every mbox still waits.
    for _, c in ipairs(waiting) do
      c:pump()
      assert.equal("", c.buf)
    end
    assert.is_true(H.now() - t0 < 3)
    for _, c in ipairs(waiting) do
      assert.same({R.local_error}, c:lines(1, 10))
      c:close()
    end
    m:close()
  end)

  it("waits for an fcntl lock another process holds (as mutt takes it)",
     function()
    local dir = tmpdir()
    local path = dir .. "/box.mbox"
    local srv, map, host, port = H.server(smtpd.MboxServer, {mbox = path})
    finally(function() H.cleanup(map); os.execute("rm -rf " .. dir) end)
    local py = assert(H.python_with("fcntl"))
    local script = os.tmpname()
    local fh = io.open(script, "w")
    fh:write(([[
import fcntl, time, sys
f = open(%q, 'a')
fcntl.lockf(f, fcntl.LOCK_EX)
print('locked', flush=True)
time.sleep(1.0)
print('releasing', flush=True)
f.close()
]]):format(path))
    fh:close()
    local pid, out = H.spawn(py .. " " .. script)
    finally(function() H.kill(pid); os.remove(script); os.remove(out) end)
    H.run_until(map, function()
      return (H.readfile(out) or ""):find("locked", 1, true) ~= nil
    end, 10, "python to take the lock")
    local c = H.connect(map, host, port)
    c:send(MSG .. "QUIT\r\n")
    -- The answer to the data comes only once the lock was let go.
    local r = c:lines(6 + #R.ehlo, 10)   -- 220, EHLO, MAIL, 2 RCPT, 354, 250
    assert.equal(R.ok, r[6 + #R.ehlo])
    assert.matches("releasing", H.readfile(out), 1, true)
    c:close()
    assert.matches("Subject: stored", H.readfile(path))
  end)

  for _, step in ipairs({"write", "fsync", "lock"}) do
    it("truncates a failed append back (" .. step .. " fails): the mbox is "
       .. "byte for byte what it was", function()
      if not H.testing() then return end
      local dir = tmpdir()
      local path = dir .. "/box.mbox"
      local srv, map, host, port = H.server(smtpd.MboxServer, {mbox = path})
      finally(function() H.cleanup(map); os.execute("rm -rf " .. dir) end)
      function srv:log() end
      send(map, host, port)
      local before = H.readfile(path)
      srv._deliver_test = {fail_at = step}
      local replies = send(map, host, port)
      assert.equal(R.local_error, replies[#replies - 1])
      assert.equal(before, H.readfile(path))
      assert.is_nil(io.open(path .. ".lock"))
    end)
  end

  it("truncates back when the disk fills mid-append", function()
    local fs, why = small_fs(64)
    if not fs then return H.skip(why) end
    local path = fs .. "/box.mbox"
    local srv, map, host, port = H.server(smtpd.MboxServer, {mbox = path})
    finally(function()
      H.cleanup(map)
      os.execute("umount " .. fs .. " && rmdir " .. fs)
    end)
    function srv:log() end
    send(map, host, port)
    local before = H.readfile(path)
    local big = ("y"):rep(76) .. "\r\n"
    local replies = H.converse(map, host, port, "HELO a\r\nMAIL FROM:<a@x>"
      .. "\r\nRCPT TO:<b@y>\r\nDATA\r\n" .. big:rep(2000) .. ".\r\nQUIT\r\n")
    assert.equal(R.local_error, replies[#replies - 1])
    assert.equal(before, H.readfile(path))
  end)
end)

describe("mutt", function()
  -- mutt in a pseudo-terminal (script(1)), reading the mailbox read-only
  -- and piping every message, one by one, into a file.
  local function mutt_dump(box, kind)
    local dir = tmpdir()
    local rc, out = dir .. "/muttrc", dir .. "/out"
    -- Without ~/Mail, mutt asks whether to create it, eating the keys.
    os.execute("mkdir " .. dir .. "/Mail")
    local f = io.open(rc, "w")
    f:write("set mbox_type=", kind, "\nset pipe_split=yes\n",
            "set pipe_decode=no\nset wait_key=no\nset quit=yes\n",
            "set auto_tag=yes\n",
            "set pipe_sep=\"=====\\n\"\n")
    f:close()
    local cmd = ("cd %s && HOME=%s TERM=xterm timeout 20 script -qec "
      .. "\"mutt -n -F %s -R -f %s -e 'push \\\"<tag-pattern>~A<enter>"
      .. "<pipe-message>cat >> %s<enter><quit>\\\"'\" "
      .. "/dev/null >/dev/null 2>&1"):format(dir, dir, rc, box, out)
    os.execute(cmd)
    local text = H.readfile(out) or ""
    os.execute("rm -rf " .. dir)
    return text
  end

  it("reads back what MaildirServer and MboxServer stored", function()
    if not H.ensure("mutt", "mutt") then
      return H.skip("mutt is not installed and cannot be (not root)")
    end
    if not H.have("script") then return H.skip("no script(1) here") end
    local dir = tmpdir()
    finally(function() os.execute("rm -rf " .. dir) end)
    local md, map, host, port = H.server(smtpd.MaildirServer,
                                         {maildir = dir .. "/md"})
    local mb, _, host2, port2 = H.server(smtpd.MboxServer,
                                         {mbox = dir .. "/mb"}, map)
    finally(function() H.cleanup(map) end)
    for _ = 1, 2 do
      send(map, host, port)
      send(map, host2, port2)
    end
    for _, case in ipairs({{dir .. "/md", "Maildir"}, {dir .. "/mb", "mbox"}}) do
      local text = mutt_dump(case[1], case[2])
      local _, n = text:gsub("Subject: stored\n", "")
      assert.equal(2, n, case[2] .. ": " .. text)
      assert.matches("Return%-Path: <alice@example%.org>\n", text)
      assert.matches("\n\n>*From the start\n", text)
    end
  end)
end)

describe("lua-smtpd --maildir / --mbox", function()
  it("delivers with -c MaildirServer --maildir and -c MboxServer --mbox; "
     .. "refuses them for other classes", function()
    local dir = tmpdir()
    finally(function() os.execute("rm -rf " .. dir) end)
    for _, case in ipairs({{"MaildirServer", "--maildir " .. dir .. "/md"},
                           {"MboxServer", "--mbox " .. dir .. "/mb"}}) do
      local port = H.free_port()
      local pid = H.spawn(("exec lua5.4 bin/lua-smtpd -n -c %s %s "
                           .. "127.0.0.1:%d"):format(case[1], case[2], port))
      finally(function() H.kill(pid) end)
      assert.is_true(H.wait_listening(port, 10))
      local map = H.map()
      local replies = send(map, "127.0.0.1", port)
      H.cleanup(map)
      assert.equal(R.ok, replies[#replies - 1])
      H.kill(pid)
    end
    assert.equal(1, #ls(dir .. "/md/new"))
    assert.matches("^From alice@example%.org ", H.readfile(dir .. "/mb"))
    local code, text = H.run_cli("-n -c DebuggingServer --maildir " .. dir
                                 .. " 127.0.0.1:0")
    assert.equal(1, code)
    assert.matches("--maildir is for -c MaildirServer", text, 1, true)
    code, text = H.run_cli("-n -c MaildirServer 127.0.0.1:0")
    assert.equal(1, code)
    assert.matches("MaildirServer needs opts.maildir", text, 1, true)
  end)
end)

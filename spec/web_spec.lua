-- The catcher's web server and API (csrc/web, lua/smtpd/web.lua), driven
-- by real clients: curl for HTTP, Python's smtplib for the mail, and raw
-- TCP for what no well-behaved client sends.
local H = require "helper"
local smtpd = require "smtpd"
local json = require "smtpd.json"
local web = require "smtpd.web"
local core = smtpd.core

local function curl(map, args, timeout)
  return H.run_client(map, "curl -s --max-time 15 " .. args, timeout or 20)
end

local function get_json(map, url)
  local out = curl(map, "'" .. url .. "'")
  local v, why = json.decode(out)
  assert(v, tostring(why) .. ": " .. out)
  return v
end

-- status code and body of a request (curl -w)
local function status(map, args)
  local out = curl(map, "-o /dev/null -w '%{http_code}' " .. args)
  return tonumber(out)
end

local PY = H.python_with("smtplib") or "python3"

-- Sends mail with Python's smtplib: the message built by the email
-- package from t (from, to, subject, text, html, attach, envelope_to).
local function send(map, port, t)
  local script = ([==[
import smtplib, sys, json
from email.message import EmailMessage
t = json.loads(sys.argv[1])
m = EmailMessage()
m["From"] = t["from"]; m["To"] = t["to"]; m["Subject"] = t["subject"]
if t.get("cc"): m["Cc"] = t["cc"]
if t.get("date"): m["Date"] = t["date"]
m.set_content(t.get("text", "hello"))
if t.get("html"): m.add_alternative(t["html"], subtype="html")
if t.get("attach"): m.add_attachment(t["attach"].encode(), maintype="application",
                                     subtype="octet-stream", filename="report.bin")
s = smtplib.SMTP("127.0.0.1", %d, local_hostname="client.example")
s.send_message(m, to_addrs=t.get("envelope_to") or [t["to"]])
s.quit()
print("sent")
]==]):format(port)
  local f = os.tmpname()
  local h = assert(io.open(f, "w"))
  h:write(script)
  h:close()
  local arg = json.encode(t):gsub("'", "'\\''")
  local out = H.run_client(map, ("%s %s '%s'"):format(PY, f, arg))
  os.remove(f)
  assert(out:find("sent"), out)
end

local function catcher(opts)
  opts = opts or {}
  opts.web = opts.web or "127.0.0.1:0"
  local srv, map, _, port = H.server(smtpd.CatchingServer, opts)
  return srv, map, port, srv.web:url()
end

-- A raw HTTP exchange: what the server sent back before it closed (or
-- within the time given).
local function raw(map, port, bytes, wait_close, timeout)
  local c = H.connect(map, "127.0.0.1", port)
  c:send(bytes)
  local out
  if wait_close ~= false then
    out = c:wait_closed(timeout or 5)
  else
    H.run_until(map, function() c:pump(); return c.buf:find("\r\n\r\n", 1, true) end, timeout or 5)
    out = c.buf
  end
  c:close()
  return out
end

describe("the web server", function()
  local function plain(map, opts)
    local seen = {}
    local srv = assert(core.web_listen(map, "127.0.0.1", 0, opts or {}, function(req, x)
      seen[#seen + 1] = req
      if req.path == "/boom" then error("boom") end
      x:respond(200, {["Content-Type"] = "text/plain"}, req.method .. " " .. req.target .. " " .. req.body)
    end))
    local _, port = srv:address()
    return srv, port, seen
  end

  it("answers pipelined requests in order on one connection, and HEAD without a body", function()
    local map = H.map()
    local srv, port, seen = plain(map)
    local out = raw(map, port, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b?q=1 HTTP/1.1\r\nHost: x\r\n"
                    .. "Content-Length: 5\r\n\r\nhelloHEAD /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    local bodies = {}
    for b in out:gmatch("\r\n\r\n([^H]*)") do bodies[#bodies + 1] = b end
    assert.same({"GET /a ", "POST /b?q=1 hello", ""}, bodies)
    assert.equal(3, #seen)
    assert.equal("q=1", seen[2].query)
    assert.equal("x", seen[1].headers.host)
    assert.matches("Connection: close", out, 1, true)
    srv:close()
  end)

  it("refuses what smuggling and sloppy clients send, then closes", function()
    local map = H.map()
    local srv, port, seen = plain(map, {max_body = 100})
    local cases = {
      {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501},
      {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nab", 400},
      {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\na", 400},
      {"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n", 400},
      {"GET / HTTP/1.1\nHost: x\n\n", 400},
      {"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", 400},                    -- no Host
      {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
      {"GET http://evil/ HTTP/1.1\r\nHost: x\r\n\r\n", 400},         -- absolute-form
      {"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
      {"GET / HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n", 413},
      {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413},
      {"GET /" .. ("a"):rep(9000) .. " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
      {"GET / HTTP/1.1\r\nHost: x\r\n" .. ("X-F: " .. ("b"):rep(100) .. "\r\n"):rep(200) .. "\r\n", 431},
    }
    for _, case in ipairs(cases) do
      local out = raw(map, port, case[1])
      assert.matches("^HTTP/1.1 " .. case[2] .. " ", out)
      assert.matches("Connection: close", out, 1, true)
    end
    assert.equal(0, #seen)
    srv:close()
  end)

  it("answers 500 for a handler's error, 408 to a slow request, and bounds connections", function()
    local map = H.map()
    local srv, port = plain(map, {timeout = 0.3, max_connections = 3})
    assert.matches("^HTTP/1.1 500 ", raw(map, port, "GET /boom HTTP/1.1\r\nHost: x\r\n\r\n"))
    -- a head that never ends
    local c = H.connect(map, "127.0.0.1", port)
    c:send("GET / HTTP/1.1\r\nHost: x\r\n")
    assert.matches("^HTTP/1.1 408 ", c:wait_closed(3))
    c:close()
    -- three held open, the fourth refused at once
    local held = {}
    for i = 1, 3 do
      held[i] = H.connect(map, "127.0.0.1", port)
      held[i]:send("G")
    end
    H.run_until(map, function() return srv:stats().connections == 3 end, 3, "three connections")
    local out = raw(map, port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.matches("^HTTP/1.1 503 ", out)
    for _, h in ipairs(held) do h:close() end
    srv:close()
  end)

  it("leaves no handle behind", function()
    local before = core.stats().handles
    local map = H.map()
    local srv, port = plain(map)
    raw(map, port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", false)
    srv:close()
    map:loop(0.05, 5)
    assert.equal(before, core.stats().handles)
  end)

  it("checks its arguments before it allocates", function()
    local map = H.map()
    local before = core.stats().handles
    local bad = {
      function() core.web_listen(map, "127.0.0.1", 70000, {}, print) end,
      function() core.web_listen(map, "127.0.0.1", 0, {max_body = -1}, print) end,
      function() core.web_listen(map, "127.0.0.1", 0, {timeout = 0}, print) end,
      function() core.web_listen(map, "127.0.0.1", 0, {}, "not a function") end,
    }
    for _, fn in ipairs(bad) do assert.has_error(fn) end
    assert.is_nil((core.web_listen(map, "not an address", 0, {}, print)))
    assert.equal(before, core.stats().handles)
  end)
end)

describe("the catcher's API", function()
  it("reads RFC 5322 dates, old forms included, and nothing else", function()
    local web = require("smtpd.web")
    assert.equal(1796374800, web.parse_date("Fri, 04 Dec 2026 10:00:00 +0100"))
    assert.equal(1796374800, web.parse_date("4 Dec 2026 09:00 GMT"))
    assert.equal(1796374800, web.parse_date("Fri, 4 Dec 2026 04:00:00 EST"))
    assert.equal(0, web.parse_date("Thu, 1 Jan 70 00:00:00 +0000"))      -- two-digit year
    assert.equal(951782400, web.parse_date("Tue, 29 Feb 2000 00:00:00 -0000"))
    assert.is_nil(web.parse_date("yesterday"))
    assert.is_nil(web.parse_date("Fri, 04 Foo 2026 10:00:00 +0100"))
    assert.is_nil(web.parse_date(nil))
  end)

  it("lists, searches, reads and deletes what smtplib sent, as Mailpit's clients expect", function()
    local srv, map, port, url = catcher()
    send(map, port, {from = "Alice <alice@example.com>", to = "bob@example.net",
                     subject = "Reset your password", date = "Fri, 04 Dec 2026 10:00:00 +0100",
                     text = "Your code is 482913.\nGo to https://app.test/reset?t=1 now.",
                     html = "<p>Code <b>482913</b> <a href='https://app.test/reset?t=1'>reset</a></p>",
                     envelope_to = {"bob@example.net", "hidden@example.org"}})
    send(map, port, {from = "carol@example.com", to = "dave@example.net", subject = "Report",
                     text = "see attached", attach = "0123456789"})
    local list = get_json(map, url .. "api/v1/messages")
    assert.equal(2, list.total)
    assert.equal(2, list.unread)
    assert.equal(2, list.count)
    assert.equal("Report", list.messages[1].Subject)              -- newest first
    local first = list.messages[2]
    assert.same({Name = "Alice", Address = "alice@example.com"}, first.From)
    assert.same({{Name = "", Address = "bob@example.net"}}, first.To)
    -- the envelope recipient no header named is its Bcc
    assert.same({{Name = "", Address = "hidden@example.org"}}, first.Bcc)
    assert.equal(1, list.messages[1].Attachments)
    assert.matches("^Your code is 482913", first.Snippet)
    -- paging
    local page = get_json(map, url .. "api/v1/messages?start=1&limit=1")
    assert.equal(1, page.count)
    assert.equal(first.ID, page.messages[1].ID)
    -- search
    local function ids(q)
      local r = get_json(map, url .. "api/v1/search?query=" .. q)
      local out = {}
      for _, m in ipairs(r.messages) do out[#out + 1] = m.Subject end
      return out
    end
    assert.same({"Reset your password"}, ids("to:hidden@example.org"))
    assert.same({"Reset your password"}, ids("from:alice"))
    assert.same({"Report"}, ids("has:attachment"))
    assert.same({"Reset your password"}, ids("subject:%22reset+your%22"))
    assert.same({"Report"}, ids("-subject:reset"))
    assert.same({"Reset your password"}, ids("482913"))
    assert.same({"Report", "Reset your password"}, ids("is:unread"))
    -- one message: its parts, its envelope; reading it marks it read
    local m = get_json(map, url .. "api/v1/message/" .. first.ID)
    assert.matches("Your code is 482913", m.Text, 1, true)
    assert.matches("<b>482913</b>", m.HTML, 1, true)
    assert.same({"bob@example.net", "hidden@example.org"}, m.Envelope.RcptTo)
    assert.equal("alice@example.com", m.Envelope.MailFrom)
    assert.equal("127.0.0.1", m.Envelope.Peer)
    assert.equal("client.example", m.Envelope.Helo)
    -- Date is the message's own (in UTC), Created when it came
    assert.equal("2026-12-04T09:00:00.000Z", m.Date)
    assert.equal("Fri, 04 Dec 2026 10:00:00 +0100", m.DateHeader)
    assert.not_equal(m.Date, m.Created)
    assert.equal(1, get_json(map, url .. "api/v1/messages").unread)
    assert.same({"Report"}, ids("is:unread"))
    -- latest, and latest of a search
    assert.equal("Report", get_json(map, url .. "api/v1/message/latest").Subject)
    assert.equal("Reset your password",
                 get_json(map, url .. "api/v1/message/latest?query=from:alice").Subject)
    -- headers, raw (the bytes as received), a part
    local h = get_json(map, url .. "api/v1/message/" .. first.ID .. "/headers")
    assert.same({"Reset your password"}, h.Subject)
    local stored = srv:get_message(first.ID).data
    local rawfile = os.tmpname()
    curl(map, ("-o %s '%sapi/v1/message/%s/raw'"):format(rawfile, url, first.ID))
    assert.equal(stored, H.readfile(rawfile))
    os.remove(rawfile)
    local report = get_json(map, url .. "api/v1/message/latest")
    local part = report.Attachments[1]
    assert.equal("report.bin", part.FileName)
    assert.equal(10, part.Size)
    local head = curl(map, ("-i '%sapi/v1/message/%s/part/%s'"):format(url, report.ID, part.PartID))
    assert.matches('Content-Disposition: attachment; filename="report.bin"', head, 1, true)
    assert.matches("Content-Type: application/octet-stream", head, 1, true)
    assert.matches("\r\n\r\n0123456789$", head)
    -- links and one-time codes, for tests
    assert.same({"https://app.test/reset?t=1"}, get_json(map, url .. "api/v1/message/" .. first.ID .. "/links"))
    assert.same({"482913"}, get_json(map, url .. "api/v1/message/" .. first.ID .. "/codes"))
    -- mark unread again, then delete one, then all (no body: Mailpit's clients send none)
    assert.equal(0, get_json(map, url .. "api/v1/messages").unread)   -- both read now
    assert.equal("ok", curl(map, ("-X PUT -d '{\"IDs\":[\"%s\"],\"Read\":false}' '%sapi/v1/messages'")
                              :format(first.ID, url)))
    assert.equal(1, get_json(map, url .. "api/v1/messages").unread)
    assert.equal("ok", curl(map, ("-X DELETE -d '{\"IDs\":[\"%s\"]}' '%sapi/v1/messages'"):format(first.ID, url)))
    assert.equal(1, get_json(map, url .. "api/v1/messages").total)
    assert.equal(404, status(map, "'" .. url .. "api/v1/message/" .. first.ID .. "'"))
    assert.equal(200, status(map, "-X DELETE '" .. url .. "api/v1/messages'"))
    assert.equal(0, get_json(map, url .. "api/v1/messages").total)
    assert.equal(0, #srv.messages)
  end)

  it("waits on the server side until a matching message arrives", function()
    local srv, map, port, url = catcher()
    local out = os.tmpname()
    local pid = H.spawn(("curl -s --max-time 15 -o %s -w '%%{http_code}' '%sapi/v1/wait?query=subject:invoice&timeout=10'")
                        :format(out, url))
    H.run_until(map, function() return next(srv.web.waiters) ~= nil end, 5, "the wait to start")
    send(map, port, {from = "a@example.com", to = "b@example.net", subject = "Hello"})
    assert.is_not_nil(next(srv.web.waiters))                  -- not this one
    send(map, port, {from = "a@example.com", to = "b@example.net", subject = "Your invoice"})
    H.run_until(map, function() return not H.alive(pid) end, 5, "the wait to answer")
    local m = json.decode(H.readfile(out))
    os.remove(out)
    assert.equal("Your invoice", m.Subject)
    assert.is_nil(next(srv.web.waiters))
    -- nothing comes: 408
    assert.equal(408, status(map, "'" .. url .. "api/v1/wait?query=subject:never&timeout=0.3'"))
    -- since: only what came after a sequence number
    assert.equal(200, status(map, "'" .. url .. "api/v1/wait?query=subject:invoice&since=0'"))
    assert.equal(408, status(map, "'" .. url .. "api/v1/wait?query=subject:invoice&since=2&timeout=0.3'"))
    assert.equal(400, status(map, "'" .. url .. "api/v1/wait?timeout=999999'"))
  end)

  it("files messages into mailboxes by Lua predicate, and bounds what it keeps", function()
    local srv, map, port, url = catcher({max_messages = 3, mailboxes = {
      billing = function(m) return m.rcpttos[1]:find("@billing%.") ~= nil end,
      all = function() return true end,
      broken = function() error("a predicate that fails") end}})
    send(map, port, {from = "a@example.com", to = "x@billing.test", subject = "one"})
    send(map, port, {from = "a@example.com", to = "x@other.test", subject = "two"})
    local b = get_json(map, url .. "api/v1/messages?mailbox=billing")
    assert.equal(1, b.messages_count)
    assert.equal("one", b.messages[1].Subject)
    assert.same({"all", "billing"}, b.messages[1].Mailboxes)
    assert.equal(1, get_json(map, url .. "api/v1/search?query=mailbox:billing").count)
    local boxes = get_json(map, url .. "api/v1/mailboxes")
    assert.same({Name = "billing", Total = 1, Unread = 1}, boxes[2])
    for i = 3, 5 do send(map, port, {from = "a@example.com", to = "x@o.test", subject = "m" .. i}) end
    local list = get_json(map, url .. "api/v1/messages")
    assert.equal(3, list.total)
    assert.equal("m5", list.messages[1].Subject)
    assert.is_nil(srv:get_message("1"))
  end)

  it("relays a message on release, byte for byte", function()
    local up, map, up_port = catcher()
    local srv, _, port, url = catcher({map = map, web_release = "127.0.0.1:" .. up_port})
    send(map, port, {from = "a@example.com", to = "b@example.net", subject = "release me"})
    local id = srv.messages[1].id
    assert.equal("ok", curl(map, ("-X POST -d '{\"To\":[\"qa@example.org\"]}' '%sapi/v1/message/%s/release'")
                              :format(url, id)))
    assert.equal(1, #up.messages)
    assert.same({"qa@example.org"}, up.messages[1].rcpttos)
    assert.equal(srv.messages[1].data, up.messages[1].data)
    assert.equal(400, status(map, ("-X POST -d '{\"To\":[\"not an address\"]}' '%sapi/v1/message/%s/release'")
                                 :format(url, id)))
    local _, _, port2, url2 = catcher({map = map})
    send(map, port2, {from = "a@example.com", to = "b@example.net", subject = "no relay here"})
    assert.equal(400, status(map, ("-X POST -d '{\"To\":[\"a@b.c\"]}' '%sapi/v1/message/latest/release'")
                                 :format(url2)))
  end)
end)

describe("the catcher's live updates", function()
  local function events(text)
    local out = {}
    for id, kind, data in text:gmatch("id: (%d+)\nevent: (%S+)\ndata: ([^\n]*)\n\n") do
      out[#out + 1] = {id = tonumber(id), kind = kind, data = data}
    end
    return out
  end

  it("streams Server-Sent Events with ids, replays what a reconnecting page missed, "
     .. "and says resync when it cannot", function()
    local srv, map, port, url = catcher()
    local wport = srv.web.port
    local c = H.connect(map, "127.0.0.1", wport)
    c:send("GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
    H.run_until(map, function() c:pump(); return c.buf:find("event: hello", 1, true) end, 5, "the stream")
    assert.matches("Content-Type: text/event-stream", c.buf, 1, true)
    send(map, port, {from = "a@example.com", to = "b@example.net", subject = "live"})
    H.run_until(map, function() c:pump(); return c.buf:find("event: new", 1, true) end, 5, "the event")
    local evs = events(c.buf)
    local new = evs[#evs]
    assert.equal("new", new.kind)
    local d = json.decode(new.data)
    assert.equal("new", d.Type)
    assert.equal("live", d.Data.Subject)
    c:close()
    -- the page was away while two more came
    send(map, port, {from = "a@example.com", to = "b@example.net", subject = "missed 1"})
    send(map, port, {from = "a@example.com", to = "b@example.net", subject = "missed 2"})
    c = H.connect(map, "127.0.0.1", wport)
    c:send(("GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nLast-Event-ID: %d\r\n\r\n"):format(new.id))
    H.run_until(map, function() c:pump(); return c.buf:find("missed 2", 1, true) end, 5, "the replay")
    local replay = events(c.buf)
    assert.equal(2, #replay)
    assert.matches("missed 1", replay[1].data, 1, true)
    assert.equal(new.id + 1, replay[1].id)
    c:close()
    -- older than the ring holds: resync
    local max = web.MAX_EVENTS
    web.MAX_EVENTS = 2
    finally(function() web.MAX_EVENTS = max end)
    for i = 1, 3 do send(map, port, {from = "a@example.com", to = "b@example.net", subject = "more " .. i}) end
    c = H.connect(map, "127.0.0.1", wport)
    c:send(("GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nLast-Event-ID: %d\r\n\r\n"):format(new.id))
    H.run_until(map, function() c:pump(); return c.buf:find("event: resync", 1, true) end, 5, "resync")
    c:close()
    -- the stream's client went: it is dropped
    H.run_until(map, function() return next(srv.web.streams) == nil end, 5, "the stream to go")
  end)

  it("long-polls for the page that cannot stream", function()
    local srv, map, port, url = catcher()
    local first = get_json(map, url .. "api/v1/events")   -- no since: the cursor, at once
    assert.same({}, first.events)
    local out = os.tmpname()
    local pid = H.spawn(("curl -s --max-time 15 -o %s '%sapi/v1/events?since=%d&timeout=10'")
                        :format(out, url, first.last))
    H.run_until(map, function() return next(srv.web.pollers) ~= nil end, 5, "the poll")
    send(map, port, {from = "a@example.com", to = "b@example.net", subject = "polled"})
    H.run_until(map, function() return not H.alive(pid) end, 5, "the poll to answer")
    local r = json.decode(H.readfile(out))
    os.remove(out)
    assert.equal("new", r.events[1].Type)
    assert.equal("polled", r.events[1].Data.Subject)
  end)
end)

describe("the catcher's security", function()
  it("answers only to its own host names (DNS rebinding)", function()
    local srv, map, _, url = catcher({web_hosts = {"mail.test"}})
    local wport = srv.web.port
    local base = "'http://127.0.0.1:" .. wport .. "/api/v1/messages'"
    assert.equal(403, status(map, "-H 'Host: evil.test' " .. base))
    assert.equal(403, status(map, "-H 'Host: evil.test:" .. wport .. "' " .. base))
    assert.equal(200, status(map, "-H 'Host: localhost:" .. wport .. "' " .. base))
    assert.equal(200, status(map, "-H 'Host: mail.test' " .. base))
    assert.equal(200, status(map, base))
  end)

  it("takes a state-changing call from a browser only from its own page", function()
    local srv, map, _, url = catcher()
    local host = url:match("^http://([^/]+)/")
    local del = "-X DELETE '" .. url .. "api/v1/messages'"
    assert.equal(403, status(map, "-H 'Origin: http://evil.test' " .. del))
    assert.equal(403, status(map, "-H 'Origin: null' " .. del))
    assert.equal(200, status(map, "-H 'Origin: http://" .. host .. "' " .. del))
    assert.equal(200, status(map, del))                       -- curl, test suites
    assert.equal(403, status(map, "--max-time 2 -H 'Origin: http://evil.test' '" .. url .. "api/events'"))
    -- HTTP/1.0 without a Host is its own address: the Origin still checked
    local wport = srv.web.port
    assert.matches("^HTTP/1.1 403 ", raw(map, wport, "DELETE /api/v1/messages HTTP/1.0\r\n"
                                       .. "Origin: http://evil.test\r\n\r\n"))
    assert.matches("^HTTP/1.1 200 ", raw(map, wport, "GET /api/v1/messages HTTP/1.0\r\n\r\n"))
    -- reads carry no CORS grant
    local head = curl(map, "-i -H 'Origin: http://evil.test' '" .. url .. "api/v1/messages'")
    assert.is_nil(head:lower():find("access-control-allow-origin", 1, true))
  end)

  it("asks for Basic auth when given web_auth, and refuses a public address without it", function()
    local srv, map, _, url = catcher({web_auth = {user = "qa", password = "s3cret"}})
    local u = "'" .. url .. "api/v1/messages'"
    assert.equal(401, status(map, u))
    assert.equal(401, status(map, "-u qa:wrong " .. u))
    assert.equal(401, status(map, "-u qb:s3cret " .. u))
    assert.equal(200, status(map, "-u qa:s3cret " .. u))
    assert.matches('WWW-Authenticate: Basic realm="lua-smtpd"', curl(map, "-i " .. u), 1, true)
    assert.has_error(function()
      smtpd.CatchingServer({"127.0.0.1", 0}, nil, {map = map, web = "0.0.0.0:0"})
    end, "web: 0.0.0.0 is not a loopback address: give web_auth (or web_public = true)")
    assert.has_error(function()
      smtpd.CatchingServer({"127.0.0.1", 0}, nil, {map = map, web = "127.0.0.1:0", web_auth = "x"})
    end)
  end)

  it("shows a hostile message's HTML only in a sandbox without scripts, and survives broken mail", function()
    local srv, map, port, url = catcher()
    send(map, port, {from = "x@example.com", to = "y@example.net", subject = "<script>alert(1)</script>",
                     html = "<img src=x onerror=alert(1)><a href='javascript:alert(2)'>x</a>"
                            .. "<style>body{background:url(https://evil.test/leak)}</style>"})
    local m = srv.messages[1]
    local head = curl(map, "-i '" .. url .. "view/" .. m.id .. ".html'")
    local csp = head:match("Content%-Security%-Policy: ([^\r\n]+)")
    assert.matches("^sandbox ", csp)
    assert.is_nil(csp:find("allow-scripts", 1, true))
    assert.is_nil(csp:find("allow-same-origin", 1, true))
    assert.matches("default-src 'none'", csp, 1, true)
    assert.is_nil(csp:find("https:", 1, true))                  -- no remote images unless asked
    -- the page's own policy: scripts from itself only
    local page = curl(map, "-i '" .. url .. "'")
    assert.matches("Content%-Security%-Policy: default%-src 'none'; script%-src 'self'", page)
    -- a message with bytes that are not UTF-8, broken MIME and a 10 MiB line
    local bad = "From: \255\254 <a@b>\r\nSubject: =?utf-8?B?////?=\r\nContent-Type: multipart/mixed; "
                .. "boundary=\"zz\"\r\n\r\n--zz\r\nContent-Type: text/plain; charset=x-nonsense\r\n\r\n\255"
                .. ("x"):rep(10 * 1024 * 1024) .. "\r\n--zz"
    local c = H.connect(map, "127.0.0.1", port)
    c:lines(1)
    c:send("HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n")
    c:lines(4)
    c:send(bad .. "\r\n.\r\n")
    assert.matches("^250", c:lines(1, 20)[1])
    c:close()
    local out = os.tmpname()
    curl(map, ("-o %s '%sapi/v1/message/latest'"):format(out, url))
    local py = H.run_client(map, ("%s -c 'import json,sys; m=json.load(open(sys.argv[1])); "
                                  .. "print(len(m[\"Text\"]) > 10000000)' %s"):format(PY, out))
    os.remove(out)
    assert.equal("True\n", py)
  end)

  it("keeps answering SMTP while slow clients hold the web port", function()
    local srv, map, port, url = catcher()
    local wport = srv.web.port
    local slow = {}
    for i = 1, 50 do
      slow[i] = H.connect(map, "127.0.0.1", wport)
      slow[i]:send("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    end
    local t0 = H.now()
    local replies = H.converse(map, "127.0.0.1", port, "HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
                               .. "DATA\r\nSubject: s\r\n\r\nb\r\n.\r\nQUIT\r\n")
    assert.matches("^250", replies[5])
    assert.is_true(H.now() - t0 < 3)
    assert.equal(50, srv.web.server:stats().connections)
    for _, c in ipairs(slow) do c:close() end
  end)
end)

describe("the catcher's Maildir", function()
  it("keeps each message's bytes in a Maildir with its envelope beside it, "
     .. "reads them back at start, and removes what is deleted", function()
    local dir = H.capture("mktemp -d"):gsub("%s+$", "")
    finally(function() os.execute("rm -rf " .. dir) end)
    local srv, map, port, url = catcher({persist = dir})
    send(map, port, {from = "a@example.com", to = "one@example.net", subject = "first kept",
                     envelope_to = {"one@example.net", "bcc@example.org"}})
    send(map, port, {from = "b@example.com", to = "two@example.net", subject = "second kept"})
    local files = core.maildir_list(dir)
    assert.equal(2, #files)
    -- the bytes as received, greppable
    local grep = H.capture("grep -l 'Subject: first kept' " .. dir .. "/new/*")
    assert.equal(1, select(2, grep:gsub("\n", "")))
    assert.equal(srv.messages[1].data, H.readfile(grep:match("[^\n]+")))
    srv:close(false)
    map:loop(0.05, 5)
    -- a new catcher on the same Maildir
    local again, map2, _, url2 = catcher({persist = dir})
    assert.equal(2, #again.messages)
    local m = again.messages[1]
    assert.equal("a@example.com", m.mailfrom)
    assert.same({"one@example.net", "bcc@example.org"}, m.rcpttos)
    assert.equal("1", m.id)
    local list = get_json(map2, url2 .. "api/v1/messages")
    assert.equal("second kept", list.messages[1].Subject)
    assert.equal(200, status(map2, ("-X DELETE -d '{\"IDs\":[\"1\"]}' '%sapi/v1/messages'"):format(url2)))
    assert.equal(1, #core.maildir_list(dir))
    assert.equal(1, #core.maildir_list(dir .. "/.smtpd"))
    again:close(false)
    map2:loop(0.05, 5)
    -- read back within a smaller bound: the oldest go, files too
    local small, map3, port3 = catcher({persist = dir, max_messages = 1})
    send(map3, port3, {from = "c@example.com", to = "three@example.net", subject = "third"})
    assert.equal(1, #small.messages)
    assert.equal(1, #core.maildir_list(dir))
    -- a Maildir that can no longer be written: 451, and nothing kept
    os.execute("rm -rf " .. dir .. "/tmp")
    local c = H.connect(map3, "127.0.0.1", port3)
    c:lines(1)
    c:send("HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: lost?\r\n\r\nb\r\n.\r\n")
    local r = c:lines(5)
    assert.matches("^451 ", r[5])
    c:close()
    assert.equal("third", require("smtpd.web").summary(small.messages[1]).Subject)
  end)
end)

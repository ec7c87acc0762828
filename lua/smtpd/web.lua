-- smtpd.web: the catcher's web page and its JSON API, served from the
-- catcher's own loop (csrc/web: the HTTP server). The API is Mailpit's
-- /api/v1 where the two overlap, so that its clients and test helpers
-- work unchanged; beside it: the SMTP envelope of each message, a wait
-- that answers as soon as a matching message arrives, links and codes
-- found in a message, mailboxes chosen by Lua predicates, and live
-- updates as Server-Sent Events (with a long-poll beside them).
--
--   local w = web.start(catcher, "127.0.0.1:8026", {auth = {user =, password =},
--                       hosts = {"mail.test"}, release = "127.0.0.1:25"})
--   w:url() -> "http://127.0.0.1:8026/";  w:close()
local core = require "smtpd.core"
local json = require "smtpd.json"
local message = require "smtpd.message"
local wait = require "smtpd.wait"

local M = {}

M.MAX_EVENTS = 1000          -- events a reconnecting page can catch up on
M.MAX_WAIT = 300             -- seconds a wait may ask for
M.PING = 15                  -- seconds between SSE keep-alive comments
M.SNIPPET = 250

local array = json.array

-- ---- addresses and time ----------------------------------------------------------

-- "host:port", "[v6]:port", ":port", "port" or "host" -> host, port
function M.parse_addr(addr, default_port)
  if type(addr) == "number" then return "127.0.0.1", addr end
  if addr == nil or addr == true or addr == "" then return "127.0.0.1", default_port end
  if type(addr) ~= "string" then return nil, "an address must be \"host:port\"" end
  local h, p = addr:match("^%[([%x:.]+)%]:(%d+)$")
  if not h then h, p = addr:match("^([^:]*):(%d+)$") end
  if not h and addr:find("^%d+$") then h, p = "", addr end
  if not h then
    h = addr:match("^%[([%x:.]+)%]$") or addr
    p = default_port
  end
  if h == "" or h == "localhost" then h = "127.0.0.1" end
  p = tonumber(p)
  if not p or p < 0 or p > 65535 then return nil, "a port of 0 to 65535" end
  return h, math.tointeger(p)
end

-- Days since 1970-01-01 of a civil date (proleptic Gregorian).
local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

local MONTHS = {jan = 1, feb = 2, mar = 3, apr = 4, may = 5, jun = 6, jul = 7, aug = 8,
                sep = 9, oct = 10, nov = 11, dec = 12}
local ZONES = {ut = 0, gmt = 0, z = 0, est = -5, edt = -4, cst = -6, cdt = -5, mst = -7,
               mdt = -6, pst = -8, pdt = -7}

-- An RFC 5322 date ("Fri, 04 Dec 2026 10:00:00 +0100") as seconds since
-- the epoch, or nil.
function M.parse_date(v)
  if type(v) ~= "string" then return nil end
  local d, mon, y, hh, mm, rest = v:match("(%d%d?)%s+(%a%a%a)%a*%s+(%d%d%d?%d?)%s+(%d%d?):(%d%d)(.*)$")
  if not d then return nil end
  local month = MONTHS[mon:lower()]
  if not month then return nil end
  y = tonumber(y)
  if y < 50 then y = y + 2000 elseif y < 1000 then y = y + 1900 end
  local ss = rest:match("^:(%d%d)") or "0"
  local zone = rest:match("([%+%-]%d%d%d%d)") or rest:match("%s(%a+)")
  local offset = 0
  if zone and zone:find("^[%+%-]") then
    local sign = zone:sub(1, 1) == "-" and -1 or 1
    offset = sign * (tonumber(zone:sub(2, 3)) * 3600 + tonumber(zone:sub(4, 5)) * 60)
  elseif zone and ZONES[zone:lower()] then
    offset = ZONES[zone:lower()] * 3600
  end
  local t = days_from_civil(y, month, tonumber(d)) * 86400 + tonumber(hh) * 3600
            + tonumber(mm) * 60 + tonumber(ss)
  return t - offset
end

local function iso(t)
  local s = math.floor(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. (".%03dZ"):format(math.floor((t - s) * 1000 + 0.5) % 1000)
end

-- ---- one message's readings ------------------------------------------------------

local function addr_list(list)
  local out = array()
  for _, a in ipairs(list or {}) do
    out[#out + 1] = {Name = a.name or "", Address = a.address or ""}
  end
  return out
end

local function lower_set(list, into)
  for _, a in ipairs(list) do into[(a.Address or ""):lower()] = true end
  return into
end

-- The parts of a message: the text and HTML bodies, the attachments and
-- the inline parts (each with its PartID: its place in walk order).
local function readings(m)
  local msg = message.parse(m.data)
  local text, html
  local attachments, inline = array(), array()
  for i, part in ipairs(msg:walk()) do
    if not part:is_multipart() then
      local ctype = part:get_content_type()
      local disp = part:get_content_disposition()
      local filename = part:get_filename()
      local is_body = disp ~= "attachment" and not filename and
                      (ctype == "text/plain" or ctype == "text/html")
      if is_body and ctype == "text/plain" and not text then
        text = core.mime_to_utf8(part:get_payload(true) or "", part:get_content_charset())
      elseif is_body and ctype == "text/html" and not html then
        html = core.mime_to_utf8(part:get_payload(true) or "", part:get_content_charset())
      elseif i > 1 or disp == "attachment" or filename then
        local cid = part:get("Content-ID")
        local payload = part:get_payload(true) or ""
        local entry = {PartID = tostring(i), FileName = filename or "",
                       ContentType = ctype, ContentID = cid and cid:gsub("^%s*<(.-)>%s*$", "%1") or "",
                       Size = #payload}
        if disp ~= "attachment" and cid then inline[#inline + 1] = entry
        else attachments[#attachments + 1] = entry end
      end
    end
  end
  return msg, text or "", html or "", attachments, inline
end

local function strip_html(h)
  h = h:gsub("<[Ss][Tt][Yy][Ll][Ee].-</[Ss][Tt][Yy][Ll][Ee]>", " ")
       :gsub("<[Ss][Cc][Rr][Ii][Pp][Tt].-</[Ss][Cc][Rr][Ii][Pp][Tt]>", " ")
       :gsub("<[^>]*>", " ")
  local ents = {amp = "&", lt = "<", gt = ">", quot = '"', nbsp = " ", ["#39"] = "'"}
  return (h:gsub("&(#?%w+);", function(e) return ents[e] end))
end

local function snippet(text, html)
  local s = text ~= "" and text or strip_html(html)
  s = s:gsub("%s+", " "):gsub("^ ", "")
  if utf8.len(s) and utf8.len(s) > M.SNIPPET then
    s = s:sub(1, utf8.offset(s, M.SNIPPET + 1) - 1) .. "..."
  elseif #s > M.SNIPPET then
    s = s:sub(1, M.SNIPPET)
  end
  return s
end

-- The list entry of a message (Mailpit's MessageSummary, and ours:
-- Mailboxes), a new table each time.
function M.summary(m)
  local ok, msg, text, html, attachments = pcall(readings, m)
  if not ok then msg, text, html, attachments = message.parse(""), "", "", array() end
  local from = addr_list(msg:addresses("From"))[1]
  local to, cc = addr_list(msg:addresses("To")), addr_list(msg:addresses("Cc"))
  local bcc = addr_list(msg:addresses("Bcc"))
  -- the envelope's recipients the header did not name: the Bcc
  local named = lower_set(cc, lower_set(to, lower_set(bcc, {})))
  for _, r in ipairs(m.rcpttos or {}) do
    if not named[r:lower()] then
      bcc[#bcc + 1] = {Name = "", Address = r}
      named[r:lower()] = true
    end
  end
  local s = {
    ID = m.id, MessageID = (msg:get("Message-ID") or ""):gsub("^%s*<(.-)>%s*$", "%1"),
    Read = false, From = from or {Name = "", Address = m.mailfrom or ""},
    To = to, Cc = cc, Bcc = bcc, ReplyTo = addr_list(msg:addresses("Reply-To")),
    Subject = msg:get("Subject") or "", Created = iso(m.received_at or m.received),
    Username = m.auth_user or "", Tags = array(), Size = m.size,
    Attachments = #attachments, Snippet = snippet(text, html),
    Mailboxes = array(m.mailboxes or {}),
  }
  s.Read = m.read and true or false
  return s
end

local function join(list)
  local out = {}
  for _, a in ipairs(list) do out[#out + 1] = a.Name .. " <" .. a.Address .. ">" end
  return table.concat(out, ", ")
end

-- What a message keeps for the list and the search, made once when it
-- arrives: its summary as JSON text (without Read, which changes), and
-- the fields the search terms look in. A table per message would cost
-- several times the memory.
local function index(m)
  if m._sj then return end
  local s = M.summary(m)
  s.Read = nil
  m._sj = json.encode(s):sub(2, -2)
  m._find = {from = join({s.From}), to = join(s.To), cc = join(s.Cc), bcc = join(s.Bcc),
             subject = s.Subject, id = s.MessageID}
  m._att = s.Attachments
end
M.index = index

-- The summary as JSON text, Read as it is now.
function M.summary_json(m)
  index(m)
  return '{"Read":' .. (m.read and "true" or "false") .. "," .. m._sj .. "}"
end

-- ---- search (Mailpit's syntax) -----------------------------------------------------

-- The terms of a query: {neg =, key =, value =} (key nil: free text).
function M.parse_query(q)
  local terms = {}
  local i, n = 1, #(q or "")
  while i <= n do
    local c = q:sub(i, i)
    if c:find("%s") then
      i = i + 1
    else
      local neg = false
      if c == "-" or c == "!" then
        neg = true
        i = i + 1
      end
      local key
      local k, e = q:match("^([%a%-]+):()", i)
      if k then
        key = k:lower()
        i = e
      end
      local value
      if q:sub(i, i) == '"' then
        local close = q:find('"', i + 1, true) or n + 1
        value = q:sub(i + 1, close - 1)
        i = close + 1
      else
        local e2 = q:find("%s", i) or n + 1
        value = q:sub(i, e2 - 1)
        i = e2
      end
      if value ~= "" or key then
        terms[#terms + 1] = {neg = neg, key = key, value = value:lower()}
      end
    end
  end
  return terms
end

local function date_of(v)
  local y, mo, d = v:match("^(%d%d%d%d)-(%d%d)-(%d%d)$")
  if not y then return nil end
  return os.time{year = tonumber(y), month = tonumber(mo), day = tonumber(d), hour = 0}
end

local function term_matches(m, t)
  local f = m._find
  local v = t.value
  local key = t.key
  if key == nil then
    return core.web_ifind(f.subject, v) or core.web_ifind(f.from, v) or
           core.web_ifind(f.to, v) or core.web_ifind(f.cc, v) or
           core.web_ifind(m.data, v)
  elseif key == "to" then
    if core.web_ifind(f.to, v) then return true end
    for _, r in ipairs(m.rcpttos or {}) do
      if core.web_ifind(r, v) then return true end
    end
    return false
  elseif key == "from" then
    return core.web_ifind(f.from, v) or core.web_ifind(m.mailfrom or "", v)
  elseif key == "cc" then return core.web_ifind(f.cc, v)
  elseif key == "bcc" then return core.web_ifind(f.bcc, v)
  elseif key == "subject" then return core.web_ifind(f.subject, v)
  elseif key == "message-id" then return core.web_ifind(f.id, v)
  elseif key == "is" then
    if v == "read" then return m.read == true end
    if v == "unread" then return not m.read end
    return false
  elseif key == "has" then
    if v == "attachment" or v == "attachments" then return m._att > 0 end
    return false
  elseif key == "mailbox" then
    for _, b in ipairs(m.mailboxes or {}) do
      if b:lower() == v then return true end
    end
    return false
  elseif key == "before" or key == "after" then
    local d = date_of(v)
    if not d then return false end
    if key == "before" then return m.received < d end
    return m.received >= d
  end
  -- a key we do not know: its text, as free text
  return term_matches(m, {value = key .. ":" .. v})
end

-- Whether message m matches every term.
function M.matches(m, terms)
  index(m)
  for _, t in ipairs(terms) do
    if term_matches(m, t) == t.neg then return false end
  end
  return true
end

-- ---- links and codes ---------------------------------------------------------------

-- The links of a message, in order, once each (HTML hrefs, then URLs in
-- its text).
function M.links(m)
  local _, text, html = readings(m)
  local out, seen = array(), {}
  local function add(u)
    u = u:gsub("&amp;", "&")
    if not seen[u] and u:find("^https?://") then
      seen[u] = true
      out[#out + 1] = u
    end
  end
  for u in html:gmatch("[Hh][Rr][Ee][Ff]%s*=%s*[\"']([^\"']+)[\"']") do add(u) end
  for u in (text .. " " .. strip_html(html)):gmatch("https?://[^%s<>\"']+") do
    add((u:gsub("[%.,;:!?%)]+$", "")))
  end
  return out
end

-- The one-time codes of a message: runs of 4 to 8 digits (or of capitals
-- and digits with a digit in them) standing alone, those after the word
-- "code" (or a near kin) first.
function M.codes(m)
  local _, text, html = readings(m)
  local body = text ~= "" and text or strip_html(html)
  local near, other, seen = array(), array(), {}
  local lower = body:lower()
  for start, code in body:gmatch("()%f[%w]([%w]+)%f[^%w]") do
    if #code >= 4 and #code <= 8 and code:find("%d") and not code:find("%l") and
       not seen[code] then
      seen[code] = true
      local before = lower:sub(math.max(1, start - 40), start - 1)
      if before:find("code") or before:find("otp") or before:find("pin") or
         before:find("password") or before:find("verif") then
        near[#near + 1] = code
      else
        other[#other + 1] = code
      end
    end
  end
  for _, c in ipairs(other) do near[#near + 1] = c end
  return near
end

-- ---- the page's assets -------------------------------------------------------------

local assets = require "smtpd.web_assets"

-- ---- the app ------------------------------------------------------------------------

local App = {}
App.__index = App

local SECURITY = {
  ["X-Content-Type-Options"] = "nosniff",
  ["Referrer-Policy"] = "no-referrer",
}

local function headers(extra)
  local h = {["Cache-Control"] = "no-store", ["X-Frame-Options"] = "DENY"}
  for k, v in pairs(SECURITY) do h[k] = v end
  for k, v in pairs(extra or {}) do h[k] = v end
  return h
end

local function send_json(x, status, v)
  x:respond(status, headers({["Content-Type"] = "application/json"}), json.encode(v))
end

local function send_text(x, status, s)
  x:respond(status, headers({["Content-Type"] = "text/plain; charset=utf-8"}), s)
end

local function query_args(q)
  local out = {}
  for pair in (q or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k, v = core.web_unescape(k, true), core.web_unescape(v, true)
    if k and v then out[k] = v end
  end
  return out
end

local function int_arg(v, default, lo, hi)
  local n = math.tointeger(tonumber(v or ""))
  if not n then return default end
  if n < lo then return lo end
  if n > hi then return hi end
  return n
end

-- Constant-time comparison of two strings.
local function same(a, b)
  if #a ~= #b then
    b = a .. "x"                       -- still compare, still fail
  end
  local diff = #a == #b and 0 or 1
  for i = 1, #a do
    diff = diff | (a:byte(i) ~ (b:byte(i) or 0))
  end
  return diff == 0
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64decode(s)
  s = s:gsub("[^%w%+/=]", "")
  local out, bits, nbits = {}, 0, 0
  for c in s:gmatch(".") do
    if c == "=" then break end
    bits = (bits << 6) | (B64:find(c, 1, true) - 1)
    nbits = nbits + 6
    if nbits >= 8 then
      nbits = nbits - 8
      out[#out + 1] = string.char((bits >> nbits) & 0xff)
    end
  end
  return table.concat(out)
end

function App:allowed_host(host)
  if not host or host == "" then return false end
  local name = host:lower():match("^%[([%x:.]+)%]:?%d*$") or host:lower():match("^([^:]+):?%d*$")
  if not name then return false end
  return self.hosts[name] == true
end

-- The messages a request means, newest first: all (a view of the
-- catcher's list, not a copy), or a mailbox's.
local Newest = {}
function Newest.__index(t, i)
  local list = rawget(t, "list")
  return list[#list - i + 1]
end
function Newest.__len(t) return #rawget(t, "list") end

function App:listing(mailbox)
  local list = self.catcher.messages
  if not mailbox then return setmetatable({list = list}, Newest) end
  local out = {}
  for i = #list, 1, -1 do
    local m = list[i]
    if m._mb and m._mb[mailbox] then out[#out + 1] = m end
  end
  return out
end

function App:counts()
  return #self.catcher.messages, self.catcher._unread or 0
end

-- A page of a listing, as Mailpit's list answer (JSON text).
function App:page(list, args, all)
  local start = int_arg(args.start, 0, 0, math.maxinteger)
  local limit = int_arg(args.limit, 50, 1, 1000)
  local items = {}
  for i = start + 1, math.min(#list, start + limit) do
    items[#items + 1] = M.summary_json(list[i])
  end
  local total, unread = self:counts()
  local list_unread = unread
  if not all then
    list_unread = 0
    for i = 1, #list do if not list[i].read then list_unread = list_unread + 1 end end
  end
  return ('{"total":%d,"unread":%d,"count":%d,"messages_count":%d,"messages_unread":%d,'
          .. '"start":%d,"tags":[],"messages":[%s]}'):format(total, unread, #items, #list,
          list_unread, start, table.concat(items, ","))
end

local function send_raw_json(x, status, text)
  x:respond(status, headers({["Content-Type"] = "application/json"}), text)
end

function App:search(args)
  local terms = M.parse_query(args.query or "")
  local out, list = {}, self:listing(args.mailbox)
  for i = 1, #list do
    local m = list[i]
    if M.matches(m, terms) then out[#out + 1] = m end
  end
  return out
end

function App:find(id, args)
  if id == "latest" then
    if args and args.query and args.query ~= "" then return self:search(args)[1] end
    return self:listing(args and args.mailbox)[1]
  end
  return self.catcher:get_message(id)
end

-- ---- events ---------------------------------------------------------------------------

-- An event for the page: data a table, or its JSON text already.
function App:emit(kind, data)
  self.event_seq = self.event_seq + 1
  local body = type(data) == "string" and data or json.encode(data or json.null)
  local ev = {id = self.event_seq, kind = kind,
              text = '{"Type":"' .. kind .. '","Data":' .. body .. "}"}
  local ring = self.events
  ring[#ring + 1] = ev
  if #ring > M.MAX_EVENTS then table.remove(ring, 1) end
  local frame = ("id: %d\nevent: %s\ndata: %s\n\n"):format(ev.id, kind, ev.text)
  for x in pairs(self.streams) do
    if not x:write(frame) then self.streams[x] = nil end
  end
  for w in pairs(self.pollers) do w(ev) end
  for w in pairs(self.waiters) do w() end
end

-- The events after id since: a list, or nil when the ring no longer
-- holds them all.
function App:events_after(since)
  local ring = self.events
  local first = ring[1] and ring[1].id or self.event_seq + 1
  if since < first - 1 and since < self.event_seq then return nil end
  local out = {}
  for _, ev in ipairs(ring) do
    if ev.id > since then out[#out + 1] = ev end
  end
  return out
end

-- ---- the routes -----------------------------------------------------------------------

local function with_message(app, x, id, args, fn)
  local m = app:find(id, args)
  if not m then return send_text(x, 404, "message not found") end
  return fn(m)
end

local function ids_of(body)
  if body == "" then return nil end
  local v, why = json.decode(body)
  if type(v) ~= "table" then return false, why or "a JSON object" end
  return v
end

local function message_json(app, m)
  local msg, text, html, attachments, inline = readings(m)
  local out = M.summary(m)
  out.Text, out.HTML = text, html
  out.Attachments, out.Inline = attachments, inline
  out.ReturnPath = m.mailfrom or ""
  -- as Mailpit: the message's own date when it has one, else when it came
  local date = msg:get("Date")
  local t = M.parse_date(date)
  out.Date = t and iso(t) or out.Created
  out.DateHeader = date or ""
  out.Snippet = nil
  out.Read = nil
  out.Envelope = {MailFrom = m.mailfrom or "", RcptTo = array(m.rcpttos or {}),
                  Peer = m.peer and m.peer[1] or "", Helo = m.helo or "",
                  TLS = m.tls and (m.tls.version or true) or false,
                  Auth = m.auth_user or json.null, Received = out.Created}
  local lu = msg:get("List-Unsubscribe")
  out.ListUnsubscribe = {Header = lu or "", Links = array(), Errors = "", HeaderPost = msg:get("List-Unsubscribe-Post") or ""}
  for l in (lu or ""):gmatch("<([^>]+)>") do out.ListUnsubscribe.Links[#out.ListUnsubscribe.Links + 1] = l end
  app:mark(m, true)
  return out
end

function App:mark(m, read)
  if (m.read and true or false) ~= read then
    m.read = read
    local c = self.catcher
    c._unread = (c._unread or 0) + (read and -1 or 1)
    self:emit("update", {ID = m.id, Read = read})
  end
end

-- HTML for the reader's sandboxed frame: inline images (cid:) become data:
-- URLs; links open outside the frame.
local function view_html(m, remote)
  local msg, _, html = readings(m)
  local by_cid = {}
  for i, part in ipairs(msg:walk()) do
    local cid = part:get("Content-ID")
    if cid and not part:is_multipart() then
      by_cid[cid:gsub("^%s*<(.-)>%s*$", "%1")] = i
    end
  end
  local parts = msg:walk()
  html = html:gsub("([Cc][Ii][Dd]:)([^\"'%s>]+)", function(_, cid)
    local i = by_cid[cid]
    if not i then return "about:blank" end
    local p = parts[i]
    return ("data:%s;base64,%s"):format(p:get_content_type(), M.b64(p:get_payload(true) or ""))
  end)
  local csp = "sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; " ..
              "style-src 'unsafe-inline'; font-src data:; img-src data:" ..
              (remote and " https: http:" or "")
  return "<!DOCTYPE html><base target=\"_blank\">" .. html, csp
end

function M.b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = (a << 16) | ((b or 0) << 8) | (c or 0)
    out[#out + 1] = B64:sub((n >> 18) + 1, (n >> 18) + 1) .. B64:sub(((n >> 12) & 63) + 1, ((n >> 12) & 63) + 1)
      .. (b and B64:sub(((n >> 6) & 63) + 1, ((n >> 6) & 63) + 1) or "=")
      .. (c and B64:sub((n & 63) + 1, (n & 63) + 1) or "=")
  end
  return table.concat(out)
end

local ROUTES = {}

ROUTES["GET /api/v1/messages"] = function(app, x, req, args)
  send_raw_json(x, 200, app:page(app:listing(args.mailbox), args, not args.mailbox))
end

ROUTES["GET /api/v1/search"] = function(app, x, req, args)
  send_raw_json(x, 200, app:page(app:search(args), args))
end

ROUTES["DELETE /api/v1/search"] = function(app, x, req, args)
  local ids = {}
  for _, m in ipairs(app:search(args)) do ids[#ids + 1] = m.id end
  app.catcher:delete_messages(ids)
  send_text(x, 200, "ok")
end

ROUTES["DELETE /api/v1/messages"] = function(app, x, req)
  local body, why = ids_of(req.body)
  if body == false then return send_text(x, 400, "bad JSON: " .. tostring(why)) end
  if body and type(body.IDs) == "table" and #body.IDs > 0 then
    app.catcher:delete_messages(body.IDs)
  else
    app.catcher:delete_messages(nil)
  end
  send_text(x, 200, "ok")
end

ROUTES["PUT /api/v1/messages"] = function(app, x, req)
  local body, why = ids_of(req.body)
  if not body then return send_text(x, 400, "bad JSON: " .. tostring(why or "a body")) end
  local read = body.Read == true
  local targets
  if type(body.IDs) == "table" and #body.IDs > 0 then
    targets = {}
    for _, id in ipairs(body.IDs) do targets[#targets + 1] = app.catcher:get_message(tostring(id)) end
  elseif type(body.Search) == "string" and body.Search ~= "" then
    targets = app:search({query = body.Search})
  else
    targets = app.catcher.messages
  end
  for _, m in ipairs(targets) do app:mark(m, read) end
  send_text(x, 200, "ok")
end

ROUTES["GET /api/v1/info"] = function(app, x)
  local total, unread = app:counts()
  send_json(x, 200, {Version = "lua-smtpd " .. (require("smtpd")._VERSION or ""),
    Messages = total, Unread = unread, SMTPAccepted = app.catcher.received_count,
    Database = "", DatabaseSize = app.catcher._bytes, Tags = {},
    RuntimeStats = {Uptime = math.floor(core.web_now() - app.started)}})
end

ROUTES["GET /api/v1/webui"] = function(app, x)
  send_json(x, 200, {MessageRelay = {Enabled = app.release ~= nil}, Mailboxes = app:mailbox_names()})
end

ROUTES["GET /api/v1/mailboxes"] = function(app, x)
  local out = array()
  for _, name in ipairs(app:mailbox_names()) do
    local total, unread = 0, 0
    for _, m in ipairs(app.catcher.messages) do
      if m._mb and m._mb[name] then
        total = total + 1
        if not m.read then unread = unread + 1 end
      end
    end
    out[#out + 1] = {Name = name, Total = total, Unread = unread}
  end
  send_json(x, 200, out)
end

function App:mailbox_names()
  local names = array()
  for name in pairs(self.catcher.mailboxes or {}) do names[#names + 1] = name end
  table.sort(names)
  return names
end

-- GET /api/v1/wait?query=&timeout=&since=&mailbox=: the newest message
-- that matches (past the message sequence number since, default 0),
-- as soon as there is one; 408 after timeout seconds (default 10).
ROUTES["GET /api/v1/wait"] = function(app, x, req, args)
  local terms = M.parse_query(args.query or "")
  local since = int_arg(args.since, 0, 0, math.maxinteger)
  local timeout = tonumber(args.timeout or "") or 10
  if timeout <= 0 or timeout > M.MAX_WAIT then
    return send_text(x, 400, "timeout must be seconds above 0, at most " .. M.MAX_WAIT)
  end
  local function look()
    local list = app:listing(args.mailbox)
    for i = 1, #list do
      local m = list[i]
      if m.seq <= since then return nil end           -- older ones follow
      if M.matches(m, terms) then return m end
    end
  end
  local found = look()
  if found then return send_raw_json(x, 200, M.summary_json(found)) end
  local timer
  local function finish(m)
    if timer then timer:cancel() end
    if not x:open() then return end
    if m then send_raw_json(x, 200, M.summary_json(m))
    else send_json(x, 408, {error = "no matching message within the timeout"}) end
  end
  local waiter
  waiter = function()
    local m = look()
    if m then
      app.waiters[waiter] = nil
      finish(m)
    end
  end
  app.waiters[waiter] = true
  timer = core.after(app.map, timeout, function()
    app.waiters[waiter] = nil
    finish(nil)
  end)
  x:on_close(function()
    app.waiters[waiter] = nil
    timer:cancel()
  end)
end

-- GET /api/v1/events?since=&timeout=: the long-poll beside the event
-- stream: the events after since (JSON), at once or when one comes.
ROUTES["GET /api/v1/events"] = function(app, x, req, args)
  if args.since == nil then
    return send_json(x, 200, {events = array(), last = app.event_seq, resync = false})
  end
  local since = int_arg(args.since, app.event_seq, 0, math.maxinteger)
  local timeout = tonumber(args.timeout or "") or 25
  if timeout <= 0 or timeout > M.MAX_WAIT then timeout = 25 end
  local function reply()
    local evs = app:events_after(since)
    local out = array()
    for _, ev in ipairs(evs or {}) do
      out[#out + 1] = {id = ev.id, Type = ev.kind, Data = json.decode(ev.text).Data}
    end
    send_json(x, 200, {events = out, last = app.event_seq, resync = evs == nil})
  end
  local evs = app:events_after(since)
  if evs == nil or #evs > 0 then return reply() end
  local timer, poller
  poller = function()
    app.pollers[poller] = nil
    timer:cancel()
    if x:open() then reply() end
  end
  app.pollers[poller] = true
  timer = core.after(app.map, timeout, function()
    app.pollers[poller] = nil
    if x:open() then reply() end
  end)
  x:on_close(function()
    app.pollers[poller] = nil
    timer:cancel()
  end)
end

-- GET /api/events: Server-Sent Events, each with its id; a page that
-- reconnects (Last-Event-ID) gets what it missed, or "resync" when the
-- ring no longer holds it.
ROUTES["GET /api/events"] = function(app, x, req, args)
  x:stream(200, headers({["Content-Type"] = "text/event-stream", ["X-Accel-Buffering"] = "no"}))
  local since = math.tointeger(tonumber(req.headers["last-event-id"] or args.since or ""))
  local first = {"retry: 2000\n\n"}
  if since then
    local evs = app:events_after(since)
    if evs == nil then
      first[#first + 1] = ("id: %d\nevent: resync\ndata: {}\n\n"):format(app.event_seq)
    else
      for _, ev in ipairs(evs) do
        first[#first + 1] = ("id: %d\nevent: %s\ndata: %s\n\n"):format(ev.id, ev.kind, ev.text)
      end
    end
  else
    first[#first + 1] = ("id: %d\nevent: hello\ndata: {}\n\n"):format(app.event_seq)
  end
  if not x:write(table.concat(first)) then return end
  app.streams[x] = true
  x:on_close(function() app.streams[x] = nil end)
end

local function message_route(suffix, fn)
  return function(app, x, req, args, id, rest)
    return with_message(app, x, id, args, function(m) return fn(app, x, req, args, m, rest) end)
  end
end

local MESSAGE = {
  [""] = message_route("", function(app, x, req, args, m)
    send_json(x, 200, message_json(app, m))
  end),
  ["/headers"] = message_route("/headers", function(app, x, req, args, m)
    local msg = message.parse(m.data)
    local out = {}
    for _, kv in ipairs(msg:items()) do
      local name = kv[1]
      out[name] = out[name] or array()
      table.insert(out[name], kv[2])
    end
    send_json(x, 200, out)
  end),
  ["/raw"] = message_route("/raw", function(app, x, req, args, m)
    x:respond(200, headers({["Content-Type"] = "text/plain; charset=utf-8",
      ["Content-Disposition"] = args.dl and ('attachment; filename="' .. m.id .. '.eml"') or nil}),
      m.data)
  end),
  ["/links"] = message_route("/links", function(app, x, req, args, m)
    send_json(x, 200, M.links(m))
  end),
  ["/codes"] = message_route("/codes", function(app, x, req, args, m)
    send_json(x, 200, M.codes(m))
  end),
}

local function part_route(app, x, req, args, id, part_id)
  return with_message(app, x, id, args, function(m)
    local msg = message.parse(m.data)
    local i = math.tointeger(tonumber(part_id))
    local p = i and msg:walk()[i]
    if not p or p:is_multipart() then return send_text(x, 404, "part not found") end
    local name = (p:get_filename() or ("part-" .. part_id)):gsub('[%c"\\/]', "_")
    x:respond(200, headers({
      ["Content-Type"] = p:get_content_type() == "text/html" and "text/plain; charset=utf-8"
                         or p:get_content_type(),
      ["Content-Disposition"] = 'attachment; filename="' .. name .. '"',
      ["Content-Security-Policy"] = "sandbox; default-src 'none'"}),
      p:get_payload(true) or "")
  end)
end

local function release_route(app, x, req, args, id)
  return with_message(app, x, id, args, function(m)
    if not app.release then return send_text(x, 400, "release is not configured (web release =)") end
    local body = json.decode(req.body ~= "" and req.body or "{}")
    local to = type(body) == "table" and body.To
    if type(to) ~= "table" or #to == 0 then return send_text(x, 400, "To: a list of addresses") end
    for _, a in ipairs(to) do
      if type(a) ~= "string" or not a:find("^[^%s@<>]+@[^%s@<>]+$") then
        return send_text(x, 400, "not an address: " .. tostring(a))
      end
    end
    local co = coroutine.create(function()
      local sendmail = require("smtpd.sendmail").sendmail
      local ok, refused, err = pcall(sendmail, app.release, m.mailfrom or "", to, m.data,
                                     {map = app.map, timeout = 30, connect_timeout = 10})
      if not x:open() then return end
      if not ok then return send_text(x, 500, tostring(refused)) end
      if not refused then return send_text(x, 502, "release failed: " .. tostring(err)) end
      if next(refused) then
        local why = {}
        for r, v in pairs(refused) do why[#why + 1] = r .. ": " .. tostring(v[1]) .. " " .. tostring(v[2]) end
        table.sort(why)
        return send_text(x, 502, "refused: " .. table.concat(why, "; "))
      end
      send_text(x, 200, "ok")
    end)
    wait.parkable[co] = function(c, ...)
      local ok, err = coroutine.resume(c, ...)
      if not ok then io.stderr:write("web release: ", tostring(err), "\n") end
    end
    local ok, err = coroutine.resume(co)
    if not ok then send_text(x, 500, tostring(err)) end
  end)
end

local function view_route(app, x, req, args, id, ext)
  return with_message(app, x, id, args, function(m)
    if ext == "txt" then
      local _, text = readings(m)
      return x:respond(200, headers({["Content-Type"] = "text/plain; charset=utf-8"}), text)
    end
    local html, csp = view_html(m, args.remote == "1")
    x:respond(200, {["Content-Type"] = "text/html; charset=utf-8",
      ["Content-Security-Policy"] = csp, ["X-Content-Type-Options"] = "nosniff",
      ["Referrer-Policy"] = "no-referrer", ["Cache-Control"] = "no-store",
      ["X-Frame-Options"] = "SAMEORIGIN"}, html)
  end)
end

local PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " ..
                 "connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'self'; " ..
                 "frame-ancestors 'none'"

local function asset(x, name)
  local a = assets[name]
  x:respond(200, headers({["Content-Type"] = a.type, ["Content-Security-Policy"] = PAGE_CSP,
                          ["Cache-Control"] = "no-cache"}), a.body)
end

local STATE_CHANGING = {POST = true, PUT = true, DELETE = true, PATCH = true}

function App:handle(req, x)
  -- 1. the Host: names this server answers to (DNS rebinding)
  local host = req.headers.host or (req.version == "1.0" and self.own_host) or nil
  if not self:allowed_host(host) then
    return send_text(x, 403, "this host name is not served here")
  end
  -- 2. Basic auth, when asked for
  if self.auth then
    local given = (req.headers.authorization or ""):match("^[Bb]asic%s+(%S+)$")
    local ok = false
    if given then
      local u, p = b64decode(given):match("^([^:]*):(.*)$")
      ok = u ~= nil and same(u, self.auth.user) and same(p, self.auth.password)
    end
    if not ok then
      return x:respond(401, headers({["WWW-Authenticate"] = 'Basic realm="lua-smtpd", charset="UTF-8"',
                                     ["Content-Type"] = "text/plain"}), "authentication required")
    end
  end
  -- 3. a browser's request that changes state (or opens the stream) comes
  -- from our own page
  local origin = req.headers.origin
  if origin and (STATE_CHANGING[req.method] or req.path == "/api/events") then
    if origin ~= "http://" .. host then
      return send_text(x, 403, "cross-origin requests are refused")
    end
  end
  self:route(req, x)
end

function App:route(req, x)
  local path = core.web_unescape(req.path) or req.path
  local args = query_args(req.query)
  local method = req.method == "HEAD" and "GET" or req.method
  local fn = ROUTES[method .. " " .. path]
  if fn then return fn(self, x, req, args) end
  if method == "GET" then
    if path == "/" or path == "/index.html" then return asset(x, "index.html") end
    local name = path:match("^/([%w%-]+%.%w+)$")
    if name and assets[name] then return asset(x, name) end
    local id, ext = path:match("^/view/([^/]+)%.(%a+)$")
    if id and (ext == "html" or ext == "txt") then return view_route(self, x, req, args, id, ext) end
    local mid, rest = path:match("^/api/v1/message/([^/]+)(.*)$")
    if mid then
      if MESSAGE[rest] then return MESSAGE[rest](self, x, req, args, mid, rest) end
      local part = rest:match("^/part/([^/]+)$")
      if part then return part_route(self, x, req, args, mid, part) end
    end
  elseif method == "POST" then
    local mid = path:match("^/api/v1/message/([^/]+)/release$")
    if mid then return release_route(self, x, req, args, mid) end
  elseif method == "DELETE" then
    local mid = path:match("^/api/v1/message/([^/]+)$")
    if mid then
      return with_message(self, x, mid, args, function(m)
        self.catcher:delete_messages({m.id})
        send_text(x, 200, "ok")
      end)
    end
  elseif method == "OPTIONS" then
    return x:respond(204, headers({Allow = "GET, HEAD, PUT, POST, DELETE"}))
  end
  send_text(x, 404, "not found")
end

-- ---- start ------------------------------------------------------------------------------

-- start(catcher, addr, opts) -> the app (app:url(), app:close())
-- opts: auth = {user =, password =}, hosts = {names}, release = "host:port",
-- and the HTTP server's limits (max_connections, max_body, timeout, idle).
function M.start(catcher, addr, opts)
  opts = opts or {}
  local host, port = M.parse_addr(addr, 8026)
  if not host then error("web: " .. port, 2) end
  if opts.auth ~= nil then
    local a = opts.auth
    if type(a) ~= "table" or type(a.user) ~= "string" or type(a.password) ~= "string" then
      error("web_auth: {user = \"...\", password = \"...\"}", 2)
    end
  end
  local loopback = host:find("^127%.") or host == "::1"
  if not loopback and not opts.auth and not opts.public then
    error("web: " .. host .. " is not a loopback address: give web_auth (or web_public = true)", 2)
  end
  local app = setmetatable({catcher = catcher, map = catcher._map, auth = opts.auth,
    release = opts.release, events = {}, event_seq = 0, streams = {}, pollers = {},
    waiters = {}, started = core.web_now(),
    hosts = {localhost = true, ["127.0.0.1"] = true, ["::1"] = true}}, App)
  for _, h in ipairs(opts.hosts or {}) do app.hosts[tostring(h):lower()] = true end
  app.hosts[host:lower()] = true
  local limits = {}
  for _, k in ipairs{"max_connections", "max_body", "timeout", "idle", "max_pending"} do
    limits[k] = opts[k]
  end
  local srv, err = core.web_listen(app.map, host, port, limits, function(req, x)
    app:handle(req, x)
  end)
  if not srv then error(("web: cannot listen on %s:%d: %s"):format(host, port, tostring(err)), 2) end
  app.server = srv
  app.host, app.port = srv:address()
  app.own_host = (app.host:find(":") and "[" .. app.host .. "]" or app.host) .. ":" .. app.port
  -- a comment now and then keeps idle streams (and their proxies) open
  local function ping()
    for x in pairs(app.streams) do
      if not x:write(": ping\n\n") then app.streams[x] = nil end
    end
    if app.server then app.ping = core.after(app.map, M.PING, ping) end
  end
  app.ping = core.after(app.map, M.PING, ping)
  return app
end

function App:url()
  return "http://" .. self.own_host .. "/"
end

function App:close()
  if self.ping then self.ping:cancel() end
  if self.server then self.server:close() end
  self.server = nil
end

return M

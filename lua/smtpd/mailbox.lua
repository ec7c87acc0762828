-- Delivery to local mailboxes that never loses a message: MaildirServer
-- and MboxServer answer 250 only once the message is on disk (written,
-- fsynced, and for Maildir renamed into new/ with the directory fsynced);
-- any failure answers 451, so the client keeps the message and retries.
--
--   smtpd.MaildirServer("127.0.0.1:8025", nil, {maildir = "/var/mail/catch"})
--   smtpd.MboxServer("127.0.0.1:8025", nil, {mbox = "/var/mail/catch.mbox"})
--
-- The writes run on libuv's thread pool (core.deliver): other sessions
-- are served while one message is being synced. Each stored message starts
-- with the trace headers an MTA's local delivery adds: Return-Path,
-- Delivered-To (one per envelope recipient) and Received.
--
-- A subclass may override server:trace_headers(...) or
-- server:mailbox_for(mailfrom, rcpttos) (one mailbox per user, say).

local SMTPServer = require "smtpd.server"
local core = require "smtpd.core"
local wait = require "smtpd.wait"
local util = require "smtpd.util"

local M = {}

-- What the client gets when the message could not be stored: 451, so it
-- retries (the reason goes to server:log, not to the client).
M.FAILED = core.REPLIES.LOCAL_ERROR

-- An RFC 5322 date: "Mon, 23 Nov 2026 05:31:10 +0000".
local function rfc5322_date(t)
  return os.date("%a, %d %b %Y %H:%M:%S ", t) .. os.date("%z", t)
end

-- Header values must stay on their line: a CR or LF an envelope field
-- might carry (it cannot, from our parser, but a subclass could pass one)
-- becomes a space.
local function one_line(s)
  return (tostring(s):gsub("[\r\n]", " "))
end

-- smtpd gives the null sender (MAIL FROM:<>) as "<>".
local function sender(mailfrom)
  if mailfrom == nil or mailfrom == "<>" then return "" end
  return mailfrom
end

-- The session the hook runs for, when it runs in one.
local function session()
  local co, main = coroutine.running()
  if main then return nil end
  local conn = core.hook(co)
  return conn
end

-- The trace headers, each ending in "\n" (the message's own line end).
local Mailbox = SMTPServer:extend("Mailbox")

function Mailbox:trace_headers(peer, mailfrom, rcpttos, kwargs, now)
  local conn = session()
  local helo = conn and conn:get("seen_greeting") or ""
  local fqdn = conn and conn:get("fqdn") or "localhost"
  local esmtp = conn and conn:get("extended_smtp")
  local host = type(peer) == "table" and peer[1] or tostring(peer or "")
  local proto = (esmtp and "ESMTP" or "SMTP")
                .. (kwargs and kwargs.tls and "S" or "")
                .. (kwargs and kwargs.auth_user and "A" or "")
  local out = {"Return-Path: <" .. one_line(sender(mailfrom)) .. ">\n"}
  for _, r in ipairs(rcpttos) do
    out[#out + 1] = "Delivered-To: " .. one_line(r) .. "\n"
  end
  out[#out + 1] = ("Received: from %s ([%s])\n\tby %s (lua-smtpd) with "
                   .. "%s%s;\n\t%s\n"):format(
    helo ~= "" and one_line(helo) or "unknown", one_line(host),
    one_line(fqdn), proto,
    #rcpttos == 1 and ("\n\tfor <" .. one_line(rcpttos[1]) .. ">") or "",
    rfc5322_date(now))
  return table.concat(out)
end

-- The store for this message: by default the one the server was given.
function Mailbox:mailbox_for(mailfrom, rcpttos)
  return self._mailbox
end

-- Runs core.deliver and waits for it (parking the hook): ok, err, name.
function Mailbox:_store(spec)
  if self._deliver_test then
    for k, v in pairs(self._deliver_test) do spec[k] = v end
  end
  return wait.wait(self._map, function(map, done)
    core.deliver(map, spec, done)
  end, tostring(self.class_name or "delivery"))
end

function Mailbox:process_message(peer, mailfrom, rcpttos, data, kwargs)
  local now = os.time()
  if type(data) ~= "string" then
    -- decode_data = true gives a string too; anything else is a bug of a
    -- subclass, and the client must retry rather than lose the message.
    self:log("error", "%s: data is a %s, not a string", self.class_name,
             type(data))
    return M.FAILED
  end
  local spec, err = self:_entry(peer, mailfrom, rcpttos, data, kwargs, now)
  local ok, name = spec ~= nil, nil
  if spec then ok, err, name = self:_store(spec) end
  if not ok then
    self:log("error", "%s: %s; answering 451", self.class_name, err)
    return M.FAILED
  end
  self.delivered = (self.delivered or 0) + 1
  self.last_delivered = name
  return nil
end

-- ---- Maildir -------------------------------------------------------------

local MaildirServer = Mailbox:extend("MaildirServer")
MaildirServer.OPTIONS = {maildir = true}
MaildirServer.class_name = "MaildirServer"

function MaildirServer:initialize(localaddr, remoteaddr, opts)
  local dir = type(opts) == "table" and opts.maildir
  if type(dir) ~= "string" or dir == "" then
    util.raise("MaildirServer needs opts.maildir = a directory")
  end
  local ok, err = core.maildir_make(dir)
  if not ok then util.raise("maildir: " .. err) end
  self._mailbox = dir
  self.maildir = dir
  MaildirServer.super.initialize(self, localaddr, remoteaddr, opts)
end

function MaildirServer:_entry(peer, mailfrom, rcpttos, data, kwargs, now)
  local text = self:trace_headers(peer, mailfrom, rcpttos, kwargs, now)
               .. data
  if text:sub(-1) ~= "\n" then text = text .. "\n" end
  local dir = self:mailbox_for(mailfrom, rcpttos)
  if type(dir) ~= "string" or dir == "" then
    return nil, "mailbox_for gave no directory"
  end
  -- Another Maildir than the server's is made where missing, on the
  -- thread pool with the delivery (not here, on the loop).
  return {maildir = dir, data = text, make = dir ~= self._mailbox}
end

-- ---- mbox ----------------------------------------------------------------

local MboxServer = Mailbox:extend("MboxServer")
MboxServer.OPTIONS = {mbox = true, lock_timeout = true}
MboxServer.class_name = "MboxServer"

function MboxServer:initialize(localaddr, remoteaddr, opts)
  local path = type(opts) == "table" and opts.mbox
  if type(path) ~= "string" or path == "" then
    util.raise("MboxServer needs opts.mbox = a file")
  end
  local lt = opts.lock_timeout
  if lt ~= nil and (type(lt) ~= "number" or lt < 0) then
    util.raise("lock_timeout must be a number of seconds")
  end
  -- Fail now, not at the first message, when the file cannot be opened.
  local f, err = io.open(path, "ab")
  if not f then util.raise("mbox: cannot open " .. tostring(err)) end
  f:close()
  self._mailbox = path
  self.mbox = path
  self.lock_timeout = lt or 10
  MboxServer.super.initialize(self, localaddr, remoteaddr, opts)
end

-- mboxrd (the variant mutt and Python's mailbox read): every line that
-- starts with ">*From " gets one more ">", so reading strips exactly one.
function M.mboxrd_quote(text)
  text = ("\n" .. text):gsub("\n(>*From )", "\n>%1")
  return text:sub(2)
end

-- The From_ line's date: asctime's form, in local time.
local function asctime(t)
  return os.date("%a %b %e %H:%M:%S %Y", t)
end

function MboxServer:_entry(peer, mailfrom, rcpttos, data, kwargs, now)
  local from = sender(mailfrom)
  if from == "" then from = "MAILER-DAEMON" end
  local text = M.mboxrd_quote(
    self:trace_headers(peer, mailfrom, rcpttos, kwargs, now) .. data)
  if text:sub(-1) ~= "\n" then text = text .. "\n" end
  return {mbox = self:mailbox_for(mailfrom, rcpttos),
          data = "From " .. one_line(from):gsub(" ", "_") .. " "
                 .. asctime(now) .. "\n" .. text .. "\n",
          lock_timeout = self.lock_timeout}
end

M.Mailbox = Mailbox
M.MaildirServer = MaildirServer
M.MboxServer = MboxServer
return M

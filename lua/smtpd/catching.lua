-- CatchingServer: keeps every message it receives, with its envelope, for
-- tests and for the REPL (a mail catcher, as MailHog and Mailpit are).
--
--   local catcher = smtpd.CatchingServer("127.0.0.1:0")
--   local host, port = catcher:getsockname()   -- point the application here
--   ... the application sends mail ...
--   assert(catcher:wait_for(1, 5))             -- one message, within 5 s
--   local m = catcher.messages[1]              -- m.mailfrom, m.rcpttos, m.data
--
-- Each message is a table: peer ({host, port}), mailfrom, rcpttos (the
-- envelope: Bcc recipients too), data, mail_options, rcpt_options, tls
-- and auth_user (when there were any), received (os.time()) and size.
-- Memory is bounded: past max_messages (1000) or max_bytes (64 MiB) of
-- data, the oldest messages are dropped; `received_count` counts them all.

local SMTPServer = require "smtpd.server"
local core = require "smtpd.core"
local wait = require "smtpd.wait"
local util = require "smtpd.util"

local CatchingServer = SMTPServer:extend("CatchingServer")
CatchingServer.OPTIONS = {max_messages = true, max_bytes = true}

local DEFAULT_MAX_MESSAGES = 1000
local DEFAULT_MAX_BYTES = 64 * 1024 * 1024

-- A caught message prints as one readable line.
local Message = {}
Message.__index = Message
Message.__name = "Message"

function Message:__tostring()
  local subject = self.data:match("^[Ss]ubject:[ \t]*([^\r\n]*)")
                  or self.data:match("\n[Ss]ubject:[ \t]*([^\r\n]*)")
  return ("Message(from %s to %s, %d bytes%s)"):format(
    self.mailfrom or "?", table.concat(self.rcpttos, ", "), self.size,
    subject and (", Subject: " .. subject) or "")
end

local function positive(v, name, default)
  if v == nil then return default end
  if math.type(v) ~= "integer" or v < 1 then
    util.raise(("%s must be a positive integer"):format(name))
  end
  return v
end

function CatchingServer:initialize(localaddr, remoteaddr, opts)
  local t = type(opts) == "table" and opts or {}
  self.max_messages = positive(t.max_messages, "max_messages",
                               DEFAULT_MAX_MESSAGES)
  self.max_bytes = positive(t.max_bytes, "max_bytes", DEFAULT_MAX_BYTES)
  self.messages = {}
  self.received_count = 0
  self._bytes = 0
  self._waiters = {}
  CatchingServer.super.initialize(self, localaddr, remoteaddr, opts)
end

local function copy(list)
  local out = {}
  for i = 1, #(list or {}) do out[i] = list[i] end
  return out
end

function CatchingServer:process_message(peer, mailfrom, rcpttos, data, kwargs)
  local m = setmetatable({
    peer = peer, mailfrom = mailfrom, rcpttos = copy(rcpttos), data = data,
    mail_options = copy(kwargs and kwargs.mail_options),
    rcpt_options = copy(kwargs and kwargs.rcpt_options),
    tls = kwargs and kwargs.tls, auth_user = kwargs and kwargs.auth_user,
    received = os.time(), size = #data,
  }, Message)
  local list = self.messages
  list[#list + 1] = m
  self._bytes = self._bytes + m.size
  while #list > 1 and (#list > self.max_messages
                       or self._bytes > self.max_bytes) do
    self._bytes = self._bytes - table.remove(list, 1).size
  end
  self.received_count = self.received_count + 1
  -- Wake those waiting for this many.
  for w in pairs(self._waiters) do
    if self.received_count >= w.n then w.done(true) end
  end
end

-- server:wait_for(n, timeout) -> true once n messages arrived in all (the
-- count since the start or the last clear()), false after timeout seconds
-- (default 10). Inside a hook or at the live prompt it parks; elsewhere it
-- runs the server's loop until then.
function CatchingServer:wait_for(n, timeout)
  if math.type(n) ~= "integer" or n < 0 then
    error("wait_for: n must be a non-negative integer", 2)
  end
  timeout = timeout or 10
  if type(timeout) ~= "number" or timeout < 0 then
    error("wait_for: timeout must be a number of seconds", 2)
  end
  if self.received_count >= n then return true end
  return wait.wait(self._map, function(map, done)
    local w, timer
    w = {n = n, done = function(ok)
      if not self._waiters[w] then return end
      self._waiters[w] = nil
      if timer then timer:cancel() end
      done(ok)
    end}
    self._waiters[w] = true
    timer = core.after(map, timeout, function() w.done(false) end)
    return {cancel = function()
      self._waiters[w] = nil
      timer:cancel()
    end}
  end, "wait_for")
end

-- Forgets every message caught so far (and the count).
function CatchingServer:clear()
  self.messages = {}
  self.received_count = 0
  self._bytes = 0
end

return CatchingServer

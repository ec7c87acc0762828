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
-- data, or older than max_age seconds (none), the oldest messages are
-- dropped; `received_count` counts them all. Each message has an id (a
-- string) and a seq (1, 2, ... in arrival order).
--
-- With web = "127.0.0.1:8026" it also serves a page to read them in a
-- browser and Mailpit's JSON API (smtpd.web): web_auth = {user =,
-- password =} asks for Basic auth, web_hosts names more Host names to
-- answer to, web_release = "host:port" lets the API relay a message;
-- mailboxes = {name = function(message) return true end} files messages
-- into named mailboxes (a message may be in several). persist = "/dir"
-- keeps them in a Maildir too (each message's bytes as they came, its
-- envelope beside it in /dir/.smtpd), so that they outlive a restart and
-- can be grepped; the messages found there are read back at start.

local SMTPServer = require "smtpd.server"
local core = require "smtpd.core"
local wait = require "smtpd.wait"
local util = require "smtpd.util"
local options = require "smtpd.options"

local CatchingServer = SMTPServer:extend("CatchingServer")
CatchingServer.OPTIONS = {max_messages = true, max_bytes = true, max_age = true,
                          persist = true,
                          web = true, web_auth = true, web_hosts = true,
                          web_release = true, web_public = true, mailboxes = true}

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

local function copy(list)
  local out = {}
  for i = 1, #(list or {}) do out[i] = list[i] end
  return out
end

local function positive(v, name, default)
  if v == nil then return default end
  if math.type(v) ~= "integer" or v < 1 then
    util.raise(("%s must be a positive integer"):format(name))
  end
  return v
end

-- The catcher's state and options (before the server's initialize).
local function setup(self, opts)
  local t = type(opts) == "table" and opts or {}
  self.max_messages = positive(t.max_messages, "max_messages",
                               DEFAULT_MAX_MESSAGES)
  self.max_bytes = positive(t.max_bytes, "max_bytes", DEFAULT_MAX_BYTES)
  self.max_age = t.max_age ~= nil and positive(t.max_age, "max_age") or nil
  if t.mailboxes ~= nil then
    if type(t.mailboxes) ~= "table" then
      util.raise("mailboxes must be a table of name = function(message)")
    end
    for name, fn in pairs(t.mailboxes) do
      if type(name) ~= "string" or not name:find("^[%w._%-]+$") or type(fn) ~= "function" then
        util.raise("mailboxes: each is name = function(message), the name "
                   .. "of letters, digits, '.', '_' and '-'")
      end
    end
  end
  self.mailboxes = t.mailboxes
  self.messages = {}
  self.received_count = 0
  self._bytes = 0
  self._unread = 0
  self._seq = 0
  self._by_id = {}
  self._waiters = {}
  if t.persist ~= nil then
    if type(t.persist) ~= "string" or t.persist == "" then
      util.raise("persist must be a directory (a Maildir)")
    end
    self.persist = t.persist
    for _, dir in ipairs{t.persist, t.persist .. "/.smtpd"} do
      local ok, err = core.maildir_make(dir)
      if not ok then util.raise("persist: " .. tostring(err)) end
    end
    self:_load()
  end
end

local function readall(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- The Maildir's messages, read back at start (with their envelopes when
-- their records are there), oldest first, within the bounds.
function CatchingServer:_load()
  local json = require "smtpd.json"
  local dir = self.persist
  local envs = {}
  for _, name in ipairs(assert(core.maildir_list(dir .. "/.smtpd"))) do
    local path = dir .. "/.smtpd/" .. name
    local rec = json.decode(readall(path) or "")
    if type(rec) == "table" and type(rec.file) == "string" then
      envs[rec.file] = {rec = rec, path = path}
    else
      os.remove(path)                    -- a record of nothing
    end
  end
  local found = {}
  for _, name in ipairs(assert(core.maildir_list(dir))) do
    local base = name:match("^%a+/([^:]+)")
    local data = base and readall(dir .. "/" .. name)
    if data then
      local e = envs[base]
      local rec = e and e.rec or {}
      envs[base] = nil
      local when = tonumber(rec.received_at) or tonumber(base:match("^(%d+)")) or os.time()
      found[#found + 1] = setmetatable({
        peer = {rec.peer or "", math.tointeger(rec.port) or 0},
        mailfrom = type(rec.mailfrom) == "string" and rec.mailfrom or nil,
        rcpttos = type(rec.rcpttos) == "table" and copy(rec.rcpttos) or {},
        mail_options = {}, rcpt_options = {}, data = data, size = #data,
        auth_user = type(rec.auth_user) == "string" and rec.auth_user or nil,
        helo = type(rec.helo) == "string" and rec.helo or nil,
        received = math.floor(when), received_at = when,
        _file = dir .. "/" .. name, _env_file = e and e.path,
      }, Message)
    end
  end
  for _, e in pairs(envs) do os.remove(e.path) end   -- records of removed mail
  table.sort(found, function(a, b) return a.received_at < b.received_at end)
  for _, m in ipairs(found) do
    self._seq = self._seq + 1
    m.id, m.seq = tostring(self._seq), self._seq
    self:_file_into_mailboxes(m)
    self.messages[#self.messages + 1] = m
    self._by_id[m.id] = m
    self._bytes = self._bytes + m.size
    self._unread = self._unread + 1
  end
  self:_trim()
  self.received_count = #self.messages
end

-- The web page and API, when asked for (after the server's initialize:
-- they serve on its map).
local function start_web(self, opts)
  local t = type(opts) == "table" and opts or {}
  if t.web then
    local ok, app = pcall(require("smtpd.web").start, self, t.web,
      {auth = t.web_auth, hosts = t.web_hosts, release = t.web_release,
       public = t.web_public})
    if not ok then
      self:close()
      util.raise(tostring(app):gsub("^[^\n]-%.lua:%d+: ", ""))
    end
    self.web = app
  end
end

function CatchingServer:initialize(localaddr, remoteaddr, opts)
  setup(self, opts)
  CatchingServer.super.initialize(self, localaddr, remoteaddr, opts)
  start_web(self, opts)
end

-- The message with this id (a string), or nil.
function CatchingServer:get_message(id)
  return self._by_id[tostring(id)]
end

local function forget(self, m)
  self._bytes = self._bytes - m.size
  if not m.read then self._unread = self._unread - 1 end
  self._by_id[m.id] = nil
  if m._file then os.remove(m._file) end
  if m._env_file then os.remove(m._env_file) end
end

-- Deletes the messages with these ids (all of them when ids is nil).
function CatchingServer:delete_messages(ids)
  if ids == nil then
    for _, m in ipairs(self.messages) do forget(self, m) end
    self.messages = {}
    self._by_id = {}
    self._bytes = 0
    self._unread = 0
    if self.web then self.web:emit("truncate") end
    return
  end
  local drop, gone = {}, {}
  for _, id in ipairs(ids) do drop[tostring(id)] = true end
  local kept = {}
  for _, m in ipairs(self.messages) do
    if drop[m.id] then
      forget(self, m)
      gone[#gone + 1] = m.id
    else
      kept[#kept + 1] = m
    end
  end
  self.messages = kept
  if self.web and #gone > 0 then
    self.web:emit("delete", {IDs = require("smtpd.json").array(gone)})
  end
end

function CatchingServer:close(...)
  if self.web then self.web:close() end
  return CatchingServer.super.close(self, ...)
end

function CatchingServer:process_message(peer, mailfrom, rcpttos, data, kwargs)
  self._seq = self._seq + 1
  local conn = core.hook(coroutine.running())
  local m = setmetatable({
    id = tostring(self._seq), seq = self._seq,
    peer = peer, mailfrom = mailfrom, rcpttos = copy(rcpttos), data = data,
    mail_options = copy(kwargs and kwargs.mail_options),
    rcpt_options = copy(kwargs and kwargs.rcpt_options),
    tls = kwargs and kwargs.tls, auth_user = kwargs and kwargs.auth_user,
    received = os.time(), received_at = core.web_now(), size = #data,
    helo = conn and conn:get("seen_greeting") or nil,
  }, Message)
  if self.persist then
    local ok, why = self:_persist(m)
    if not ok then
      self._seq = self._seq - 1
      self:log("error", "CatchingServer: persist: %s; answering 451", tostring(why))
      return core.REPLIES.LOCAL_ERROR
    end
  end
  self:_file_into_mailboxes(m)
  local list = self.messages
  list[#list + 1] = m
  self._by_id[m.id] = m
  self._bytes = self._bytes + m.size
  self._unread = self._unread + 1
  local dropped = self:_trim()
  if self.web then
    if #dropped > 0 then
      self.web:emit("delete", {IDs = require("smtpd.json").array(dropped)})
    end
    self.web:emit("new", require("smtpd.web").summary_json(m))
  end
  self.received_count = self.received_count + 1
  -- Wake those waiting for this many.
  for w in pairs(self._waiters) do
    if self.received_count >= w.n then w.done(true) end
  end
end

-- The mailboxes whose predicates take m.
function CatchingServer:_file_into_mailboxes(m)
  if not self.mailboxes then return end
  m.mailboxes, m._mb = {}, {}
  for name, fn in pairs(self.mailboxes) do
    local ok, yes = pcall(fn, m)
    if not ok then
      self:log("error", ("mailbox %s: %s"):format(name, tostring(yes)))
    elseif yes then
      m.mailboxes[#m.mailboxes + 1] = name
      m._mb[name] = true
    end
  end
  table.sort(m.mailboxes)
end

-- Drops the oldest past the bounds (count, bytes, age); their ids.
function CatchingServer:_trim()
  local list, dropped = self.messages, {}
  local too_old = self.max_age and os.time() - self.max_age
  local n = 0
  while #list - n > 1 and (#list - n > self.max_messages or self._bytes > self.max_bytes
                           or (too_old and list[n + 1].received < too_old)) do
    n = n + 1
    forget(self, list[n])
    dropped[#dropped + 1] = list[n].id
  end
  if n > 0 then
    local len = #list
    table.move(list, n + 1, len, 1)
    for i = len - n + 1, len do list[i] = nil end
  end
  return dropped
end

-- The message and its envelope into the Maildir, synced, from the
-- thread pool (the hook waits): true, or nil and why.
function CatchingServer:_persist(m)
  local json = require "smtpd.json"
  local function store(dir, data)
    return wait.wait(self._map, function(map, done)
      return core.deliver(map, {maildir = dir, data = data}, done)
    end, "persist")
  end
  local ok, err, name = store(self.persist, m.data)
  if not ok then return nil, err end
  m._file = self.persist .. "/new/" .. name
  local rec = json.encode({file = name, mailfrom = m.mailfrom or json.null,
    rcpttos = json.array(copy(m.rcpttos)), peer = type(m.peer) == "table" and m.peer[1] or "",
    port = type(m.peer) == "table" and m.peer[2] or 0, received_at = m.received_at,
    helo = m.helo or json.null, auth_user = m.auth_user or json.null})
  local eok, eerr, ename = store(self.persist .. "/.smtpd", rec)
  if not eok then
    os.remove(m._file)
    m._file = nil
    return nil, eerr
  end
  m._env_file = self.persist .. "/.smtpd/new/" .. ename
  return true
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
  self:delete_messages(nil)
  self.received_count = 0
end


-- keeping(cls) -> a subclass of the server class cls that also keeps
-- every message it handles, as a CatchingServer does (its options, its
-- methods, its web page), after cls's own process_message ran: the
-- command line's --web for DebuggingServer (make run) and the others.
function CatchingServer.keeping(cls)
  if options.known(cls).web then return cls end
  local K = cls:extend(rawget(cls, "__name") or "Server")
  K.OPTIONS = CatchingServer.OPTIONS
  function K:initialize(localaddr, remoteaddr, opts)
    setup(self, opts)
    cls.initialize(self, localaddr, remoteaddr, opts)
    start_web(self, opts)
  end
  function K:process_message(peer, mailfrom, rcpttos, data, kwargs)
    local r = cls.process_message(self, peer, mailfrom, rcpttos, data, kwargs)
    local kept = CatchingServer.process_message(self, peer, mailfrom, rcpttos, data, kwargs)
    return kept or r
  end
  function K:close(...)
    if self.web then self.web:close() end
    return cls.close(self, ...)
  end
  for _, name in ipairs{"get_message", "delete_messages", "wait_for", "clear", "_load",
                        "_trim", "_persist", "_file_into_mailboxes"} do
    K[name] = CatchingServer[name]
  end
  return K
end

return CatchingServer

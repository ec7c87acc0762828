-- SMTPChannel: one client connection as a Lua object.
--
-- The protocol state lives in the C core; the fields below read and write
-- it through the connection handle `conn`. A connection of the plain
-- SMTPChannel class gets its Lua object only when a hook needs it.

local core = require "smtpd.core"
local Object = require("smtpd.class").Object
local auth = require "smtpd.auth"

-- Fields backed by C state (core.FIELDS: name -> "rw" or "ro"): read
-- through conn:get, written through conn:set.
local CFIELDS = core.FIELDS
local VERBS = core.VERBS

-- The server methods that check a sender or a recipient once the built-in
-- checks passed (see SMTPServer:check_recipient).
local CHECKS = {MAIL = "check_sender", RCPT = "check_recipient"}

local function traceback(err)
  return debug.traceback(tostring(err), 2)
end

-- The built-in commands, one level below SMTPChannel, so that assigning
-- SMTPChannel.smtp_X is seen as a change like any other class's.
local Builtins = Object:extend("SMTPChannel")
local builtin_funcs = {}
for _, verb in ipairs(VERBS) do
  local check = CHECKS[verb]
  local f = function(self, arg)
    local conn = rawget(self, "conn")
    local server = check and rawget(self, "smtp_server")
    local hook = server and server[check]
    if not hook then return conn:builtin(verb, arg) end
    -- Checked in C first (greeting, order, syntax, limits): only then does
    -- the script see the address, and its verdict is the reply.
    local address, params = conn:builtin(verb, arg, true)
    if address == nil then return end
    conn:settle(check, xpcall(hook, traceback, server, self, address,
                              params))
  end
  Builtins["smtp_" .. verb] = f
  builtin_funcs[verb] = f
end

local SMTPChannel = Builtins:extend("SMTPChannel")
SMTPChannel.super = Object
SMTPChannel.COMMAND = 0
SMTPChannel.DATA = 1

function SMTPChannel.__index(t, k)
  if CFIELDS[k] then
    local conn = rawget(t, "conn")
    if conn and conn:is_open() then return conn:get(k) end
    return nil
  end
  return getmetatable(t)[k]
end

function SMTPChannel.__newindex(t, k, v)
  if CFIELDS[k] == "rw" then
    rawget(t, "conn"):set(k, v)
  else
    rawset(t, k, v)
  end
end

function SMTPChannel:__tostring()
  local conn = rawget(self, "conn")
  local name = getmetatable(self).__name or "SMTPChannel"
  if not (conn and conn:is_open()) then
    return name .. "(closed)"
  end
  local peer = conn:getpeername()
  local state = conn:get("smtp_state") == 1 and "DATA" or "COMMAND"
  return ("%s(peer=%s:%d, state=%s, greeting=%q, mailfrom=%s, rcpts=%d)")
    :format(name, peer[1], peer[2], state, conn:get("seen_greeting"),
            tostring(conn:get("mailfrom")), #conn:get("rcpttos"))
end

-- channel_class(server, conn, addr, opts)
function SMTPChannel:initialize(server, conn, addr, opts)
  rawset(self, "smtp_server", server)
  rawset(self, "conn", conn)
  rawset(self, "_opts", opts)
end

-- Sends one reply line (CRLF is added).
function SMTPChannel:push(line)
  return rawget(self, "conn"):push(line)
end

-- channel:getaddr(keyword, arg) -> address, params | nil, reply: the
-- core's own parsing of a MAIL/RCPT argument (keyword "FROM:" or "TO:"),
-- as smtpd's _getaddr and _getparams: the address ("<>" for the null
-- path) and the parameters as {KEYWORD = value or true}, or nil and the
-- 501 reply the built-in command would give.
function SMTPChannel:getaddr(keyword, arg)
  return rawget(self, "conn"):getaddr(keyword, arg)
end

-- channel:challenge(text) -> answer: inside an AUTH mechanism
-- (auth_<MECH>), sends "334 " .. base64(text) and returns the client's
-- answer, base64-decoded. A cancel ("*"), bad base64 or an overlong line
-- ends the AUTH exchange with the matching reply.
SMTPChannel.challenge = auth.challenge

-- Closes once the queued replies are written.
function SMTPChannel:close_when_done()
  return rawget(self, "conn"):close_when_done()
end

function SMTPChannel:close()
  return rawget(self, "conn"):close()
end

-- Wiring used by the C core.
local function scan(cls)
  -- Does the class (or an ancestor below Builtins) add an smtp_ command?
  local c = cls
  while c and c ~= Builtins and c ~= Object do
    for k in pairs(c) do
      if type(k) == "string" and k:sub(1, 5) == "smtp_"
          and not builtin_funcs[k:sub(6)] then
        return true
      end
    end
    c = rawget(c, "super")
  end
  return false
end

local function command(self, verb, arg)
  local m = self["smtp_" .. verb]
  if m == nil then return rawget(self, "conn"):unknown(verb) end
  return m(self, arg)
end

local function make(cls, server, conn)
  return cls(server, conn, conn:getpeername(), rawget(server, "_opts"))
end

core.setup {
  base = SMTPChannel, builtins = builtin_funcs, scan = scan,
  command = command, make = make, auth = auth.run,
  abandon = require("smtpd.wait").abandon,
  connect = function(server, peer) return server:check_connection(peer) end,
}

return SMTPChannel

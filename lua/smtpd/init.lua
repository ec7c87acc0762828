-- lua-smtpd: an SMTP server library with a C core on libuv, the successor
-- for Lua of Python's smtpd module.

local core = require "smtpd.core"

-- Python's names where smtpd users expect them (__version__, loop's
-- use_poll, process_message's kwargs); Lua's everywhere else.
local smtpd = {
  core = core,
  _VERSION = core.VERSION,              -- "0.2.0": the rock's version
  __version__ = core.version,           -- "Lua SMTP proxy version 0.2.0"
  DATA_SIZE_DEFAULT = core.DATA_SIZE_DEFAULT,
  socket_map = require("smtpd.util").socket_map,
  Object = require("smtpd.class").Object,
  SMTPChannel = require "smtpd.channel",
  SMTPServer = require "smtpd.server",
  DebuggingServer = require "smtpd.debugging",
  PureProxy = require "smtpd.proxy",
  MailmanProxy = require "smtpd.mailman",
  CatchingServer = require "smtpd.catching",
  MaildirServer = require("smtpd.mailbox").MaildirServer,
  MboxServer = require("smtpd.mailbox").MboxServer,
  LMTPServer = require "smtpd.lmtp",
  sleep = require("smtpd.wait").sleep,
  sendmail = require("smtpd.sendmail").sendmail,
  -- compare_digest(a, b): string equality in time that does not depend
  -- on where they differ: for passwords, tokens and digests.
  compare_digest = core.compare_digest,
  interact = require("smtpd.repl").interact,
  reload = require("smtpd.repl").reload,
  repr = require("smtpd.repl").repr,
  message = require "smtpd.message",
}

-- What reaches the world, loaded when first used: smtpd.dns,
-- smtpd.http, smtpd.redis, smtpd.socket, smtpd.store(url), smtpd.spf,
-- smtpd.dkim, smtpd.dmarc, smtpd.arc, smtpd.authres.
local LAZY = {dns = "smtpd.dns", http = "smtpd.http", redis = "smtpd.redis",
              socket = "smtpd.socket", store = "smtpd.store", spf = "smtpd.spf",
              dkim = "smtpd.dkim", dmarc = "smtpd.dmarc", arc = "smtpd.arc",
              authres = "smtpd.authres"}
setmetatable(smtpd, {__index = function(t, k)
  local mod = LAZY[k]
  if not mod then return nil end
  local v = require(mod)
  rawset(t, k, v)
  return v
end})

-- A new, independent socket map (tests use one each).
function smtpd.new_map()
  return core.map()
end

-- smtpd.loop(timeout, use_poll, map, count) or smtpd.loop{timeout=, map=,
-- count=}: runs the map's loop like asyncore.loop. Without count it runs
-- until nothing is left in the map; with count, that many iterations, each
-- waiting at most timeout seconds (default 30). use_poll is ignored.
function smtpd.loop(timeout, use_poll, map, count)
  if type(timeout) == "table" then
    local t = timeout
    timeout, map, count = t.timeout, t.map, t.count
  end
  map = map or smtpd.socket_map
  if timeout ~= nil and type(timeout) ~= "number" then
    error("loop: timeout must be a number", 2)
  end
  if count ~= nil and math.type(count) ~= "integer" then
    error("loop: count must be an integer", 2)
  end
  return map:loop(timeout, count)
end

-- Closes every server and channel in the map.
function smtpd.close_all(map)
  return (map or smtpd.socket_map):close_all()
end

return smtpd

-- AUTH (RFC 4954): the driver the core runs, in a coroutine like every
-- hook, for an AUTH command that passed the core's own checks (TLS when
-- required, not inside a transaction, not authenticated yet, a mechanism
-- that is advertised).
--
-- A mechanism is a function(channel, initial) that returns the name of
-- the authenticated user, or nil/false to refuse. It may call
-- channel:challenge(text) to send "334 <base64 text>" and get the client's
-- decoded answer, and may wait (smtpd.sleep, smtpd.sendmail, ...). A
-- channel class adds or replaces one by defining auth_<MECHANISM>.
--
-- The built-in ones ask server:authenticate(channel, mechanism, user,
-- secret): only `true` accepts. CRAM-MD5 asks server:get_password(user).

local core = require "smtpd.core"
local wait = require "smtpd.wait"

local M = {}

-- An answer that ends the exchange with this reply and is no failed
-- attempt (cancel, bad base64, a line too long).
local Stop = {}
Stop.__index = Stop
local function stop(reply)
  error(setmetatable({reply = reply}, Stop), 0)
end
M.stop = stop

local REPLIES = core.REPLIES

-- Names and secrets with control characters never reach a script (they
-- end up in logs and headers).
local function clean(s, max)
  return type(s) == "string" and #s > 0 and #s <= max
         and not s:find("[%c]")
end

-- server:authenticate(...) == true, and nothing else, accepts.
local function check(channel, mech, user, secret)
  local server = rawget(channel, "smtp_server")
  local f = server.authenticate
  if type(f) ~= "function" then return nil end
  if f(server, channel, mech, user, secret) == true then return user end
  return nil
end

-- The initial response, or the answer to an empty challenge.
local function first(channel, initial)
  if initial ~= nil then return initial end
  return channel:challenge("")
end

local builtin = {}

-- RFC 4616: [authzid] NUL authcid NUL passwd.
function builtin.PLAIN(channel, initial)
  local msg = first(channel, initial)
  local authz, user, pass = msg:match("^([^\0]*)\0([^\0]*)\0([^\0]*)$")
  if not (authz and clean(user, 255) and clean(pass, 255) and #authz <= 255)
     or (authz ~= "" and authz ~= user) then
    return nil
  end
  return check(channel, "PLAIN", user, pass)
end

function builtin.LOGIN(channel, initial)
  local user = initial
  if user == nil then user = channel:challenge("Username:") end
  local pass = channel:challenge("Password:")
  if not (clean(user, 255) and clean(pass, 255)) then return nil end
  return check(channel, "LOGIN", user, pass)
end

builtin["CRAM-MD5"] = function(channel, initial)
  if initial ~= nil then
    stop(REPLIES.AUTH_CRAM_INITIAL)
  end
  local server = rawget(channel, "smtp_server")
  local nonce = core.random(12):gsub(".", function(c)
    return ("%02x"):format(c:byte())
  end)
  local chal = ("<%s.%d@%s>"):format(nonce, os.time(), channel.fqdn)
  local answer = channel:challenge(chal)
  local user, digest = answer:match("^(%S+) (%x+)$")
  if not clean(user, 255) or #digest ~= 32 then return nil end
  local password = server:get_password(user)
  if type(password) ~= "string" then return nil end
  if core.compare_digest(core.hmac_md5_hex(password, chal), digest:lower())
  then
    return user
  end
  return nil
end

-- Google's XOAUTH2: "user=" u ^A "auth=Bearer " token ^A ^A. A refusal is
-- a 334 with an error document, answered by an empty line, then 535.
function builtin.XOAUTH2(channel, initial)
  local msg = first(channel, initial)
  local user, token = msg:match("^user=([^\1]*)\1auth=Bearer ([^\1]*)\1\1$")
  local ok = clean(user, 255) and clean(token, 12288)
             and check(channel, "XOAUTH2", user, token)
  if ok then return ok end
  channel:challenge('{"status":"401","schemes":"bearer"}')
  return nil
end

-- RFC 7628: gs2-header ^A "auth=Bearer " token ^A ... ^A. A refusal is a
-- 334 with an error document, answered by ^A, then 535.
function builtin.OAUTHBEARER(channel, initial)
  local msg = first(channel, initial)
  local gs2, kvs = msg:match("^(n,[^\1]*)\1(.*)\1$")
  local user, token
  if gs2 then
    user = gs2:match("^n,a=([^,]*),") or ""
    for kv in (kvs .. "\1"):gmatch("([^\1]*)\1") do
      local t = kv:match("^auth=[Bb]earer (.+)$")
      if t then token = t end
    end
  end
  local ok = user and clean(token, 12288) and (user == "" or clean(user, 255))
             and check(channel, "OAUTHBEARER", user, token)
  if ok then return ok end
  channel:challenge('{"status":"invalid_token","schemes":"bearer"}')
  return nil
end

-- RFC 4422 A: the client's verified TLS certificate. The user is the
-- identity the client asks for, else the certificate's common name; the
-- secret handed to authenticate is the certificate's SHA-256 fingerprint.
function builtin.EXTERNAL(channel, initial)
  local tls = channel.tls
  local authz = first(channel, initial)
  if not (tls and tls.peer_verified) then return nil end
  local user = authz ~= "" and authz or tls.peer_cn
  if not clean(user, 255) then return nil end
  return check(channel, "EXTERNAL", user, tls.peer_fingerprint)
end

M.builtin = builtin

-- The mechanism a channel class defines (auth_<MECH>) or a built-in one.
local function mechanism(channel, mech)
  local f = channel["auth_" .. mech]
  if type(f) == "function" then return f end
  return builtin[mech]
end

-- What a class chain defines as auth_<MECH> methods.
local function custom_mechs(cls)
  local found, seen = {}, {}
  local c = cls
  while type(c) == "table" and not seen[c] do
    seen[c] = true
    for k, v in pairs(c) do
      if type(k) == "string" and type(v) == "function"
         and k:match("^auth_[A-Z0-9%-_]+$") then
        found[#found + 1] = k:sub(6)
      end
    end
    c = rawget(c, "super")
  end
  table.sort(found)
  return found
end

-- The mechanisms a server advertises, space separated, or nil (no AUTH:
-- the session is smtpd's). Default: PLAIN and LOGIN when the server has
-- an authenticate method, and every auth_<MECH> of the channel class.
-- opts.auth_mechanisms lists them instead (CRAM-MD5, XOAUTH2, OAUTHBEARER
-- and EXTERNAL are offered only when listed).
function M.mechanisms(server, channel_class, list)
  local custom = custom_mechs(channel_class)
  local has = {}
  for _, m in ipairs(custom) do has[m] = true end
  local out = {}
  if list == nil then
    if type(server.authenticate) == "function" then
      out[1], out[2] = "PLAIN", "LOGIN"
    end
    for _, m in ipairs(custom) do
      if m ~= "PLAIN" and m ~= "LOGIN" then out[#out + 1] = m end
    end
  else
    if type(list) == "string" then
      local t = {}
      for w in list:gmatch("%S+") do t[#t + 1] = w end
      list = t
    end
    if type(list) ~= "table" then
      return nil, "auth_mechanisms must be a list of mechanism names"
    end
    for _, m in ipairs(list) do
      if type(m) ~= "string" then
        return nil, "auth_mechanisms must be a list of mechanism names"
      end
      m = m:upper()
      if not (has[m] or builtin[m]) then
        return nil, ("auth_mechanisms: unknown mechanism %q (define "
                     .. "auth_%s in the channel class)"):format(m, m)
      end
      if not has[m] then
        if m == "CRAM-MD5" and type(server.get_password) ~= "function" then
          return nil, "auth_mechanisms: CRAM-MD5 needs server:get_password"
        elseif m ~= "CRAM-MD5" and type(server.authenticate) ~= "function"
        then
          return nil, ("auth_mechanisms: %s needs server:authenticate")
                      :format(m)
        end
      end
      out[#out + 1] = m
    end
  end
  if #out == 0 then return nil end
  return table.concat(out, " ")
end

local function traceback(err)
  if getmetatable(err) == Stop then return err end
  return debug.traceback(tostring(err), 2)
end

-- A failed attempt: a delay that grows with each failure (it parks this
-- channel only), 535, and past max_auth_failures 421 and close.
local function failed(channel, conn)
  local server = rawget(channel, "smtp_server")
  local conf = rawget(server, "_conf") or core.OPTIONS.server
  local n = conn:auth_failed()
  local base = conf.auth_failure_delay
  if base and base > 0 then
    wait.sleep(math.min(base * 2 ^ (n - 1), 30))
    if not conn:is_open() then return end
  end
  conn:push(REPLIES.AUTH_INVALID)
  local max = conf.max_auth_failures
  if max and max > 0 and n >= max then
    conn:push(REPLIES.TOO_MANY_AUTH:format(channel.fqdn))
    conn:close_when_done()
  end
end

-- auth(channel, mech, initial): mech is upper case and advertised;
-- initial is the raw initial response or nil.
function M.run(channel, mech, initial)
  local conn = rawget(channel, "conn")
  local init
  if initial == "*" then
    return conn:push(REPLIES.AUTH_CANCELLED)
  elseif initial == "=" then
    init = ""
  elseif initial ~= nil then
    init = core.b64decode(initial)
    if init == nil then
      return conn:push(REPLIES.AUTH_BASE64)
    end
  end
  local f = mechanism(channel, mech)
  if f == nil then
    return conn:push(REPLIES.AUTH_UNKNOWN)
  end
  local ok, user = xpcall(f, traceback, channel, init)
  if not conn:is_open() then return end
  if not ok then
    if getmetatable(user) == Stop then return conn:push(user.reply) end
    local server = rawget(channel, "smtp_server")
    server:log("error", "error in AUTH %s: %s", mech, tostring(user))
    return conn:push(REPLIES.AUTH_TEMPFAIL)
  end
  if type(user) == "string" and user ~= "" and not user:find("[%c]") then
    conn:auth_done(user)
    return conn:push(REPLIES.AUTH_OK)
  end
  return failed(channel, conn)
end

-- channel:challenge(text) -> the client's answer, decoded. Sends
-- "334 " .. base64(text) and waits for the next line; a "*" (cancel),
-- bad base64 or a line too long ends the exchange with its 501/500.
function M.challenge(channel, text)
  local conn = rawget(channel, "conn")
  if type(text) ~= "string" then
    error("challenge: text must be a string", 2)
  end
  conn:challenge(core.b64encode(text))
  local line = coroutine.yield(core.LINE)
  if line == nil then
    stop(REPLIES.AUTH_TOO_LONG)
  elseif line == "*" then
    stop(REPLIES.AUTH_CANCELLED)
  end
  local v = core.b64decode(line)
  if v == nil then stop(REPLIES.AUTH_BASE64) end
  return v
end

return M

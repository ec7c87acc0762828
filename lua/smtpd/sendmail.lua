-- smtpd.sendmail: one message to an SMTP or LMTP server, through the C
-- client (csrc/smtp/client.c), waiting as the helpers of smtpd.wait do.

local core = require "smtpd.core"
local options = require "smtpd.options"
local util = require "smtpd.util"
local wait = require "smtpd.wait"

-- The options it takes: the client's (core.OPTIONS.relay), its MAIL
-- parameters and the map to run on.
local KNOWN = options.set(core.OPTIONS.relay)
KNOWN.mail_options = true
KNOWN.map = true
-- TLS and AUTH towards the upstream (checked here, flattened for the C
-- client): starttls = "require" | "opportunistic" | false, implicit_tls,
-- tls = {verify = true, ca =, sni =, cert =, key =},
-- auth = {user =, password = | password_env = | password_file =,
--         mechanism = "PLAIN" | "LOGIN", plaintext = false}.
KNOWN.starttls = true
KNOWN.implicit_tls = true
KNOWN.tls = true
KNOWN.auth = true
KNOWN.dsn = true

local STARTTLS = {require = 2, opportunistic = 1}
local TLS_KEYS = {verify = true, ca = true, sni = true, cert = true,
                  key = true}
local AUTH_KEYS = {user = true, password = true, password_env = true,
                   password_file = true, mechanism = true, plaintext = true}

-- Checks relay.starttls, .implicit_tls, .tls and .auth; raises at the
-- user's call. Returns nothing.
local function check_tls(opts, what)
  local st = opts.starttls
  if st ~= nil and st ~= false and not STARTTLS[st] then
    util.raise(what .. ' starttls must be "require", "opportunistic" or '
               .. "false")
  end
  if opts.implicit_tls ~= nil and type(opts.implicit_tls) ~= "boolean" then
    util.raise(what .. " implicit_tls must be true or false")
  end
  if opts.implicit_tls and st then
    util.raise(what .. " implicit_tls and starttls exclude each other")
  end
  local tls = opts.tls
  if tls ~= nil then
    if type(tls) ~= "table" then util.raise(what .. " tls must be a table") end
    options.check(tls, TLS_KEYS, what .. " tls option")
    for _, k in ipairs({"ca", "sni", "cert", "key"}) do
      if tls[k] ~= nil and type(tls[k]) ~= "string" then
        util.raise(("%s tls.%s must be a string"):format(what, k))
      end
    end
    if tls.verify ~= nil and type(tls.verify) ~= "boolean" then
      util.raise(what .. " tls.verify must be true or false")
    end
  end
  local a = opts.auth
  if a ~= nil then
    if type(a) ~= "table" then util.raise(what .. " auth must be a table") end
    options.check(a, AUTH_KEYS, what .. " auth option")
    if type(a.user) ~= "string" or a.user == "" then
      util.raise(what .. " auth.user must be a non-empty string")
    end
    local n = (a.password and 1 or 0) + (a.password_env and 1 or 0)
              + (a.password_file and 1 or 0)
    if n ~= 1 then
      util.raise(what .. " auth needs one of password, password_env, "
                 .. "password_file")
    end
    if a.mechanism ~= nil and a.mechanism ~= "PLAIN"
       and a.mechanism ~= "LOGIN" then
      util.raise(what .. ' auth.mechanism must be "PLAIN" or "LOGIN"')
    end
  end
end

-- The password of relay.auth, read now (a file or the environment may
-- change between messages); nil, why when it cannot be had.
local function password(a)
  if a.password then return a.password end
  if a.password_env then
    local v = os.getenv(a.password_env)
    if not v or v == "" then
      return nil, "environment variable " .. a.password_env .. " is not set"
    end
    return v
  end
  local f, err = io.open(a.password_file, "rb")
  if not f then return nil, err end
  local v = f:read("l")
  f:close()
  if not v or v == "" then return nil, a.password_file .. " is empty" end
  return v
end

-- smtpd.sendmail(remoteaddr, mailfrom, rcpttos, data, opts) -> refused
-- | nil, err, info. refused maps each refused recipient to {code, message}
-- (empty when all were accepted). On failure err says why and info holds
-- stage, code, message, timeout and refused (every recipient).
-- Each refusal is {code, message, stage}: stage "rcpt" (refused at RCPT),
-- "message" (LMTP: refused after the data) or where the whole relay failed.
-- opts: helo, timeout (each step, default 60 s), connect_timeout (30 s),
-- mail_options, lmtp, tempfail_aborts (a 4xx to any RCPT sends no data and
-- fails the whole transaction), map.
local check_options

-- opts.dsn = {ret =, envid =, rcpt = {[address] = {notify =, orcpt =}}}
-- (the form of process_message's kwargs.dsn): RFC 3461's parameters, sent
-- only to an upstream that offers DSN. Malformed values raise.
local function dsn_lists(dsn, rcpttos)
  if dsn == nil then return nil end
  if type(dsn) ~= "table" then util.raise("sendmail: dsn must be a table") end
  local function check(v, pattern, what)
    if v ~= nil and (type(v) ~= "string" or not v:match(pattern)
                     or v:find("=", 1, true)) then
      util.raise(("sendmail: dsn %s %s is malformed"):format(what,
                                                             tostring(v)))
    end
    return v
  end
  local mail = {}
  local ret = check(dsn.ret, "^%a+$", "ret")
  if ret then
    if ret:upper() ~= "FULL" and ret:upper() ~= "HDRS" then
      util.raise("sendmail: dsn ret must be FULL or HDRS")
    end
    mail[#mail + 1] = "RET=" .. ret:upper()
  end
  local envid = check(dsn.envid, "^[!-~]+$", "envid")
  if envid then mail[#mail + 1] = "ENVID=" .. envid end
  local notify, orcpt = {}, {}
  local per = type(dsn.rcpt) == "table" and dsn.rcpt or {}
  for i, r in ipairs(rcpttos) do
    local d = type(per[r]) == "table" and per[r] or {}
    notify[i] = check(d.notify, "^[%a,]+$", "notify") or "-"
    orcpt[i] = check(d.orcpt, "^[%w%-]+;[!-~]+$", "orcpt") or "-"
  end
  return mail, notify, orcpt
end

local function sendmail(remoteaddr, mailfrom, rcpttos, data, opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    util.raise("sendmail: opts must be a table")
  end
  check_options(opts, "sendmail option")
  local addr = util.parse_addr(remoteaddr, "remoteaddr")
  rcpttos = util.strings(rcpttos)
  if not rcpttos or #rcpttos == 0 then
    util.raise("sendmail: rcpttos must be a recipient or a non-empty list")
  end
  if type(data) ~= "string" then
    util.raise("sendmail: data must be a string")
  end
  if mailfrom == nil or mailfrom == "" then mailfrom = "<>" end
  local spec = {
    host = addr[1], port = addr[2], mailfrom = mailfrom, rcpttos = rcpttos,
    data = data, helo = opts.helo, timeout = opts.timeout,
    connect_timeout = opts.connect_timeout, lmtp = opts.lmtp,
    mail_options = opts.mail_options, tempfail_aborts = opts.tempfail_aborts,
    starttls = STARTTLS[opts.starttls] or 0, implicit_tls = opts.implicit_tls,
  }
  spec.dsn_mail, spec.dsn_notify, spec.dsn_orcpt = dsn_lists(opts.dsn,
                                                             rcpttos)
  local tls = opts.tls or {}
  spec.tls_verify = tls.verify ~= false
  spec.tls_ca, spec.tls_sni = tls.ca, tls.sni
  spec.tls_cert, spec.tls_key = tls.cert, tls.key
  if opts.auth then
    local pw, why = password(opts.auth)
    if not pw then
      local err = "auth: cannot read the password: " .. tostring(why)
      local refused = {}
      for _, r in ipairs(rcpttos) do refused[r] = {-1, err, "auth"} end
      return nil, err, {ok = false, stage = "auth", error = err, code = -1,
                        message = "", refused = refused, timeout = false}
    end
    spec.auth_user, spec.auth_password = opts.auth.user, pw
    spec.auth_mechanism = opts.auth.mechanism
    spec.auth_plaintext = opts.auth.plaintext
  end
  local result = wait.wait(opts.map, function(map, done)
    return core.client_send(map, spec, done)
  end, "smtpd.sendmail")
  if result.ok then return result.refused, result end
  return nil, result.error, result
end

-- Checks a table of sendmail's options (PureProxy's relay): unknown
-- names and wrong values raise, at the user's call.
function check_options(opts, what)
  options.check(opts, KNOWN, what)
  check_tls(opts, what)
  local ok, err = pcall(core.check_options, "relay", opts)
  if not ok then util.raise(err) end
end

return {sendmail = sendmail, check_options = check_options}

-- smtpd.sendmail: one message to an SMTP or LMTP server, through the C
-- client (csrc/smtp/client.c), waiting as the helpers of smtpd.wait do.

local core = require "smtpd.core"
local options = require "smtpd.options"
local util = require "smtpd.util"
local wait = require "smtpd.wait"

local M = {}

-- The relay options (core.OPTIONS.relay: helo, timeout, connect_timeout,
-- lmtp, tempfail_aborts, at, starttls, implicit_tls, tls = {verify, ca,
-- sni, cert, key}, auth = {user, password | password_env |
-- password_file, mechanism, plaintext}) are read by the core, once; the
-- message's own options are sendmail's.
local RELAY = options.set(core.OPTIONS.relay)
local KNOWN = options.set(core.OPTIONS.relay)
KNOWN.mail_options = true
KNOWN.map = true
KNOWN.dsn = true
KNOWN.dkim = true

-- dkim = smtpd.dkim.sign's options: checked by signing a small message
-- (a key that does not read fails here, at the user's call).
function M.check_dkim(dk)
  if type(dk) ~= "table" then util.raise("dkim must be a table (smtpd.dkim.sign's options)") end
  local ok, err = pcall(require("smtpd.dkim").sign, "From: check@example.invalid\n\n", dk)
  if not ok then util.raise("dkim: " .. tostring(err):gsub("^[^\n]-%.lua:%d+: ", "")) end
end

-- arc = smtpd.arc.seal's options, checked the same way.
function M.check_arc(o)
  if type(o) ~= "table" then util.raise("arc must be a table (smtpd.arc.seal's options)") end
  local ok, err = pcall(require("smtpd.arc").seal, "From: check@example.invalid\n\n",
                        setmetatable({cv = "none", instances = 0}, {__index = o}))
  if not ok then util.raise("arc: " .. tostring(err):gsub("^[^\n]-%.lua:%d+: ", "")) end
end

-- data with a new ARC set on top (unchanged when the chain takes no more).
function M.arc_seal(data, o)
  local fields = require("smtpd.arc").seal(data, o)
  if not fields then return data end
  return fields:gsub("\r\n", "\n") .. "\n" .. data
end

-- data with its DKIM-Signature field(s) on top.
function M.dkim_sign(data, dk)
  local field = require("smtpd.dkim").sign(data, dk)
  return field:gsub("\r\n", "\n") .. "\n" .. data
end

-- The relay options of opts (a table that may hold more), read into a
-- conf for remoteaddr: raises (at the user's call) on a bad option;
-- nil, why, name when a CA file or a client certificate cannot be
-- loaded (why without the "EINVAL: " of core.relay_conf).
function M.conf(map, remoteaddr, opts)
  local addr = util.parse_addr(remoteaddr, "remoteaddr")
  local relay = {}
  for k, v in pairs(opts) do
    if RELAY[k] then relay[k] = v end
  end
  local ok, conf, why, name = pcall(core.relay_conf, map or util.socket_map,
                                    addr[1], addr[2], relay)
  if not ok then util.raise(conf) end
  if not conf then return nil, (why:gsub("^%u+: ", "")), name end
  return conf
end

-- Checks a table of relay options (PureProxy's relay): unknown names and
-- wrong values raise, at the user's call.
function M.check_options(opts, what)
  options.check(opts, RELAY, what)
  local ok, err = pcall(core.check_options, "relay", opts)
  if not ok then util.raise(err) end
end

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

-- What a relay that could not start says for every recipient.
local function failure(rcpttos, stage, err)
  local refused = {}
  for _, r in ipairs(rcpttos) do refused[r] = {-1, err, stage} end
  return nil, err, {ok = false, stage = stage, error = err, code = -1,
                    message = "", refused = refused, timeout = false}
end

-- One message through conf (M.conf): what smtpd.sendmail returns.
function M.send(conf, map, mailfrom, rcpttos, data, opts)
  local envelope = {mailfrom = mailfrom, rcpttos = rcpttos, data = data,
                    mail_options = opts.mail_options}
  envelope.dsn_mail, envelope.dsn_notify, envelope.dsn_orcpt =
    dsn_lists(opts.dsn, rcpttos)
  local result = wait.wait(map, function(m, done)
    return core.client_send(m, conf, envelope, done)
  end, "smtpd.sendmail")
  if result.ok then return result.refused, result end
  return nil, result.error, result
end

-- smtpd.sendmail(remoteaddr, mailfrom, rcpttos, data, opts) -> refused
-- | nil, err, info. refused maps each refused recipient to {code,
-- message, stage} (empty when all were accepted): stage "rcpt" (refused
-- at RCPT), "message" (LMTP: refused after the data) or where the whole
-- relay failed. On failure err says why and info holds stage, code,
-- message, timeout and refused (every recipient). remoteaddr may be
-- "unix:/path" (LMTP to Dovecot or Postfix's private sockets).
-- opts: the relay options above, mail_options (MAIL parameters), dsn,
-- map. By default a 4xx to any RCPT sends no data and fails the whole
-- message (tempfail_aborts).
function M.sendmail(remoteaddr, mailfrom, rcpttos, data, opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    util.raise("sendmail: opts must be a table")
  end
  options.check(opts, KNOWN, "sendmail option")
  rcpttos = util.strings(rcpttos)
  if not rcpttos or #rcpttos == 0 then
    util.raise("sendmail: rcpttos must be a recipient or a non-empty list")
  end
  if type(data) ~= "string" then
    util.raise("sendmail: data must be a string")
  end
  if mailfrom == nil or mailfrom == "" then mailfrom = "<>" end
  if opts.dkim ~= nil then
    if type(opts.dkim) ~= "table" then
      util.raise("sendmail: dkim must be a table (smtpd.dkim.sign's options)")
    end
    local ok, signed = pcall(M.dkim_sign, data, opts.dkim)
    if not ok then util.raise("sendmail: " .. tostring(signed):gsub("^[^\n]-%.lua:%d+: ", "")) end
    data = signed
  end
  local map = opts.map or util.socket_map
  local conf, why = M.conf(map, remoteaddr, opts)
  if not conf then return failure(rcpttos, "tls", why) end
  return M.send(conf, map, mailfrom, rcpttos, data, opts)
end

return M

-- The authentication option of any server: SPF at MAIL FROM (check_sender
-- sees channel.spf), then at the end of the data DKIM, DMARC and the
-- Authentication-Results field, before process_message, which finds them
-- all in kwargs.authentication:
--
--   Server(addr, nil, {authentication = {spf = true, dkim = true,
--     dmarc = true, header = true, authserv_id = "mx.example.org",
--     dmarc_reject = false, timeout = 20}})
--
-- kwargs.authentication = {spf = result, spf_facts =, dkim = {results},
-- arc = cv, arc_facts =, dmarc = result, dmarc_facts =, header = (the
-- field added)}. With
-- dmarc_reject, a message failing DMARC whose policy is reject (after
-- pct=) gets 550 5.7.1; a temperror is never a 5xx.

local core = require "smtpd.core"
local options = require "smtpd.options"
local util = require "smtpd.util"

local M = {}

local KNOWN = {spf = true, dkim = true, dmarc = true, arc = true, header = true,
               authserv_id = true, dmarc_reject = true, timeout = true}

-- The results of a session's transaction, by its connection.
local state = setmetatable({}, {__mode = "k"})

function M.check(spec)
  if spec == true then
    spec = {spf = true, dkim = true, dmarc = true, arc = true, header = true}
  end
  if type(spec) ~= "table" then util.raise("authentication must be a table or true") end
  options.check(spec, KNOWN, "authentication option")
  if spec.timeout ~= nil and (type(spec.timeout) ~= "number" or spec.timeout <= 0) then
    util.raise("authentication.timeout must be seconds above 0")
  end
  if spec.authserv_id ~= nil and (type(spec.authserv_id) ~= "string"
                                  or not spec.authserv_id:find("^[%w.%-]+$")) then
    util.raise("authentication.authserv_id must be a host name")
  end
  return spec
end

-- The From field's domain (RFC 7489 6.6.1: one From field, its
-- addresses of one domain), read from the message's fields.
local function from_domain(fields)
  local from
  for _, f in ipairs(fields) do
    if f.name == "from" then
      if from then return nil, "several From fields" end
      from = f.raw
    end
  end
  if not from then return nil, "no From field" end
  local message = require "smtpd.message"
  local ok, msg = pcall(message.parse, from .. "\n\n")
  if not ok then return nil, "the From field does not parse" end
  local domain
  for _, a in ipairs(msg:addresses("From") or {}) do
    local d = (a.address or ""):match("@([^@]+)$")
    if not d then return nil, "a From address without a domain" end
    if domain and d:lower() ~= domain then return nil, "From addresses of several domains" end
    domain = d:lower()
  end
  if not domain then return nil, "no From address" end
  if not domain:find("^[%w%-_]+%.[%w%-_.]+$") then
    return nil, "the From domain is not a domain name"
  end
  return domain
end

local function header_for(a, spec, facts)
  local authres = require "smtpd.authres"
  local results = {}
  if a.spf then
    local f = a.spf_facts or {}
    results[#results + 1] = {method = "spf", result = a.spf, reason = f.problem,
      props = {{f.identity == "helo" and "smtp.helo" or "smtp.mailfrom",
                f.identity == "helo" and f.domain or f.sender}}}
  end
  for _, d in ipairs(a.dkim or {}) do
    results[#results + 1] = {method = "dkim", result = d.result, reason = d.reason,
      props = {{"header.d", d.domain}, {"header.s", d.selector},
               {"header.a", d.algorithm}}}
  end
  if a.arc then
    local f = a.arc_facts or {}
    results[#results + 1] = {method = "arc", result = a.arc, reason = f.reason,
      props = {{"header.oldest-pass", f.oldest_pass and f.oldest_pass < (f.instances or 0)
                                      and f.oldest_pass or nil}}}
  end
  if a.dmarc then
    local f = a.dmarc_facts or {}
    results[#results + 1] = {method = "dmarc", result = a.dmarc, reason = f.problem,
      props = {{"header.from", f.from_domain}, {"policy.dmarc", f.policy}}}
  end
  return authres.format(facts.authserv_id, results)
end

function M.install(server, spec)
  spec = M.check(spec)
  local authserv_id = spec.authserv_id or core.getfqdn() or "localhost"
  local timeout = spec.timeout or 20
  if spec.spf then
    local own = server.check_sender
    server.check_sender = function(self, channel, address, params)
      local peer = channel.peer
      local result, facts = "none", nil
      if peer and peer[1] and not tostring(peer[1]):find("^unix:") then
        result, facts = require("smtpd.spf").check{ip = peer[1],
          helo = channel.seen_greeting or "", mailfrom = address or "",
          timeout = timeout}
      end
      channel.spf = {result = result, facts = facts}
      local conn = rawget(channel, "conn")
      if conn then state[conn] = {spf = result, spf_facts = facts} end
      if own then return own(self, channel, address, params) end
    end
  end
  local own_pm = server.process_message
  rawset(server, "process_message", function(self, peer, mailfrom, rcpttos, data, kwargs)
    local conn = core.hook(coroutine.running())
    local a = {}
    local st = conn and state[conn]
    if st then a.spf, a.spf_facts = st.spf, st.spf_facts end
    -- the body hashes the core made as the data arrived
    local bodies = kwargs and kwargs._dkim_bodies
    if kwargs then kwargs._dkim_bodies = nil end
    -- the message's fields, read once for every check
    local fields, body_at = core.dkim_fields(data)
    if spec.dkim or spec.dmarc then
      a.dkim = require("smtpd.dkim").verify(data, {timeout = timeout, bodies = bodies,
                                                   fields = fields, body_at = body_at})
      a.dkim_streamed = bodies ~= nil
    end
    if spec.arc then
      a.arc, a.arc_facts = require("smtpd.arc").verify(data, {timeout = timeout,
                                                              fields = fields, body_at = body_at})
    end
    if spec.dmarc then
      local domain, why = from_domain(fields)
      if not domain then
        a.dmarc, a.dmarc_facts = "permerror", {problem = why}
      else
        local spf_domain = a.spf_facts and a.spf_facts.domain
        -- a From the checker refuses is a permerror, not a 451 forever
        local ok, r, f = pcall(require("smtpd.dmarc").check, {
          from_domain = domain, spf = {result = a.spf, domain = spf_domain},
          dkim = a.dkim, timeout = timeout})
        if ok then a.dmarc, a.dmarc_facts = r, f
        else a.dmarc, a.dmarc_facts = "permerror", {problem = tostring(r)} end
      end
    end
    if spec.header then
      local authres = require "smtpd.authres"
      data = authres.strip(data, authserv_id)
      a.header = header_for(a, spec, {authserv_id = authserv_id})
      data = a.header .. "\n" .. data
    end
    kwargs = kwargs or {}
    kwargs.authentication = a
    if spec.dmarc_reject and a.dmarc == "fail" and a.dmarc_facts and
       a.dmarc_facts.disposition == "reject" then
      return ("550 5.7.1 DMARC: %s does not accept this message from here")
             :format(a.dmarc_facts.from_domain or "the sender's domain")
    end
    return own_pm(self, peer, mailfrom, rcpttos, data, kwargs)
  end)
  return spec
end

return M

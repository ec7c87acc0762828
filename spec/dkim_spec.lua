-- smtpd.dkim: canonicalisation on RFC 6376's own example, RFC 8463's
-- Ed25519 example, signing and verifying (RSA and Ed25519, dual), the
-- results a verifier owes (l=, over-signing, sha1, short and revoked
-- keys, expiry), hostile input within bounds, and dkimpy both ways; keys
-- from a DNS server on loopback (spec/peers/zone_server.py).
local H = require "helper"
local core = H.core
local peers = require "peers"
local dkim = require "smtpd.dkim"

local z                   -- the zone server (peers.zone_server)
local server, why_not
local keys = {}

local function keygen(name, args)
  local path = os.tmpname()
  assert(os.execute(("openssl genpkey %s -out %s 2>/dev/null"):format(args, path)))
  keys[name] = path
  return assert(H.readfile(path))
end

local function use_zone(map, zone) z.use(map, zone) end
local function new_map() return z.map(1) end

local MSG = "From: Alice <alice@example.com>\nTo: bob@example.net\n"
  .. "Subject: the  plan\nDate: Fri, 04 Dec 2026 10:00:00 +0000\n"
  .. "Message-ID: <1@example.com>\n\nHello  there\n\nsee you\n\n\n"

describe("DKIM canonicalisation", function()
  it("gives RFC 6376 section 3.4.6's example", function()
    local head = "A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n"
    local body = " C \r\nD \t E\r\n\r\n\r\n"
    local fields, at = core.dkim_fields(head .. body)
    assert.equal(2, #fields)
    assert.equal("a:X\r\nb:Y Z\r\n",
                 core.dkim_canon_header(fields[1].raw, true, true)
                 .. core.dkim_canon_header(fields[2].raw, true, true))
    assert.equal("A: X\r\nB : Y\t\r\n\tZ  \r\n",
                 core.dkim_canon_header(fields[1].raw, false, true)
                 .. core.dkim_canon_header(fields[2].raw, false, true))
    assert.equal(#head + 1, at)
    local function sha(s)
      local path = os.tmpname()
      local f = assert(io.open(path, "wb"))
      f:write(s)
      f:close()
      local out = H.capture("openssl dgst -sha256 -binary " .. path .. " | base64")
      os.remove(path)
      return (out:gsub("%s+$", ""))
    end
    local d, total = core.dkim_body_hash(head .. body, at, true, "rsa-sha256")
    assert.equal(sha(" C\r\nD E\r\n"), d)
    assert.equal(#" C\r\nD E\r\n", total)
    d, total = core.dkim_body_hash(head .. body, at, false, "rsa-sha256")
    assert.equal(sha(" C \r\nD \t E\r\n"), d)
    -- empty bodies: CRLF (simple), nothing (relaxed); LF line ends count
    assert.equal(sha("\r\n"), (core.dkim_body_hash("A: x\n\n", 7, false, "rsa-sha256")))
    assert.equal(sha(""), (core.dkim_body_hash("A: x\n\n", 7, true, "rsa-sha256")))
    assert.equal(sha("a\r\nb\r\n"), (core.dkim_body_hash("a\nb", 1, false, "rsa-sha256")))
    -- l= counts canonical bytes
    local _, tot, hashed = core.dkim_body_hash("abc\r\ndef\r\n", 1, false, "rsa-sha256", 4)
    assert.same({10, 4}, {tot, hashed})
  end)

  it("reads tag lists strictly", function()
    local t, order = core.dkim_tags(" v=1; a = rsa-sha256 ;\r\n\tb=ab\r\n cd; x=;")
    assert.same({"v", "a", "b", "x"}, order)
    assert.equal("rsa-sha256", t.a)
    assert.equal("ab\r\n cd", t.b)
    assert.equal("", t.x)
    for _, bad in ipairs({"v=1; v=1", "=x", "1a=b", "a", "a=b\0c"}) do
      assert.is_nil(core.dkim_tags(bad), bad)
    end
  end)
end)

describe("smtpd.dkim", function()
  setup(function()
    z = peers.zone_server()
    server, why_not = z.peer, z.why
  end)
  teardown(function()
    z.stop()
    for _, p in pairs(keys) do os.remove(p) end
  end)

  it("verifies RFC 8463's Ed25519 example", function()
    if not server then H.skip(why_not) return end
    local map = new_map()
    use_zone(map, {["brisbane._domainkey.football.example.com"] =
      {{TXT = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}}})
    local msg = table.concat({
      "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;",
      " d=football.example.com; i=@football.example.com;",
      " q=dns/txt; s=brisbane; t=1528637909; h=from : to :",
      " subject : date : message-id : from : subject : date;",
      " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;",
      " b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus",
      " Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==",
      "From: Joe SixPack <joe@football.example.com>",
      "To: Suzie Q <suzie@shopping.example.net>",
      "Subject: Is dinner ready?",
      "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)",
      "Message-ID: <20030712040037.46341.5F8J@football.example.com>",
      "", "Hi.", "", "We lost the game.  Are you hungry yet?", "", "Joe."}, "\r\n")
    local r = dkim.verify(msg, {map = map})
    assert.equal(1, #r)
    assert.equal("pass", r[1].result, r[1].reason)
    assert.equal("football.example.com", r[1].domain)
    assert.equal("brisbane", r[1].selector)
    assert.equal("ed25519-sha256", r[1].algorithm)
    -- the same bytes with LF line ends (as process_message has them)
    assert.equal("pass", dkim.verify(msg:gsub("\r\n", "\n"), {map = map})[1].result)
    assert.equal("fail", dkim.verify(msg:gsub("hungry", "angry"), {map = map})[1].result)
  end)

  it("signs with RSA and Ed25519 at once, and verifies what it signed", function()
    if not server then H.skip(why_not) return end
    local map = new_map()
    local rsa = keygen("rsa", "-algorithm RSA -pkeyopt rsa_keygen_bits:2048")
    local ed = keygen("ed", "-algorithm ED25519")
    local short = keygen("short", "-algorithm RSA -pkeyopt rsa_keygen_bits:512")
    use_zone(map, {
      ["r1._domainkey.example.com"] = {{TXT = dkim.key_record(rsa)}},
      ["e1._domainkey.example.com"] = {{TXT = dkim.key_record(ed, "ed25519-sha256")}},
      ["short._domainkey.example.com"] = {{TXT = dkim.key_record(short)}},
      ["gone._domainkey.example.com"] = {{TXT = "v=DKIM1; k=rsa; p="}},
      ["big._domainkey.example.com"] = {{TXT = "v=DKIM1; p=" .. ("A"):rep(10240)}},
      ["slow._domainkey.example.com"] = {"TIMEOUT"},
    })
    local fields = dkim.sign(MSG, {domain = "example.com", keys = {
      {selector = "r1", key = keys.rsa},
      {selector = "e1", key = ed, algorithm = "ed25519-sha256"}}})
    assert.matches("^DKIM%-Signature: v=1; a=rsa%-sha256;", fields)
    local signed = fields .. "\r\n" .. MSG
    local r = dkim.verify(signed, {map = map})
    assert.equal(2, #r)
    assert.equal("pass", r[1].result, r[1].reason)
    assert.equal("pass", r[2].result, r[2].reason)
    assert.equal(2048, r[1].bits)
    assert.equal("rsa-sha256", r[1].algorithm)
    assert.equal("ed25519-sha256", r[2].algorithm)
    -- From, Subject, ... are over-signed: a second From added later breaks it
    assert.same({"date", "from", "subject", "to"}, r[1].oversigned)
    local added = dkim.verify(fields .. "\r\nFrom: mallory@evil.test\r\n" .. MSG, {map = map})
    assert.equal("fail", added[1].result)
    -- a changed body, a changed header
    assert.equal("fail", dkim.verify(signed:gsub("see you", "see me"), {map = map})[1].result)
    assert.equal("the body hash does not verify",
                 dkim.verify(signed:gsub("see you", "see me"), {map = map})[1].reason)
    assert.equal("fail", dkim.verify(signed:gsub("the  plan", "the plot"), {map = map})[2].result)
    -- relaxed canonicalisation forgives whitespace changes
    assert.equal("pass", dkim.verify(signed:gsub("Hello  there", "Hello there"), {map = map})[1].result)
    -- simple/simple does not
    local simple = dkim.sign(MSG, {domain = "example.com", selector = "r1", key = rsa,
                                   canonicalization = "simple/simple"})
    assert.equal("pass", dkim.verify(simple .. "\r\n" .. MSG, {map = map})[1].result)
    assert.equal("fail", dkim.verify(simple .. "\r\n" .. MSG:gsub("Hello  there", "Hello there"),
                                     {map = map})[1].result)
    -- keys: too short, revoked, absent, malformed, unreachable
    local function one(selector, key)
      local f = dkim.sign(MSG, {domain = "example.com", selector = selector, key = key or rsa})
      return dkim.verify(f .. "\r\n" .. MSG, {map = map, timeout = 0.5})[1]
    end
    local s = one("short", short)
    assert.equal("permerror", s.result)
    assert.matches("512 bits", s.reason)
    assert.equal("permerror", one("gone").result)
    assert.matches("revoked", one("gone").reason)
    assert.equal("permerror", one("nokey").result)
    assert.equal("permerror", one("big").result)
    assert.equal("temperror", one("slow").result)
    -- expiry
    local exp = dkim.sign(MSG, {domain = "example.com", selector = "r1", key = rsa,
                                timestamp = 1000, expire = 60})
    local e = dkim.verify(exp .. "\r\n" .. MSG, {map = map})[1]
    assert.equal("fail", e.result)
    assert.equal("the signature expired", e.reason)
  end)

  it("stays bounded on hostile messages", function()
    if not server then H.skip(why_not) return end
    local map = new_map()
    use_zone(map, {})
    -- one signature with a 64 KiB b=, then 999 more
    local big = "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=x; h=from; "
                .. "bh=AAAA; b=" .. ("A"):rep(65536) .. "\r\n"
    local sig = "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=x; h=from; "
                .. "bh=AAAA; b=AAAA\r\n"
    local t0 = H.now()
    local r = dkim.verify(big .. sig:rep(999) .. MSG, {map = map, timeout = 0.5})
    assert.equal(1000, #r)
    assert.equal("permerror", r[1].result)            -- no key for s=x
    assert.equal("neutral", r[11].result)              -- not checked
    assert.is_true(H.now() - t0 < 10)
    for _, bad in ipairs({"DKIM-Signature: v=2; a=rsa-sha256; d=a.b; s=x; h=from; bh=; b=",
                          "DKIM-Signature: v=1; a=rsa-md5; d=a.b; s=x; h=from; bh=; b=",
                          "DKIM-Signature: v=1; a=rsa-sha256; d=a.b; s=x; h=to; bh=; b=",
                          "DKIM-Signature: v=1; a=rsa-sha256; d=a.b; s=x; h=from; bh=; b=; i=@c.d",
                          "DKIM-Signature: garbage"}) do
      local res = dkim.verify(bad .. "\r\n" .. MSG, {map = map})
      assert.equal("permerror", res[1].result, bad)
    end
    assert.same({}, dkim.verify(MSG, {map = map}))
  end)

  it("agrees with dkimpy both ways, l= and rsa-sha1 reported", function()
    if not server then H.skip(why_not) return end
    local py = H.python_with("dkim")
    if not py and H.apt_install("python3-dkim") then py = H.python_with("dkim") end
    if not py then H.skip("python3-dkim is not installed") return end
    local map = new_map()
    local rsa = keys.rsa and assert(H.readfile(keys.rsa))
                or keygen("rsa", "-algorithm RSA -pkeyopt rsa_keygen_bits:2048")
    local ed = keys.ed and assert(H.readfile(keys.ed)) or keygen("ed", "-algorithm ED25519")
    use_zone(map, {
      ["r1._domainkey.example.com"] = {{TXT = dkim.key_record(rsa)}},
      ["e1._domainkey.example.com"] = {{TXT = dkim.key_record(ed, "ed25519-sha256")}},
    })
    local msgfile = os.tmpname()
    local function theirs(args, msg)
      local f = assert(io.open(msgfile, "wb"))
      f:write(msg)
      f:close()
      return H.capture(("%s %s/spec/peers/dkimpy.py %s < %s 2>&1")
                       :format(py, H.root, args, msgfile))
    end
    -- dkimpy signs, we verify
    for _, case in ipairs({{"r1", keys.rsa, ""}, {"e1", keys.ed, "ed25519"}}) do
      local field = theirs(("sign example.com %s %s %s"):format(case[1], case[2], case[3]), MSG)
      assert.matches("^DKIM%-Signature:", field)
      local r = dkim.verify(field .. MSG:gsub("\n", "\r\n"), {map = map})[1]
      assert.equal("pass", r.result, case[1] .. ": " .. tostring(r.reason))
    end
    -- l=: passes, with what it leaves unsigned; content added after it
    local field = theirs(("sign example.com r1 %s length"):format(keys.rsa), MSG)
    assert.matches("l=", field)
    local r = dkim.verify(field .. MSG:gsub("\n", "\r\n") .. "P.S. added\r\n", {map = map})[1]
    assert.equal("pass", r.result)
    -- the blank lines the signed body ended with are inside it now
    assert.equal(#"\r\n\r\nP.S. added\r\n", r.unsigned_body)
    -- rsa-sha1: checked, reported, not a pass
    field = theirs(("sign example.com r1 %s sha1"):format(keys.rsa), MSG)
    r = dkim.verify(field .. MSG:gsub("\n", "\r\n"), {map = map})[1]
    assert.equal("policy", r.result)
    assert.equal("rsa-sha1", r.algorithm)
    assert.equal("pass", dkim.verify(field .. MSG:gsub("\n", "\r\n"),
                                     {map = map, allow_sha1 = true})[1].result)
    -- we sign (both kinds), dkimpy verifies
    local ours = dkim.sign(MSG, {domain = "example.com", keys = {
      {selector = "r1", key = keys.rsa}, {selector = "e1", key = keys.ed,
                                          algorithm = "ed25519-sha256"}}})
    local out = theirs("verify " .. server.port, ours .. "\r\n" .. MSG)
    assert.equal("pass\npass\n", out)
    os.remove(msgfile)
  end)

  it("raises on misuse", function()
    assert.has_error(function() dkim.verify(nil) end)
    assert.has_error(function() dkim.sign(MSG, {domain = "x y", selector = "s", key = "k"}) end)
    assert.has_error(function() dkim.sign(MSG, {domain = "a.b", selector = "s",
                                                key = "-----BEGIN nonsense"}) end)
  end)
end)

describe("relayed mail signed with relay.dkim", function()
  local zr, srv_peer, reason
  setup(function()
    zr = peers.zone_server()
    srv_peer, reason = zr.peer, zr.why
  end)
  teardown(function() zr.stop() end)

  it("signs what PureProxy and smtpd.sendmail relay; PureProxy seals it (ARC)", function()
    if not srv_peer then H.skip(reason) return end
    local smtpd = H.smtpd
    local key, rkey = os.tmpname(), os.tmpname()
    assert(os.execute(("openssl genpkey -algorithm ED25519 -out %s 2>/dev/null"):format(key)))
    assert(os.execute(("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
                       .. "-out %s 2>/dev/null"):format(rkey)))
    local map = zr.map(1)
    local up, _, uhost, uport = H.server(H.Recorder, nil, map)
    zr.use(map, {["ed._domainkey.example.com"] =
      {{TXT = dkim.key_record(key, "ed25519-sha256")}},
      ["arc._domainkey.example.com"] = {{TXT = dkim.key_record(rkey)}}})
    local dk = {domain = "example.com", selector = "ed", key = key,
                algorithm = "ed25519-sha256"}
    local proxy = smtpd.PureProxy({"127.0.0.1", 0}, {uhost, uport},
      {map = map, relay = {dkim = dk, arc = {domain = "example.com", selector = "arc",
                                             key = rkey, authserv_id = "relay.test"}}})
    assert.equal("message", proxy.relay_mode)
    local _, pport = proxy:getsockname()
    local c = H.connect(map, "127.0.0.1", pport)
    c:send("HELO a\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n"
           .. "From: a@example.com\r\nSubject: relayed\r\n\r\nsigned on the way\r\n.\r\n")
    local last
    for _ = 1, 6 do last = c:reply(10) end
    assert.equal("250 OK", last[1])
    c:close()
    local got = up.messages[1].data
    assert.matches("^ARC%-Seal: a=rsa%-sha256; b=", got)
    assert.matches("\nDKIM%-Signature: v=1; a=ed25519%-sha256;", got)
    local r = dkim.verify(got, {map = map})
    assert.equal("pass", r[1].result, r[1].reason)
    local cv, facts = require("smtpd.arc").verify(got, {map = map})
    assert.equal("pass", cv, facts.reason)
    assert.equal(1, facts.instances)
    -- smtpd.sendmail with dkim =
    local refused = smtpd.sendmail({uhost, uport}, "a@example.com", {"b@x.test"},
      "From: a@example.com\nSubject: direct\n\nby sendmail\n", {map = map, dkim = dk})
    assert.same({}, refused)
    H.run_until(map, function() return #up.messages == 2 end, 5)
    assert.equal("pass", dkim.verify(up.messages[2].data, {map = map})[1].result)
    -- bad options are said at once
    assert.has_error(function()
      smtpd.PureProxy({"127.0.0.1", 0}, {uhost, uport},
                      {map = map, relay = {dkim = {domain = "example.com", selector = "x",
                                                   key = "/nonexistent"}}})
    end)
    assert.has_error(function()
      smtpd.PureProxy({"127.0.0.1", 0}, {uhost, uport},
                      {map = map, relay = {at = "rcpt", dkim = dk}})
    end)
    os.remove(key)
    os.remove(rkey)
  end)
end)

-- Interoperability with OpenDKIM (Debian's opendkim and opendkim-tools):
-- what opendkim-testmsg signs verifies with ours (its rsa-sha1, relaxed/
-- simple: reported as policy, a pass when sha1 is allowed), and what we
-- sign (RSA and Ed25519) OpenDKIM's own verifier passes. Ours asks the
-- loopback DNS server for keys; OpenDKIM's resolver cannot be pointed at
-- a port, so it reads the same records from its TestDNSData file.
local H = require "helper"
local peers = require "peers"
local dkim = require "smtpd.dkim"

local function have()
  if H.have("opendkim") and H.have("opendkim-testmsg") then return true end
  if H.is_root() and H.apt_install("opendkim") and H.apt_install("opendkim-tools") then
    return H.have("opendkim") and H.have("opendkim-testmsg")
  end
  return false
end

local MSG = "From: Alice <alice@example.com>\nTo: bob@example.net\n"
  .. "Subject: the  plan\nDate: Fri, 04 Dec 2026 10:00:00 +0000\n\nHello  there\n\nsee you\n"

describe("OpenDKIM", function()
  local z, dir
  setup(function()
    z = peers.zone_server()
    dir = H.capture("mktemp -d"):gsub("%s+$", "")   -- private: OpenDKIM checks
  end)
  teardown(function()
    z.stop()
    os.execute("rm -rf " .. dir)
  end)

  it("signs what we verify, and verifies what we sign", function()
    if not z.peer then H.skip(z.why) return end
    if not have() then H.skip("opendkim and opendkim-tools are not installed (not root)") return end
    local rsa, ed = dir .. "/rsa.pem", dir .. "/ed.pem"
    assert(os.execute(("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
                       .. "-out %s 2>/dev/null && openssl genpkey -algorithm ED25519 "
                       .. "-out %s 2>/dev/null"):format(rsa, ed)))
    local map = z.map(1)
    z.use(map, {["r1._domainkey.example.com"] = {{TXT = dkim.key_record(rsa)}},
                ["e1._domainkey.example.com"] = {{TXT = dkim.key_record(ed, "ed25519-sha256")}}})
    local msgfile = dir .. "/msg.eml"
    local f = assert(io.open(msgfile, "wb"))
    f:write((MSG:gsub("\n", "\r\n")))         -- mail as it travels: CRLF
    f:close()
    -- OpenDKIM signs, we verify
    local signed = H.capture(("opendkim-testmsg -C -d example.com -s r1 -k %s < %s 2>&1")
                             :format(rsa, msgfile))
    assert.matches("^DKIM%-Signature: v=1; a=rsa%-sha1; c=relaxed/simple;", signed)
    local r = dkim.verify(signed, {map = map})[1]
    assert.equal("policy", r.result, tostring(r.reason))
    assert.equal("rsa-sha1", r.algorithm)
    assert.equal("pass", dkim.verify(signed, {map = map, allow_sha1 = true})[1].result)
    assert.equal("fail", dkim.verify(signed:gsub("see you", "see me"),
                                     {map = map, allow_sha1 = true})[1].result)
    -- we sign, OpenDKIM verifies (both signatures)
    local ours = dkim.sign(MSG, {domain = "example.com", keys = {
      {selector = "r1", key = rsa}, {selector = "e1", key = ed, algorithm = "ed25519-sha256"}}})
    f = assert(io.open(msgfile, "w"))
    f:write((ours:gsub("\r\n", "\n")) .. "\n" .. MSG)
    f:close()
    f = assert(io.open(dir .. "/dnsdata", "w"))
    f:write("r1._domainkey.example.com ", dkim.key_record(rsa), "\n",
            "e1._domainkey.example.com ", dkim.key_record(ed, "ed25519-sha256"), "\n")
    f:close()
    f = assert(io.open(dir .. "/verify.conf", "w"))
    f:write("Mode v\nSyslog no\nTestDNSData file:", dir, "/dnsdata\n")
    f:close()
    local out = H.capture(("opendkim -x %s/verify.conf -vvv -t %s 2>&1"):format(dir, msgfile))
    assert.matches("dkim=pass %(2048%-bit key%) header%.d=example%.com [^\n]*header%.a=rsa%-sha256", out)
    assert.matches("dkim=pass header%.d=example%.com [^\n]*header%.a=ed25519%-sha256", out)
  end)
end)

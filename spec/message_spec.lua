-- smtpd.message: the API (Python's email.message names), forgiveness on
-- broken input, bounded memory, and a differential check against Python's
-- email package over a corpus of built and hand-broken messages.
local H = require "helper"
local smtpd = H.smtpd
local message = smtpd.message

local SAMPLE = table.concat({
  "From: =?utf-8?q?J=C3=B6rg?= <jorg@example.org>, \"Doe, Jane\" <jane@x.y>",
  "To: undisclosed:;, a@b.example (comment)",
  "Subject: =?iso-8859-1?q?caf=E9?= =?utf-8?b?w6k=?=",
  "  folded",
  "X-Repeat: one",
  "x-repeat: two",
  "MIME-Version: 1.0",
  "Content-Type: multipart/mixed; boundary=\"XX\"",
  "",
  "preamble",
  "--XX",
  "Content-Type: text/plain; charset=UTF-8",
  "Content-Transfer-Encoding: quoted-printable",
  "",
  "caf=C3=A9 =",
  "soft",
  "--XX",
  "Content-Type: application/pdf; name*0*=utf-8''%E2%82%AC; name*1=.pdf",
  "Content-Disposition: attachment",
  "Content-Transfer-Encoding: base64",
  "",
  "aGVsbG8gd29y",
  "bGQ=",
  "--XX",
  "Content-Type: message/rfc822",
  "",
  "Subject: inner",
  "",
  "inner body",
  "--XX--",
  "epilogue", ""}, "\n")

-- Opening an iconv descriptor reads glibc's conversion modules from
-- disk: it used to happen for every value in another charset.
describe("charsets", function()
  it("are converted through cached iconv descriptors", function()
    local parse = require("smtpd").message.parse
    local before = H.core.stats().iconv_opens
    for i = 1, 50 do
      local m = parse("Subject: =?koi8-r?B?8NLJ18XU?= " .. i .. "\n"
                      .. "Content-Type: text/plain; charset=koi8-r\n\n"
                      .. "\240\242\n")
      assert.equal("Привет " .. i, m:get("Subject"))
      assert.is_string(m:get_payload(true))
    end
    assert.is_true(H.core.stats().iconv_opens - before <= 1)
  end)
end)

describe("smtpd.message", function()
  it("reads headers: case-insensitive, every occurrence, raw and decoded",
     function()
    local m = message.parse(SAMPLE)
    assert.equal("caféé  folded", m:get("subject"))
    assert.equal("=?iso-8859-1?q?caf=E9?= =?utf-8?b?w6k=?=\n  folded",
                 m:get_raw("SUBJECT"))
    assert.same({"one", "two"}, m:get_all("X-REPEAT"))
    assert.is_nil(m:get("X-Missing"))
    assert.equal("dflt", m:get("X-Missing", "dflt"))
    assert.is_nil(m:get_all("X-Missing"))
    assert.equal("From", m:keys()[1])
    assert.equal(7, #m)
    assert.same({"X-Repeat", "one"}, m:items()[4])
    assert.same({"x-repeat", "two"}, m:items()[5])
  end)

  it("splits address lists into name and address", function()
    local m = message.parse(SAMPLE)
    assert.same({{name = "Jörg", address = "jorg@example.org"},
                 {name = "Doe, Jane", address = "jane@x.y"}},
                m:addresses("From"))
    assert.same({{name = "", address = "a@b.example"}}, m:addresses("to"))
    assert.same({}, m:addresses("Cc"))
  end)

  it("walks the MIME tree depth first, decoding bodies on demand",
     function()
    local m = message.parse(SAMPLE)
    assert.is_true(m:is_multipart())
    assert.equal("multipart/mixed", m:get_content_type())
    assert.equal("multipart", m:get_content_maintype())
    assert.equal("mixed", m:get_content_subtype())
    assert.equal("XX", m:get_boundary())
    local parts = m:walk()
    assert.equal(5, #parts)
    assert.equal(m, parts[1])
    local text, pdf, fwd, inner = parts[2], parts[3], parts[4], parts[5]
    assert.equal("text/plain", text:get_content_type())
    assert.equal("utf-8", text:get_content_charset())
    assert.equal("caf=C3=A9 =\nsoft", text:get_payload())
    assert.equal("café soft", text:get_payload(true))
    assert.equal("application/pdf", pdf:get_content_type())
    assert.equal("€.pdf", pdf:get_filename())
    assert.equal("attachment", pdf:get_content_disposition())
    assert.is_true(pdf:is_attachment())
    assert.equal("hello world", pdf:get_payload(true))
    assert.is_nil(text:get_filename())
    assert.is_false(text:is_attachment())
    assert.equal("message/rfc822", fwd:get_content_type())
    assert.is_true(fwd:is_multipart())
    assert.is_nil(fwd:get_payload(true))
    assert.equal(inner, fwd:get_payload(0))
    assert.equal("inner", inner:get("Subject"))
    assert.equal("inner body", inner:get_payload(true))
    assert.equal("Subject: inner\n\ninner body", inner:as_string())
    assert.equal(SAMPLE, m:as_string())
    assert.equal("Message(multipart/mixed, Subject: caféé  folded, 5 parts)",
                 tostring(m))
  end)

  it("defaults the content type as RFC 2045 says", function()
    assert.equal("text/plain", message.parse("\nbody"):get_content_type())
    assert.equal("text/plain",
                 message.parse("Content-Type: text\n\nx"):get_content_type())
    local d = message.parse("Content-Type: multipart/digest; boundary=b\n\n"
                            .. "--b\n\nSubject: in\n\nx\n--b--\n")
    assert.equal("message/rfc822", d:walk()[2]:get_content_type())
    assert.equal("in", d:walk()[3]:get("Subject"))
  end)

  it("decodes RFC 2231 parameters and encoded-word filenames", function()
    local m = message.parse("Content-Type: text/plain; charset=\"ISO-8859-1\""
      .. "\nContent-Disposition: attachment;\n filename*=iso-8859-1''caf%E9"
      .. ".txt\n\nx")
    assert.equal("café.txt", m:get_filename())
    assert.equal("iso-8859-1", m:get_content_charset())
    assert.equal("ISO-8859-1", m:get_param("charset"))
    assert.equal("attachment", m:get_content_disposition())
    m = message.parse("Content-Disposition: attachment; filename*1=\"two\";"
                      .. " filename*0=\"one\"\n\nx")
    assert.equal("onetwo", m:get_filename())
    m = message.parse("Content-Type: application/x; name=\"=?utf-8?b?w6lsw6k"
                      .. "=?=.txt\"\n\nx")
    assert.equal("élé.txt", m:get_filename())
    m = message.parse("Content-Type: text/plain; charset=koi8-r\n"
                      .. "Subject: =?koi8-r?b?8NLJ18XU?=\n\nx")
    assert.equal("Привет", m:get("Subject"))
  end)

  it("forgives broken input: missing boundaries, bad encodings, 8-bit and "
     .. "NUL bytes, no header/body separator", function()
    local m = message.parse("Content-Type: multipart/mixed; boundary=b\n\n"
                            .. "--b\n\nfirst\n--b\nsecond, never closed\n")
    assert.equal(3, #m:walk())
    assert.equal("second, never closed", m:walk()[3]:get_payload())
    m = message.parse("Content-Type: multipart/mixed; boundary=zzz\n\nno parts")
    assert.is_false(m:is_multipart())
    assert.equal("no parts", m:get_payload())
    m = message.parse("Content-Transfer-Encoding: base64\n\naGVsbG8*gd29y!bGQ")
    assert.equal("hello world", m:get_payload(true))
    m = message.parse("Content-Transfer-Encoding: quoted-printable\n\n"
                      .. "a=3Db=ZZc=\nd")
    assert.equal("a=b=ZZcd", m:get_payload(true))
    m = message.parse("Subject: caf\xe9 \xc3\xa9\0x\n\nbody\0nul")
    assert.equal("caf\u{FFFD} é\0x", m:get("Subject"))
    assert.equal("body\0nul", m:get_payload(true))
    m = message.parse("Subject: s\nnot a header\nX-Test: after\n\nbody")
    assert.equal("s", m:get("Subject"))
    assert.is_nil(m:get("X-Test"))
    assert.equal("not a header\nX-Test: after\n\nbody", m:get_payload())
    m = message.parse("Subject: =?utf-8?q?broken\n\nx")
    assert.equal("=?utf-8?q?broken", m:get("Subject"))
    for _, s in ipairs({"", "\n", ":", "\0\0\0", "--", "=?", "From x"}) do
      local p = message.parse(s)
      assert.equal("text/plain", p:get_content_type())
      p:get_payload(true)
    end
  end)

  it("stays bounded: a 10 MiB header, 100,000 parts, nesting 10,000 deep",
     function()
    local big = "Subject: " .. ("y"):rep(10 * 1024 * 1024) .. "\n\nx"
    local m = message.parse(big)
    assert.equal(10 * 1024 * 1024, #m:get("Subject"))
    local many = {"Content-Type: multipart/mixed; boundary=b\n"}
    for i = 1, 100000 do many[#many + 1] = "\n--b\n\n" .. i end
    m = message.parse(table.concat(many) .. "\n--b--\n")
    assert.equal(10000, #m:walk())          -- capped
    local deep = {}
    for i = 1, 10000 do
      deep[#deep + 1] = ("Content-Type: multipart/mixed; boundary=b%d\n\n"
                         .. "--b%d\n"):format(i, i)
    end
    m = message.parse(table.concat(deep) .. "\nleaf\n")
    assert.equal(65, #m:walk())             -- depth capped at 64
    local headers = ("a:\n"):rep(300000)
    m = message.parse(headers .. "\nbody")
    assert.equal(100000, #m:keys())         -- header index capped
    assert.equal("text/plain", m:get_content_type())
  end)

  it("raises a clear error for a non-string", function()
    assert.has_error(function() message.parse(42) end,
                     "message.parse: data must be a string, got number")
  end)
end)

-- Where we read a message differently from Python's email package
-- (policy=default), on purpose. Each entry: a file pattern, a field
-- pattern, and why.
local DELIBERATE = {
  {"^hand%-007%.eml$", "^ctype$",
   "'Content-Type: /html' has no type: we default it to text/plain as "
   .. "RFC 2045 5.2 says for a malformed value; Python returns '/html'"},
  {"^hand%-034%.eml$", ".",
   "RFC 2045 allows comments in Content-Type ('(c) Multipart/Mixed (c)'): "
   .. "we drop them and find the multipart; Python keeps them in the type "
   .. "and reads one leaf"},
  {"^built%-056%.eml$", "^a:to:2$",
   "'plain <r1@...> =?utf-8?q?=2C?= plain <r2@...>' (a fold Python's own "
   .. "writer produced): we keep the third mailbox, named ', plain'; "
   .. "Python drops it"},
}

describe("smtpd.message against Python's email package", function()
  it("agrees on headers, addresses, the MIME tree and decoded bodies for "
     .. "every message of the corpus, but for the deliberate choices",
     function()
    local py = H.python_with("email.policy")
    if not py then return H.skip("no python3 with the email package") end
    local dir = H.capture("mktemp -d"):gsub("%s+$", "")
    finally(function() os.execute("rm -rf " .. dir) end)
    local n = tonumber(H.capture(("%s spec/py/email_corpus.py gen %s")
                                 :format(py, dir)))
    assert.is_true(n and n > 150, "the corpus was not written")
    local files = H.capture("ls " .. dir .. "/*.eml")
    local paths = {}
    for p in files:gmatch("[^\n]+") do paths[#paths + 1] = p end
    -- Python's reading.
    local theirs = {}
    local p = io.popen(("%s spec/py/email_corpus.py dump %s/*.eml")
                       :format(py, dir))
    for l in p:lines() do theirs[l] = true end
    p:close()
    -- Ours, in the same form.
    local function hex(s)
      return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
    end
    local ours = {}
    for _, path in ipairs(paths) do
      local name = path:match("[^/]+$")
      local msg = message.parse(H.readfile(path))
      for i, part in ipairs(msg:walk()) do
        local function put(field, v)
          ours[("%s\t%d\t%s\t%s"):format(name, i, field, hex(v))] = true
        end
        put("ctype", part:get_content_type())
        put("multipart", part:is_multipart() and "1" or "0")
        local fn = part:get_filename()
        if fn then put("filename", fn) end
        local cs = part:get_content_charset()
        if cs then put("charset", cs) end
        local d = part:get_content_disposition()
        if d then put("disposition", d) end
        if not part:is_multipart() then put("payload", part:get_payload(true)) end
        for _, h in ipairs({"subject", "x-test", "comments", "x-mailer"}) do
          for k, v in ipairs(part:get_all(h) or {}) do
            put(("h:%s:%d"):format(h, k - 1), v)
          end
        end
        for _, h in ipairs({"from", "to", "cc", "reply-to"}) do
          for j, a in ipairs(part:addresses(h)) do
            put(("a:%s:%d"):format(h, j - 1), a.name .. "\0" .. a.address)
          end
        end
      end
    end
    local facts, unexplained, used = 0, {}, {}
    local function check(line, side)
      local file, _, field = line:match("^([^\t]+)\t(%d+)\t([^\t]+)\t")
      for k, d in ipairs(DELIBERATE) do
        if file:match(d[1]) and field:match(d[2]) then
          used[k] = true
          return
        end
      end
      unexplained[#unexplained + 1] = side .. " " .. line
    end
    for l in pairs(theirs) do
      facts = facts + 1
      if not ours[l] then check(l, "python:") end
    end
    for l in pairs(ours) do
      if not theirs[l] then check(l, "ours:  ") end
    end
    table.sort(unexplained)
    assert.is_true(facts > 2000, "too few facts compared: " .. facts)
    assert.same({}, unexplained)
    -- Every deliberate choice is still exercised by the corpus.
    for k, d in ipairs(DELIBERATE) do
      assert.is_true(used[k] == true, "no longer differs: " .. d[3])
    end
  end)
end)

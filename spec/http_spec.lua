-- smtpd.http against Python's HTTP/1.1 server on loopback, plain and TLS
-- with the specs' CA: methods, headers, bodies, keep-alive, names through
-- smtpd.dns, every error a clear nil, err, info; a handler that posts
-- each message to a webhook (the README's), answering 451 when it fails.
local H = require "helper"
local certs = require "certs"
local smtpd = H.smtpd
local http = require "smtpd.http"

local peers = require "peers"
local srv, why_not = {}, nil

local function url(path) return ("http://127.0.0.1:%d%s"):format(srv.port, path) end

describe("smtpd.http", function()
  setup(function()
    local peer
    peer, why_not = peers.http()
    srv = peer or {}
  end)
  teardown(peers.stop)
  local function need()
    if not srv.port then
      H.skip(why_not)
      return false
    end
    return true
  end

  it("GETs and POSTs, with headers both ways", function()
    if not need() then return end
    local res = assert(http.get(url("/hello")))
    assert.equal(200, res.status)
    assert.equal("hello", res.body)
    assert.equal("yes", res.headers["x-test"])
    assert.equal("a=1, b=2", res.headers["set-cookie"])
    local cookies = {}
    for _, h in ipairs(res.headers_list) do
      if h[1] == "set-cookie" then cookies[#cookies + 1] = h[2] end
    end
    assert.same({"a=1", "b=2"}, cookies)
    local body = "\0binary\r\n" .. ("z"):rep(70000)
    res = assert(http.post(url("/echo"), body,
                           {headers = {["Content-Type"] = "application/x-test",
                                       ["X-Multi"] = {"1", "2"}}}))
    local cjson = require "cjson"
    local echo = cjson.decode(res.body)
    assert.equal("POST", echo.method)
    assert.equal("application/x-test", echo.headers["content-type"])
    assert.equal(#body, #echo.body)
    assert.equal(body, echo.body)
    res = assert(http.request{method = "PUT", url = url("/echo"), body = "p"})
    assert.equal("PUT", cjson.decode(res.body).method)
    res = assert(http.request{method = "DELETE", url = url("/echo")})
    assert.equal("DELETE", cjson.decode(res.body).method)
    res = assert(http.request{method = "HEAD", url = url("/hello")})
    assert.equal(200, res.status)
    assert.equal("", res.body)
    -- a 5xx is a response, not an error; a redirect is not followed
    assert.equal(500, assert(http.get(url("/status/500"))).status)
    res = assert(http.get(url("/redirect")))
    assert.equal(302, res.status)
    assert.equal("/hello", res.headers.location)
  end)

  it("keeps connections alive and reuses them", function()
    if not need() then return end
    local a = assert(http.get(url("/port"))).body
    local b = assert(http.get(url("/port"))).body
    assert.equal(a, b)
  end)

  it("resolves names with smtpd.dns (the hosts file: localhost)", function()
    if not need() then return end
    local res = assert(http.get(("http://localhost:%d/hello"):format(srv.port)))
    assert.equal("hello", res.body)
    local _, err, info = http.get("http://nowhere.invalid/x", {timeout = 3})
    assert.matches("^resolve nowhere%.invalid", err)
    assert.equal("resolve", info.stage)
  end)

  it("speaks HTTPS, verifying the certificate against a CA", function()
    if not need() then return end
    local u = ("https://localhost:%d/hello"):format(srv.tls)
    local res = assert(http.get(u, {tls = {ca = certs.path("ca.pem")}}))
    assert.equal("hello", res.body)
    local _, err, info = http.get(u)        -- the system's CAs: refused
    assert.is_string(err)
    assert.is_number(info.curl_code)
    res = assert(http.get(u, {tls = {verify = false}}))
    assert.equal(200, res.status)
  end)

  it("bounds time, bodies and headers, and says why", function()
    if not need() then return end
    local t0 = H.now()
    local _, err = http.get(url("/slow"), {timeout = 0.3})
    assert.equal("timeout", err)
    assert.is_true(H.now() - t0 < 2)
    _, err = http.get(url("/big"), {max_body = 1000})
    assert.equal("body too large", err)
    assert.equal(2 * 1024 * 1024, #assert(http.get(url("/big"))).body)
    _, err = http.get(url("/headers-forever"), {timeout = 10})
    assert.equal("headers too large", err)
    _, err = http.get(("http://127.0.0.1:%d/"):format(H.free_port()))
    assert.matches("Failed to connect", err, 1, true)
  end)

  it("raises on misuse", function()
    assert.has_error(function() http.request("x") end)
    assert.has_error(function() http.get("ftp://example.org/") end)
    assert.has_error(function() http.get("file:///etc/passwd") end)
    assert.has_error(function() http.get("http:///nohost") end)
    assert.has_error(function() http.request{url = "http://x/", method = "BREW"} end)
    assert.has_error(function() http.get("http://x/", {headers = {["A"] = "b\r\nc: d"}}) end)
    assert.has_error(function() http.get("http://x/", {timeout = 0}) end)
    assert.has_error(function() http.post("http://x/", 42) end)
  end)

  it("posts every message to a webhook from process_message, 451 when it "
     .. "fails, while other sessions are served", function()
    if not need() then return end
    -- The README's handler, run as it is written there, its URL made
    -- this test's (self.webhook, changed below).
    local readme = assert(H.readfile(H.root .. "/README.md"))
    local code = assert(readme:match("inbound%-parse%spattern.-```lua\n(.-)```"),
                        "the README's webhook example")
    local n
    code, n = code:gsub('"https://hooks%.example%.com/mail"', "self.webhook")
    assert.equal(1, n)
    local Hook = assert(load(code, "=README webhook"))()
    local s, map, host, port = H.server(Hook)
    s.webhook = url("/echo")
    local c = H.connect(map, host, port)
    c:send("HELO a\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n"
           .. "Subject: hi\r\n\r\nhello there\r\n.\r\n")
    local last
    for _ = 1, 6 do last = c:reply(10) end
    assert.equal("250 OK", last[1])
    s.webhook = url("/status/503")
    c:send("MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nSubject: x\r\n\r\ny\r\n.\r\n")
    for _ = 1, 4 do last = c:reply(10) end
    assert.equal("451 4.3.0 webhook failed: 503", last[1])
    -- a slow webhook parks only its own session
    s.webhook = url("/slow")
    c:send("MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nSubject: x\r\n\r\ny\r\n.\r\n")
    local other = H.connect(map, host, port)
    other:send("HELO b\r\nNOOP\r\n")
    local t0 = H.now()
    for _ = 1, 3 do other:reply(5) end
    assert.is_true(H.now() - t0 < 1)
    other:close()
    c:close()
    map:loop(0.1, 1)
  end)

  it("cancels a request when its hook is given up (handler_timeout) or its "
     .. "session closes", function()
    if not need() then return end
    local Hook = smtpd.SMTPServer:extend("SlowHook")
    function Hook:process_message()
      local res, err = http.get(url("/slow"), {timeout = 30})
      return res and "250 late" or "451 4.3.0 " .. err
    end
    local _, map, host, port = H.server(Hook, {handler_timeout = 0.3})
    local c = H.connect(map, host, port)
    c:send("HELO a\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n")
    for _ = 1, 4 do c:reply(5) end
    -- the loop's curl and its kept-alive connection exist before we count
    assert.equal(200, assert(http.get(url("/hello"), {map = map})).status)
    local before = map:count()
    local t0 = H.now()
    c:send("DATA\r\nhi\r\n.\r\n")
    c:reply(5)
    assert.matches("^451 ", c:reply(5)[1])     -- handler_timeout's 451
    assert.is_true(H.now() - t0 < 2)
    -- the abandoned request's socket is gone with it, not after 5 s
    assert(pcall(H.run_until, map, function() return map:count() <= before end, 2),
           "handles: " .. map:count() .. ", before: " .. before)
    -- a session closed while its hook waits (here by its server's close,
    -- once the grace is over) takes the request along
    local srv2, map2, host2, port2 = H.server(Hook, {handler_timeout = 30})
    assert.equal(200, assert(http.get(url("/hello"), {map = map2})).status)
    local c2 = H.connect(map2, host2, port2)
    c2:send("HELO a\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nhi\r\n.\r\n")
    for _ = 1, 5 do c2:reply(5) end          -- greeting to 354
    map2:loop(0.2, 1)
    local base = map2:count()
    t0 = H.now()
    srv2:close(0.2)
    assert.matches("^421 ", c2:reply(5)[1])
    assert.is_false(pcall(c2.reply, c2, 2))    -- and the session closed
    -- listener, session and the request's socket gone; the client is left
    assert(pcall(H.run_until, map2, function() return map2:count() <= base - 3 end, 2),
           "handles: " .. map2:count() .. ", with the session: " .. base)
    assert.is_true(H.now() - t0 < 2)
    c2:close()
    c:close()
  end)
end)

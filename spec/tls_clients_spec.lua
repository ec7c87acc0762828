-- Real clients speak TLS and AUTH to our server: swaks (STARTTLS,
-- implicit TLS, PLAIN, LOGIN, CRAM-MD5), openssl s_client -starttls smtp,
-- Python's smtplib (starttls, login, SMTP_SSL) and curl.
local H = require "helper"
local certs = require "certs"

local client = H.run_client

local Auth = H.Recorder:extend("Auth")
function Auth:authenticate(_, mech, user, pw)
  self.mechs = self.mechs or {}
  self.mechs[#self.mechs + 1] = mech
  return user == "alice" and pw == "s3cret"
end
function Auth:get_password(user)
  if user == "alice" then return "s3cret" end
end

local function server(extra)
  local opts = {tls = certs.tls(extra), auth_failure_delay = 0,
                auth_mechanisms = {"PLAIN", "LOGIN", "CRAM-MD5"}}
  local srv, map, _, port = H.server(Auth, opts)
  return srv, map, port
end

describe("real TLS clients", function()
  it("swaks: --tls and --tlsc with AUTH PLAIN, LOGIN and CRAM-MD5",
     function()
    if not H.ensure("swaks", "swaks") then
      return H.skip("swaks is not installed and cannot be installed here")
    end
    local srv, map, port = server()
    for i, mech in ipairs({"PLAIN", "LOGIN", "CRAM-MD5"}) do
      local text = client(map, ("swaks --server 127.0.0.1:%d --tls "
        .. "--tls-verify --tls-ca-path %s --auth %s --auth-user alice "
        .. "--auth-password s3cret --from a@example.org --to b@example.net "
        .. "--header 'Subject: swaks %s'"):format(port, certs.path("ca.pem"),
        mech, mech))
      assert.matches("235 2.7.0 Authentication successful", text, 1, true)
      assert.equal("alice", srv.messages[i].kwargs.auth_user, text)
      assert.matches("^TLSv1", srv.messages[i].kwargs.tls.version)
    end
    local text = client(map, ("swaks --server 127.0.0.1:%d --tls --auth PLAIN "
      .. "--auth-user alice --auth-password wrong --from a@example.org "
      .. "--to b@example.net"):format(port))
    assert.matches("535 5.7.8", text, 1, true)
    assert.equal(3, #srv.messages)
    H.cleanup(map)
    -- implicit TLS (port 465 style)
    srv, map, port = server({implicit = true})
    text = client(map, ("swaks --server 127.0.0.1:%d --tlsc --auth PLAIN "
      .. "--auth-user alice --auth-password s3cret --from a@example.org "
      .. "--to b@example.net"):format(port))
    assert.matches("235 2.7.0", text, 1, true)
    assert.equal(1, #srv.messages, text)
    H.cleanup(map)
  end)

  it("openssl s_client -starttls smtp", function()
    local _, map, port = server()
    local text = client(map, ("printf 'EHLO x\\r\\nQUIT\\r\\n' | openssl "
      .. "s_client -connect 127.0.0.1:%d -starttls smtp -CAfile %s "
      .. "-verify_return_error -verify_hostname localhost -ign_eof 2>&1")
      :format(port, certs.path("ca.pem")))
    assert.matches("Verify return code: 0 (ok)", text, 1, true)
    assert.matches("250-AUTH PLAIN LOGIN CRAM-MD5", text, 1, true)
    assert.matches("221 Bye", text, 1, true)
    H.cleanup(map)
  end)

  it("openssl s_client: TLS 1.1 is refused, min_version TLSv1.3 refuses "
     .. "1.2", function()
    local _, map, port = server({implicit = true})
    local text = client(map, ("openssl s_client -connect 127.0.0.1:%d -tls1_1 "
      .. "-cipher DEFAULT@SECLEVEL=0 </dev/null 2>&1"):format(port))
    assert.is_nil(text:find("^220 ", 1) or text:find("\n220 ", 1, true))
    assert.matches("alert", text)
    text = client(map, ("printf 'QUIT\\r\\n' | openssl s_client -connect "
      .. "127.0.0.1:%d -tls1_2 -ign_eof 2>&1"):format(port))
    assert.matches("\n220 ", text, 1, true)
    H.cleanup(map)
    _, map, port = server({implicit = true, min_version = "TLSv1.3"})
    text = client(map, ("openssl s_client -connect 127.0.0.1:%d -tls1_2 "
      .. "</dev/null 2>&1"):format(port))
    assert.is_nil(text:find("\n220 ", 1, true))
    H.cleanup(map)
  end)

  it("Python's smtplib: starttls() + login(), and SMTP_SSL", function()
    if not H.have("python3") then return H.skip("python3 is not installed") end
    local srv, map, port = server()
    local script = os.tmpname()
    local f = io.open(script, "w")
    f:write(([[
import smtplib, ssl
ctx = ssl.create_default_context(cafile=%q)
with smtplib.SMTP("localhost", %d, timeout=10) as s:
    s.starttls(context=ctx)
    s.login("alice", "s3cret")
    print("refused", s.sendmail("a@example.org", ["b@example.net"],
                                b"Subject: smtplib tls\r\n\r\nbody\r\n"))
with smtplib.SMTP("localhost", %d, timeout=10) as s:
    s.starttls(context=ctx)
    try:
        s.login("alice", "nope")
    except smtplib.SMTPAuthenticationError as e:
        print("refused login", e.smtp_code)
]]):format(certs.path("ca.pem"), port, port))
    f:close()
    local text = client(map, "python3 " .. script)
    assert.matches("refused {}", text, 1, true)
    assert.matches("refused login 535", text, 1, true)
    assert.equal("alice", srv.messages[1].kwargs.auth_user)
    H.cleanup(map)
    srv, map, port = server({implicit = true})
    f = io.open(script, "w")
    f:write(([[
import smtplib, ssl
ctx = ssl.create_default_context(cafile=%q)
with smtplib.SMTP_SSL("localhost", %d, timeout=10, context=ctx) as s:
    s.login("alice", "s3cret")
    print("refused", s.sendmail("a@example.org", ["b@example.net"], b"x\r\n"))
]]):format(certs.path("ca.pem"), port))
    f:close()
    text = client(map, "python3 " .. script)
    os.remove(script)
    assert.matches("refused {}", text, 1, true)
    assert.equal(1, #srv.messages, text)
    H.cleanup(map)
  end)

  it("curl --ssl-reqd --user", function()
    if not H.have("curl") then return H.skip("curl is not installed") end
    local srv, map, port = server()
    local file = os.tmpname()
    local f = io.open(file, "wb")
    f:write("Subject: curl tls\r\n\r\nhello\r\n")
    f:close()
    local text = client(map, ("curl -sS --ssl-reqd --cacert %s "
      .. "smtp://localhost:%d --user alice:s3cret --mail-from x@y.org "
      .. "--mail-rcpt z@w.org -T %s 2>&1"):format(certs.path("ca.pem"), port,
      file))
    os.remove(file)
    local m = assert(srv.messages and srv.messages[1], text)
    assert.equal("alice", m.kwargs.auth_user)
    assert.equal("Subject: curl tls\n\nhello", m.data)
    H.cleanup(map)
  end)
end)

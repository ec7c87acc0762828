-- DSN (RFC 3461), opt-in: RET/ENVID on MAIL, NOTIFY/ORCPT on RCPT are
-- validated, reach the hooks and process_message (kwargs.dsn), and
-- PureProxy passes them on to an upstream that offers DSN. REQUIRETLS
-- (RFC 8689), opt-in, is offered over TLS only.
local H = require "helper"
local R = require "replies"
local certs = require "certs"
local smtpd = H.smtpd

local after_ehlo = H.after_ehlo

describe("DSN", function()
  it("is off by default: smtpd refuses the parameters", function()
    local _, map, host, port = H.server(H.Recorder)
    local replies = after_ehlo(H.converse(map, host, port, "EHLO x\r\n"
      .. "MAIL FROM:<a@b> RET=FULL\r\nMAIL FROM:<a@b>\r\n"
      .. "RCPT TO:<c@d> NOTIFY=NEVER\r\nQUIT\r\n"))
    assert.same({R.mail_params, R.ok, R.rcpt_params, R.bye}, replies)
    H.cleanup(map)
  end)

  it("when on: offered, validated, and handed to hooks and process_message",
     function()
    local Srv = H.Recorder:extend()
    local seen = {}
    function Srv:check_recipient(_, rcpt, params)
      seen[rcpt] = params
    end
    function Srv:check_sender() end      -- MAIL is held for a hook too
    local srv, map, host, port = H.server(Srv, {dsn = true})
    local replies = H.converse(map, host, port, table.concat({
      "EHLO x",
      "MAIL FROM:<a@b> RET=SOME", "MAIL FROM:<a@b> ENVID=a=b",
      "MAIL FROM:<a@b> ENVID=" .. ("x"):rep(101),
      "MAIL FROM:<a@b> RET=hdrs ENVID=QQ+2B1",
      "RCPT TO:<c@d> NOTIFY=NEVER,SUCCESS", "RCPT TO:<c@d> NOTIFY=DELAY,DELAY",
      "RCPT TO:<c@d> ORCPT=rfc822", "RCPT TO:<c@d> ORCPT=;x@y",
      "RCPT TO:<c@d> FOO=1",
      "RCPT TO:<c@d> NOTIFY=success,FAILURE ORCPT=rfc822;c+40d",
      "RCPT TO:<e@f>", "RCPT TO:<g@h> NOTIFY=NEVER",
      "DATA", "x", ".", "QUIT", ""}, "\r\n"))
    assert.truthy(table.concat(replies, "\n"):find("\n250%-DSN\n"))
    assert.same({
      "501 Syntax: RET=FULL or RET=HDRS",
      "501 Syntax: ENVID=xtext (100 characters at most)",
      "501 Syntax: ENVID=xtext (100 characters at most)",
      R.ok,
      "501 Syntax: NOTIFY=NEVER or NOTIFY=SUCCESS,FAILURE,DELAY",
      "501 Syntax: NOTIFY=NEVER or NOTIFY=SUCCESS,FAILURE,DELAY",
      "501 Syntax: ORCPT=addr-type;xtext",
      "501 Syntax: ORCPT=addr-type;xtext",
      R.rcpt_params, R.ok, R.ok, R.ok, R.data, R.ok, R.bye,
    }, after_ehlo(replies))
    local m = srv.messages[1]
    assert.same({ret = "HDRS", envid = "QQ+2B1", rcpt = {
      ["c@d"] = {notify = "SUCCESS,FAILURE", orcpt = "rfc822;c+40d"},
      ["g@h"] = {notify = "NEVER"}}}, m.kwargs.dsn)
    -- smtpd's lists are upper-cased, as CPython's are; kwargs.dsn keeps
    -- ENVID and ORCPT as sent (their case can matter).
    assert.same({"RET=HDRS", "ENVID=QQ+2B1"}, m.kwargs.mail_options)
    assert.equal("SUCCESS,FAILURE", seen["c@d"].NOTIFY)
    assert.equal("RFC822;C+40D", seen["c@d"].ORCPT)
    H.cleanup(map)
  end)

  it("works with smtplib's mail_options and rcpt_options", function()
    local py = H.python_with("smtplib")
    if not py then return H.skip("no python3") end
    local srv, map, _, port = H.server(H.Recorder, {dsn = true})
    H.run_client(map, ("%s -c \"import smtplib\n"
      .. "s = smtplib.SMTP('127.0.0.1', %d)\n"
      .. "s.sendmail('a@b', ['c@d'], 'Subject: d\\r\\n\\r\\nx\\r\\n', "
      .. "mail_options=['RET=FULL', 'ENVID=id1'], "
      .. "rcpt_options=['NOTIFY=FAILURE,DELAY'])\n"
      .. "s.quit()\""):format(py, port))
    assert.same({ret = "FULL", envid = "id1",
                 rcpt = {["c@d"] = {notify = "FAILURE,DELAY"}}},
                srv.messages[1].kwargs.dsn)
    H.cleanup(map)
  end)

  it("PureProxy passes the parameters on to an upstream that offers DSN, "
     .. "and leaves them off for one that does not", function()
    local map = H.map()
    finally(function() H.cleanup(map) end)
    for _, up_dsn in ipairs({true, false}) do
      local up = H.Recorder("127.0.0.1:0", nil, {map = map, dsn = up_dsn})
      local relay = smtpd.PureProxy("127.0.0.1:0", {up:getsockname()},
                                    {map = map, dsn = true})
      local host, port = relay:getsockname()
      local replies = H.converse(map, host, port, "EHLO x\r\nMAIL FROM:<a@b>"
        .. " RET=HDRS ENVID=e1\r\nRCPT TO:<c@d> NOTIFY=SUCCESS ORCPT=rfc822;"
        .. "c@d\r\nRCPT TO:<x@y>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n")
      assert.equal(R.ok, replies[#replies - 1])
      local got = up.messages[1].kwargs
      if up_dsn then
        assert.same({ret = "HDRS", envid = "e1", rcpt = {
          ["c@d"] = {notify = "SUCCESS", orcpt = "rfc822;c@d"}}}, got.dsn)
      else
        assert.is_nil(got.dsn)
        for _, o in ipairs(got.mail_options) do
          assert.is_nil(o:match("^RET=") or o:match("^ENVID="))
        end
      end
      up:close(false)
      relay:close(false)
    end
  end)
end)

describe("REQUIRETLS", function()
  it("is offered over TLS only, and only then taken on MAIL", function()
    local srv, map, host, port = H.server(H.Recorder, {requiretls = true,
                                                        tls = certs.tls()})
    local c = H.connect(map, host, port)
    c:lines(1)
    c:send("EHLO x\r\n")
    local before = c:reply()
    for _, l in ipairs(before) do assert.is_nil(l:find("REQUIRETLS")) end
    c:send("MAIL FROM:<a@b> REQUIRETLS\r\n")
    assert.same({R.mail_params}, c:reply())
    c:send("STARTTLS\r\n")
    assert.same({"220 2.0.0 Ready to start TLS"}, c:reply())
    assert(c.tcp:starttls({verify = true, ca = certs.path("ca.pem"),
                           sni = "localhost"}))
    c:send("EHLO x\r\n")
    local after = table.concat(c:reply(), "\n")
    assert.matches("\n250%-REQUIRETLS\n", after)
    c:send("MAIL FROM:<a@b> REQUIRETLS=1\r\nMAIL FROM:<a@b> REQUIRETLS\r\n"
           .. "RCPT TO:<c@d>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n")
    assert.same({"501 Syntax: REQUIRETLS takes no value"}, c:reply())
    assert.same({R.ok}, c:reply())
    c:wait_closed(5)
    c:close()
    assert.same({"REQUIRETLS"}, srv.messages[1].kwargs.mail_options)
    H.cleanup(map)
  end)
end)

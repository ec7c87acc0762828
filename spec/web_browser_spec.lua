-- The catcher's page in a real browser: Debian's Chromium, driven by
-- playwright-core from npm (pointed at /usr/bin/chromium: its own browser
-- download cannot work here), both installed by this spec when missing.
local H = require "helper"
local smtpd = require "smtpd"
local json = require "smtpd.json"

describe("the catcher's page in Chromium", function()
  it("shows new mail without a reload, searches, renders HTML in the sandbox, "
     .. "runs no script of a hostile message, and deletes", function()
    if not H.ensure("chromium", "chromium") then
      return H.skip("Chromium is not installed (apt-get install chromium, as root)")
    end
    local mods, why = H.node_module("playwright-core")
    if not mods then return H.skip("playwright-core: " .. tostring(why)) end
    local py = H.python_with("smtplib")
    if not py then return H.skip("no Python 3 for smtplib") end
    local srv, map, _, port = H.server(smtpd.CatchingServer, {web = "127.0.0.1:0"})
    -- where a hostile message's remote image and CSS point: it counts them
    local leaks = 0
    local leak = assert(smtpd.core.web_listen(map, "127.0.0.1", 0, {}, function(req, x)
      if req.path == "/count" then
        return x:respond(200, {["Access-Control-Allow-Origin"] = "*"}, tostring(leaks))
      end
      leaks = leaks + 1
      x:respond(404, {}, "")
    end))
    local _, leak_port = leak:address()
    local out = H.run_client(map, ("NODE_PATH=%s node spec/peers/browser.js %s %d %s "
                                   .. "http://127.0.0.1:%d/")
                             :format(mods, srv.web:url(), port, py, leak_port), 180)
    leak:close()
    local r = json.decode(out:match("[^\n]*{[^\n]*}%s*$") or "")
    assert(r and not r.error, out)
    assert.is_true(r.appeared)                                 -- no reload
    assert.equal(1, r.reloads)
    assert.same({"Weekly news", "Your invoice 42"}, r.listed)
    assert.same({"Your invoice 42"}, r.searched)
    assert.equal("Alice", r.html_text)
    assert.equal("hostile body", r.hostile_text)                -- rendered...
    assert.same({}, r.pwned)                                    -- ...but no script ran
    assert.equal("allow-popups allow-popups-to-escape-sandbox", r.sandbox)
    assert.equal(0, r.dialogs)
    assert.equal(0, r.subject_img)                               -- the subject is text
    assert.matches("<img src=x onerror=alert(1)>Hostile", r.subject_shown, 1, true)
    assert.equal("0", r.leaks_before)                            -- nothing remote...
    assert.is_true(tonumber(r.leaks_after) > 0)                  -- ...until asked for
    assert.is_true(r.responsive)
    assert.same({"One long line", "Weekly news", "Your invoice 42"}, r.after_delete)
    assert.equal(3, #srv.messages)
  end)
end)

-- CHUNKING / BDAT (RFC 3030): advertised; chunks are counted, never
-- dot-unstuffed, and the handler gets the message in the same form as
-- after DATA; a refused chunk is still read (and dropped), so its bytes
-- never run as commands.
local H = require "helper"
local R = require "replies"

local ENV = "EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"

local function bdat(chunk, last)
  return ("BDAT %d%s\r\n%s"):format(#chunk, last and " LAST" or "", chunk)
end

-- The replies after EHLO's (however many lines it has).
local after_ehlo = H.after_ehlo

describe("CHUNKING", function()
  it("takes a message in chunks, in DATA's form (CRLF split across "
     .. "chunks, dot lines kept as they are)", function()
    local srv, map, host, port = H.server(H.Recorder)
    local body = "Subject: s\r\n\r\n.leading dot\r\nline two\r\n"
    -- The CRLF after "Subject: s" is cut between two chunks.
    local input = ENV .. bdat("Subject: s\r") .. bdat("\n\r\n.leading dot\r\n")
                  .. bdat("line two\r\n", true) .. "QUIT\r\n"
    local replies = after_ehlo(H.converse(map, host, port, input))
    assert.same({R.ok, R.ok, "250 OK 11 octets received",
                 "250 OK 17 octets received", R.ok, R.bye}, replies)
    -- The same message by DATA (dot-stuffed there).
    H.converse(map, host, port, ENV .. "DATA\r\nSubject: s\r\n\r\n"
               .. "..leading dot\r\nline two\r\n.\r\nQUIT\r\n")
    assert.equal(2, #srv.messages)
    assert.equal("Subject: s\n\n.leading dot\nline two", srv.messages[1].data)
    assert.equal(srv.messages[2].data, srv.messages[1].data)
    assert.same({"c@d"}, srv.messages[1].rcpttos)
    assert.equal(#body, #srv.messages[1].data + 5)   -- 4 CRs, 1 final LF
    H.cleanup(map)
  end)

  it("ends a message with BDAT 0 LAST, and several messages pipelined",
     function()
    local srv, map, host, port = H.server(H.Recorder)
    local replies = after_ehlo(H.converse(map, host, port, ENV
      .. bdat("one\r\n") .. "BDAT 0 LAST\r\n"
      .. "MAIL FROM:<e@f>\r\nRCPT TO:<g@h>\r\n" .. bdat("two\r\n", true)
      .. "QUIT\r\n"))
    assert.same({R.ok, R.ok, "250 OK 5 octets received", R.ok, R.ok, R.ok,
                 R.ok, R.bye}, replies)
    assert.equal("one", srv.messages[1].data)
    assert.equal("two", srv.messages[2].data)
    H.cleanup(map)
  end)

  it("reads and drops a chunk it refuses: its bytes never run as commands",
     function()
    local srv, map, host, port = H.server(H.Recorder)
    local evil = "MAIL FROM:<x@y>\r\nRCPT TO:<z@w>\r\nDATA\r\nsmuggled\r\n"
                 .. ".\r\n"
    local replies = H.converse(map, host, port, "HELO x\r\n" .. bdat(evil)
      .. "MAIL FROM:<a@b>\r\n" .. bdat(evil, true) .. "QUIT\r\n")
    assert.same({R.helo, R.need_rcpt, R.ok, R.need_rcpt, R.bye}, replies)
    assert.is_nil(srv.messages)
    replies = H.converse(map, host, port, bdat("x") .. "QUIT\r\n")
    assert.same({R.need_helo, R.bye}, replies)
    H.cleanup(map)
  end)

  it("applies the size limit while the chunks stream: 552 for the chunk "
     .. "that passes it and the rest; the last one ends the transaction",
     function()
    local srv, map, host, port = H.server(H.Recorder, {data_size_limit = 100})
    local replies = after_ehlo(H.converse(map, host, port, ENV
      .. bdat(("a"):rep(60)) .. bdat(("b"):rep(60)) .. bdat(("c"):rep(10))
      .. bdat("d", true) .. "MAIL FROM:<e@f>\r\nQUIT\r\n"))
    assert.same({R.ok, R.ok, "250 OK 60 octets received", R.too_much,
                 R.too_much, R.too_much, R.ok, R.bye}, replies)
    assert.is_nil(srv.messages)
    assert.equal(0, map:stats().data_held)
    H.cleanup(map)
  end)

  it("orders BDAT with the other commands as RFC 3030 says", function()
    local srv, map, host, port = H.server(H.Recorder)
    local replies = after_ehlo(H.converse(map, host, port, ENV
      .. bdat("first\r\n") .. "DATA\r\nRCPT TO:<x@y>\r\nNOOP\r\nRSET\r\n"
      .. "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n" .. bdat("second\r\n", true)
      .. "QUIT\r\n"))
    assert.same({R.ok, R.ok, "250 OK 7 octets received",
                 "503 Error: DATA after BDAT", "503 Error: RCPT after BDAT",
                 R.ok, R.ok, R.ok, R.ok, R.ok, R.bye}, replies)
    assert.equal(1, #srv.messages)
    assert.equal("second", srv.messages[1].data)
    H.cleanup(map)
  end)

  it("closes on a chunk size it cannot read (the next command is lost)",
     function()
    local _, map, host, port = H.server(H.Recorder)
    for _, bad in ipairs({"BDAT", "BDAT x", "BDAT 10 FIRST", "BDAT -1"}) do
      local replies = after_ehlo(H.converse(map, host, port, ENV .. bad
                                            .. "\r\nNOOP\r\n"))
      assert.same({R.ok, R.ok, "501 Syntax: BDAT <size> [LAST] (closing: "
                   .. "the chunk cannot be found)"}, replies, bad)
    end
  end)

  -- A size that does not fit a size_t cannot be read: it used to be taken
  -- 18 digits at a time, and on a 32-bit build 4294967297 wrapped to 1,
  -- so the rest of the client's chunk ran as commands (smuggling).
  it("closes on a chunk size too big to hold, with 552", function()
    local _, map, host, port = H.server(H.Recorder)
    local too_big = {"BDAT 1234567890123456789012",
                     "BDAT 18446744073709551616 LAST",
                     "BDAT 99999999999999999999999999999999999999"}
    for _, bad in ipairs(too_big) do
      local replies = after_ehlo(H.converse(map, host, port, ENV .. bad
                                            .. "\r\nNOOP\r\n"))
      assert.same({R.ok, R.ok, "552 5.3.4 Error: chunk size too big "
                   .. "(closing: the chunk cannot be read)"}, replies, bad)
    end
  end)

  it("reads every chunk size with an overflow guard at 32 and 64 bits",
     function()
    if not H.testing() then return end
    local size = H.core.chunk_size
    assert.equal(4294967295, size("4294967295", 32))
    assert.is_nil(size("4294967296", 32))
    assert.is_nil(size("4294967297", 32))
    assert.equal(4294967297, size("4294967297", 64))
    assert.equal(1, size("0000000000000000000000000001", 32))
    assert.is_nil(size("18446744073709551616", 64))
    assert.equal(0, size("0", 32))
  end)

  it("is not offered with chunking = false: BDAT is an unknown command",
     function()
    local _, map, host, port = H.server(H.Recorder, {chunking = false})
    local replies = H.converse(map, host, port, "EHLO x\r\nBDAT 0 LAST\r\n"
                               .. "QUIT\r\n")
    for _, l in ipairs(replies) do assert.is_nil(l:find("CHUNKING")) end
    assert.equal(R.unknown("BDAT"), replies[#replies - 1])
    H.cleanup(map)
  end)

  it("gives the same replies and message whatever way the input is cut",
     function()
    local input = ENV .. bdat("Subject: cut\r\n\r\nbody\r") .. bdat("\n", true)
                  .. "QUIT\r\n"
    local want
    for _, split in ipairs({1, 2, 3, 7, 64}) do
      local srv, map, host, port = H.server(H.Recorder)
      local replies = H.converse(map, host, port, input, split)
      want = want or replies
      assert.same(want, replies)
      assert.equal("Subject: cut\n\nbody", srv.messages[1].data)
      H.cleanup(map)
    end
  end)
end)

describe("BINARYMIME", function()
  it("is offered only with binarymime = true; BODY=BINARYMIME then needs "
     .. "BDAT and the bytes arrive untouched", function()
    local _, map, host, port = H.server(H.Recorder)
    local replies = H.converse(map, host, port, "EHLO x\r\nMAIL FROM:<a@b> "
                               .. "BODY=BINARYMIME\r\nQUIT\r\n")
    assert.equal(R.body, replies[#replies - 1])
    H.cleanup(map)
    local srv
    srv, map, host, port = H.server(H.Recorder, {binarymime = true})
    local bin = "\0\1\r\n\r\xff.\r\n"
    replies = after_ehlo(H.converse(map, host, port, "EHLO x\r\n"
      .. "MAIL FROM:<a@b> BODY=BINARYMIME\r\nRCPT TO:<c@d>\r\nDATA\r\n"
      .. bdat(bin, true) .. "MAIL FROM:<a@b> BODY=FOO\r\nQUIT\r\n"))
    assert.same({R.ok, R.ok, "503 Error: BODY=BINARYMIME needs BDAT", R.ok,
                 "501 Error: BODY can only be one of 7BIT, 8BITMIME, "
                 .. "BINARYMIME", R.bye}, replies)
    assert.equal(bin, srv.messages[1].data)
    H.cleanup(map)
  end)
end)

describe("CHUNKING with a real client", function()
  it("Perl's Net::SMTP sends a binary message by bdat and bdatlast "
     .. "(BODY=BINARYMIME: the bytes as they came)", function()
    if os.execute("perl -MNet::SMTP -e 'exit(Net::SMTP->can(q(bdat)) ? 0 : 1)'"
                  .. " 2>/dev/null") ~= true then
      return H.skip("perl's Net::SMTP with bdat is not installed")
    end
    local srv, map, _, port = H.server(H.Recorder, {binarymime = true})
    local script = os.tmpname()
    local f = io.open(script, "w")
    f:write(([[
use Net::SMTP;
my $s = Net::SMTP->new("127.0.0.1", Port => %d, Hello => "perl.example")
  or die "connect: $@";
die "no CHUNKING offered\n" unless defined $s->supports("CHUNKING");
$s->mail("perl\@example.org", Bits => "binary") or die "mail: " . $s->message;
$s->to("a\@example.net", "b\@example.net") or die "rcpt: " . $s->message;
$s->bdat("Subject: by BDAT\r\n\r\n.a dot line\r\n") or die "bdat: " . $s->message;
print "chunk: ", $s->code, " ", $s->message;
$s->bdatlast("last line\r\n") or die "bdatlast: " . $s->message;
print "last: ", $s->code, "\n";
$s->quit;
]]):format(port))
    f:close()
    local out = H.run_client(map, "perl " .. script .. " 2>&1")
    os.remove(script)
    assert.matches("chunk: 250 OK 33 octets received", out)
    assert.matches("last: 250", out)
    local m = assert(srv.messages and srv.messages[1], out)
    assert.equal("perl@example.org", m.mailfrom)
    assert.same({"a@example.net", "b@example.net"}, m.rcpttos)
    assert.same({"BODY=BINARYMIME"}, m.kwargs.mail_options)
    assert.equal("Subject: by BDAT\r\n\r\n.a dot line\r\nlast line\r\n",
                 m.data)
    H.cleanup(map)
  end)
end)

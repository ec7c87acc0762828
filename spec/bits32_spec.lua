-- The pure SMTP layer built for a 32-bit target (gcc -m32): a BDAT size
-- past 2^32 must not wrap. Before the guard, 4294967297 read as 1 on
-- i386 or armhf: one byte of the chunk was taken, and the rest of the
-- client's chunk ran as commands (smuggling past a filter in front).
local H = require "helper"

-- How to run a program built by gcc -m32 ("" natively, or qemu-i386
-- where the kernel runs no 32-bit code), installing Debian's
-- gcc-multilib and qemu-user when root; nil, why.
local function gcc32()
  local build = "printf 'int main(void){return 0;}' > /tmp/smtpd-m32.c && "
                .. "gcc -m32 -o /tmp/smtpd-m32 /tmp/smtpd-m32.c >/dev/null 2>&1"
  if os.execute(build) ~= true then H.apt_install("gcc-multilib") end
  if os.execute(build) ~= true then
    return nil, "gcc -m32 does not work here (no gcc-multilib, and it "
                .. "could not be installed)"
  end
  if os.execute("/tmp/smtpd-m32 2>/dev/null") == true then return "" end
  if not H.have("qemu-i386") then H.apt_install("qemu-user") end
  if os.execute("qemu-i386 /tmp/smtpd-m32 2>/dev/null") == true then
    return "qemu-i386 "
  end
  return nil, "this kernel runs no 32-bit programs and qemu-i386 is not "
              .. "there (Debian's qemu-user)"
end

describe("a 32-bit build", function()
  it("reads BDAT 4294967297 as too big (552 and close), never as 1",
     function()
    local runner, why = gcc32()
    if not runner then return H.skip(why) end
    local out = os.tmpname()
    H.defer(function() os.remove(out) end)
    assert.is_true(os.execute(("make -s engine-main ENGINE_CC='gcc -m32' "
      .. "ENGINE_OUT=%s >/dev/null"):format(out)) == true)
    local function run(input)
      local inf = os.tmpname()
      local f = assert(io.open(inf, "wb"))
      f:write(input)
      f:close()
      local text = H.capture(runner .. out .. " < " .. inf)
      os.remove(inf)
      return text
    end
    local env = "EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
    -- The engine really is 32-bit, and still takes chunks that fit.
    local small = run(env .. "BDAT 5 LAST\r\nhelloQUIT\r\n")
    assert.matches("WORD 32\n", small, 1, true)
    assert.matches("MESSAGE 5\n", small, 1, true)
    for _, size in ipairs({"4294967297", "4294967296", "8589934593"}) do
      local text = run(env .. "BDAT " .. size .. " LAST\r\nX\r\nMAIL FROM:<"
                       .. "smuggled@x>\r\nQUIT\r\n")
      assert.matches("552 5.3.4 Error: chunk size too big (closing: the "
                     .. "chunk cannot be read)\r\n", text, 1, true)
      assert.not_matches("MESSAGE", text)
      assert.not_matches("221 Bye", text)
    end
  end)
end)

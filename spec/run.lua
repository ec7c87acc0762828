-- Runs the busted suite under this interpreter (Lua 5.4): Debian's busted
-- script would run under whatever `lua` is. With SMTPD_BUILD set (make
-- test: build-test), the core is loaded from that build rather than from
-- .busted's build/ (what luarocks test uses).
local busted_bin = io.popen("command -v busted"):read("l")
if not busted_bin then
  io.stderr:write("busted not found: apt-get install lua-busted\n")
  os.exit(1)
end
local build = os.getenv("SMTPD_BUILD")
if build and build ~= "" then
  table.insert(arg, 1, "--cpath=" .. build .. "/?.so")
end
arg[0] = busted_bin
dofile(busted_bin)

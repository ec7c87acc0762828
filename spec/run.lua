-- Runs the busted suite under this interpreter (Lua 5.4): Debian's busted
-- script would run under whatever `lua` is.
local busted_bin = io.popen("command -v busted"):read("l")
if not busted_bin then
  io.stderr:write("busted not found: apt-get install lua-busted\n")
  os.exit(1)
end
arg[0] = busted_bin
dofile(busted_bin)

-- make golden: records CPython smtpd's answers to every conversation into
-- spec/golden/cpython.lua (the Makefile then shows the diff).
local H = require "helper"
local cpython = require "cpython"

local py = H.python_with_smtpd()
if not py then
  io.stderr:write("make golden needs a Python with the smtpd module (3.11 "
                  .. "or earlier)\n")
  os.exit(1)
end
cpython.write_golden(cpython.record_python(py))
print("wrote " .. cpython.GOLDEN)

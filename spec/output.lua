-- busted output handler: gtest-style lines per test, then the one summary
-- line CI reads: "N passed, N failed, N skipped".
return function(options)
  local busted = require "busted"
  local inner = require("busted.outputHandlers.gtest")(options)
  local wrapper = setmetatable({}, {__index = inner})
  function wrapper:subscribe(opts)
    inner:subscribe(opts)
    busted.subscribe({"suite", "end"}, function()
      local failed = (inner.failuresCount or 0) + (inner.errorsCount or 0)
      io.write(("%d passed, %d failed, %d skipped\n"):format(
        inner.successesCount or 0, failed, inner.pendingsCount or 0))
      io.flush()
      return nil, true
    end)
  end
  return wrapper
end

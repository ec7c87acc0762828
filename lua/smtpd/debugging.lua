-- DebuggingServer: prints every message to stdout, as smtpd's does, after
-- its envelope (Bcc recipients are in no header: only the envelope shows
-- them).

local SMTPServer = require "smtpd.server"

local DebuggingServer = SMTPServer:extend("DebuggingServer")

-- false: smtpd's output exactly, without the envelope block.
DebuggingServer.show_envelope = true

local function pylist(t)
  local out = {}
  for i = 1, #t do out[i] = "'" .. t[i] .. "'" end
  return "[" .. table.concat(out, ", ") .. "]"
end

-- Splits like Python's splitlines() on CRLF, LF and CR.
local function splitlines(data)
  local lines, pos, n = {}, 1, #data
  while pos <= n do
    local s, e = data:find("\r\n", pos, true)
    local lf = data:find("[\r\n]", pos)
    if not lf then
      lines[#lines + 1] = data:sub(pos)
      break
    end
    lines[#lines + 1] = data:sub(pos, lf - 1)
    if s == lf then pos = e + 1 else pos = lf + 1 end
  end
  return lines
end
DebuggingServer._splitlines = splitlines

function DebuggingServer:_print_message_content(peer, data)
  local out = self.stdout or io.stdout
  local inheaders = true
  for _, line in ipairs(splitlines(data)) do
    if inheaders and line == "" then
      out:write("X-Peer: ", peer[1], "\n")
      inheaders = false
    end
    out:write(line, "\n")
  end
end

local function path(a)
  if a == "<>" then return a end
  return "<" .. tostring(a) .. ">"
end

function DebuggingServer:_print_envelope(peer, mailfrom, rcpttos)
  local out = self.stdout or io.stdout
  local host = peer[1]:find(":", 1, true) and "[" .. peer[1] .. "]"
               or peer[1]
  local to = {}
  for i = 1, #rcpttos do to[i] = path(rcpttos[i]) end
  out:write("---------- ENVELOPE ----------\n",
            "Peer: ", host, ":", tostring(peer[2]), "\n",
            "MAIL FROM: ", path(mailfrom), "\n",
            "RCPT TO: ", table.concat(to, ", "), "\n")
end

function DebuggingServer:process_message(peer, mailfrom, rcpttos, data,
                                         kwargs)
  local out = self.stdout or io.stdout
  if self.show_envelope then self:_print_envelope(peer, mailfrom, rcpttos) end
  out:write("---------- MESSAGE FOLLOWS ----------\n")
  if kwargs then
    if kwargs.mail_options and #kwargs.mail_options > 0 then
      out:write("mail options: ", pylist(kwargs.mail_options), "\n")
    end
    if kwargs.rcpt_options and #kwargs.rcpt_options > 0 then
      out:write("rcpt options: ", pylist(kwargs.rcpt_options), "\n\n")
    end
  end
  self:_print_message_content(peer, data)
  out:write("------------ END MESSAGE ------------\n")
  out:flush()
end

return DebuggingServer

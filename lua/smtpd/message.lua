-- smtpd.message: a fast, forgiving reader of Internet messages, with the
-- method names of Python's email.message so that smtpd users feel at home.
--
--   local msg = smtpd.message.parse(data)
--   msg:get("Subject")                -- first value, unfolded, decoded
--   msg:addresses("To")               -- {{name=, address=}, ...}
--   for _, part in ipairs(msg:walk()) do
--     if part:get_filename() then save(part:get_filename(),
--                                      part:get_payload(true)) end
--   end
--
-- The scanning and decoding are in C (csrc/mime/mime.c) over one copy of the
-- bytes; nothing is decoded until asked for. Malformed input never
-- raises: it gives a best-effort reading. Header values and parameters
-- come back in UTF-8 (encoded words and RFC 2231 charsets converted;
-- bytes that are not valid become U+FFFD); bodies come back as bytes,
-- with get_content_charset() naming their charset.

local core = require "smtpd.core"

local M = {}

local Part = {}
Part.__index = Part
Part.__name = "smtpd.message.Part"
M.Part = Part

-- One Part object per part of a message, so parts compare equal.
local function part(index, i, root)
  local cache = root._parts
  if cache[i] == nil then
    cache[i] = setmetatable({_m = index, _i = i, _root = root}, Part)
  end
  return cache[i]
end

-- parse(data) -> the message (a Part: the root of its MIME tree).
function M.parse(data)
  if type(data) ~= "string" then
    error("message.parse: data must be a string, got " .. type(data), 2)
  end
  local index = core.mime_parse(data)
  local root = setmetatable({_m = index, _i = 1, _data = data, _parts = {}},
                            Part)
  root._root = root
  root._parts[1] = root
  return root
end

-- decode_header(s): s unfolded with its RFC 2047 encoded words decoded.
M.decode_header = core.mime_decode_header

local function name_arg(name, what)
  if type(name) ~= "string" then
    error(what .. ": the header name must be a string", 3)
  end
  return name
end

-- get(name [, failobj]) -> the first value, unfolded and decoded, or
-- failobj (nil) when there is no such header.
function Part:get(name, failobj)
  local v = self._m:header(self._i, name_arg(name, "get"), "get")
  if v == nil then return failobj end
  return v
end

-- get_all(name [, failobj]) -> every value in order, or failobj (nil).
function Part:get_all(name, failobj)
  local t = self._m:header(self._i, name_arg(name, "get_all"), "all")
  if #t == 0 then return failobj end
  return t
end

-- get_raw(name) -> the first value as it is in the message (folds and
-- encoded words kept), or nil.
function Part:get_raw(name)
  return self._m:header(self._i, name_arg(name, "get_raw"), "raw")
end

-- keys() -> the field names in order (repeats included), as written.
function Part:keys()
  return self._m:keys(self._i)
end

-- items() -> {{name, value}, ...} with decoded values.
function Part:items()
  local out, seen = {}, {}
  for _, k in ipairs(self:keys()) do
    local lk = k:lower()
    seen[lk] = (seen[lk] or 0) + 1
    local all = self._m:header(self._i, k, "all")
    out[#out + 1] = {k, all[seen[lk]]}
  end
  return out
end

-- addresses(name) -> {{name=, address=}, ...} from every such header
-- (groups flattened, display names decoded).
function Part:addresses(name)
  return self._m:addresses(self._i, name_arg(name, "addresses"))
end

function Part:get_content_type()
  return self._m:ctype(self._i)
end

function Part:get_content_maintype()
  return (self:get_content_type():match("^[^/]*"))
end

function Part:get_content_subtype()
  return (self:get_content_type():match("/(.*)$"))
end

-- get_param(name [, failobj [, header]]) -> a parameter of Content-Type
-- (or of header), decoded (RFC 2231 and RFC 2047), or failobj.
function Part:get_param(name, failobj, header)
  local v = self._m:param(self._i, header or "content-type",
                          name_arg(name, "get_param"))
  if v == nil then return failobj end
  return v
end

function Part:get_boundary(failobj)
  local b = self:get_param("boundary")
  if b == nil then return failobj end
  return (b:gsub("[ \t]+$", ""))
end

-- get_content_charset([failobj]) -> the charset parameter, lower case.
function Part:get_content_charset(failobj)
  local cs = self:get_param("charset")
  if cs == nil or cs == "" then return failobj end
  return cs:lower()
end

-- get_content_disposition() -> "inline", "attachment", ... or nil.
function Part:get_content_disposition()
  local v = self._m:main_value(self._i, "content-disposition")
  if v == nil or v == "" then return nil end
  return v
end

function Part:is_attachment()
  return self:get_content_disposition() == "attachment"
end

-- get_filename([failobj]) -> Content-Disposition's filename, else
-- Content-Type's name, decoded and trimmed.
function Part:get_filename(failobj)
  local f = self:get_param("filename", nil, "content-disposition")
            or self:get_param("name", nil, "content-type")
  if f == nil then return failobj end
  return (f:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- is_multipart() -> true when the part holds parts: a multipart with its
-- boundary found, or a message/rfc822 (its one part, the message).
function Part:is_multipart()
  return self._m:has_children(self._i)
end

-- The parts right under this one.
function Part:get_children()
  local out = {}
  for k, i in ipairs(self._m:children(self._i)) do
    out[k] = part(self._m, i, self._root)
  end
  return out
end

-- walk() -> every part, depth first, this one first.
function Part:walk()
  local out = {}
  local function visit(p)
    out[#out + 1] = p
    for _, c in ipairs(p:get_children()) do visit(c) end
  end
  visit(self)
  return out
end

-- get_payload([decode]) -> for a part with parts, their list (nil when
-- decode is true, as Python does); else the body, with its transfer
-- encoding (base64, quoted-printable) undone when decode is true.
function Part:get_payload(decode)
  if type(decode) == "number" then
    return self:get_children()[decode + 1]
  end
  if self:is_multipart() then
    if decode then return nil end
    return self:get_children()
  end
  return self._m:payload(self._i, decode and true or false)
end

-- as_string() / as_bytes(): the part's bytes as they were received.
function Part:as_string()
  local s, e = self._m:range(self._i)
  return self._root._data:sub(s, e)
end
Part.as_bytes = Part.as_string

function Part:__tostring()
  local subject = self:get("Subject")
  return ("Message(%s%s, %d part%s)"):format(self:get_content_type(),
    subject and (", Subject: " .. subject) or "", #self:walk(),
    #self:walk() == 1 and "" or "s")
end

function Part:__len()
  return #self:keys()
end

return M

-- A small class system: Class:extend(), Class(...) or Class:new(...),
-- obj:is_a(Class), with metamethods inherited by subclasses.
--
-- Adding a method to any class tells the C core (core.class_changed), so
-- channels notice a newly overridden or added smtp_<VERB> before their
-- next command: the core looks a class up once, not per command.

local core = require "smtpd.core"

local class = {}

-- Metamethods copied from a class to its subclasses (Lua looks them up
-- with rawget, so inheritance through __index does not reach them).
local METAMETHODS = {
  "__tostring", "__eq", "__lt", "__le", "__concat", "__len", "__close",
  "__newindex", "__call", "__unm", "__add", "__sub", "__mul", "__div",
  "__mod", "__pow", "__idiv",
}

local classmeta = {}

function classmeta.__call(cls, ...)
  return cls:new(...)
end

function classmeta.__newindex(cls, k, v)
  rawset(cls, k, v)
  if type(k) == "string" then core.class_changed() end
end

function classmeta.__tostring(cls)
  return "class " .. (rawget(cls, "__name") or cls.__name or "?")
end

local Object = {}
Object.__index = Object
Object.__name = "Object"
setmetatable(Object, classmeta)

-- Makes a subclass. name is optional and only used by tostring().
function Object.extend(super, name)
  local cls = {}
  for _, k in ipairs(METAMETHODS) do
    local v = rawget(super, k)
    if v ~= nil then cls[k] = v end
  end
  local idx = rawget(super, "__index")
  if idx == super or idx == nil then
    cls.__index = cls
  else
    cls.__index = idx          -- a function mapping fields (channels)
  end
  cls.super = super
  cls.__name = name or super.__name
  local mt = {}
  for k, v in pairs(classmeta) do mt[k] = v end
  mt.__index = super
  return setmetatable(cls, mt)
end

function Object.new(cls, ...)
  local obj = setmetatable({}, cls)
  obj:initialize(...)
  return obj
end

function Object:initialize() end

function Object:is_a(cls)
  local c = getmetatable(self)
  while c do
    if c == cls then return true end
    c = rawget(c, "super")
  end
  return false
end

function Object:__tostring()
  return (self.__name or "object") .. "()"
end

class.Object = Object
return class

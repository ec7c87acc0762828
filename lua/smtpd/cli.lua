-- lua-smtpd: the command line, with python -m smtpd's options.

local smtpd = require "smtpd"
local options = require "smtpd.options"
local util = require "smtpd.util"

local M = {}

M.USAGE = [==[
Usage: %s [options] [localhost:localport [remotehost:remoteport]]

An SMTP server (by default a relay, PureProxy) with a C core on libuv.

Options:

    --nosetuid
    -n
        Do not setuid to `nobody'. Without this flag the server tries to
        become `nobody' after binding, which needs root.

    --version
    -V
        Print the version and exit.

    --class CLASS
    -c CLASS
        The server class: a class of the smtpd module (DebuggingServer,
        PureProxy, MailmanProxy), `module.Class' found on package.path,
        or path/to/file.lua returning a class. Default: PureProxy.

    --size LIMIT
    -s LIMIT
        Refuse messages larger than LIMIT bytes (RFC 1870 SIZE). Default
        33554432; 0 means no limit.

    --smtputf8
    -u
        Enable the SMTPUTF8 extension (RFC 6531).

    --debug
    -d
        Print debugging lines to stderr.

    --mailman-lmtp HOST:PORT
        Where Mailman 3 takes LMTP, for -c MailmanProxy. Default
        127.0.0.1:8024.

    --tls-cert FILE
    --tls-key FILE
        Offer STARTTLS (RFC 3207) with this certificate (a PEM chain) and
        key. SIGHUP loads them again for new connections.

    --smtps
        Implicit TLS (RFC 8314, port 465): TLS from the first byte, with
        the certificate of --tls-cert.

    --require-starttls
        Refuse MAIL, RCPT, DATA and AUTH before STARTTLS (530).

    --relay-starttls
        Relaying: demand STARTTLS from the upstream, checking its
        certificate and name (the system's CAs, or --relay-ca).

    --relay-tls
        Relaying: implicit TLS to the upstream (port 465).

    --relay-ca FILE
        Relaying: trust the CAs of FILE instead of the system's.

    --relay-user USER
        Relaying: AUTH PLAIN (or LOGIN) as USER, only over TLS. The
        password is read from the environment variable named by
        --relay-password-env (default LUA_SMTPD_RELAY_PASSWORD) or from
        the first line of --relay-password-file; never from the command
        line.

    --relay-password-env NAME
    --relay-password-file FILE

    --maildir DIR
        For -c MaildirServer: deliver every message into the Maildir DIR
        (created if missing), fsynced before the 250.

    --mbox FILE
        For -c MboxServer: append every message to the mbox FILE
        (mboxrd, dot-lock and fcntl lock), fsynced before the 250.

    --repl
        After starting the server, give a Lua prompt instead of waiting:
        the server keeps serving while you type. `smtpd' and `server' are
        globals there; Ctrl-C cancels the line or a waiting chunk, Ctrl-D
        closes the server gracefully and exits. Not with --workers.

    --authenticate
        Check SPF at MAIL FROM, DKIM, ARC and DMARC at the end of the data,
        and add an Authentication-Results field with every result (the
        server's `authentication' option, all of it).

    --web[=ADDR]
        Keep every message (as -c CatchingServer does, after the class's
        own work: DebuggingServer still prints them) and serve a page to
        read them in a browser, with Mailpit's JSON API, on ADDR
        (default 127.0.0.1:8026; a non-loopback address needs
        LUA_SMTPD_WEB_USER and LUA_SMTPD_WEB_PASSWORD, Basic auth).
        Not with --workers.

    --workers N
        Run N worker processes that share the listening port
        (SO_REUSEPORT), to use N cores; the first process passes signals
        on to them and replaces one that crashes. Needs a fixed port.
        Default 1: one process.

    --help
    -h
        Print this message and exit.

Version: %s

localhost defaults to `localhost' and localport to 8025; remotehost to
`localhost' and remoteport to 25. IPv6 addresses go in brackets:
[::1]:8025. unix:/path listens on a unix domain socket instead.
]==]

-- The usage text for prog.
function M.usage(prog)
  return M.USAGE:format(prog or "lua-smtpd", smtpd.__version__)
end

local LONG = {
  nosetuid = "n", version = "V", class = "c", size = "s", smtputf8 = "u",
  debug = "d", help = "h", ["mailman-lmtp"] = "L", workers = "W",
  ["tls-cert"] = "tls-cert", ["tls-key"] = "tls-key", smtps = "smtps",
  ["require-starttls"] = "require-starttls",
  ["relay-starttls"] = "relay-starttls", ["relay-tls"] = "relay-tls",
  ["relay-ca"] = "relay-ca", ["relay-user"] = "relay-user",
  ["relay-password-env"] = "relay-password-env",
  ["relay-password-file"] = "relay-password-file", repl = "repl",
  maildir = "maildir", mbox = "mbox", authenticate = "authenticate",
  web = "web",
}
-- Options whose argument is optional (--web or --web=ADDR).
local OPTIONAL_ARG = {web = true}
local TAKES_ARG = {c = true, s = true, L = true, W = true,
                   ["tls-cert"] = true, ["tls-key"] = true,
                   ["relay-ca"] = true, ["relay-user"] = true,
                   ["relay-password-env"] = true,
                   ["relay-password-file"] = true, maildir = true,
                   mbox = true}

-- getopt-style parsing: clusters (-nd), -cX, -c X, --class=X, --class X.
-- Returns the options (opts.action "help" or "version" for -h and -V),
-- or nil, why, 1 for options that do not go; it never exits.
local Bad = {}

function M.parse(argv)
  local ok, opts = pcall(M._parse, argv)
  if ok then return opts end
  if getmetatable(opts) == Bad then return nil, opts.msg, 1 end
  error(opts, 0)
end

function M._parse(argv)
  local opts = {setuid = true, classname = "PureProxy", size_limit = nil,
                enable_SMTPUTF8 = false, debug = false, workers = 1}
  local args = {}
  local i = 1
  local function fail(msg) error(setmetatable({msg = msg}, Bad), 0) end
  local function apply(o, val)
    if o == "h" then opts.action = opts.action or "help"
    elseif o == "V" then opts.action = opts.action or "version"
    elseif o == "n" then opts.setuid = false
    elseif o == "c" then opts.classname = val
    elseif o == "d" then opts.debug = true
    elseif o == "u" then opts.enable_SMTPUTF8 = true
    elseif o == "L" then opts.mailman_lmtp = val
    elseif #o > 1 then opts[o] = val or true
    elseif o == "W" then
      local n = math.tointeger(tonumber(val))
      if not n or n < 1 or n > 1024 then
        fail("Invalid number of workers: " .. tostring(val) .. " (1 to 1024)")
      end
      opts.workers = n
    elseif o == "s" then
      local n = math.tointeger(tonumber(val))
      if not n or n < 0 then fail("Invalid size: " .. tostring(val)) end
      opts.size_limit = n
    end
  end
  while i <= #argv do
    local a = argv[i]
    if a == "--" then
      for j = i + 1, #argv do args[#args + 1] = argv[j] end
      break
    elseif a:sub(1, 2) == "--" then
      local name, val = a:match("^%-%-([^=]+)=(.*)$")
      name = name or a:sub(3)
      local o = LONG[name]
      if not o then fail("option --" .. name .. " not recognized") end
      if TAKES_ARG[o] and val == nil then
        i = i + 1
        val = argv[i]
        if val == nil then fail("option --" .. name .. " requires argument") end
      elseif not TAKES_ARG[o] and not OPTIONAL_ARG[o] and val ~= nil then
        fail("option --" .. name .. " must not have an argument")
      end
      apply(o, val)
    elseif a:sub(1, 1) == "-" and #a > 1 then
      local j = 2
      while j <= #a do
        local o = a:sub(j, j)
        if not (o == "n" or o == "V" or o == "c" or o == "s" or o == "u"
                or o == "d" or o == "h") then
          fail("option -" .. o .. " not recognized")
        end
        if TAKES_ARG[o] then
          local val = a:sub(j + 1)
          if val == "" then
            i = i + 1
            val = argv[i]
            if val == nil then fail("option -" .. o .. " requires argument") end
          end
          apply(o, val)
          break
        end
        apply(o)
        j = j + 1
      end
    else
      args[#args + 1] = a
    end
    i = i + 1
  end
  -- -h and -V answer at once, as python -m smtpd's do.
  if opts.action then return opts end
  if #args > 2 then
    fail("Invalid arguments: " .. table.concat(args, ", "))
  end
  local localspec = args[1] or "localhost:8025"
  local remotespec = args[2] or "localhost:25"
  local function split(spec, what)
    if what == "local" and spec:sub(1, 5) == "unix:" and #spec > 5 then
      return spec, 0                   -- a unix domain socket
    end
    local host, port = util.split_addr(spec)
    if not host then fail("Bad " .. what .. " spec: " .. spec) end
    if not port then fail("Bad " .. what .. " port: " .. spec) end
    return host, port
  end
  opts.localhost, opts.localport = split(localspec, "local")
  opts.remotehost, opts.remoteport = split(remotespec, "remote")
  if (opts["tls-key"] or opts.smtps or opts["require-starttls"])
     and not opts["tls-cert"] then
    fail("--tls-key, --smtps and --require-starttls need --tls-cert")
  end
  if opts.smtps and opts["require-starttls"] then
    fail("--smtps and --require-starttls exclude each other")
  end
  if opts["relay-starttls"] and opts["relay-tls"] then
    fail("--relay-starttls and --relay-tls exclude each other")
  end
  if (opts["relay-password-env"] or opts["relay-password-file"])
     and not opts["relay-user"] then
    fail("--relay-password-env and --relay-password-file need --relay-user")
  end
  if opts["relay-password-env"] and opts["relay-password-file"] then
    fail("--relay-password-env and --relay-password-file exclude each other")
  end
  if opts.web and opts.workers > 1 then
    fail("--web and --workers exclude each other (one process keeps the mail)")
  end
  if opts.repl and opts.workers > 1 then
    fail("--repl and --workers exclude each other (one prompt, one process)")
  end
  if opts.workers > 1 and opts.localhost:sub(1, 5) == "unix:" then
    fail("--workers needs a TCP port, not a unix socket")
  end
  if opts.workers > 1 and opts.localport == 0 then
    fail("--workers needs a fixed port: with port 0 every worker would "
         .. "get a port of its own")
  end
  return opts
end

-- Finds the class named on the command line.
function M.find_class(name)
  if name:match("%.lua$") or name:find("/", 1, true) then
    local chunk, err = loadfile(name)
    if not chunk then return nil, err end
    local ok, cls = pcall(chunk)
    if not ok then return nil, name .. ": " .. tostring(cls) end
    if type(cls) ~= "table" then
      return nil, name .. " must return a server class, got " .. type(cls)
    end
    return cls
  end
  if name:find(".", 1, true) then
    local modname, clsname = name:match("^(.*)%.([^.]+)$")
    local ok, mod = pcall(require, modname)
    if not ok then return nil, mod end
    if type(mod) ~= "table" or mod[clsname] == nil then
      return nil, ("module %s has no class %s"):format(modname, clsname)
    end
    return mod[clsname]
  end
  local cls = smtpd[name]
  if type(cls) ~= "table" then
    return nil, ("no class %s in the smtpd module"):format(name)
  end
  return cls
end

M.GRACE = 30   -- seconds messages in DATA get after SIGTERM

local function hostport(host, port)
  if host:sub(1, 5) == "unix:" then return host end
  if host:find(":", 1, true) then host = "[" .. host .. "]" end
  return host .. ":" .. tostring(port)
end

-- "DebuggingServer listening on 127.0.0.1:8025 (localhost); Ctrl-C ..."
function M.describe(server, opts)
  local host, port = server:getsockname()
  local name = getmetatable(server).__name or "server"
  local text = ("%s listening on %s"):format(name, hostport(host, port))
  if opts.localhost ~= host then
    text = text .. " (" .. opts.localhost .. ")"
  end
  if server:is_a(smtpd.PureProxy) then
    text = text .. ", relaying to "
           .. hostport(opts.remotehost, opts.remoteport)
  end
  if opts["tls-cert"] then
    text = text .. (opts.smtps and ", implicit TLS" or ", STARTTLS")
  end
  if opts.workers > 1 then
    text = text .. (", %d workers"):format(opts.workers)
  end
  if rawget(server, "web") then
    text = text .. ", its mail in a browser at " .. server.web:url()
  end
  if opts.repl then return text .. "; Ctrl-D at the prompt stops it" end
  return text .. "; Ctrl-C stops it"
end

-- Runs the command line; returns the exit status (it never exits, but
-- for a second SIGTERM or SIGINT, which ends the process at once).
function M.main(argv, prog)
  prog = prog or "lua-smtpd"
  local opts, why, status = M.parse(argv)
  if not opts then
    io.stderr:write(M.usage(prog), why, "\n")
    return status
  end
  if opts.action == "help" then
    io.stderr:write(M.usage(prog))
    return 0
  elseif opts.action == "version" then
    print(smtpd.__version__)
    return 0
  end
  local function refuse(...)
    io.stderr:write(prog, ": ", ...)
    io.stderr:write("\n")
    return 1
  end
  local cls, err = M.find_class(opts.classname)
  if not cls then
    return refuse("cannot load class ", opts.classname, ": ", tostring(err))
  end
  if opts.mailman_lmtp and not options.known(cls).mailman then
    return refuse("--mailman-lmtp is for -c MailmanProxy (and its "
                  .. "subclasses), not ", opts.classname)
  end
  local relay
  if opts["relay-starttls"] or opts["relay-tls"] or opts["relay-ca"]
     or opts["relay-user"] then
    if not options.known(cls).relay then
      return refuse("the --relay-* options are for relaying classes "
                    .. "(PureProxy, MailmanProxy), not ", opts.classname)
    end
    relay = {starttls = opts["relay-starttls"] and "require" or nil,
             implicit_tls = opts["relay-tls"] or nil,
             tls = opts["relay-ca"] and {ca = opts["relay-ca"]} or nil}
    if opts["relay-user"] then
      relay.auth = {user = opts["relay-user"],
                    password_file = opts["relay-password-file"],
                    password_env = not opts["relay-password-file"] and
                      (opts["relay-password-env"] or
                       "LUA_SMTPD_RELAY_PASSWORD") or nil}
    end
  end
  for _, o in ipairs({"maildir", "mbox"}) do
    if opts[o] and not options.known(cls)[o] then
      return refuse("--", o, " is for -c ",
                    o == "maildir" and "MaildirServer" or "MboxServer",
                    " (and its subclasses), not ", opts.classname)
    end
  end
  local tls
  if opts["tls-cert"] then
    tls = {cert = opts["tls-cert"],
           key = opts["tls-key"] or opts["tls-cert"],
           implicit = opts.smtps or nil}
  end
  local size = opts.size_limit
  if size == nil then size = smtpd.DATA_SIZE_DEFAULT end
  local worker_index
  if opts.workers > 1 then
    -- The shared store (rate limits) is mapped before the fork, so that
    -- every worker counts in the same memory.
    require("smtpd.store").prefork()
    -- The parent stays in core.workers until every worker has ended.
    local worker, status = smtpd.core.workers(opts.workers)
    if not worker then return status end
    worker_index = worker
  end
  local web
  if opts.web then
    cls = require("smtpd.catching").keeping(cls)
    web = {web = opts.web == true and "127.0.0.1:8026" or opts.web}
    local user, password = os.getenv("LUA_SMTPD_WEB_USER"), os.getenv("LUA_SMTPD_WEB_PASSWORD")
    if user and password then web.web_auth = {user = user, password = password} end
  end
  local ok, server = pcall(cls, {opts.localhost, opts.localport},
                           {opts.remotehost, opts.remoteport},
                           {data_size_limit = size,
                            enable_SMTPUTF8 = opts.enable_SMTPUTF8,
                            mailman = opts.mailman_lmtp
                              and {lmtp = opts.mailman_lmtp} or nil,
                            reuse_port = opts.workers > 1 or nil,
                            tls = tls, relay = relay,
                            require_starttls = opts["require-starttls"],
                            maildir = opts.maildir, mbox = opts.mbox,
                            authentication = opts.authenticate and true or nil,
                            web = web and web.web, web_auth = web and web.web_auth})
  if not ok then
    -- The message, without the Lua position it was raised at.
    local msg = tostring(server):gsub("^[^\n]-%.lua:%d+: ", "")
    return refuse(msg)
  end
  if opts.debug then
    smtpd.socket_map:set_debug(true)
    io.stderr:write(("%s started at %s\n\tLocal addr: %s:%d\n\t"
                     .. "Remote addr: %s:%d\n"):format(
      tostring(server), os.date(), opts.localhost, opts.localport,
      opts.remotehost, opts.remoteport))
  end
  if opts.setuid then
    local done = smtpd.core.setuid_nobody()
    if not done then
      io.stderr:write('Cannot setuid "nobody"; try running with -n option.\n')
      server:close(false)
      return 1
    end
  end
  io.stdout:setvbuf("line")
  -- Say where it listens (once, even with several workers).
  if worker_index == nil or worker_index == 1 then
    io.stderr:write(prog, ": ", M.describe(server, opts), "\n")
  end
  -- SIGTERM or SIGINT (Ctrl-C): stop accepting, let messages in DATA
  -- finish (30 s), then go. A second one exits at once.
  local stopping = false
  local function stop(name, signum)
    return function()
      if stopping then
        io.stderr:write(prog, ": ", name, " again: exiting now\n")
        os.exit(128 + signum)
      end
      stopping = true
      io.stderr:write(prog, ": ", name, ": shutting down (messages in "
                      .. "progress get ", M.GRACE, " s; ", name,
                      " again to exit now)\n")
      server:close(M.GRACE)
    end
  end
  -- SIGHUP: the certificate files again, for new connections (the
  -- first process passes it on to its workers).
  smtpd.core.on_signal(smtpd.socket_map, "SIGHUP", function()
    if not tls then
      io.stderr:write(prog, ": SIGHUP: nothing to reload (no --tls-cert)\n")
    elseif server:reload_tls() then
      io.stderr:write(prog, ": SIGHUP: certificates reloaded\n")
    end
  end)
  smtpd.core.on_signal(smtpd.socket_map, "SIGTERM", stop("SIGTERM", 15))
  if opts.repl then
    -- Ctrl-C belongs to the prompt; Ctrl-D ends it, then the server
    -- closes gracefully.
    _G.smtpd, _G.server = smtpd, server
    smtpd.interact{map = smtpd.socket_map}
    if not stopping then server:close(M.GRACE) end
    smtpd.loop()
    return 0
  end
  smtpd.core.on_signal(smtpd.socket_map, "SIGINT", stop("SIGINT", 2))
  smtpd.loop()
  return 0
end

return M

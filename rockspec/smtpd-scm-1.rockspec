rockspec_format = "3.0"
package = "smtpd"
version = "scm-1"
source = {
  url = "git+file:///dev/null",  -- replaced by the release process
}
description = {
  summary = "SMTP server library for Lua 5.4 with a C core on libuv",
  detailed = [[
    The successor, for Lua, of Python's smtpd module: subclass SMTPServer
    and SMTPChannel in Lua, override process_message or any smtp_<COMMAND>,
    while a C core on libuv does the networking, the protocol state machine
    and the byte handling. Includes DebuggingServer and the lua-smtpd
    command line.
  ]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
external_dependencies = {
  LIBUV = {
    header = "uv.h",
    library = "uv",
  },
}
build = {
  type = "builtin",
  modules = {
    ["smtpd.core"] = {
      sources = {
        "csrc/buffer.c", "csrc/parser.c", "csrc/text.c", "csrc/addr.c",
        "csrc/session.c", "csrc/util.c", "csrc/opts.c", "csrc/handle.c",
        "csrc/map.c", "csrc/server.c", "csrc/channel.c", "csrc/hook.c",
        "csrc/conn.c", "csrc/client.c", "csrc/timer.c", "csrc/signal.c",
        "csrc/tcp.c", "csrc/engine.c", "csrc/workers.c", "csrc/core.c",
      },
      defines = {"_GNU_SOURCE"},
      incdirs = {"$(LIBUV_INCDIR)"},
      libdirs = {"$(LIBUV_LIBDIR)"},
      libraries = {"uv"},
    },
    ["smtpd"] = "lua/smtpd/init.lua",
    ["smtpd.class"] = "lua/smtpd/class.lua",
    ["smtpd.channel"] = "lua/smtpd/channel.lua",
    ["smtpd.server"] = "lua/smtpd/server.lua",
    ["smtpd.debugging"] = "lua/smtpd/debugging.lua",
    ["smtpd.cli"] = "lua/smtpd/cli.lua",
    ["smtpd.wait"] = "lua/smtpd/wait.lua",
    ["smtpd.sendmail"] = "lua/smtpd/sendmail.lua",
    ["smtpd.util"] = "lua/smtpd/util.lua",
    ["smtpd.options"] = "lua/smtpd/options.lua",
    ["smtpd.proxy"] = "lua/smtpd/proxy.lua",
    ["smtpd.mailman"] = "lua/smtpd/mailman.lua",
  },
  install = {
    bin = {
      ["lua-smtpd"] = "bin/lua-smtpd",
    },
  },
}
test = {
  type = "command",
  command = "make test",
}

-- The rock is lua-smtpd; the module it installs is smtpd (require "smtpd").
rockspec_format = "3.0"
package = "lua-smtpd"
version = "scm-1"
source = {
  url = "git+https://github.com/lua-smtpd/lua-smtpd.git",
  branch = "main",
}
description = {
  summary = "SMTP server library for Lua 5.4 with a C core on libuv",
  detailed = [[
    The successor, for Lua, of Python's smtpd module: subclass SMTPServer
    and SMTPChannel in Lua, override process_message or any smtp_<COMMAND>,
    while a C core on libuv does the networking, the protocol state machine
    and the byte handling. Includes DebuggingServer, PureProxy,
    MailmanProxy, smtpd.sendmail and the lua-smtpd command line.
  ]],
  homepage = "https://github.com/lua-smtpd/lua-smtpd",
  license = "MIT",
  maintainer = "lua-smtpd developers",
}
-- POSIX systems: Linux is what the tests run on; macOS and FreeBSD have
-- fallbacks for what is Linux's own (README, "Where it runs").
dependencies = {
  "lua >= 5.4, < 5.5",
}
external_dependencies = {
  LIBUV = {
    header = "uv.h",
    library = "uv",
  },
  OPENSSL = {
    header = "openssl/ssl.h",
    library = "ssl",
  },
  CARES = {
    header = "ares.h",
    library = "cares",
  },
  -- Debian keeps curl's headers under /usr/include/<multiarch>/, where
  -- luarocks does not look but the compiler does: the library is enough.
  CURL = {
    library = "curl",
  },
  PSL = {
    header = "libpsl.h",
    library = "psl",
  },
}
-- The Makefile builds the one module into build/ (nothing else is left in
-- the tree) and installs it with the Lua modules.
build = {
  type = "make",
  build_target = "lib",
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LIBFLAG = "$(LIBFLAG)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LIBUV_INCDIR = "$(LIBUV_INCDIR)",
    LIBUV_LIBDIR = "$(LIBUV_LIBDIR)",
    OPENSSL_INCDIR = "$(OPENSSL_INCDIR)",
    OPENSSL_LIBDIR = "$(OPENSSL_LIBDIR)",
    CARES_INCDIR = "$(CARES_INCDIR)",
    CARES_LIBDIR = "$(CARES_LIBDIR)",
    CURL_INCDIR = "$(CURL_INCDIR)",
    CURL_LIBDIR = "$(CURL_LIBDIR)",
    PSL_INCDIR = "$(PSL_INCDIR)",
    PSL_LIBDIR = "$(PSL_LIBDIR)",
  },
  install_target = "install",
  install_variables = {
    INST_LIBDIR = "$(LIBDIR)",
    INST_LUADIR = "$(LUADIR)",
  },
  install = {
    bin = {
      ["lua-smtpd"] = "bin/lua-smtpd",
    },
  },
}
test_dependencies = {
  "busted >= 2.0",
}
test = {
  type = "busted",
}

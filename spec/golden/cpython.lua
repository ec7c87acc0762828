-- CPython 3.11 smtpd's replies and process_message arguments for
-- every conversation of spec/conversations.lua. Written by
-- `make golden` (spec/make_golden.lua); do not edit by hand.
return {
  decode = {
    {
      input = "EHLO x\013\010MAIL FROM:<a@b> BODY=8BITMIME\013\010MAIL FROM:<a@b>\013\010RCPT TO:<c@d>\013\010DATA\013\010Subject: t\013\010\013\010body\013\010.\013\010QUIT\013\010",
      messages = {
        {
          data = "Subject: t\010\010body",
          kwargs = {},
          mailfrom = "a@b",
          peer_host = "127.0.0.1",
          rcpttos = {
            "c@d",
          },
        },
      },
      replies = {
        "250-%FQDN%",
        "250-SIZE 33554432",
        "250 HELP",
        "555 MAIL FROM parameters not recognized or not implemented",
        "250 OK",
        "250 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 OK",
        "221 Bye",
      },
    },
    {
      input = "HELP\013\010EHLO x\013\010MAIL FROM:<a@b> SIZE=5\013\010RCPT TO:<c@d>\013\010DATA\013\010\195\169t\195\169\013\010.\013\010QUIT\013\010",
      messages = {
        {
          data = "\195\169t\195\169",
          kwargs = {},
          mailfrom = "a@b",
          peer_host = "127.0.0.1",
          rcpttos = {
            "c@d",
          },
        },
      },
      replies = {
        "250 Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY",
        "250-%FQDN%",
        "250-SIZE 33554432",
        "250 HELP",
        "250 OK",
        "250 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 OK",
        "221 Bye",
      },
    },
  },
  default = {
    {
      input = "HELO\013\010HELO x\013\010HELO y\013\010EHLO z\013\010QUIT\013\010",
      messages = {},
      replies = {
        "501 Syntax: HELO hostname",
        "250 %FQDN%",
        "503 Duplicate HELO/EHLO",
        "503 Duplicate HELO/EHLO",
        "221 Bye",
      },
    },
    {
      input = "EHLO x\013\010EHLO\013\010EHLO y\013\010QUIT\013\010",
      messages = {},
      replies = {
        "250-%FQDN%",
        "250-SIZE 33554432",
        "250-8BITMIME",
        "250 HELP",
        "501 Syntax: EHLO hostname",
        "503 Duplicate HELO/EHLO",
        "221 Bye",
      },
    },
    {
      input = "NOOP\013\010NOOP x\013\010noop\013\010NoOp\013\010QUIT\013\010",
      messages = {},
      replies = {
        "250 OK",
        "501 Syntax: NOOP",
        "250 OK",
        "250 OK",
        "221 Bye",
      },
    },
    {
      input = "HELP\013\010HELP ehlo\013\010HELP HELO\013\010HELP MAIL\013\010HELP RCPT\013\010HELP DATA\013\010HELP RSET\013\010HELP NOOP\013\010HELP QUIT\013\010HELP VRFY\013\010HELP foo\013\010HELP EXPN\013\010HELP mail from\013\010QUIT\013\010",
      messages = {},
      replies = {
        "250 Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY",
        "250 Syntax: EHLO hostname",
        "250 Syntax: HELO hostname",
        "250 Syntax: MAIL FROM: <address>",
        "250 Syntax: RCPT TO: <address>",
        "250 Syntax: DATA",
        "250 Syntax: RSET",
        "250 Syntax: NOOP",
        "250 Syntax: QUIT",
        "250 Syntax: VRFY <address>",
        "501 Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY",
        "501 Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY",
        "501 Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY",
        "221 Bye",
      },
    },
    {
      input = "EHLO x\013\010HELP MAIL\013\010HELP RCPT\013\010HELP rcpt\013\010QUIT\013\010",
      messages = {},
      replies = {
        "250-%FQDN%",
        "250-SIZE 33554432",
        "250-8BITMIME",
        "250 HELP",
        "250 Syntax: MAIL FROM: <address> [SP <mail-parameters>]",
        "250 Syntax: RCPT TO: <address> [SP <mail-parameters>]",
        "250 Syntax: RCPT TO: <address> [SP <mail-parameters>]",
        "221 Bye",
      },
    },
    {
      input = "VRFY\013\010VRFY a@b\013\010VRFY <a@b>\013\010VRFY foo bar\013\010VRFY <>\013\010EXPN\013\010EXPN x\013\010QUIT\013\010",
      messages = {},
      replies = {
        "501 Syntax: VRFY <address>",
        "252 Cannot VRFY user, but will accept message and attempt delivery",
        "252 Cannot VRFY user, but will accept message and attempt delivery",
        "252 Cannot VRFY user, but will accept message and attempt delivery",
        "252 Cannot VRFY user, but will accept message and attempt delivery",
        "502 EXPN not implemented",
        "502 EXPN not implemented",
        "221 Bye",
      },
    },
    {
      input = "MAIL FROM:<a@b>\013\010RCPT TO:<a@b>\013\010DATA\013\010QUIT\013\010",
      messages = {},
      replies = {
        "503 Error: send HELO first",
        "503 Error: send HELO first",
        "503 Error: send HELO first",
        "221 Bye",
      },
    },
    {
      input = "HELO x\013\010MAIL\013\010MAIL FROM\013\010MAIL FROM:\013\010MAIL FROM <a@b>\013\010MAIL TO:<a@b>\013\010MAIL FROM:<a@b> SIZE=10\013\010QUIT\013\010",
      messages = {},
      replies = {
        "250 %FQDN%",
        "501 Syntax: MAIL FROM: <address>",
        "501 Syntax: MAIL FROM: <address>",
        "501 Syntax: MAIL FROM: <address>",
        "501 Syntax: MAIL FROM: <address>",
        "501 Syntax: MAIL FROM: <address>",
        "501 Syntax: MAIL FROM: <address>",
        "221 Bye",
      },
    },
    {
      input = "HELO x\013\010MAIL FROM:<a@b>\013\010MAIL FROM:<c@d>\013\010RCPT\013\010RCPT TO\013\010RCPT TO:\013\010RCPT FROM:<x@y>\013\010RCPT TO:<x@y> FOO=1\013\010RCPT TO:<x@y>\013\010RCPT to:<z@y>\013\010DATA\013\010hello\013\010.\013\010QUIT\013\010",
      messages = {
        {
          data = "hello",
          kwargs = {
            mail_options = {},
            rcpt_options = {},
          },
          mailfrom = "a@b",
          peer_host = "127.0.0.1",
          rcpttos = {
            "x@y",
            "z@y",
          },
        },
      },
      replies = {
        "250 %FQDN%",
        "250 OK",
        "503 Error: nested MAIL command",
        "501 Syntax: RCPT TO: <address>",
        "501 Syntax: RCPT TO: <address>",
        "501 Syntax: RCPT TO: <address>",
        "501 Syntax: RCPT TO: <address>",
        "501 Syntax: RCPT TO: <address>",
        "250 OK",
        "250 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 OK",
        "221 Bye",
      },
    },
    {
      input = "HELO x\013\010RCPT TO:<a@b>\013\010DATA\013\010MAIL FROM:<>\013\010DATA\013\010RCPT TO:<a@b>\013\010DATA x\013\010RSET x\013\010RSET\013\010DATA\013\010QUIT\013\010",
      messages = {},
      replies = {
        "250 %FQDN%",
        "503 Error: need MAIL command",
        "503 Error: need RCPT command",
        "250 OK",
        "503 Error: need RCPT command",
        "250 OK",
        "501 Syntax: DATA",
        "501 Syntax: RSET",
        "250 OK",
        "503 Error: need RCPT command",
        "221 Bye",
      },
    },
    {
      input = "EHLO x\013\010MAIL FROM:<a@b> BODY=8BITMIME SIZE=100\013\010RCPT TO:<c@d>\013\010DATA\013\010Subject: x\013\010\013\010..dot\013\010body\010 bare\013cr\013\010.\013\010QUIT\013\010",
      messages = {
        {
          data = "Subject: x\010\010.dot\010body\010 bare\013cr",
          kwargs = {
            mail_options = {
              "BODY=8BITMIME",
              "SIZE=100",
            },
            rcpt_options = {},
          },
          mailfrom = "a@b",
          peer_host = "127.0.0.1",
          rcpttos = {
            "c@d",
          },
        },
      },
      replies = {
        "250-%FQDN%",
        "250-SIZE 33554432",
        "250-8BITMIME",
        "250 HELP",
        "250 OK",
        "250 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 OK",
        "221 Bye",
      },
    },
    {
      input = "EHLO x\013\010MAIL FROM:<a@b> BODY=9BIT\013\010MAIL FROM:<a@b> BODY\013\010MAIL FROM:<a@b> SIZE=abc\013\010MAIL FROM:<a@b> SIZE=999999999999\013\010MAIL FROM:<a@b> SMTPUTF8\013\010MAIL FROM:<a@b> FOO\013\010MAIL FROM:<a@b> FOO=\013\010MAIL FROM:<a@b> =x\013\010MAIL FROM:<a@b> F-O\013\010MAIL FROM:<a@b> body=7bit\013\010RCPT TO:<x@y>\013\010DATA\013\010m\013\010.\013\010QUIT\013\010",
      messages = {
        {
          data = "m",
          kwargs = {
            mail_options = {
              "BODY=7BIT",
            },
            rcpt_options = {},
          },
          mailfrom = "a@b",
          peer_host = "127.0.0.1",
          rcpttos = {
            "x@y",
          },
        },
      },
      replies = {
        "250-%FQDN%",
        "250-SIZE 33554432",
        "250-8BITMIME",
        "250 HELP",
        "501 Error: BODY can only be one of 7BIT, 8BITMIME",
        "501 Error: BODY can only be one of 7BIT, 8BITMIME",
        "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]",
        "552 Error: message size exceeds fixed maximum message size",
        "555 MAIL FROM parameters not recognized or not implemented",
        "555 MAIL FROM parameters not recognized or not implemented",
        "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]",
        "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]",
        "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]",
        "250 OK",
        "250 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 OK",
        "221 Bye",
      },
    },
    {
      input = "EHLO x\013\010MAIL FROM:a@b\013\010RCPT TO:c@d SIZE=1\013\010RCPT TO:c@d\013\010RCPT TO:<\034q u\034@d>\013\010RCPT TO:<\034qu\034@d>\013\010RCPT TO:<@r1,@r2:x@y>\013\010RCPT TO:<x@[1.2.3.4]>\013\010RCPT TO:<postmaster>\013\010RCPT TO:<a.b.c@d.e>\013\010RCPT TO:<a+tag@d>\013\010RCPT TO:<\034a\092\034b\034@d>\013\010DATA\013\010x\013\010.\013\010QUIT\013\010",
      messages = {
        {
          data = "x",
          kwargs = {
            mail_options = {},
            rcpt_options = {},
          },
          mailfrom = "a@b",
          peer_host = "127.0.0.1",
          rcpttos = {
            "c@d",
            "\034q u\034@d",
            "qu@d",
            "x@y",
            "x@[1.2.3.4]",
            "postmaster",
            "a.b.c@d.e",
            "a+tag@d",
            "\034a\092\034b\034@d",
          },
        },
      },
      replies = {
        "250-%FQDN%",
        "250-SIZE 33554432",
        "250-8BITMIME",
        "250 HELP",
        "250 OK",
        "555 RCPT TO parameters not recognized or not implemented",
        "250 OK",
        "250 OK",
        "250 OK",
        "250 OK",
        "250 OK",
        "250 OK",
        "250 OK",
        "250 OK",
        "250 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 OK",
        "221 Bye",
      },
    },
    {
      input = "\013\010  \013\010foo\013\010FOO bar\013\010mail\013\010helo\013\010x y z\013\010QUIT\013\010",
      messages = {},
      replies = {
        "500 Error: bad syntax",
        "500 Error: command \034\034 not recognized",
        "500 Error: command \034FOO\034 not recognized",
        "500 Error: command \034FOO\034 not recognized",
        "503 Error: send HELO first",
        "501 Syntax: HELO hostname",
        "500 Error: command \034X\034 not recognized",
        "221 Bye",
      },
    },
    {
      input = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\013\010xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\013\010NOOP                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                            \013\010NOOP                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                             \013\010QUIT\013\010",
      messages = {},
      replies = {
        "500 Error: command \034XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX\034 not recognized",
        "500 Error: line too long",
        "250 OK",
        "500 Error: line too long",
        "221 Bye",
      },
    },
    {
      input = "EHLO x\013\010MAIL FROM:<a@b>                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                   \013\010RSET\013\010MAIL FROM:<a@b>                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                           \013\010RSET\013\010MAIL FROM:<a@b>                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                            \013\010QUIT\013\010",
      messages = {},
      replies = {
        "250-%FQDN%",
        "250-SIZE 33554432",
        "250-8BITMIME",
        "250 HELP",
        "250 OK",
        "250 OK",
        "250 OK",
        "250 OK",
        "500 Error: line too long",
        "221 Bye",
      },
    },
    {
      input = "HELO x\013\010MAIL FROM:<a@b>                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                  \013\010QUIT\013\010",
      messages = {},
      replies = {
        "250 %FQDN%",
        "500 Error: line too long",
        "221 Bye",
      },
    },
    {
      input = "EHLO x\013\010MAIL FROM:<a@b>\013\010RCPT TO:<c@d>\013\010RCPT TO:<e@f>\013\010DATA\013\010\013\010.\013\010MAIL FROM:<b@c>\013\010RCPT TO:<c@d>\013\010DATA\013\010...\013\010..\013\010.x\013\010\013\010.\013\010QUIT\013\010",
      messages = {
        {
          data = "",
          kwargs = {
            mail_options = {},
            rcpt_options = {},
          },
          mailfrom = "a@b",
          peer_host = "127.0.0.1",
          rcpttos = {
            "c@d",
            "e@f",
          },
        },
        {
          data = "..\010.\010x\010",
          kwargs = {
            mail_options = {},
            rcpt_options = {},
          },
          mailfrom = "b@c",
          peer_host = "127.0.0.1",
          rcpttos = {
            "c@d",
          },
        },
      },
      replies = {
        "250-%FQDN%",
        "250-SIZE 33554432",
        "250-8BITMIME",
        "250 HELP",
        "250 OK",
        "250 OK",
        "250 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 OK",
        "250 OK",
        "250 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 OK",
        "221 Bye",
      },
    },
    {
      input = "HELO x\013\010MAIL FROM:<a@b> x\013\010MAIL FROM: <a@b>\013\010RCPT TO: <c@d>\013\010QUIT\013\010",
      messages = {},
      replies = {
        "250 %FQDN%",
        "501 Syntax: MAIL FROM: <address>",
        "250 OK",
        "250 OK",
        "221 Bye",
      },
    },
    {
      input = "HELO x\013\010MAIL FROM:<a@b>\013\010RSET\013\010MAIL FROM:<c@d>\013\010HELO y\013\010QUIT\013\010",
      messages = {},
      replies = {
        "250 %FQDN%",
        "250 OK",
        "250 OK",
        "250 OK",
        "503 Duplicate HELO/EHLO",
        "221 Bye",
      },
    },
    {
      input = "EHLO x\013\010MAIL FROM:<a@b>SIZE=10\013\010RCPT TO:<x@y>\013\010DATA\013\010z\013\010.\013\010QUIT\013\010",
      messages = {
        {
          data = "z",
          kwargs = {
            mail_options = {
              "SIZE=10",
            },
            rcpt_options = {},
          },
          mailfrom = "a@b",
          peer_host = "127.0.0.1",
          rcpttos = {
            "x@y",
          },
        },
      },
      replies = {
        "250-%FQDN%",
        "250-SIZE 33554432",
        "250-8BITMIME",
        "250 HELP",
        "250 OK",
        "250 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 OK",
        "221 Bye",
      },
    },
    {
      input = "EHLO \009 x \009\013\010MAIL FROM:<a@b>\013\010QUIT\013\010",
      messages = {},
      replies = {
        "250-%FQDN%",
        "250-SIZE 33554432",
        "250-8BITMIME",
        "250 HELP",
        "250 OK",
        "221 Bye",
      },
    },
    {
      input = "EHLO x\013\010MAIL FROM:<\195\169@b>\013\010RCPT TO:<\195\188@\195\159>\013\010DATA\013\010\195\188n\013\010.\013\010QUIT\013\010",
      messages = {
        {
          data = "\195\188n",
          kwargs = {
            mail_options = {},
            rcpt_options = {},
          },
          mailfrom = "\195\169@b",
          peer_host = "127.0.0.1",
          rcpttos = {
            "\195\188@\195\159",
          },
        },
      },
      replies = {
        "250-%FQDN%",
        "250-SIZE 33554432",
        "250-8BITMIME",
        "250 HELP",
        "250 OK",
        "250 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 OK",
        "221 Bye",
      },
    },
    {
      input = "EHLO x\013\010MAIL FROM:<a@b> SIZE=10 SIZE=20 BODY=7BIT\013\010RCPT TO:<a@b>\013\010DATA\013\010q\013\010.\013\010QUIT\013\010",
      messages = {
        {
          data = "q",
          kwargs = {
            mail_options = {
              "SIZE=10",
              "SIZE=20",
              "BODY=7BIT",
            },
            rcpt_options = {},
          },
          mailfrom = "a@b",
          peer_host = "127.0.0.1",
          rcpttos = {
            "a@b",
          },
        },
      },
      replies = {
        "250-%FQDN%",
        "250-SIZE 33554432",
        "250-8BITMIME",
        "250 HELP",
        "250 OK",
        "250 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 OK",
        "221 Bye",
      },
    },
    {
      input = "EHLO x\013\010MAIL FROM:<a@b> size=33554433\013\010MAIL FROM:<a@b> size=33554432\013\010QUIT\013\010",
      messages = {},
      replies = {
        "250-%FQDN%",
        "250-SIZE 33554432",
        "250-8BITMIME",
        "250 HELP",
        "552 Error: message size exceeds fixed maximum message size",
        "250 OK",
        "221 Bye",
      },
    },
    {
      input = "quit\013\010",
      messages = {},
      replies = {
        "221 Bye",
      },
    },
    {
      input = "EHLO x\013\010MAIL FROM:<a@b> SIZE=\013\010MAIL FROM:<a@b> BODY=8bitmime\013\010QUIT\013\010",
      messages = {},
      replies = {
        "250-%FQDN%",
        "250-SIZE 33554432",
        "250-8BITMIME",
        "250 HELP",
        "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]",
        "250 OK",
        "221 Bye",
      },
    },
    {
      input = "HELO h\013\010MAIL FROM:<a@b>\013\010RCPT TO:<c@d>\013\010DATA\013\010l1\013\010l2\013\010\013\010\013\010.\013\010MAIL FROM:<e@f>\013\010RCPT TO:<g@h>\013\010DATA\013\010\013\010\013\010.\013\010QUIT\013\010",
      messages = {
        {
          data = "l1\010l2\010\010",
          kwargs = {
            mail_options = {},
            rcpt_options = {},
          },
          mailfrom = "a@b",
          peer_host = "127.0.0.1",
          rcpttos = {
            "c@d",
          },
        },
        {
          data = "\010",
          kwargs = {
            mail_options = {},
            rcpt_options = {},
          },
          mailfrom = "e@f",
          peer_host = "127.0.0.1",
          rcpttos = {
            "g@h",
          },
        },
      },
      replies = {
        "250 %FQDN%",
        "250 OK",
        "250 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 OK",
        "250 OK",
        "250 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 OK",
        "221 Bye",
      },
    },
    {
      input = "HELO h\013\010MAIL FROM:<a@b>\013\010RCPT TO:<c@d>\013\010DATA\013\010a\013\010.\013\013\010.\013\010QUIT\013\010",
      messages = {
        {
          data = "a\010\013",
          kwargs = {
            mail_options = {},
            rcpt_options = {},
          },
          mailfrom = "a@b",
          peer_host = "127.0.0.1",
          rcpttos = {
            "c@d",
          },
        },
      },
      replies = {
        "250 %FQDN%",
        "250 OK",
        "250 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 OK",
        "221 Bye",
      },
    },
    {
      input = "HELO h\013\010MAIL FROM:<a@b>\013\010RCPT TO:<c@d>\013\010DATA\013\010x\013\010.\013foo\013\010.\013\010QUIT\013\010",
      messages = {
        {
          data = "x\010\013foo",
          kwargs = {
            mail_options = {},
            rcpt_options = {},
          },
          mailfrom = "a@b",
          peer_host = "127.0.0.1",
          rcpttos = {
            "c@d",
          },
        },
      },
      replies = {
        "250 %FQDN%",
        "250 OK",
        "250 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 OK",
        "221 Bye",
      },
    },
    {
      input = "HELO h\013\010MAIL FROM:<a@b>\013\010RCPT TO:<c@d>\013\010DATA\013\010x\013\013\010.\013\010QUIT\013\010",
      messages = {
        {
          data = "x\013",
          kwargs = {
            mail_options = {},
            rcpt_options = {},
          },
          mailfrom = "a@b",
          peer_host = "127.0.0.1",
          rcpttos = {
            "c@d",
          },
        },
      },
      replies = {
        "250 %FQDN%",
        "250 OK",
        "250 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 OK",
        "221 Bye",
      },
    },
    {
      input = "HELO h\013\010MAIL FROM:<a@b>\013\010RCPT TO:<c@d>\013\010DATA\013\010\013\013\010.\013\010QUIT\013\010",
      messages = {
        {
          data = "\013",
          kwargs = {
            mail_options = {},
            rcpt_options = {},
          },
          mailfrom = "a@b",
          peer_host = "127.0.0.1",
          rcpttos = {
            "c@d",
          },
        },
      },
      replies = {
        "250 %FQDN%",
        "250 OK",
        "250 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 OK",
        "221 Bye",
      },
    },
  },
  nolimit = {
    {
      input = "EHLO x\013\010MAIL FROM:<a@b> SIZE=99999999999\013\010RCPT TO:<c@d>\013\010QUIT\013\010",
      messages = {},
      replies = {
        "250-%FQDN%",
        "250-8BITMIME",
        "250 HELP",
        "250 OK",
        "250 OK",
        "221 Bye",
      },
    },
    {
      input = "EHLO x\013\010MAIL FROM:<a@b>                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                               \013\010QUIT\013\010",
      messages = {},
      replies = {
        "250-%FQDN%",
        "250-8BITMIME",
        "250 HELP",
        "500 Error: line too long",
        "221 Bye",
      },
    },
  },
  size100 = {
    {
      input = "EHLO x\013\010MAIL FROM:<a@b> SIZE=100\013\010MAIL FROM:<a@b> SIZE=101\013\010RCPT TO:<c@d>\013\010QUIT\013\010",
      messages = {},
      replies = {
        "250-%FQDN%",
        "250-SIZE 100",
        "250-8BITMIME",
        "250 HELP",
        "250 OK",
        "503 Error: nested MAIL command",
        "250 OK",
        "221 Bye",
      },
    },
    {
      input = "EHLO x\013\010MAIL FROM:<a@b>\013\010RCPT TO:<c@d>\013\010DATA\013\010yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\013\010.\013\010QUIT\013\010",
      messages = {
        {
          data = "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy",
          kwargs = {
            mail_options = {},
            rcpt_options = {},
          },
          mailfrom = "a@b",
          peer_host = "127.0.0.1",
          rcpttos = {
            "c@d",
          },
        },
      },
      replies = {
        "250-%FQDN%",
        "250-SIZE 100",
        "250-8BITMIME",
        "250 HELP",
        "250 OK",
        "250 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 OK",
        "221 Bye",
      },
    },
  },
  smtputf8 = {
    {
      input = "EHLO x\013\010MAIL FROM:<a@b> SMTPUTF8\013\010RCPT TO:<c@d>\013\010DATA\013\010x\013\010.\013\010QUIT\013\010",
      messages = {
        {
          data = "x",
          kwargs = {
            mail_options = {
              "SMTPUTF8",
            },
            rcpt_options = {},
          },
          mailfrom = "a@b",
          peer_host = "127.0.0.1",
          rcpttos = {
            "c@d",
          },
        },
      },
      replies = {
        "250-%FQDN%",
        "250-SIZE 33554432",
        "250-8BITMIME",
        "250-SMTPUTF8",
        "250 HELP",
        "250 OK",
        "250 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 OK",
        "221 Bye",
      },
    },
    {
      input = "EHLO x\013\010MAIL FROM:<a@b> SMTPUTF8=yes\013\010MAIL FROM:<a@b> smtputf8\013\010RCPT TO:<c@d>\013\010DATA\013\010x\013\010.\013\010QUIT\013\010",
      messages = {
        {
          data = "x",
          kwargs = {
            mail_options = {
              "SMTPUTF8",
            },
            rcpt_options = {},
          },
          mailfrom = "a@b",
          peer_host = "127.0.0.1",
          rcpttos = {
            "c@d",
          },
        },
      },
      replies = {
        "250-%FQDN%",
        "250-SIZE 33554432",
        "250-8BITMIME",
        "250-SMTPUTF8",
        "250 HELP",
        "501 Error: SMTPUTF8 takes no arguments",
        "250 OK",
        "250 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 OK",
        "221 Bye",
      },
    },
    {
      input = "EHLO x\013\010MAIL FROM:<a@b>                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                     \013\010RSET\013\010MAIL FROM:<a@b>                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                                      \013\010QUIT\013\010",
      messages = {},
      replies = {
        "250-%FQDN%",
        "250-SIZE 33554432",
        "250-8BITMIME",
        "250-SMTPUTF8",
        "250 HELP",
        "250 OK",
        "250 OK",
        "500 Error: line too long",
        "221 Bye",
      },
    },
    {
      input = "HELO x\013\010MAIL FROM:<a@b> SMTPUTF8\013\010QUIT\013\010",
      messages = {},
      replies = {
        "250 %FQDN%",
        "501 Syntax: MAIL FROM: <address>",
        "221 Bye",
      },
    },
  },
}

/*
 * lua-smtpd: the SMTP protocol itself, with no Lua and no libuv. This is
 * what the fuzzers link (fuzz/), and what the glue (core/glue.h) drives.
 *
 *   parser.c   framing of command lines and DATA
 *   proxy.c    the PROXY protocol header, CIDR matching
 *   addr.c     RFC 5321 paths and MAIL/RCPT parameters
 *   session.c  the SMTP state machine and the built-in commands
 */
#ifndef SMTPD_SMTP_H
#define SMTPD_SMTP_H

#include <sys/socket.h>

#include "base/base.h"

/* ---- parser.c ---------------------------------------------------------- */

enum {
  SMTPD_PARSE_MORE = 0,   /* all input consumed, nothing complete yet */
  SMTPD_PARSE_LINE,       /* a command line is complete */
  SMTPD_PARSE_DATA_END,   /* the message ended (CRLF . CRLF, BDAT LAST) */
  SMTPD_PARSE_NOMEM,      /* allocation failed */
  SMTPD_PARSE_CHUNK       /* a BDAT chunk (not LAST, or discarded) ended */
};

typedef struct smtpd_parser {
  int data_mode;          /* 0: command lines, 1: message data */
  int st;                 /* sub-state within the mode */
  /* Command line: at most line_keep bytes are kept, line_len counts all. */
  smtpd_buf line;
  size_t line_len;
  size_t line_keep;
  /* Message data: dot-unstuffed, CRLF turned into LF, as it streams. */
  smtpd_buf data;
  size_t data_raw;        /* raw bytes seen since DATA (terminator incl.) */
  size_t data_limit;      /* 0: no limit */
  int data_over;          /* data_raw went past data_limit: data dropped */
  size_t term_len;        /* length of the terminator that ended DATA */
  /* BDAT (data_mode 2): the chunk's bytes left; discard: read, not kept;
   * last: the message ends with it; cr: a CR ended the previous chunk. */
  size_t chunk_left;
  int chunk_discard, chunk_last, chunk_cr;
  int chunk_raw;          /* BODY=BINARYMIME: the bytes as they come */
} smtpd_parser;

void smtpd_parser_init(smtpd_parser *p, size_t line_keep);
void smtpd_parser_free(smtpd_parser *p);
void smtpd_parser_begin_data(smtpd_parser *p, size_t limit);
void smtpd_parser_end_data(smtpd_parser *p);
/* BDAT: the next n bytes are a chunk, added to the message (CRLF made
 * LF as DATA does) or discarded; the message and its size carry over
 * from chunk to chunk until smtpd_parser_drop_data. */
void smtpd_parser_begin_chunk(smtpd_parser *p, size_t n, int discard,
                              int last, int raw, size_t limit);
/* A chunk of size 0 is complete without input: feed it nothing. */
int smtpd_parser_chunk_ready(const smtpd_parser *p);
/* Forgets a BDAT message between chunks (RSET, an error). */
void smtpd_parser_drop_data(smtpd_parser *p);
int smtpd_parser_feed(smtpd_parser *p, const char *buf, size_t len,
                      size_t *consumed);
/* Raw size of the finished message, as smtpd counts it (no terminator). */
size_t smtpd_parser_data_size(const smtpd_parser *p);

/* ---- proxy.c ----------------------------------------------------------- */

/* The PROXY protocol header at the start of p[0..n) (v1 or v2, v2 at most
 * max bytes): 1 complete (*used bytes; *local: the proxy speaks for
 * itself, keep the socket's address; else the client is *src), 0 more
 * bytes needed, -1 not a valid header. */
int smtpd_proxy_parse(const unsigned char *p, size_t n, size_t max,
                      size_t *used, struct sockaddr_storage *src, int *local);

typedef struct smtpd_cidr {
  int family;              /* AF_INET or AF_INET6 */
  int bits;
  unsigned char addr[16];
} smtpd_cidr;

/* "10.0.0.0/8", "::1", "127.0.0.1": 0, or -1 when malformed. */
int smtpd_cidr_parse(const char *s, smtpd_cidr *c);
int smtpd_cidr_match(const smtpd_cidr *c, const struct sockaddr *sa);
/* "10.0.0.0/8" back from c. */
void smtpd_cidr_name(const smtpd_cidr *c, char *buf, size_t size);

/* ---- addr.c ------------------------------------------------------------ */

#define SMTPD_ADDR_MAX 1100

typedef struct smtpd_addr {
  char buf[SMTPD_ADDR_MAX];
  size_t len;
} smtpd_addr;

/* Python smtpd's _getaddr for RFC 5321 paths: "<" [route ":"] addr-spec
 * ">", "<>", or a bare addr-spec. Returns 1, the address in *o and the
 * rest (the parameters, leading blanks removed) in *rest; 0 when there is
 * no address we accept. */
int smtpd_addr_parse(const char *p, size_t n, smtpd_addr *o,
                     const char **rest, size_t *rest_n);
/* Splits parameters on whitespace, upper-cased, into l (cleared first);
 * -1 when out of memory. */
int smtpd_params_split(const char *p, size_t n, smtpd_strlist *l);
/* The value of KEY= in parameters as sent (p[0..n), blank separated, the
 * key matched without case): 1 with *v, *vl, else 0. */
int smtpd_param_raw(const char *p, size_t n, const char *key,
                    const char **v, size_t *vl);
/* Every parameter is keyword[=value] as smtpd's _getparams wants. */
int smtpd_params_valid(const smtpd_strlist *l);
/* The last parameter with this keyword: its index, or -1; *val is NULL
 * when it has no "=". */
long smtpd_params_find(const smtpd_strlist *l, const char *key,
                       const char **val, size_t *vlen);
/* Whether some keyword is not in the NULL-ended list known, nor extra
 * (NULL: none). */
int smtpd_params_others_but(const smtpd_strlist *l, const char *const *known,
                            const char *extra);
/* Whether arg starts with keyword kw ("FROM:"), ignoring ASCII case. */
int smtpd_has_keyword(const char *arg, size_t n, const char *kw);

/* ---- reply.c ----------------------------------------------------------- */

/* Every reply text the core sends, once (core.REPLIES for Lua). A text
 * with %s is a format whose arguments are strings (smtpd_sayf). */
#define SMTPD_REPLIES(X) \
  X(OK, \
    "250 OK") \
  X(BYE, \
    "221 Bye") \
  X(GREETING, \
    "220 %s %s") \
  X(HELO_OK, \
    "250 %s") \
  X(EHLO_FIRST, \
    "250-%s") \
  X(EHLO_SIZE, \
    "250-SIZE %s") \
  X(EHLO_8BITMIME, \
    "250-8BITMIME") \
  X(EHLO_SMTPUTF8, \
    "250-SMTPUTF8") \
  X(EHLO_PIPELINING, \
    "250-PIPELINING") \
  X(EHLO_CHUNKING, \
    "250-CHUNKING") \
  X(EHLO_BINARYMIME, \
    "250-BINARYMIME") \
  X(EHLO_ENHANCED, \
    "250-ENHANCEDSTATUSCODES") \
  X(EHLO_DSN, \
    "250-DSN") \
  X(EHLO_REQUIRETLS, \
    "250-REQUIRETLS") \
  X(EHLO_STARTTLS, \
    "250-STARTTLS") \
  X(EHLO_AUTH, \
    "250-AUTH %s") \
  X(EHLO_LAST, \
    "250 HELP") \
  X(DATA_GO, \
    "354 End data with <CR><LF>.<CR><LF>") \
  X(BDAT_OK, \
    "250 OK %s octets received") \
  X(VRFY_OK, \
    "252 Cannot VRFY user, but will accept message and attempt delivery") \
  X(VRFY_FAIL, \
    "502 Could not VRFY %s") \
  X(EXPN, \
    "502 EXPN not implemented") \
  X(HELP, \
    "250 Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY") \
  X(HELP_BAD, \
    "501 Supported commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY") \
  X(HELP_EHLO, \
    "250 Syntax: EHLO hostname") \
  X(HELP_HELO, \
    "250 Syntax: HELO hostname") \
  X(HELP_DATA, \
    "250 Syntax: DATA") \
  X(HELP_RSET, \
    "250 Syntax: RSET") \
  X(HELP_NOOP, \
    "250 Syntax: NOOP") \
  X(HELP_QUIT, \
    "250 Syntax: QUIT") \
  X(HELP_VRFY, \
    "250 Syntax: VRFY <address>") \
  X(HELP_PATH, \
    "250 Syntax: %s: <address>%s") \
  X(SYNTAX_EHLO, \
    "501 Syntax: EHLO hostname") \
  X(SYNTAX_HELO, \
    "501 Syntax: HELO hostname") \
  X(SYNTAX_LHLO, \
    "501 Syntax: LHLO hostname") \
  X(SYNTAX_NOOP, \
    "501 Syntax: NOOP") \
  X(SYNTAX_RSET, \
    "501 Syntax: RSET") \
  X(SYNTAX_DATA, \
    "501 Syntax: DATA") \
  X(SYNTAX_VRFY, \
    "501 Syntax: VRFY <address>") \
  X(SYNTAX_PATH, \
    "501 Syntax: %s: <address>%s") \
  X(DUP_HELO, \
    "503 Duplicate HELO/EHLO") \
  X(NEED_HELO, \
    "503 Error: send HELO first") \
  X(NEED_MAIL, \
    "503 Error: need MAIL command") \
  X(NEED_RCPT, \
    "503 Error: need RCPT command") \
  X(NESTED_MAIL, \
    "503 Error: nested MAIL command") \
  X(RCPT_AFTER_BDAT, \
    "503 Error: RCPT after BDAT") \
  X(DATA_AFTER_BDAT, \
    "503 Error: DATA after BDAT") \
  X(BINARYMIME_NEEDS_BDAT, \
    "503 Error: BODY=BINARYMIME needs BDAT") \
  X(TOO_MUCH_DATA, \
    "552 Error: Too much mail data") \
  X(SIZE_EXCEEDED, \
    "552 Error: message size exceeds fixed maximum message size") \
  X(BODY_BAD, \
    "501 Error: BODY can only be one of 7BIT, 8BITMIME") \
  X(BODY_BAD_BINARY, \
    "501 Error: BODY can only be one of 7BIT, 8BITMIME, BINARYMIME") \
  X(SMTPUTF8_ARG, \
    "501 Error: SMTPUTF8 takes no arguments") \
  X(MAIL_PARAMS, \
    "555 MAIL FROM parameters not recognized or not implemented") \
  X(RCPT_PARAMS, \
    "555 RCPT TO parameters not recognized or not implemented") \
  X(RET_BAD, \
    "501 Syntax: RET=FULL or RET=HDRS") \
  X(ENVID_BAD, \
    "501 Syntax: ENVID=xtext (100 characters at most)") \
  X(REQUIRETLS_BAD, \
    "501 Syntax: REQUIRETLS takes no value") \
  X(NOTIFY_BAD, \
    "501 Syntax: NOTIFY=NEVER or NOTIFY=SUCCESS,FAILURE,DELAY") \
  X(ORCPT_BAD, \
    "501 Syntax: ORCPT=addr-type;xtext") \
  X(TOO_MANY_RCPTS, \
    "452 4.5.3 Error: too many recipients") \
  X(STORAGE, \
    "451 4.3.1 Error: insufficient system storage, try again later") \
  X(LOCAL_ERROR, \
    "451 4.3.0 Requested action aborted: local error in processing") \
  X(NOMEM, \
    "451 Out of memory") \
  X(CONFUSION, \
    "451 Internal confusion") \
  X(BAD_SYNTAX, \
    "500 Error: bad syntax") \
  X(LINE_TOO_LONG, \
    "500 Error: line too long") \
  X(LINE_UTF8, \
    "500 Error: command line is not valid UTF-8") \
  X(DATA_UTF8, \
    "500 Error: message data is not valid UTF-8") \
  X(UNKNOWN, \
    "500 Error: command \"%s\" not recognized") \
  X(BDAT_SYNTAX, \
    "501 Syntax: BDAT <size> [LAST] (closing: the chunk cannot be found)") \
  X(BDAT_TOO_BIG, \
    "552 5.3.4 Error: chunk size too big (closing: the chunk cannot be read)") \
  X(TOO_MANY_BAD, \
    "421 4.7.0 %s Error: too many bad commands, closing") \
  X(TOO_MANY_CONN, \
    "421 4.7.0 %s Error: too many connections, try again later") \
  X(TOO_MANY_AUTH, \
    "421 4.7.0 %s Error: too many failed authentications, closing") \
  X(CUT, \
    "421 4.4.2 %s Error: %s") \
  X(SHUTDOWN, \
    "421 4.3.2 %s Service shutting down, closing channel") \
  X(STARTTLS_FIRST, \
    "530 5.7.0 Must issue a STARTTLS command first") \
  X(STARTTLS_GO, \
    "220 2.0.0 Ready to start TLS") \
  X(STARTTLS_SYNTAX, \
    "501 5.5.4 Syntax: STARTTLS") \
  X(TLS_ACTIVE, \
    "503 5.5.1 Error: TLS already active") \
  X(BAD_SEQUENCE, \
    "503 5.5.1 Error: bad sequence of commands") \
  X(AUTH_REQUIRED, \
    "530 5.7.0 Authentication required") \
  X(AUTH_ENCRYPT, \
    "538 5.7.11 Encryption required for requested authentication mechanism") \
  X(AUTH_ALREADY, \
    "503 5.5.1 Error: already authenticated") \
  X(AUTH_IN_MAIL, \
    "503 5.5.1 Error: AUTH not permitted during a mail transaction") \
  X(AUTH_NEED_EHLO, \
    "503 5.5.1 Error: send EHLO first") \
  X(AUTH_SYNTAX, \
    "501 5.5.4 Syntax: AUTH mechanism [initial-response]") \
  X(AUTH_UNKNOWN, \
    "504 5.5.4 Unrecognized authentication type") \
  X(AUTH_PARAM, \
    "501 5.5.4 Syntax: AUTH=<mailbox> takes an xtext value") \
  X(AUTH_TOO_LONG, \
    "500 5.5.6 Authentication exchange line is too long") \
  X(AUTH_TEMPFAIL, \
    "454 4.7.0 Temporary authentication failure") \
  X(AUTH_OK, \
    "235 2.7.0 Authentication successful") \
  X(AUTH_INVALID, \
    "535 5.7.8 Authentication credentials invalid") \
  X(AUTH_CANCELLED, \
    "501 5.7.0 Authentication cancelled") \
  X(AUTH_BASE64, \
    "501 5.5.2 Cannot decode base64 response") \
  X(AUTH_CRAM_INITIAL, \
    "501 5.7.0 CRAM-MD5 takes no initial response") \
  X(UPSTREAM_UNAVAILABLE, \
    "451 4.4.1 %s unavailable: %s") \
  X(UPSTREAM_BINARYMIME, \
    "554 5.6.3 Error: the upstream does not take BINARYMIME") \
  X(UPSTREAM_SMTPUTF8, \
    "553 5.6.7 Error: the upstream does not take SMTPUTF8") \
  X(UPSTREAM_REQUIRETLS, \
    "550 5.7.30 REQUIRETLS support required: the upstream does not offer it") \
  X(ACCEPT_NOMEM, \
    "421 4.3.2 Service not available: out of memory, try again later") \
  X(CONNECT_TEMPFAIL, \
    "421 4.3.0 %s Service not available, try again later")

#define SMTPD_REPLY_ENUM(name, text) SMTPD_R_##name,
enum { SMTPD_REPLIES(SMTPD_REPLY_ENUM) SMTPD_NREPLIES };
#undef SMTPD_REPLY_ENUM

typedef struct smtpd_reply_text {
  const char *name;
  const char *text;
  size_t len;
} smtpd_reply_text;

extern const smtpd_reply_text smtpd_replies[SMTPD_NREPLIES];

/* The text of reply id, and its length. */
#define SMTPD_TEXT(id) smtpd_replies[SMTPD_R_##id].text
#define SMTPD_TEXT_LEN(id) smtpd_replies[SMTPD_R_##id].len

/* ---- session.c --------------------------------------------------------- */

/* What a reply answers, beyond the verbs (for enhanced status codes). */
enum {
  SMTPD_CTX_GREETING = -2, SMTPD_CTX_OTHER = -1,
  SMTPD_CTX_MESSAGE = 100, SMTPD_CTX_AUTH, SMTPD_CTX_STARTTLS
};

/* The built-in commands, in the order of smtpd_verb_names. */
#define SMTPD_VERBS(X) \
  X(HELO) X(EHLO) X(NOOP) X(QUIT) X(MAIL) X(RCPT) X(RSET) X(DATA) X(HELP) \
  X(VRFY) X(EXPN)
#define SMTPD_VERB_ENUM(v) SMTPD_VERB_##v,
enum { SMTPD_VERBS(SMTPD_VERB_ENUM) SMTPD_NVERBS };
#undef SMTPD_VERB_ENUM

extern const char *const smtpd_verb_names[SMTPD_NVERBS];


#define SMTPD_COMMAND 0
#define SMTPD_DATA 1
#define SMTPD_COMMAND_SIZE_LIMIT 512
#define SMTPD_DATA_SIZE_DEFAULT 33554432
#define SMTPD_MAX_RECIPIENTS 1000
#define SMTPD_MAX_BAD_COMMANDS 20
/* RFC 4954 4: AUTH lines and the answers to its challenges may be this
 * long (an OAuth token does not fit 512). */
#define SMTPD_AUTH_LINE_MAX 12288
/* Bytes of a command line the parser keeps before the session sets it. */
#define SMTPD_LINE_KEEP (SMTPD_COMMAND_SIZE_LIMIT + 1)

/* What a session is set up with (server options, the engine's). */
typedef struct smtpd_session_conf {
  size_t data_size_limit;  /* 0: none */
  int enable_smtputf8;
  int decode_data;
  size_t max_recipients;   /* 0: no limit; past it RCPT gets 452 */
  size_t max_bad;          /* 0: no limit; past it 421 and close */
  int require_starttls;    /* MAIL, RCPT, DATA, AUTH need TLS first */
  int auth_require_tls;    /* AUTH only over TLS (not even advertised) */
  int auth_required;       /* MAIL needs AUTH first */
  int pipelining;          /* advertise PIPELINING (RFC 2920) */
  int chunking;            /* CHUNKING: BDAT (RFC 3030) */
  int binarymime;          /* BINARYMIME too (with chunking) */
  int enhanced;            /* ENHANCEDSTATUSCODES (RFC 2034) on every reply */
  int lmtp;                /* LMTP (RFC 2033): LHLO, a reply per recipient */
  int dsn;                 /* DSN (RFC 3461): RET, ENVID, NOTIFY, ORCPT */
  int requiretls;          /* REQUIRETLS (RFC 8689), offered over TLS */
} smtpd_session_conf;

typedef struct smtpd_session {
  smtpd_parser parser;
  smtpd_buf *out;          /* replies are appended here */
  int state;               /* SMTPD_COMMAND or SMTPD_DATA */
  int extended_smtp;
  int require_smtputf8;
  int enable_smtputf8;
  int decode_data;
  int pipelining;
  int chunking;
  int binarymime;
  int enhanced;
  int lmtp;
  int dsn;
  int requiretls;
  /* DSN: "NOTIFY=... ORCPT=...\naddress" for each recipient that gave
   * any, in RCPT order (kwargs.dsn). */
  smtpd_strlist rcpt_dsn;
  size_t msg_rcpts;        /* recipients of the message being answered */
  int ctx;                 /* what is being answered: SMTPD_CTX_* or a verb */
  int bdat;                /* this transaction's message comes by BDAT */
  int bdat_failed;         /* a chunk went past the size limit */
  int bdat_error;          /* the reply for the chunk being discarded, or
                              -1 */
  size_t bdat_size;        /* the size of the chunk being read */
  int quit;                /* close once the replies are written */
  smtpd_str greeting;      /* seen_greeting; empty when none */
  smtpd_str mailfrom;
  int has_mailfrom;
  smtpd_strlist rcpttos;
  smtpd_strlist mail_options;
  smtpd_strlist rcpt_options;
  size_t data_size_limit;  /* 0: none */
  size_t command_size_limit;
  size_t mail_extra;       /* extra bytes MAIL may use (SIZE, SMTPUTF8) */
  size_t num_bytes;        /* bytes of the last line or message */
  smtpd_str fqdn;
  unsigned rset_gen;       /* bumped by RSET/HELO/EHLO: received_data gone */
  size_t max_recipients;
  size_t max_bad;
  size_t bad;              /* 500/501 replies so far */
  int data_blocked;        /* memory cap reached: DATA gets 451 */
  /* A script checks MAIL and RCPT (server:check_sender/_recipient): with
   * check set, a MAIL or RCPT that passes the built-in checks stores
   * nothing and answers nothing; it is pending until settled. */
  int check;
  /* A relay pairs the session with an upstream (the owner's): MAIL, RCPT,
   * DATA and a first BDAT that pass the built-in checks are held the
   * same way, until the upstream's verdict settles them. */
  int relay;
  int pending;             /* 0, or the held command: SMTPD_VERB_MAIL + 1,
                              _RCPT + 1, _DATA + 1, SMTPD_PENDING_BDAT */
  size_t pending_size;     /* a held BDAT: its size, LAST, raw */
  int pending_last, pending_binary;
  smtpd_str bdat_reply;    /* the refusal a discarded chunk gets, when it
                              is not one of the catalogue's */
  smtpd_str pending_path;
  smtpd_strlist pending_params;
  smtpd_str pending_raw;   /* DSN: the held command's parameters as sent */
  smtpd_str dsn_mail;      /* DSN: MAIL's parameters as sent (ENVID) */
  int pending_smtputf8;
  /* TLS and AUTH. The owner sets tls_offer (it can start TLS) and
   * auth_mechs (the mechanisms to advertise, space separated; NULL: no
   * AUTH at all, and the session is smtpd's). */
  int tls_offer;
  int tls_on;              /* the connection is encrypted */
  int starttls;            /* STARTTLS was accepted: the owner switches */
  int require_starttls;
  int auth_require_tls;
  int auth_required;
  const char *auth_mechs;
  int authed;
  smtpd_str auth_user;
  size_t auth_failures;
} smtpd_session;

/* The outcome of reading one command line. */
typedef struct smtpd_command {
  int verb;                /* SMTPD_VERB_*, or -1 for any other verb */
  const char *name;        /* upper-cased verb, NUL-terminated */
  size_t name_len;
  const char *arg;         /* stripped argument, NULL when absent */
  size_t arg_len;
} smtpd_command;

int smtpd_session_init(smtpd_session *s, smtpd_buf *out, const char *fqdn,
                       size_t fqdn_len);
void smtpd_session_configure(smtpd_session *s, const smtpd_session_conf *c);
void smtpd_session_free(smtpd_session *s);
/* Replies (reply.c). smtpd_reply_raw writes a line as given (with its
 * enhanced code when they are on); smtpd_reply also counts a 500 or 501
 * towards max_bad_commands. */
int smtpd_reply(smtpd_session *s, const char *line, size_t len);
int smtpd_reply_raw(smtpd_session *s, const char *line, size_t len);
int smtpd_replyf(smtpd_session *s, const char *fmt, ...);
/* Reply id of the catalogue; with arguments for its %s. */
int smtpd_say(smtpd_session *s, int id);
int smtpd_sayf(smtpd_session *s, int id, ...);
#define SAY(s, id) smtpd_say((s), SMTPD_R_##id)
/* A reply that echoes client input (pre, p[0..n), post): anything that
 * is not printable ASCII becomes '?', so no reply is ever split. */
int smtpd_reply_echo(smtpd_session *s, const char *pre, const char *p,
                     size_t n, const char *post);
/* The same with reply id, whose one %s is the echoed text. */
int smtpd_say_echo(smtpd_session *s, int id, const char *p, size_t n);
void smtpd_session_rset(smtpd_session *s);
void smtpd_session_post_data(smtpd_session *s);
/* Reads the line the parser completed: 1 = a command to dispatch in *cmd,
 * 0 = already answered (syntax error, line too long, ...). */
int smtpd_session_line(smtpd_session *s, smtpd_command *cmd);
void smtpd_session_builtin(smtpd_session *s, int verb, const char *arg,
                           size_t arg_len);
void smtpd_session_unknown(smtpd_session *s, const char *name, size_t len);
int smtpd_session_data_end(smtpd_session *s);
/* The reply to a message: once, or under LMTP once per recipient. */
void smtpd_session_message_reply(smtpd_session *s, const char *line,
                                 size_t len);
/* smtpd_session_message_reply with reply id of the catalogue. */
void smtpd_say_message(smtpd_session *s, int id);
/* After SMTPD_PARSE_CHUNK: the chunk's reply. */
void smtpd_session_chunk_end(smtpd_session *s);
/* The one dispatcher: what a session's owner does at each event of
 * smtpd_session_feed. NULL members get the session's default. */
typedef struct smtpd_events {
  /* A complete line, before it is read as a command: non-zero when the
   * owner took it (the answer to an AUTH challenge). */
  int (*line)(void *ctx);
  /* A command that passed the gates: non-zero when the owner runs it (a
   * hook); 0 runs the built-in command, or answers an unknown one. */
  int (*command)(void *ctx, const smtpd_command *cmd);
  /* AUTH with an advertised mechanism (default: 454). */
  void (*auth)(void *ctx, const smtpd_command *cmd);
  /* A complete message for the handler: the owner answers it (now or
   * later) and clears the transaction. Required. */
  void (*message)(void *ctx);
  /* STARTTLS was accepted: the owner switches to TLS; the rest of the
   * input is dropped (default: the session resets as if it were done). */
  void (*starttls)(void *ctx);
  /* Before each step: non-zero stops feeding (the owner waits: a hook, a
   * relay, unsent replies). */
  int (*stop)(void *ctx);
  /* Before each parser step, and after each event. */
  void (*step)(void *ctx);
  void (*after)(void *ctx);
  /* A relay's command is held (s->pending): the owner asks the upstream
   * and settles it (smtpd_session_settle); stop should then say wait. */
  void (*held)(void *ctx);
} smtpd_events;

/* Parses and dispatches input until it is used up, the session quits or
 * ev->stop says to wait; returns the bytes used (the rest is the owner's
 * to hold and feed again). Out of memory: 451 and quit. */
size_t smtpd_session_feed(smtpd_session *s, const char *buf, size_t len,
                          const smtpd_events *ev, void *ctx);
/* smtpd_session_feed with the built-in commands only (no hooks): the
 * socket-less engine and the fuzzers. Each message that reaches the
 * handler goes to on_message, whose reply is sent; with s->relay, held
 * commands are accepted at once. Stops at QUIT (s->quit); returns 0. */
typedef const char *(*smtpd_message_fn)(smtpd_session *s, void *ctx);
int smtpd_session_run(smtpd_session *s, const char *buf, size_t len,
                      smtpd_message_fn on_message, void *ctx);
int smtpd_verb_lookup(const char *name, size_t len);
/* The path of a MAIL/RCPT argument ("FROM:"/"TO:" kw), checked as the
 * built-in commands check it: 1 with the address in *o and the unsplit
 * parameters in *rest, or 0. */
int smtpd_session_path(const smtpd_session *s, const char *kw,
                       const char *arg, size_t n, smtpd_addr *o,
                       const char **rest, size_t *rn);
/* The syntax error reply for kw's command, as the built-ins send it. */
void smtpd_syntax_reply(const smtpd_session *s, const char *kw, char *buf,
                        size_t size);
/* Settles a pending MAIL/RCPT (or a relay's DATA, BDAT): accept stores
 * it and answers reply (NULL: 250 OK, or 354 for DATA); refuse answers
 * reply. -1 when nothing was pending. */
int smtpd_session_settle(smtpd_session *s, int accept, const char *reply,
                         size_t n);
/* A held first BDAT (relay): the upstream is ready for the message
 * (accept: the chunk is read as a chunk of it) or refused it with reply
 * (the chunk is read and dropped, and answered with reply). */
#define SMTPD_PENDING_BDAT (SMTPD_NVERBS + 1)
void smtpd_session_bdat_settle(smtpd_session *s, int accept,
                               const char *reply, size_t n);
/* STARTTLS and AUTH, and the commands they gate (require_starttls,
 * auth_required), before the command is dispatched: 0 = not ours, go on;
 * 1 = answered; 2 = an AUTH the owner runs (cmd->arg: "MECH [initial]",
 * the mechanism one of auth_mechs). */
int smtpd_session_ext(smtpd_session *s, const smtpd_command *cmd);
/* The handshake after STARTTLS begins: back to the state after the
 * greeting (RFC 3207 4.2), TLS on. */
void smtpd_session_tls_reset(smtpd_session *s);
/* The length of p's first word (up to a space). */
size_t smtpd_word_len(const char *p, size_t n);
/* Whether mech (upper case) is one of s->auth_mechs. */
int smtpd_session_has_mech(const smtpd_session *s, const char *mech,
                           size_t n);
/* The transaction's MAIL said BODY=BINARYMIME (and it was offered). */
int smtpd_session_binary(const smtpd_session *s);
/* DSN and REQUIRETLS (ext.c): MAIL's parameters (0, or a reply sent);
 * RCPT's (0, or a 555 or 501 sent); an accepted recipient's parameters
 * kept for kwargs.dsn (0, or -1 when out of memory). */
int smtpd_dsn_mail_check(smtpd_session *s);
int smtpd_dsn_rcpt_check(smtpd_session *s, const smtpd_strlist *opts);
int smtpd_dsn_rcpt_keep(smtpd_session *s, const char *raw, size_t rn,
                        const char *addr, size_t alen);
/* Makes the parser follow smtp_state after a command ran. */
void smtpd_session_sync(smtpd_session *s);

/* ---- relay.c: the client side (the relays' protocol) ------------------- */

/* relay.starttls: the order of its choices in core/opts.c. */
enum { SMTPD_STARTTLS_NO = 0, SMTPD_STARTTLS_REQUIRE = 1,
       SMTPD_STARTTLS_OPPORTUNISTIC = 2 };

/* What the server offered in its EHLO reply. */
enum {
  SMTPD_EXT_SIZE = 1 << 0, SMTPD_EXT_8BITMIME = 1 << 1,
  SMTPD_EXT_SMTPUTF8 = 1 << 2, SMTPD_EXT_STARTTLS = 1 << 3,
  SMTPD_EXT_DSN = 1 << 4, SMTPD_EXT_PIPELINING = 1 << 5,
  SMTPD_EXT_CHUNKING = 1 << 6, SMTPD_EXT_BINARYMIME = 1 << 7,
  SMTPD_EXT_ENHANCED = 1 << 8, SMTPD_EXT_REQUIRETLS = 1 << 9,
  SMTPD_EXT_AUTH_PLAIN = 1 << 10, SMTPD_EXT_AUTH_LOGIN = 1 << 11
};

/* The owner's commands: what each REPLY answers. */
enum {
  SMTPD_RC_MAIL = 1, SMTPD_RC_RCPT, SMTPD_RC_DATA, SMTPD_RC_DOT,
  SMTPD_RC_BDAT, SMTPD_RC_RSET, SMTPD_RC_NOOP, SMTPD_RC_QUIT
};

enum {
  SMTPD_RELAY_EV_READY = 1,  /* greeted (TLS, AUTH done): commands may go */
  SMTPD_RELAY_EV_STARTTLS,   /* 220 to STARTTLS: run the handshake, then
                                smtpd_relay_tls_up */
  SMTPD_RELAY_EV_REPLY,      /* the reply to one of the owner's commands */
  SMTPD_RELAY_EV_FAILED      /* the connection is of no more use */
};

typedef struct smtpd_relay_event {
  int kind;                /* SMTPD_RELAY_EV_* */
  int cmd;                 /* REPLY: the SMTPD_RC_* answered */
  int code;                /* the reply's code (FAILED: the one that
                              failed it, or 0) */
  const char *text;        /* REPLY: its lines without codes, joined by
                              "\n"; FAILED: why */
  size_t len;
  int lines;
  const char *stage;       /* "greeting", "ehlo", "starttls", "auth",
                              "mail", "rcpt", "data", "message", ... */
  size_t index;            /* DOT under LMTP: the accepted recipient */
  int last;                /* the last reply this command gets */
} smtpd_relay_event;

typedef void (*smtpd_relay_fn)(void *ctx, const smtpd_relay_event *ev);

typedef struct smtpd_relay_setup {
  const char *helo;        /* copied */
  int lmtp;                /* LHLO, and a reply per recipient */
  int starttls;            /* SMTPD_STARTTLS_* */
  int tls_on;              /* TLS from the start (implicit TLS) */
  const char *user;        /* AUTH (NULL: none); copied, wiped */
  const char *password;
  int mechanism;           /* 0 PLAIN or else LOGIN, 1 PLAIN, 2 LOGIN */
  int plaintext;           /* credentials may go without TLS */
} smtpd_relay_setup;

typedef struct smtpd_relay_pend {
  int cmd;
  size_t count, left;      /* replies it gets, and still to come */
} smtpd_relay_pend;

typedef struct smtpd_relay {
  smtpd_relay_setup setup;
  int phase;
  int esmtp;               /* EHLO (not HELO) was answered */
  unsigned ext;            /* SMTPD_EXT_* */
  size_t size_max;         /* SIZE's value (0: none given) */
  int tls_on, tls_tried, authed, auth_login;
  int closing;             /* 421 or QUIT: no more commands */
  smtpd_buf out;           /* what to write, in order */
  smtpd_buf line;          /* the reply line being read */
  smtpd_buf text;          /* the reply so far */
  int lines, code;
  smtpd_relay_pend *pend;  /* commands awaiting replies, oldest first */
  size_t npend, pend_head, pend_cap;
  size_t rcpt_ok;          /* this transaction's accepted recipients */
  int bol, cr;             /* the body: at a line start; a CR pending */
  smtpd_relay_fn fn;
  void *ctx;
} smtpd_relay;

/* 0, or -1 when out of memory. The machine waits for the greeting. */
int smtpd_relay_init(smtpd_relay *r, const smtpd_relay_setup *cfg,
                     smtpd_relay_fn fn, void *ctx);
/* Frees and wipes (credentials). */
void smtpd_relay_free(smtpd_relay *r);
/* The server's bytes (plaintext): every complete reply is acted on, and
 * the events fire from inside (the owner may send from them). */
void smtpd_relay_input(smtpd_relay *r, const char *p, size_t n);
/* The TLS handshake after STARTTLS (or of implicit TLS) is done. */
void smtpd_relay_tls_up(smtpd_relay *r);
/* READY and not closing. */
int smtpd_relay_usable(const smtpd_relay *r);
/* Queues one command line (no CRLF, none inside) that cmd's reply will
 * answer: 0, or -1 (not usable, a bad line, out of memory). */
int smtpd_relay_send(smtpd_relay *r, int cmd, const char *line, size_t n);
/* After DATA's 354: the message in pieces, any line ends; then the end
 * (one reply, or under LMTP one per accepted recipient). */
int smtpd_relay_body(smtpd_relay *r, const char *p, size_t n);
int smtpd_relay_dot(smtpd_relay *r);
/* BDAT n [LAST] with the bytes as they are (BINARYMIME). */
int smtpd_relay_bdat(smtpd_relay *r, const char *p, size_t n, int last);
/* Where the machine is, for messages ("rcpt", "ehlo", ...). */
const char *smtpd_relay_stage(const smtpd_relay *r);

#endif

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

/* The reply when something on our side failed (a hook, memory): 4xx, so
 * the client tries again later. */
#define SMTPD_ERR_REPLY "451 4.3.0 Requested action aborted: local error " \
                        "in processing"

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
  const char *bdat_error;  /* the reply for the chunk being discarded */
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
  int pending;             /* 0, SMTPD_VERB_MAIL + 1 or SMTPD_VERB_RCPT + 1 */
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
int smtpd_reply(smtpd_session *s, const char *line, size_t len);
int smtpd_reply_raw(smtpd_session *s, const char *line, size_t len);
int smtpd_replyf(smtpd_session *s, const char *fmt, ...);
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
/* After SMTPD_PARSE_CHUNK: the chunk's reply. */
void smtpd_session_chunk_end(smtpd_session *s);
/* Runs input through the session with the built-in commands only (no
 * hooks): the socket-less engine and the fuzzers. Each message that
 * reaches the handler goes to on_message, whose reply is sent. Stops at
 * QUIT (s->quit); 0, or -1 when out of memory. */
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
/* Settles a pending MAIL/RCPT: accept stores it and answers reply (NULL:
 * 250 OK); refuse answers reply. -1 when nothing was pending. */
int smtpd_session_settle(smtpd_session *s, int accept, const char *reply,
                         size_t n);
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
/* xtext (RFC 3461 4), as the value of MAIL's AUTH= parameter. */
int smtpd_xtext_valid(const char *p, size_t n);
/* Strict base64 (RFC 4648 4, padding required, nothing else allowed):
 * the decoded length, or -1. out has room for n / 4 * 3 bytes. */
long smtpd_b64_decode(const char *p, size_t n, unsigned char *out);
/* Encodes into out (room for (n + 2) / 3 * 4 + 1); its length. */
size_t smtpd_b64_encode(const unsigned char *p, size_t n, char *out);
/* Makes the parser follow smtp_state after a command ran. */
void smtpd_session_sync(smtpd_session *s);

#endif

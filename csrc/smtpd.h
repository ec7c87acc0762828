/*
 * lua-smtpd: shared types, constants and cross-file prototypes.
 *
 * Layers, from the bottom up:
 *   buffer.c   growable byte buffers and string lists (no Lua, no libuv)
 *   parser.c   framing of command lines and DATA (no Lua, no libuv)
 *   session.c  the SMTP state machine and built-in commands (no Lua/libuv)
 *   channel.c  one connection: libuv I/O, dispatch to Lua hooks
 *   server.c   listening sockets
 *   loop.c     socket maps (one uv_loop_t each)
 *   core.c     luaopen_smtpd_core
 */
#ifndef SMTPD_H
#define SMTPD_H

#include <stddef.h>
#include <stdint.h>

/* ---- buffer.c ---------------------------------------------------------- */

typedef struct smtpd_buf {
  char *p;
  size_t len;
  size_t cap;
} smtpd_buf;

typedef struct smtpd_str {
  char *p;       /* NUL-terminated copy, may contain NULs before len */
  size_t len;
} smtpd_str;

typedef struct smtpd_strlist {
  smtpd_str *v;
  size_t n;
  size_t cap;
} smtpd_strlist;

int smtpd_buf_reserve(smtpd_buf *b, size_t extra);
int smtpd_buf_append(smtpd_buf *b, const void *p, size_t n);
int smtpd_buf_appendc(smtpd_buf *b, char c);
void smtpd_buf_consume(smtpd_buf *b, size_t n);
void smtpd_buf_free(smtpd_buf *b);

int smtpd_str_set(smtpd_str *s, const char *p, size_t n);
void smtpd_str_free(smtpd_str *s);
int smtpd_strlist_push(smtpd_strlist *l, const char *p, size_t n);
int smtpd_strlist_set(smtpd_strlist *l, size_t i, const char *p, size_t n);
void smtpd_strlist_remove(smtpd_strlist *l, size_t i);
void smtpd_strlist_clear(smtpd_strlist *l);

/* ---- parser.c ---------------------------------------------------------- */

enum {
  SMTPD_PARSE_MORE = 0,   /* all input consumed, nothing complete yet */
  SMTPD_PARSE_LINE,       /* a command line is complete */
  SMTPD_PARSE_DATA_END,   /* the message ended with CRLF . CRLF */
  SMTPD_PARSE_NOMEM       /* allocation failed */
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
} smtpd_parser;

void smtpd_parser_init(smtpd_parser *p, size_t line_keep);
void smtpd_parser_free(smtpd_parser *p);
void smtpd_parser_begin_data(smtpd_parser *p, size_t limit);
void smtpd_parser_end_data(smtpd_parser *p);
int smtpd_parser_feed(smtpd_parser *p, const char *buf, size_t len,
                      size_t *consumed);
/* Raw size of the finished message, as smtpd counts it (no terminator). */
size_t smtpd_parser_data_size(const smtpd_parser *p);

/* ---- session.c --------------------------------------------------------- */

enum {
  SMTPD_VERB_HELO = 0, SMTPD_VERB_EHLO, SMTPD_VERB_NOOP, SMTPD_VERB_QUIT,
  SMTPD_VERB_MAIL, SMTPD_VERB_RCPT, SMTPD_VERB_RSET, SMTPD_VERB_DATA,
  SMTPD_VERB_HELP, SMTPD_VERB_VRFY, SMTPD_VERB_EXPN, SMTPD_NVERBS
};

extern const char *const smtpd_verb_names[SMTPD_NVERBS];

#define SMTPD_COMMAND 0
#define SMTPD_DATA 1
#define SMTPD_COMMAND_SIZE_LIMIT 512
#define SMTPD_DATA_SIZE_DEFAULT 33554432
#define SMTPD_MAX_RECIPIENTS 1000
#define SMTPD_MAX_BAD_COMMANDS 20
/* Bytes of a command line the parser keeps before the session sets it. */
#define SMTPD_LINE_KEEP (SMTPD_COMMAND_SIZE_LIMIT + 1)

typedef struct smtpd_session {
  smtpd_parser parser;
  smtpd_buf *out;          /* replies are appended here */
  int state;               /* SMTPD_COMMAND or SMTPD_DATA */
  int extended_smtp;
  int require_smtputf8;
  int enable_smtputf8;
  int decode_data;
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
  size_t max_recipients;   /* 0: no limit; past it RCPT gets 452 */
  unsigned max_bad;        /* 0: no limit; past it 421 and close */
  unsigned bad;            /* 500/501 replies so far */
  int data_blocked;        /* memory cap reached: DATA gets 451 */
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
/* Runs input through the session with the built-in commands only (no
 * hooks): the socket-less engine and the fuzzers. Each message that
 * reaches the handler goes to on_message, whose reply is sent. Stops at
 * QUIT (s->quit); 0, or -1 when out of memory. */
typedef const char *(*smtpd_message_fn)(smtpd_session *s, void *ctx);
int smtpd_session_run(smtpd_session *s, const char *buf, size_t len,
                      smtpd_message_fn on_message, void *ctx);
int smtpd_verb_lookup(const char *name, size_t len);
/* Makes the parser follow smtp_state after a command ran. */
void smtpd_session_sync(smtpd_session *s);
/* Reply lines: the one place their form is checked (session.c). */
#define SMTPD_REPLY_MAX 510   /* bytes of a reply line without CRLF */
int smtpd_reply_code(const char *p, size_t n, int *more);
int smtpd_reply_text_ok(const char *p, size_t n);
int smtpd_final_reply(const char *p, size_t n, const char *classes);
int smtpd_utf8_valid(const char *p, size_t n);

#endif

/* ---- libuv / Lua glue ------------------------------------------------- */
#ifdef SMTPD_GLUE
#include <lua.h>
#include <lauxlib.h>
#include <uv.h>

#define SMTPD_MAP_MT "smtpd.map"
#define SMTPD_SERVER_MT "smtpd.server"
#define SMTPD_CONN_MT "smtpd.conn"
#define SMTPD_LIST_MT "smtpd.strlist"
#define SMTPD_VERSION "Lua SMTP proxy version 0.1"

/* Every uv handle of ours has data pointing at one of these, so a map can
 * close what it holds (close_all, map:close()) through each owner's own
 * idempotent close. The map's own timer has data NULL. */
enum { SMTPD_H_SERVER = 1, SMTPD_H_CHANNEL, SMTPD_H_OTHER };

typedef struct smtpd_hdr {
  int kind;
  void (*close)(struct smtpd_hdr *h);
} smtpd_hdr;

#define SMTPD_OWNER(type, hdrp) \
  ((type *)(void *)((char *)(hdrp) - offsetof(type, hdr)))

typedef struct smtpd_map {
  uv_loop_t loop;
  uv_timer_t timer;        /* bounds one loop iteration */
  uv_signal_t sigint;      /* Ctrl-C while loop() runs */
  int interrupted;
  lua_State *L;            /* the main thread: callbacks run Lua there */
  int self_ref;            /* anchors the map while it has handles */
  size_t handles;          /* servers and channels open in this map */
  int running;
  int debug;
  size_t data_held;        /* message bytes buffered by all channels */
  size_t data_cap;         /* past it, DATA gets 451 (0: no cap) */
  char rbuf[65536];        /* shared read buffer */
  int rbuf_busy;
  struct smtpd_map *next_map, *prev_map;   /* every open map (fork) */
} smtpd_map;

typedef struct smtpd_cls_cache {
  const void *cls;         /* lua_topointer of the channel class */
  unsigned gen;
  unsigned mask;           /* built-in verbs a Lua method overrides */
  int has_extra;           /* the class adds smtp_<VERB> methods */
  int custom;              /* not the plain SMTPChannel */
} smtpd_cls_cache;

/* What a server shares with its channels; it outlives the server while
 * channels remain (refs). */
typedef struct smtpd_ipcount {
  unsigned char addr[16];
  int family;
  size_t n;
} smtpd_ipcount;

typedef struct smtpd_shared {
  int refs;
  size_t total;            /* channels open */
  smtpd_ipcount *ips;      /* channels open per client address */
  size_t nips, capips;
  size_t max_connections;  /* 0: no limit */
  size_t max_per_ip;       /* 0: no limit */
  int shutting_down;       /* close(): finish DATA, then 421 */
} smtpd_shared;

smtpd_shared *smtpd_shared_new(void);
void smtpd_shared_unref(smtpd_shared *sh);
/* Counts a new connection from sa; 0 if a limit says no. */
int smtpd_shared_admit(smtpd_shared *sh, const struct sockaddr *sa);
void smtpd_shared_leave(smtpd_shared *sh, const struct sockaddr *sa);

typedef struct smtpd_server {
  uv_tcp_t tcp;            /* first: the handle's address is the struct's */
  smtpd_hdr hdr;
  smtpd_map *map;
  int obj_ref;             /* the Lua server object */
  int closing;
  size_t data_size_limit;
  int enable_smtputf8;
  int decode_data;
  size_t max_recipients;
  unsigned max_bad;
  uint64_t timeout_ms;         /* idle: no complete command for this long */
  uint64_t handler_timeout_ms; /* a waiting hook is given up after this */
  uint64_t data_timeout_ms;    /* the whole DATA phase */
  uint64_t data_grace_ms;      /* before min_data_rate applies */
  size_t min_data_rate;        /* bytes/s over the DATA phase so far */
  smtpd_str fqdn;
  smtpd_cls_cache cls;
  smtpd_shared *shared;
} smtpd_server;

typedef struct smtpd_channel {
  uv_tcp_t tcp;
  smtpd_hdr hdr;
  uv_timer_t timer;        /* idle timeout, or the waiting hook's deadline */
  int handles;             /* tcp and timer: freed when both closed */
  uint64_t timeout_ms;
  uint64_t handler_timeout_ms;
  uint64_t data_timeout_ms;
  uint64_t data_grace_ms;
  size_t min_data_rate;
  uint64_t last_read;      /* uv_now of the last read */
  uint64_t data_started;   /* uv_now when DATA began, 0 outside DATA */
  size_t data_counted;     /* our share of map->data_held */
  smtpd_shared *shared;    /* with the server; NULL if not admitted */
  int counted;             /* counted in shared (release on close) */
  smtpd_map *map;
  int server_ref;          /* the Lua server object */
  int obj_ref;             /* the Lua channel object, once made */
  int ud_ref;              /* the conn userdata, once made */
  int class_ref;           /* the channel class */
  smtpd_cls_cache cls;
  int thread_ref;          /* the hook coroutine while it waits */
  int hook;                /* 0, HOOK_COMMAND or HOOK_MESSAGE */
  int parked;              /* a hook is waiting: input is not parsed */
  int closing;
  int close_when_done;
  int writing;
  int reading;
  int in_process;          /* channel_process is on the stack */
  int received_ref;        /* received_data (last message) */
  unsigned received_gen;
  smtpd_session s;
  smtpd_buf in;            /* input not parsed yet (while parked) */
  smtpd_buf out;           /* replies queued */
  smtpd_buf wbuf;          /* replies being written */
  uv_write_t wreq;
  struct sockaddr_storage peer;
} smtpd_channel;

typedef struct smtpd_conn_ud {
  smtpd_channel *ch;
} smtpd_conn_ud;

extern unsigned smtpd_class_gen;
/* SIGINT handlers a script set with on_signal: while there is one, the
 * script handles Ctrl-C and loop() does not. */
extern int smtpd_sigint_users;
extern unsigned long smtpd_lua_calls;

smtpd_map *smtpd_check_map(lua_State *L, int idx);
void smtpd_map_ref(smtpd_map *m);
void smtpd_map_unref(smtpd_map *m);
int smtpd_fail(lua_State *L, int err);
void smtpd_push_addr(lua_State *L, const struct sockaddr *sa);
void smtpd_push_strlist(lua_State *L, const smtpd_strlist *l);
void smtpd_log(smtpd_map *m, const char *fmt, ...);
void smtpd_timer_start(uv_timer_t *t, uv_timer_cb cb, uint64_t ms);
void smtpd_server_on_connection(uv_stream_t *srv, int status);
void smtpd_channel_close(smtpd_channel *ch);
/* Server shutdown: an idle channel gets 421 now, one in a transaction
 * after its message (force: now, whatever it is doing). */
void smtpd_channel_shutdown(smtpd_channel *ch, int force);
int smtpd_setup_get(lua_State *L, const char *key);
void smtpd_open_map(lua_State *L);
void smtpd_open_server(lua_State *L);
void smtpd_open_channel(lua_State *L);
void smtpd_open_engine(lua_State *L);
void smtpd_open_tcp(lua_State *L);
void smtpd_open_client(lua_State *L);
void smtpd_open_timer(lua_State *L);
void smtpd_open_workers(lua_State *L);
int smtpd_maps_after_fork(void);
const char *smtpd_fqdn(void);
#endif

/*
 * lua-smtpd: the glue between the pure layers (base/base.h, smtp/smtp.h,
 * tls/tls.h, mime/mime.h), libuv and Lua. Every glue file includes this.
 *
 *   core/util.c      errors, logging, pushing addresses and lists, the FQDN
 *   core/opts.c      option tables: names, kinds and defaults, one reader
 *   core/core.c      luaopen_smtpd_core
 *   loop/handle.c    the one lifecycle of every libuv handle we own
 *   loop/map.c       socket maps (one uv_loop_t each) and loop()
 *   loop/timer.c     one-shot timers; loop/signal.c: signal handlers
 *   loop/tcp.c       a raw TCP client (specs, the REPL)
 *   loop/sock.c      the parked socket's C half (smtpd.socket)
 *   dns/dnsglue.c    DNS queries through c-ares on a map's loop
 *   store/storeglue.c  the shared dictionary (smtpd.store's shm:)
 *   http/httpglue.c  HTTP(S) requests through libcurl's multi interface
 *   auth/authglue.c  mail authentication's C half (SPF records, macros)
 *   loop/stdin.c     standard input on a map's loop (the live prompt)
 *   loop/workers.c   pre-forked workers
 *   smtp/server.c    listening sockets, accept, connection limits, shutdown
 *   smtp/channel.c   one connection: bytes in and out, back-pressure,
 *                    timeouts
 *   smtp/hook.c      Lua hooks in coroutines, waiting and waking
 *   smtp/conn.c      the connection as Lua sees it (smtpd.conn), live lists
 *   smtp/client.c    the outgoing SMTP/LMTP client (smtp/relay.c on libuv)
 *   smtp/upstream.c  a session paired with upstream transactions (relays)
 *   tls/tlsglue.c    TLS options' readers, TLS facts for Lua
 *   mime/mimeglue.c  smtpd.message's C half
 *   mailbox/deliver.c  Maildir and mbox deliveries
 *   testing/engine.c   the protocol without sockets (test builds only)
 */
#ifndef SMTPD_GLUE_H
#define SMTPD_GLUE_H

#include <lua.h>
#include <lauxlib.h>
#include <uv.h>

#include "smtp/smtp.h"
#include "tls/tls.h"

/* The version, in this one place: the Makefile, the rockspecs' spec and
 * smtpd._VERSION read it from here. */
#define SMTPD_VERSION_NUM "0.2.0"
/* The banner of the greeting and smtpd.__version__, as smtpd's. */
#define SMTPD_VERSION "Lua SMTP proxy version " SMTPD_VERSION_NUM

#define SMTPD_MAP_MT "smtpd.map"
#define SMTPD_SERVER_MT "smtpd.server"
#define SMTPD_CONN_MT "smtpd.conn"
#define SMTPD_LIST_MT "smtpd.strlist"

typedef struct smtpd_map smtpd_map;
typedef struct smtpd_relayconf smtpd_relayconf;

/* ---- handle.c ----------------------------------------------------------
 *
 * Every libuv handle of ours has data pointing at the smtpd_handle that
 * starts its owner's struct. The owner is open from smtpd_handle_init
 * until smtpd_handle_close (idempotent: the owner's close function runs
 * once and closes the owner's uv handles); its memory is freed by its free
 * function when the last of its uv handles (and requests) finished, never
 * before. A Lua object for it is a box (smtpd_box) anchored in the
 * registry while the owner is open and emptied when it closes, so a Lua
 * call on a closed owner finds NULL instead of freed memory. */

enum {
  SMTPD_H_SERVER = 1, SMTPD_H_CHANNEL, SMTPD_H_CLIENT, SMTPD_H_TIMER,
  SMTPD_H_SIGNAL, SMTPD_H_TCP, SMTPD_H_DELIVERY, SMTPD_H_SOCK,
  SMTPD_H_DNS, SMTPD_H_HTTP, SMTPD_H_WEB
};

typedef struct smtpd_handle smtpd_handle;
typedef void (*smtpd_handle_fn)(smtpd_handle *h);

struct smtpd_handle {
  int kind;                /* SMTPD_H_* */
  int closing;
  int pending;             /* uv handles and requests not finished */
  int box_ref;             /* the Lua box while open, or LUA_NOREF */
  smtpd_map *map;
  smtpd_handle_fn close;   /* releases the owner's refs, closes its handles */
  smtpd_handle_fn free;    /* frees the owner */
};

extern size_t smtpd_handles_live;

typedef struct smtpd_box {
  smtpd_handle *h;         /* NULL once closed */
} smtpd_box;

void smtpd_handle_init(smtpd_handle *h, smtpd_map *m, int kind,
                       smtpd_handle_fn close, smtpd_handle_fn free);
/* Counts u as one of h's (after its uv_*_init succeeded). */
void smtpd_handle_attach(smtpd_handle *h, uv_handle_t *u);
void smtpd_handle_close(smtpd_handle *h);
/* Closes one of h's uv handles if it was attached; h is freed after the
 * last one. The owner's struct must start zeroed (calloc). */
void smtpd_handle_uv_close(smtpd_handle *h, uv_handle_t *u);
/* A request of h's (counted with h->pending++) finished. */
void smtpd_handle_done(smtpd_handle *h);
/* Pushes h's box (made on first use, with nuv user values). */
smtpd_box *smtpd_handle_push_box(lua_State *L, smtpd_handle *h,
                                 const char *mt, int nuv);
/* The open handle behind the box at idx; raises "what is closed". */
smtpd_handle *smtpd_handle_check(lua_State *L, int idx, const char *mt,
                                 const char *what);
/* The handle behind the box at idx, or NULL when closed. */
smtpd_handle *smtpd_handle_get(lua_State *L, int idx, const char *mt);
/* The owner of handle h (its first member) as type. */
#define SMTPD_OWNER(type, h) ((type *)(void *)(h))

/* ---- map.c ------------------------------------------------------------- */

struct smtpd_map {
  uv_loop_t loop;
  uv_timer_t timer;        /* bounds one step of loop() */
  uv_signal_t sigint;      /* Ctrl-C while loop() runs */
  int interrupted;
  lua_State *L;            /* the main thread: callbacks run Lua there */
  size_t handles;          /* open handles of ours (servers, channels...) */
  int running;
  int debug;
  int log_ref;             /* map:set_log's function, or LUA_NOREF */
  int dying;               /* being collected: callbacks are dropped */
  size_t data_held;        /* message bytes buffered by all channels */
  size_t data_cap;         /* past it, DATA gets 451 (0: no cap) */
  char rbuf[65536];        /* shared read buffer */
  int rbuf_busy;
  struct smtpd_map *next_map, *prev_map;   /* every open map (fork) */
  smtpd_tls_env *tls_env;  /* made on first use, freed after the loop */
};

smtpd_map *smtpd_check_map(lua_State *L, int idx);
/* The map's TLS environment (made on first use); NULL when out of
 * memory. */
smtpd_tls_env *smtpd_map_tls(smtpd_map *m);
int smtpd_maps_after_fork(void);
/* Starts t for ms, measured from now: for timers armed outside the loop's
 * own callbacks, where libuv's cached time may be stale. */
void smtpd_timer_start(uv_timer_t *t, uv_timer_cb cb, uint64_t ms);
/* SIGINT handlers a script set with on_signal: while there is one, the
 * script handles Ctrl-C and loop() does not. */
extern int smtpd_sigint_users;

/* ---- opts.c ------------------------------------------------------------ */

enum {
  SMTPD_OPT_BOOL,          /* true or false (int) */
  SMTPD_OPT_SIZE,          /* bytes, 0 or false: none (size_t) */
  SMTPD_OPT_COUNT,         /* at least min, 0 or false: none (size_t) */
  SMTPD_OPT_SECONDS,       /* 0 or false: none (uint64_t milliseconds) */
  SMTPD_OPT_STRING,        /* a string, NULL when absent (const char *) */
  SMTPD_OPT_ENUM,          /* one of more's strings (int: its index + 1),
                              0 when absent or false */
  SMTPD_OPT_TABLE,         /* a nested table of more's options, into a
                              struct that starts with smtpd_opt_table */
  SMTPD_OPT_CUSTOM         /* read and pushed by more's functions */
};

enum {
  SMTPD_OPTF_WORD = 1,     /* a string: one word, no blanks, CR or LF */
  SMTPD_OPTF_LINE = 2,     /* a string: non-empty, no CR, LF or NUL */
  SMTPD_OPTF_POSITIVE = 4, /* seconds: more than 0, no "none" */
  SMTPD_OPTF_REQUIRED = 8, /* a count: no "none" */
  SMTPD_OPTF_OPTIONAL = 16 /* a table that may be absent (given = 0) */
};

typedef struct smtpd_optdef {
  const char *name;
  int kind;
  double def;              /* when absent (SMTPD_OPT_SIZE: -1 keeps) */
  double min;              /* SMTPD_OPT_COUNT: the least limit */
  size_t off;              /* where the value goes in the struct */
  const void *more;        /* ENUM: choices; TABLE: defs; CUSTOM: funcs */
  int flags;               /* SMTPD_OPTF_* */
} smtpd_optdef;

/* A custom option: read(L, idx, at, name) validates the value at idx
 * into at (raising "name ..."), keeping anything it makes in scratch
 * (smtpd_opts_scratch); push(L, at) pushes what it read. */
typedef struct smtpd_optcustom {
  void (*read)(lua_State *L, int idx, void *at, const char *name);
  void (*push)(lua_State *L, const void *at);
} smtpd_optcustom;

/* Every nested option struct starts with this: whether the table was
 * given at all. */
typedef struct smtpd_opt_table {
  int given;
} smtpd_opt_table;

typedef struct smtpd_cidr_list {
  smtpd_cidr *v;           /* scratch while read; the owner copies it */
  size_t n;
} smtpd_cidr_list;

/* A server's tls = {...}: cert and key are a PEM file or a list of two
 * (RSA and ECDSA); sni names more pairs (tls/tlsglue.c reads those). */
typedef struct smtpd_tls_files {
  const char *v[2];
  int n;
} smtpd_tls_files;

typedef struct smtpd_tls_sni {
  smtpd_tls_pair *pairs;   /* scratch while read */
  size_t n;
} smtpd_tls_sni;

typedef struct smtpd_tls_opts {
  smtpd_opt_table t;
  smtpd_tls_files cert, key;
  int implicit;            /* TLS from the first byte (port 465) */
  smtpd_tls_sni sni;
  const char *client_ca;
  int verify_client;
  uint64_t handshake_ms;
  const char *ciphers;
  int min_version;         /* 0: TLS 1.2; else the choice's index + 1 */
} smtpd_tls_opts;

extern const smtpd_optdef smtpd_tls_optdefs[];
extern const smtpd_optcustom smtpd_tls_files_opt, smtpd_tls_sni_opt;
/* The certificates' spec from what was read (pairs in scratch); raises
 * when something is missing or contradicts. */
void smtpd_tls_spec_from(lua_State *L, const smtpd_tls_opts *o,
                         smtpd_tls_spec *sp);

/* proxy_protocol = {trusted = {...}, timeout = 5, max_header = 536}. */
typedef struct smtpd_proxy_opts {
  smtpd_opt_table t;
  smtpd_cidr_list trusted;
  uint64_t timeout_ms;
  size_t max_header;
} smtpd_proxy_opts;

/* What a server is made with: the session's settings and the rest. */
typedef struct smtpd_server_conf {
  smtpd_session_conf session;
  uint64_t timeout_ms;         /* idle: no complete command for this long */
  uint64_t handler_timeout_ms; /* a waiting hook is given up after this */
  uint64_t data_timeout_ms;    /* the whole DATA phase */
  uint64_t data_grace_ms;      /* before min_data_rate applies */
  size_t min_data_rate;        /* bytes/s over the DATA phase so far */
  size_t max_data_memory;      /* (size_t)-1: keep the map's cap */
  size_t max_connections;
  size_t max_per_ip;
  size_t backlog;
  int reuse_port;
  int dkim_body_hash;      /* hash DKIM bodies as the data arrives */
  size_t unix_mode;        /* permissions of a unix socket (0666) */
  const char *fqdn;
  size_t max_auth_failures;    /* read by the Lua AUTH driver */
  uint64_t auth_failure_delay_ms;
  smtpd_proxy_opts proxy;
  smtpd_tls_opts tls;
} smtpd_server_conf;

/* relay = {tls = {...}}: the upstream's certificate checks. */
typedef struct smtpd_relay_tls_opts {
  smtpd_opt_table t;
  int verify;
  const char *ca, *sni, *cert, *key;
} smtpd_relay_tls_opts;

/* relay = {auth = {...}}: AUTH PLAIN or LOGIN towards the upstream. */
typedef struct smtpd_relay_auth_opts {
  smtpd_opt_table t;
  const char *user, *password, *password_env, *password_file;
  int mechanism;           /* 0 any, 1 PLAIN, 2 LOGIN */
  int plaintext;           /* credentials may go without TLS */
} smtpd_relay_auth_opts;

enum { SMTPD_RELAY_AT_RCPT = 0, SMTPD_RELAY_AT_RCPT_GIVEN = 1,
       SMTPD_RELAY_AT_MESSAGE = 2 };

/* The relay client's options (smtpd.sendmail's opts, PureProxy's relay). */
typedef struct smtpd_relay_opts {
  const char *helo;
  uint64_t timeout_ms;
  uint64_t connect_timeout_ms;
  int lmtp;
  int tempfail_aborts;
  int at;                  /* SMTPD_RELAY_AT_* */
  int starttls;            /* SMTPD_STARTTLS_* */
  int implicit_tls;
  smtpd_relay_tls_opts tls;
  smtpd_relay_auth_opts auth;
} smtpd_relay_opts;

/* mailman = {lmtp = "host:port", helo =, timeout =, connect_timeout =}. */
typedef struct smtpd_mailman_opts {
  const char *lmtp;
  const char *helo;
  uint64_t timeout_ms;
  uint64_t connect_timeout_ms;
} smtpd_mailman_opts;

extern const smtpd_optdef smtpd_server_optdefs[];
extern const smtpd_optdef smtpd_relay_optdefs[];
extern const smtpd_optdef smtpd_mailman_optdefs[];
/* Reads the options of table t into conf: absent ones get their
 * default, a wrong type or range raises an error naming the option,
 * unknown keys of nested tables too. Allocates nothing but scratch. */
void smtpd_opts_read(lua_State *L, int t, const smtpd_optdef *defs,
                     void *conf);
/* The same for a nested table of its own (named prefix in errors):
 * unknown keys raise too. */
void smtpd_opts_read_table(lua_State *L, int t, const smtpd_optdef *defs,
                           void *conf, const char *prefix);
/* Pushes {name = default or false, ...} for Lua (core.OPTIONS). */
void smtpd_opts_push(lua_State *L, const smtpd_optdef *defs);
/* Pushes what was read into conf, as a table (false: none). */
void smtpd_opts_push_read(lua_State *L, const smtpd_optdef *defs,
                          const void *conf);
/* n zeroed bytes the garbage collector owns, alive until the next
 * smtpd_opts_scratch_release (readers' scratch; copy what you keep). */
void *smtpd_opts_scratch(lua_State *L, size_t n);
void smtpd_opts_scratch_release(lua_State *L);

/* ---- util.c ------------------------------------------------------------ */

extern unsigned long smtpd_lua_calls;
extern unsigned smtpd_class_gen;

int smtpd_fail(lua_State *L, int err);
void smtpd_push_addr(lua_State *L, const struct sockaddr *sa);
void smtpd_addr_name(const struct sockaddr *sa, char *buf, size_t size);
void smtpd_push_strlist(lua_State *L, const smtpd_strlist *l);
/* Registers metatable mt: the metamethods of meta, and methods as its
 * __index (either may be NULL). The stack is left as it was. */
/* Runs fn when the Lua state closes (before the core's code is unloaded),
 * once per key: for caches kept in C statics. */
void smtpd_on_close(lua_State *L, const char *key, lua_CFunction fn);
void smtpd_new_class(lua_State *L, const char *mt, const luaL_Reg *meta,
                     const luaL_Reg *methods);
/* Pushes what the Lua side registered under key with core.setup. */
int smtpd_setup_get(lua_State *L, const char *key);
const char *smtpd_fqdn(void);
/* A log line to stderr, for what no server hears (timers, the map). */
void smtpd_log(smtpd_map *m, const char *fmt, ...);
/* A log line through obj:log(level, "%s", msg), obj being the Lua server
 * at registry ref; stderr when there is none or its log fails. */
void smtpd_log_to(smtpd_map *m, int ref, const char *level, const char *msg);
/* Parses "host" and port into ss (IPv6 when host has a ':'). */
int smtpd_sockaddr(const char *host, int port, struct sockaddr_storage *ss);

/* ---- server.c ---------------------------------------------------------- */

/* What a server shares with its channels; it outlives the server while
 * channels remain (refs). */
#define SMTPD_MAX_UPSTREAMS 2
typedef struct smtpd_relaying smtpd_relaying;
typedef struct smtpd_ipcount {
  unsigned char addr[16];
  int family;
  size_t n;
} smtpd_ipcount;

typedef struct smtpd_shared {
  int refs;
  smtpd_server_conf conf;  /* the server's options (fqdn: not kept) */
  size_t total;            /* channels open */
  smtpd_ipcount *ips;      /* channels open per client address */
  size_t nips, capips;
  int shutting_down;       /* close(): finish DATA, then 421 */
  smtpd_tls_conf *tls;     /* the certificates new connections get */
  int tls_implicit;        /* TLS from the first byte (port 465) */
  uint64_t tls_handshake_ms;
  char *auth_mechs;        /* advertised AUTH mechanisms, or NULL */
  char *unix_path;         /* listening on this unix socket, or NULL */
  /* PROXY protocol: who may send a header, how long it may take, how
   * big a v2 header may be; nproxy 0: off. */
  smtpd_cidr *proxy_trusted;
  size_t nproxy;
  uint64_t proxy_timeout_ms;
  size_t proxy_max;
  /* A relay at RCPT time (upstream.c): the upstreams each session is
   * paired with, in order; route: a 5xx to RCPT there means "not mine",
   * ask the next one. */
  smtpd_relayconf *upstreams[SMTPD_MAX_UPSTREAMS];
  int upstream_route[SMTPD_MAX_UPSTREAMS];
  char *upstream_name[SMTPD_MAX_UPSTREAMS];   /* "Mailman", or NULL */
  size_t nupstreams;
  int check_connect;       /* the server has check_connection */
} smtpd_shared;

void smtpd_shared_unref(smtpd_shared *sh);
/* Reads a tls = {...} option table at idx (raising on a malformed
 * one), then loads its certificates: NULL with why in err when a file
 * cannot be used. */
smtpd_tls_conf *smtpd_tls_read(lua_State *L, int idx, int *implicit,
                               uint64_t *handshake_ms, char *err,
                               size_t errlen);
/* A channel leaves: the count of all, and of its address if it was
 * counted (ip_counted). */
void smtpd_shared_leave(smtpd_shared *sh, const struct sockaddr *sa,
                        int ip_counted);
/* One more connection from sa's address (a proxied client, once its
 * header named it): 0 when max_connections_per_ip says no. */
int smtpd_shared_admit_ip(smtpd_shared *sh, const struct sockaddr *sa);

/* Which methods a channel class (and its server) defines: looked up once
 * per class and again only when some class changed (smtpd_class_gen). */
typedef struct smtpd_cls_cache {
  const void *cls;         /* lua_topointer of the channel class */
  unsigned gen;
  unsigned mask;           /* built-in verbs a Lua method overrides */
  int has_extra;           /* the class adds smtp_<VERB> methods */
  int custom;              /* not the plain SMTPChannel */
} smtpd_cls_cache;

/* A TCP connection or a unix domain socket: both are libuv streams. */
typedef union smtpd_stream {
  uv_tcp_t tcp;
  uv_pipe_t pipe;
} smtpd_stream;

typedef struct smtpd_server {
  smtpd_handle h;
  smtpd_stream tcp;        /* .pipe when shared->unix_path */
  smtpd_stream spare;      /* takes a connection there is no memory for */
  int spare_busy;          /* closing one */
  int refuse_pending;      /* another waits for it */
  dev_t unix_dev;          /* the socket file we made, removed on close */
  ino_t unix_ino;
  int obj_ref;             /* the Lua server object */
  int opts_ref;            /* what the core read of its options */
  smtpd_str fqdn;
  smtpd_cls_cache cls;
  smtpd_shared *shared;
} smtpd_server;

/* ---- channel.c ---------------------------------------------------------
 *
 * A channel's flags, and what they mean together:
 *   h.closing       smtpd_handle_close ran: nothing more is done
 *   close_when_done close once the queued replies are written
 *   hook            a hook runs or waits (SMTPD_HOOK_*)
 *   parked          the hook waits: input is held in `in` until it ends
 *   writing         a write request is in flight (replies past what
 *                   uv_try_write took); out collects the next replies
 *   reading         uv_read_start is on: off while parked, blocked by
 *                   unsent replies (back-pressure), or holding too much
 *   in_process      input is being parsed (channel_feed is on the stack):
 *                   what Lua does meanwhile is sent when it returns
 *   awaiting        the hook (AUTH) waits for the client's next line: it
 *                   is not parsed as a command but handed to the hook
 *   tls             TLS is on: bytes read are ciphertext for it, replies
 *                   are encrypted into cout (the wire bytes to write) */

enum { SMTPD_HOOK_NONE = 0, SMTPD_HOOK_COMMAND, SMTPD_HOOK_MESSAGE,
       SMTPD_HOOK_CONNECT };

typedef struct smtpd_channel {
  smtpd_handle h;
  smtpd_stream tcp;        /* .pipe when shared->unix_path */
  uv_timer_t timer;        /* idle timeout, or the waiting hook's deadline */
  uint64_t last_read;      /* uv_now of the last read */
  uint64_t data_started;   /* uv_now when DATA began, 0 outside DATA */
  size_t data_counted;     /* our share of map->data_held */
  smtpd_shared *shared;    /* with the server: its options, its counts */
  int counted;             /* counted in shared (release on close) */
  int ip_counted;          /* and counted for its address */
  int server_ref;          /* the Lua server object */
  int obj_ref;             /* the Lua channel object, once made */
  int class_ref;           /* the channel class */
  smtpd_cls_cache cls;
  int thread_ref;          /* the hook coroutine while it runs */
  int hook;                /* SMTPD_HOOK_* */
  int parked;
  int close_when_done;
  int writing;
  int reading;
  int in_process;
  int awaiting;
  int relay_wait;          /* a held command waits for the upstream */
  smtpd_relaying *relay;   /* the RCPT-time relay, once the first MAIL
                              came (upstream.c) */
  smtpd_tls *tls;
  smtpd_buf cout;          /* wire bytes to write, while TLS is on */
  uint64_t tls_started;    /* uv_now when the handshake began */
  int proxy_wait;          /* reading the PROXY header: no session yet */
  int connect_checked;     /* check_connection ran (or runs) */
  uint64_t proxy_started;
  /* received_data: the last message's bytes, kept in C (not a Lua
   * string, which would live until a GC cycle after the next message) */
  smtpd_buf received;
  unsigned received_gen;
  struct dkim_stream *dkim;   /* the body hashes (dkim_body_hash), or NULL */
  unsigned dkim_gen;          /* the rset_gen they are for */
  smtpd_session s;
  smtpd_buf in;            /* input not parsed yet (while parked) */
  smtpd_buf out;           /* replies queued */
  smtpd_buf wbuf;          /* replies being written */
  uv_write_t wreq;
  struct sockaddr_storage peer;
} smtpd_channel;

/* A new channel for server srv, its handles initialised (not accepted). */
smtpd_channel *smtpd_channel_new(smtpd_server *srv);
/* Greets the client and starts reading. */
void smtpd_channel_start(smtpd_channel *ch);
/* The greeting (or the implicit TLS handshake it waits for). */
void smtpd_channel_greet(smtpd_channel *ch);
void smtpd_channel_await_proxy(smtpd_channel *ch);
/* 421 with why, then close (a limit the client went past). */
void smtpd_channel_cut(smtpd_channel *ch, const char *why);
void smtpd_channel_close(smtpd_channel *ch);
/* Sends what is queued; closes when done and nothing waits. */
void smtpd_channel_flush(smtpd_channel *ch);
/* Parses input held back, then reads again. */
void smtpd_channel_process_input(smtpd_channel *ch);
/* Sends queued replies after Lua changed state outside the parser. */
void smtpd_channel_after_lua(smtpd_channel *ch);
/* Re-arms the channel's timer (idle, DATA or hook deadline). */
void smtpd_channel_arm(smtpd_channel *ch);
/* Server shutdown: an idle channel gets 421 now, one in a transaction
 * after its message (force: now, whatever it is doing). */
void smtpd_channel_shutdown(smtpd_channel *ch, int force);
void smtpd_channel_check_shutdown(smtpd_channel *ch);
/* A log line through the server's log method (server:log), stderr when
 * that fails. */
void smtpd_channel_log(smtpd_channel *ch, const char *level,
                       const char *fmt, ...);

/* ---- client.c ------------------------------------------------------------
 *
 * The outgoing SMTP/LMTP client: one connection to an upstream, driven
 * command by command by its owner (the RCPT-time relay, the one-message
 * client of core.client_send). */

typedef struct smtpd_client smtpd_client;

/* What the client tells its owner; each may send the next command. */
typedef struct smtpd_client_owner {
  /* Greeted, TLS and AUTH done: commands may go. */
  void (*ready)(void *ctx, smtpd_client *c);
  /* The reply to one of the owner's commands. */
  void (*reply)(void *ctx, smtpd_client *c, const smtpd_relay_event *ev);
  /* The connection is gone or useless (it closes itself after this):
   * where, the reply that did it (or 0), why, and whether a timeout. */
  void (*failed)(void *ctx, smtpd_client *c, const char *stage, int code,
                 const char *why, int timeout);
  /* What was queued has mostly been written (after a high mark). */
  void (*drained)(void *ctx, smtpd_client *c);
} smtpd_client_owner;

void smtpd_relayconf_ref(smtpd_relayconf *c);
void smtpd_relayconf_unref(smtpd_relayconf *c);
/* The conf (a core.relay_conf object) at idx; raises otherwise. */
smtpd_relayconf *smtpd_relayconf_check(lua_State *L, int idx);
const smtpd_relay_opts *smtpd_relayconf_opts(const smtpd_relayconf *c);
/* Opens a connection (resolving on the thread pool first): NULL when out
 * of memory; else the owner hears ready or failed later, never from
 * inside this call. */
smtpd_client *smtpd_client_open(smtpd_map *m, smtpd_relayconf *conf,
                                const smtpd_client_owner *own, void *ctx);
/* Commands (smtpd_relay_send, _body, _dot): 0, or -1 when the client
 * cannot take them. */
int smtpd_client_send(smtpd_client *c, int cmd, const char *line, size_t n);
int smtpd_client_sendf(smtpd_client *c, int cmd, const char *fmt, ...);
int smtpd_client_body(smtpd_client *c, const char *p, size_t n);
int smtpd_client_dot(smtpd_client *c);
int smtpd_client_bdat(smtpd_client *c, const char *p, size_t n, int last);
int smtpd_client_usable(const smtpd_client *c);
/* What the upstream offered (SMTPD_EXT_*; 0 after HELO). */
unsigned smtpd_client_ext(const smtpd_client *c);
int smtpd_client_esmtp(const smtpd_client *c);
size_t smtpd_client_size_max(const smtpd_client *c);
/* Bytes queued, not yet written: past a high mark the owner waits for
 * drained before it sends more body. */
size_t smtpd_client_queued(const smtpd_client *c);
/* QUIT and close, with no more callbacks; close ends at once (an
 * unfinished message is dropped upstream). */
void smtpd_client_quit(smtpd_client *c);
void smtpd_client_close(smtpd_client *c);

/* ---- upstream.c ------------------------------------------------------- */

/* The session held a command (MAIL, RCPT, DATA, a first BDAT): the
 * upstream is asked, and the channel waits until it settles it. */
void smtpd_relaying_held(smtpd_channel *ch);
/* The message as it streams, after each read; the end of it. */
void smtpd_relaying_pump(smtpd_channel *ch);
void smtpd_relaying_message(smtpd_channel *ch);
/* Too much unwritten upstream: stop reading the client. */
int smtpd_relaying_blocked(const smtpd_channel *ch);
/* The handler timeout: a silent upstream is given up (451). */
void smtpd_relaying_abandon(smtpd_channel *ch);
void smtpd_relaying_close(smtpd_channel *ch);
void smtpd_relaying_free(smtpd_channel *ch);

/* ---- hook.c ------------------------------------------------------------ */

/* Looks up the channel class at accept: the Lua side of a new channel. */
int smtpd_hook_accept(smtpd_channel *ch, smtpd_server *srv);
/* After the PROXY header: the channel object, with the real address. */
int smtpd_hook_proxied(smtpd_channel *ch);
/* Starts server:check_connection(peer) as a hook (it may wait): the
 * greeting, or its refusal, when it ends. -1 when it could not start. */
int smtpd_hook_connect(smtpd_channel *ch);
/* The channel's side of the session's events (smtpd_events): a line
 * (logged; 1 when an AUTH hook takes it), a command (1 when a Lua hook
 * runs it, 0 for the built-in), AUTH, and a complete message
 * (process_message). */
int smtpd_hook_on_line(smtpd_channel *ch);
int smtpd_hook_on_command(smtpd_channel *ch, const smtpd_command *cmd);
void smtpd_hook_on_auth(smtpd_channel *ch, const smtpd_command *cmd);
void smtpd_hook_message(smtpd_channel *ch);
/* What a hook returned (at idx of L) as a reply: 0 for nil or false (the
 * default reply), the code of one final line of class 2, 4 or 5 (in
 * *reply), or -1: logged as malformed (what names the hook) and *reply is
 * 451 4.3.0. */
int smtpd_hook_verdict(smtpd_channel *ch, lua_State *L, int idx,
                       const char *what, const char **reply, size_t *n);
/* Pushes the connection's TLS facts as a table, or nil in plaintext. */
void smtpd_push_tls(lua_State *L, smtpd_channel *ch);
/* Gives up a waiting hook (handler timeout, forced shutdown). */
void smtpd_hook_abandon(smtpd_channel *ch);
/* Cancels what a parked hook waits for (wait.lua's "abandon"). */
void smtpd_hook_cancel_waits(smtpd_channel *ch);
void smtpd_hook_unref(lua_State *L, int *ref);
/* conn:wake(co, ...): resumes the hook parked on conn. */
int smtpd_hook_wake(lua_State *L);
/* Pushes the conn box of ch. */
void smtpd_conn_push(lua_State *L, smtpd_channel *ch);
void smtpd_open_hook(lua_State *L);

/* ---- the rest ---------------------------------------------------------- */

void smtpd_open_map(lua_State *L);
void smtpd_open_server(lua_State *L);
void smtpd_open_conn(lua_State *L);
void smtpd_open_engine(lua_State *L);
void smtpd_open_tcp(lua_State *L);
void smtpd_open_sock(lua_State *L);
void smtpd_open_dns(lua_State *L);
void smtpd_open_dict(lua_State *L);
void smtpd_open_http(lua_State *L);
void smtpd_open_web(lua_State *L);
void smtpd_open_auth(lua_State *L);
/* dkim_body_hash: the channel's stream fed with its data so far; made
 * whole at the end of the message (before its data goes); its digests
 * pushed as {["relaxed rsa-sha256 nil"] = {digest, total, hashed}, ...}
 * (1; 0: nothing pushed), and the stream reset for the next message. */
void smtpd_dkim_stream_feed_channel(smtpd_channel *ch);
void smtpd_dkim_stream_finish_channel(smtpd_channel *ch);
int smtpd_dkim_stream_push(lua_State *L, smtpd_channel *ch);
void smtpd_dkim_stream_free(smtpd_channel *ch);
/* loop/workers.c: this process's worker number, 0 outside workers. */
extern int smtpd_worker_index;
/* dns/dnsglue.c: a map being freed forgets its resolver's settings. */
void smtpd_dns_map_gone(smtpd_map *m);
/* The addresses of host (an IP address, a name in the hosts file, or its
 * A and AAAA records through the map's resolver): cb(ctx, list, NULL)
 * with a list the owner frees with smtpd_dns_addrinfo_free, or
 * cb(ctx, NULL, why). cb may run before smtpd_dns_lookup_start returns
 * (which then returns NULL; NULL with err set when it cannot start). */
struct addrinfo;
typedef struct smtpd_dns_lookup smtpd_dns_lookup;
typedef void (*smtpd_dns_addr_cb)(void *ctx, struct addrinfo *ai,
                                  const char *why);
smtpd_dns_lookup *smtpd_dns_lookup_start(smtpd_map *m, const char *host,
                                         int port, smtpd_dns_addr_cb cb,
                                         void *ctx, char *err,
                                         size_t errlen);
/* The owner will not hear (it is closing). */
void smtpd_dns_lookup_cancel(smtpd_dns_lookup *l);
void smtpd_dns_addrinfo_free(struct addrinfo *ai);
void smtpd_open_client(lua_State *L);
void smtpd_open_timer(lua_State *L);
void smtpd_open_signal(lua_State *L);
void smtpd_open_workers(lua_State *L);
void smtpd_open_opts(lua_State *L);
void smtpd_open_tls(lua_State *L);
void smtpd_open_stdin(lua_State *L);
void smtpd_open_deliver(lua_State *L);
void smtpd_open_mime(lua_State *L);

#endif

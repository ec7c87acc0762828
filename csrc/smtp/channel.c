/*
 * One client connection: its lifetime, its bytes in and out, back-pressure
 * and its timers. What a complete command or message does is hook.c's;
 * what Lua sees of the connection is conn.c's.
 *
 * Bytes flow through one seam, the transport:
 *
 *   socket --channel_on_read--> channel_recv(plaintext) --> parser
 *   session replies (ch->out) --channel_send--> socket
 *
 * In plaintext those are the socket's bytes. With TLS (implicit, or after
 * STARTTLS) channel_on_read hands the ciphertext to tls.c, which calls
 * channel_recv with what it decrypts; channel_send encrypts the replies
 * into cout and writes that. Nothing above (parser, session, hooks) knows.
 *
 * STARTTLS: the session answers 220 and sets s.starttls; the channel then
 * drops every byte it holds or read after that line (they were sent
 * before the handshake: executing them is the injection of CVE-2011-0411),
 * queues the 220 as plaintext ahead of anything TLS writes, and from then
 * on reads ciphertext only. Bytes sent later in plaintext cannot form a
 * handshake: the connection fails and closes.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/glue.h"

/* Back-pressure: past this many unsent reply bytes the channel stops
 * parsing and reading until the client drains them; past this many held
 * input bytes it stops reading. A read is at most 64 KiB (map->rbuf). */
#define OUT_HIGH (64 * 1024)
#define IN_HIGH (64 * 1024)
/* Buffers grown past this are given back once empty. */
#define BUF_KEEP (64 * 1024)

static int channel_blocked(const smtpd_channel *ch) {
  return ch->out.len + ch->cout.len + ch->wbuf.len > OUT_HIGH;
}

/* A hook or the upstream of a relay has the next word: input waits. */
static int channel_waiting(const smtpd_channel *ch) {
  return ch->parked || ch->relay_wait;
}

static void channel_on_read(uv_stream_t *st, ssize_t nread,
                            const uv_buf_t *buf);
static void channel_update_reading(smtpd_channel *ch);
static void channel_tls_recv(smtpd_channel *ch, const char *p, size_t n);
static void channel_starttls(smtpd_channel *ch);
static void channel_recv(smtpd_channel *ch, const char *p, size_t n);

/* ---- lifetime ----------------------------------------------------------- */

static void channel_free(smtpd_handle *h) {
  smtpd_channel *ch = SMTPD_OWNER(smtpd_channel, h);
  if (ch->counted)
    smtpd_shared_leave(ch->shared, (struct sockaddr *)&ch->peer,
                       ch->ip_counted);
  smtpd_relaying_free(ch);
  smtpd_dkim_stream_free(ch);
  smtpd_shared_unref(ch->shared);
  smtpd_session_free(&ch->s);
  smtpd_buf_free(&ch->in);
  smtpd_buf_free(&ch->out);
  smtpd_buf_free(&ch->wbuf);
  smtpd_buf_free(&ch->cout);
  smtpd_buf_free(&ch->received);
  smtpd_tls_free(ch->tls);
  free(ch);
}

static void channel_close_handles(smtpd_handle *h) {
  smtpd_channel *ch = SMTPD_OWNER(smtpd_channel, h);
  lua_State *L = h->map->L;
  h->map->data_held -= ch->data_counted;
  ch->data_counted = 0;
  if (h->map->debug) smtpd_channel_log(ch, "debug", "Connection closed");
  smtpd_hook_unref(L, &ch->obj_ref);
  smtpd_hook_unref(L, &ch->class_ref);
  smtpd_hook_cancel_waits(ch);
  smtpd_hook_unref(L, &ch->server_ref);
  smtpd_hook_unref(L, &ch->thread_ref);
  smtpd_relaying_close(ch);
  smtpd_handle_uv_close(h, (uv_handle_t *)&ch->timer);
  smtpd_handle_uv_close(h, (uv_handle_t *)&ch->tcp);
}

/* The one way a channel closes: idempotent, frees in the close callback. */
void smtpd_channel_close(smtpd_channel *ch) {
  smtpd_handle_close(&ch->h);
}

smtpd_channel *smtpd_channel_new(smtpd_server *srv) {
  smtpd_map *m = srv->h.map;
  smtpd_channel *ch = calloc(1, sizeof *ch);
  if (ch == NULL) return NULL;
  smtpd_handle_init(&ch->h, m, SMTPD_H_CHANNEL, channel_close_handles,
                    channel_free);
  ch->server_ref = ch->obj_ref = ch->class_ref = LUA_NOREF;
  ch->thread_ref = LUA_NOREF;
  ch->shared = srv->shared;
  ch->shared->refs++;
  ch->last_read = uv_now(&m->loop);
  if (srv->shared->unix_path) uv_pipe_init(&m->loop, &ch->tcp.pipe, 0);
  else uv_tcp_init(&m->loop, &ch->tcp.tcp);
  smtpd_handle_attach(&ch->h, (uv_handle_t *)&ch->tcp);
  uv_timer_init(&m->loop, &ch->timer);
  smtpd_handle_attach(&ch->h, (uv_handle_t *)&ch->timer);
  if (smtpd_session_init(&ch->s, &ch->out, srv->fqdn.p, srv->fqdn.len)) {
    smtpd_channel_close(ch);
    return NULL;
  }
  smtpd_session_configure(&ch->s, &ch->shared->conf.session);
  ch->s.tls_offer = ch->shared->tls && !ch->shared->tls_implicit;
  ch->s.relay = ch->shared->nupstreams > 0;
  ch->s.auth_mechs = ch->shared->auth_mechs;
  smtpd_session_sync(&ch->s);
  return ch;
}

/* TLS begins (at accept, or after STARTTLS): 0, or -1 and closed. */
static int channel_tls_begin(smtpd_channel *ch) {
  smtpd_tls_env *env = smtpd_map_tls(ch->h.map);
  ch->tls = env ? smtpd_tls_server(env, ch->shared->tls, &ch->cout) : NULL;
  if (ch->tls == NULL) {
    smtpd_channel_log(ch, "error", "cannot start TLS: out of memory");
    smtpd_channel_close(ch);
    return -1;
  }
  ch->tls_started = uv_now(&ch->h.map->loop);
  ch->s.tls_on = 1;
  return 0;
}

/* ---- the PROXY protocol ------------------------------------------------- */

/* Behind a proxy: read its header before anything else (no greeting,
 * no session), within proxy_timeout. */
void smtpd_channel_await_proxy(smtpd_channel *ch) {
  ch->proxy_started = uv_now(&ch->h.map->loop);
  smtpd_channel_arm(ch);
  channel_update_reading(ch);
}

static void channel_proxy_recv(smtpd_channel *ch, const char *p, size_t n) {
  struct sockaddr_storage src;
  size_t used = 0;
  int local = 0, r;
  smtpd_buf rest = {NULL, 0, 0};
  if (smtpd_buf_append(&ch->in, p, n)) {
    smtpd_channel_close(ch);
    return;
  }
  r = smtpd_proxy_parse((const unsigned char *)ch->in.p, ch->in.len,
                        ch->shared->proxy_max, &used, &src, &local);
  if (r == 0 && ch->in.len <= ch->shared->proxy_max) return;
  if (r <= 0) {
    if (ch->h.map->debug)
      smtpd_channel_log(ch, "debug", "bad PROXY header: closed");
    smtpd_channel_close(ch);
    return;
  }
  if (!local) {
    memcpy(&ch->peer, &src, sizeof src);
    /* The client is known now: its address's limit applies. */
    if (ch->peer.ss_family != AF_UNIX) {
      if (!smtpd_shared_admit_ip(ch->shared, (struct sockaddr *)&ch->peer)) {
        ch->proxy_wait = 0;
        smtpd_buf_free(&ch->in);
        if (ch->h.map->debug)
          smtpd_channel_log(ch, "debug", "too many connections from this "
                            "address (behind the proxy): 421");
        smtpd_sayf(&ch->s, SMTPD_R_TOO_MANY_CONN, ch->s.fqdn.p);
        ch->close_when_done = 1;
        smtpd_channel_flush(ch);
        return;
      }
      ch->ip_counted = 1;
    }
  }
  ch->proxy_wait = 0;
  /* What followed the header is the client's: after the greeting. */
  if (ch->in.len > used &&
      smtpd_buf_append(&rest, ch->in.p + used, ch->in.len - used)) {
    smtpd_channel_close(ch);
    return;
  }
  smtpd_buf_free(&ch->in);
  if (smtpd_hook_proxied(ch)) {
    smtpd_buf_free(&rest);
    smtpd_channel_close(ch);
    return;
  }
  smtpd_channel_start(ch);
  if (rest.len && !ch->h.closing) {
    if (ch->tls) channel_tls_recv(ch, rest.p, rest.len);
    else channel_recv(ch, rest.p, rest.len);
  }
  smtpd_buf_free(&rest);
}

void smtpd_channel_start(smtpd_channel *ch) {
  if (ch->h.map->debug) {
    char local[64] = "";
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (ch->shared->unix_path)
      snprintf(local, sizeof local, "unix:%s", ch->shared->unix_path);
    else if (uv_tcp_getsockname(&ch->tcp.tcp, (struct sockaddr *)&ss,
                                &len) == 0)
      smtpd_addr_name((struct sockaddr *)&ss, local, sizeof local);
    smtpd_channel_log(ch, "debug", "Incoming connection (to %s)", local);
  }
  /* server:check_connection first: it may refuse the client (a rate
   * limit, a DNS list) or wait for what it asks, before any greeting. */
  if (ch->shared->check_connect && !ch->connect_checked) {
    ch->connect_checked = 1;
    if (smtpd_hook_connect(ch)) {
      smtpd_sayf(&ch->s, SMTPD_R_CONNECT_TEMPFAIL, ch->s.fqdn.p);
      ch->close_when_done = 1;
      smtpd_channel_flush(ch);
      return;
    }
    if (ch->h.closing) return;
    if (ch->hook == SMTPD_HOOK_CONNECT) {     /* it waits */
      smtpd_channel_arm(ch);
      channel_update_reading(ch);
    } else {
      smtpd_channel_flush(ch);
    }
    return;
  }
  smtpd_channel_greet(ch);
}

void smtpd_channel_greet(smtpd_channel *ch) {
  /* Implicit TLS: the greeting waits in out for the handshake. */
  if (ch->shared->tls_implicit && ch->shared->tls &&
      channel_tls_begin(ch))
    return;
  smtpd_sayf(&ch->s, SMTPD_R_GREETING, ch->s.fqdn.p, SMTPD_VERSION);
  smtpd_channel_arm(ch);
  smtpd_channel_flush(ch);
  if (!ch->h.closing) channel_update_reading(ch);
}

/* Every line a session logs starts with its peer (host:port), so one
 * conversation can be grepped out of a busy log. */
void smtpd_channel_log(smtpd_channel *ch, const char *level,
                       const char *fmt, ...) {
  char msg[4096];
  int n;
  va_list ap;
  smtpd_addr_name((const struct sockaddr *)&ch->peer, msg, 64);
  n = (int)strlen(msg);
  msg[n++] = ' ';
  va_start(ap, fmt);
  vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
  va_end(ap);
  smtpd_log_to(ch->h.map, ch->server_ref, level, msg);
}

/* -d: the replies queued in out, one log line each, as they leave. */
static void channel_log_replies(smtpd_channel *ch) {
  const char *p = ch->out.p, *end = ch->out.p + ch->out.len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
    if (n && p[n - 1] == '\r') n--;
    smtpd_channel_log(ch, "debug", "> %.*s", (int)n, p);
    p = nl ? nl + 1 : end;
  }
}

/* ---- message memory, shared by the map ---------------------------------- */

/* Brings this channel's share of map->data_held up to date. */
static void channel_account(smtpd_channel *ch) {
  size_t now = ch->s.parser.data.cap;
  smtpd_map *m = ch->h.map;
  m->data_held = m->data_held - ch->data_counted + now;
  ch->data_counted = now;
  ch->s.data_blocked = m->data_cap && m->data_held > m->data_cap;
}

/* ---- timeouts ------------------------------------------------------------ */

static void channel_on_timer(uv_timer_t *t);

/* Idle timeout while we wait for the client; the hook's deadline while a
 * hook waits. */
void smtpd_channel_arm(smtpd_channel *ch) {
  const smtpd_server_conf *c = &ch->shared->conf;
  uint64_t now = uv_now(&ch->h.map->loop), at = 0;
  if (ch->h.closing) return;
  if (ch->proxy_wait) {
    at = ch->proxy_started + ch->shared->proxy_timeout_ms;
  } else if (ch->tls && !smtpd_tls_ready(ch->tls)) {
    at = ch->tls_started + ch->shared->tls_handshake_ms;
  } else if (channel_waiting(ch)) {
    at = c->handler_timeout_ms ? now + c->handler_timeout_ms : 0;
  } else {
    if (c->timeout_ms) at = ch->last_read + c->timeout_ms;
    if (ch->s.parser.data_mode) {
      uint64_t d;
      if (ch->data_started == 0) ch->data_started = now ? now : 1;
      if (c->data_timeout_ms) {
        d = ch->data_started + c->data_timeout_ms;
        if (at == 0 || d < at) at = d;
      }
      if (c->min_data_rate) {
        /* Reads check the rate as data comes; this covers silence. */
        d = ch->data_started + c->data_grace_ms;
        if (d < now + 1000) d = now + 1000;
        if (at == 0 || d < at) at = d;
      }
    } else {
      ch->data_started = 0;
    }
  }
  if (at == 0) uv_timer_stop(&ch->timer);
  else uv_timer_start(&ch->timer, channel_on_timer, at > now ? at - now : 0,
                      0);
}

void smtpd_channel_cut(smtpd_channel *ch, const char *why) {
  smtpd_sayf(&ch->s, SMTPD_R_CUT, ch->s.fqdn.p, why);
  ch->close_when_done = 1;
  smtpd_channel_flush(ch);
  if (!ch->h.closing) channel_update_reading(ch);
}

/* The DATA deadline and the minimum rate; 1 when the client was cut. */
static int channel_check_data(smtpd_channel *ch, uint64_t now) {
  const smtpd_server_conf *c = &ch->shared->conf;
  uint64_t spent;
  if (!ch->s.parser.data_mode || !ch->data_started || channel_waiting(ch))
    return 0;
  spent = now - ch->data_started;
  if (c->data_timeout_ms && spent >= c->data_timeout_ms) {
    smtpd_channel_cut(ch, "DATA took too long");
    return 1;
  }
  if (c->min_data_rate && spent >= c->data_grace_ms && spent > 0 &&
      ch->s.parser.data_raw * 1000 / spent < c->min_data_rate) {
    smtpd_channel_cut(ch, "data arrives too slowly");
    return 1;
  }
  return 0;
}

static void channel_on_timer(uv_timer_t *t) {
  smtpd_channel *ch = SMTPD_OWNER(smtpd_channel, t->data);
  uint64_t now;
  if (ch->h.closing) return;
  if (ch->proxy_wait) {
    if (ch->h.map->debug)
      smtpd_channel_log(ch, "debug", "no PROXY header in time: closed");
    smtpd_channel_close(ch);
    return;
  }
  if (ch->tls && !smtpd_tls_ready(ch->tls)) {
    /* A handshake that stalls costs a timer, then nothing. */
    if (ch->h.map->debug)
      smtpd_channel_log(ch, "debug", "TLS handshake timed out");
    smtpd_channel_close(ch);
    return;
  }
  if (ch->relay_wait) {
    smtpd_channel_log(ch, "error", "the upstream still had not answered "
                      "after %.1f s; answering 451",
                      (double)ch->shared->conf.handler_timeout_ms / 1000.0);
    smtpd_relaying_abandon(ch);
    return;
  }
  if (ch->parked && ch->hook == SMTPD_HOOK_CONNECT) {
    /* check_connection waited too long: the client is greeted (what it
     * waited for, a store or a DNS list, is not the client's fault). */
    smtpd_channel_log(ch, "error", "check_connection still waited after "
                      "%.1f s; greeting the client",
                      (double)ch->shared->conf.handler_timeout_ms / 1000.0);
    smtpd_hook_abandon(ch);
    smtpd_channel_greet(ch);
    if (!ch->h.closing) smtpd_channel_process_input(ch);
    return;
  }
  if (ch->parked) {
    /* The hook waited too long: give it up. It is never resumed (wake
     * checks the coroutine), and the session goes on. */
    int kind = ch->hook;
    smtpd_channel_log(ch, "error", "a %s still waited after %.1f s; "
                      "answering 451", kind == SMTPD_HOOK_MESSAGE ?
                      "process_message" : "command handler",
                      (double)ch->shared->conf.handler_timeout_ms / 1000.0);
    smtpd_hook_abandon(ch);
    if (kind == SMTPD_HOOK_MESSAGE) {
      smtpd_session_post_data(&ch->s);
      smtpd_say_message(&ch->s, SMTPD_R_LOCAL_ERROR);
    } else {
      smtpd_say(&ch->s, SMTPD_R_LOCAL_ERROR);
    }
    smtpd_session_sync(&ch->s);
    smtpd_channel_process_input(ch);
    return;
  }
  now = uv_now(&ch->h.map->loop);
  if (channel_check_data(ch, now)) return;
  if (ch->shared->conf.timeout_ms &&
      now - ch->last_read >= ch->shared->conf.timeout_ms) {
    smtpd_channel_cut(ch, "timeout exceeded");
    return;
  }
  smtpd_channel_arm(ch);
}

/* ---- shutdown ------------------------------------------------------------ */

static void channel_say_shutdown(smtpd_channel *ch) {
  smtpd_sayf(&ch->s, SMTPD_R_SHUTDOWN, ch->s.fqdn.p);
  ch->close_when_done = 1;
}

/* After each event: a channel of a server that is shutting down ends as
 * soon as it is between transactions' DATA. */
void smtpd_channel_check_shutdown(smtpd_channel *ch) {
  if (ch->shared->shutting_down && !ch->h.closing && !ch->close_when_done &&
      !ch->hook && !ch->s.parser.data_mode && ch->s.state == SMTPD_COMMAND)
    channel_say_shutdown(ch);
}

void smtpd_channel_shutdown(smtpd_channel *ch, int force) {
  if (ch->h.closing || ch->close_when_done) return;
  if (force) {
    if (ch->parked || ch->awaiting) smtpd_hook_abandon(ch);
    channel_say_shutdown(ch);
  } else {
    smtpd_channel_check_shutdown(ch);
  }
  if (!ch->in_process) {
    smtpd_channel_flush(ch);
    if (!ch->h.closing) channel_update_reading(ch);
  }
}

/* ---- input: parsing --------------------------------------------------------- */

/* After the 220 to STARTTLS: the replies so far go out in plaintext,
 * ahead of what TLS writes; the session starts over (RFC 3207 4.2). */
static void channel_starttls(smtpd_channel *ch) {
  smtpd_session_tls_reset(&ch->s);
  if (ch->h.map->debug) channel_log_replies(ch);
  if (smtpd_buf_append(&ch->cout, ch->out.p, ch->out.len)) {
    smtpd_channel_close(ch);
    return;
  }
  ch->out.len = 0;
  ch->in.len = 0;
  if (channel_tls_begin(ch) == 0) smtpd_channel_arm(ch);
}

/* The channel's events of the one dispatcher (smtpd_session_feed). */
static int channel_ev_line(void *ctx) {
  return smtpd_hook_on_line(ctx);
}

static int channel_ev_command(void *ctx, const smtpd_command *cmd) {
  return smtpd_hook_on_command(ctx, cmd);
}

static void channel_ev_auth(void *ctx, const smtpd_command *cmd) {
  smtpd_hook_on_auth(ctx, cmd);
}

static void channel_ev_message(void *ctx) {
  smtpd_channel *ch = ctx;
  /* A relay at RCPT time streamed the message: its end goes upstream. */
  if (ch->s.relay) smtpd_relaying_message(ch);
  else smtpd_hook_message(ch);
}

static void channel_ev_held(void *ctx) {
  smtpd_relaying_held(ctx);
}

static void channel_ev_starttls(void *ctx) {
  channel_starttls(ctx);
}

/* Feeding stops while a hook waits, when the channel closes or will, and
 * while replies are blocked (back-pressure). */
static int channel_ev_stop(void *ctx) {
  smtpd_channel *ch = ctx;
  return ch->parked || ch->relay_wait || ch->h.closing ||
         ch->close_when_done || channel_blocked(ch);
}

static void channel_ev_step(void *ctx) {
  channel_account(ctx);
}

static void channel_ev_after(void *ctx) {
  smtpd_channel *ch = ctx;
  if (ch->s.quit) ch->close_when_done = 1;
  smtpd_channel_check_shutdown(ch);
}

static const smtpd_events channel_events = {
  channel_ev_line, channel_ev_command, channel_ev_auth, channel_ev_message,
  channel_ev_starttls, channel_ev_stop, channel_ev_step, channel_ev_after,
  channel_ev_held
};

/* Feeds input to the session until it is used up or the channel must
 * stop (a hook waits, QUIT, close). Returns the bytes consumed. */
static size_t channel_feed(smtpd_channel *ch, const char *buf, size_t len) {
  size_t off;
  ch->in_process++;
  off = smtpd_session_feed(&ch->s, buf, len, &channel_events, ch);
  if (ch->shared->conf.dkim_body_hash) smtpd_dkim_stream_feed_channel(ch);
  if (ch->relay) smtpd_relaying_pump(ch);
  if (ch->s.quit) ch->close_when_done = 1;
  channel_account(ch);
  if (!ch->s.parser.data_mode) ch->data_started = 0;
  ch->in_process--;
  return off;
}

/* Parses input held back (while a hook waited, or while replies were
 * blocked). Replies usually go straight into the socket (try_write), so
 * no write callback would come to resume: keep going until the input is
 * used up or something really waits (a write, a hook, a close). */
void smtpd_channel_process_input(smtpd_channel *ch) {
  for (;;) {
    size_t used = channel_feed(ch, ch->in.p, ch->in.len);
    if (ch->h.closing) return;
    smtpd_buf_consume(&ch->in, used);
    smtpd_channel_flush(ch);
    if (ch->h.closing) return;
    if (ch->in.len == 0 || used == 0 || ch->writing || channel_waiting(ch) ||
        ch->close_when_done || channel_blocked(ch))
      break;
  }
  smtpd_channel_arm(ch);
  if (ch->in.len == 0) smtpd_buf_free(&ch->in);
  channel_update_reading(ch);
}

void smtpd_channel_after_lua(smtpd_channel *ch) {
  if (ch->in_process || ch->h.closing) return;
  smtpd_session_sync(&ch->s);
  smtpd_channel_flush(ch);
}

/* ---- the transport: plaintext in -------------------------------------------- */

/* Plaintext input: parsed at once, or held after what is held already. */
static void channel_recv(smtpd_channel *ch, const char *p, size_t n) {
  if (ch->in.len) {
    if (smtpd_buf_append(&ch->in, p, n)) {
      smtpd_channel_close(ch);
      return;
    }
    smtpd_channel_process_input(ch);
    return;
  } else {
    size_t used = channel_feed(ch, p, n);
    if (used < n && !ch->h.closing &&
        smtpd_buf_append(&ch->in, p + used, n - used)) {
      smtpd_channel_close(ch);
      return;
    }
  }
  if (ch->h.closing) return;
  if (channel_waiting(ch)) smtpd_channel_arm(ch);
  smtpd_channel_flush(ch);
  if (ch->h.closing) return;
  /* What this read left over, now that its replies are out. */
  if (ch->in.len && !ch->writing && !channel_waiting(ch) && !ch->in_process)
    smtpd_channel_process_input(ch);
  else
    channel_update_reading(ch);
}

/* ---- the transport: TLS in ------------------------------------------------- */

static int channel_tls_plain(void *ctx, const char *p, size_t n) {
  smtpd_channel *ch = ctx;
  channel_recv(ch, p, n);
  return ch->h.closing;
}

static int channel_send(smtpd_channel *ch);

static void channel_tls_recv(smtpd_channel *ch, const char *p, size_t n) {
  int was = smtpd_tls_ready(ch->tls);
  int r = smtpd_tls_input(ch->tls, p, n, channel_tls_plain, ch);
  if (ch->h.closing) return;
  if (r != SMTPD_TLS_OK) {
    /* A failed handshake, garbage, or the client's close_notify: the
     * alert (if any) goes out, then the connection ends. */
    if (r == SMTPD_TLS_ERROR && ch->h.map->debug)
      smtpd_channel_log(ch, "debug", "%s", smtpd_tls_error(ch->tls));
    if (!ch->writing && ch->cout.len) channel_send(ch);
    smtpd_channel_close(ch);
    return;
  }
  if (!was && smtpd_tls_ready(ch->tls)) {
    if (ch->h.map->debug) {
      smtpd_tls_info in;
      smtpd_tls_get_info(ch->tls, &in);
      smtpd_channel_log(ch, "debug", "TLS established: %s %s", in.version,
                        in.cipher ? in.cipher : "");
    }
    smtpd_channel_arm(ch);
  }
  smtpd_channel_flush(ch);
  if (!ch->h.closing) channel_update_reading(ch);
}

static void channel_on_alloc(uv_handle_t *u, size_t size, uv_buf_t *buf) {
  smtpd_map *m = SMTPD_OWNER(smtpd_channel, u->data)->h.map;
  (void)size;
  if (m->rbuf_busy) {
    /* Cannot happen in one thread, but never hand out the buffer twice. */
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  m->rbuf_busy = 1;
  *buf = uv_buf_init(m->rbuf, sizeof m->rbuf);
}

static void channel_on_read(uv_stream_t *st, ssize_t nread,
                            const uv_buf_t *buf) {
  smtpd_channel *ch = SMTPD_OWNER(smtpd_channel, st->data);
  if (buf->base == ch->h.map->rbuf) ch->h.map->rbuf_busy = 0;
  if (ch->h.closing) return;
  if (nread < 0) {
    /* EOF or error: a message not ended by CRLF.CRLF is dropped. */
    smtpd_channel_close(ch);
    return;
  }
  if (nread == 0) return;
  ch->last_read = uv_now(&ch->h.map->loop);
  if (channel_check_data(ch, ch->last_read)) return;
  smtpd_channel_arm(ch);
  if (ch->proxy_wait) channel_proxy_recv(ch, buf->base, (size_t)nread);
  else if (ch->tls) channel_tls_recv(ch, buf->base, (size_t)nread);
  else channel_recv(ch, buf->base, (size_t)nread);
}

static void channel_update_reading(smtpd_channel *ch) {
  /* Held input is bounded too: no reading while more than a read's worth
   * waits to be parsed. */
  int want = !ch->h.closing && !channel_waiting(ch) && !ch->close_when_done &&
             !smtpd_relaying_blocked(ch) &&
             !channel_blocked(ch) && ch->in.len <= IN_HIGH;
  if (want && !ch->reading) {
    if (uv_read_start((uv_stream_t *)&ch->tcp, channel_on_alloc,
                      channel_on_read) == 0)
      ch->reading = 1;
  } else if (!want && ch->reading && !ch->h.closing) {
    uv_read_stop((uv_stream_t *)&ch->tcp);
    ch->reading = 0;
  }
}

/* ---- the transport: replies out ----------------------------------------------- */

static void channel_on_write(uv_write_t *req, int status) {
  smtpd_channel *ch = req->data;
  ch->writing = 0;
  ch->wbuf.len = 0;
  if (ch->wbuf.cap > BUF_KEEP) smtpd_buf_free(&ch->wbuf);
  if (ch->h.closing) return;
  if (status < 0) {
    smtpd_channel_close(ch);
    return;
  }
  smtpd_channel_flush(ch);
  if (ch->h.closing) return;
  /* The client drained its replies: go on with what it sent meanwhile. */
  if (!channel_blocked(ch) && !channel_waiting(ch) && ch->in.len &&
      !ch->in_process)
    smtpd_channel_process_input(ch);
  else
    channel_update_reading(ch);
}

/* Writes the queued replies to the socket (with TLS: encrypted into
 * cout first, once the handshake is done): 0, or -1 when it failed. */
static int channel_send(smtpd_channel *ch) {
  smtpd_buf tmp, *src = &ch->out;
  uv_buf_t b;
  int err;
  /* Whatever out holds now leaves it in this call (or waits, whole, for
   * the handshake): each reply is logged once. */
  if (ch->h.map->debug && ch->out.len &&
      (!ch->tls || smtpd_tls_ready(ch->tls)))
    channel_log_replies(ch);
  if (ch->tls) {
    if (ch->out.len && smtpd_tls_ready(ch->tls)) {
      if (smtpd_tls_write(ch->tls, ch->out.p, ch->out.len)) return -1;
      ch->out.len = 0;
      if (ch->out.cap > BUF_KEEP) smtpd_buf_free(&ch->out);
    }
    src = &ch->cout;
    if (src->len == 0) return 0;
  }
  /* Replies nearly always fit the socket buffer: write them now. A libuv
   * write request would cost a deferred callback and, in libuv before
   * 1.45, an epoll_ctl per reply. */
  b = uv_buf_init(src->p, (unsigned)src->len);
  err = uv_try_write((uv_stream_t *)&ch->tcp, &b, 1);
  if (err == (int)src->len) {
    src->len = 0;
    /* An idle TLS connection keeps no wire buffer. */
    if (src->cap > BUF_KEEP || src == &ch->cout) smtpd_buf_free(src);
    return 0;
  }
  if (err < 0 && err != UV_EAGAIN) return -1;
  if (err > 0) smtpd_buf_consume(src, (size_t)err);
  /* The rest goes out with a write request from wbuf; src collects the
   * next replies meanwhile. */
  tmp = ch->wbuf;
  ch->wbuf = *src;
  *src = tmp;
  src->len = 0;
  b = uv_buf_init(ch->wbuf.p, (unsigned)ch->wbuf.len);
  ch->wreq.data = ch;
  ch->writing = 1;
  err = uv_write(&ch->wreq, (uv_stream_t *)&ch->tcp, &b, 1, channel_on_write);
  if (err) {
    ch->writing = 0;
    return -1;
  }
  return 0;
}

void smtpd_channel_flush(smtpd_channel *ch) {
  if (ch->writing || ch->h.closing) return;
  if ((ch->out.len || ch->cout.len) && channel_send(ch)) {
    smtpd_channel_close(ch);
    return;
  }
  if (!ch->close_when_done || ch->hook || ch->writing) return;
  if (ch->tls && !smtpd_tls_ready(ch->tls)) {
    /* Nothing can be said before the handshake is done. */
    smtpd_channel_close(ch);
    return;
  }
  if (ch->out.len) return;
  if (ch->tls) {
    /* close_notify, then close (the peer's is not awaited). */
    smtpd_tls_shutdown(ch->tls);
    if (ch->cout.len && channel_send(ch) == 0 && ch->writing) return;
  }
  smtpd_channel_close(ch);
}

/*
 * Standard input on a map's loop, for the live prompt (smtpd.interact):
 *
 *   local w = core.stdin_watch(map, function(chunk) ... end)  -- w:close()
 *
 * fn gets what each read returned, then nil at end of input. A poll
 * handle watches fd 0 and we read(2) it ourselves, so fd 0 stays what it
 * was: libuv makes it non-blocking, and its flags are put back on close
 * (a prompt that returns to lua5.4 -i must leave a blocking stdin). The
 * terminal's modes are never touched: cooked mode, as the caller had it.
 *
 * With {readline = true} on a terminal, line editing and history come from
 * GNU readline or libedit, found at run time (dlsym in the process, which
 * has readline when it is lua5.4 itself, else dlopen): nothing is linked
 * at build time. Its callback interface is driven from the poll; readline
 * then owns the terminal's modes while a prompt is shown, and gives them
 * back when the line is done (rl_callback_handler_remove).
 *
 *   w:prompt(text)       shows a prompt and reads one line (fn gets it)
 *   w:write(text, fd)    output that does not garble the line being typed
 *   w:cancel_line()      Ctrl-C: drop the line being typed
 *   w:editing()          whether readline is in use
 *   w:history(path, save) loads (or saves) the history file
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/glue.h"

#define STDIN_MT "smtpd.stdin"

typedef struct stdin_watch {
  smtpd_handle h;
  uv_poll_t poll;
  int cb_ref;
  int flags;               /* fd 0's flags before we came */
  int rl;                  /* readline drives the input */
  int rl_active;           /* a prompt is shown, a line is being read */
  int polling;
} stdin_watch;

/* ---- readline, found at run time ------------------------------------------ */

typedef void (*rl_vcpfunc)(char *);

static struct {
  int tried, ok;
  void (*install)(const char *, rl_vcpfunc);
  void (*read_char)(void);
  void (*remove)(void);
  int (*add_history)(const char *);
  int (*read_history)(const char *);
  int (*write_history)(const char *);
  void (*save_prompt)(void);
  void (*restore_prompt)(void);
  void (*replace_line)(const char *, int);
  void (*redisplay)(void);
  int *point, *end;
  char **line_buffer;
  int *catch_signals, *catch_sigwinch;
} rl;

static void *rl_sym(void *h, const char *name) {
  return dlsym(h, name);
}

static int rl_load(void) {
  static const char *const libs[] = {
    "libreadline.so.8", "libreadline.so", "libedit.so.2", "libedit.so.0",
    "libedit.so", "libreadline.dylib", "libedit.3.dylib", "libedit.dylib",
    NULL
  };
  void *h = RTLD_DEFAULT;
  int i;
  if (rl.tried) return rl.ok;
  rl.tried = 1;
  if (!dlsym(RTLD_DEFAULT, "rl_callback_handler_install")) {
    h = NULL;
    for (i = 0; libs[i] && h == NULL; i++)
      h = dlopen(libs[i], RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) return 0;
  }
  *(void **)&rl.install = rl_sym(h, "rl_callback_handler_install");
  *(void **)&rl.read_char = rl_sym(h, "rl_callback_read_char");
  *(void **)&rl.remove = rl_sym(h, "rl_callback_handler_remove");
  *(void **)&rl.add_history = rl_sym(h, "add_history");
  *(void **)&rl.read_history = rl_sym(h, "read_history");
  *(void **)&rl.write_history = rl_sym(h, "write_history");
  *(void **)&rl.save_prompt = rl_sym(h, "rl_save_prompt");
  *(void **)&rl.restore_prompt = rl_sym(h, "rl_restore_prompt");
  *(void **)&rl.replace_line = rl_sym(h, "rl_replace_line");
  *(void **)&rl.redisplay = rl_sym(h, "rl_redisplay");
  rl.point = rl_sym(h, "rl_point");
  rl.end = rl_sym(h, "rl_end");
  rl.line_buffer = rl_sym(h, "rl_line_buffer");
  rl.catch_signals = rl_sym(h, "rl_catch_signals");
  rl.catch_sigwinch = rl_sym(h, "rl_catch_sigwinch");
  rl.ok = rl.install && rl.read_char && rl.remove;
  return rl.ok;
}

/* The watcher whose line readline is reading (its callback has no
 * argument to carry it). */
static stdin_watch *rl_owner;

static void stdin_free(smtpd_handle *h) {
  free(SMTPD_OWNER(stdin_watch, h));
}

static void stdin_rl_stop(stdin_watch *w) {
  if (w->rl_active) {
    rl.remove();
    w->rl_active = 0;
  }
  if (rl_owner == w) rl_owner = NULL;
}

static void stdin_close(smtpd_handle *h) {
  stdin_watch *w = SMTPD_OWNER(stdin_watch, h);
  stdin_rl_stop(w);
  luaL_unref(h->map->L, LUA_REGISTRYINDEX, w->cb_ref);
  w->cb_ref = LUA_NOREF;
  smtpd_handle_uv_close(h, (uv_handle_t *)&w->poll);
  if (w->flags != -1) fcntl(0, F_SETFL, w->flags);
}

typedef struct stdin_chunk {
  stdin_watch *w;
  const char *p;
  size_t n;
} stdin_chunk;

static int stdin_lua_deliver(lua_State *L) {
  stdin_chunk *c = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->w->cb_ref);
  if (c->p) lua_pushlstring(L, c->p, c->n);
  else lua_pushnil(L);
  lua_call(L, 1, 0);
  return 0;
}

/* Calls fn(chunk) (nil: end of input), protected: the string is made
 * inside the protected call too. */
static void stdin_deliver(stdin_watch *w, const char *p, ssize_t n) {
  lua_State *L = w->h.map->L;
  stdin_chunk c;
  c.w = w;
  c.p = p;
  c.n = p ? (size_t)n : 0;
  lua_pushcfunction(L, stdin_lua_deliver);
  lua_pushlightuserdata(L, &c);
  smtpd_lua_calls++;
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    smtpd_log(w->h.map, "error reading stdin: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

/* readline finished a line (NULL: end of input). The prompt is taken
 * down until the next w:prompt(), and so is the poll: what is typed
 * meanwhile waits in the terminal. */
static void stdin_rl_line(char *line) {
  stdin_watch *w = rl_owner;
  if (w == NULL) {
    free(line);
    return;
  }
  stdin_rl_stop(w);
  if (w->polling) {
    uv_poll_stop(&w->poll);
    w->polling = 0;
  }
  if (line == NULL) {
    stdin_deliver(w, NULL, 0);
    smtpd_handle_close(&w->h);
    return;
  }
  if (line[0] && rl.add_history) rl.add_history(line);
  {
    size_t n = strlen(line);
    char *with_nl = malloc(n + 1);
    if (with_nl) {
      memcpy(with_nl, line, n);
      with_nl[n] = '\n';
      stdin_deliver(w, with_nl, (ssize_t)n + 1);
      free(with_nl);
    }
  }
  free(line);
}

static void stdin_on_poll(uv_poll_t *p, int status, int events) {
  stdin_watch *w = SMTPD_OWNER(stdin_watch, p->data);
  char buf[4096];
  ssize_t n;
  (void)events;
  if (w->h.closing) return;
  if (w->rl) {
    if (status >= 0 && w->rl_active) {
      rl_owner = w;
      rl.read_char();
    }
    return;
  }
  if (status < 0) {
    n = 0;
  } else {
    n = read(0, buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  }
  if (n <= 0) {
    /* End of input (or an error): say so once, then stop watching. */
    uv_poll_stop(&w->poll);
    stdin_deliver(w, NULL, 0);
    smtpd_handle_close(&w->h);
    return;
  }
  stdin_deliver(w, buf, n);
}

/* stdin_watch(map, fn, {readline = bool}) -> handle | nil, err */
static int stdin_watch_new(lua_State *L) {
  smtpd_map *m = smtpd_check_map(L, 1);
  stdin_watch *w;
  int err, want_rl = 0;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "readline");
    want_rl = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  w = calloc(1, sizeof *w);
  if (w == NULL) return luaL_error(L, "out of memory");
  w->flags = fcntl(0, F_GETFL);
  smtpd_handle_init(&w->h, m, SMTPD_H_TIMER, stdin_close, stdin_free);
  err = uv_poll_init(&m->loop, &w->poll, 0);
  if (err) {
    /* A regular file cannot be polled: nothing was attached. */
    if (w->flags != -1) fcntl(0, F_SETFL, w->flags);
    w->flags = -1;
    w->cb_ref = LUA_NOREF;
    smtpd_handle_close(&w->h);
    return smtpd_fail(L, err);
  }
  smtpd_handle_attach(&w->h, (uv_handle_t *)&w->poll);
  lua_pushvalue(L, 2);
  w->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  w->rl = want_rl && isatty(0) && isatty(1) && rl_load();
  if (w->rl) {
    /* Signals are libuv's (Ctrl-C at the prompt), not readline's. */
    if (rl.catch_signals) *rl.catch_signals = 0;
    if (rl.catch_sigwinch) *rl.catch_sigwinch = 0;
  } else {
    uv_poll_start(&w->poll, UV_READABLE | UV_DISCONNECT, stdin_on_poll);
    w->polling = 1;
  }
  smtpd_handle_push_box(L, &w->h, STDIN_MT, 0);
  return 1;
}

/* The watcher, or NULL once it closed (end of input): its methods then
 * do what plain output would. */
static stdin_watch *stdin_get(lua_State *L) {
  smtpd_handle *h = smtpd_handle_get(L, 1, STDIN_MT);
  return h ? SMTPD_OWNER(stdin_watch, h) : NULL;
}

/* prompt(w, text): with readline, shows text and reads a line; else
 * writes it. */
static int stdin_prompt(lua_State *L) {
  stdin_watch *w = stdin_get(L);
  size_t n;
  const char *p = luaL_checklstring(L, 2, &n);
  if (w == NULL || !w->rl) {
    if (write(1, p, n) < 0) {}
    return 0;
  }
  if (rl_owner && rl_owner != w) stdin_rl_stop(rl_owner);
  rl_owner = w;
  rl.install(p, stdin_rl_line);
  w->rl_active = 1;
  if (!w->polling) {
    uv_poll_start(&w->poll, UV_READABLE | UV_DISCONNECT, stdin_on_poll);
    w->polling = 1;
  }
  return 0;
}

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t k = write(fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return;
    p += k;
    n -= (size_t)k;
  }
}

/* write(w, text, fd): output while a line may be being typed: the line
 * is taken off the screen, text written, and the line put back. */
static int stdin_write(lua_State *L) {
  stdin_watch *w = stdin_get(L);
  size_t n;
  const char *p = luaL_checklstring(L, 2, &n);
  int fd = (int)luaL_optinteger(L, 3, 1);
  if (w && w->rl && w->rl_active && rl.save_prompt && rl.restore_prompt &&
      rl.replace_line && rl.redisplay && rl.line_buffer && rl.point) {
    char *saved = strdup(*rl.line_buffer ? *rl.line_buffer : "");
    int point = *rl.point;
    rl.save_prompt();
    rl.replace_line("", 0);
    rl.redisplay();
    write_all(fd, "\r", 1);
    write_all(fd, p, n);
    rl.restore_prompt();
    rl.replace_line(saved ? saved : "", 0);
    *rl.point = point;
    rl.redisplay();
    free(saved);
    return 0;
  }
  write_all(fd, p, n);
  return 0;
}

/* cancel_line(w): Ctrl-C, the line being typed is dropped. */
static int stdin_cancel_line(lua_State *L) {
  stdin_watch *w = stdin_get(L);
  if (w && w->rl && w->rl_active) stdin_rl_stop(w);
  return 0;
}

static int stdin_history(lua_State *L) {
  const char *path = luaL_checkstring(L, 2);
  int save = lua_toboolean(L, 3), r = -1;
  /* Also once the watcher closed (Ctrl-D): readline's history outlives
   * it. */
  if (rl.ok) {
    if (save && rl.write_history) r = rl.write_history(path);
    else if (!save && rl.read_history) r = rl.read_history(path);
  }
  lua_pushboolean(L, r == 0);
  return 1;
}

static int stdin_editing(lua_State *L) {
  stdin_watch *w = stdin_get(L);
  lua_pushboolean(L, w && w->rl);
  return 1;
}

static int stdin_watch_close(lua_State *L) {
  smtpd_handle *h = smtpd_handle_get(L, 1, STDIN_MT);
  if (h) smtpd_handle_close(h);
  return 0;
}

void smtpd_open_stdin(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"close", stdin_watch_close}, {"prompt", stdin_prompt},
    {"write", stdin_write}, {"cancel_line", stdin_cancel_line},
    {"editing", stdin_editing}, {"history", stdin_history}, {NULL, NULL}
  };
  smtpd_new_class(L, STDIN_MT, NULL, methods);
  lua_pushcfunction(L, stdin_watch_new);
  lua_setfield(L, -2, "stdin_watch");
}

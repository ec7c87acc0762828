/*
 * Durable delivery to Maildir and mbox, on libuv's thread pool so that a
 * message being written and synced never stalls the loop:
 *
 *   core.deliver(map, {maildir = dir, data = s [, make = true]},
 *                function(ok, err, name)) -> handle (handle:cancel())
 *   core.deliver(map, {mbox = path, data = s, lock_timeout = 10}, cb)
 *   core.maildir_make(dir)            -- dir, dir/tmp, dir/new, dir/cur
 *
 * Maildir: data goes to tmp/<unique>, fsync, close, rename into new/,
 * fsync new/; the callback gets the name. Any failure removes what was
 * written, so new/ never holds a partial or unsynced message. make = true
 * creates the Maildir first, on the pool too.
 *
 * mbox: the caller passes the whole entry (the From_ line, mboxrd-quoted
 * body, blank line). It is appended under a dot-lock (path.lock, created
 * O_EXCL; one older than five minutes is stale) and a write lock on the
 * file (an open file description lock where there is one, so that two
 * descriptors of one process exclude each other too), as mutt and
 * Postfix's local(8) take them, then fsynced; a failed append is
 * truncated back to the size the mailbox had.
 *
 * Waiting for a lock never holds a pool thread: each try is one pass on
 * the pool that gives up at once when the mailbox is locked, and the
 * next try is started from the loop, by a timer, until lock_timeout.
 * Deliveries to one mbox path from this process go one at a time, in
 * order (the dot-lock alone cannot say so: a directory we may not write
 * leaves only the file lock, and fcntl's is per process).
 *
 * The data string stays anchored in the registry while the thread reads
 * it. A delivery closed before it finished (its map closed, or cancel())
 * finishes its pass on the pool, and its callback is not called.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/glue.h"

#define DELIVERY_MT "smtpd.delivery"
#define ERR_MAX 8192
#define PATH_MAX_OURS 3800     /* room for /tmp/<name> and .lock */
#define STALE_LOCK_SECONDS 300
#define LOCK_RETRY_MS 50

typedef struct delivery {
  smtpd_handle h;
  uv_timer_t retry;          /* the next try for a locked mbox */
  uv_work_t req;
  int working;               /* a pass is on the pool */
  int cb_ref, data_ref;
  int mbox;                  /* else maildir */
  int make;                  /* maildir: create it first */
  char *where;               /* the maildir or the mbox path */
  const char *data;
  size_t len;
  uint64_t deadline;         /* uv_now past which a lock wait fails */
  int busy;                  /* the last pass found the mailbox locked:
                                1 by a dot-lock, 2 by a file lock */
  char name[256];            /* maildir: the file's name in new/ */
  struct delivery *next;     /* the next delivery to the same mbox path */
  int fail_at;               /* tests: make this step fail (EIO) */
  int delay_ms;              /* tests: sleep before syncing */
  int no_dotlock;            /* tests: as if the directory were not ours */
  char err[ERR_MAX];
} delivery;

/* The steps, for messages and for the tests' fault injection. */
enum { STEP_NONE, STEP_OPEN, STEP_WRITE, STEP_FSYNC, STEP_RENAME,
       STEP_DIRSYNC, STEP_LOCK };

#ifdef SMTPD_TESTING
static const char *const step_names[] = {
  "", "open", "write", "fsync", "rename", "dirsync", "lock", NULL
};

static int fault(delivery *d, int step) {
  if (d->fail_at != step) return 0;
  errno = EIO;
  return 1;
}
#define TEST_DELAY(d) \
  do { if ((d)->delay_ms) usleep((useconds_t)(d)->delay_ms * 1000); } while (0)
#else
#define fault(d, step) 0
#define TEST_DELAY(d) ((void)0)
#endif

static void fail(delivery *d, const char *what, const char *path, int err) {
  if (!d->err[0])
    snprintf(d->err, sizeof d->err, "%s %s: %s", what, path, strerror(err));
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int sync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r, e;
  if (fd < 0) return -1;
  r = fsync(fd);
  e = errno;
  close(fd);
  errno = e;
  return r;
}

/* dir (with its parents) and its tmp, new and cur (mode 0700), where
 * missing: 0, or -1 with why in err. */
static int maildir_mkdirs(const char *dir, char *err, size_t errlen) {
  static const char *const subs[] = {"", "/tmp", "/new", "/cur"};
  char path[4096];
  size_t i, n = strlen(dir);
  memcpy(path, dir, n + 1);
  for (i = 1; i < n; i++) {
    if (path[i] != '/') continue;
    path[i] = '\0';
    if (mkdir(path, 0700) && errno != EEXIST) {
      snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
      return -1;
    }
    path[i] = '/';
  }
  for (i = 0; i < sizeof subs / sizeof *subs; i++) {
    struct stat st;
    snprintf(path, sizeof path, "%s%s", dir, subs[i]);
    if (mkdir(path, 0700) && errno != EEXIST) {
      snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
      return -1;
    }
    if (stat(path, &st) || !S_ISDIR(st.st_mode)) {
      snprintf(err, errlen, "%s is not a directory", path);
      return -1;
    }
  }
  return 0;
}

static unsigned long delivery_counter = 0;   /* loop thread only */

/* time.M<usec>P<pid>Q<n>.<host>,S=<size>: the Maildir convention, with
 * '/' and ':' in the host name written as \057 and \072. */
static void maildir_name(delivery *d) {
  struct timeval tv;
  char host[128] = "localhost", safe[160];
  size_t i, j = 0;
  gettimeofday(&tv, NULL);
  gethostname(host, sizeof host - 1);
  host[sizeof host - 1] = '\0';
  for (i = 0; host[i] && j + 5 < sizeof safe; i++) {
    if (host[i] == '/' || host[i] == ':') {
      j += (size_t)snprintf(safe + j, sizeof safe - j, "\\%03o",
                            (unsigned char)host[i]);
    } else {
      safe[j++] = host[i];
    }
  }
  safe[j] = '\0';
  snprintf(d->name, sizeof d->name, "%lld.M%ldP%ldQ%lu.%s,S=%zu",
           (long long)tv.tv_sec, (long)tv.tv_usec, (long)getpid(),
           ++delivery_counter, safe, d->len);
}

static void maildir_work(delivery *d) {
  char tmp[4096], dst[4096], newdir[4096];
  int fd;
  if (d->make && maildir_mkdirs(d->where, d->err, sizeof d->err)) return;
  snprintf(tmp, sizeof tmp, "%s/tmp/%s", d->where, d->name);
  snprintf(dst, sizeof dst, "%s/new/%s", d->where, d->name);
  snprintf(newdir, sizeof newdir, "%s/new", d->where);
  fd = fault(d, STEP_OPEN) ? -1
       : open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    fail(d, "cannot create", tmp, errno);
    return;
  }
  if (fault(d, STEP_WRITE) || write_all(fd, d->data, d->len)) {
    fail(d, "cannot write", tmp, errno);
  } else {
    TEST_DELAY(d);
    if (fault(d, STEP_FSYNC) || fsync(fd)) fail(d, "cannot fsync", tmp, errno);
  }
  if (close(fd) && !d->err[0]) fail(d, "cannot close", tmp, errno);
  if (d->err[0]) {
    unlink(tmp);
    return;
  }
  if (fault(d, STEP_RENAME) || rename(tmp, dst)) {
    fail(d, "cannot move the message into", newdir, errno);
    unlink(tmp);
    return;
  }
  if (fault(d, STEP_DIRSYNC) || sync_dir(newdir)) {
    /* Not known to be on disk: take it back, the client will retry. */
    fail(d, "cannot fsync", newdir, errno);
    unlink(dst);
  }
}

/* One try at the dot-lock: 1 taken, 0 not possible here (a directory we
 * may not write: the file lock alone then), 2 held by someone else, -1
 * failed. A stale one (older than five minutes) is removed first. */
static int dotlock_try(delivery *d, const char *lock) {
  int fd, tries;
  if (d->no_dotlock) return 0;
  for (tries = 0; tries < 2; tries++) {
    struct stat st;
    fd = open(lock, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
      char pid[32];
      int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
      if (write_all(fd, pid, (size_t)n)) { /* the lock holds regardless */ }
      close(fd);
      return 1;
    }
    if (errno == EACCES || errno == EROFS || errno == EPERM) return 0;
    if (errno != EEXIST) {
      fail(d, "cannot create the lock", lock, errno);
      return -1;
    }
    if (stat(lock, &st) != 0 ||
        time(NULL) - st.st_mtime <= STALE_LOCK_SECONDS)
      return 2;
    unlink(lock);
  }
  return 2;
}

/* One try at the write lock on the open mailbox: 0 taken, 2 held by
 * another, -1 failed. Open file description locks conflict between two
 * descriptors of one process as well; plain fcntl locks do not (the
 * in-process queue covers that where OFD locks are missing). */
static int file_lock_try(delivery *d, int fd) {
  struct flock fl;
  int r;
  memset(&fl, 0, sizeof fl);
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (fault(d, STEP_LOCK)) {
    fail(d, "cannot lock", d->where, errno);
    return -1;
  }
#ifdef F_OFD_SETLK
  r = fcntl(fd, F_OFD_SETLK, &fl);
  if (r != 0 && errno == EINVAL) r = fcntl(fd, F_SETLK, &fl);
#else
  r = fcntl(fd, F_SETLK, &fl);
#endif
  if (r == 0) return 0;
  if (errno == EACCES || errno == EAGAIN || errno == EINTR) return 2;
  fail(d, "cannot lock", d->where, errno);
  return -1;
}

static void mbox_work(delivery *d) {
  char lock[4096];
  struct stat st;
  int fd, locked;
  memset(&st, 0, sizeof st);
  d->busy = 0;
  snprintf(lock, sizeof lock, "%s.lock", d->where);
  locked = dotlock_try(d, lock);
  if (locked < 0) return;
  if (locked == 2) {
    d->busy = 1;
    return;
  }
  fd = fault(d, STEP_OPEN) ? -1
       : open(d->where, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    fail(d, "cannot open", d->where, errno);
  } else {
    int r = file_lock_try(d, fd);
    if (r == 2) {
      d->busy = 2;
    } else if (r == 0) {
      if (fstat(fd, &st)) {
        fail(d, "cannot stat", d->where, errno);
      } else {
        /* A mailbox that does not end in a blank line (another writer's
         * damage) gets one, so our From_ line starts a message. */
        char tail[2] = {'\n', '\n'};
        size_t pad = 0;
        if (st.st_size >= 2 && pread(fd, tail, 2, st.st_size - 2) == 2)
          pad = tail[1] != '\n' ? 2 : tail[0] != '\n' ? 1 : 0;
        else if (st.st_size == 1)
          pad = 2;
        if (fault(d, STEP_WRITE) || write_all(fd, "\n\n", pad) ||
            write_all(fd, d->data, d->len)) {
          fail(d, "cannot append to", d->where, errno);
        } else {
          TEST_DELAY(d);
          if (fault(d, STEP_FSYNC) || fsync(fd))
            fail(d, "cannot fsync", d->where, errno);
        }
        if (d->err[0]) {
          /* Nothing of ours stays behind: back to the old size. */
          if (ftruncate(fd, st.st_size) == 0) fsync(fd);
        }
      }
    }
    /* Closing drops the lock. */
    if (close(fd) && !d->err[0] && !d->busy) {
      fail(d, "cannot close", d->where, errno);
      if (truncate(d->where, st.st_size) == 0) { /* best effort */ }
    }
  }
  if (locked == 1) unlink(lock);
}

static void deliver_work(uv_work_t *req) {
  delivery *d = req->data;
  if (d->mbox) mbox_work(d);
  else maildir_work(d);
}

/* ---- one delivery at a time per mbox path, in this process --------------- */

static delivery *mbox_queue;   /* every pending mbox delivery, in order */

/* The first delivery in the queue to d's path (the one that may run). */
static int mbox_first(const delivery *d) {
  const delivery *e;
  for (e = mbox_queue; e; e = e->next)
    if (strcmp(e->where, d->where) == 0) return e == d;
  return 0;
}

static void mbox_enqueue(delivery *d) {
  delivery **pp = &mbox_queue;
  while (*pp) pp = &(*pp)->next;
  d->next = NULL;
  *pp = d;
}

static void deliver_start(delivery *d);

/* d leaves the queue; the next one to its path (if any) starts. */
static void mbox_dequeue(delivery *d) {
  delivery **pp = &mbox_queue, *e;
  while (*pp && *pp != d) pp = &(*pp)->next;
  if (*pp == NULL) return;
  *pp = d->next;
  d->next = NULL;
  for (e = mbox_queue; e; e = e->next) {
    if (strcmp(e->where, d->where) == 0) {
      if (!e->working && !e->h.closing && !uv_is_active(
            (uv_handle_t *)&e->retry))
        deliver_start(e);
      break;
    }
  }
}

/* ---- the loop's side -------------------------------------------------------- */

static void deliver_free(smtpd_handle *h) {
  delivery *d = SMTPD_OWNER(delivery, h);
  free(d->where);
  free(d);
}

static void deliver_close(smtpd_handle *h) {
  delivery *d = SMTPD_OWNER(delivery, h);
  lua_State *L = h->map->L;
  if (d->mbox && !d->working) mbox_dequeue(d);
  luaL_unref(L, LUA_REGISTRYINDEX, d->cb_ref);
  d->cb_ref = LUA_NOREF;
  /* The data stays anchored while a pass still reads it. */
  if (!d->working) {
    luaL_unref(L, LUA_REGISTRYINDEX, d->data_ref);
    d->data_ref = LUA_NOREF;
  }
  smtpd_handle_uv_close(h, (uv_handle_t *)&d->retry);
}

/* The callback, protected (every push inside): ok, err, name. */
static int deliver_lua_report(lua_State *L) {
  delivery *d = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, d->cb_ref);
  if (d->err[0]) {
    lua_pushnil(L);
    lua_pushstring(L, d->err);
    lua_pushnil(L);
  } else {
    lua_pushboolean(L, 1);
    lua_pushnil(L);
    if (d->mbox) lua_pushnil(L);
    else lua_pushstring(L, d->name);
  }
  smtpd_lua_calls++;
  lua_call(L, 3, 0);
  return 0;
}

static void deliver_report(delivery *d) {
  lua_State *L = d->h.map->L;
  if (d->cb_ref == LUA_NOREF) return;
  lua_pushcfunction(L, deliver_lua_report);
  lua_pushlightuserdata(L, d);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    smtpd_log(d->h.map, "error in a delivery callback: %s",
              lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
    lua_pop(L, 1);
  }
}

static void deliver_on_retry(uv_timer_t *t) {
  delivery *d = SMTPD_OWNER(delivery, t->data);
  if (!d->h.closing) deliver_start(d);
}

static void deliver_done(uv_work_t *req, int status) {
  delivery *d = req->data;
  smtpd_map *m = d->h.map;
  d->working = 0;
  if (d->h.closing) {
    /* Closed while on the pool: no callback; what was kept goes now. */
    luaL_unref(m->L, LUA_REGISTRYINDEX, d->data_ref);
    d->data_ref = LUA_NOREF;
    if (d->mbox) mbox_dequeue(d);
    smtpd_handle_done(&d->h);          /* may free d */
    return;
  }
  smtpd_handle_done(&d->h);
  if (status && !d->err[0])
    snprintf(d->err, sizeof d->err, "delivery cancelled: %s",
             uv_strerror(status));
  if (d->busy && !d->err[0]) {
    /* Locked: try again from the loop, not by sleeping on the pool. */
    if (uv_now(&m->loop) < d->deadline) {
      uv_timer_start(&d->retry, deliver_on_retry, LOCK_RETRY_MS, 0);
      return;
    }
    if (d->busy == 1) {
      char lock[4096];
      snprintf(lock, sizeof lock, "%s.lock", d->where);
      fail(d, "timed out waiting for the lock", lock, EAGAIN);
    } else {
      fail(d, "timed out waiting for the fcntl lock on", d->where, EAGAIN);
    }
  }
  if (d->mbox) mbox_dequeue(d);
  deliver_report(d);
  smtpd_handle_close(&d->h);
}

static void deliver_start(delivery *d) {
  int err;
  d->req.data = d;
  d->working = 1;
  d->h.pending++;
  err = uv_queue_work(&d->h.map->loop, &d->req, deliver_work, deliver_done);
  if (err) {
    d->working = 0;
    d->h.pending--;
    snprintf(d->err, sizeof d->err, "cannot start the delivery: %s",
             uv_strerror(err));
    if (d->mbox) mbox_dequeue(d);
    deliver_report(d);
    smtpd_handle_close(&d->h);
  }
}

/* deliver(map, spec, callback) -> handle. Every value is checked before
 * anything is allocated. */
static int deliver(lua_State *L) {
  smtpd_map *m = smtpd_check_map(L, 1);
  const char *where;
  size_t len, wlen;
  int mbox, make, cb_ref, data_ref;
  double lock_timeout;
  delivery *d;
#ifdef SMTPD_TESTING
  int fail_at, delay_ms, no_dotlock;
#endif
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_getfield(L, 2, "maildir");
  lua_getfield(L, 2, "mbox");
  mbox = !lua_isnil(L, -1);
  if (mbox == !lua_isnil(L, -2))
    return luaL_error(L, "deliver: give maildir or mbox (one of them)");
  if (lua_type(L, -1 - !mbox) != LUA_TSTRING)
    return luaL_error(L, "deliver: %s must be a string",
                      mbox ? "mbox" : "maildir");
  where = lua_tolstring(L, -1 - !mbox, &wlen);
  if (wlen == 0 || wlen > PATH_MAX_OURS || strlen(where) != wlen)
    return luaL_error(L, "deliver: the path is empty, too long or has a "
                      "NUL");
  lua_getfield(L, 2, "data");
  if (lua_type(L, -1) != LUA_TSTRING)
    return luaL_error(L, "deliver: data must be a string");
  lua_tolstring(L, -1, &len);
  lua_getfield(L, 2, "lock_timeout");
  lock_timeout = luaL_optnumber(L, -1, 10);
  if (!(lock_timeout >= 0 && lock_timeout < 1e6))
    return luaL_error(L, "deliver: lock_timeout must be a number of "
                      "seconds");
  lua_getfield(L, 2, "make");
  make = lua_toboolean(L, -1);
  lua_pop(L, 2);
#ifdef SMTPD_TESTING
  lua_getfield(L, 2, "fail_at");
  fail_at = luaL_checkoption(L, -1, "", step_names);
  lua_getfield(L, 2, "delay_ms");
  delay_ms = (int)luaL_optinteger(L, -1, 0);
  lua_getfield(L, 2, "no_dotlock");
  no_dotlock = lua_toboolean(L, -1);
  lua_pop(L, 3);
#endif
  /* Everything is valid: the references, then the memory. */
  data_ref = luaL_ref(L, LUA_REGISTRYINDEX);       /* pops data */
  lua_pushvalue(L, 3);
  cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  d = calloc(1, sizeof *d);
  if (d == NULL || (d->where = malloc(wlen + 1)) == NULL) {
    free(d);
    luaL_unref(L, LUA_REGISTRYINDEX, data_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, cb_ref);
    return luaL_error(L, "out of memory");
  }
  memcpy(d->where, where, wlen + 1);
  smtpd_handle_init(&d->h, m, SMTPD_H_DELIVERY, deliver_close, deliver_free);
  uv_timer_init(&m->loop, &d->retry);
  smtpd_handle_attach(&d->h, (uv_handle_t *)&d->retry);
  d->mbox = mbox;
  d->make = make;
  d->data_ref = data_ref;
  d->cb_ref = cb_ref;
  lua_rawgeti(L, LUA_REGISTRYINDEX, data_ref);
  d->data = lua_tolstring(L, -1, &d->len);
  lua_pop(L, 1);
  uv_update_time(&m->loop);
  d->deadline = uv_now(&m->loop) + (uint64_t)(lock_timeout * 1000);
#ifdef SMTPD_TESTING
  d->fail_at = fail_at;
  d->delay_ms = delay_ms;
  d->no_dotlock = no_dotlock;
#endif
  if (!mbox) maildir_name(d);
  smtpd_handle_push_box(L, &d->h, DELIVERY_MT, 0);
  if (mbox) {
    mbox_enqueue(d);
    if (mbox_first(d)) deliver_start(d);
  } else {
    deliver_start(d);
  }
  return 1;
}

/* handle:cancel(): gives up (a pass on the pool finishes, unreported). */
static int deliver_cancel(lua_State *L) {
  smtpd_handle *h = smtpd_handle_get(L, 1, DELIVERY_MT);
  if (h) smtpd_handle_close(h);
  return 0;
}

/* maildir_list(dir) -> {"new/NAME", "cur/NAME", ...} (the messages of a
 * Maildir, in no order; dot files left out) | nil, why. Read at start,
 * before the loop serves anything. */
static int maildir_list(lua_State *L) {
  size_t n;
  const char *dir = luaL_checklstring(L, 1, &n);
  static const char *const subs[] = {"new", "cur"};
  char path[PATH_MAX_OURS + 8];
  int i, k = 0;
  if (n == 0 || n > PATH_MAX_OURS || memchr(dir, '\0', n))
    return luaL_error(L, "maildir_list: bad directory name");
  lua_newtable(L);
  for (i = 0; i < 2; i++) {
    DIR *d;
    struct dirent *e;
    snprintf(path, sizeof path, "%s/%s", dir, subs[i]);
    d = opendir(path);
    if (d == NULL) {
      if (errno == ENOENT) continue;
      lua_pushnil(L);
      lua_pushfstring(L, "%s: %s", path, strerror(errno));
      return 2;
    }
    while ((e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.') continue;
      lua_pushfstring(L, "%s/%s", subs[i], e->d_name);
      lua_rawseti(L, -2, ++k);
    }
    closedir(d);
  }
  return 1;
}

/* maildir_make(dir) -> true | nil, why, ENAME: dir (with its parents)
 * and its tmp, new and cur (mode 0700), where missing. */
static int maildir_make(lua_State *L) {
  size_t n;
  const char *dir = luaL_checklstring(L, 1, &n);
  char err[ERR_MAX];
  if (n == 0 || n > PATH_MAX_OURS || strlen(dir) != n)
    return luaL_error(L, "maildir_make: bad directory name");
  if (maildir_mkdirs(dir, err, sizeof err)) {
    int e = errno ? errno : ENOTDIR;
    lua_pushnil(L);
    lua_pushstring(L, err);
    lua_pushstring(L, uv_err_name(uv_translate_sys_error(e)));
    return 3;
  }
  lua_pushboolean(L, 1);
  return 1;
}

void smtpd_open_deliver(lua_State *L) {
  static const luaL_Reg methods[] = {{"cancel", deliver_cancel},
                                     {NULL, NULL}};
  smtpd_new_class(L, DELIVERY_MT, NULL, methods);
  lua_pushcfunction(L, deliver);
  lua_setfield(L, -2, "deliver");
  lua_pushcfunction(L, maildir_make);
  lua_setfield(L, -2, "maildir_make");
  lua_pushcfunction(L, maildir_list);
  lua_setfield(L, -2, "maildir_list");
}

/*
 * Durable delivery to Maildir and mbox, on libuv's thread pool so that a
 * message being written and synced never stalls the loop:
 *
 *   core.deliver(map, {maildir = dir, data = s}, function(ok, err, name))
 *   core.deliver(map, {mbox = path, data = s, lock_timeout = 10}, cb)
 *   core.maildir_make(dir)            -- dir, dir/tmp, dir/new, dir/cur
 *
 * Maildir: data goes to tmp/<unique>, fsync, close, rename into new/,
 * fsync new/; the callback gets the name. Any failure removes what was
 * written, so new/ never holds a partial or unsynced message.
 *
 * mbox: the caller passes the whole entry (the From_ line, mboxrd-quoted
 * body, blank line). It is appended under a dot-lock (path.lock, created
 * O_EXCL; one older than five minutes is stale) and an fcntl write lock,
 * as mutt and Postfix's local(8) take them, then fsynced; a failed append
 * is truncated back to the size the mailbox had.
 *
 * The data string stays anchored in the registry while the thread reads
 * it. A map that is collected with deliveries running lets them finish
 * and drops their callbacks.
 */
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

#define ERR_MAX 8192
#define PATH_MAX_OURS 3800     /* room for /tmp/<name> and .lock */
#define STALE_LOCK_SECONDS 300

typedef struct delivery {
  uv_work_t req;
  smtpd_map *map;
  int cb_ref, data_ref;
  int mbox;                  /* else maildir */
  char *where;               /* the maildir or the mbox path */
  const char *data;
  size_t len;
  double lock_timeout;
  char name[256];            /* maildir: the file's name in new/ */
  int fail_at;               /* tests: make this step fail (EIO) */
  int delay_ms;              /* tests: sleep before syncing */
  char err[ERR_MAX];
} delivery;

/* The steps, for messages and for the tests' fault injection. */
enum { STEP_NONE, STEP_OPEN, STEP_WRITE, STEP_FSYNC, STEP_RENAME,
       STEP_DIRSYNC, STEP_LOCK };
#ifdef SMTPD_TESTING
static const char *const step_names[] = {
  "", "open", "write", "fsync", "rename", "dirsync", "lock", NULL
};
#endif

#ifdef SMTPD_TESTING
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

/* The dot-lock: 1 taken, 0 not possible here (a directory we may not
 * write: the fcntl lock alone then), -1 timed out or failed. */
static int dotlock(delivery *d, const char *lock, double deadline) {
  for (;;) {
    struct stat st;
    struct timespec now;
    int fd = open(lock, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
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
    if (stat(lock, &st) == 0 && time(NULL) - st.st_mtime > STALE_LOCK_SECONDS)
      unlink(lock);
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec + now.tv_nsec / 1e9 > deadline) {
      fail(d, "timed out waiting for the lock", lock, EAGAIN);
      return -1;
    }
    usleep(50000);
  }
}

static int fcntl_lock(delivery *d, int fd, double deadline) {
  struct flock fl;
  struct timespec now;
  for (;;) {
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fault(d, STEP_LOCK)) {
      fail(d, "cannot lock", d->where, errno);
      return -1;
    }
    if (fcntl(fd, F_SETLK, &fl) == 0) return 0;
    if (errno != EACCES && errno != EAGAIN && errno != EINTR) {
      fail(d, "cannot lock", d->where, errno);
      return -1;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec + now.tv_nsec / 1e9 > deadline) {
      fail(d, "timed out waiting for the fcntl lock on", d->where, EAGAIN);
      return -1;
    }
    usleep(50000);
  }
}

static void mbox_work(delivery *d) {
  char lock[4096];
  struct stat st;
  struct timespec now;
  double deadline;
  int fd, locked;
  memset(&st, 0, sizeof st);
  snprintf(lock, sizeof lock, "%s.lock", d->where);
  clock_gettime(CLOCK_MONOTONIC, &now);
  deadline = now.tv_sec + now.tv_nsec / 1e9 + d->lock_timeout;
  locked = dotlock(d, lock, deadline);
  if (locked < 0) return;
  fd = fault(d, STEP_OPEN) ? -1
       : open(d->where, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    fail(d, "cannot open", d->where, errno);
  } else if (fcntl_lock(d, fd, deadline) == 0) {
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
    /* Closing drops the fcntl lock. */
  }
  if (fd >= 0 && close(fd) && !d->err[0]) {
    fail(d, "cannot close", d->where, errno);
    if (truncate(d->where, st.st_size) == 0) { /* best effort */ }
  }
  if (locked == 1) unlink(lock);
}

static void deliver_work(uv_work_t *req) {
  delivery *d = req->data;
  if (d->mbox) mbox_work(d);
  else maildir_work(d);
}

static void deliver_free(lua_State *L, delivery *d) {
  luaL_unref(L, LUA_REGISTRYINDEX, d->cb_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, d->data_ref);
  free(d->where);
  free(d);
}

static void deliver_done(uv_work_t *req, int status) {
  delivery *d = req->data;
  smtpd_map *m = d->map;
  lua_State *L = m->L;
  m->handles--;
  if (m->dying) {
    deliver_free(L, d);
    return;
  }
  if (status && !d->err[0])
    snprintf(d->err, sizeof d->err, "delivery cancelled: %s",
             uv_strerror(status));
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
  deliver_free(L, d);
  smtpd_lua_calls++;
  if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
    smtpd_log(m, "error in a delivery callback: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

static int deliver(lua_State *L) {
  smtpd_map *m = smtpd_check_map(L, 1);
  const char *where, *data;
  size_t len;
  int mbox, err;
  delivery *d;
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_getfield(L, 2, "maildir");
  lua_getfield(L, 2, "mbox");
  mbox = !lua_isnil(L, -1);
  if (mbox == !lua_isnil(L, -2))
    return luaL_error(L, "deliver: give maildir or mbox (one of them)");
  where = luaL_checkstring(L, -1 - !mbox);
  if (strlen(where) > PATH_MAX_OURS)
    return luaL_error(L, "deliver: the path is too long");
  lua_getfield(L, 2, "data");
  data = lua_tolstring(L, -1, &len);
  if (data == NULL) return luaL_error(L, "deliver: data must be a string");
  d = calloc(1, sizeof *d);
  if (d == NULL || (d->where = strdup(where)) == NULL) {
    free(d);
    return luaL_error(L, "out of memory");
  }
  d->map = m;
  d->mbox = mbox;
  d->data = data;
  d->len = len;
  d->data_ref = luaL_ref(L, LUA_REGISTRYINDEX);       /* pops data */
  lua_getfield(L, 2, "lock_timeout");
  d->lock_timeout = luaL_optnumber(L, -1, 10);
#ifdef SMTPD_TESTING
  lua_getfield(L, 2, "fail_at");
  d->fail_at = luaL_checkoption(L, -1, "", step_names);
  lua_getfield(L, 2, "delay_ms");
  d->delay_ms = (int)luaL_optinteger(L, -1, 0);
#endif
  if (!mbox) maildir_name(d);
  lua_pushvalue(L, 3);
  d->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  d->req.data = d;
  err = uv_queue_work(&m->loop, &d->req, deliver_work, deliver_done);
  if (err) {
    deliver_free(L, d);
    return smtpd_fail(L, err);
  }
  m->handles++;
  lua_pushboolean(L, 1);
  return 1;
}

/* maildir_make(dir) -> true | nil, err: dir (with its parents) and its
 * tmp, new and cur (mode 0700), where missing. */
static int maildir_make(lua_State *L) {
  size_t n;
  const char *dir = luaL_checklstring(L, 1, &n);
  static const char *const subs[] = {"", "/tmp", "/new", "/cur"};
  char path[4096];
  size_t i;
  if (n == 0 || n > PATH_MAX_OURS)
    return luaL_error(L, "maildir_make: bad directory name");
  memcpy(path, dir, n + 1);
  for (i = 1; i < n; i++) {
    if (path[i] != '/') continue;
    path[i] = '\0';
    if (mkdir(path, 0700) && errno != EEXIST) {
      lua_pushnil(L);
      lua_pushfstring(L, "cannot create %s: %s", path, strerror(errno));
      return 2;
    }
    path[i] = '/';
  }
  for (i = 0; i < sizeof subs / sizeof *subs; i++) {
    struct stat st;
    snprintf(path, sizeof path, "%s%s", dir, subs[i]);
    if (mkdir(path, 0700) && errno != EEXIST) {
      lua_pushnil(L);
      lua_pushfstring(L, "cannot create %s: %s", path, strerror(errno));
      return 2;
    }
    if (stat(path, &st) || !S_ISDIR(st.st_mode)) {
      lua_pushnil(L);
      lua_pushfstring(L, "%s is not a directory", path);
      return 2;
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

void smtpd_open_deliver(lua_State *L) {
  lua_pushcfunction(L, deliver);
  lua_setfield(L, -2, "deliver");
  lua_pushcfunction(L, maildir_make);
  lua_setfield(L, -2, "maildir_make");
}

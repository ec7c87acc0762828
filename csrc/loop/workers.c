/*
 * Pre-forked workers (lua-smtpd --workers N).
 *
 * core.workers(n) forks n processes. Each returns into Lua at once, as
 * worker 1..n, and goes on to open its own listening socket on the shared
 * port (SO_REUSEPORT: the kernel spreads connections over them). The
 * parent never returns until its workers are gone: it passes the signals it
 * gets on to every worker (SIGTERM and SIGINT also mean it is stopping;
 * SIGHUP reloads certificates), replaces a worker that dies abnormally,
 * and then returns false and an exit status.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/prctl.h>
#elif defined(__FreeBSD__)
#include <sys/procctl.h>
#endif

#include "core/glue.h"

#define MAX_WORKERS 1024
/* A worker that fails sooner than this after it started failed to start
 * (bind, a bad class): starting it again would fail again. */
#define STARTUP_SECONDS 1.0

static const int passed_on[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2};
#define NPASSED (sizeof passed_on / sizeof passed_on[0])

typedef struct worker {
  pid_t pid;          /* 0: gone */
  double started;
} worker;

static double mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The next of the blocked signals in set (SIGCHLD when a worker ends),
 * or 0 after a second of none. Where there is no sigtimedwait (macOS),
 * sigwait waits without the tick: SIGCHLD is in the set, so a worker's
 * end wakes it all the same. */
static int wait_signal(const sigset_t *set) {
#if defined(__APPLE__)
  int sig = 0;
  if (sigwait(set, &sig) != 0) return 0;
  return sig;
#else
  struct timespec tick = {1, 0};
  siginfo_t si;
  int sig = sigtimedwait(set, &si, &tick);
  return sig > 0 ? sig : 0;
#endif
}

/* Forks one worker. In the child: returns 0 with the loops made usable and
 * the signal mask the parent had before; in the parent: the pid, or -1. */
static pid_t fork_worker(const sigset_t *old) {
  pid_t pid;
  fflush(NULL);   /* no buffered output printed twice */
  pid = fork();
  if (pid != 0) return pid;
  /* A parent killed outright (SIGKILL) takes its workers along (where
   * the kernel can say so: elsewhere a worker outlives it). */
#if defined(__linux__)
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() == 1) _exit(1);
#elif defined(__FreeBSD__) && defined(PROC_PDEATHSIG_CTL)
  {
    int sig = SIGTERM;
    procctl(P_PID, 0, PROC_PDEATHSIG_CTL, &sig);
    if (getppid() == 1) _exit(1);
  }
#endif
  if (smtpd_maps_after_fork() != 0) {
    fputs("lua-smtpd: worker: cannot reinitialise the event loop\n", stderr);
    _exit(1);
  }
  sigprocmask(SIG_SETMASK, old, NULL);
  return 0;
}

/* Starts worker i: 1 in the new worker, 0 in the parent, -1 when fork
 * failed (said on stderr). */
int smtpd_worker_index = 0;

static int start_worker(worker *w, int i, const sigset_t *old) {
  pid_t pid = fork_worker(old);
  if (pid == 0) {
    smtpd_worker_index = i + 1;
    return 1;
  }
  if (pid < 0) {
    fprintf(stderr, "lua-smtpd: fork: %s\n", strerror(errno));
    return -1;
  }
  w[i].pid = pid;
  w[i].started = mono_now();
  return 0;
}

static void signal_all(const worker *w, int n, int sig) {
  int i;
  for (i = 0; i < n; i++)
    if (w[i].pid > 0) kill(w[i].pid, sig);
}

static void describe(int status, char *buf, size_t size) {
  if (WIFEXITED(status))
    snprintf(buf, size, "exit status %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    snprintf(buf, size, "signal %d (%s)", WTERMSIG(status),
             strsignal(WTERMSIG(status)));
  else
    snprintf(buf, size, "status %d", status);
}

/* workers(n) -> index (in a worker) | false, exit_status (in the parent) */
static int workers_run(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  sigset_t set, old;
  worker *w;
  int i, live = 0, stopping = 0, status_out = 0;
  size_t k;
  luaL_argcheck(L, n >= 1 && n <= MAX_WORKERS, 1, "1 to 1024 workers");
  w = lua_newuserdatauv(L, sizeof *w * (size_t)n, 0);
  memset(w, 0, sizeof *w * (size_t)n);
  /* Blocked from before the first fork: the parent takes these with
   * sigtimedwait, so none of them can kill it or run a Lua handler. */
  sigemptyset(&set);
  for (k = 0; k < NPASSED; k++) sigaddset(&set, passed_on[k]);
  sigaddset(&set, SIGCHLD);
  sigprocmask(SIG_BLOCK, &set, &old);
  for (i = 0; i < n; i++) {
    int r = start_worker(w, i, &old);
    if (r == 1) goto worker;
    if (r < 0) {
      stopping = 1;
      status_out = 1;
      signal_all(w, (int)n, SIGTERM);
      break;
    }
    live++;
  }
  while (live > 0) {
    int sig = wait_signal(&set), status;
    pid_t pid;
    if (sig > 0 && sig != SIGCHLD) {
      if (sig == SIGTERM || sig == SIGINT) stopping = 1;
      signal_all(w, (int)n, sig);
    }
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      char how[96];
      int failed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
      for (i = 0; i < n && w[i].pid != pid; i++) {}
      if (i == n) continue;   /* not one of ours */
      w[i].pid = 0;
      live--;
      if (!failed || stopping) {
        if (failed && !(WIFSIGNALED(status) &&
                        (WTERMSIG(status) == SIGTERM ||
                         WTERMSIG(status) == SIGINT ||
                         WTERMSIG(status) == SIGHUP)))
          status_out = 1;
        continue;
      }
      describe(status, how, sizeof how);
      if (mono_now() - w[i].started < STARTUP_SECONDS) {
        fprintf(stderr, "lua-smtpd: worker %d failed to start (%s); "
                "stopping\n", i + 1, how);
        stopping = 1;
        status_out = 1;
        signal_all(w, (int)n, SIGTERM);
        continue;
      }
      fprintf(stderr, "lua-smtpd: worker %d (pid %d) ended with %s; "
              "starting another\n", i + 1, (int)pid, how);
      switch (start_worker(w, i, &old)) {
        case 1: goto worker;
        case 0: live++; break;
        default: status_out = 1; break;
      }
    }
  }
  sigprocmask(SIG_SETMASK, &old, NULL);
  lua_pushboolean(L, 0);
  lua_pushinteger(L, status_out);
  return 2;
worker:
  lua_pushinteger(L, i + 1);
  return 1;
}

static int workers_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

void smtpd_open_workers(lua_State *L) {
  lua_pushcfunction(L, workers_run);
  lua_setfield(L, -2, "workers");
  lua_pushcfunction(L, workers_getpid);
  lua_setfield(L, -2, "getpid");
}

/*
 * lua-smtpd: hooks for the specs that a release build leaves out. With
 * -DSMTPD_TESTING (make test, make asan, make valgrind) a spec can make
 * the n-th event at a fault site fail, as if memory had run out; without
 * it SMTPD_FAULT(site) is the constant 0 and costs nothing. Pure: no Lua,
 * no libuv.
 */
#ifndef SMTPD_TESTING_H
#define SMTPD_TESTING_H

/* Where a spec can inject a failure (core.fault(name, n)). */
enum {
  SMTPD_FAULT_ALLOC = 0,   /* a string or string list allocation */
  SMTPD_FAULT_ACCEPT,      /* the channel of an accepted connection */
  SMTPD_NFAULTS
};

#ifdef SMTPD_TESTING
/* When n > 0, the n-th event at site from now fails. */
void smtpd_fault_set(int site, unsigned long n);
/* Whether this event at site is the one to fail. */
int smtpd_fault(int site);
#define SMTPD_FAULT(site) smtpd_fault(site)
#else
#define SMTPD_FAULT(site) 0
#endif

#endif

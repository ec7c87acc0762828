/* Fault injection for the specs (see testing.h). Pure. */
#include "testing/testing.h"

#ifdef SMTPD_TESTING

static unsigned long countdown[SMTPD_NFAULTS];

void smtpd_fault_set(int site, unsigned long n) {
  if (site >= 0 && site < SMTPD_NFAULTS) countdown[site] = n;
}

int smtpd_fault(int site) {
  return countdown[site] > 0 && --countdown[site] == 0;
}

#else
/* ISO C wants a translation unit to declare something. */
typedef int smtpd_fault_unused;
#endif

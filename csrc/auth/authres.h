/*
 * Authentication-Results (RFC 8601), the pure layer: writing a result's
 * property values so that nothing a client sent can end the field, start
 * another, or be read as more results; and reading an existing field's
 * authserv-id exactly (never by substring: CVE-2020-12272).
 */
#ifndef SMTPD_AUTH_AUTHRES_H
#define SMTPD_AUTH_AUTHRES_H

#include <stddef.h>

#include "base/base.h"

/* Appends value as RFC 8601 writes a pvalue: as it is when it is a token
 * (or an addr-spec of token characters and one @), else as a quoted
 * string; control characters and 8-bit bytes are dropped, at most max
 * bytes of value are kept. 0, or -1 (no memory). */
int authres_value(smtpd_buf *out, const char *v, size_t n, size_t max);

/* The authserv-id of an Authentication-Results field's value (after its
 * colon): *start and *len inside value, 0; -1 when there is none. */
int authres_id(const char *value, size_t n, size_t *start, size_t *len);

#endif

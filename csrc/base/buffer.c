/* Growable byte buffers and lists of byte strings. */
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "testing/testing.h"

int smtpd_buf_reserve(smtpd_buf *b, size_t extra) {
  size_t need, cap;
  char *p;
  if (extra > (size_t)-1 - b->len - 1) return -1;
  need = b->len + extra + 1;
  if (need <= b->cap) return 0;
  cap = b->cap ? b->cap : 64;
  while (cap < need) cap = cap > ((size_t)-1) / 2 ? need : cap * 2;
  p = realloc(b->p, cap);
  if (p == NULL) return -1;
  b->p = p;
  b->cap = cap;
  return 0;
}

int smtpd_buf_append(smtpd_buf *b, const void *p, size_t n) {
  if (n == 0) return 0;
  if (smtpd_buf_reserve(b, n)) return -1;
  memcpy(b->p + b->len, p, n);
  b->len += n;
  b->p[b->len] = '\0';
  return 0;
}

int smtpd_buf_appendc(smtpd_buf *b, char c) {
  if (b->len + 1 >= b->cap && smtpd_buf_reserve(b, 1)) return -1;
  b->p[b->len++] = c;
  b->p[b->len] = '\0';
  return 0;
}

/* Drops the first n bytes. */
void smtpd_buf_consume(smtpd_buf *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
  } else {
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
  }
  if (b->p) b->p[b->len] = '\0';
}

/* Gives back a capacity well beyond the length (a buffer kept for long). */
void smtpd_buf_fit(smtpd_buf *b) {
  char *p;
  if (b->p == NULL || b->cap - b->len < b->len / 2 + 4096) return;
  p = realloc(b->p, b->len + 1);
  if (p == NULL) return;                  /* still the larger one: fine */
  b->p = p;
  b->cap = b->len + 1;
}

void smtpd_buf_free(smtpd_buf *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

int smtpd_str_set(smtpd_str *s, const char *p, size_t n) {
  char *c = SMTPD_FAULT(SMTPD_FAULT_ALLOC) ? NULL : malloc(n + 1);
  if (c == NULL) return -1;
  if (n) memcpy(c, p, n);
  c[n] = '\0';
  free(s->p);
  s->p = c;
  s->len = n;
  return 0;
}

void smtpd_str_free(smtpd_str *s) {
  free(s->p);
  s->p = NULL;
  s->len = 0;
}

int smtpd_strlist_push(smtpd_strlist *l, const char *p, size_t n) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 4;
    smtpd_str *v = SMTPD_FAULT(SMTPD_FAULT_ALLOC) ? NULL : realloc(l->v, cap * sizeof *v);
    if (v == NULL) return -1;
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n].p = NULL;
  l->v[l->n].len = 0;
  if (smtpd_str_set(&l->v[l->n], p, n)) return -1;
  l->n++;
  return 0;
}

int smtpd_strlist_set(smtpd_strlist *l, size_t i, const char *p, size_t n) {
  if (i == l->n) return smtpd_strlist_push(l, p, n);
  return smtpd_str_set(&l->v[i], p, n);
}

void smtpd_strlist_remove(smtpd_strlist *l, size_t i) {
  if (i >= l->n) return;
  smtpd_str_free(&l->v[i]);
  memmove(l->v + i, l->v + i + 1, (l->n - i - 1) * sizeof *l->v);
  l->n--;
}

void smtpd_strlist_clear(smtpd_strlist *l) {
  size_t i;
  for (i = 0; i < l->n; i++) smtpd_str_free(&l->v[i]);
  free(l->v);
  l->v = NULL;
  l->n = l->cap = 0;
}

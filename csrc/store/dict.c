/*
 * The shared dictionary (store/dict.h). Memory: a header (the mutex, the
 * counts, the free list and the LRU list), a bucket array, then the
 * entries; every link is an index (1-based, 0 for none), never a pointer,
 * so the block means the same in every process that maps it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "store/dict.h"

#define DICT_MAGIC 0x534d4431u   /* "SMD1" */

typedef struct dict_entry {
  uint32_t hnext;            /* next in its bucket */
  uint32_t prev, next;       /* the LRU list (head: most recent) */
  uint32_t hash;
  int64_t expires_ms;        /* 0: never */
  int64_t ival;
  uint16_t klen, vlen;
  uint8_t type;              /* SMTPD_DICT_NONE: free */
  char data[SMTPD_DICT_ITEM];    /* the key, then a string value */
} dict_entry;

struct smtpd_dict {
  uint32_t magic;
  pthread_mutex_t mu;
  size_t bytes;
  uint32_t nentries, nbuckets, used;
  uint32_t free_head;        /* free entries, linked by hnext */
  uint32_t lru_head, lru_tail;
  /* then: uint32_t buckets[nbuckets]; dict_entry entries[nentries] */
};

static uint32_t *dict_buckets(smtpd_dict *d) {
  return (uint32_t *)(void *)(d + 1);
}

static dict_entry *dict_entry_at(smtpd_dict *d, uint32_t i) {
  char *base = (char *)(dict_buckets(d) + d->nbuckets);
  size_t pad = (size_t)(base - (char *)d) % 8;
  if (pad) base += 8 - pad;
  return (dict_entry *)(void *)base + (i - 1);
}

static uint32_t dict_hash(const char *k, size_t n) {
  uint32_t h = 2166136261u;           /* FNV-1a */
  size_t i;
  for (i = 0; i < n; i++) {
    h ^= (unsigned char)k[i];
    h *= 16777619u;
  }
  return h;
}

static void dict_lock(smtpd_dict *d) {
  int r = pthread_mutex_lock(&d->mu);
  /* A worker that died holding it: the dictionary is still usable (an
   * update it was making may be half done; entries stay linked). */
  if (r == EOWNERDEAD) pthread_mutex_consistent(&d->mu);
}

static void dict_unlock(smtpd_dict *d) {
  pthread_mutex_unlock(&d->mu);
}

smtpd_dict *smtpd_dict_new(size_t bytes, char *err, size_t errlen) {
  pthread_mutexattr_t a;
  smtpd_dict *d;
  size_t n, nb, head, i;
  if (bytes < 64 * 1024) bytes = 64 * 1024;
  if (bytes > ((size_t)1 << 34)) {
    snprintf(err, errlen, "shared dictionary: at most 16 GiB");
    return NULL;
  }
  n = (bytes - sizeof *d) / (sizeof(dict_entry) + 2 * sizeof(uint32_t));
  if (n > 0x7fffffffu) n = 0x7fffffffu;
  nb = n;
  head = sizeof *d + nb * sizeof(uint32_t) + 8;
  if (head + n * sizeof(dict_entry) > bytes)
    n = (bytes - head) / sizeof(dict_entry);
  d = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
           -1, 0);
  if (d == MAP_FAILED) {
    snprintf(err, errlen, "shared dictionary: mmap: %s", strerror(errno));
    return NULL;
  }
  d->bytes = bytes;
  d->nentries = (uint32_t)n;
  d->nbuckets = (uint32_t)nb;
  pthread_mutexattr_init(&a);
  if (pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED) ||
      pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST) ||
      pthread_mutex_init(&d->mu, &a)) {
    pthread_mutexattr_destroy(&a);
    munmap(d, bytes);
    snprintf(err, errlen, "shared dictionary: no process-shared mutex");
    return NULL;
  }
  pthread_mutexattr_destroy(&a);
  /* mmap gave zeroes: buckets empty; chain the free entries. */
  for (i = 1; i <= n; i++)
    dict_entry_at(d, (uint32_t)i)->hnext = i < n ? (uint32_t)i + 1 : 0;
  d->free_head = n ? 1 : 0;
  d->magic = DICT_MAGIC;
  return d;
}

void smtpd_dict_free(smtpd_dict *d) {
  if (d) munmap(d, d->bytes);
}

static void lru_unlink(smtpd_dict *d, uint32_t i) {
  dict_entry *e = dict_entry_at(d, i);
  if (e->prev) dict_entry_at(d, e->prev)->next = e->next;
  else d->lru_head = e->next;
  if (e->next) dict_entry_at(d, e->next)->prev = e->prev;
  else d->lru_tail = e->prev;
  e->prev = e->next = 0;
}

static void lru_front(smtpd_dict *d, uint32_t i) {
  dict_entry *e = dict_entry_at(d, i);
  e->prev = 0;
  e->next = d->lru_head;
  if (d->lru_head) dict_entry_at(d, d->lru_head)->prev = i;
  d->lru_head = i;
  if (!d->lru_tail) d->lru_tail = i;
}

/* Unlinks entry i from its bucket and the LRU list, back to the free
 * list. */
static void dict_remove(smtpd_dict *d, uint32_t i) {
  dict_entry *e = dict_entry_at(d, i);
  uint32_t *p = &dict_buckets(d)[e->hash % d->nbuckets];
  while (*p && *p != i) p = &dict_entry_at(d, *p)->hnext;
  if (*p) *p = e->hnext;
  lru_unlink(d, i);
  e->type = SMTPD_DICT_NONE;
  e->hnext = d->free_head;
  d->free_head = i;
  d->used--;
}

/* The live entry for k (an expired one is removed), or 0. */
static uint32_t dict_find(smtpd_dict *d, const char *k, size_t kn,
                          uint32_t h, int64_t now) {
  uint32_t i = dict_buckets(d)[h % d->nbuckets];
  while (i) {
    dict_entry *e = dict_entry_at(d, i);
    if (e->hash == h && e->klen == kn && memcmp(e->data, k, kn) == 0) {
      if (e->expires_ms && e->expires_ms <= now) {
        dict_remove(d, i);
        return 0;
      }
      return i;
    }
    i = e->hnext;
  }
  return 0;
}

/* A free entry for k, linked in: the least recently used one goes when
 * none is free. */
static uint32_t dict_alloc(smtpd_dict *d, const char *k, size_t kn,
                           uint32_t h) {
  uint32_t i, *b;
  dict_entry *e;
  if (!d->free_head) {
    if (!d->lru_tail) return 0;
    dict_remove(d, d->lru_tail);
  }
  i = d->free_head;
  e = dict_entry_at(d, i);
  d->free_head = e->hnext;
  b = &dict_buckets(d)[h % d->nbuckets];
  e->hnext = *b;
  *b = i;
  e->hash = h;
  e->klen = (uint16_t)kn;
  memcpy(e->data, k, kn);
  lru_front(d, i);
  d->used++;
  return i;
}

int smtpd_dict_get(smtpd_dict *d, const char *k, size_t kn, int64_t now_ms,
                   smtpd_dict_value *out) {
  uint32_t h = dict_hash(k, kn), i;
  out->type = SMTPD_DICT_NONE;
  if (kn > SMTPD_DICT_ITEM) return SMTPD_DICT_NONE;
  dict_lock(d);
  i = dict_find(d, k, kn, h, now_ms);
  if (i) {
    dict_entry *e = dict_entry_at(d, i);
    out->type = e->type;
    out->ival = e->ival;
    out->slen = e->vlen;
    memcpy(out->sval, e->data + e->klen, e->vlen);
    out->expires_ms = e->expires_ms;
    lru_unlink(d, i);
    lru_front(d, i);
  }
  dict_unlock(d);
  return out->type;
}

int smtpd_dict_set(smtpd_dict *d, const char *k, size_t kn, int type,
                   const char *s, size_t sn, int64_t ival, int64_t ttl_ms,
                   int64_t now_ms, int only_add) {
  uint32_t h = dict_hash(k, kn), i;
  dict_entry *e;
  if (type != SMTPD_DICT_STR) sn = 0;
  if (kn == 0 || kn + sn > SMTPD_DICT_ITEM) return SMTPD_DICT_TOO_LARGE;
  dict_lock(d);
  i = dict_find(d, k, kn, h, now_ms);
  if (i && only_add) {
    dict_unlock(d);
    return SMTPD_DICT_EXISTS;
  }
  if (i) {
    lru_unlink(d, i);
    lru_front(d, i);
  } else if ((i = dict_alloc(d, k, kn, h)) == 0) {
    dict_unlock(d);
    return SMTPD_DICT_TOO_LARGE;
  }
  e = dict_entry_at(d, i);
  e->type = (uint8_t)type;
  e->ival = ival;
  e->vlen = (uint16_t)sn;
  if (sn) memcpy(e->data + kn, s, sn);
  e->expires_ms = ttl_ms > 0 ? now_ms + ttl_ms : 0;
  dict_unlock(d);
  return SMTPD_DICT_OK;
}

int smtpd_dict_incr(smtpd_dict *d, const char *k, size_t kn, int64_t by,
                    int64_t ttl_ms, int64_t now_ms, int64_t *out) {
  uint32_t h = dict_hash(k, kn), i;
  dict_entry *e;
  int r = SMTPD_DICT_OK;
  if (kn == 0 || kn > SMTPD_DICT_ITEM) return SMTPD_DICT_TOO_LARGE;
  dict_lock(d);
  i = dict_find(d, k, kn, h, now_ms);
  if (i) {
    e = dict_entry_at(d, i);
    if (e->type != SMTPD_DICT_INT) {
      r = SMTPD_DICT_NOT_INT;
    } else if ((by > 0 && e->ival > INT64_MAX - by) ||
               (by < 0 && e->ival < INT64_MIN - by)) {
      r = SMTPD_DICT_OVERFLOW;
    } else {
      e->ival += by;
      *out = e->ival;
      lru_unlink(d, i);
      lru_front(d, i);
    }
  } else if ((i = dict_alloc(d, k, kn, h)) == 0) {
    r = SMTPD_DICT_TOO_LARGE;
  } else {
    e = dict_entry_at(d, i);
    e->type = SMTPD_DICT_INT;
    e->ival = by;
    e->vlen = 0;
    e->expires_ms = ttl_ms > 0 ? now_ms + ttl_ms : 0;
    *out = by;
  }
  dict_unlock(d);
  return r;
}

int smtpd_dict_delete(smtpd_dict *d, const char *k, size_t kn) {
  uint32_t h = dict_hash(k, kn), i;
  if (kn > SMTPD_DICT_ITEM) return 0;
  dict_lock(d);
  i = dict_find(d, k, kn, h, INT64_MIN);
  if (i) dict_remove(d, i);
  dict_unlock(d);
  return i != 0;
}

void smtpd_dict_flush(smtpd_dict *d) {
  dict_lock(d);
  while (d->lru_head) dict_remove(d, d->lru_head);
  dict_unlock(d);
}

void smtpd_dict_count(smtpd_dict *d, size_t *used, size_t *capacity) {
  dict_lock(d);
  *used = d->used;
  *capacity = d->nentries;
  dict_unlock(d);
}

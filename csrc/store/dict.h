/*
 * A dictionary in one block of shared memory (the pure layer: no Lua, no
 * libuv): made before lua-smtpd forks its workers, it is the same memory
 * in all of them, so a counter one worker raises the others see. As
 * OpenResty's shared dictionaries: fixed-size entries, every operation atomic
 * under one process-shared (robust) mutex, an expiry time per key, and
 * the least recently used entry out when the block is full.
 */
#ifndef SMTPD_DICT_H
#define SMTPD_DICT_H

#include <stddef.h>
#include <stdint.h>

/* A key and its value fit in this many bytes. */
#define SMTPD_DICT_ITEM 232

enum { SMTPD_DICT_NONE = 0, SMTPD_DICT_STR, SMTPD_DICT_INT };

enum {
  SMTPD_DICT_OK = 0,
  SMTPD_DICT_EXISTS = 1,      /* add: the key is there */
  SMTPD_DICT_TOO_LARGE = -1,  /* key + value past SMTPD_DICT_ITEM */
  SMTPD_DICT_NOT_INT = -2,    /* incr of a string */
  SMTPD_DICT_OVERFLOW = -3    /* incr past 64 bits */
};

typedef struct smtpd_dict smtpd_dict;

typedef struct smtpd_dict_value {
  int type;                  /* SMTPD_DICT_* */
  int64_t ival;
  char sval[SMTPD_DICT_ITEM];
  size_t slen;
  int64_t expires_ms;        /* 0: never */
} smtpd_dict_value;

/* A dictionary of about bytes (at least a few entries); NULL with why. */
smtpd_dict *smtpd_dict_new(size_t bytes, char *err, size_t errlen);
void smtpd_dict_free(smtpd_dict *d);

/* now_ms: a clock every process reads the same (CLOCK_MONOTONIC). A
 * ttl_ms of 0 never expires. */
int smtpd_dict_get(smtpd_dict *d, const char *k, size_t kn, int64_t now_ms,
                   smtpd_dict_value *out);
/* only_add: refuse (SMTPD_DICT_EXISTS) when the key is there. */
int smtpd_dict_set(smtpd_dict *d, const char *k, size_t kn, int type,
                   const char *s, size_t sn, int64_t ival, int64_t ttl_ms,
                   int64_t now_ms, int only_add);
/* Adds by to the integer at k (made as by, with ttl_ms, when absent or
 * expired; an existing key keeps its expiry): the new value in *out. */
int smtpd_dict_incr(smtpd_dict *d, const char *k, size_t kn, int64_t by,
                    int64_t ttl_ms, int64_t now_ms, int64_t *out);
/* 1 when there was such a key. */
int smtpd_dict_delete(smtpd_dict *d, const char *k, size_t kn);
void smtpd_dict_flush(smtpd_dict *d);
/* Entries in use, and how many fit. */
void smtpd_dict_count(smtpd_dict *d, size_t *used, size_t *capacity);

#endif

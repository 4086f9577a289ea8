/*
 * programs/common/size.h — helpers the programs share (dsv4-cli,
 * dsv4-server), on the public header alone (docs/ARCHITECTURE.md).
 */
#ifndef DSV4_PROGRAMS_SIZE_H
#define DSV4_PROGRAMS_SIZE_H

#include <stdbool.h>
#include <stdint.h>

/* a memory size as the --mem-budget flags take it: bytes with an optional
 * K, M, G or T suffix (powers of 1024; "KiB", "KB" and "k" alike), or a
 * percentage "1%".."100%". On success sets exactly one of *bytes (> 0) and
 * *pct, the other 0, and returns true; false for anything else (empty,
 * negative, zero, overflow, trailing characters). */
bool dsv4p_parse_size(const char *v, int64_t *bytes, int64_t *pct);

#endif

/*
 * programs/common/common.h — helpers the programs share (dsv4-cli,
 * dsv4-server), on the public header alone (docs/ARCHITECTURE.md).
 */
#ifndef DSV4_PROGRAMS_COMMON_H
#define DSV4_PROGRAMS_COMMON_H

#include <stdbool.h>
#include <stdint.h>

/* a memory size as the --mem-budget flags take it: bytes with an optional
 * K, M, G or T suffix (powers of 1024; "KiB", "KB" and "k" alike), or a
 * percentage "1%".."100%". On success sets exactly one of *bytes (> 0) and
 * *pct, the other 0, and returns true; false for anything else (empty,
 * negative, zero, overflow, trailing characters). */
bool dsv4p_parse_size(const char *v, int64_t *bytes, int64_t *pct);

/* OpenMP's waiting threads (oneDNN's products of 16 rows or more, the
 * prompts) spin about 300 000 polls before sleeping; on cores that other
 * processes also use, that spinning takes the cores from the working
 * threads (prompts measured 10-20x slower at a load of 8 on 2 cores). The
 * OpenMP runtime reads its setting when the process starts, so a program
 * whose environment sets neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT starts
 * itself again (execv of /proc/self/exe, same arguments) with
 * OMP_WAIT_POLICY=passive. Returns only when no restart was needed or it
 * failed (the program then runs as it is). */
void dsv4p_omp_passive(char **argv);

#endif

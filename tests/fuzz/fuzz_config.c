/*
 * tests/fuzz/fuzz_config.c — config.json parsing and validation
 * (dsv4__config_parse) on any text: a status with a message, never
 * undefined behaviour (integers given as huge floats, overflowing products
 * of the shape checks). Whole folders: fuzz_checkpoint.
 */
#include "fuzz_common.h"
#include "loader/loader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dsv4__config cfg;
    dsv4__err e = { 0, "" };
    dsv4_status st = dsv4__config_parse((const char *)data, size, "config.json", &cfg, &e);
    FUZZ_ASSERT(st == DSV4_OK || e.msg[0], "status %d without a message", st);
    return 0;
}

/*
 * lib/state/sfile.h — the session file format (docs/sessions.md): a
 * versioned header (magic, format and library version, model fingerprint,
 * numerics, revision, context length, MTP flag, position), a section table,
 * then the sections (token history, eval-call boundaries, state image, last
 * logits, checkpoints), each raw or zstd-compressed, each with a checksum.
 * Internal.
 *
 * Reading parses and checks everything into temporaries; the caller
 * applies the result to a session only once it is whole.
 */
#ifndef DSV4_STATE_SFILE_H
#define DSV4_STATE_SFILE_H

#define DSV4_ENABLE_EXPERIMENTAL
#include "core/core.h"
#include "loader/loader.h"
#include "graph/forward.h"

#define DSV4__SFILE_MAGIC "DSV4SESS"
#define DSV4__SFILE_VERSION 2u     /* written; versions 1 and 2 are read */
#define DSV4__SFILE_MIN_VERSION 1u
#define DSV4__SFILE_HEADER 96
#define DSV4__SFILE_MAX_SECTIONS 8

/* what a file is made by (written) or must match (read) */
typedef struct dsv4__sfile_meta {
    uint64_t fingerprint;
    int32_t numerics, revision;
    int64_t n_ctx;          /* written: the saver's; read: the restorer's capacity */
    int32_t mtp;
    int32_t vocab;
    uint32_t lib_version;
    int32_t max_ck;         /* read: checkpoints the restorer takes at most (a file with more is refused) */
} dsv4__sfile_meta;

/* a checkpoint in a file: the state image at pos and the logits of pos-1
 * (NULL: none). Written: borrowed; read: pointing into the data's ck_raw */
typedef struct dsv4__sfile_ckpt {
    int64_t pos;
    const uint8_t *img;
    int64_t img_bytes;
    const float *logits;
} dsv4__sfile_ckpt;

/* the contents: position, history [pos], call boundaries [(pos+7)/8 bytes],
 * the state image and the logits of position pos-1 (NULL: none). Read
 * results own their buffers (dsv4__sfile_data_free). */
typedef struct dsv4__sfile_data {
    int64_t pos;
    int32_t *tokens;
    uint8_t *cuts;
    uint8_t *img;
    int64_t img_bytes;
    float *logits;
    /* checkpoints, ascending positions at most pos (format version 2) */
    int32_t n_ck;
    dsv4__sfile_ckpt *ck;
    uint8_t *ck_raw;        /* read: the section the checkpoints point into */
    /* filled by the reader: the file's own header fields and version */
    dsv4__sfile_meta file;
    uint32_t version;
} dsv4__sfile_data;

/* write (zstd when compress) through fn; DSV4_ERR_IO when fn fails */
dsv4_status dsv4__sfile_write(const dsv4__sfile_meta *m, const dsv4__sfile_data *d, int compress,
                              dsv4_write_fn fn, void *user, dsv4__err *e);

/* read and check a whole file for a session of runtime rt matching m;
 * on success *d holds the contents; on failure nothing is kept */
dsv4_status dsv4__sfile_read(const dsv4__sfile_meta *m, const dsv4__rt *rt, dsv4_read_fn fn, void *user,
                             dsv4__sfile_data *d, dsv4__err *e);
void dsv4__sfile_data_free(dsv4__sfile_data *d);

/* the header fields and the token history of a file, without expectations
 * (the prefix cache's index of a directory): at most max_pos tokens;
 * d->tokens and d->file set, nothing else; the file is checked again in
 * full when restored */
dsv4_status dsv4__sfile_peek(dsv4_read_fn fn, void *user, int64_t max_pos, dsv4__sfile_data *d, dsv4__err *e);

/* 64-bit checksum of n bytes */
uint64_t dsv4__hash64(const void *p, size_t n, uint64_t seed);

/* fingerprint of a model: its config and its tensor table (names, dtypes,
 * shapes, sizes, and the first and last bytes of every tensor's data); MTP
 * tensors left out so that loading with or without them is the same model */
uint64_t dsv4__model_fingerprint(const dsv4__checkpoint *ck);

#endif

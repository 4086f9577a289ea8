/*
 * lib/gen/gen_int.h — the generator's state, shared by gen.c (the token
 * loop and events) and request.c (request JSON in, response JSON out).
 * Internal.
 */
#ifndef DSV4_GEN_GEN_INT_H
#define DSV4_GEN_GEN_INT_H

#include <stdatomic.h>
#include "core/core.h"
#include "core/sbuf.h"
#include "gen/constrain.h"

#define DSV4__GEN_MAX_STOPS 16
#define DSV4__GEN_MAX_STOP_LEN 256
#define DSV4__GEN_MAX_TOP 20
#define DSV4__GEN_MAX_BATCH 256

typedef struct dsv4__gen_event {
    int32_t type, index;
    char *data;
    size_t len;
} dsv4__gen_event;

typedef struct dsv4__gen_call {
    char *name;
    dsv4__sbuf args;
    int done;
} dsv4__gen_call;

struct dsv4_gen {
    dsv4_session *sess;
    const dsv4_tokenizer *tok;
    int64_t n_vocab;      /* ids the generator may choose: min(model, tokenizer) */
    int64_t model_vocab;
    dsv4_sampler *sampler;
    char err[512];
    atomic_int cancel;

    /* settings */
    int64_t max_tokens, effort, budget, thinking_opt, resp_fmt, tool_choice, logprobs, top_logprobs, reuse;
    int tool_choice_set;
    char *schema;
    size_t schema_len;
    char *tools;
    size_t tools_len;
    char *forced_name;
    char *stops[DSV4__GEN_MAX_STOPS];
    size_t stop_len[DSV4__GEN_MAX_STOPS];
    int n_stops;
    dsv4_gen_event_fn cb;
    void *cb_user;
    /* prefill progress (dsv4_gen_set_progress, experimental) */
    int32_t (*progress)(void *user, int64_t done, int64_t total);
    void *progress_user;

    /* special ids (-1 when the tokenizer or the model lacks them) */
    int32_t eos, think_open, think_close, dsml;
    /* per-id flag: 1 = a control token never generated inside JSON/DSML text */
    uint8_t *control;
    /* token piece cache: offsets into one byte pool */
    uint32_t *piece_off;
    char *piece_pool;

    /* tokens the session holds, as fed through this generator (valid when
     * the session's position equals n_hist) */
    int32_t *hist;
    size_t n_hist, cap_hist;
    /* the prompt still to feed (DSV4_GEN_PREFILL_CHUNK): defer[i_defer, n_defer) */
    int32_t *defer;
    size_t n_defer, i_defer, cap_defer;
    size_t defer_mark;  /* defer index of the end-of-prompt checkpoint; SIZE_MAX: none */
    int64_t prefill_chunk;
    /* the session's edit count after this generator's last eval or reset:
     * another change (the caller's eval or reset, another generator) makes
     * hist stale, and the next start then resets instead of reusing it */
    uint64_t sess_edits;

    /* the generation */
    int started, ended, finish;
    int thinking;       /* the output started as reasoning */
    int in_reasoning;
    int utf8_need;      /* continuation bytes the reasoning text still needs */
    int32_t pending;    /* chosen, not yet fed to the session; -1 none */
    int forcing_len;    /* output being closed: 1 for lack of tokens, 2 as nothing else is allowed */
    int tight;          /* choosing with few tokens left: check completions */
    int utf8_strict;    /* choosing the last free reasoning token: whole characters only */
    int64_t rem_after;  /* tokens left after the one being chosen */
    int32_t forced[8];
    int n_forced, i_forced;
    int64_t n_gen, n_reason, prompt_tokens, cached, prompt_ns, decode_ns;
    float *logits, *probs, *work;
    uint8_t *allowed_cache; /* scratch for full masks */
    dsv4_detok *detok;
    dsv4_chat_parser *parser;
    dsv4__cons *cons;   /* constraint of the content part, NULL for none */
    int cons_kind;      /* 0 none, 1 JSON, 2 DSML */

    /* speculative decoding with the MTP head (DSV4_GEN_SPECULATIVE) */
    int64_t spec;       /* 0 off, 1 exact, 2 batched verify always */
    int32_t draft;      /* the token drafted after `pending`, -1 none */
    int32_t verify_d;   /* the draft being checked by the current choice, -1 none */
    int draft_sampled;  /* drawn from qdist: the sampling acceptance applies */
    int spec_batched;   /* the current verify fed [pending, draft] together */
    int spec_fed;       /* the draft is fed ahead of its turn: undone if the generation ends first */
    int no_draft;       /* dsv4_gen_step_batch: no drafts */
    int64_t n_proposed, n_accepted, n_verify_batched;
    float *qdist;       /* the draft's distribution */
    float *logits2;     /* logits after the draft (batched verify) */

    /* events */
    dsv4__gen_event *q;
    size_t q_head, q_n, q_cap;
    char *cur;          /* data of the event handed out last */
    dsv4__sbuf hold;    /* content held back for stop strings */
    int stopped_by_string; /* 1 + the index of the stop string that matched, 0 none */
    int sampler_empty;  /* choose(): the sampler's stages left no allowed token */

    /* logprobs: per generated token */
    int32_t *tok_ids;
    float *tok_lp;
    int32_t *top_ids;
    float *top_lp;
    uint8_t *n_top;
    size_t cap_toks, cap_top; /* entries allocated (top_ids/top_lp: cap_top) */

    /* the message so far */
    dsv4__sbuf reasoning, content;
    dsv4__gen_call *calls;
    size_t n_calls, cap_calls;

    /* request bookkeeping (request.c) */
    int from_request, is_completion, include_usage, stream;
    char *model_name;
    char id[48];
    int64_t created;
    int chunk_state;    /* 0 role chunk due, 1 deltas, 2 done */
    /* the Messages form (messages.c) */
    int msg_form;       /* started by dsv4_gen_start_messages */
    int msg_state;      /* 0 message_start due, 1 blocks, 2 done */
    int msg_block;      /* open content block: 0 none, 1 thinking, 2 text, 3 tool use */
    int msg_index;      /* index of the last block opened, -1 none */
};

/* gen.c */
dsv4_status dsv4__gen_fail(dsv4_gen *g, dsv4_status code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* piece bytes of a token (cached) */
const char *dsv4__gen_piece(const dsv4_gen *g, int32_t id, size_t *len);

/* dsv4_gen_start with the content constraint already compiled: `ready`
 * (taken, freed on failure; NULL: compiled here) must be what the current
 * settings give (JSON schema, or tools with a tool choice other than NONE). */
dsv4_status dsv4__gen_start(dsv4_gen *g, const int32_t *prompt, size_t n, dsv4__cons *ready);
/* dsv4_gen_set_json_schema / dsv4_gen_set_tools for input already validated
 * (compiled) by the caller: store the copy and the format / tool choice. */
dsv4_status dsv4__gen_store_schema(dsv4_gen *g, const char *schema, size_t len);
dsv4_status dsv4__gen_store_tools(dsv4_gen *g, const char *tools, size_t len, const char *forced_name);

/* Speculative sampling: the token after a draft d drawn from q (q sums to
 * 1), distributed as p = pw / z whatever q is: d with probability
 * min(1, p(d)/q(d)), else a draw from norm(max(0, p - q)); work: n floats
 * of scratch. Statuses of dsv4__sampler_pick. */
dsv4_status dsv4__gen_spec_choose(dsv4_sampler *s, const float *pw, double z, const float *q, int32_t d, float *work,
                                  size_t n, int32_t *out);

/* request.c */
/* parse, check and apply a request: its prompt ids (*ids, dsv4__free) and
 * its content constraint, already compiled (*cons, NULL for none), for
 * dsv4__gen_start */
dsv4_status dsv4__gen_apply_request(dsv4_gen *g, const char *json, size_t len, int32_t **ids, size_t *n_ids,
                                    dsv4__cons **cons);

#endif

/*
 * libdsv4 — run DeepSeek-V4 language models on the CPU.
 *
 * This is the one public header. It is the specification of the library's
 * behaviour: every function documents its parameters, ownership, every
 * status it can return, its thread safety and the version it appeared in.
 *
 * Rules that hold for the whole API (stated once, kept everywhere):
 *
 *  - Every fallible call returns a dsv4_status (0 = DSV4_OK). Out-parameters
 *    are set to NULL/0 on failure. The library never aborts, exits or asserts
 *    on caller input; bad arguments give DSV4_ERR_INVALID_ARGUMENT.
 *  - Objects are opaque. No public struct exists whose layout could change.
 *    Options are set through typed setters keyed by append-only enums.
 *  - Enum values and status codes are explicit, append-only and never
 *    renumbered. 0 means "default" wherever an enum is an option value.
 *    Every enumerated type at the boundary is a fixed-width integer typedef
 *    (int32_t; uint32_t for flag sets), its values named constants of an
 *    enum beside it, so that every binding sees the same 4 bytes.
 *  - Stability: every declaration is stable within the ABI major (SONAME)
 *    unless marked DSV4_EXPERIMENTAL_API and "@experimental" in its
 *    comment. Experimental declarations are seen only when the includer
 *    defines DSV4_ENABLE_EXPERIMENTAL first; they are exported in their own
 *    symbol version node (DSV4_EXPERIMENTAL) and may change or go away in
 *    any release (docs/ABI.md). Deprecated names are hidden when
 *    DSV4_NO_DEPRECATED is defined.
 *  - Ownership: create/load is paired with free; free(NULL) is a no-op.
 *    A child keeps its parent alive (session -> context -> model), so the
 *    objects may be freed in any order. Inputs are copied before a call
 *    returns. Strings returned as `const char *` are owned by the object
 *    they came from; strings returned through `char **` are freed with
 *    dsv4_free().
 *  - Threads: a dsv4_model is immutable after load and may be used from any
 *    number of threads at once. A dsv4_context and the sessions created on it
 *    are used by one thread at a time (they may migrate between threads).
 *    Callbacks run on the thread that made the call, never on a worker.
 *  - Logging is silent by default.
 */
#ifndef LIBDSV4_DSV4_H
#define LIBDSV4_DSV4_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(DSV4_BUILDING_DLL)
#  define DSV4_API __declspec(dllexport)
#elif defined(_WIN32) && defined(DSV4_USING_DLL)
#  define DSV4_API __declspec(dllimport)
#elif defined(__GNUC__)
#  define DSV4_API __attribute__((visibility("default")))
#else
#  define DSV4_API
#endif

/* Marks an exported function of the experimental tier (not yet stable:
 * see the rules above and docs/ABI.md). Declared inside
 * "#ifdef DSV4_ENABLE_EXPERIMENTAL" blocks only. @since 0.1.0 */
#define DSV4_EXPERIMENTAL_API DSV4_API

/* ------------------------------------------------------------------------ */
/* Versions                                                                  */
/* ------------------------------------------------------------------------ */

/** Release version of this header. @since 0.1.0 */
#define DSV4_VERSION_MAJOR 0
#define DSV4_VERSION_MINOR 1
#define DSV4_VERSION_PATCH 0
/** "0.1.0" */
#define DSV4_VERSION_STRING "0.1.0"
/** MAJOR*10000 + MINOR*100 + PATCH. */
#define DSV4_VERSION_NUMBER \
    (DSV4_VERSION_MAJOR * 10000 + DSV4_VERSION_MINOR * 100 + DSV4_VERSION_PATCH)
/** True when this header is at least version maj.min.pat. */
#define DSV4_AT_LEAST_VERSION(maj, min, pat) \
    (DSV4_VERSION_NUMBER >= ((maj) * 10000 + (min) * 100 + (pat)))
/** ABI major of this header; equals the SONAME number of libdsv4.so. */
#define DSV4_ABI_VERSION 0

/**
 * Version of the library actually loaded, as DSV4_VERSION_NUMBER computes it.
 * Compare with DSV4_VERSION_NUMBER to detect a header/library mismatch.
 * @threadsafety any thread. @since 0.1.0
 */
DSV4_API uint32_t dsv4_version_number(void);

/**
 * Version string of the loaded library ("0.1.0"); static storage, never NULL.
 * @threadsafety any thread. @since 0.1.0
 */
DSV4_API const char *dsv4_version_string(void);

/**
 * ABI major of the loaded library (the SONAME number). A binding built
 * against DSV4_ABI_VERSION must refuse to run if this differs.
 * @threadsafety any thread. @since 0.1.0
 */
DSV4_API uint32_t dsv4_abi_version(void);

/* ------------------------------------------------------------------------ */
/* Status codes                                                              */
/* ------------------------------------------------------------------------ */

/** Result of every fallible call. Fixed width for FFI. @since 0.1.0 */
typedef int32_t dsv4_status;

/** The values of dsv4_status. @since 0.1.0 */
enum dsv4_status_code {
    DSV4_OK                   = 0,  /**< success */
    DSV4_ERR_INVALID_ARGUMENT = 1,  /**< NULL pointer, bad enum, value out of range */
    DSV4_ERR_OUT_OF_MEMORY    = 2,  /**< an allocation or mapping failed */
    DSV4_ERR_IO               = 3,  /**< open/stat/mmap/read of a file failed */
    DSV4_ERR_BAD_FORMAT       = 4,  /**< corrupt or truncated file (safetensors header, JSON) */
    DSV4_ERR_BAD_CONFIG       = 5,  /**< config.json misses a field or is inconsistent */
    DSV4_ERR_UNSUPPORTED      = 6,  /**< valid input of a model or feature this library does not run */
    DSV4_ERR_MISSING_TENSOR   = 7,  /**< a tensor the model needs is absent from the checkpoint */
    DSV4_ERR_TENSOR_MISMATCH  = 8,  /**< a tensor has the wrong dtype or shape, or is unexpected */
    DSV4_ERR_CONTEXT_FULL     = 9,  /**< the session's context capacity would be exceeded */
    DSV4_ERR_ABORTED          = 10, /**< a progress callback asked to stop */
    DSV4_ERR_BUFFER_TOO_SMALL = 11, /**< the caller's buffer is too small; nothing was written */
    DSV4_ERR_UNKNOWN_OPTION   = 12, /**< option key not known to this library version */
    DSV4_ERR_NOT_AVAILABLE    = 13, /**< the requested result was not computed (e.g. logits of a row not asked for) */
    DSV4_ERR_INTERNAL         = 14, /**< an internal invariant failed; the object is unusable until reset */
    /** saved session state made by another model, numerics, revision or
     *  session kind (MTP) than the session restoring it @since 0.1.0 */
    DSV4_ERR_INCOMPATIBLE     = 15
    /* New codes are appended here. Codes are never renumbered or removed. */
};

/**
 * Static English text for a status ("invalid argument", ...). Unknown codes
 * give "unknown status". Never NULL.
 * @threadsafety any thread. @since 0.1.0
 */
DSV4_API const char *dsv4_status_string(dsv4_status status);

/**
 * Free memory the library returned through a `char **` out-parameter
 * (error messages, JSON strings). NULL is a no-op.
 * @threadsafety any thread. @since 0.1.0
 */
DSV4_API void dsv4_free(void *ptr);

/* ------------------------------------------------------------------------ */
/* CPU features                                                              */
/* ------------------------------------------------------------------------ */

/** Bits returned by dsv4_cpu_features(). @since 0.1.0 */
enum {
    DSV4_CPU_AVX2       = 1u << 0,
    DSV4_CPU_FMA        = 1u << 1,
    DSV4_CPU_F16C       = 1u << 2,
    DSV4_CPU_AVX512F    = 1u << 3,
    DSV4_CPU_AVX512BW   = 1u << 4,
    DSV4_CPU_AVX512VL   = 1u << 5,
    DSV4_CPU_AVX512VNNI = 1u << 6,
    DSV4_CPU_AVX512BF16 = 1u << 7,
    DSV4_CPU_AMX        = 1u << 8,
    DSV4_CPU_AVX512VBMI = 1u << 9  /**< byte permutes (vpermb, vpermt2b) @since 0.1.0 */
};

/**
 * CPU features detected at run time (DSV4_CPU_* bits) that the kernels may
 * use. Features the operating system has not enabled are not reported.
 * @threadsafety any thread. @since 0.1.0
 */
DSV4_API uint32_t dsv4_cpu_features(void);

/* ------------------------------------------------------------------------ */
/* Objects                                                                   */
/* ------------------------------------------------------------------------ */

/** Weights (read-only mmap), configuration; immutable after load. @since 0.1.0 */
typedef struct dsv4_model dsv4_model;
/** Worker threads, scratch memory, numerics and KV capacity. @since 0.1.0 */
typedef struct dsv4_context dsv4_context;
/** One conversation: its position and decode state (KV caches). @since 0.1.0 */
typedef struct dsv4_session dsv4_session;
/** A bag of options for creating a model, context or session. @since 0.1.0 */
typedef struct dsv4_options dsv4_options;
/** Facts about a model, from its config alone or from a loaded model. @since 0.1.0 */
typedef struct dsv4_model_info dsv4_model_info;

/* ------------------------------------------------------------------------ */
/* Options                                                                   */
/* ------------------------------------------------------------------------ */

/**
 * Option keys. Each key belongs to the object whose constructor reads it
 * (noted per key); a constructor given a bag holding keys of another object
 * ignores them. Values are checked when set.
 * @since 0.1.0
 */
typedef int32_t dsv4_option;
/** The values of dsv4_option (explicit; never renumbered). @since 0.1.0 */
enum dsv4_option_value {
    /** model load, i64 0/1, default 1: also bind the MTP (next-token
     *  prediction) block when the checkpoint has one. 0 skips its tensors. */
    DSV4_OPT_LOAD_MTP = 1,
    /** model load, i64 0/1, default 0: ask the kernel to read the mapped
     *  weights ahead (madvise WILLNEED). */
    DSV4_OPT_PREFETCH = 2,
    /** model load, i64 0/1, default 1: copy the weights that every token
     *  reads (attention, compressors, indexer, routers, shared experts, the
     *  output head, MTP projections) out of the file mapping into anonymous
     *  memory, backed by transparent huge pages where the system allows
     *  (madvise): decode reads them faster (fewer TLB misses than 4 KiB page
     *  cache pages) and they are never evicted under memory pressure. The
     *  routed experts and the embedding stay mapped. Costs that much
     *  anonymous memory (its size is logged at load); results are the same
     *  either way. 0 keeps everything mapped. @since 0.1.0 */
    DSV4_OPT_RESIDENT = 3,
    /** context, i64 >= 0, default 0 = one per online core: worker threads. */
    DSV4_OPT_THREADS = 100,
    /** context, i64 >= 1, default 4096: context capacity in tokens of every
     *  session created on the context; at most the model's
     *  max_position_embeddings. */
    DSV4_OPT_CONTEXT_LENGTH = 101,
    /** context, i64 dsv4_numerics, default DSV4_NUMERICS_REFERENCE. */
    DSV4_OPT_NUMERICS = 102,
    /** context, i64 dsv4_revision, default DSV4_REVISION_CURRENT: which
     *  official reference revision's behaviour to reproduce. */
    DSV4_OPT_REVISION = 103,
    /** context, i64 >= 1, default 1024 (when unset and the context length
     *  is smaller: the context length, but at least 256): largest number of
     *  tokens run through the forward pass at once; longer inputs are
     *  processed in chunks of this size (results are the same). Larger chunks prefill faster (each
     *  chunk decodes every weight it uses once; a model of many experts
     *  gives each expert more rows) and cost the context activation memory
     *  in proportion (about 376 KiB per token at V4-Flash widths). Progress
     *  reports and cancellation come once per chunk. */
    DSV4_OPT_MAX_BATCH = 104,
    /** context, i64 -1 .. 1048576, default -1: pause instructions a worker
     *  thread (and the calling thread, waiting for the workers) spends
     *  watching for the next parallel loop before it sleeps. Between the
     *  short loops of a decode step a sleep and wake-up costs more than the
     *  loop; 0 sleeps at once: the least CPU used while waiting, for apps
     *  that share the cores (games, UIs), at some decode speed. -1 (the
     *  default) adapts: each thread spins (up to 4096 pauses) while its
     *  waits end within the spin, and backs off to sleeping at once while
     *  they do not (the cores are shared with another busy process, or the
     *  caller pauses between calls); docs/THREADS.md. Products of 16 rows
     *  or more run on OpenMP's threads, which follow OMP_WAIT_POLICY
     *  instead. @since 0.1.0 */
    DSV4_OPT_WORKER_SPIN = 105,
    /** session, i64 0/1, default 0: keep the MTP block's state in step with
     *  the session so that MTP logits can be read (model must have MTP). */
    DSV4_OPT_MTP = 200
};

#ifdef DSV4_ENABLE_EXPERIMENTAL
/**
 * Option keys of the experimental tier (more values of dsv4_option;
 * docs/memory.md). @experimental @since 0.1.0
 */
enum dsv4_option_experimental_value {
    /** model load, i64 >= 0, default 0 = no budget: run the model within
     *  this many bytes of memory for its weights. The weights every token
     *  reads are copied to anonymous memory (as DSV4_OPT_RESIDENT does,
     *  whatever that option says) and the embedding stays mapped (counted
     *  whole); the routed experts live in an expert cache that takes the
     *  rest of the budget, one expert per slot, filled from the shard files
     *  with direct reads (the page cache keeps no second copy) and evicted
     *  least recently used first. Outputs are bit-identical to a model
     *  loaded without a budget; a miss costs a disk read. Contexts' scratch
     *  and sessions' KV memory come on top (dsv4_model_info_memory()). A
     *  budget below the resident weights plus one token's selected experts
     *  makes dsv4_model_load() fail with DSV4_ERR_INVALID_ARGUMENT, the
     *  message giving the minimum. A shard truncated or changed on disk
     *  after the load makes the eval call that needs it fail with
     *  DSV4_ERR_IO and resets that session to position 0.
     *  DSV4_OPT_PREFETCH is ignored under a budget. @experimental */
    DSV4_OPT_MEM_BUDGET = 4,
    /** model load, i64 0..100, default 0 = none: the budget as a percentage
     *  of DSV4_INFO_PHYSICAL_MEMORY; with DSV4_OPT_MEM_BUDGET too, the
     *  smaller of the two applies. @experimental */
    DSV4_OPT_MEM_BUDGET_PERCENT = 5,
    /** model load, i64 0/1, default 0: lock the weights held in memory
     *  (the resident copies, vectors and tables, and the expert cache's
     *  slots under a budget) with mlock(2), so the system never pages them
     *  out. Best effort: a lock the system refuses (RLIMIT_MEMLOCK without
     *  CAP_IPC_LOCK) leaves the rest unlocked, logs a warning naming the
     *  cause, and the load still succeeds; DSV4_INFO_LOCKED_BYTES tells
     *  how much was locked. The mapped embedding and routed experts
     *  without a budget are never locked. @experimental */
    DSV4_OPT_MEM_LOCK = 6
};
#endif

/** Values of DSV4_OPT_NUMERICS. @since 0.1.0 */
typedef int32_t dsv4_numerics;
/** The values of dsv4_numerics (explicit; never renumbered). @since 0.1.0 */
enum dsv4_numerics_value {
    DSV4_NUMERICS_DEFAULT   = 0, /**< = DSV4_NUMERICS_REFERENCE */
    /** The official numerics: activations quantised to FP8 (FP4 in the
     *  indexer) before the quantised products with power-of-two scales,
     *  KV rounded to FP8; KV cache stored compactly. */
    DSV4_NUMERICS_REFERENCE = 1,
    /** Activation quantisation off (identity), weights exactly as stored,
     *  all intermediate values in float32. For verification. */
    DSV4_NUMERICS_FLOAT     = 2
};

/** Values of DSV4_OPT_REVISION. @since 0.1.0 */
typedef int32_t dsv4_revision;
/** The values of dsv4_revision (explicit; never renumbered). @since 0.1.0 */
enum dsv4_revision_value {
    DSV4_REVISION_DEFAULT = 0, /**< = DSV4_REVISION_CURRENT */
    /** Current official revision: shared-expert SwiGLU clamp on, KV FP8
     *  rounding on. */
    DSV4_REVISION_CURRENT = 1,
    /** Initial release: no shared-expert clamp, KV FP8 rounding a no-op. */
    DSV4_REVISION_INITIAL = 2
};

/** Log levels. @since 0.1.0 */
enum {
    DSV4_LOG_ERROR = 1,
    DSV4_LOG_WARN  = 2,
    DSV4_LOG_INFO  = 3,
    DSV4_LOG_DEBUG = 4
};

/**
 * Log callback: one whole line, not NUL-terminated inside `len` (but a NUL
 * follows it), without a trailing newline. Runs on the calling thread.
 * Must not call back into the object that logs. @since 0.1.0
 */
typedef void (*dsv4_log_fn)(void *user, int32_t level, const char *msg, size_t len);

/**
 * Progress callback: `fraction` grows from 0 to 1. Return 0 to go on, any
 * other value to stop the operation, which then fails with DSV4_ERR_ABORTED.
 * Runs on the calling thread. @since 0.1.0
 */
typedef int32_t (*dsv4_progress_fn)(void *user, double fraction);

/**
 * Create an empty options bag (every option at its default).
 * @param out  receives the bag; set to NULL on failure.
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT (out NULL), DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety any thread. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_options_create(dsv4_options **out);

/** Free an options bag; NULL is a no-op. Objects created with it keep
 *  their own copy. @threadsafety one thread per bag. @since 0.1.0 */
DSV4_API void dsv4_options_free(dsv4_options *opts);

/**
 * Set an integer option.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (opts NULL, value out of range,
 *         or key not an integer option); DSV4_ERR_UNKNOWN_OPTION (key unknown).
 *         On failure the bag is unchanged.
 * @threadsafety one thread per bag. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_options_set_i64(dsv4_options *opts, dsv4_option key, int64_t value);

/**
 * Read back an integer option (its default when never set).
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT, DSV4_ERR_UNKNOWN_OPTION.
 * @threadsafety one thread per bag. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_options_get_i64(const dsv4_options *opts, dsv4_option key, int64_t *value);

/**
 * Route log lines at `min_level` or more severe to `fn` for every object
 * created with this bag. fn NULL = silent (the default).
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT (opts NULL or bad level).
 * @threadsafety one thread per bag. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_options_set_log(dsv4_options *opts, dsv4_log_fn fn, void *user,
                                          int32_t min_level);

/**
 * Report progress of long operations (model load) to `fn`; NULL = none.
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT (opts NULL).
 * @threadsafety one thread per bag. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_options_set_progress(dsv4_options *opts, dsv4_progress_fn fn,
                                               void *user);

/* ------------------------------------------------------------------------ */
/* Model                                                                     */
/* ------------------------------------------------------------------------ */

/**
 * Load a checkpoint directory in the official Hugging Face layout:
 * config.json, model.safetensors.index.json (or a single
 * model.safetensors) and the shards, mapped read-only with no conversion
 * (the weights every token reads are copied to anonymous memory unless
 * DSV4_OPT_RESIDENT is 0). Every header, dtype, shape and byte range is validated; the
 * first problem is reported naming the file, tensor and byte offset.
 * tokenizer.json / tokenizer_config.json are noted when present
 * (dsv4_model_tokenizer_path()).
 *
 * When the weights are larger than the physical memory
 * (DSV4_INFO_PHYSICAL_MEMORY), a DSV4_LOG_WARN line says so before the
 * weights are bound; the load may still succeed (the routed experts stay
 * mapped), but every token then reads weights from the disk.
 *
 * The caller must not modify the files while the model lives.
 *
 * @param path     directory; borrowed for the call.
 * @param opts     NULL for defaults; reads DSV4_OPT_LOAD_MTP, DSV4_OPT_PREFETCH,
 *                 DSV4_OPT_RESIDENT, the log and progress callbacks.
 * @param out      receives the model; NULL on failure.
 * @param err_msg  optional; on failure receives a message to free with
 *                 dsv4_free(), on success NULL.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT; DSV4_ERR_IO (a file cannot be
 *         opened, read or mapped); DSV4_ERR_BAD_FORMAT (corrupt JSON or
 *         safetensors header, byte ranges out of file or overlapping);
 *         DSV4_ERR_BAD_CONFIG; DSV4_ERR_UNSUPPORTED (another architecture);
 *         DSV4_ERR_MISSING_TENSOR; DSV4_ERR_TENSOR_MISMATCH;
 *         DSV4_ERR_OUT_OF_MEMORY; DSV4_ERR_ABORTED (progress callback).
 * @threadsafety any thread. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_model_load(const char *path, const dsv4_options *opts,
                                     dsv4_model **out, char **err_msg);

/**
 * Release the caller's reference to a model. The weights stay mapped while
 * a context created from it lives. NULL is a no-op.
 * @threadsafety not concurrently with other calls on the same model
 *               handle by the same owner. @since 0.1.0
 */
DSV4_API void dsv4_model_free(dsv4_model *model);

/**
 * Path of the tokenizer.json found in the model's directory at load, for
 * dsv4_tokenizer_load(); NULL when the directory has none (or model is
 * NULL). Owned by the model, valid while it lives.
 * @threadsafety any thread. @since 0.1.0
 */
DSV4_API const char *dsv4_model_tokenizer_path(const dsv4_model *model);

/* ------------------------------------------------------------------------ */
/* Model information                                                         */
/* ------------------------------------------------------------------------ */

/** Model variants recognised by their configuration. @since 0.1.0 */
typedef int32_t dsv4_variant;
/** The values of dsv4_variant (explicit; never renumbered). @since 0.1.0 */
enum dsv4_variant_value {
    DSV4_VARIANT_CUSTOM     = 0, /**< the DeepSeek-V4 architecture at other sizes */
    DSV4_VARIANT_FLASH      = 1, /**< DeepSeek-V4-Flash */
    DSV4_VARIANT_PRO        = 2, /**< DeepSeek-V4-Pro */
    DSV4_VARIANT_FLASH_BASE = 3, /**< DeepSeek-V4-Flash-Base (FP8 experts) */
    DSV4_VARIANT_FLASH_0731 = 4  /**< the DeepSeek-V4-Flash-0731 trunk */
};

/** Attention type of a layer. @since 0.1.0 */
typedef int32_t dsv4_layer_type;
/** The values of dsv4_layer_type (explicit; never renumbered). @since 0.1.0 */
enum dsv4_layer_type_value {
    DSV4_LAYER_SWA = 1, /**< sliding window only */
    DSV4_LAYER_CSA = 2, /**< compressed (ratio 4, overlapping) with top-k indexer */
    DSV4_LAYER_HCA = 3  /**< heavily compressed (any other ratio), dense over entries */
};

/** Integer facts of dsv4_model_info_get_i64(). @since 0.1.0 */
typedef int32_t dsv4_info_key;
/** The values of dsv4_info_key (explicit; never renumbered). @since 0.1.0 */
enum dsv4_info_key_value {
    DSV4_INFO_VARIANT            = 1,  /**< dsv4_variant */
    DSV4_INFO_VOCAB_SIZE         = 2,
    DSV4_INFO_HIDDEN_SIZE        = 3,
    DSV4_INFO_N_LAYERS           = 4,  /**< trunk layers */
    DSV4_INFO_N_MTP_LAYERS       = 5,
    DSV4_INFO_N_HEADS            = 6,
    DSV4_INFO_HEAD_DIM           = 7,
    DSV4_INFO_N_ROUTED_EXPERTS   = 8,
    DSV4_INFO_N_ACTIVE_EXPERTS   = 9,
    DSV4_INFO_MOE_INTER_SIZE     = 10,
    DSV4_INFO_WINDOW             = 11,
    DSV4_INFO_INDEX_TOPK         = 12,
    DSV4_INFO_N_SWA_LAYERS       = 13,
    DSV4_INFO_N_CSA_LAYERS       = 14,
    DSV4_INFO_N_HCA_LAYERS       = 15,
    DSV4_INFO_MAX_POSITION       = 16, /**< max_position_embeddings */
    DSV4_INFO_PARAMS_TOTAL       = 17, /**< parameters, MTP included */
    DSV4_INFO_PARAMS_ACTIVE      = 18, /**< parameters used per token, embedding and head included */
    DSV4_INFO_BYTES_TOTAL        = 19, /**< bytes of all tensors as stored */
    DSV4_INFO_BYTES_BF16         = 20,
    DSV4_INFO_BYTES_F32          = 21,
    DSV4_INFO_BYTES_F8           = 22, /**< F8_E4M3 weights */
    DSV4_INFO_BYTES_E8M0         = 23, /**< F8_E8M0 scales */
    DSV4_INFO_BYTES_FP4          = 24, /**< packed e2m1 (stored as I8) */
    DSV4_INFO_BYTES_I64          = 25,
    DSV4_INFO_BYTES_PER_TOKEN    = 26, /**< weight bytes read to decode one token (trunk, no MTP) */
    DSV4_INFO_KV_BYTES_PER_1K    = 27, /**< KV bytes per 1024 tokens of context, reference numerics */
    DSV4_INFO_HAS_MTP            = 28, /**< 1 when the MTP block is present (and loaded) */
    DSV4_INFO_WEIGHTS_LOADED     = 29, /**< 1 for info of a loaded model, 0 for config-only info */
    /** bytes of physical memory of this machine, 0 when unknown; the
     *  environment variable DSV4_PHYS_MEM_LIMIT (bytes, or with a K, M, G
     *  or T suffix, powers of 1024) replaces it, e.g. to check a smaller
     *  machine's fit. dsv4_model_load() logs a warning when the weights
     *  exceed it. @since 0.1.0 */
    DSV4_INFO_PHYSICAL_MEMORY    = 30
};

#ifdef DSV4_ENABLE_EXPERIMENTAL
/**
 * Info keys of the experimental tier (more values of dsv4_info_key): the
 * memory of a loaded model (0 for config-only info; docs/memory.md). The
 * counters are read when dsv4_model_get_info() is called.
 * @experimental @since 0.1.0
 */
enum dsv4_info_key_experimental_value {
    /** bytes the weights hold in memory outside the expert cache: copies
     *  of the weights every token reads, vectors and tables (the mapped
     *  embedding not included) @experimental */
    DSV4_INFO_RESIDENT_BYTES     = 31,
    /** the memory budget in bytes (DSV4_OPT_MEM_BUDGET), 0 without one @experimental */
    DSV4_INFO_MEM_BUDGET         = 32,
    /** bytes of the expert cache's slots, 0 without a budget @experimental */
    DSV4_INFO_EXPERT_CACHE_BYTES = 33,
    /** routed experts the cache holds at once @experimental */
    DSV4_INFO_EXPERT_CACHE_SLOTS = 34,
    /** expected bytes read from the disk per decoded token (trunk), were
     *  the experts chosen uniformly: the selected experts' bytes times the
     *  fraction of experts the cache cannot hold; 0 without a budget
     *  @experimental */
    DSV4_INFO_DISK_BYTES_PER_TOKEN = 35,
    /** expert look-ups served by the cache, and those read from the disk,
     *  since the load (all contexts) @experimental */
    DSV4_INFO_EXPERT_HITS        = 36,
    DSV4_INFO_EXPERT_MISSES      = 37,
    /** bytes read from the shard files by the expert cache since the load @experimental */
    DSV4_INFO_DISK_BYTES_READ    = 38,
    /** bytes of weights locked in memory (DSV4_OPT_MEM_LOCK), 0 without the
     *  option @experimental */
    DSV4_INFO_LOCKED_BYTES       = 39
};
#endif

/**
 * Read facts from a checkpoint directory's config.json alone, without
 * touching the weights (for planning before a load). Tensor byte counts
 * are computed from the shapes the config implies.
 * @param path, opts, err_msg as for dsv4_model_load (opts may be NULL).
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT, DSV4_ERR_IO, DSV4_ERR_BAD_FORMAT,
 *         DSV4_ERR_BAD_CONFIG, DSV4_ERR_UNSUPPORTED, DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety any thread. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_model_info_from_dir(const char *path, const dsv4_options *opts,
                                              dsv4_model_info **out, char **err_msg);

/**
 * Facts of a loaded model (byte counts are those of the mapped tensors).
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT, DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety any thread. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_model_get_info(const dsv4_model *model, dsv4_model_info **out);

/** Free an info object; NULL is a no-op. @since 0.1.0 */
DSV4_API void dsv4_model_info_free(dsv4_model_info *info);

/**
 * One integer fact.
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT (NULL), DSV4_ERR_UNKNOWN_OPTION
 *         (key unknown to this version).
 * @threadsafety any thread. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_model_info_get_i64(const dsv4_model_info *info, dsv4_info_key key,
                                             int64_t *value);

/**
 * Attention type of trunk layer `layer` (0-based), or of the MTP block for
 * layer == n_layers.
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT (NULL or layer out of range).
 * @threadsafety any thread. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_model_info_layer_type(const dsv4_model_info *info, int32_t layer,
                                                dsv4_layer_type *type);

/**
 * Memory a session needs at `n_ctx` tokens of context: KV bytes (growing
 * with context) and total RAM estimate (mapped weights + KV + fixed
 * per-session state + the scratch of a context of `n_ctx` positions at
 * its default DSV4_OPT_MAX_BATCH), for `numerics`.
 * @param kv_bytes, ram_bytes  either may be NULL; nothing is written on failure.
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT (NULL info, n_ctx < 0, bad numerics,
 *         or n_ctx so large that a byte count would exceed INT64_MAX).
 * @threadsafety any thread. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_model_info_memory(const dsv4_model_info *info, int64_t n_ctx,
                                            dsv4_numerics numerics, int64_t *kv_bytes,
                                            int64_t *ram_bytes);

/**
 * All facts as a JSON object (for tools and bindings).
 * @param json  receives a NUL-terminated string to free with dsv4_free().
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT, DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety any thread. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_model_info_to_json(const dsv4_model_info *info, char **json);

/* ------------------------------------------------------------------------ */
/* Context                                                                   */
/* ------------------------------------------------------------------------ */

/**
 * Create a context: worker threads, scratch memory, numerics mode and the
 * context capacity of its sessions. Holds a reference to the model.
 * @param opts  NULL for defaults; reads DSV4_OPT_THREADS,
 *              DSV4_OPT_CONTEXT_LENGTH, DSV4_OPT_NUMERICS, DSV4_OPT_REVISION,
 *              DSV4_OPT_MAX_BATCH, DSV4_OPT_WORKER_SPIN and the log callback.
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT (NULL, context length above the
 *         model's maximum), DSV4_ERR_OUT_OF_MEMORY, DSV4_ERR_UNSUPPORTED.
 * @threadsafety any thread; the model may be shared. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_context_create(dsv4_model *model, const dsv4_options *opts,
                                         dsv4_context **out, char **err_msg);

/** Release the caller's reference to a context; NULL is a no-op.
 *  @threadsafety one thread per context. @since 0.1.0 */
DSV4_API void dsv4_context_free(dsv4_context *ctx);

/**
 * Message of the last failed call on this context or its sessions' creation;
 * "" when none. Owned by the context, valid until its next call.
 * @threadsafety one thread per context. @since 0.1.0
 */
DSV4_API const char *dsv4_context_last_error(const dsv4_context *ctx);

/* ------------------------------------------------------------------------ */
/* Session                                                                   */
/* ------------------------------------------------------------------------ */

/**
 * Create a session (one conversation) at position 0. Its KV memory for the
 * context's full capacity is reserved here, so a later eval never fails for
 * lack of memory. Holds a reference to the context.
 * @param opts  NULL for defaults; reads DSV4_OPT_MTP.
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT, DSV4_ERR_OUT_OF_MEMORY,
 *         DSV4_ERR_NOT_AVAILABLE (MTP asked for, model has none).
 * @threadsafety one thread per context. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_session_create(dsv4_context *ctx, const dsv4_options *opts,
                                         dsv4_session **out, char **err_msg);

/** Release the caller's reference to a session; NULL is a no-op.
 *  @threadsafety one thread per context. @since 0.1.0 */
DSV4_API void dsv4_session_free(dsv4_session *session);

/**
 * Message of the last failed call on this session; "" when none. Owned by
 * the session, valid until its next call.
 * @threadsafety one thread per context. @since 0.1.0
 */
DSV4_API const char *dsv4_session_last_error(const dsv4_session *session);

/** Flags of dsv4_session_eval(). @since 0.1.0 */
enum {
    /** keep the logits of every position of this call, not only the last */
    DSV4_EVAL_ALL_LOGITS = 1u << 0
};

/**
 * Feed `n` tokens at the session's current position and advance it by `n`.
 * The call prefills any number of tokens; feeding a prompt in pieces of any
 * sizes gives the same results as one piece. Afterwards the logits of the
 * last position (all positions of this call with DSV4_EVAL_ALL_LOGITS) can
 * be read with dsv4_session_logits(); with DSV4_OPT_MTP the MTP logits of
 * the positions that became computable can be read too.
 *
 * On failure the session is unchanged (position, state, logits), except for
 * DSV4_ERR_INTERNAL after which it must be reset, and DSV4_ERR_ABORTED from
 * a progress callback, which keeps the chunks already run
 * (dsv4_session_set_progress, experimental tier).
 *
 * @param tokens  n token ids, each in [0, vocab_size); borrowed for the call.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULL, n == 0, token out of
 *         range, unknown flag); DSV4_ERR_CONTEXT_FULL (position + n above the
 *         capacity); DSV4_ERR_OUT_OF_MEMORY; DSV4_ERR_ABORTED (progress
 *         callback); DSV4_ERR_INTERNAL.
 * @threadsafety one thread per context. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_session_eval(dsv4_session *session, const int32_t *tokens, size_t n,
                                       uint32_t flags);

/**
 * Copy the next-token logits after the token at absolute position `pos`
 * (as computed by the last dsv4_session_eval) into `dst`.
 * @param pos  absolute position, or -1 for the last position fed.
 * @param dst  `cap` floats; cap must be >= vocab_size.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULL); DSV4_ERR_BUFFER_TOO_SMALL;
 *         DSV4_ERR_NOT_AVAILABLE (pos not among the positions kept).
 * @threadsafety one thread per context. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_session_logits(const dsv4_session *session, int64_t pos, float *dst,
                                         size_t cap);

/**
 * Copy MTP logits of row `pos`: the MTP block's prediction of the token at
 * pos+2 from the trunk state at pos and the token at pos+1. Rows become
 * available as soon as the token at pos+1 has been fed (with DSV4_OPT_MTP);
 * every row computed by the last eval is kept.
 * @param pos  absolute position, or -1 for the last row computed.
 * @return as dsv4_session_logits().
 * @threadsafety one thread per context. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_session_mtp_logits(const dsv4_session *session, int64_t pos,
                                             float *dst, size_t cap);

/**
 * Draft: MTP logits for the token after `next_token`, where next_token is
 * the (not yet fed) token at the session's current position. Does not
 * advance the session. Needs DSV4_OPT_MTP.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT; DSV4_ERR_BUFFER_TOO_SMALL;
 *         DSV4_ERR_NOT_AVAILABLE (no MTP, or position 0);
 *         DSV4_ERR_CONTEXT_FULL.
 * @threadsafety one thread per context. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_session_mtp_draft(dsv4_session *session, int32_t next_token,
                                            float *dst, size_t cap);

/**
 * Number of tokens fed so far (the position of the next token).
 * Returns -1 for NULL. @threadsafety one thread per context. @since 0.1.0
 */
DSV4_API int64_t dsv4_session_position(const dsv4_session *session);

/**
 * Forget the conversation: position 0, all decode state cleared.
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT.
 * @threadsafety one thread per context. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_session_reset(dsv4_session *session);

/**
 * KV bytes this session has reserved for its full capacity, and bytes in
 * use at its current position.
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT.
 * @threadsafety one thread per context. @since 0.1.0
 */
DSV4_API dsv4_status dsv4_session_memory(const dsv4_session *session, int64_t *reserved_bytes,
                                         int64_t *used_bytes);

#ifdef DSV4_ENABLE_EXPERIMENTAL
/**
 * Progress of a long prefill: `done` of `total` tokens of the current call
 * have been fed (0 <= done <= total). Return 0 to go on, any other value to
 * stop; the call then fails with DSV4_ERR_ABORTED. Runs on the calling
 * thread, never on a worker; it must not call back into the session or
 * generator that reports. @experimental @since 0.1.0
 */
typedef int32_t (*dsv4_eval_progress_fn)(void *user, int64_t done, int64_t total);

/**
 * Report the progress of each dsv4_session_eval() on this session to `fn`
 * (NULL = none, the default): once with done = 0 before any work, then
 * after each chunk of up to DSV4_OPT_MAX_BATCH tokens, the last time with
 * done = total. When fn stops the call (nonzero), the session keeps the
 * tokens of the chunks already run: its position is the old one plus the
 * `done` of the report that stopped it, and the logits kept are those of
 * the positions fed (as if the call had been given only those tokens);
 * DSV4_ERR_ABORTED is returned. With a callback, each chunk runs as its own
 * forward pass, which gives the same results.
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT (session NULL).
 * @threadsafety one thread per context. @experimental @since 0.1.0
 */
DSV4_EXPERIMENTAL_API dsv4_status dsv4_session_set_progress(dsv4_session *session, dsv4_eval_progress_fn fn,
                                                            void *user);
#endif

#ifdef DSV4_ENABLE_EXPERIMENTAL
/* ------------------------------------------------------------------------ */
/* Sessions that last: history, checkpoints, rewind, save and restore       */
/* (docs/sessions.md). @experimental                                        */
/* ------------------------------------------------------------------------ */

/**
 * The tokens the session holds: every token fed since position 0 (or as
 * restored), in order; their count equals dsv4_session_position().
 * @param dst  NULL to ask for the count only, else room for `cap` tokens.
 * @param n    receives the count (always, when not NULL).
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (session or n NULL);
 *         DSV4_ERR_BUFFER_TOO_SMALL (dst given and cap below the count;
 *         nothing written).
 * @threadsafety one thread per context. @experimental @since 0.1.0
 */
DSV4_EXPERIMENTAL_API dsv4_status dsv4_session_tokens(const dsv4_session *session, int32_t *dst, size_t cap,
                                                      size_t *n);

/**
 * Take a checkpoint at the current position: an exact copy of the decode
 * state (only what the position uses: about the KV bytes in use, see
 * dsv4_session_memory) and of the last logits, owned by the session. A
 * checkpoint already at this position is replaced. When the session then
 * holds more checkpoints than its limit (dsv4_session_set_checkpoint_limit),
 * the least recently taken or used ones are dropped. Checkpoints above a
 * position are dropped when the session goes back below it (rewind, reset,
 * restore). The generator takes one at the end of every prompt.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULL); DSV4_ERR_OUT_OF_MEMORY;
 *         DSV4_ERR_NOT_AVAILABLE (checkpoints are off, limit 0, or this one
 *         alone is above the byte limit). On failure the session and its
 *         other checkpoints are unchanged.
 * @threadsafety one thread per context. @experimental @since 0.1.0
 */
DSV4_EXPERIMENTAL_API dsv4_status dsv4_session_checkpoint(dsv4_session *session);

/**
 * Positions of the session's checkpoints, ascending.
 * @param positions  NULL to ask for the count only, else room for `cap`.
 * @param n          receives the count.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (session or n NULL);
 *         DSV4_ERR_BUFFER_TOO_SMALL (nothing written).
 * @threadsafety one thread per context. @experimental @since 0.1.0
 */
DSV4_EXPERIMENTAL_API dsv4_status dsv4_session_checkpoints(const dsv4_session *session, int64_t *positions,
                                                           size_t cap, size_t *n);

/**
 * Limit the checkpoints a session keeps: at most `max_count` (default 4;
 * 0 turns checkpoints off and drops all) and, when `max_bytes` > 0, at most
 * that many bytes together (default 0: no byte limit). Checkpoints above
 * the new limits are dropped, least recently used first.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULL, max_count < 0 or above
 *         4096, max_bytes < 0).
 * @threadsafety one thread per context. @experimental @since 0.1.0
 */
DSV4_EXPERIMENTAL_API dsv4_status dsv4_session_set_checkpoint_limit(dsv4_session *session, int32_t max_count,
                                                                    int64_t max_bytes);

/** Flags of dsv4_session_rewind(). @experimental @since 0.1.0 */
enum {
    /** re-feed the tokens after the checkpoint in one call (faster when
     *  they were fed one by one; the results then match those of a session
     *  fed that way, up to the float summation order of batched products) */
    DSV4_REWIND_BATCHED = 1u << 0
};

/**
 * Truncate the session to position `pos` (0 <= pos <= position): restore
 * its nearest checkpoint at or before pos (position 0 when none) and
 * re-feed the tokens of its history from there up to pos. By default the
 * tokens are re-fed in the same eval calls they were first fed in (the
 * call that spanned pos cut at pos), so the session's state and every
 * later logit are bit-identical to those of a session that received the
 * same calls and never went beyond pos. Afterwards the logits of position
 * pos-1 can be read (from the last re-fed call, or the checkpoint's own
 * when it sits at pos); MTP logits only from the re-fed calls.
 * Checkpoints above pos are dropped. pos == position is a no-op.
 * @param flags  0 or DSV4_REWIND_BATCHED.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULL, pos outside
 *         [0, position], unknown flag; session unchanged);
 *         DSV4_ERR_OUT_OF_MEMORY (session unchanged); DSV4_ERR_INTERNAL
 *         (the session must be reset).
 * @threadsafety one thread per context. @experimental @since 0.1.0
 */
DSV4_EXPERIMENTAL_API dsv4_status dsv4_session_rewind(dsv4_session *session, int64_t pos, uint32_t flags);

/**
 * Sink of dsv4_session_save(): write all `len` bytes of `data`; return 0
 * on success, anything else to fail the save (DSV4_ERR_IO). Runs on the
 * calling thread. @experimental @since 0.1.0
 */
typedef int32_t (*dsv4_write_fn)(void *user, const void *data, size_t len);

/**
 * Source of dsv4_session_restore(): read up to `len` bytes into `dst`;
 * return the bytes read (0 at the end of the input, fewer than len is
 * fine), or a negative value for an error (DSV4_ERR_IO). Runs on the
 * calling thread. @experimental @since 0.1.0
 */
typedef int64_t (*dsv4_read_fn)(void *user, void *dst, size_t len);

/** Flags of dsv4_session_save(). @experimental @since 0.1.0 */
enum {
    /** store the sections raw instead of zstd-compressed */
    DSV4_SAVE_UNCOMPRESSED = 1u << 0,
    /** leave the session's checkpoints out (a smaller file; the restored
     *  session then rewinds from position 0) */
    DSV4_SAVE_NO_CHECKPOINTS = 1u << 1
};

/**
 * Save the session: the exact decode state at its position, its token
 * history (with its eval calls' boundaries), its last logits and its
 * checkpoints (so that a restored session rewinds as cheaply as this one),
 * in the versioned session format of docs/sessions.md (magic, format and
 * library version, model fingerprint, numerics, revision, context length,
 * MTP flag, position; zstd-compressed sections; checksums). Files are
 * written in format version 2; version 1 files (no checkpoints, libdsv4
 * before checkpoints were saved) are still read. The session is not changed.
 * @param fn     receives the bytes in order (several calls).
 * @param flags  0 or a combination of DSV4_SAVE_UNCOMPRESSED and
 *               DSV4_SAVE_NO_CHECKPOINTS.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULL, unknown flag);
 *         DSV4_ERR_OUT_OF_MEMORY; DSV4_ERR_IO (the sink failed; what it
 *         was given so far is not a whole file).
 * @threadsafety one thread per context. @experimental @since 0.1.0
 */
DSV4_EXPERIMENTAL_API dsv4_status dsv4_session_save(dsv4_session *session, dsv4_write_fn fn, void *user,
                                                    uint32_t flags);

/**
 * dsv4_session_save() to a file descriptor (written from its current
 * offset; not closed). Same statuses; DSV4_ERR_IO when a write fails.
 * @experimental @since 0.1.0
 */
DSV4_EXPERIMENTAL_API dsv4_status dsv4_session_save_fd(dsv4_session *session, int fd, uint32_t flags);

/**
 * dsv4_session_save() into a caller buffer of `cap` bytes; *len receives
 * the size of the saved state (also when the buffer is too small).
 * The bytes are written in place as they come (no copy is allocated);
 * buf NULL with cap 0 asks for the size only.
 * @return as dsv4_session_save(); DSV4_ERR_BUFFER_TOO_SMALL (*len is the
 *         size needed; the buffer holds no whole file: its first bytes may
 *         have been written). @experimental @since 0.1.0
 */
DSV4_EXPERIMENTAL_API dsv4_status dsv4_session_save_buffer(dsv4_session *session, void *buf, size_t cap,
                                                           size_t *len, uint32_t flags);

/**
 * Restore a session saved with dsv4_session_save() by a session of the
 * same model (fingerprint of its config and tensor table), numerics,
 * revision and MTP setting, into a context at least as long as the saved
 * position. The whole input is read, checked and decompressed first
 * (allocations bounded by this session's own capacity and checkpoint
 * count); only then is the session replaced: position, state, history,
 * last logits, and its checkpoints by those of the file (then limited by
 * dsv4_session_set_checkpoint_limit as usual; a file without checkpoints
 * leaves none). On any failure the session is unchanged.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULL); DSV4_ERR_BAD_FORMAT
 *         (not a session file, unknown format version, truncated,
 *         checksum mismatch, corrupt section, bad token or value);
 *         DSV4_ERR_INCOMPATIBLE (another model, numerics, revision or MTP
 *         setting; more checkpoints than this session keeps, when that is
 *         above the default 4: raise its limit first); DSV4_ERR_CONTEXT_FULL (the saved position exceeds this
 *         context's length); DSV4_ERR_IO (the source failed);
 *         DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety one thread per context. @experimental @since 0.1.0
 */
DSV4_EXPERIMENTAL_API dsv4_status dsv4_session_restore(dsv4_session *session, dsv4_read_fn fn, void *user);

/** dsv4_session_restore() from a file descriptor (read from its current
 *  offset to the end of the saved state; not closed). @experimental @since 0.1.0 */
DSV4_EXPERIMENTAL_API dsv4_status dsv4_session_restore_fd(dsv4_session *session, int fd);

/** dsv4_session_restore() from `len` bytes at `buf` (borrowed for the
 *  call; trailing bytes after the saved state are refused as
 *  DSV4_ERR_BAD_FORMAT). @experimental @since 0.1.0 */
DSV4_EXPERIMENTAL_API dsv4_status dsv4_session_restore_buffer(dsv4_session *session, const void *buf,
                                                              size_t len);
/** A cache of session states keyed by their token prefix, shared by the
 *  sessions of a context and by contexts of one model (docs/sessions.md).
 *  @experimental @since 0.1.0 */
typedef struct dsv4_prefix_cache dsv4_prefix_cache;

/**
 * Create a prefix cache holding at most `max_bytes` of states in memory
 * (least recently used dropped first), optionally backed by the directory
 * `dir` (created if missing): every stored state is also written there as a
 * session file (docs/sessions.md), and the files already there — from this
 * or an earlier process — are indexed at creation and restored when they
 * match (a file that fails its checks is skipped). The directory's entry
 * files are kept within a disk budget (DSV4_PREFIX_CACHE_DISK_DEFAULT until
 * dsv4_prefix_cache_set_disk_limit), least recently used removed first; it
 * may be shared by several processes at once (files are written under a
 * temporary name and renamed; one that vanishes is dropped from the index).
 * Entries of any model live side by side: a lookup only
 * considers those of the session's model, numerics, revision and MTP setting.
 * @param dir      NULL for memory only; borrowed for the call.
 * @param err_msg  optional, as for dsv4_model_load.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (out NULL, max_bytes < 0);
 *         DSV4_ERR_IO (dir cannot be created or read); DSV4_ERR_OUT_OF_MEMORY.
 * @threadsafety any thread; the cache itself may then be used from any
 *               number of threads at once (it locks). @experimental @since 0.1.0
 */
DSV4_EXPERIMENTAL_API dsv4_status dsv4_prefix_cache_create(int64_t max_bytes, const char *dir,
                                                           dsv4_prefix_cache **out, char **err_msg);

/** Release the caller's reference (sessions using the cache keep it
 *  alive); NULL is a no-op. @experimental @since 0.1.0 */
DSV4_EXPERIMENTAL_API void dsv4_prefix_cache_free(dsv4_prefix_cache *cache);

/** The disk budget of a cache's directory until
 *  dsv4_prefix_cache_set_disk_limit: 8 GiB. @experimental @since 0.1.0 */
#define DSV4_PREFIX_CACHE_DISK_DEFAULT (INT64_C(8) << 30)

/**
 * Limit the bytes of entry files in the cache's directory (0: no limit).
 * After every file it writes, and now, the cache removes the directory's
 * least recently used entry files until the rest fit; the file just written
 * goes last (alone above the budget, it goes too: the entry then lives in
 * memory only). "Used" is the time the cache records in the file (its
 * modification time, set when a cache of any process writes, restores or
 * re-stores it; never the access time), so processes sharing the directory
 * evict in one order; each applies its own budget. Temporary files of
 * writers that died over an hour ago are removed too. No-op without a
 * directory.
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULL, max_bytes < 0).
 * @threadsafety any thread. @experimental @since 0.1.0
 */
DSV4_EXPERIMENTAL_API dsv4_status dsv4_prefix_cache_set_disk_limit(dsv4_prefix_cache *cache, int64_t max_bytes);

/**
 * Store the session's state at its current position, keyed by its token
 * history (nothing to do at position 0 or when an equal entry exists, which
 * then counts as used).
 * @return DSV4_OK; DSV4_ERR_INVALID_ARGUMENT (NULL); DSV4_ERR_OUT_OF_MEMORY;
 *         DSV4_ERR_NOT_AVAILABLE (the state alone is above the budget and
 *         there is no directory); DSV4_ERR_IO (writing the file failed; the
 *         memory entry is kept). The session is not changed.
 * @threadsafety one thread per session's context; any thread for the cache.
 * @experimental @since 0.1.0
 */
DSV4_EXPERIMENTAL_API dsv4_status dsv4_prefix_cache_store(dsv4_prefix_cache *cache, dsv4_session *session);

/**
 * Put the session at the longest cached prefix of tokens[0..n): of more
 * than `at_least` tokens (0: any; the generator passes what the session
 * already holds), at most n, and n only when the entry holds its last
 * logits. The session
 * then holds that prefix (history, state, last logits; its checkpoints
 * beyond what its old and new histories share are dropped); *restored
 * receives its length, 0 when nothing matched (the session unchanged).
 * @return DSV4_OK (also for no match); DSV4_ERR_INVALID_ARGUMENT (NULL);
 *         DSV4_ERR_OUT_OF_MEMORY. A file entry that fails its checks is
 *         dropped from the index and the next best entry is tried.
 * @threadsafety one thread per session's context; any thread for the cache.
 * @experimental @since 0.1.0
 */
DSV4_EXPERIMENTAL_API dsv4_status dsv4_prefix_cache_restore(dsv4_prefix_cache *cache, dsv4_session *session,
                                                            const int32_t *tokens, size_t n, size_t at_least,
                                                            size_t *restored);

/** Counters of dsv4_prefix_cache_stats(). @experimental @since 0.1.0 */
typedef int32_t dsv4_cache_stat;
/** The values of dsv4_cache_stat. @experimental @since 0.1.0 */
enum dsv4_cache_stat_value {
    DSV4_CACHE_ENTRIES = 1,      /**< entries indexed (memory or file) */
    DSV4_CACHE_BYTES = 2,        /**< bytes of states held in memory */
    DSV4_CACHE_HITS = 3,         /**< restores that found a prefix */
    DSV4_CACHE_MISSES = 4,       /**< restores that found none */
    DSV4_CACHE_HIT_TOKENS = 5,   /**< tokens restored in all */
    DSV4_CACHE_EVICTIONS = 6,    /**< states dropped from memory for the budget */
    DSV4_CACHE_DISK_BYTES = 7,   /**< bytes of entry files in the directory at the last trim (0 without one) */
    DSV4_CACHE_DISK_EVICTIONS = 8 /**< entry files this cache removed for the disk budget */
};

/** One counter; -1 for NULL or an unknown key. @threadsafety any thread.
 *  @experimental @since 0.1.0 */
DSV4_EXPERIMENTAL_API int64_t dsv4_prefix_cache_stat(const dsv4_prefix_cache *cache, dsv4_cache_stat key);

/**
 * Attach a prefix cache to a session (NULL detaches): the generator then
 * restores the longest cached prefix of every prompt and stores the state
 * at the end of every prompt. The session holds a reference.
 * @return DSV4_OK, DSV4_ERR_INVALID_ARGUMENT (session NULL).
 * @threadsafety one thread per context. @experimental @since 0.1.0
 */
DSV4_EXPERIMENTAL_API dsv4_status dsv4_session_set_prefix_cache(dsv4_session *session, dsv4_prefix_cache *cache);

/** The session's prefix cache, or NULL (borrowed). @experimental @since 0.1.0 */
DSV4_EXPERIMENTAL_API dsv4_prefix_cache *dsv4_session_prefix_cache(const dsv4_session *session);
#endif /* DSV4_ENABLE_EXPERIMENTAL */

#ifdef __cplusplus
}
#endif

/* The tokenizer, the chat layer, the sampler and generation live in their own headers, part of this one. */
#include "dsv4/dsv4_text.h"
#include "dsv4/dsv4_chat.h"
#include "dsv4/dsv4_sampler.h"
#include "dsv4/dsv4_gen.h"

#endif /* LIBDSV4_DSV4_H */

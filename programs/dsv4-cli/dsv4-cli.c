/*
 * dsv4-cli — chat with a DeepSeek-V4 model from the command line.
 *
 *   dsv4-cli [options] MODEL_DIR [PROMPT | -]
 *
 * With a prompt (an argument, -p TEXT, -f FILE, or "-" for standard input)
 * it answers once; without one it is an interactive multi-turn chat that
 * reads one message per line until end of input or /exit. Each turn is sent
 * to the generator as an OpenAI-style chat request (the whole conversation
 * so far); when that prompt starts with everything the session holds, the
 * generator feeds only the rest (without thinking; with thinking the
 * earlier reasoning is dropped from the prompt, so it does not match).
 *
 * Thinking is on by default (the model reasons, then answers). Without
 * --think-budget the reasoning gets at most half of --max-tokens, so that an
 * answer always follows within --max-tokens; --no-think (or --effort none)
 * turns thinking off.
 *
 * Reasoning, content and tool calls are printed as they are generated;
 * --raw-json prints the chat-completion response JSON instead. A line of
 * timings goes to stderr after each answer; on a terminal, the prompt
 * shows its prefill progress while it is fed. Warnings of the library
 * (such as weights larger than the physical memory) go to stderr. Ctrl-C
 * stops the answer being generated (finish reason "cancelled"); a second
 * Ctrl-C exits.
 *
 * Exit status: 0 success, 1 runtime error (model, files, request, a failed
 * generation), 2 bad usage, 130 interrupted.
 */
#define DSV4_ENABLE_EXPERIMENTAL 1 /* --session, --prompt-cache (docs/sessions.md), dsv4_gen_set_progress */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include <dsv4/dsv4.h>
#include "../common/common.h"

#define PROG "dsv4-cli"

enum { EXIT_RUNTIME = 1, EXIT_USAGE = 2, EXIT_INTERRUPTED = 130 };

/* The generator accepts at most this many stop strings (dsv4_gen_add_stop). */
#define MAX_STOPS 16
#define MAX_STOP_LEN 256
/* The CLI's answers are short by default: a terminal user wants to see
 * something soon, and --max-tokens raises it. */
#define DEFAULT_MAX_TOKENS 256
/* The library's default context length, lowered for models with a shorter
 * maximum so that a small model still starts without --ctx. */
#define DEFAULT_CTX 4096

/* ------------------------------------------------------------------------ */
/* Ctrl-C                                                                    */
/* ------------------------------------------------------------------------ */

/* The signal handler only touches these. g_cancellable is set while a
 * model loads or an answer is generated: the first Ctrl-C then asks that
 * work to stop (the program carries on and cleans up); any other Ctrl-C
 * exits at once. */
static volatile sig_atomic_t g_interrupts;
static volatile sig_atomic_t g_cancellable;
static volatile sig_atomic_t g_faint; /* stdout is inside an ANSI faint span */
static dsv4_gen *volatile g_gen;

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupts++;
    if (g_interrupts == 1 && g_cancellable) {
        dsv4_gen *g = g_gen;
        if (g) dsv4_gen_cancel(g); /* documented safe from any thread at any time */
        return;
    }
    /* Leave the terminal as we found it; write() and _exit() are
     * async-signal-safe, stdio is not. */
    if (g_faint) (void)!write(STDOUT_FILENO, "\033[0m", 4);
    (void)!write(STDERR_FILENO, "\n", 1);
    _exit(EXIT_INTERRUPTED);
}

static void install_sigint(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
}

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Read a whole file (or standard input for "-") into a NUL-terminated
 * buffer. Prints the reason and returns false on failure. */
static bool read_all(const char *path, char **out, size_t *out_len)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        fprintf(stderr, PROG ": cannot open %s: %s\n", path, strerror(errno));
        return false;
    }
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    bool ok = buf != NULL;
    while (ok) {
        if (cap - len < 2) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                ok = false;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
    }
    if (ok && ferror(f)) {
        fprintf(stderr, PROG ": cannot read %s: %s\n", path, strerror(errno));
        ok = false;
    } else if (!ok) {
        fprintf(stderr, PROG ": out of memory reading %s\n", path);
    }
    if (f != stdin) fclose(f);
    if (!ok) {
        free(buf);
        return false;
    }
    buf[len] = '\0';
    *out = buf;
    if (out_len) *out_len = len;
    return true;
}

/* A prompt read from a file or a pipe usually ends with a newline the user
 * did not mean as part of the message. */
static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r')) s[--n] = '\0';
}

/* A JSON file for --schema / --tools; `type` is the JSON type it must have. */
static json_t *load_json_file(const char *path, json_type type, const char *what)
{
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    if (!j) {
        if (e.line > 0)
            fprintf(stderr, PROG ": %s %s: line %d column %d: %s\n", what, path, e.line, e.column, e.text);
        else
            fprintf(stderr, PROG ": %s %s: %s\n", what, path, e.text);
        return NULL;
    }
    if (json_typeof(j) != type) {
        fprintf(stderr, PROG ": %s %s: expected a JSON %s\n", what, path, type == JSON_ARRAY ? "array" : "object");
        json_decref(j);
        return NULL;
    }
    return j;
}

/* ------------------------------------------------------------------------ */
/* Command line                                                              */
/* ------------------------------------------------------------------------ */

typedef struct cli {
    const char *model_dir, *tokenizer, *prompt_arg, *prompt_file, *prompt_text;
    const char *system, *effort, *schema_file, *tools_file, *tool_choice;
    const char *session_file, *cache_dir;
    const char *stops[MAX_STOPS];
    int n_stops;
    bool no_think, json_mode, raw_json, quiet, hide_reasoning;
    bool has_temperature, has_top_p, has_top_k, has_seed, has_think_budget, has_threads, has_ctx, has_spin;
    double temperature, top_p;
    int64_t top_k, seed, think_budget, threads, ctx, max_tokens, spin;
    int64_t speculative; /* DSV4_GEN_SPECULATIVE */
    int64_t mem_budget, mem_pct;   /* --mem-budget: bytes, or a percentage of the memory */
    bool mlock;                    /* --mlock */
} cli;

static void print_usage(FILE *f)
{
    fprintf(f,
            "usage: " PROG " [options] MODEL_DIR [PROMPT | -]\n"
            "\n"
            "With a prompt: answer it once. Without: interactive chat, one message per line\n"
            "(a line ending in \\ continues on the next; /reset starts over, /exit ends).\n"
            "\n"
            "input:\n"
            "  -p, --prompt TEXT       the prompt (instead of the PROMPT argument)\n"
            "  -f, --file FILE         read the prompt from FILE (\"-\": standard input)\n"
            "  --system TEXT           a system message first\n"
            "  --tokenizer FILE        tokenizer.json (default: MODEL_DIR/tokenizer.json)\n"
            "thinking (on by default):\n"
            "  --effort LEVEL          none|low|medium|high|max (none = no thinking)\n"
            "  --no-think              answer without thinking\n"
            "  --think-budget N        reasoning tokens at most (default: half of --max-tokens,\n"
            "                          so that an answer follows)\n"
            "sampling (applied in thinking mode too):\n"
            "  --temperature X  --top-p X  --top-k N  --seed N\n"
            "  --max-tokens N          tokens per answer, reasoning included (default %d)\n"
            "  --stop STR              end the answer at STR (repeatable, at most %d)\n"
            "output format:\n"
            "  --json                  the answer is one JSON object\n"
            "  --schema FILE           the answer follows this JSON schema\n"
            "  --tools FILE            a JSON array of OpenAI tools the model may call\n"
            "  --tool-choice C         auto|none|required|NAME (NAME: call that tool)\n"
            "runtime:\n"
            "  --threads N             worker threads, at most 1024 (default: one per core)\n"
            "  --ctx N                 context length in tokens (default %d)\n"
            "  --mem-budget SIZE|P%%    keep the weights within SIZE bytes (K, M, G, T suffixes) or P%%\n"
            "                          of the memory: routed experts are read from the disk into a\n"
            "                          cache as needed (docs/memory.md; same outputs, slower)\n"
            "  --mlock                 lock the weights held in memory (and the expert cache) so the\n"
            "                          system never pages them out (a warning if the system refuses)\n"
            "  --spin N|auto           pauses the worker threads spin before sleeping: auto\n"
            "                          (default) spins while it pays; 0 sleeps at once (shared cores)\n"
            "  --speculative N         speculative decoding with the model's MTP head (experimental):\n"
            "                          0 off (default); 1 exact: the same answer as without, token for\n"
            "                          token (no faster yet); 2 faster: token and draft in one pass\n"
            "                          (an answer may differ where two choices are within rounding)\n"
            "sessions (docs/sessions.md):\n"
            "  --session FILE          restore the session (and the chat in FILE.json) if FILE exists;\n"
            "                          save both on exit\n"
            "  --prompt-cache DIR      keep the state at the end of every prompt in DIR and start\n"
            "                          later prompts from the longest one they begin with\n"
            "display:\n"
            "  --show-reasoning        print the reasoning (default; dimmed on a terminal)\n"
            "  --hide-reasoning        do not print it\n"
            "  --raw-json              print the response JSON instead of streaming text\n"
            "  --quiet                 no progress and no timing lines on stderr\n"
            "  -h, --help              this text\n"
            "  --version               versions\n"
            "\n"
            "exit status: 0 ok, 1 runtime error, 2 bad usage, 130 interrupted\n",
            DEFAULT_MAX_TOKENS, MAX_STOPS, DEFAULT_CTX);
}

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, PROG ": ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(" PROG " --help lists the options)\n");
    va_end(ap);
    return EXIT_USAGE;
}

static bool parse_i64(const char *flag, const char *v, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, PROG ": bad value for %s: '%s' (an integer", flag, v);
        if (hi == INT64_MAX) fprintf(stderr, " >= %lld)\n", (long long)lo);
        else fprintf(stderr, " in [%lld, %lld])\n", (long long)lo, (long long)hi);
        return false;
    }
    *out = x;
    return true;
}

/* --mem-budget: "12G", "12GiB", "800M", bytes, or "50%" of the physical memory */
static bool parse_budget(const char *v, int64_t *bytes, int64_t *pct)
{
    if (dsv4p_parse_size(v, bytes, pct)) return true;
    fprintf(stderr, PROG ": bad value for --mem-budget: '%s' (bytes with an optional K, M, G or T suffix, or "
            "a percentage such as 50%%)\n", v);
    return false;
}

static bool parse_f64(const char *flag, const char *v, double lo, double hi, bool lo_open, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x) || x < lo || x > hi || (lo_open && x == lo)) {
        fprintf(stderr, PROG ": bad value for %s: '%s' (a number in %c%g, %g])\n", flag, v, lo_open ? '(' : '[', lo,
                hi);
        return false;
    }
    *out = x;
    return true;
}

/* Parse argv into c. Returns -1 to go on, else the exit status (0 after
 * --help / --version). Options may come before or after the positional
 * arguments; "--" ends them. */
static int parse_args(int argc, char **argv, cli *c)
{
    memset(c, 0, sizeof *c);
    c->max_tokens = DEFAULT_MAX_TOKENS;
    const char *pos[2];
    int n_pos = 0;
    bool only_pos = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || !strcmp(a, "-")) {
            if (n_pos == 2) return usage_error("unexpected argument '%s'", a);
            pos[n_pos++] = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            only_pos = true;
            continue;
        }
        /* "--name=value" and "--name value" are both accepted. */
        char name[64];
        const char *val = NULL, *eq = strncmp(a, "--", 2) ? NULL : strchr(a, '=');
        size_t nl = eq ? (size_t)(eq - a) : strlen(a);
        if (nl >= sizeof name) return usage_error("unknown option '%s'", a);
        memcpy(name, a, nl);
        name[nl] = '\0';
        if (eq) val = eq + 1;

        /* options without a value */
        bool *flag = NULL;
        if (!strcmp(name, "-h") || !strcmp(name, "--help")) {
            print_usage(stdout);
            return 0;
        } else if (!strcmp(name, "--version")) {
            printf(PROG " (libdsv4 %s)\n", dsv4_version_string());
            return 0;
        } else if (!strcmp(name, "--no-think")) flag = &c->no_think;
        else if (!strcmp(name, "--json")) flag = &c->json_mode;
        else if (!strcmp(name, "--raw-json")) flag = &c->raw_json;
        else if (!strcmp(name, "--quiet")) flag = &c->quiet;
        else if (!strcmp(name, "--mlock")) flag = &c->mlock;
        else if (!strcmp(name, "--hide-reasoning")) flag = &c->hide_reasoning;
        else if (!strcmp(name, "--show-reasoning")) {
            if (eq) return usage_error("option %s takes no value", name);
            c->hide_reasoning = false;
            continue;
        }
        if (flag) {
            if (eq) return usage_error("option %s takes no value", name);
            *flag = true;
            continue;
        }

        /* options with a value */
        static const char *const with_value[] = {
            "-p", "--prompt", "-f", "--file", "--system", "--tokenizer", "--effort", "--think-budget",
            "--temperature", "--top-p", "--top-k", "--seed", "--max-tokens", "--stop", "--schema", "--tools",
            "--tool-choice", "--threads", "--ctx", "--spin", "--speculative", "--session", "--prompt-cache", "--mem-budget",
        };
        bool known = false;
        for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++) known |= !strcmp(name, with_value[k]);
        if (!known) return usage_error("unknown option '%s'", a);
        if (!val) {
            if (i + 1 >= argc) return usage_error("option %s needs a value", name);
            val = argv[++i];
        }
        if (!strcmp(name, "-p") || !strcmp(name, "--prompt")) c->prompt_text = val;
        else if (!strcmp(name, "-f") || !strcmp(name, "--file")) c->prompt_file = val;
        else if (!strcmp(name, "--system")) c->system = val;
        else if (!strcmp(name, "--session")) c->session_file = val;
        else if (!strcmp(name, "--prompt-cache")) c->cache_dir = val;
        else if (!strcmp(name, "--tokenizer")) c->tokenizer = val;
        else if (!strcmp(name, "--schema")) c->schema_file = val;
        else if (!strcmp(name, "--tools")) c->tools_file = val;
        else if (!strcmp(name, "--tool-choice")) {
            if (!*val) return usage_error("--tool-choice needs auto, none, required or a tool name");
            c->tool_choice = val;
        } else if (!strcmp(name, "--effort")) {
            static const char *const levels[] = { "none", "low", "medium", "high", "max" };
            bool ok = false;
            for (size_t k = 0; k < 5; k++) ok |= !strcmp(val, levels[k]);
            if (!ok) return usage_error("bad value for --effort: '%s' (none, low, medium, high or max)", val);
            c->effort = val;
        } else if (!strcmp(name, "--stop")) {
            size_t n = strlen(val);
            if (n < 1 || n > MAX_STOP_LEN) return usage_error("--stop strings must be 1 to 256 bytes");
            if (c->n_stops == MAX_STOPS) return usage_error("at most 16 --stop strings");
            c->stops[c->n_stops++] = val;
        } else if (!strcmp(name, "--think-budget")) {
            if (!parse_i64(name, val, 0, INT32_MAX, &c->think_budget)) return EXIT_USAGE;
            c->has_think_budget = true;
        } else if (!strcmp(name, "--temperature")) {
            if (!parse_f64(name, val, 0, 2, false, &c->temperature)) return EXIT_USAGE;
            c->has_temperature = true;
        } else if (!strcmp(name, "--top-p")) {
            if (!parse_f64(name, val, 0, 1, true, &c->top_p)) return EXIT_USAGE;
            c->has_top_p = true;
        } else if (!strcmp(name, "--top-k")) {
            if (!parse_i64(name, val, 0, INT32_MAX, &c->top_k)) return EXIT_USAGE;
            c->has_top_k = true;
        } else if (!strcmp(name, "--seed")) {
            if (!parse_i64(name, val, INT64_MIN, INT64_MAX, &c->seed)) return EXIT_USAGE;
            c->has_seed = true;
        } else if (!strcmp(name, "--max-tokens")) {
            if (!parse_i64(name, val, 1, INT32_MAX, &c->max_tokens)) return EXIT_USAGE;
        } else if (!strcmp(name, "--threads")) {
            if (!parse_i64(name, val, 0, 1024, &c->threads)) return EXIT_USAGE; /* the library's cap */
            c->has_threads = true;
        } else if (!strcmp(name, "--ctx")) {
            if (!parse_i64(name, val, 1, INT32_MAX, &c->ctx)) return EXIT_USAGE;
            c->has_ctx = true;
        } else if (!strcmp(name, "--speculative")) {
            if (!parse_i64(name, val, 0, 2, &c->speculative)) return EXIT_USAGE;
        } else if (!strcmp(name, "--mem-budget")) {
            if (!parse_budget(val, &c->mem_budget, &c->mem_pct)) return EXIT_USAGE;
        } else if (!strcmp(name, "--spin")) {
            if (!strcmp(val, "auto")) c->spin = -1;
            else if (!parse_i64(name, val, 0, 1 << 20, &c->spin)) {
                fprintf(stderr, PROG ": --spin takes auto or a count of pauses\n");
                return EXIT_USAGE;
            }
            c->has_spin = true;
        }
    }
    if (n_pos == 0) return usage_error("missing MODEL_DIR");
    c->model_dir = pos[0];
    if (n_pos == 2) c->prompt_arg = pos[1];
    int sources = (c->prompt_arg != NULL) + (c->prompt_text != NULL) + (c->prompt_file != NULL);
    if (sources > 1) return usage_error("give the prompt once: as PROMPT, with -p or with -f");
    if (c->json_mode && c->schema_file) return usage_error("--json and --schema exclude each other");
    if (c->tool_choice && !c->tools_file) return usage_error("--tool-choice needs --tools");
    if (c->has_think_budget && !c->no_think && c->think_budget >= c->max_tokens)
        fprintf(stderr, PROG ": warning: --think-budget %lld leaves no room for an answer within --max-tokens %lld\n",
                (long long)c->think_budget, (long long)c->max_tokens);
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct progress {
    bool tty;
    int last_pct;
    const char *name;
    bool bar_open; /* a bar is drawn on stderr without its newline yet */
} progress;

/* The library's warnings (e.g. weights larger than the memory) go to stderr,
 * on a line of their own even while the loading bar is drawn. */
static void on_log(void *user, int32_t level, const char *msg, size_t len)
{
    progress *p = user;
    if (p && p->bar_open) {
        fputc('\n', stderr);
        p->bar_open = false;
    }
    fprintf(stderr, PROG ": %s: %.*s\n", level <= DSV4_LOG_ERROR ? "error" : "warning", (int)len, msg);
}

static int32_t on_progress(void *user, double fraction)
{
    progress *p = user;
    if (g_interrupts) return 1; /* Ctrl-C: the load fails with DSV4_ERR_ABORTED */
    if (!p->tty) return 0;
    int pct = (int)(fraction * 100.0 + 0.5);
    if (pct < 0) pct = 0;
    if (pct > 100) pct = 100;
    if (pct == p->last_pct) return 0; /* redraw only when the bar changes */
    p->last_pct = pct;
    enum { WIDTH = 30 };
    char bar[WIDTH + 1];
    int fill = pct * WIDTH / 100;
    for (int i = 0; i < WIDTH; i++) bar[i] = i < fill ? '#' : '.';
    bar[WIDTH] = '\0';
    fprintf(stderr, "\rloading %s [%s] %3d%%", p->name, bar, pct);
    fflush(stderr);
    p->bar_open = true;
    return 0;
}

/* Prefill progress on a terminal: "prefill 512/2048 tokens", erased when
 * done. Shown for short prompts too: the first prompt after a load of a
 * large model also reads its weights from the disk. Ctrl-C stops it. */
static int32_t on_prefill(void *user, int64_t done, int64_t total)
{
    const bool *tty = user;
    if (g_interrupts) return 1;
    if (!*tty || total <= 0) return 0;
    if (done < total) fprintf(stderr, "\rprefill %lld/%lld tokens", (long long)done, (long long)total);
    else fprintf(stderr, "\r\033[K");
    fflush(stderr);
    return 0;
}

typedef struct app {
    cli c;
    dsv4_model *model;
    dsv4_tokenizer *tok;
    dsv4_context *ctx;
    dsv4_session *session;
    dsv4_gen *gen;
    json_t *base;     /* the request fields every turn shares */
    json_t *messages; /* the conversation */
    bool out_tty, err_tty, in_tty;
} app;

static void app_free(app *a)
{
    g_gen = NULL;
    dsv4_gen_free(a->gen);
    dsv4_session_free(a->session);
    dsv4_context_free(a->ctx);
    dsv4_tokenizer_free(a->tok);
    dsv4_model_free(a->model);
    json_decref(a->base);
    json_decref(a->messages);
}

static const char *base_name(const char *path)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--; /* "models/tiny/" names "tiny" */
    size_t s = n;
    while (s > 0 && path[s - 1] != '/') s--;
    static char buf[256];
    size_t len = n - s < sizeof buf - 1 ? n - s : sizeof buf - 1;
    memcpy(buf, path + s, len);
    buf[len] = '\0';
    return buf;
}

/* Model, tokenizer, context, session, generator. Prints why on failure. */
/* --prompt-cache DIR and --session FILE (restored here, saved by
 * session_close); a session file that cannot be restored is reported and
 * the chat starts afresh */
static int session_open(app *a)
{
    const cli *c = &a->c;
    dsv4_status st;
    if (c->cache_dir) {
        dsv4_prefix_cache *pc = NULL;
        char *err = NULL;
        if ((st = dsv4_prefix_cache_create((int64_t)1 << 30, c->cache_dir, &pc, &err))) {
            fprintf(stderr, PROG ": --prompt-cache %s: %s\n", c->cache_dir, err ? err : dsv4_status_string(st));
            dsv4_free(err);
            return EXIT_RUNTIME;
        }
        dsv4_session_set_prefix_cache(a->session, pc);
        dsv4_prefix_cache_free(pc); /* the session holds it */
    }
    if (!c->session_file) return 0;
    int fd = open(c->session_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0; /* a new session file */
    st = dsv4_session_restore_fd(a->session, fd);
    close(fd);
    if (st) {
        fprintf(stderr, PROG ": %s not restored (starting afresh): %s\n", c->session_file,
                dsv4_session_last_error(a->session));
        return 0;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s.json", c->session_file);
    json_t *m = json_load_file(path, 0, NULL);
    if (json_is_array(m)) {
        json_decref(a->messages);
        a->messages = m;
    } else {
        json_decref(m);
    }
    if (!c->quiet)
        fprintf(stderr, "restored %s: %lld tokens, %zu messages\n", c->session_file,
                (long long)dsv4_session_position(a->session), json_array_size(a->messages));
    return 0;
}

static void session_close(app *a)
{
    const cli *c = &a->c;
    if (!c->session_file || !a->session) return;
    /* thinking: the next prompt drops the last reasoning, so keep the state
     * at the end of the last prompt (the generator's latest checkpoint) */
    bool thinking = !c->no_think && !(c->effort && !strcmp(c->effort, "none"));
    int64_t at[64];
    size_t n_at = 0;
    if (thinking && dsv4_session_checkpoints(a->session, at, 64, &n_at) == DSV4_OK && n_at > 0)
        dsv4_session_rewind(a->session, at[n_at - 1], 0);
    char tmp[4200], path[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", c->session_file);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    dsv4_status st = fd < 0 ? DSV4_ERR_IO : dsv4_session_save_fd(a->session, fd, 0);
    if (fd >= 0 && close(fd)) st = DSV4_ERR_IO;
    if (st || rename(tmp, c->session_file)) {
        fprintf(stderr, PROG ": cannot save the session to %s: %s\n", c->session_file, dsv4_status_string(st ? st : DSV4_ERR_IO));
        if (fd >= 0) unlink(tmp);
        return;
    }
    snprintf(path, sizeof path, "%s.json", c->session_file);
    if (json_dump_file(a->messages, path, JSON_COMPACT))
        fprintf(stderr, PROG ": cannot save the conversation to %s\n", path);
}

static int load(app *a)
{
    const cli *c = &a->c;
    struct stat sb;
    if (stat(c->model_dir, &sb) != 0) {
        fprintf(stderr, PROG ": model directory %s: %s\n", c->model_dir, strerror(errno));
        return EXIT_RUNTIME;
    }
    if (!S_ISDIR(sb.st_mode)) {
        fprintf(stderr, PROG ": %s is not a directory (MODEL_DIR holds config.json and the weights)\n", c->model_dir);
        return EXIT_RUNTIME;
    }
    /* Check config.json and the tokenizer exist before the (possibly long) model load. */
    char tok_path[4096];
    snprintf(tok_path, sizeof tok_path, "%s/config.json", c->model_dir);
    if (access(tok_path, R_OK) != 0) {
        fprintf(stderr, PROG ": %s has no config.json (%s; MODEL_DIR holds config.json and the weights)\n",
                c->model_dir, strerror(errno));
        return EXIT_RUNTIME;
    }
    if (c->tokenizer) snprintf(tok_path, sizeof tok_path, "%s", c->tokenizer);
    else snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", c->model_dir);
    if (access(tok_path, R_OK) != 0) {
        if (c->tokenizer) fprintf(stderr, PROG ": tokenizer %s: %s\n", tok_path, strerror(errno));
        else fprintf(stderr, PROG ": %s has no tokenizer.json (give one with --tokenizer FILE)\n", c->model_dir);
        return EXIT_RUNTIME;
    }

    dsv4_options *o = NULL;
    char *err = NULL;
    dsv4_status st = dsv4_options_create(&o);
    if (st) {
        fprintf(stderr, PROG ": %s\n", dsv4_status_string(st));
        return EXIT_RUNTIME;
    }
    progress p = { .tty = a->err_tty, .last_pct = -1, .name = base_name(c->model_dir) };
    dsv4_options_set_log(o, on_log, &p, DSV4_LOG_WARN);
    if (!c->quiet) {
        dsv4_options_set_progress(o, on_progress, &p);
        if (!p.tty) fprintf(stderr, "loading %s ... ", c->model_dir);
    }
    double t0 = now_s();
    g_cancellable = 1;
    if (c->mem_budget) dsv4_options_set_i64(o, DSV4_OPT_MEM_BUDGET, c->mem_budget);
    if (c->mem_pct) dsv4_options_set_i64(o, DSV4_OPT_MEM_BUDGET_PERCENT, c->mem_pct);
    if (c->mlock) dsv4_options_set_i64(o, DSV4_OPT_MEM_LOCK, 1);
    st = dsv4_model_load(c->model_dir, o, &a->model, &err);
    if (st == DSV4_OK) st = dsv4_tokenizer_load(tok_path, NULL, &a->tok, &err);
    g_cancellable = 0;
    /* A Ctrl-C after the last progress report did not stop the load: honour
     * it now rather than let the first answer's start forget it. */
    if (st == DSV4_OK && g_interrupts) st = DSV4_ERR_ABORTED;
    if (!c->quiet) {
        if (p.tty && p.bar_open) fputc('\n', stderr);
        p.bar_open = false;
        if (!p.tty && st == DSV4_OK) fprintf(stderr, "done (%.1f s)\n", now_s() - t0);
        else if (!p.tty) fprintf(stderr, "failed\n");
    }
    if (st != DSV4_OK) {
        if (st == DSV4_ERR_ABORTED) fprintf(stderr, PROG ": loading interrupted\n");
        else fprintf(stderr, PROG ": cannot load %s: %s\n", a->model ? tok_path : c->model_dir,
                     err ? err : dsv4_status_string(st));
        dsv4_free(err);
        dsv4_options_free(o);
        return st == DSV4_ERR_ABORTED ? EXIT_INTERRUPTED : EXIT_RUNTIME;
    }

    /* Both sides must agree on the vocabulary: say so plainly rather than
     * leave it to a generic "invalid argument" from dsv4_gen_create. */
    dsv4_model_info *info = NULL;
    int64_t vocab = -1, max_pos = 0, weights = 0, phys = 0, ram = 0;
    int64_t n_ctx = c->has_ctx ? c->ctx : DEFAULT_CTX;
    if (dsv4_model_get_info(a->model, &info) == DSV4_OK) {
        dsv4_model_info_get_i64(info, DSV4_INFO_VOCAB_SIZE, &vocab);
        dsv4_model_info_get_i64(info, DSV4_INFO_MAX_POSITION, &max_pos);
        if (!c->has_ctx && max_pos > 0 && n_ctx > max_pos) n_ctx = max_pos;
        dsv4_model_info_get_i64(info, DSV4_INFO_BYTES_TOTAL, &weights);
        dsv4_model_info_get_i64(info, DSV4_INFO_PHYSICAL_MEMORY, &phys);
        dsv4_model_info_memory(info, n_ctx, DSV4_NUMERICS_REFERENCE, NULL, &ram);
        int64_t budget = 0; /* under --mem-budget the weights hold that much memory */
        dsv4_model_info_get_i64(info, DSV4_INFO_MEM_BUDGET, &budget);
        if (budget > 0 && ram > 0) {
            ram = ram - weights + budget;
            weights = budget;
        }
        dsv4_model_info_free(info);
    }
    /* The library warned at load when the weights alone do not fit; the
     * weights plus the context's memory are this program's to check. */
    if (phys > 0 && weights <= phys && ram > phys)
        fprintf(stderr, PROG ": warning: about %.1f GiB are needed at %lld tokens of context, more than the %.1f GiB "
                        "of physical memory: expect the weights to be read from the disk (a smaller --ctx helps)\n",
                (double)ram / (1 << 30), (long long)n_ctx, (double)phys / (1 << 30));
    int32_t tok_vocab = dsv4_tokenizer_vocab_size(a->tok);
    if (vocab >= 0 && vocab != tok_vocab) {
        fprintf(stderr, PROG ": the tokenizer %s has %d ids but the model in %s has a vocabulary of %lld\n",
                tok_path, (int)tok_vocab, c->model_dir, (long long)vocab);
        dsv4_options_free(o);
        return EXIT_RUNTIME;
    }

    if ((st = dsv4_options_set_i64(o, DSV4_OPT_CONTEXT_LENGTH, n_ctx)) ||
        (c->has_threads && (st = dsv4_options_set_i64(o, DSV4_OPT_THREADS, c->threads))) ||
        (c->has_spin && (st = dsv4_options_set_i64(o, DSV4_OPT_WORKER_SPIN, c->spin)))) {
        fprintf(stderr, PROG ": bad --ctx, --threads or --spin: %s\n", dsv4_status_string(st));
        dsv4_options_free(o);
        return EXIT_USAGE;
    }
    /* the MTP block's state, for speculative decoding */
    if (c->speculative) dsv4_options_set_i64(o, DSV4_OPT_MTP, 1);
    if ((st = dsv4_context_create(a->model, o, &a->ctx, &err)) ||
        (st = dsv4_session_create(a->ctx, o, &a->session, &err))) {
        fprintf(stderr, PROG ": cannot create a %s of %lld tokens: %s\n", a->ctx ? "session" : "context",
                (long long)n_ctx, err ? err : dsv4_status_string(st));
        dsv4_free(err);
        dsv4_options_free(o);
        return EXIT_RUNTIME;
    }
    dsv4_options_free(o);
    if ((st = dsv4_gen_create(a->session, a->tok, &a->gen))) {
        fprintf(stderr, PROG ": cannot create the generator: %s\n", dsv4_status_string(st));
        return EXIT_RUNTIME;
    }
    g_gen = a->gen;
    if (c->speculative && (st = dsv4_gen_set_i64(a->gen, DSV4_GEN_SPECULATIVE, c->speculative))) {
        fprintf(stderr, PROG ": --speculative: %s\n", dsv4_gen_last_error(a->gen));
        return EXIT_RUNTIME;
    }
    if (!c->quiet) dsv4_gen_set_progress(a->gen, on_prefill, &a->err_tty);
    return session_open(a);
}

/* ------------------------------------------------------------------------ */
/* The request                                                               */
/* ------------------------------------------------------------------------ */

/* json_object_set_new() that remembers a failure (out of memory) in *ok. */
static void set(json_t *o, const char *key, json_t *v, bool *ok)
{
    if (!v || json_object_set_new(o, key, v)) *ok = false;
}

/* Every field the flags give, once; each turn adds "messages". */
static int build_base(app *a)
{
    const cli *c = &a->c;
    bool ok = true;
    json_t *b = a->base = json_object();
    if (!b) return EXIT_RUNTIME;
    set(b, "max_tokens", json_integer(c->max_tokens), &ok);
    if (c->effort) set(b, "reasoning_effort", json_string(c->effort), &ok);
    if (c->no_think) set(b, "thinking", json_pack("{s:s}", "type", "disabled"), &ok);
    if (c->has_think_budget) {
        set(b, "thinking_budget", json_integer(c->think_budget), &ok);
    } else if (!c->no_think && !(c->effort && !strcmp(c->effort, "none"))) {
        /* Thinking is on: without a budget the reasoning could take every
         * token and leave the answer empty. Half of --max-tokens goes to
         * it at most (less when the effort's own budget is lower: low 1024,
         * medium 8192), the rest is the answer's. */
        int64_t budget = c->max_tokens / 2;
        if (c->effort && !strcmp(c->effort, "low") && budget > 1024) budget = 1024;
        if (c->effort && !strcmp(c->effort, "medium") && budget > 8192) budget = 8192;
        set(b, "thinking_budget", json_integer(budget), &ok);
    }
    if (c->has_temperature) set(b, "temperature", json_real(c->temperature), &ok);
    if (c->has_top_p) set(b, "top_p", json_real(c->top_p), &ok);
    if (c->has_top_k) set(b, "top_k", json_integer(c->top_k), &ok);
    if (c->has_seed) set(b, "seed", json_integer(c->seed), &ok);
    if (c->n_stops) {
        json_t *s = json_array();
        for (int i = 0; s && i < c->n_stops; i++) {
            json_t *str = json_string(c->stops[i]);
            if (!str) {
                fprintf(stderr, PROG ": --stop '%s' is not valid UTF-8\n", c->stops[i]);
                json_decref(s);
                return EXIT_USAGE;
            }
            json_array_append_new(s, str);
        }
        set(b, "stop", s, &ok);
    }
    if (c->json_mode) set(b, "response_format", json_pack("{s:s}", "type", "json_object"), &ok);
    if (c->schema_file) {
        json_t *schema = load_json_file(c->schema_file, JSON_OBJECT, "schema");
        if (!schema) return EXIT_RUNTIME;
        set(b, "response_format", json_pack("{s:s, s:{s:o}}", "type", "json_schema", "json_schema", "schema", schema),
            &ok);
    }
    if (c->tools_file) {
        json_t *tools = load_json_file(c->tools_file, JSON_ARRAY, "tools");
        if (!tools) return EXIT_RUNTIME;
        set(b, "tools", tools, &ok);
        if (c->tool_choice) {
            const char *tc = c->tool_choice;
            if (!strcmp(tc, "auto") || !strcmp(tc, "none") || !strcmp(tc, "required"))
                set(b, "tool_choice", json_string(tc), &ok);
            else
                set(b, "tool_choice", json_pack("{s:s, s:{s:s}}", "type", "function", "function", "name", tc), &ok);
        }
    }
    if (!ok) {
        fprintf(stderr, PROG ": cannot build the request (out of memory, or text that is not UTF-8)\n");
        return EXIT_RUNTIME;
    }
    a->messages = json_array();
    if (!a->messages) return EXIT_RUNTIME;
    if (c->system) {
        json_t *m = json_pack("{s:s, s:s}", "role", "system", "content", c->system);
        if (!m || json_array_append_new(a->messages, m)) {
            fprintf(stderr, PROG ": --system text is not valid UTF-8\n");
            return EXIT_USAGE;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Streaming output                                                          */
/* ------------------------------------------------------------------------ */

typedef struct printer {
    bool tty;            /* stdout is a terminal: ANSI faint for reasoning */
    bool silent;         /* --raw-json: nothing streamed */
    bool show_reasoning;
    bool in_reasoning;   /* a reasoning block is open on stdout */
    bool wrote_reasoning;
    bool any;            /* something was written this turn */
    char last;           /* last byte written */
} printer;

static void put(printer *p, const char *s, size_t n)
{
    if (!n) return;
    fwrite(s, 1, n, stdout);
    p->any = true;
    p->last = s[n - 1];
}

static void newline_if_needed(printer *p)
{
    if (p->any && p->last != '\n') put(p, "\n", 1);
}

/* Close the reasoning block; when an answer follows, separate the two
 * (a blank line on a terminal, where the dimming already tells them
 * apart, and a header line in a file or pipe). */
static void close_reasoning(printer *p, bool answer_follows)
{
    if (!p->in_reasoning) return;
    p->in_reasoning = false;
    if (p->tty) {
        fputs("\033[0m", stdout);
        g_faint = 0;
    }
    newline_if_needed(p);
    if (answer_follows) put(p, p->tty ? "\n" : "[answer]\n", p->tty ? 1 : 9);
}

static void print_event(printer *p, dsv4_gen_event_type t, int32_t index, const char *d, size_t n)
{
    if (p->silent) return;
    switch (t) {
    case DSV4_GEN_EVENT_REASONING:
        if (!p->show_reasoning) break;
        if (!p->in_reasoning) {
            p->in_reasoning = true;
            if (p->tty) {
                g_faint = 1;
                fputs("\033[2m", stdout);
            } else if (!p->wrote_reasoning) {
                newline_if_needed(p);
                put(p, "[reasoning]\n", 12);
            }
            p->wrote_reasoning = true;
        }
        put(p, d, n);
        break;
    case DSV4_GEN_EVENT_CONTENT:
        close_reasoning(p, true);
        put(p, d, n);
        break;
    case DSV4_GEN_EVENT_TOOL_CALL_START: {
        close_reasoning(p, true);
        newline_if_needed(p);
        char head[64];
        int hn = snprintf(head, sizeof head, "[tool call #%d] ", (int)index);
        put(p, head, (size_t)hn);
        put(p, d, n);
        put(p, "(", 1);
        break;
    }
    case DSV4_GEN_EVENT_TOOL_CALL_ARGS:
        put(p, d, n);
        break;
    case DSV4_GEN_EVENT_TOOL_CALL_END:
        put(p, ")\n", 2);
        break;
    case DSV4_GEN_EVENT_STOP:
        close_reasoning(p, false);
        newline_if_needed(p);
        break;
    default:
        break;
    }
    fflush(stdout);
}

static const char *finish_name(int32_t f)
{
    return dsv4_finish_reason_string(f);
}

static void print_stats(const app *a, const char *finish)
{
    if (a->c.quiet) return;
    int64_t prompt = dsv4_gen_usage(a->gen, DSV4_USAGE_PROMPT_TOKENS);
    int64_t cached = dsv4_gen_usage(a->gen, DSV4_USAGE_CACHED_TOKENS);
    int64_t made = dsv4_gen_usage(a->gen, DSV4_USAGE_COMPLETION_TOKENS);
    int64_t reasoning = dsv4_gen_usage(a->gen, DSV4_USAGE_REASONING_TOKENS);
    double ps = (double)dsv4_gen_usage(a->gen, DSV4_USAGE_PROMPT_NS) * 1e-9;
    double ds = (double)dsv4_gen_usage(a->gen, DSV4_USAGE_DECODE_NS) * 1e-9;
    if (prompt < 0) prompt = 0;
    if (cached < 0) cached = 0;
    if (made < 0) made = 0;
    if (reasoning < 0) reasoning = 0;
    /* The prompt rate counts the tokens actually fed: cached ones cost nothing. */
    double prate = ps > 0 ? (double)(prompt - cached) / ps : 0;
    double drate = ds > 0 ? (double)made / ds : 0;
    fprintf(stderr,
            "prompt: %lld tokens (%lld cached) in %.2f s, %.1f tok/s | decode: %lld tokens (%lld reasoning) in "
            "%.2f s, %.1f tok/s | finish: %s\n",
            (long long)prompt, (long long)cached, ps > 0 ? ps : 0, prate, (long long)made, (long long)reasoning,
            ds > 0 ? ds : 0, drate, finish);
    int64_t drafts = dsv4_gen_usage(a->gen, DSV4_USAGE_DRAFTS_PROPOSED);
    if (a->c.speculative && drafts > 0)
        fprintf(stderr, "speculative: %lld of %lld drafts accepted (%.0f %%)\n",
                (long long)dsv4_gen_usage(a->gen, DSV4_USAGE_DRAFTS_ACCEPTED), (long long)drafts,
                100.0 * (double)dsv4_gen_usage(a->gen, DSV4_USAGE_DRAFTS_ACCEPTED) / (double)drafts);
}

/* The assistant message of the finished answer, in the form the chat
 * renderer takes back as history: role, content, and reasoning_content /
 * tool_calls when present. NULL when the response cannot be read. */
static json_t *assistant_message(const app *a, json_t **response_out)
{
    char *text = NULL;
    if (dsv4_gen_response_json(a->gen, &text) != DSV4_OK) return NULL;
    json_error_t e;
    json_t *resp = json_loads(text, 0, &e);
    dsv4_free(text);
    if (!resp) return NULL;
    json_t *msg = json_object_get(json_array_get(json_object_get(resp, "choices"), 0), "message");
    json_t *out = json_object();
    if (!out) {
        json_decref(resp);
        return NULL;
    }
    json_t *content = json_object_get(msg, "content");
    json_object_set_new(out, "role", json_string("assistant"));
    /* content is null in a tool-calls-only answer; the renderer wants a string */
    json_object_set_new(out, "content", json_is_string(content) ? json_incref(content) : json_string(""));
    json_t *rc = json_object_get(msg, "reasoning_content");
    if (json_is_string(rc) && json_string_length(rc)) json_object_set(out, "reasoning_content", rc);
    json_t *calls = json_object_get(msg, "tool_calls");
    if (json_is_array(calls) && json_array_size(calls)) json_object_set(out, "tool_calls", calls);
    if (response_out) *response_out = resp;
    else json_decref(resp);
    return out;
}

/* One answer to the conversation in a->messages. Returns the finish
 * reason, or -1 when the request failed before generating (the message is
 * printed), or -2 when it was interrupted while the prompt was being fed.
 * On success *assistant receives the assistant message (may be NULL). */
static int32_t run_turn(app *a, json_t **assistant)
{
    *assistant = NULL;
    json_t *req = json_copy(a->base);
    if (!req || json_object_set(req, "messages", a->messages)) {
        json_decref(req);
        fprintf(stderr, PROG ": out of memory\n");
        return -1;
    }
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (!text) {
        fprintf(stderr, PROG ": out of memory\n");
        return -1;
    }

    printer p = { .tty = a->out_tty, .silent = a->c.raw_json, .show_reasoning = !a->c.hide_reasoning };
    g_interrupts = 0;
    g_cancellable = 1;
    dsv4_status st = dsv4_gen_start_request(a->gen, text, strlen(text));
    free(text);
    if (st == DSV4_ERR_ABORTED) {
        g_cancellable = 0;
        print_stats(a, "cancelled");
        return -2;
    }
    if (st != DSV4_OK) {
        g_cancellable = 0;
        const char *why = dsv4_gen_last_error(a->gen);
        fprintf(stderr, PROG ": request rejected: %s\n", why && *why ? why : dsv4_status_string(st));
        return -1;
    }
    /* A Ctrl-C that came before the start cleared the cancel flag would be
     * lost: repeat it. */
    if (g_interrupts) dsv4_gen_cancel(a->gen);

    int32_t finish = DSV4_FINISH_ERROR;
    for (;;) {
        dsv4_gen_event_type t;
        int32_t index = -1;
        const char *d = NULL;
        size_t n = 0;
        if ((st = dsv4_gen_next(a->gen, &t, &index, &d, &n)) != DSV4_OK) {
            const char *why = dsv4_gen_last_error(a->gen);
            fprintf(stderr, PROG ": generation failed: %s\n", why && *why ? why : dsv4_status_string(st));
            break;
        }
        print_event(&p, t, index, d, n);
        if (t == DSV4_GEN_EVENT_STOP) {
            finish = index;
            break;
        }
    }
    g_cancellable = 0;
    if (p.in_reasoning) close_reasoning(&p, false);
    fflush(stdout);

    json_t *resp = NULL;
    *assistant = assistant_message(a, a->c.raw_json ? &resp : NULL);
    if (a->c.raw_json) {
        if (resp) {
            char *pretty = json_dumps(resp, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
            if (pretty) printf("%s\n", pretty);
            free(pretty);
            json_decref(resp);
        } else {
            fprintf(stderr, PROG ": cannot read the response JSON\n");
        }
        fflush(stdout);
    }
    if (finish == DSV4_FINISH_ERROR) {
        const char *why = dsv4_gen_last_error(a->gen);
        if (why && *why) fprintf(stderr, PROG ": generation failed: %s\n", why);
    }
    print_stats(a, finish_name(finish));
    return finish;
}

/* ------------------------------------------------------------------------ */
/* Modes                                                                     */
/* ------------------------------------------------------------------------ */

static int add_user(app *a, const char *text)
{
    json_t *m = json_pack("{s:s, s:s}", "role", "user", "content", text);
    if (!m || json_array_append_new(a->messages, m)) {
        fprintf(stderr, PROG ": the message is not valid UTF-8\n");
        return EXIT_RUNTIME;
    }
    return 0;
}

static int one_shot(app *a, const char *prompt)
{
    int rc = add_user(a, prompt);
    if (rc) return rc;
    json_t *msg = NULL;
    int32_t f = run_turn(a, &msg);
    json_decref(msg);
    if (f == -2 || f == DSV4_FINISH_CANCELLED) return EXIT_INTERRUPTED;
    if (f < 0 || f == DSV4_FINISH_ERROR) return EXIT_RUNTIME;
    return 0;
}

/* Read one message: lines ending in a backslash continue on the next line.
 * Returns NULL at end of input (a partial message is still returned). */
static char *read_message(bool show_prompt)
{
    char *msg = NULL, *line = NULL;
    size_t msg_len = 0, cap = 0;
    if (show_prompt) {
        fputs("> ", stdout);
        fflush(stdout);
    }
    for (;;) {
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0) break;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
        bool more = n > 0 && line[n - 1] == '\\';
        if (more) line[--n] = '\0';
        char *nm = realloc(msg, msg_len + (size_t)n + 2);
        if (!nm) break;
        msg = nm;
        memcpy(msg + msg_len, line, (size_t)n);
        msg_len += (size_t)n;
        msg[msg_len] = '\0';
        if (!more) break;
        msg[msg_len++] = '\n';
        msg[msg_len] = '\0';
        if (show_prompt) {
            fputs(". ", stdout);
            fflush(stdout);
        }
    }
    free(line);
    return msg;
}

static int interactive(app *a)
{
    bool prompt = a->in_tty;
    if (prompt && !a->c.quiet)
        fprintf(stderr, "chatting with %s: one message per line (end a line with \\ to continue it); "
                        "/reset starts over, /exit or Ctrl-D ends, Ctrl-C stops an answer\n",
                base_name(a->c.model_dir));
    size_t n_system = json_array_size(a->messages);
    int rc = 0;
    for (;;) {
        char *line = read_message(prompt);
        if (!line) {
            if (prompt) fputc('\n', stdout);
            break;
        }
        /* Only these exact words are commands: any other text, even one
         * starting with '/', is a message. */
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) {
            free(line);
            break;
        }
        if (!strcmp(line, "/reset")) {
            free(line);
            /* Keep the system message; the generator notices the new prompt
             * shares little with the session and starts it afresh. */
            while (json_array_size(a->messages) > n_system)
                json_array_remove(a->messages, json_array_size(a->messages) - 1);
            if (!a->c.quiet) fprintf(stderr, "[conversation reset]\n");
            continue;
        }
        if (!strcmp(line, "/help")) {
            free(line);
            fprintf(stderr, "/reset: forget the conversation; /exit: quit; a line ending in \\ continues\n");
            continue;
        }
        if (!line[0]) {
            free(line);
            continue;
        }
        size_t before = json_array_size(a->messages);
        rc = add_user(a, line);
        free(line);
        if (rc) {
            rc = 0; /* bad input is not fatal in a chat: ask again */
            continue;
        }
        json_t *msg = NULL;
        int32_t f = run_turn(a, &msg);
        if (f < 0 || f == DSV4_FINISH_ERROR || !msg) {
            /* Nothing usable came back: forget the question so that the
             * conversation stays valid for the next one. */
            json_decref(msg);
            while (json_array_size(a->messages) > before)
                json_array_remove(a->messages, json_array_size(a->messages) - 1);
            continue;
        }
        /* A cancelled answer is kept as far as it went: it is what the user
         * saw, and the next turn reuses the session's tokens for it. */
        json_array_append_new(a->messages, msg);
    }
    return rc;
}

int main(int argc, char **argv)
{
    dsv4p_omp_passive(argv); /* before any thread: common.h */
    app a;
    memset(&a, 0, sizeof a);
    int rc = parse_args(argc, argv, &a.c);
    if (rc >= 0) return rc;
    a.out_tty = isatty(STDOUT_FILENO);
    a.err_tty = isatty(STDERR_FILENO);
    a.in_tty = isatty(STDIN_FILENO);

    /* The prompt first: a missing file is reported before the model loads. */
    char *prompt = NULL;
    const cli *c = &a.c;
    if (c->prompt_file || (c->prompt_arg && !strcmp(c->prompt_arg, "-"))) {
        if (!read_all(c->prompt_file ? c->prompt_file : "-", &prompt, NULL)) return EXIT_RUNTIME;
        chomp(prompt);
    } else if (c->prompt_arg || c->prompt_text) {
        prompt = strdup(c->prompt_arg ? c->prompt_arg : c->prompt_text);
        if (!prompt) return EXIT_RUNTIME;
    }
    install_sigint();
    if (!(rc = build_base(&a)) && !(rc = load(&a))) rc = prompt ? one_shot(&a, prompt) : interactive(&a);
    free(prompt);
    session_close(&a);
    app_free(&a);
    return rc;
}

/* Messages of the library (warnings, progress, diagnostics) go through one
 * callback that the program installs (lmc.c for the CLI); the library itself
 * never writes to stdout or stderr, so it can run inside other programs.
 * Without a callback messages are dropped. */
#ifndef LMC_LOG_H
#define LMC_LOG_H

typedef enum {
    LMC_LOG_WARN = 0,     /* something the user should know: results may differ */
    LMC_LOG_PROGRESS = 1, /* liveness on long runs (a CLI's -q silences these) */
    LMC_LOG_INFO = 2      /* diagnostics asked for (profiles, environment knobs) */
} lmc_log_level;

/* msg: one line, no trailing newline. */
typedef void (*lmc_log_fn)(void *ctx, lmc_log_level level, const char *msg);

/* Process-wide; NULL drops every message. */
void lmc_log_set(lmc_log_fn fn, void *ctx);
void lmc_log(lmc_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define lmc_warn(...) lmc_log(LMC_LOG_WARN, __VA_ARGS__)

#endif

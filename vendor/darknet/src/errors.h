#ifndef DN_ERRORS_H
#define DN_ERRORS_H

#include <stddef.h>

#include "darknet.h"

/* Record a formatted message as this thread's last error and return `code`. */
dn_status dn_fail(dn_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Clear this thread's last error (start of every public call that may fail). */
void dn_clear_error(void);

/* Send a formatted message to a log callback (no-op when `log` is NULL). */
void dn_log(dn_log_fn log, void *user, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Text from a file, made safe to put in a message: quoted in '...', printable ASCII kept,
 * backslash, quote and every other byte (control characters, escape sequences, non-ASCII)
 * written as \\, \' and \xNN, at most DN_QUOTE_CHARS characters of it (then "...").
 * Returns `buf` (DN_QUOTE_SIZE bytes), so that a call can stand as a printf argument.
 */
#define DN_QUOTE_CHARS 80
#define DN_QUOTE_SIZE (DN_QUOTE_CHARS + 8)
const char *dn_quote(char *buf, const char *text, size_t length);
/* dn_quote of a NUL-terminated string. */
const char *dn_quote_str(char *buf, const char *text);

#endif

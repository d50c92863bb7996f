#ifndef DN_ERRORS_H
#define DN_ERRORS_H

#include "darknet.h"

/* Record a formatted message as this thread's last error and return `code`. */
dn_status dn_fail(dn_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Clear this thread's last error (start of every public call that may fail). */
void dn_clear_error(void);

/* Send a formatted message to a log callback (no-op when `log` is NULL). */
void dn_log(dn_log_fn log, void *user, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif

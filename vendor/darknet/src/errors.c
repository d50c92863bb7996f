#include "errors.h"

#include <stdarg.h>
#include <stdio.h>

#define DN_ERROR_CAPACITY 1024

static _Thread_local char last_error[DN_ERROR_CAPACITY];

const char *dn_last_error(void) { return last_error; }

void dn_clear_error(void) { last_error[0] = '\0'; }

dn_status dn_fail(dn_status code, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, args);
    va_end(args);
    return code;
}

void dn_log(dn_log_fn log, void *user, int level, const char *fmt, ...)
{
    char message[DN_ERROR_CAPACITY];
    va_list args;
    if (!log) return;
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    log(user, level, message);
}

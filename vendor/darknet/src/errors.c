#include "errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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

const char *dn_quote(char *buf, const char *text, size_t length)
{
    static const char hex[] = "0123456789abcdef";
    size_t out = 0;
    buf[out++] = '\'';
    for (size_t i = 0; i < length; ++i) {
        const unsigned char c = (unsigned char)text[i];
        char piece[4];
        size_t n = 0;
        if (c == '\\' || c == '\'') {
            piece[n++] = '\\';
            piece[n++] = (char)c;
        } else if (c >= 0x20 && c < 0x7f) {
            piece[n++] = (char)c;
        } else {
            piece[n++] = '\\';
            piece[n++] = 'x';
            piece[n++] = hex[c >> 4];
            piece[n++] = hex[c & 15];
        }
        if (out - 1 + n > DN_QUOTE_CHARS) {
            memcpy(buf + out, "...", 3);
            out += 3;
            break;
        }
        memcpy(buf + out, piece, n);
        out += n;
    }
    buf[out++] = '\'';
    buf[out] = '\0';
    return buf;
}

const char *dn_quote_str(char *buf, const char *text) { return dn_quote(buf, text, strlen(text)); }

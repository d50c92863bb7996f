/* Reading darknet's cfg text: [sections] of key = value options with line numbers. */
#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *dn_calloc(size_t count, size_t size)
{
    if (count == 0) count = 1;
    return calloc(count, size);
}

static char *dup_range(const char *begin, const char *end)
{
    size_t n = (size_t)(end - begin);
    char *s = malloc(n + 1);
    if (!s) return NULL;
    memcpy(s, begin, n);
    s[n] = '\0';
    return s;
}

/* Trim [*begin, *end) of surrounding whitespace. */
static void trim(const char **begin, const char **end)
{
    while (*begin < *end && isspace((unsigned char)**begin)) ++*begin;
    while (*end > *begin && isspace((unsigned char)(*end)[-1])) --*end;
}

static int grow(void **items, int *capacity, int count, size_t item_size)
{
    if (count < *capacity) return 1;
    int next = *capacity ? *capacity * 2 : 16;
    void *bigger = realloc(*items, (size_t)next * item_size);
    if (!bigger) return 0;
    memset((char *)bigger + (size_t)*capacity * item_size, 0, (size_t)(next - *capacity) * item_size);
    *items = bigger;
    *capacity = next;
    return 1;
}

void dn_cfg_free(dn_cfg *cfg)
{
    if (!cfg) return;
    for (int i = 0; i < cfg->count; ++i) {
        dn_section *s = &cfg->sections[i];
        for (int j = 0; j < s->count; ++j) {
            free(s->options[j].key);
            free(s->options[j].value);
        }
        free(s->options);
        free(s->name);
    }
    free(cfg->sections);
    free(cfg->path);
    memset(cfg, 0, sizeof *cfg);
}

static dn_status parse_line(dn_cfg *cfg, const char *text, size_t length, int line)
{
    const char *begin = text, *end = text + length;
    /* Comments start with '#' or ';', at the start of a line or after a value. */
    for (const char *p = begin; p < end; ++p) {
        if (*p == '#' || *p == ';') { end = p; break; }
    }
    trim(&begin, &end);
    if (begin == end) return DN_OK;

    char q[DN_QUOTE_SIZE];
    if (*begin == '[') {
        if (end[-1] != ']')
            return dn_fail(DN_ERR_CFG, "%s:%d: section header without ']': %s", cfg->path, line,
                           dn_quote(q, begin, (size_t)(end - begin)));
        const char *name_begin = begin + 1, *name_end = end - 1;
        trim(&name_begin, &name_end);
        if (name_begin == name_end)
            return dn_fail(DN_ERR_CFG, "%s:%d: empty section name '[]'", cfg->path, line);
        if (!grow((void **)&cfg->sections, &cfg->capacity, cfg->count, sizeof(dn_section)))
            return dn_fail(DN_ERR_MEMORY, "%s: out of memory reading the cfg", cfg->path);
        dn_section *s = &cfg->sections[cfg->count++];
        s->name = dup_range(name_begin, name_end);
        s->line = line;
        if (!s->name) return dn_fail(DN_ERR_MEMORY, "%s: out of memory reading the cfg", cfg->path);
        for (char *c = s->name; *c; ++c) *c = (char)tolower((unsigned char)*c);
        return DN_OK;
    }

    const char *equals = memchr(begin, '=', (size_t)(end - begin));
    if (!equals)
        return dn_fail(DN_ERR_CFG, "%s:%d: expected 'key=value' or '[section]', got %s", cfg->path, line,
                       dn_quote(q, begin, (size_t)(end - begin)));
    if (cfg->count == 0)
        return dn_fail(DN_ERR_CFG, "%s:%d: option %s before the first [section]", cfg->path, line,
                       dn_quote(q, begin, (size_t)(end - begin)));
    const char *key_begin = begin, *key_end = equals;
    const char *value_begin = equals + 1, *value_end = end;
    trim(&key_begin, &key_end);
    trim(&value_begin, &value_end);
    if (key_begin == key_end)
        return dn_fail(DN_ERR_CFG, "%s:%d: option without a name: %s", cfg->path, line,
                       dn_quote(q, begin, (size_t)(end - begin)));
    dn_section *s = &cfg->sections[cfg->count - 1];
    if (!grow((void **)&s->options, &s->capacity, s->count, sizeof(dn_option)))
        return dn_fail(DN_ERR_MEMORY, "%s: out of memory reading the cfg", cfg->path);
    dn_option *o = &s->options[s->count++];
    o->key = dup_range(key_begin, key_end);
    o->value = dup_range(value_begin, value_end);
    o->line = line;
    if (!o->key || !o->value) return dn_fail(DN_ERR_MEMORY, "%s: out of memory reading the cfg", cfg->path);
    return DN_OK;
}

dn_status dn_cfg_read(const char *path, dn_cfg *out)
{
    memset(out, 0, sizeof *out);
    out->path = dup_range(path, path + strlen(path));
    if (!out->path) return dn_fail(DN_ERR_MEMORY, "out of memory");
    FILE *f = fopen(path, "rb");
    if (!f) {
        dn_status st = dn_fail(DN_ERR_IO, "%s: cannot open cfg: %s", path, strerror(errno));
        dn_cfg_free(out);
        return st;
    }
    char *line = NULL;
    size_t capacity = 0;
    ssize_t length;
    int number = 0;
    dn_status st = DN_OK;
    while (st == DN_OK && (length = getline(&line, &capacity, f)) >= 0) {
        ++number;
        if (memchr(line, '\0', (size_t)length)) {
            st = dn_fail(DN_ERR_CFG, "%s:%d: binary data in a cfg file", path, number);
            break;
        }
        st = parse_line(out, line, (size_t)length, number);
    }
    if (st == DN_OK && ferror(f)) st = dn_fail(DN_ERR_IO, "%s: read error: %s", path, strerror(errno));
    free(line);
    fclose(f);
    if (st == DN_OK && out->count == 0)
        st = dn_fail(DN_ERR_CFG, "%s: empty cfg: no [net] section and no layers", path);
    if (st != DN_OK) dn_cfg_free(out);
    return st;
}

/* ---- typed access ---- */

static dn_option *find(dn_options *o, const char *key)
{
    dn_option *first = NULL;
    for (int i = 0; i < o->section->count; ++i) {
        dn_option *opt = &o->section->options[i];
        if (strcmp(opt->key, key) == 0) {
            opt->used = 1; /* duplicates too: darknet reads the first and ignores the rest */
            if (!first) first = opt;
        }
    }
    return first;
}

int dn_opt_line(const dn_options *o, const char *key)
{
    for (int i = 0; key && i < o->section->count; ++i)
        if (strcmp(o->section->options[i].key, key) == 0) return o->section->options[i].line;
    return o->section->line;
}

void dn_opt_error(dn_options *o, const char *key, const char *fmt, ...)
{
    char detail[512];
    va_list args;
    if (o->status != DN_OK) return;
    va_start(args, fmt);
    vsnprintf(detail, sizeof detail, fmt, args);
    va_end(args);
    o->status = dn_fail(DN_ERR_CFG, "%s:%d: [%s] %s", o->cfg->path, dn_opt_line(o, key), o->section->name,
                        detail);
}

int dn_opt_has(dn_options *o, const char *key) { return find(o, key) != NULL; }

static int parse_long(const char *text, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (end == text || errno) return 0;
    while (isspace((unsigned char)*end)) ++end;
    if (*end) return 0;
    *out = v;
    return 1;
}

static int parse_float(const char *text, float *out)
{
    char *end;
    errno = 0;
    float v = strtof(text, &end);
    if (end == text || errno || !isfinite(v)) return 0;
    while (isspace((unsigned char)*end)) ++end;
    if (*end) return 0;
    *out = v;
    return 1;
}

int dn_opt_int(dn_options *o, const char *key, int fallback)
{
    dn_option *opt = find(o, key);
    long v;
    char q[DN_QUOTE_SIZE];
    if (!opt) return fallback;
    if (!parse_long(opt->value, &v) || v < -2147483647L || v > 2147483647L) {
        dn_opt_error(o, key, "option '%s': %s is not an integer", key, dn_quote_str(q, opt->value));
        return fallback;
    }
    return (int)v;
}

float dn_opt_float(dn_options *o, const char *key, float fallback)
{
    dn_option *opt = find(o, key);
    float v;
    char q[DN_QUOTE_SIZE];
    if (!opt) return fallback;
    if (!parse_float(opt->value, &v)) {
        dn_opt_error(o, key, "option '%s': %s is not a number", key, dn_quote_str(q, opt->value));
        return fallback;
    }
    return v;
}

const char *dn_opt_str(dn_options *o, const char *key, const char *fallback)
{
    dn_option *opt = find(o, key);
    return opt ? opt->value : fallback;
}

/* Split a comma-separated list of ints or floats; returns the count or -1. */
static int parse_list(dn_options *o, const char *key, void *dst, int capacity, int is_float)
{
    dn_option *opt = find(o, key);
    if (!opt) return -1;
    int count = 0;
    const char *p = opt->value;
    char item[64], q[DN_QUOTE_SIZE];
    while (*p) {
        const char *comma = strchr(p, ',');
        const char *end = comma ? comma : p + strlen(p);
        const char *b = p, *e = end;
        trim(&b, &e);
        if (b == e) {
            /* darknet cfgs often end lists with "," or use ", ," spacing; skip empty items */
        } else {
            if (count >= capacity) {
                dn_opt_error(o, key, "option '%s': more than %d values", key, capacity);
                return -1;
            }
            if ((size_t)(e - b) >= sizeof item) {
                dn_opt_error(o, key, "option '%s': value %s is too long", key, dn_quote(q, b, (size_t)(e - b)));
                return -1;
            }
            memcpy(item, b, (size_t)(e - b));
            item[e - b] = '\0';
            int ok;
            if (is_float) {
                ok = parse_float(item, (float *)dst + count);
            } else {
                long v = 0;
                ok = parse_long(item, &v) && v >= -2147483647L && v <= 2147483647L;
                ((int *)dst)[count] = (int)v;
            }
            if (!ok) {
                dn_opt_error(o, key, "option '%s': %s is not %s", key, dn_quote_str(q, item),
                             is_float ? "a number" : "an integer");
                return -1;
            }
            ++count;
        }
        p = comma ? comma + 1 : end;
    }
    return count;
}

int dn_opt_int_list(dn_options *o, const char *key, int *dst, int capacity)
{
    return parse_list(o, key, dst, capacity, 0);
}

int dn_opt_float_list(dn_options *o, const char *key, float *dst, int capacity)
{
    return parse_list(o, key, dst, capacity, 1);
}

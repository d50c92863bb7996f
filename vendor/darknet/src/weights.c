/* darknet's .weights format: a version header, `seen`, then each conv layer's arrays. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Read `count` floats; returns how many were read (short only at end of file). */
static size_t read_floats(FILE *f, float *dst, size_t count) { return fread(dst, sizeof(float), count, f); }

static dn_status load_layer(FILE *f, const char *path, dn_layer *l, int *ended)
{
    float *arrays[5] = {l->biases, l->scales, l->rolling_mean, l->rolling_variance, l->weights};
    size_t sizes[5] = {(size_t)l->filters, (size_t)l->filters, (size_t)l->filters, (size_t)l->filters, l->nweights};
    size_t total = 0, expected = 0;
    ++l->weights_version;
    for (int i = 0; i < 5; ++i)
        if (i == 0 || i == 4 || l->batch_normalize) expected += sizes[i];
    for (int i = 0; i < 5; ++i) {
        if (i > 0 && i < 4 && !l->batch_normalize) continue;
        size_t got = read_floats(f, arrays[i], sizes[i]);
        total += got;
        if (got == sizes[i]) continue;
        if (ferror(f)) return dn_fail(DN_ERR_IO, "%s: read error: %s", path, strerror(errno));
        if (total == 0) { /* the file ends at a layer boundary: a partial file like *.conv.137 */
            *ended = 1;
            return DN_OK;
        }
        return dn_fail(DN_ERR_WEIGHTS,
                       "%s: truncated: layer %d ([convolutional] at cfg line %d) needs %zu floats, the file ends "
                       "after %zu",
                       path, l->index, l->cfg_line, expected, total);
    }
    return DN_OK;
}

dn_status dn_network_load_weights(dn_network *net, const char *path, int *layers_loaded)
{
    dn_clear_error();
    if (!net || !path) return dn_fail(DN_ERR_ARGUMENT, "dn_network_load_weights: NULL argument");
    if (layers_loaded) *layers_loaded = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return dn_fail(DN_ERR_IO, "%s: cannot open weights: %s", path, strerror(errno));

    int32_t version[3];
    dn_status st = DN_OK;
    if (fread(version, sizeof(int32_t), 3, f) != 3) {
        st = dn_fail(DN_ERR_WEIGHTS, "%s: too short for a .weights header (12 bytes of version)", path);
    } else if (version[0] < 0 || version[1] < 0 || version[0] > 1000 || version[1] > 1000) {
        st = dn_fail(DN_ERR_WEIGHTS, "%s: not a darknet .weights file (version %d.%d.%d)", path, version[0],
                     version[1], version[2]);
    } else if (version[0] * 10 + version[1] >= 2) {
        uint64_t seen;
        if (fread(&seen, sizeof seen, 1, f) != 1) st = dn_fail(DN_ERR_WEIGHTS, "%s: header ends before 'seen'", path);
        else net->seen = seen;
    } else {
        int32_t seen;
        if (fread(&seen, sizeof seen, 1, f) != 1) st = dn_fail(DN_ERR_WEIGHTS, "%s: header ends before 'seen'", path);
        else net->seen = (uint64_t)(uint32_t)seen;
    }

    int loaded = 0, ended = 0;
    for (int i = 0; st == DN_OK && !ended && i < net->n; ++i) {
        dn_layer *l = &net->layers[i];
        if (l->type != DN_LAYER_CONVOLUTIONAL) continue;
        st = load_layer(f, path, l, &ended);
        if (st == DN_OK && !ended) ++loaded;
    }
    if (st == DN_OK && !ended) {
        long here = ftell(f);
        if (fseek(f, 0, SEEK_END) == 0) {
            long extra = ftell(f) - here;
            if (extra > 0)
                dn_log(net->log, net->log_user, DN_LOG_WARNING,
                       "%s: %ld bytes after the last layer were ignored (does the cfg match the weights?)", path,
                       extra);
        }
    }
    fclose(f);
#ifdef DN_GPU
    /* even after a failure: the host arrays may have changed, and the device must match them */
    if (net->gpu) {
        char message[512];
        snprintf(message, sizeof message, "%s", dn_last_error());
        dn_status pushed = dn_gpu_push_params(net, -1);
        if (st == DN_OK) st = pushed;
        else dn_fail(st, "%s", message);
    }
#endif
    if (st == DN_OK && layers_loaded) *layers_loaded = loaded;
    return st;
}

static int write_floats(FILE *f, const float *src, size_t count)
{
    return fwrite(src, sizeof(float), count, f) == count;
}

/* Version 0.2.5 weights of layers [0, layers) with `seen` in the header. */
static dn_status write_weights(const dn_network *net, const char *path, int layers, uint64_t seen)
{
#ifdef DN_GPU
    if (net->gpu) { /* the device holds the current parameters */
        dn_status pulled = dn_gpu_pull_params(net, -1);
        if (pulled != DN_OK) return pulled;
    }
#endif
    FILE *f = fopen(path, "wb");
    if (!f) return dn_fail(DN_ERR_IO, "%s: cannot write weights: %s", path, strerror(errno));
    const int32_t version[3] = {0, 2, 5};
    int ok = fwrite(version, sizeof(int32_t), 3, f) == 3 && fwrite(&seen, sizeof seen, 1, f) == 1;
    for (int i = 0; ok && i < layers; ++i) {
        const dn_layer *l = &net->layers[i];
        if (l->type != DN_LAYER_CONVOLUTIONAL) continue;
        ok = write_floats(f, l->biases, (size_t)l->filters);
        if (ok && l->batch_normalize)
            ok = write_floats(f, l->scales, (size_t)l->filters) && write_floats(f, l->rolling_mean, (size_t)l->filters) &&
                 write_floats(f, l->rolling_variance, (size_t)l->filters);
        if (ok) ok = write_floats(f, l->weights, l->nweights);
    }
    int saved_errno = errno;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        saved_errno = errno;
    }
    if (!ok) return dn_fail(DN_ERR_IO, "%s: writing weights failed: %s", path, strerror(saved_errno));
    return DN_OK;
}

dn_status dn_network_save_weights(const dn_network *net, const char *path)
{
    dn_clear_error();
    if (!net || !path) return dn_fail(DN_ERR_ARGUMENT, "dn_network_save_weights: NULL argument");
    return write_weights(net, path, net->n, net->seen);
}

dn_status dn_network_save_partial(const dn_network *net, const char *path, int layers)
{
    dn_clear_error();
    if (!net || !path) return dn_fail(DN_ERR_ARGUMENT, "dn_network_save_partial: NULL argument");
    if (layers < 0 || layers > net->n)
        return dn_fail(DN_ERR_ARGUMENT, "partial: %d layers asked of a network of %d", layers, net->n);
    return write_weights(net, path, layers, 0);
}

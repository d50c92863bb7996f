/* [convolutional]: grouped convolution as im2col + GEMM, batch norm, bias, activation. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BN_EPSILON 0.00001f

static void normalize_batch(dn_layer *l, int n, int threads);

/* Options that change the math and that this engine does not implement: refusing
 * them beats silently computing something else. */
static const char *const unsupported[] = {"dilation", "stride_x", "stride_y", "antialiasing", "binary",
                                          "xnor", "deform", "share_index", "assisted_excitation"};

dn_status dn_convolutional_setup(dn_layer *l, dn_options *o, struct dn_network *net)
{
    (void)net;
    l->filters = dn_opt_int(o, "filters", 1);
    l->size = dn_opt_int(o, "size", 1);
    l->stride = dn_opt_int(o, "stride", 1);
    int pad_flag = dn_opt_int(o, "pad", 0);
    int padding = dn_opt_int(o, "padding", 0);
    l->pad = pad_flag ? l->size / 2 : padding;
    l->groups = dn_opt_int(o, "groups", 1);
    l->batch_normalize = dn_opt_int(o, "batch_normalize", 0);
    l->stopbackward = dn_opt_int(o, "stopbackward", 0);
    const char *activation = dn_opt_str(o, "activation", "logistic");
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; ++i) {
        const char *key = unsupported[i];
        if (!dn_opt_has(o, key)) continue;
        const char *value = dn_opt_str(o, key, "0");
        int is_default = strcmp(value, "0") == 0 || ((strcmp(key, "dilation") == 0 || strncmp(key, "stride_", 7) == 0) &&
                                                     strcmp(value, "1") == 0);
        if (!is_default) {
            char option[DN_QUOTE_SIZE + 32], q[DN_QUOTE_SIZE];
            snprintf(option, sizeof option, "%s=%s", key, value);
            dn_opt_error(o, key, "option %s is not supported by this engine", dn_quote_str(q, option));
        }
    }
    if (o->status != DN_OK) return o->status;
    if (!dn_activation_from_name(activation, &l->activation)) {
        char q[DN_QUOTE_SIZE];
        dn_opt_error(o, "activation", "unknown activation %s", dn_quote_str(q, activation));
        return o->status;
    }
    if (l->filters < 1) dn_opt_error(o, "filters", "filters must be >= 1, got %d", l->filters);
    if (l->size < 1) dn_opt_error(o, "size", "size must be >= 1, got %d", l->size);
    if (l->stride < 1) dn_opt_error(o, "stride", "stride must be >= 1, got %d", l->stride);
    if (l->pad < 0) dn_opt_error(o, "padding", "padding must be >= 0, got %d", l->pad);
    if (l->groups < 1) dn_opt_error(o, "groups", "groups must be >= 1, got %d", l->groups);
    if (l->filters > DN_MAX_CHANNELS) dn_opt_error(o, "filters", "filters must be at most %d, got %d", DN_MAX_CHANNELS, l->filters);
    if (l->size > DN_MAX_SIDE) dn_opt_error(o, "size", "size must be at most %d, got %d", DN_MAX_SIDE, l->size);
    if (l->stride > DN_MAX_SIDE) dn_opt_error(o, "stride", "stride must be at most %d, got %d", DN_MAX_SIDE, l->stride);
    if (l->pad > DN_MAX_SIDE) dn_opt_error(o, "padding", "padding must be at most %d, got %d", DN_MAX_SIDE, l->pad);
    if (o->status != DN_OK) return o->status;
    if (l->c % l->groups || l->filters % l->groups)
        dn_opt_error(o, "groups", "groups=%d must divide the input channels (%d) and filters (%d)", l->groups,
                     l->c, l->filters);
    if (o->status == DN_OK && !dn_convolutional_reshape(l))
        dn_opt_error(o, "size", "kernel %dx%d does not fit the %dx%d input", l->size, l->size, l->w, l->h);
    if (o->status != DN_OK) return o->status;

    size_t per_filter;
    if (!dn_mul_within((size_t)(l->c / l->groups) * l->size, (size_t)l->size, DN_MAX_LAYER_WEIGHTS, &per_filter) ||
        !dn_mul_within(per_filter, (size_t)l->filters, DN_MAX_LAYER_WEIGHTS, &l->nweights)) {
        dn_opt_error(o, "filters", "filters=%d x %d input channels x %dx%d kernel is more than %zu weights", l->filters,
                     l->c / l->groups, l->size, l->size, DN_MAX_LAYER_WEIGHTS);
        return o->status;
    }
    l->weights = dn_calloc(l->nweights, sizeof(float));
    l->biases = dn_calloc((size_t)l->filters, sizeof(float));
    if (l->batch_normalize) {
        l->scales = dn_calloc((size_t)l->filters, sizeof(float));
        l->rolling_mean = dn_calloc((size_t)l->filters, sizeof(float));
        l->rolling_variance = dn_calloc((size_t)l->filters, sizeof(float));
    }
    if (!l->weights || !l->biases || (l->batch_normalize && (!l->scales || !l->rolling_mean || !l->rolling_variance)))
        return dn_fail(DN_ERR_MEMORY, "out of memory for layer %d ([convolutional], %zu weights)", l->index,
                       l->nweights);
    return DN_OK;
}

int dn_convolutional_reshape(dn_layer *l)
{
    if (l->w + 2 * l->pad < l->size || l->h + 2 * l->pad < l->size) return 0;
    l->out_w = (l->w + 2 * l->pad - l->size) / l->stride + 1;
    l->out_h = (l->h + 2 * l->pad - l->size) / l->stride + 1;
    l->out_c = l->filters;
    return 1;
}

void dn_convolutional_init_weights(dn_layer *l, dn_rng *rng)
{
    const float scale = sqrtf(2.0f / (float)(l->size * l->size * (l->c / l->groups)));
    for (size_t i = 0; i < l->nweights; ++i) l->weights[i] = scale * (2.0f * dn_rng_uniform(rng) - 1.0f);
    ++l->weights_version;
    for (int i = 0; i < l->filters; ++i) {
        l->biases[i] = 0;
        if (l->batch_normalize) {
            l->scales[i] = 1;
            l->rolling_mean[i] = 0;
            /* 1 rather than darknet's 0, so an untrained network's inference stays finite */
            l->rolling_variance[i] = 1;
        }
    }
}

static int is_pointwise(const dn_layer *l) { return l->size == 1 && l->stride == 1 && l->pad == 0; }

/* The forward pass works on tiles of output positions of one image and group: the im2col block of
 * a tile (k rows x columns) is meant to stay in the core's cache between being written and the
 * GEMM reading it, and bias, batch norm and activation follow on the tile while it is hot. */
#define DN_TILE_CACHE_FLOATS ((size_t)64 * 1024) /* 256 KiB of columns: within a core's L2 */
#define DN_TILE_ALIGN DN_GEMM_NC                  /* columns: whole pairs of the GEMM's B panels */

/* Columns per tile: its im2col block fits the cache budget (dn_tile_columns). */
static int tile_columns(const dn_layer *l, int threads)
{
    const size_t k = (size_t)(l->c / l->groups) * l->size * l->size;
    return dn_tile_columns((size_t)l->out_h * l->out_w, DN_TILE_CACHE_FLOATS / k, threads);
}

/* Floats of one thread's forward tile: its columns in panels, or for 1x1 layers (which read the
 * input in place) the last partial panel. */
static size_t forward_tile_floats(const dn_layer *l, int threads)
{
    const int k = (l->c / l->groups) * l->size * l->size;
    return dn_packed_b_floats(k, is_pointwise(l) ? DN_GEMM_NR : tile_columns(l, threads));
}

/*
 * The backward pass of small maps takes images together: one image's GEMMs would be thin (a 5x5
 * map gives 25 columns, and the weight gradient a depth of 25). A chunk holds enough images for
 * at least this many columns; maps this large and up go image by image.
 */
#define DN_CHUNK_COLUMNS 384

static int chunk_images(const dn_layer *l)
{
    const int spatial = l->out_h * l->out_w;
    return (DN_CHUNK_COLUMNS + spatial - 1) / spatial;
}

/* Floats of backward_chunks' matrices: a chunk's columns (k x chunk columns) and, for chunks of
 * several images, their deltas gathered beside them (m x chunk columns); a single image's
 * 1x1 layer reads both in place. */
static size_t chunk_floats(const dn_layer *l)
{
    const size_t k = (size_t)(l->c / l->groups) * l->size * l->size, m = (size_t)(l->filters / l->groups);
    const int images = chunk_images(l);
    const size_t columns = (size_t)images * l->out_h * l->out_w;
    if (images == 1) return is_pointwise(l) ? 0 : k * columns;
    return (k + m) * columns;
}

/*
 * The forward of small maps too takes the batch's columns image after image (as backward_chunks
 * does), in tiles of up to this many: whole panels for the GEMM, and each weight panel used on
 * several of them. Each tile's result goes to a thread buffer, and from there to each image's
 * rows. An output value is the same sum wherever its column falls in a tile, so an image's result
 * still does not depend on the batch.
 */
#define DN_MERGED_TILE_COLUMNS 64

static int merges_images(const dn_layer *l, int n) { return n > 1 && chunk_images(l) > 1; }

static int merged_tile_columns(long total, int threads)
{
    long share = (total + threads - 1) / threads;
    share = (share + DN_TILE_ALIGN - 1) / DN_TILE_ALIGN * DN_TILE_ALIGN;
    return share < DN_MERGED_TILE_COLUMNS ? (int)share : DN_MERGED_TILE_COLUMNS;
}

/* A thread's merged tile: its columns in panels, then the GEMM's result. */
static size_t merged_tile_floats(const dn_layer *l)
{
    const int k = (l->c / l->groups) * l->size * l->size;
    return dn_packed_b_floats(k, DN_MERGED_TILE_COLUMNS) + (size_t)(l->filters / l->groups) * DN_MERGED_TILE_COLUMNS;
}

size_t dn_convolutional_workspace(const dn_layer *l, int threads)
{
    const size_t whole = chunk_floats(l);
    size_t tiles = (size_t)threads * forward_tile_floats(l, threads);
    if (chunk_images(l) > 1 && (size_t)threads * merged_tile_floats(l) > tiles)
        tiles = (size_t)threads * merged_tile_floats(l);
    const size_t winograd = dn_winograd_workspace(l, threads);
    const size_t direct = dn_direct_bf16_applies(l) && dn_cpu_has_bf16() ? dn_direct_bf16_workspace(l, threads) : 0;
    size_t most = whole > tiles ? whole : tiles;
    if (winograd > most) most = winograd;
    return direct > most ? direct : most;
}

void dn_convolutional_affine(const dn_layer *l, int f, float *mul, float *add)
{
    *mul = 1.0f;
    *add = l->biases[f];
    if (l->batch_normalize) {
        /* (x - mean) / sqrt(var + eps) * scale + bias, folded into one multiply-add */
        *mul = l->scales[f] / sqrtf(l->rolling_variance[f] + BN_EPSILON);
        *add = l->biases[f] - l->rolling_mean[f] * *mul;
    }
}

dn_status dn_convolutional_prepare(dn_layer *l, int threads)
{
    if (dn_winograd_applies(l)) {
        if (dn_winograd_prepare(l, threads)) return DN_OK;
        return dn_fail(DN_ERR_MEMORY, "out of memory for the Winograd kernels of layer %d ([convolutional])",
                       l->index);
    }
    const int m = l->filters / l->groups;
    const int k = (l->c / l->groups) * l->size * l->size;
    const size_t per_group = dn_packed_a_floats(m, k);
    if (!l->packed_weights) {
        l->packed_weights = malloc(per_group * l->groups * sizeof(float));
        if (!l->packed_weights)
            return dn_fail(DN_ERR_MEMORY, "out of memory for the packed weights of layer %d ([convolutional])",
                           l->index);
        l->packed_version = l->weights_version - 1;
    }
    if (l->packed_version != l->weights_version) {
        const size_t weights_group = l->nweights / (size_t)l->groups;
#pragma omp parallel for num_threads(threads) schedule(static) if (l->groups > 1)
        for (int g = 0; g < l->groups; ++g)
            dn_pack_a(l->weights + g * weights_group, k, m, k, l->packed_weights + g * per_group);
        l->packed_version = l->weights_version;
    }
    return DN_OK;
}

/* The weights (channels x filters) from which a 3x3 layer's bf16 pass leaves fp32 Winograd for
 * direct_bf16.c: Winograd's transformed kernels (36 floats per pair, 18 MiB here) no longer stay
 * in cache, and it fell to 350-560 GFLOP/s where the direct path kept 520-700 (2-core Zen 5):
 * 512x512 on 13x13 2.14 against 1.49 ms, on 52x52 30.6 against 19.1, 256x512 on 26x26 2.86
 * against 2.26 (batch 8: 21.6 against 19.4). Below it Winograd was the faster: 256x256 on 26x26
 * 0.88 against 1.42 ms, 128x256 on 52x52 1.67 against 2.27; 384x256 on 26x26 went either way
 * (2.77 against 2.28 ms at batch 1, 14.9 against 18.5 at batch 8). */
#define DN_DIRECT_OVER_WINOGRAD_WEIGHTS (256 * 512)

/* Whether the bf16 pass on `kernel` runs layer l on direct_bf16.c's path: 3x3 layers of stride 1
 * or 2 on the AVX512-BF16 kernel, but for those Winograd does faster in fp32. It depends on the
 * layer's shape only, so an image's result does not depend on the batch. */
static int runs_direct_bf16(const dn_layer *l, dn_bf16_kernel kernel)
{
    if (kernel != DN_BF16_AVX512 || !dn_direct_bf16_applies(l)) return 0;
    return !dn_winograd_applies(l) || (long)l->c * l->filters >= DN_DIRECT_OVER_WINOGRAD_WEIGHTS;
}

/* bf16 inference runs the im2col and 1x1 paths with bf16 operands, and on the AVX512-BF16 kernel
 * 3x3 layers of stride 1 and 2 on direct_bf16.c's path. Winograd layers otherwise keep fp32:
 * F(4x4, 3x3)'s output transform (coefficients up to 8 per side, cancelling) magnifies the
 * rounding of the transformed tiles and kernels about twentyfold, so that in bf16 single outputs
 * of a random 32-channel layer were 20 % off (0.1 % for bf16 im2col); and fp32 Winograd does the
 * 3x3 layers in fewer operations than bf16 im2col would. Even with AMX, bf16 im2col on those
 * layers was slower than fp32 Winograd (yolov4-tiny 61.8 against 57.4 ms on a 2-core Xeon with
 * AMX): the fp32 im2col and rounding of B, not the products, then take the time. */
dn_status dn_convolutional_prepare_bf16(dn_layer *l, int threads, dn_bf16_kernel kernel)
{
    const int direct = runs_direct_bf16(l, kernel);
    if (!direct && dn_winograd_applies(l)) return DN_OK;
    const int m = l->filters / l->groups;
    const int k = (l->c / l->groups) * l->size * l->size;
    const size_t per_group = direct ? dn_direct_bf16_weight_values(l) : dn_packed_a_bf16_values(kernel, m, k);
    if (l->packed_weights_bf16 && l->packed_bf16_kernel != kernel) { /* another layout, another size */
        free(l->packed_weights_bf16);
        l->packed_weights_bf16 = NULL;
    }
    if (!l->packed_weights_bf16) {
        l->packed_weights_bf16 = malloc(per_group * l->groups * sizeof(uint16_t));
        if (!l->packed_weights_bf16)
            return dn_fail(DN_ERR_MEMORY, "out of memory for the bf16 weights of layer %d ([convolutional])", l->index);
        l->packed_bf16_version = l->weights_version - 1;
        l->packed_bf16_kernel = kernel;
    }
    if (l->packed_bf16_version != l->weights_version) {
        const size_t weights_group = l->nweights / (size_t)l->groups;
        if (direct) {
            dn_direct_bf16_pack(l, l->packed_weights_bf16);
        } else {
#pragma omp parallel for num_threads(threads) schedule(static) if (l->groups > 1)
            for (int g = 0; g < l->groups; ++g)
                dn_pack_a_bf16(kernel, l->weights + g * weights_group, k, m, k,
                               l->packed_weights_bf16 + g * per_group);
        }
        l->packed_bf16_version = l->weights_version;
    }
    return DN_OK;
}

/* C (m x count, ldc) = group g's weights times B (packed panels, or with column_step 1 plain rows
 * ldb apart), in the precision of this pass; `tail` is the fp32 GEMM's scratch for rows' last
 * partial panel. */
static void weights_times(const dn_layer *l, const struct dn_network *net, int g, int count, const float *b,
                          int rows_ldb, float *c, int ldc, float *tail)
{
    const int m = l->filters / l->groups;
    const int k = (l->c / l->groups) * l->size * l->size;
    if (net->bf16_pass) {
        const dn_bf16_kernel kernel = net->bf16_pass;
        const uint16_t *a = l->packed_weights_bf16 + g * dn_packed_a_bf16_values(kernel, m, k);
        if (rows_ldb)
            dn_gemm_bf16(kernel, m, count, k, a, b, 1, rows_ldb, c, ldc, 0);
        else
            dn_gemm_bf16(kernel, m, count, k, a, b, (size_t)k, DN_GEMM_NR, c, ldc, 0);
        return;
    }
    const float *a = l->packed_weights + g * dn_packed_a_floats(m, k);
    if (rows_ldb)
        dn_gemm_rows(m, count, k, a, b, rows_ldb, c, ldc, tail);
    else
        dn_gemm_packed(m, count, k, a, b, c, ldc);
}

/* The forward's epilogue for `count` values of filter f at output offset `at` (image, filter,
 * position): bias or inference batch norm applied to `from` into the output (from may be the
 * output itself), kept in act_input when training, activated. */
void dn_convolutional_finish(dn_layer *l, const struct dn_network *net, int f, size_t at, const float *from, int count)
{
    float *row = l->output + at;
    float mul, add;
    dn_convolutional_affine(l, f, &mul, &add);
    for (int i = 0; i < count; ++i) row[i] = from[i] * mul + add;
    if (net->train) memcpy(l->act_input + at, row, sizeof(float) * count);
    dn_activate_array(row, (size_t)count, l->activation);
}

/* Rows [0, m) x columns [0, count) of a merged tile's result (count apart), whose first column is
 * column `first` of the batch, into each image's output as the forward's epilogue says. */
static void scatter_merged(dn_layer *l, struct dn_network *net, int g, const float *result, long first, int count,
                           int batch_norm_train)
{
    const int m = l->filters / l->groups;
    const long spatial = (long)l->out_h * l->out_w;
    for (long p = first; p < first + count;) {
        const long image = p / spatial, position = p % spatial;
        const int piece = (int)(spatial - position < first + count - p ? spatial - position : first + count - p);
        for (int j = 0; j < m; ++j) {
            const int f = g * m + j;
            const size_t at = (size_t)image * l->outputs + (size_t)f * spatial + position;
            const float *from = result + (size_t)j * count + (p - first);
            if (batch_norm_train) /* normalize_batch needs the whole batch's statistics */
                memcpy(l->output + at, from, sizeof(float) * piece);
            else
                dn_convolutional_finish(l, net, f, at, from, piece);
        }
        p += piece;
    }
}

static void forward_merged(dn_layer *l, struct dn_network *net, const float *input, int n, int batch_norm_train)
{
    const int k = (l->c / l->groups) * l->size * l->size;
    const size_t in_group = (size_t)(l->c / l->groups) * l->h * l->w;
    const int threads = net->threads;
    const long total = (long)n * l->out_h * l->out_w;
    const int cols = merged_tile_columns(total, threads);
    const long tiles = (total + cols - 1) / cols, tasks = (long)l->groups * tiles;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (long task = 0; task < tasks; ++task) {
        const int g = (int)(task / tiles);
        const long first = task % tiles * cols;
        const int count = total - first < cols ? (int)(total - first) : cols;
        float *panels = net->workspace + (size_t)dn_thread_index() * merged_tile_floats(l);
        float *result = panels + dn_packed_b_floats(k, DN_MERGED_TILE_COLUMNS);
        dn_im2col_panels_batch(input + g * in_group, (size_t)l->inputs, l->c / l->groups, l->h, l->w, l->size,
                               l->stride, l->pad, first, count, panels);
        weights_times(l, net, g, count, panels, 0, result, count, NULL);
        scatter_merged(l, net, g, result, first, count, batch_norm_train);
    }
}

void dn_convolutional_forward(dn_layer *l, struct dn_network *net, const float *input, int n)
{
    const int m = l->filters / l->groups;
    const int spatial = l->out_h * l->out_w;
    const size_t in_group = (size_t)(l->c / l->groups) * l->h * l->w;
    const int threads = net->threads;
    const int cols = tile_columns(l, threads);
    const int tiles = (spatial + cols - 1) / cols;
    const long tasks = (long)n * l->groups * tiles;
    const int batch_norm_train = l->batch_normalize && net->train;
    if (runs_direct_bf16(l, net->bf16_pass)) {
        dn_direct_bf16_forward(l, net, input, n);
        return;
    }
    if (dn_winograd_applies(l)) {
        dn_winograd_forward(l, net, input, n, batch_norm_train);
        if (batch_norm_train) normalize_batch(l, n, threads);
        return;
    }
    if (merges_images(l, n)) {
        forward_merged(l, net, input, n, batch_norm_train);
        if (batch_norm_train) normalize_batch(l, n, threads);
        return;
    }

#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (tasks > 1)
    for (long task = 0; task < tasks; ++task) {
        const int b = (int)(task / ((long)l->groups * tiles));
        const int g = (int)(task / tiles % l->groups);
        const int first = (int)(task % tiles) * cols;
        const int count = spatial - first < cols ? spatial - first : cols;
        const float *im = input + (size_t)b * l->inputs + g * in_group;
        float *out = l->output + (size_t)b * l->outputs + (size_t)g * m * spatial + first;
        float *columns = net->workspace + (size_t)dn_thread_index() * forward_tile_floats(l, threads);
        if (is_pointwise(l)) { /* the input's rows are the GEMM's B */
            weights_times(l, net, g, count, im + first, spatial, out, spatial, columns);
        } else {
            dn_im2col_panels(im, l->c / l->groups, l->h, l->w, l->size, l->stride, l->pad, first, count, columns);
            weights_times(l, net, g, count, columns, 0, out, spatial, NULL);
        }
        if (batch_norm_train) continue; /* normalize_batch needs the whole batch's statistics */
        for (int j = 0; j < m; ++j) {
            const size_t at = (size_t)b * l->outputs + (size_t)(g * m + j) * spatial + first;
            dn_convolutional_finish(l, net, g * m + j, at, l->output + at, count);
        }
    }
    if (batch_norm_train) normalize_batch(l, n, threads);
}

/*
 * Training-mode batch norm over the n images and all positions of each filter. The variance
 * is the biased one (1/N) so that the backward pass is the exact gradient of this forward
 * (darknet divides by N - 1 here, a difference of under 1% for N >= 100).
 *
 * Only the normalised values are kept for the backward pass (bn_x_norm): the raw result less
 * the mean is x_norm / inv_std, and the activation's input is x_norm * scale + bias, computed
 * again the same way. On large maps these passes are bound by memory, and two more copies of
 * the output cost more than the arithmetic.
 */
/* One filter of normalize_batch, over the raw convolution results in l->output. */
DN_HOT static void normalize_filter(dn_layer *l, int f, int n)
{
    const size_t spatial = (size_t)l->out_h * l->out_w;
    const double count = (double)n * spatial;
    /* sums of x and x^2 in one pass, in double: E[x^2] - mean^2 then loses float precision
     * only where the mean is some 2^14 standard deviations away from 0 */
    double sum = 0, squares = 0;
    for (int b = 0; b < n; ++b) {
        const float *plane = l->output + (size_t)b * l->outputs + f * spatial;
#pragma omp simd reduction(+ : sum, squares)
        for (size_t i = 0; i < spatial; ++i) {
            sum += plane[i];
            squares += (double)plane[i] * plane[i];
        }
    }
    const double mean_exact = sum / count, spread = squares / count - mean_exact * mean_exact;
    const float mean = (float)mean_exact, variance = (float)(spread > 0 ? spread : 0);
    l->bn_mean[f] = mean;
    l->bn_variance[f] = variance;
    /* darknet's GPU momentum (.99/.01), on the CPU too */
    l->rolling_mean[f] = 0.99f * l->rolling_mean[f] + 0.01f * mean;
    l->rolling_variance[f] = 0.99f * l->rolling_variance[f] + 0.01f * variance;
    const float inv_std = 1.0f / sqrtf(variance + BN_EPSILON);
    const float scale = l->scales[f], bias = l->biases[f];
    for (int b = 0; b < n; ++b) {
        const size_t offset = (size_t)b * l->outputs + f * spatial;
        float *restrict out = l->output + offset, *restrict x_norm = l->bn_x_norm + offset;
#pragma omp simd
        for (size_t i = 0; i < spatial; ++i) {
            const float normalised = (out[i] - mean) * inv_std;
            x_norm[i] = normalised;
            out[i] = normalised * scale + bias;
        }
        dn_activate_array(out, spatial, l->activation);
    }
}

static void normalize_batch(dn_layer *l, int n, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int f = 0; f < l->filters; ++f) normalize_filter(l, f, n);
}

/* Values of one plane whose activation gradient is taken at a time (on the stack). */
#define DN_GRADIENT_CHUNK 256

/* The adjoint of the activation and of normalize_batch: turns l->delta from -dL/d(output) into
 * -dL/d(convolution result), accumulating the scale and bias updates. */
DN_HOT static void normalize_filter_backward(dn_layer *l, int f, int n)
{
    const size_t spatial = (size_t)l->out_h * l->out_w;
    const float count = (float)((size_t)n * spatial);
    const float scale = l->scales[f], bias = l->biases[f];
    double bias_sum = 0, scale_sum = 0;
    for (int b = 0; b < n; ++b) {
        const size_t offset = (size_t)b * l->outputs + f * spatial;
        const float *restrict x_norm = l->bn_x_norm + offset;
        float *restrict delta = l->delta + offset;
        for (size_t first = 0; first < spatial; first += DN_GRADIENT_CHUNK) {
            const size_t end = first + DN_GRADIENT_CHUNK < spatial ? first + DN_GRADIENT_CHUNK : spatial;
            float y[DN_GRADIENT_CHUNK]; /* the activation's input, as normalize_filter made it */
#pragma omp simd
            for (size_t i = first; i < end; ++i) y[i - first] = x_norm[i] * scale + bias;
            dn_gradient_array(y, end - first, l->activation, delta + first);
#pragma omp simd reduction(+ : bias_sum, scale_sum)
            for (size_t i = first; i < end; ++i) {
                bias_sum += delta[i];
                scale_sum += (double)delta[i] * x_norm[i];
            }
        }
    }
    l->bias_updates[f] += (float)bias_sum;
    l->scale_updates[f] += (float)scale_sum;
    const float inv_std = 1.0f / sqrtf(l->bn_variance[f] + BN_EPSILON);
    /* d(x) = scale * inv_std * (delta - (sum of delta + x_norm * sum of delta x_norm) / N): the
     * mean's and the variance's terms of darknet's backward_batchnorm, with x - mean written as
     * x_norm * sqrt(var + eps) */
    const float mean_term = (float)(-bias_sum * scale * inv_std / count);
    const float centred_term = (float)(-scale_sum * scale * inv_std / count);
    for (int b = 0; b < n; ++b) {
        const size_t offset = (size_t)b * l->outputs + f * spatial;
        const float *restrict x_norm = l->bn_x_norm + offset;
        float *restrict delta = l->delta + offset;
#pragma omp simd
        for (size_t i = 0; i < spatial; ++i) delta[i] = delta[i] * scale * inv_std + centred_term * x_norm[i] + mean_term;
    }
}

static void normalize_batch_backward(dn_layer *l, int n, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int f = 0; f < l->filters; ++f) normalize_filter_backward(l, f, n);
}

/* Weights per chunk when the threads' private gradients are added up. */
#define DN_ACCUMULATE_CHUNK 16384

/* Splits [0, total) into `parts` runs of whole DN_TILE_ALIGN blocks; run `part` is [*first, *end). */
static void split_range(int total, int parts, int part, int *first, int *end)
{
    const int blocks = (total + DN_TILE_ALIGN - 1) / DN_TILE_ALIGN;
    const int a = (int)((long)blocks * part / parts) * DN_TILE_ALIGN;
    const int b = (int)((long)blocks * (part + 1) / parts) * DN_TILE_ALIGN;
    *first = a < total ? a : total;
    *end = b < total ? b : total;
}

/* Per thread, backward_by_image's columns of one image and its private weight gradient. */
static size_t by_image_floats(const dn_layer *l)
{
    const size_t k = (size_t)(l->c / l->groups) * l->size * l->size;
    return (is_pointwise(l) ? 0 : k * l->out_h * l->out_w) + l->nweights;
}

/* Whether backward_by_image is the way for n images: maps too large for chunks, an image per
 * thread at least. */
static int goes_by_image(const dn_layer *l, int n, int threads)
{
    return chunk_images(l) == 1 && n >= threads;
}

size_t dn_convolutional_backward_scratch(const dn_layer *l)
{
    /* Winograd layers need none, unless they fall back (then they check what is there) */
    if (l->type != DN_LAYER_CONVOLUTIONAL || dn_winograd_applies(l) || chunk_images(l) > 1) return 0;
    return by_image_floats(l);
}

/*
 * The backward GEMMs with whole images per thread (image b on thread b % threads): each thread
 * has its own columns and its own weight gradient, added into weight_updates at the end in
 * thread order; nothing is shared but read-only inputs, so there is no barrier per image.
 */
static void backward_by_image(dn_layer *l, struct dn_network *net, const float *input, float *input_delta, int n)
{
    const int m = l->filters / l->groups;
    const int k = (l->c / l->groups) * l->size * l->size;
    const int spatial = l->out_h * l->out_w;
    const int channels = l->c / l->groups;
    const size_t in_group = (size_t)channels * l->h * l->w;
    const size_t weights_group = l->nweights / (size_t)l->groups;
    const int threads = net->threads;
    const size_t stride = net->backward_scratch_size / (size_t)threads;
    const size_t columns_floats = is_pointwise(l) ? 0 : (size_t)k * spatial;
#pragma omp parallel num_threads(threads)
    {
        const int t = dn_thread_index();
        float *columns = net->backward_scratch + (size_t)t * stride;
        float *dw = columns + columns_floats;
        memset(dw, 0, l->nweights * sizeof(float));
        for (int b = t; b < n; b += threads) {
            for (int g = 0; g < l->groups; ++g) {
                const float *im = input + (size_t)b * l->inputs + g * in_group;
                const float *d = l->delta + (size_t)b * l->outputs + (size_t)g * m * spatial;
                const float *w = l->weights + g * weights_group;
                const float *cols = im;
                if (!is_pointwise(l)) {
                    dn_im2col(im, channels, l->h, l->w, l->size, l->stride, l->pad, columns, (size_t)spatial);
                    cols = columns;
                }
                dn_gemm(0, 1, m, k, spatial, 1.0f, d, spatial, cols, spatial, 1.0f, dw + g * weights_group, k);
                if (!input_delta) continue;
                float *im_delta = input_delta + (size_t)b * l->inputs + g * in_group;
                if (is_pointwise(l)) {
                    dn_gemm(1, 0, k, spatial, m, 1.0f, w, k, d, spatial, 1.0f, im_delta, spatial);
                } else { /* the columns are free again: they take -dL/d(columns) */
                    dn_gemm(1, 0, k, spatial, m, 1.0f, w, k, d, spatial, 0.0f, columns, spatial);
                    dn_col2im_add(columns, (size_t)spatial, channels, l->h, l->w, l->size, l->stride, l->pad,
                                  im_delta);
                }
            }
        }
#pragma omp barrier
        const long chunks = (long)((l->nweights + DN_ACCUMULATE_CHUNK - 1) / DN_ACCUMULATE_CHUNK);
#pragma omp for schedule(static)
        for (long c = 0; c < chunks; ++c) {
            const size_t first = (size_t)c * DN_ACCUMULATE_CHUNK;
            const size_t end = first + DN_ACCUMULATE_CHUNK < l->nweights ? first + DN_ACCUMULATE_CHUNK : l->nweights;
            for (int u = 0; u < threads; ++u) {
                const float *part = net->backward_scratch + (size_t)u * stride + columns_floats;
                for (size_t i = first; i < end; ++i) l->weight_updates[i] += part[i];
            }
        }
    }
}

static void backward_chunks(dn_layer *l, struct dn_network *net, const float *input, float *input_delta, int n);

void dn_convolutional_backward(dn_layer *l, struct dn_network *net, const float *input, float *input_delta, int n)
{
    const int spatial = l->out_h * l->out_w;
    const int threads = net->threads;

    if (l->batch_normalize) { /* the activation's gradient too */
        normalize_batch_backward(l, n, threads);
    } else {
        dn_gradient_parallel(l->act_input, (size_t)n * l->outputs, l->activation, l->delta, threads);
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int f = 0; f < l->filters; ++f) {
            double sum = 0;
            for (int b = 0; b < n; ++b) {
                const float *plane = l->delta + (size_t)b * l->outputs + (size_t)f * spatial;
#pragma omp simd reduction(+ : sum)
                for (int i = 0; i < spatial; ++i) sum += plane[i];
            }
            l->bias_updates[f] += (float)sum;
        }
    }
    /* 3x3 stride-1 layers: both gradients through Winograd (4x fewer multiplies, no im2col or
     * col2im), where its buffers are there */
    if (dn_winograd_applies(l) && net->winograd_grads_size >= dn_winograd_grads_floats(l, threads) &&
        (!input_delta || dn_winograd_prepare_backward(l, threads))) {
        dn_winograd_backward_weights(l, net, input, n);
        if (input_delta) dn_winograd_backward_data(l, net, l->delta, input_delta, n);
        return;
    }
    if (goes_by_image(l, n, threads) && net->backward_scratch_size >= by_image_floats(l) * (size_t)threads)
        backward_by_image(l, net, input, input_delta, n);
    else
        backward_chunks(l, net, input, input_delta, n);
}

/*
 * The backward GEMMs of chunks of images (chunk_images: one image for large maps), each split over
 * the threads along a dimension of its output, so every value is one thread's full sum. The
 * chunk's columns lie side by side (image i at column i * spatial); for several images their
 * deltas are gathered the same way, and the weight gradient's GEMM has their columns as depth.
 */
static void backward_chunks(dn_layer *l, struct dn_network *net, const float *input, float *input_delta, int n)
{
    const int m = l->filters / l->groups;
    const int k = (l->c / l->groups) * l->size * l->size;
    const int spatial = l->out_h * l->out_w;
    const int channels = l->c / l->groups;
    const size_t plane = (size_t)l->h * l->w;
    const size_t in_group = (size_t)channels * plane;
    const size_t weights_group = l->nweights / (size_t)l->groups;
    const size_t taps = (size_t)l->size * l->size;
    const int threads = net->threads;
    const int pointwise = is_pointwise(l);
    for (int b0 = 0; b0 < n; b0 += chunk_images(l)) {
        const int images = n - b0 < chunk_images(l) ? n - b0 : chunk_images(l);
        const int width = images * spatial; /* the chunk's columns */
        /* a single image's delta, and a single image's input rows of a 1x1 layer, are read in place */
        const int in_place = images == 1;
        for (int g = 0; g < l->groups; ++g) {
            const float *w = l->weights + g * weights_group;
            float *wu = l->weight_updates + g * weights_group;
            float *columns = net->workspace, *deltas = columns + (size_t)k * width;
            const float *first_input = input + (size_t)b0 * l->inputs + g * in_group;
            const float *d = in_place ? l->delta + (size_t)b0 * l->outputs + (size_t)g * m * spatial : deltas;
            const float *cols = in_place && pointwise ? first_input : columns;
#pragma omp parallel num_threads(threads)
            {
                const int part = dn_thread_index(), parts = threads;
                const int c0 = channels * part / parts, c1 = channels * (part + 1) / parts;
                if (cols == columns)
                    for (int i = 0; i < images; ++i) {
                        const float *im = first_input + (size_t)i * l->inputs + (size_t)c0 * plane;
                        float *at = columns + (size_t)c0 * taps * width + (size_t)i * spatial;
                        if (pointwise) {
                            for (int ch = 0; ch < c1 - c0; ++ch)
                                memcpy(at + (size_t)ch * width, im + (size_t)ch * plane, sizeof(float) * spatial);
                        } else if (c1 > c0) {
                            dn_im2col(im, c1 - c0, l->h, l->w, l->size, l->stride, l->pad, at, (size_t)width);
                        }
                    }
                if (!in_place) {
                    const int f0 = m * part / parts, f1 = m * (part + 1) / parts;
                    for (int i = 0; i < images; ++i)
                        for (int f = f0; f < f1; ++f)
                            memcpy(deltas + (size_t)f * width + (size_t)i * spatial,
                                   l->delta + (size_t)(b0 + i) * l->outputs + (size_t)(g * m + f) * spatial,
                                   sizeof(float) * spatial);
                }
#pragma omp barrier
                int r0, r1; /* dW += delta x columns^T, split over the rows of the kernel matrix (k) */
                split_range(k, parts, part, &r0, &r1);
                if (r1 > r0)
                    dn_gemm(0, 1, m, r1 - r0, width, 1.0f, d, width, cols + (size_t)r0 * width, width, 1.0f, wu + r0, k);
                if (input_delta) {
#pragma omp barrier
                    int s0, s1; /* d(columns) = W^T x delta, split over the columns */
                    split_range(width, parts, part, &s0, &s1);
                    float *first_delta = input_delta + (size_t)b0 * l->inputs + g * in_group;
                    if (s1 > s0) {
                        if (in_place && pointwise)
                            dn_gemm(1, 0, k, s1 - s0, m, 1.0f, w, k, d + s0, width, 1.0f, first_delta + s0, width);
                        else
                            dn_gemm(1, 0, k, s1 - s0, m, 1.0f, w, k, d + s0, width, 0.0f, columns + s0, width);
                    }
                    if (!(in_place && pointwise)) {
#pragma omp barrier
                        for (int i = 0; i < images; ++i) {
                            float *im_delta = first_delta + (size_t)i * l->inputs + (size_t)c0 * plane;
                            const float *at = columns + (size_t)c0 * taps * width + (size_t)i * spatial;
                            if (pointwise) {
                                for (int ch = 0; ch < c1 - c0; ++ch) {
                                    float *restrict into = im_delta + (size_t)ch * plane;
                                    const float *restrict from = at + (size_t)ch * width;
                                    for (int j = 0; j < spatial; ++j) into[j] += from[j];
                                }
                            } else if (c1 > c0) {
                                dn_col2im_add(at, (size_t)width, c1 - c0, l->h, l->w, l->size, l->stride, l->pad,
                                              im_delta);
                            }
                        }
                    }
                }
            }
        }
    }
}

/* Elements per chunk of the threaded SGD step. */
#define DN_UPDATE_CHUNK 65536

void dn_convolutional_update(dn_layer *l, float learning_rate, float momentum, float decay, int batch, int threads)
{
    const float step = learning_rate / (float)batch;
    for (int f = 0; f < l->filters; ++f) {
        l->biases[f] += step * l->bias_updates[f];
        l->bias_updates[f] *= momentum;
        if (l->batch_normalize) {
            l->scales[f] += step * l->scale_updates[f];
            l->scale_updates[f] *= momentum;
        }
    }
    const long chunks = (long)((l->nweights + DN_UPDATE_CHUNK - 1) / DN_UPDATE_CHUNK);
    ++l->weights_version;
#pragma omp parallel for num_threads(threads) schedule(static) if (chunks > 1)
    for (long c = 0; c < chunks; ++c) {
        const size_t first = (size_t)c * DN_UPDATE_CHUNK;
        const size_t end = first + DN_UPDATE_CHUNK < l->nweights ? first + DN_UPDATE_CHUNK : l->nweights;
        for (size_t i = first; i < end; ++i) {
            l->weight_updates[i] += -decay * (float)batch * l->weights[i];
            l->weights[i] += step * l->weight_updates[i];
            l->weight_updates[i] *= momentum;
        }
    }
}

/*
 * bf16 inference of 3x3 stride-1 pad-1 convolutions without im2col (AVX512-BF16).
 *
 * The input is rounded once into planes of bf16 channel pairs with a zero border (the padded
 * grid, width + 2 wide). On that grid, tap (ky, kx) of output position j is input position
 * j + ky * (width + 2) + kx, so the convolution is one GEMM whose B is the pair planes read in
 * place at nine offsets: no im2col (which wrote each input value nine times, in fp32, before it
 * was rounded block by block), and no Winograd transforms (whose coefficients magnify bf16's
 * rounding, see convolutional_layer.c). The GEMM makes the outputs of the grid's columns too,
 * the last two of each row of which fall outside the image and are dropped.
 *
 * The AMX kernel keeps the other paths: this one reads B as vdpbf16ps does, and its tile form is
 * not written yet.
 */
#include "internal.h"

#define DN_DIRECT_TAPS 9
/* floats of one thread's block of results (filters x columns): within a core's L2 */
#define DN_DIRECT_TILE_FLOATS ((size_t)64 * 1024)

int dn_direct_bf16_applies(const dn_layer *l)
{
    return l->size == 3 && l->stride == 1 && l->pad == 1 && l->groups == 1;
}

static int grid_width(const dn_layer *l) { return l->w + 2; }
static int channel_pairs(const dn_layer *l) { return (l->c + 1) / 2; }

/* uint32 values of one pair plane: the padded grid, then what dn_gemm_bf16_taps may read past
 * it (the farthest tap of the grid's last column, outside the image, is 2 values past the grid,
 * and up to NC - 1 columns are read past the last one), rounded up to a cache line. */
static size_t plane_step(const dn_layer *l)
{
    const size_t grid = (size_t)(l->h + 2) * grid_width(l) + 2 + DN_GEMM_NC - 1;
    const size_t line = 64 / sizeof(uint32_t);
    return (grid + line - 1) / line * line;
}

/* Grid columns of one task: its results fit the budget, yet one image is split over all threads. */
static int tile_columns(const dn_layer *l, int threads)
{
    const long total = (long)l->out_h * grid_width(l);
    long cols = (long)(DN_DIRECT_TILE_FLOATS / (size_t)l->filters);
    const long share = (total + threads - 1) / threads;
    if (cols > share) cols = share;
    cols = (cols + DN_GEMM_NC - 1) / DN_GEMM_NC * DN_GEMM_NC;
    if (cols < DN_GEMM_NC) cols = DN_GEMM_NC;
    return cols > total ? (int)total : (int)cols;
}

size_t dn_direct_bf16_workspace(const dn_layer *l, int threads)
{
    return (size_t)channel_pairs(l) * plane_step(l) + (size_t)threads * l->filters * tile_columns(l, threads);
}

size_t dn_direct_bf16_weight_values(const dn_layer *l)
{
    return dn_packed_taps_bf16_values(l->filters, DN_DIRECT_TAPS, channel_pairs(l));
}

void dn_direct_bf16_pack(const dn_layer *l, uint16_t *out)
{
    dn_pack_taps_bf16(l->weights, l->filters, l->c, DN_DIRECT_TAPS, out);
}

/* Grid columns [first, first + count) of image b's results (filters rows, count apart) into its
 * output: the image's columns of each grid row, with the epilogue. */
static void finish_grid_columns(dn_layer *l, struct dn_network *net, int b, const float *results, long first,
                                int count)
{
    const int wide = grid_width(l);
    const size_t spatial = (size_t)l->out_h * l->out_w;
    for (long j = first; j < first + count;) {
        const int y = (int)(j / wide), x = (int)(j % wide);
        const int run = (int)(wide - x < first + count - j ? wide - x : first + count - j);
        const int inside = x < l->out_w ? (l->out_w - x < run ? l->out_w - x : run) : 0;
        for (int f = 0; inside && f < l->filters; ++f)
            dn_convolutional_finish(l, net, f, (size_t)b * l->outputs + f * spatial + (size_t)y * l->out_w + x,
                                    results + (size_t)f * count + (j - first), inside);
        j += run;
    }
}

void dn_direct_bf16_forward(dn_layer *l, struct dn_network *net, const float *input, int n)
{
    const int threads = net->threads, wide = grid_width(l), pairs = channel_pairs(l);
    const size_t step = plane_step(l);
    long offsets[DN_DIRECT_TAPS];
    for (int t = 0; t < DN_DIRECT_TAPS; ++t) offsets[t] = (long)(t / 3) * wide + t % 3;
    /* the workspace is plain memory: the pair planes, then each thread's results */
    uint32_t *planes = (uint32_t *)(void *)net->workspace;
    float *results = net->workspace + (size_t)pairs * step;
    const long total = (long)l->out_h * wide;
    const int cols = tile_columns(l, threads);
    const long tiles = (total + cols - 1) / cols;
    for (int b = 0; b < n; ++b) {
        const float *im = input + (size_t)b * l->inputs;
#pragma omp parallel num_threads(threads)
        {
#pragma omp for schedule(static)
            for (int q = 0; q < pairs; ++q) dn_bf16_pair_planes(im, l->c, l->h, l->w, 1, step, q, planes);
#pragma omp for schedule(dynamic, 1)
            for (long t = 0; t < tiles; ++t) {
                const long first = t * cols;
                const int count = total - first < cols ? (int)(total - first) : cols;
                float *mine = results + (size_t)dn_thread_index() * l->filters * cols;
                dn_gemm_bf16_taps(l->filters, count, DN_DIRECT_TAPS, offsets, pairs, l->packed_weights_bf16,
                                  planes + first, step, mine, count);
                finish_grid_columns(l, net, b, mine, first, count);
            }
        }
    }
}

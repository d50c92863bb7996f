/*
 * bf16 inference of 3x3 pad-1 convolutions of stride 1 or 2 without im2col (AVX512-BF16).
 *
 * The input is rounded once into planes of bf16 channel pairs with a zero border (the padded
 * grid, width + 2 wide). On that grid, tap (ky, kx) of output position j is input position
 * j + ky * (width + 2) + kx, so the convolution is one GEMM whose B is the pair planes read in
 * place at nine offsets: no im2col (which wrote each input value nine times, in fp32, before it
 * was rounded block by block), and no Winograd transforms (whose coefficients magnify bf16's
 * rounding, see convolutional_layer.c). The GEMM makes the outputs of the grid's columns too,
 * the last two of each row of which fall outside the image and are dropped.
 *
 * Stride 2 (darknet's downsampling layers) goes the same way on the padded image's four phases
 * (even or odd rows by even or odd columns): tap (ky, kx) of output (y, x) is padded input
 * (2y + ky, 2x + kx), in phase (ky % 2, kx % 2) at (y + ky / 2, x + kx / 2): again a fixed shift,
 * on a grid out_w + 1 wide whose last column is dropped.
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
    return l->size == 3 && (l->stride == 1 || l->stride == 2) && l->pad == 1 && l->groups == 1;
}

/* The grid the GEMM runs on. Stride 1: the padded image, width + 2 wide. Stride 2: each of the
 * padded image's four phases, out_w + 1 wide and out_h + 1 high (dn_bf16_pair_phases). */
static int grid_width(const dn_layer *l) { return l->stride == 1 ? l->w + 2 : l->out_w + 1; }
static int grid_rows(const dn_layer *l) { return l->stride == 1 ? l->h + 2 : l->out_h + 1; }
static int phases(const dn_layer *l) { return l->stride * l->stride; }
static int channel_pairs(const dn_layer *l) { return (l->c + 1) / 2; }

/* uint32 values of one grid plane: the grid, then what dn_gemm_bf16_taps may read past it (the
 * farthest tap of the grid's last column, outside the image, is up to 2 values past the grid,
 * and up to NC - 1 columns are read past the last one), rounded up to a cache line. */
static size_t plane_step(const dn_layer *l)
{
    const size_t grid = (size_t)grid_rows(l) * grid_width(l) + 2 + DN_GEMM_NC - 1;
    const size_t line = 64 / sizeof(uint32_t);
    return (grid + line - 1) / line * line;
}

/* uint32 values from one channel pair's planes to the next */
static size_t pair_step(const dn_layer *l) { return (size_t)phases(l) * plane_step(l); }

/* Tap (ky, kx) of grid position j reads j + offsets[3 ky + kx] of its pair's planes. */
static void tap_offsets(const dn_layer *l, long *offsets)
{
    const int s = l->stride;
    for (int t = 0; t < DN_DIRECT_TAPS; ++t) {
        const int ky = t / 3, kx = t % 3;
        const long phase = (long)(ky % s) * s + kx % s;
        offsets[t] = phase * (long)plane_step(l) + (long)(ky / s) * grid_width(l) + kx / s;
    }
}

/* Grid columns of one tile: its results fit the budget (dn_tile_columns). */
static int tile_columns(const dn_layer *l, int threads)
{
    return dn_tile_columns((size_t)l->out_h * grid_width(l), DN_DIRECT_TILE_FLOATS / (size_t)l->filters, threads);
}

/* Blocks of filters each tile is split into: where an image has too few tiles for two per thread
 * (13x13 and 26x26 maps of many filters), the threads would otherwise wait on the last one (a
 * 512 -> 1024 stride-2 layer on 26x26 took 5.3 ms in 3 tiles on 2 threads, 3.9 with im2col). In
 * whole kernel panels. */
static int filter_blocks(const dn_layer *l, long tiles, int threads)
{
    const long wanted = 2L * threads;
    if (tiles >= wanted) return 1;
    const int panels = (l->filters + DN_BF16_MR - 1) / DN_BF16_MR;
    const long blocks = (wanted + tiles - 1) / tiles;
    return blocks < panels ? (int)blocks : panels;
}

size_t dn_direct_bf16_workspace(const dn_layer *l, int threads)
{
    return (size_t)channel_pairs(l) * pair_step(l) + (size_t)threads * l->filters * tile_columns(l, threads);
}

size_t dn_direct_bf16_weight_values(const dn_layer *l)
{
    return dn_packed_taps_bf16_values(l->filters, DN_DIRECT_TAPS, channel_pairs(l));
}

void dn_direct_bf16_pack(const dn_layer *l, uint16_t *out)
{
    dn_pack_taps_bf16(l->weights, l->filters, l->c, DN_DIRECT_TAPS, out);
}

/* Filters [f0, f1) of grid columns [first, first + count) of image b's results (a row per
 * filter, count apart) into its output: the image's columns of each grid row, with the epilogue. */
static void finish_grid_columns(dn_layer *l, struct dn_network *net, int b, int f0, int f1, const float *results,
                                long first, int count)
{
    const int wide = grid_width(l);
    const size_t spatial = (size_t)l->out_h * l->out_w;
    for (long j = first; j < first + count;) {
        const int y = (int)(j / wide), x = (int)(j % wide);
        const int run = (int)(wide - x < first + count - j ? wide - x : first + count - j);
        const int inside = x < l->out_w ? (l->out_w - x < run ? l->out_w - x : run) : 0;
        for (int f = f0; inside && f < f1; ++f)
            dn_convolutional_finish(l, net, f, (size_t)b * l->outputs + f * spatial + (size_t)y * l->out_w + x,
                                    results + (size_t)f * count + (j - first), inside);
        j += run;
    }
}

void dn_direct_bf16_forward(dn_layer *l, struct dn_network *net, const float *input, int n)
{
    const int threads = net->threads, wide = grid_width(l), rows = grid_rows(l), pairs = channel_pairs(l);
    const size_t step = pair_step(l), plane = plane_step(l);
    long offsets[DN_DIRECT_TAPS];
    tap_offsets(l, offsets);
    /* the workspace is plain memory: the pair planes, then each thread's results */
    uint32_t *planes = (uint32_t *)(void *)net->workspace;
    float *results = net->workspace + (size_t)pairs * step;
    const long total = (long)l->out_h * wide;
    const int cols = tile_columns(l, threads);
    const long tiles = (total + cols - 1) / cols;
    const int blocks = filter_blocks(l, tiles, threads), panels = (l->filters + DN_BF16_MR - 1) / DN_BF16_MR;
    for (int b = 0; b < n; ++b) {
        const float *im = input + (size_t)b * l->inputs;
#pragma omp parallel num_threads(threads)
        {
#pragma omp for schedule(static)
            for (int q = 0; q < pairs; ++q) {
                if (l->stride == 1)
                    dn_bf16_pair_planes(im, l->c, l->h, l->w, 1, step, q, planes);
                else
                    dn_bf16_pair_phases(im, l->c, l->h, l->w, rows, wide, plane, q, planes);
            }
#pragma omp for schedule(dynamic, 1)
            for (long task = 0; task < tiles * blocks; ++task) {
                const long first = task / blocks * cols;
                const int count = total - first < cols ? (int)(total - first) : cols;
                const int block = (int)(task % blocks);
                const int f0 = block * panels / blocks * DN_BF16_MR;
                const int f1 = (block + 1) * panels / blocks * DN_BF16_MR;
                const int end = f1 < l->filters ? f1 : l->filters;
                float *mine = results + (size_t)dn_thread_index() * l->filters * cols;
                dn_gemm_bf16_taps(end - f0, count, DN_DIRECT_TAPS, offsets, pairs,
                                  l->packed_weights_bf16 + dn_packed_taps_bf16_values(f0, DN_DIRECT_TAPS, pairs),
                                  planes + first, step, mine + (size_t)f0 * count, count);
                finish_grid_columns(l, net, b, f0, end, mine, first, count);
            }
        }
    }
}

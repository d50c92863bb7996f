/*
 * Winograd F(2x2, 3x3) for [convolutional] size=3 stride=1 pad=1 groups=1 (Lavin and Gray,
 * "Fast Algorithms for Convolutional Neural Networks", 2015): each 2x2 block of outputs comes
 * from a 4x4 block of inputs with 16 multiplies per (input, output) channel pair instead of 36.
 * The image is cut into 2x2 output tiles; a run of tiles at a time (a block, sized to stay in
 * cache) goes through
 *   V = B^T d B    (each input channel's 4x4 patch, per tile)      -> 16 matrices C x tiles
 *   M = U V        (16 GEMMs; U = G g G^T, the kernels, cached)     -> 16 matrices O x tiles
 *   Y = A^T m A    (each output's 2x2, then bias / batch norm / activation)
 * Float results differ from the im2col path by rounding only (about 1e-6 relative).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define DN_WINO_POINTS 16                         /* 4x4 transformed values per tile */
#define DN_WINO_BLOCK_FLOATS ((size_t)1024 * 1024) /* V and M of one block: 4 MiB, within L2 + L3 */
/* below this many channels the GEMMs are too thin to pay for the transforms (CFLAGS=-D... can
 * move it, to time the im2col path on the same layers) */
#ifndef DN_WINO_MIN_CHANNELS
#define DN_WINO_MIN_CHANNELS 32
#endif
#define DN_WINO_MIN_TILES 64     /* ... and below this many tiles the kernel transform dominates */
#define DN_WINO_ALIGN 16

int dn_winograd_applies(const dn_layer *l)
{
    if (l->size != 3 || l->stride != 1 || l->pad != 1 || l->groups != 1) return 0;
    if (l->c < DN_WINO_MIN_CHANNELS || l->filters < DN_WINO_MIN_CHANNELS) return 0;
    const int tiles = ((l->out_h + 1) / 2) * ((l->out_w + 1) / 2);
    return tiles >= DN_WINO_MIN_TILES;
}

/* Tiles per block: V and M of a block fit DN_WINO_BLOCK_FLOATS, and one image still gives every
 * thread a block. Depends on the layer and the thread count, never on the batch. */
static int block_tiles(const dn_layer *l, int threads)
{
    const int tiles = ((l->out_h + 1) / 2) * ((l->out_w + 1) / 2);
    size_t per_tile = (size_t)DN_WINO_POINTS * (l->c + l->filters);
    size_t count = DN_WINO_BLOCK_FLOATS / per_tile;
    const size_t share = ((size_t)tiles + threads - 1) / threads;
    if (count > share) count = share;
    count = (count + DN_WINO_ALIGN - 1) / DN_WINO_ALIGN * DN_WINO_ALIGN;
    if (count < DN_WINO_ALIGN) count = DN_WINO_ALIGN;
    return count > (size_t)tiles ? tiles : (int)count;
}

static size_t scratch_floats(const dn_layer *l);

/* Per thread: V and M of a block, then the transforms' scratch rows. */
static size_t thread_floats(const dn_layer *l, int threads)
{
    return (size_t)DN_WINO_POINTS * (l->c + l->filters) * block_tiles(l, threads) + scratch_floats(l);
}

size_t dn_winograd_workspace(const dn_layer *l, int threads)
{
    if (!dn_winograd_applies(l)) return 0;
    return (size_t)threads * thread_floats(l, threads);
}

/* U = G g G^T for every (filter, channel), laid out as 16 matrices filters x channels. */
static void transform_kernels(dn_layer *l, int threads)
{
    const int out = l->filters, in = l->c;
    float *u = l->winograd_kernels;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int o = 0; o < out; ++o) {
        for (int c = 0; c < in; ++c) {
            const float *g = l->weights + ((size_t)o * in + c) * 9;
            float t[4][3]; /* G g: 4 x 3 */
            for (int j = 0; j < 3; ++j) {
                t[0][j] = g[j];
                t[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
                t[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
                t[3][j] = g[6 + j];
            }
            for (int i = 0; i < 4; ++i) { /* (G g) G^T: 4 x 4 */
                const float r[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]), 0.5f * (t[i][0] - t[i][1] + t[i][2]),
                                    t[i][2]};
                for (int j = 0; j < 4; ++j) u[((size_t)(i * 4 + j) * out + o) * in + c] = r[j];
            }
        }
    }
    l->winograd_version = l->weights_version;
}

int dn_winograd_prepare(dn_layer *l, int threads)
{
    if (!l->winograd_kernels) {
        l->winograd_kernels = malloc((size_t)DN_WINO_POINTS * l->filters * l->c * sizeof(float));
        if (!l->winograd_kernels) return 0;
        l->winograd_version = l->weights_version - 1;
    }
    if (l->winograd_version != l->weights_version) transform_kernels(l, threads);
    return 1;
}

/*
 * The transforms work on a row of tiles at a time, with the tiles as the inner (vectorised)
 * loop. Tile tx of a row reads padded columns 2tx .. 2tx+3; split into even and odd columns
 * (e[k] = column 2k, o[k] = column 2k+1) those are e[tx], o[tx], e[tx+1], o[tx+1]: contiguous
 * in tx. Scratch per thread: 16 rows of tiles_x + 1 floats.
 */
static size_t scratch_floats(const dn_layer *l) { return (size_t)DN_WINO_POINTS * ((l->out_w + 1) / 2 + 1); }

/* Columns 2k - 1 (even[k]) and 2k (odd[k]) of `row` for k in [k0, k1], zero outside [0, w). */
static void split_row(const float *row, int w, int k0, int k1, float *restrict even, float *restrict odd)
{
    if (!row) {
        memset(even + k0, 0, sizeof(float) * (size_t)(k1 - k0 + 1));
        memset(odd + k0, 0, sizeof(float) * (size_t)(k1 - k0 + 1));
        return;
    }
    const int lo = k0 > 1 ? k0 : 1, hi = k1 < (w - 1) / 2 ? k1 : (w - 1) / 2; /* both columns inside */
    for (int k = k0; k <= k1 && k < lo; ++k) {
        even[k] = (2 * k - 1 >= 0 && 2 * k - 1 < w) ? row[2 * k - 1] : 0.0f;
        odd[k] = 2 * k < w ? row[2 * k] : 0.0f;
    }
#pragma omp simd
    for (int k = lo; k <= hi; ++k) {
        even[k] = row[2 * k - 1];
        odd[k] = row[2 * k];
    }
    for (int k = (hi + 1 > lo ? hi + 1 : lo); k <= k1; ++k) {
        even[k] = (2 * k - 1 >= 0 && 2 * k - 1 < w) ? row[2 * k - 1] : 0.0f;
        odd[k] = 2 * k < w ? row[2 * k] : 0.0f;
    }
}

/* V for tiles [first, first + count) of one image: v[p][c][t], p = 4 * row + column of the 4x4. */
static void transform_inputs(const dn_layer *l, const float *im, int first, int count, float *v, float *scratch)
{
    const int h = l->h, w = l->w, tiles_x = (l->out_w + 1) / 2, half = tiles_x + 1;
    const size_t point = (size_t)l->c * count;
    float *rows[16]; /* 0-7: even/odd columns of the 4 input rows; 8-15: B^T across those rows */
    for (int i = 0; i < 16; ++i) rows[i] = scratch + (size_t)i * half;
    const int end = first + count;
    for (int c = 0; c < l->c; ++c) {
        const float *plane = im + (size_t)c * h * w;
        for (int t0 = first; t0 < end;) {
            const int ty = t0 / tiles_x, tx0 = t0 % tiles_x;
            const int tx1 = end - t0 < tiles_x - tx0 ? tx0 + (end - t0) : tiles_x;
            for (int i = 0; i < 4; ++i) {
                const int y = 2 * ty - 1 + i;
                split_row(y >= 0 && y < h ? plane + (size_t)y * w : NULL, w, tx0, tx1, rows[2 * i], rows[2 * i + 1]);
            }
            for (int parity = 0; parity < 2; ++parity) { /* B^T d: along the rows */
                const float *restrict d0 = rows[parity], *restrict d1 = rows[2 + parity];
                const float *restrict d2 = rows[4 + parity], *restrict d3 = rows[6 + parity];
                float *restrict r0 = rows[8 + parity], *restrict r1 = rows[10 + parity];
                float *restrict r2 = rows[12 + parity], *restrict r3 = rows[14 + parity];
#pragma omp simd
                for (int k = tx0; k <= tx1; ++k) {
                    r0[k] = d0[k] - d2[k];
                    r1[k] = d1[k] + d2[k];
                    r2[k] = d2[k] - d1[k];
                    r3[k] = d1[k] - d3[k];
                }
            }
            float *dst = v + (size_t)c * count + (t0 - first) - tx0;
            for (int i = 0; i < 4; ++i) { /* (B^T d) B: along the columns, tile k at e[k], o[k], e[k+1], o[k+1] */
                const float *restrict e = rows[8 + 2 * i], *restrict o = rows[9 + 2 * i];
                float *restrict v0 = dst + (size_t)(4 * i) * point, *restrict v1 = v0 + point;
                float *restrict v2 = v1 + point, *restrict v3 = v2 + point;
#pragma omp simd
                for (int k = tx0; k < tx1; ++k) {
                    v0[k] = e[k] - e[k + 1];
                    v1[k] = o[k] + e[k + 1];
                    v2[k] = e[k + 1] - o[k];
                    v3[k] = o[k] - o[k + 1];
                }
            }
            t0 += tx1 - tx0;
        }
    }
}

/* Y = A^T m A for every filter and tile of the block, written into the image's output with the
 * epilogue: raw (training batch norm: normalize_batch follows), else x * mul + add, kept in
 * act_input when training, then the activation. */
static void transform_outputs(const dn_layer *l, const float *m, int first, int count, float *out, float *act_input,
                              int raw, float *scratch)
{
    const int oh = l->out_h, ow = l->out_w, tiles_x = (ow + 1) / 2, half = tiles_x + 1;
    const size_t point = (size_t)l->filters * count;
    const size_t plane = (size_t)oh * ow;
    float *y[4]; /* y[2i + j][k]: output (2ty + i, 2tx + j) of tile k */
    for (int q = 0; q < 4; ++q) y[q] = scratch + (size_t)q * half;
    const int end = first + count;
    for (int f = 0; f < l->filters; ++f) {
        float mul, add;
        dn_convolutional_affine(l, f, &mul, &add);
        if (raw) mul = 1.0f, add = 0.0f;
        for (int t0 = first; t0 < end;) {
            const int ty = t0 / tiles_x, tx0 = t0 % tiles_x;
            const int tx1 = end - t0 < tiles_x - tx0 ? tx0 + (end - t0) : tiles_x;
            const int n = tx1 - tx0;
            const float *restrict src = m + (size_t)f * count + (t0 - first);
            float *restrict y00 = y[0], *restrict y01 = y[1], *restrict y10 = y[2], *restrict y11 = y[3];
#pragma omp simd
            for (int k = 0; k < n; ++k) {
#define S(p) src[(size_t)(p) * point + k]
                const float r00 = S(0) + S(4) + S(8), r01 = S(1) + S(5) + S(9), r02 = S(2) + S(6) + S(10),
                            r03 = S(3) + S(7) + S(11);
                const float r10 = S(4) - S(8) - S(12), r11 = S(5) - S(9) - S(13), r12 = S(6) - S(10) - S(14),
                            r13 = S(7) - S(11) - S(15);
#undef S
                y00[k] = (r00 + r01 + r02) * mul + add;
                y01[k] = (r01 - r02 - r03) * mul + add;
                y10[k] = (r10 + r11 + r12) * mul + add;
                y11[k] = (r11 - r12 - r13) * mul + add;
            }
            for (int i = 0; i < 2; ++i) {
                const int oy = 2 * ty + i;
                if (oy >= oh) break;
                const float *left = y[2 * i], *right = y[2 * i + 1];
                const size_t at = (size_t)f * plane + (size_t)oy * ow + 2 * tx0;
                const int columns = 2 * tx1 <= ow ? 2 * n : 2 * n - 1; /* an odd width ends mid-tile */
                float *restrict o_row = out + at;
                for (int k = 0; k < columns / 2; ++k) {
                    o_row[2 * k] = left[k];
                    o_row[2 * k + 1] = right[k];
                }
                if (columns & 1) o_row[columns - 1] = left[columns / 2];
                if (raw) continue;
                if (act_input) memcpy(act_input + at, o_row, sizeof(float) * (size_t)columns);
                dn_activate_array(o_row, (size_t)columns, l->activation);
            }
            t0 += n;
        }
    }
}

void dn_winograd_forward(dn_layer *l, struct dn_network *net, const float *input, int n, int raw)
{
    const int threads = net->threads;
    const int tiles = ((l->out_h + 1) / 2) * ((l->out_w + 1) / 2);
    const int per_block = block_tiles(l, threads);
    const int blocks = (tiles + per_block - 1) / per_block;
    const long tasks = (long)n * blocks;
    const int in = l->c, out = l->filters;
    const size_t per_thread = thread_floats(l, threads);

#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (tasks > 1)
    for (long task = 0; task < tasks; ++task) {
        const int b = (int)(task / blocks);
        const int first = (int)(task % blocks) * per_block;
        const int count = tiles - first < per_block ? tiles - first : per_block;
        float *v = net->workspace + (size_t)dn_thread_index() * per_thread;
        float *m = v + (size_t)DN_WINO_POINTS * in * count;
        float *scratch = v + (size_t)DN_WINO_POINTS * (in + out) * per_block;
        transform_inputs(l, input + (size_t)b * l->inputs, first, count, v, scratch);
        for (int p = 0; p < DN_WINO_POINTS; ++p)
            dn_gemm(0, 0, out, count, in, 1.0f, l->winograd_kernels + (size_t)p * out * in, in,
                    v + (size_t)p * in * count, count, 0.0f, m + (size_t)p * out * count, count);
        float *act = (!raw && net->train) ? l->act_input + (size_t)b * l->outputs : NULL;
        transform_outputs(l, m, first, count, l->output + (size_t)b * l->outputs, act, raw, scratch);
    }
}

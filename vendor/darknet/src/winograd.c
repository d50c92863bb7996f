/*
 * Winograd F(4x4, 3x3) for [convolutional] size=3 stride=1 pad=1 groups=1 (Lavin and Gray,
 * "Fast Algorithms for Convolutional Neural Networks", 2015; interpolation points 0, +-1, +-2,
 * infinity): each 4x4 block of outputs comes from a 6x6 block of inputs with 36 multiplies per
 * (input, output) channel pair instead of 144. The image is cut into 4x4 output tiles; a run of
 * tiles at a time (a block, sized to stay in cache) goes through
 *   V = B^T d B    (each input channel's 6x6 patch, per tile)      -> 36 matrices C x tiles
 *   M = U V        (36 packed GEMMs; U = G g G^T, the kernels, cached) -> 36 matrices O x tiles
 *   Y = A^T m A    (each output's 4x4, then bias / batch norm / activation)
 * Float results differ from the direct sum by rounding only: about 1e-5 of the outputs' size
 * at 512 channels (the transforms' coefficients reach 8, against 1 for F(2x2, 3x3)).
 *
 * The GEMMs compute every output value as the same sum in the same order whichever other tiles
 * share its block, so an image's result depends neither on the batch nor on the thread count's
 * split of the tiles.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define DN_WINO_OUT 4                             /* outputs per tile side */
#define DN_WINO_IN 6                              /* inputs per tile side: OUT + 3 - 1 */
#define DN_WINO_POINTS (DN_WINO_IN * DN_WINO_IN)  /* 6x6 transformed values per tile */
#define DN_WINO_BLOCK_FLOATS ((size_t)1024 * 1024) /* V and M of one block: 4 MiB, within L2 + L3 */
/* below this many channels the GEMMs are too thin to pay for the transforms (CFLAGS=-D... can
 * move it, to time the im2col path on the same layers) */
#ifndef DN_WINO_MIN_CHANNELS
#define DN_WINO_MIN_CHANNELS 32
#endif
/* ... and below this many tiles the padding of the last tiles wastes the gain: a 5x5 map (4
 * tiles) computes 64 outputs for 25. There the im2col path, with the batch's images side by
 * side, is as fast forward and 40 % faster backward, and needs no transformed kernels
 * (yolov4-tiny-3l at 160x160, batch 16, its 512-channel 5x5 layer: backward 79 vs 129 ms). At 9
 * tiles (10x10 maps) Winograd takes half the im2col path's time both ways. */
#define DN_WINO_MIN_TILES 9

static int tiles_across(const dn_layer *l) { return (l->out_w + DN_WINO_OUT - 1) / DN_WINO_OUT; }
static int tile_count(const dn_layer *l)
{
    return tiles_across(l) * ((l->out_h + DN_WINO_OUT - 1) / DN_WINO_OUT);
}

int dn_winograd_applies(const dn_layer *l)
{
    if (l->size != 3 || l->stride != 1 || l->pad != 1 || l->groups != 1) return 0;
    if (l->c < DN_WINO_MIN_CHANNELS || l->filters < DN_WINO_MIN_CHANNELS) return 0;
    return tile_count(l) >= DN_WINO_MIN_TILES;
}

/*
 * Blocks are runs of the batch's tiles (image after image: tile g is tile g % tiles of image
 * g / tiles), so that small maps fill the GEMMs with several images. Every output value is the
 * same sum whatever else shares its block, so an image's result depends neither on the batch
 * nor on the blocking.
 *
 * The most tiles of a block: its V and M fit DN_WINO_BLOCK_FLOATS (the workspace is sized for it).
 */
static int most_block_tiles(const dn_layer *l)
{
    size_t count = DN_WINO_BLOCK_FLOATS / ((size_t)DN_WINO_POINTS * (l->c + l->filters));
    count = count / DN_GEMM_NR * DN_GEMM_NR;
    if (count >= DN_GEMM_NC) count = count / DN_GEMM_NC * DN_GEMM_NC;
    return count < DN_GEMM_NR ? DN_GEMM_NR : (int)count;
}

/* Tiles per block for n images: at most most_block_tiles, and few enough that every thread
 * gets a block. */
static int block_tiles(const dn_layer *l, int threads, int n)
{
    const long total = (long)n * tile_count(l);
    long share = (total + threads - 1) / threads;
    share = (share + DN_GEMM_NC - 1) / DN_GEMM_NC * DN_GEMM_NC;
    const int most = most_block_tiles(l);
    return share < most ? (int)share : most;
}

/* The 36 points' matrices (U, V, M and their gradients) lie one cache line further apart than
 * their size: the transforms keep 36 streams going, and a power of two apart (as for many
 * layers) they would share a few cache sets and evict each other. */
#define DN_WINO_SKEW_FLOATS 16
static size_t skewed(size_t floats) { return floats + DN_WINO_SKEW_FLOATS; }

/* One point's transformed kernels: rows x columns in dn_gemm_packed's A panels. */
static size_t u_point_floats(int rows, int columns) { return skewed(dn_packed_a_floats(rows, columns)); }
/* One point's V (c x block tiles, in dn_gemm_packed's B panels) and M (filters x block tiles;
 * with fewer tiles in a block, M's points lie closer: for `tiles`, this many apart). */
static size_t v_point_floats(const dn_layer *l, int per_block) { return skewed(dn_packed_b_floats(l->c, per_block)); }
static size_t m_point_floats(const dn_layer *l, int tiles) { return skewed((size_t)l->filters * tiles); }
static size_t block_floats(const dn_layer *l, int per_block)
{
    return DN_WINO_POINTS * (v_point_floats(l, per_block) + m_point_floats(l, per_block));
}

/*
 * The output transform takes runs of up to this many of a block's tiles, whatever rows of tiles
 * they lie in: its lanes are the tiles, and a row of tiles alone (3 on a 10x10 map, 4 on 13x13)
 * left the vector loop to its scalar remainder. Y's 16 rows lie one float further apart than a
 * run, off the powers of two.
 */
#define DN_WINO_RUN_TILES 64
#define DN_WINO_Y_STRIDE (DN_WINO_RUN_TILES + 1)

/*
 * Scratch per thread. The input transform lays out six padded input rows at a time, NR channels
 * a cell (transform_segment's stage: at most 4 tiles_x + 2 cells a row), and keeps one B panel's
 * V before turning it. The output transform needs 16 rows of DN_WINO_Y_STRIDE floats.
 */
static int padded_width(const dn_layer *l) { return DN_WINO_OUT * tiles_across(l) + 2; }
static size_t stage_floats(const dn_layer *l) { return (size_t)DN_WINO_IN * padded_width(l) * DN_GEMM_NR; }
/* one B panel's V for the NR channels of a group, [tile][point][channel], before it is turned */
#define DN_WINO_PANEL_FLOATS (DN_GEMM_NR * DN_WINO_POINTS * DN_GEMM_NR)
static size_t scratch_floats(const dn_layer *l)
{
    const size_t inputs = DN_WINO_PANEL_FLOATS + stage_floats(l);
    const size_t outputs = (size_t)DN_WINO_OUT * DN_WINO_OUT * DN_WINO_Y_STRIDE;
    return inputs > outputs ? inputs : outputs;
}

/* Per thread in the block-per-thread schedule: V and M of the largest block, then the scratch. */
static size_t thread_floats(const dn_layer *l)
{
    const int per_block = most_block_tiles(l);
    return block_floats(l, per_block) + scratch_floats(l);
}

static dn_layer backward_view(const dn_layer *l);

size_t dn_winograd_workspace(const dn_layer *l, int threads)
{
    if (!dn_winograd_applies(l)) return 0;
    /* the all-threads-per-block schedule needs one V and M and every thread's scratch: less. The
     * backward view swaps channels and filters, which moves V's panel padding. */
    const dn_layer view = backward_view(l);
    const size_t forward = thread_floats(l), backward = thread_floats(&view);
    return (size_t)threads * (forward > backward ? forward : backward);
}

/* G applied to three values (a column, or a row, of a 3x3 kernel): six. */
#define DN_WINO_G(x0, x1, x2, y0, y1, y2, y3, y4, y5)                   \
    do {                                                                \
        const float outer = -((x0) + (x2)) * (1.0f / 6), mid = (x1) * (1.0f / 6); \
        const float ends = (x0) * (1.0f / 24) + (x2) * (1.0f / 6), half_mid = (x1) * (1.0f / 12); \
        y0 = (x0) * 0.25f;                                              \
        y1 = outer - mid;                                               \
        y2 = outer + mid;                                               \
        y3 = ends + half_mid;                                           \
        y4 = ends - half_mid;                                           \
        y5 = (x2);                                                      \
    } while (0)

/* U = G g G^T for every (row, column) of a kernel matrix: 36 matrices rows x columns, each in
 * dn_gemm_packed's A panels (the padding rows of the last panel stay 0 from the calloc). Forward:
 * rows are the filters, columns the channels, g = W[o][c]. Backward to the input (`turned`):
 * rows are the channels, columns the filters, g = W[o][c] turned 180 degrees. It runs after every
 * weight change, so once per training step: G's zeros are left out.
 *
 * This writes the columns [col0, col1) of one row into a panel-ordered block: the value of point
 * e and column col at u[e * point + (col - col0) * MR] (u: the row's place in the block). */
DN_HOT static void transform_kernel_row(const dn_layer *l, float *u, size_t point, int row, int turned, int col0,
                                        int col1)
{
    /* kernel (row, col) at w + col * col_step, its taps e at + e * tap_step (turned: reversed) */
    const float *w = l->weights + (turned ? (size_t)row * 9 + 8 : (size_t)row * l->c * 9);
    const size_t col_step = turned ? (size_t)l->c * 9 : 9;
    const long tap_step = turned ? -1 : 1;
#pragma omp simd
    for (int col = col0; col < col1; ++col) { /* straight-line code: the columns are the vector lanes */
        const float *g = w + (size_t)col * col_step;
#define W(e) g[(e) * tap_step]
        float t00, t10, t20, t30, t40, t50;
        DN_WINO_G(W(0), W(3), W(6), t00, t10, t20, t30, t40, t50); /* G g */
        float t01, t11, t21, t31, t41, t51;
        DN_WINO_G(W(1), W(4), W(7), t01, t11, t21, t31, t41, t51); /* G g */
        float t02, t12, t22, t32, t42, t52;
        DN_WINO_G(W(2), W(5), W(8), t02, t12, t22, t32, t42, t52); /* G g */
#undef W
        float *uc = u + (size_t)(col - col0) * DN_GEMM_MR;
        { /* (G g) G^T, row 0 */
            float r0, r1, r2, r3, r4, r5;
            DN_WINO_G(t00, t01, t02, r0, r1, r2, r3, r4, r5);
            uc[(size_t)(0) * point] = r0;
            uc[(size_t)(1) * point] = r1;
            uc[(size_t)(2) * point] = r2;
            uc[(size_t)(3) * point] = r3;
            uc[(size_t)(4) * point] = r4;
            uc[(size_t)(5) * point] = r5;
        }
        { /* (G g) G^T, row 1 */
            float r0, r1, r2, r3, r4, r5;
            DN_WINO_G(t10, t11, t12, r0, r1, r2, r3, r4, r5);
            uc[(size_t)(6) * point] = r0;
            uc[(size_t)(7) * point] = r1;
            uc[(size_t)(8) * point] = r2;
            uc[(size_t)(9) * point] = r3;
            uc[(size_t)(10) * point] = r4;
            uc[(size_t)(11) * point] = r5;
        }
        { /* (G g) G^T, row 2 */
            float r0, r1, r2, r3, r4, r5;
            DN_WINO_G(t20, t21, t22, r0, r1, r2, r3, r4, r5);
            uc[(size_t)(12) * point] = r0;
            uc[(size_t)(13) * point] = r1;
            uc[(size_t)(14) * point] = r2;
            uc[(size_t)(15) * point] = r3;
            uc[(size_t)(16) * point] = r4;
            uc[(size_t)(17) * point] = r5;
        }
        { /* (G g) G^T, row 3 */
            float r0, r1, r2, r3, r4, r5;
            DN_WINO_G(t30, t31, t32, r0, r1, r2, r3, r4, r5);
            uc[(size_t)(18) * point] = r0;
            uc[(size_t)(19) * point] = r1;
            uc[(size_t)(20) * point] = r2;
            uc[(size_t)(21) * point] = r3;
            uc[(size_t)(22) * point] = r4;
            uc[(size_t)(23) * point] = r5;
        }
        { /* (G g) G^T, row 4 */
            float r0, r1, r2, r3, r4, r5;
            DN_WINO_G(t40, t41, t42, r0, r1, r2, r3, r4, r5);
            uc[(size_t)(24) * point] = r0;
            uc[(size_t)(25) * point] = r1;
            uc[(size_t)(26) * point] = r2;
            uc[(size_t)(27) * point] = r3;
            uc[(size_t)(28) * point] = r4;
            uc[(size_t)(29) * point] = r5;
        }
        { /* (G g) G^T, row 5 */
            float r0, r1, r2, r3, r4, r5;
            DN_WINO_G(t50, t51, t52, r0, r1, r2, r3, r4, r5);
            uc[(size_t)(30) * point] = r0;
            uc[(size_t)(31) * point] = r1;
            uc[(size_t)(32) * point] = r2;
            uc[(size_t)(33) * point] = r3;
            uc[(size_t)(34) * point] = r4;
            uc[(size_t)(35) * point] = r5;
        }
    }
}

/* Columns of a kernel panel transformed at a time, into a block of 36 x MR x 32 floats (27 KiB,
 * within L1) copied out point by point: written in place, the 36 points' stores would be a
 * matrix apart (a power of two for many layers) and fight over the same cache sets. */
#define DN_WINO_KERNEL_COLUMNS 32

/* The kernels of one direction, made on first use and refreshed after a weight change; 0 when
 * out of memory. */
static int prepare_kernels(dn_layer *l, float **kernels, unsigned *version, int turned, int threads)
{
    if (!*kernels) {
        const int rows = turned ? l->c : l->filters, columns = turned ? l->filters : l->c;
        *kernels = calloc(DN_WINO_POINTS * u_point_floats(rows, columns), sizeof(float));
        if (!*kernels) return 0;
        *version = l->weights_version - 1;
    }
    if (*version != l->weights_version) {
        const int rows = turned ? l->c : l->filters, columns = turned ? l->filters : l->c;
        const int panels = (rows + DN_GEMM_MR - 1) / DN_GEMM_MR;
        /* a panel's rows share U's cache lines (MR floats per column and point): they are written
         * together, a run of columns at a time, or every line would be fetched once per row */
        const size_t point = u_point_floats(rows, columns), block_point = DN_GEMM_MR * DN_WINO_KERNEL_COLUMNS;
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int panel = 0; panel < panels; ++panel) {
            float block[DN_WINO_POINTS * DN_GEMM_MR * DN_WINO_KERNEL_COLUMNS] = {0}; /* rows past the last stay 0 */
            for (int col0 = 0; col0 < columns; col0 += DN_WINO_KERNEL_COLUMNS) {
                const int col1 = col0 + DN_WINO_KERNEL_COLUMNS < columns ? col0 + DN_WINO_KERNEL_COLUMNS : columns;
                for (int r = 0; r < DN_GEMM_MR && panel * DN_GEMM_MR + r < rows; ++r)
                    transform_kernel_row(l, block + r, block_point, panel * DN_GEMM_MR + r, turned, col0, col1);
                float *at = *kernels + (size_t)panel * DN_GEMM_MR * columns + (size_t)col0 * DN_GEMM_MR;
                for (int e = 0; e < DN_WINO_POINTS; ++e)
                    memcpy(at + e * point, block + e * block_point, sizeof(float) * DN_GEMM_MR * (col1 - col0));
            }
        }
        *version = l->weights_version;
    }
    return 1;
}

int dn_winograd_prepare(dn_layer *l, int threads)
{
    return prepare_kernels(l, &l->winograd_kernels, &l->winograd_version, 0, threads);
}

/* B^T applied to six vectors (rows, or columns, of a 6x6 patch): x[i][k] -> y[i][k]. */
#define DN_WINO_BT(x0, x1, x2, x3, x4, x5, y0, y1, y2, y3, y4, y5) \
    do {                                                           \
        y0 = 4.0f * (x0) - 5.0f * (x2) + (x4);                     \
        y1 = (x3) + (x4) - 4.0f * ((x1) + (x2));                   \
        y2 = (x4) - (x3) + 4.0f * ((x1) - (x2));                   \
        y3 = (x4) - (x2) + 2.0f * ((x3) - (x1));                   \
        y4 = (x4) - (x2) - 2.0f * ((x3) - (x1));                   \
        y5 = 4.0f * (x1) - 5.0f * (x3) + (x5);                     \
    } while (0)

/* B^T d B for one 6x6 patch, d(i, j) = in[i * row_step + j * column_step]: point p into
 * dst[p * v_point]. Straight-line code (no loops, no arrays), inlined into a loop over the vector
 * lanes that then vectorises. */
__attribute__((always_inline)) static inline void transform_patch(const float *restrict in, int row_step,
                                                                 int column_step, float *restrict dst,
                                                                 size_t v_point)
{
#define D(i, j) in[(i) * row_step + (j) * column_step]
    float e00, e01, e02, e03, e04, e05, e10, e11, e12, e13, e14, e15;
    float e20, e21, e22, e23, e24, e25, e30, e31, e32, e33, e34, e35;
    float e40, e41, e42, e43, e44, e45, e50, e51, e52, e53, e54, e55;
    DN_WINO_BT(D(0, 0), D(1, 0), D(2, 0), D(3, 0), D(4, 0), D(5, 0), e00, e10, e20, e30, e40, e50);
    DN_WINO_BT(D(0, 1), D(1, 1), D(2, 1), D(3, 1), D(4, 1), D(5, 1), e01, e11, e21, e31, e41, e51);
    DN_WINO_BT(D(0, 2), D(1, 2), D(2, 2), D(3, 2), D(4, 2), D(5, 2), e02, e12, e22, e32, e42, e52);
    DN_WINO_BT(D(0, 3), D(1, 3), D(2, 3), D(3, 3), D(4, 3), D(5, 3), e03, e13, e23, e33, e43, e53);
    DN_WINO_BT(D(0, 4), D(1, 4), D(2, 4), D(3, 4), D(4, 4), D(5, 4), e04, e14, e24, e34, e44, e54);
    DN_WINO_BT(D(0, 5), D(1, 5), D(2, 5), D(3, 5), D(4, 5), D(5, 5), e05, e15, e25, e35, e45, e55);
#undef D
    float r0, r1, r2, r3, r4, r5;
    DN_WINO_BT(e00, e01, e02, e03, e04, e05, r0, r1, r2, r3, r4, r5);
    dst[0 * v_point] = r0;
    dst[1 * v_point] = r1;
    dst[2 * v_point] = r2;
    dst[3 * v_point] = r3;
    dst[4 * v_point] = r4;
    dst[5 * v_point] = r5;
    DN_WINO_BT(e10, e11, e12, e13, e14, e15, r0, r1, r2, r3, r4, r5);
    dst[6 * v_point] = r0;
    dst[7 * v_point] = r1;
    dst[8 * v_point] = r2;
    dst[9 * v_point] = r3;
    dst[10 * v_point] = r4;
    dst[11 * v_point] = r5;
    DN_WINO_BT(e20, e21, e22, e23, e24, e25, r0, r1, r2, r3, r4, r5);
    dst[12 * v_point] = r0;
    dst[13 * v_point] = r1;
    dst[14 * v_point] = r2;
    dst[15 * v_point] = r3;
    dst[16 * v_point] = r4;
    dst[17 * v_point] = r5;
    DN_WINO_BT(e30, e31, e32, e33, e34, e35, r0, r1, r2, r3, r4, r5);
    dst[18 * v_point] = r0;
    dst[19 * v_point] = r1;
    dst[20 * v_point] = r2;
    dst[21 * v_point] = r3;
    dst[22 * v_point] = r4;
    dst[23 * v_point] = r5;
    DN_WINO_BT(e40, e41, e42, e43, e44, e45, r0, r1, r2, r3, r4, r5);
    dst[24 * v_point] = r0;
    dst[25 * v_point] = r1;
    dst[26 * v_point] = r2;
    dst[27 * v_point] = r3;
    dst[28 * v_point] = r4;
    dst[29 * v_point] = r5;
    DN_WINO_BT(e50, e51, e52, e53, e54, e55, r0, r1, r2, r3, r4, r5);
    dst[30 * v_point] = r0;
    dst[31 * v_point] = r1;
    dst[32 * v_point] = r2;
    dst[33 * v_point] = r3;
    dst[34 * v_point] = r4;
    dst[35 * v_point] = r5;
}

/* The images of the batch's tiles [g0, g0 + count), each with the run of its tiles there:
 * *first and *end (tiles of the image), *at (position in the block). Returns 0 past the last. */
static int block_image(const dn_layer *l, long g0, int count, int index, int *image, int *first, int *end, int *at)
{
    const int tiles = tile_count(l);
    const long b = g0 / tiles + index, g_end = g0 + count;
    const long start = b * tiles > g0 ? b * tiles : g0, stop = (b + 1) * tiles < g_end ? (b + 1) * tiles : g_end;
    if (start >= stop) return 0;
    *image = (int)b;
    *first = (int)(start - b * tiles);
    *end = (int)(stop - b * tiles);
    *at = (int)(start - g0);
    return 1;
}

/* out[x * NR + k] = in[k * plane + x] for x < n, k < NR: NR planes' rows side by side, each
 * column's NR values together (spelled out, this vectorises as a transpose in registers). */
__attribute__((always_inline)) static inline void interleave_channels(const float *restrict in, size_t plane, int n,
                                                                     float *restrict out)
{
    _Static_assert(DN_GEMM_NR == 16, "interleave_channels spells out NR values");
    for (int x = 0; x < n; ++x) {
        const float *column = in + x;
        float *cell = out + (size_t)x * DN_GEMM_NR;
#define CELL(k) cell[k] = column[(k) * plane]
        CELL(0), CELL(1), CELL(2), CELL(3), CELL(4), CELL(5), CELL(6), CELL(7);
        CELL(8), CELL(9), CELL(10), CELL(11), CELL(12), CELL(13), CELL(14), CELL(15);
#undef CELL
    }
}

/* One staged row of `width` cells of NR lanes: cell x, lane k is from[k * plane + x] for x in
 * [xa, xb) and k < lanes, 0 elsewhere (a NULL `from`: a row outside the map, all 0). */
__attribute__((always_inline)) static inline void stage_row(const float *from, size_t plane, int xa, int xb,
                                                          int width, int lanes, float *row)
{
    if (!from) {
        memset(row, 0, sizeof(float) * (size_t)width * DN_GEMM_NR);
        return;
    }
    memset(row, 0, sizeof(float) * (size_t)xa * DN_GEMM_NR);
    memset(row + (size_t)xb * DN_GEMM_NR, 0, sizeof(float) * (size_t)(width - xb) * DN_GEMM_NR);
    if (lanes == DN_GEMM_NR) {
        interleave_channels(from + xa, plane, xb - xa, row + (size_t)xa * DN_GEMM_NR);
        return;
    }
    for (int x = xa; x < xb; ++x) {
        float *cell = row + (size_t)x * DN_GEMM_NR;
        for (int k = 0; k < DN_GEMM_NR; ++k) cell[k] = k < lanes ? from[k * plane + x] : 0.0f;
    }
}

/* The tiles from batch tile g up to `end` in g's row of tiles: their count, and g's image, tile row
 * and first tile column. */
static int row_segment(const dn_layer *l, long g, long end, long *image, int *ty, int *tx0)
{
    const int tiles = tile_count(l), tiles_x = tiles_across(l), tile = (int)(g % tiles);
    *image = g / tiles;
    *ty = tile / tiles_x;
    *tx0 = tile % tiles_x;
    return end - g < tiles_x - *tx0 ? (int)(end - g) : tiles_x - *tx0;
}

/*
 * V of the tiles [g, g + n) of a segment (row_segment up to `end`; n returned) for the channels
 * [c0, c0 + lanes) (lanes <= NR): point p of tile q, channel c0 + k, at dst[q * tile_step +
 * p * point_step + k], lanes past `lanes` as 0. The channels are the vector lanes: the six input
 * rows under the segment are first laid out channel-innermost in `stage`, so that every patch read
 * and every store is NR consecutive floats (with the tiles as the lanes, the patch reads were
 * gathers, which took most of the transform's time).
 */
__attribute__((always_inline)) static inline int transform_segment(const dn_layer *l, const float *input, long g,
                                                                  long end, int c0, int lanes, float *dst,
                                                                  size_t tile_step, size_t point_step,
                                                                  float *stage)
{
    const int h = l->h, w = l->w;
    const size_t plane = (size_t)h * w;
    long image;
    int ty, tx0;
    const int n = row_segment(l, g, end, &image, &ty, &tx0);
    /* stage[(i * width + x) * NR + k]: channel c0 + k at input row 4 ty + i - 1, column 4 tx0 + x - 1 */
    const int width = DN_WINO_OUT * n + 2, x0 = DN_WINO_OUT * tx0 - 1;
    const float *channels = input + (size_t)image * l->inputs + (size_t)c0 * plane;
    const int xa = x0 < 0 ? -x0 : 0, xb = w - x0 < width ? w - x0 : width; /* the columns inside: [xa, xb) */
    for (int i = 0; i < DN_WINO_IN; ++i) {
        const int y = DN_WINO_OUT * ty + i - 1;
        stage_row(y >= 0 && y < h ? channels + (size_t)y * w + x0 : NULL, plane, xa, xb, width, lanes,
                  stage + (size_t)i * width * DN_GEMM_NR);
    }
    for (int q = 0; q < n; ++q) {
        const float *patch = stage + (size_t)DN_WINO_OUT * q * DN_GEMM_NR;
        float *at = dst + (size_t)q * tile_step;
#pragma omp simd
        for (int k = 0; k < DN_GEMM_NR; ++k)
            transform_patch(patch + k, width * DN_GEMM_NR, DN_GEMM_NR, at + k, point_step);
    }
    return n;
}

/* V for the batch's tiles [g0, g0 + count) and channels [c0, c1), p = 6 * row + column of the
 * 6x6: point p is a c x count matrix in dn_gemm_packed's B panels, v_point floats apart. Each
 * panel of NR tiles is transformed NR channels at a time (transform_segment) into `scratch`,
 * then turned (tiles innermost) into V in registers. Past count, the last panel's tiles are 0. */
DN_HOT_WIDE static void transform_inputs(const dn_layer *l, const float *input, long g0, int count, int c0, int c1,
                                         float *v, size_t v_point, float *scratch)
{
    float *panel = scratch, *stage = scratch + DN_WINO_PANEL_FLOATS;
    const size_t tile_floats = (size_t)DN_WINO_POINTS * DN_GEMM_NR;
    for (int c = c0; c < c1; c += DN_GEMM_NR) {
        const int lanes = c1 - c < DN_GEMM_NR ? c1 - c : DN_GEMM_NR;
        for (int t0 = 0; t0 < count; t0 += DN_GEMM_NR) {
            const int tiles = count - t0 < DN_GEMM_NR ? count - t0 : DN_GEMM_NR;
            for (int t = t0; t < t0 + tiles;)
                t += transform_segment(l, input, g0 + t, g0 + t0 + tiles, c, lanes, panel + (t - t0) * tile_floats,
                                       tile_floats, DN_GEMM_NR, stage);
            memset(panel + tiles * tile_floats, 0, sizeof(float) * (DN_GEMM_NR - tiles) * tile_floats);
            float *out = v + (size_t)t0 * l->c + (size_t)c * DN_GEMM_NR;
            for (int p = 0; p < DN_WINO_POINTS; ++p) /* out[channel][tile] = panel[tile][p][channel] */
                interleave_channels(panel + p * DN_GEMM_NR, tile_floats, lanes, out + p * v_point);
        }
    }
}

/* The weight gradient's V (the tiles as the GEMM's depth) for the batch's tiles [g0, g0 + count)
 * and the channels [c0, c0 + NR) of one B panel (those past l->c as 0): point p is `count` rows
 * of NR channels at v + p * v_point. */
DN_HOT_WIDE static void transform_inputs_by_channel(const dn_layer *l, const float *input, long g0, int count,
                                                    int c0, float *v, size_t v_point, float *stage)
{
    const int lanes = l->c - c0 < DN_GEMM_NR ? l->c - c0 : DN_GEMM_NR;
    for (long g = g0; g < g0 + count;)
        g += transform_segment(l, input, g, g0 + count, c0, lanes, v + (size_t)(g - g0) * DN_GEMM_NR, DN_GEMM_NR,
                               v_point, stage);
}

/* A^T applied to six values: four. */
#define DN_WINO_AT(x0, x1, x2, x3, x4, x5, y0, y1, y2, y3) \
    do {                                                    \
        const float sum12 = (x1) + (x2), dif12 = (x1) - (x2); \
        const float sum34 = (x3) + (x4), dif34 = (x3) - (x4); \
        y0 = (x0) + sum12 + sum34;                          \
        y1 = dif12 + 2.0f * dif34;                          \
        y2 = sum12 + 4.0f * sum34;                          \
        y3 = dif12 + 8.0f * dif34 + (x5);                   \
    } while (0)

/* What the output transform does with Y. */
typedef enum {
    DN_WINO_EPILOGUE, /* x * mul + add (bias, inference batch norm), kept in act_input when training, activated */
    DN_WINO_RAW,      /* Y as it is (training batch norm: normalize_batch follows) */
    DN_WINO_ADD       /* added to what is there (the backward pass into input_delta) */
} dn_wino_mode;

/* Y = A^T m A for filter f and tiles [first, first + count) of one image (columns of m, rows ld
 * apart), into the image's output as `mode` says. */
DN_HOT static void transform_outputs_image(const dn_layer *l, const float *m, int ld, int first, int count, int f,
                                           float *out, float *act_input, dn_wino_mode mode, float *scratch)
{
    const int oh = l->out_h, ow = l->out_w, tiles_x = tiles_across(l);
    const size_t point = m_point_floats(l, ld);
    const size_t plane = (size_t)oh * ow;
    float *y[DN_WINO_OUT * DN_WINO_OUT]; /* y[4i + j][k]: output (4ty + i, 4tx + j) of the run's tile k */
    for (int q = 0; q < DN_WINO_OUT * DN_WINO_OUT; ++q) y[q] = scratch + (size_t)q * DN_WINO_Y_STRIDE;
    const int end = first + count;
    float mul = 1.0f, add = 0.0f;
    if (mode == DN_WINO_EPILOGUE) dn_convolutional_affine(l, f, &mul, &add);
    for (int r0 = first; r0 < end; r0 += DN_WINO_RUN_TILES) {
        const int n = end - r0 < DN_WINO_RUN_TILES ? end - r0 : DN_WINO_RUN_TILES;
        const float *restrict src = m + (size_t)f * ld + (r0 - first);
#pragma omp simd
        for (int k = 0; k < n; ++k) {
            float t[DN_WINO_OUT][DN_WINO_IN]; /* A^T m */
            for (int j = 0; j < DN_WINO_IN; ++j) {
#define S(i) src[(size_t)(DN_WINO_IN * (i) + j) * point + k]
                DN_WINO_AT(S(0), S(1), S(2), S(3), S(4), S(5), t[0][j], t[1][j], t[2][j], t[3][j]);
#undef S
            }
            for (int i = 0; i < DN_WINO_OUT; ++i) {
                float r0, r1, r2, r3;
                DN_WINO_AT(t[i][0], t[i][1], t[i][2], t[i][3], t[i][4], t[i][5], r0, r1, r2, r3);
                y[4 * i][k] = r0 * mul + add;
                y[4 * i + 1][k] = r1 * mul + add;
                y[4 * i + 2][k] = r2 * mul + add;
                y[4 * i + 3][k] = r3 * mul + add;
            }
        }
        /* the run's tiles into the output, a row of tiles (or the part of one in the run) at a time */
        for (int t0 = r0; t0 < r0 + n;) {
            const int ty = t0 / tiles_x, tx0 = t0 % tiles_x;
            const int tx1 = r0 + n - t0 < tiles_x - tx0 ? tx0 + (r0 + n - t0) : tiles_x;
            const int in_run = t0 - r0;
            for (int i = 0; i < DN_WINO_OUT; ++i) {
                const int oy = DN_WINO_OUT * ty + i;
                if (oy >= oh) break;
                const float *y0 = y[4 * i] + in_run, *y1 = y[4 * i + 1] + in_run;
                const float *y2 = y[4 * i + 2] + in_run, *y3 = y[4 * i + 3] + in_run;
                const size_t at = (size_t)f * plane + (size_t)oy * ow + DN_WINO_OUT * tx0;
                int columns = DN_WINO_OUT * (tx1 - tx0); /* the image's last tile may stick out */
                if (DN_WINO_OUT * tx0 + columns > ow) columns = ow - DN_WINO_OUT * tx0;
                float *restrict o_row = out + at;
                const int whole = columns / DN_WINO_OUT;
                const float *const last[DN_WINO_OUT] = {y0, y1, y2, y3};
                if (mode == DN_WINO_ADD) {
                    for (int k = 0; k < whole; ++k) {
                        o_row[4 * k] += y0[k];
                        o_row[4 * k + 1] += y1[k];
                        o_row[4 * k + 2] += y2[k];
                        o_row[4 * k + 3] += y3[k];
                    }
                    for (int j = 0; j < columns - DN_WINO_OUT * whole; ++j) o_row[4 * whole + j] += last[j][whole];
                    continue;
                }
                for (int k = 0; k < whole; ++k) {
                    o_row[4 * k] = y0[k];
                    o_row[4 * k + 1] = y1[k];
                    o_row[4 * k + 2] = y2[k];
                    o_row[4 * k + 3] = y3[k];
                }
                for (int j = 0; j < columns - DN_WINO_OUT * whole; ++j) o_row[4 * whole + j] = last[j][whole];
                if (mode == DN_WINO_RAW) continue;
                if (act_input) memcpy(act_input + at, o_row, sizeof(float) * (size_t)columns);
                dn_activate_array(o_row, (size_t)columns, l->activation);
            }
            t0 += tx1 - tx0;
        }
    }
}

/* Y for filters [f0, f1) and the batch's tiles [g0, g0 + count), into each image's output. */
static void transform_outputs(const dn_layer *l, const float *m, long g0, int count, int f0, int f1, float *output,
                              float *act_input, dn_wino_mode mode, float *scratch)
{
    int image, first, end, at;
    for (int k = 0; block_image(l, g0, count, k, &image, &first, &end, &at); ++k) {
        const size_t offset = (size_t)image * l->outputs;
        for (int f = f0; f < f1; ++f)
            transform_outputs_image(l, m + at, count, first, end - first, f, output + offset,
                                    act_input ? act_input + offset : NULL, mode, scratch);
    }
}

/* Blocks one at a time, each shared by all threads: the transforms split the channels and the
 * filters, the GEMMs the 36 points. For batches with fewer blocks than threads. */
static void run_shared_blocks(const dn_layer *l, struct dn_network *net, const float *input, float *output, int n,
                              int per_block, dn_wino_mode mode)
{
    const int threads = net->threads;
    const long total = (long)n * tile_count(l);
    const int in = l->c, out = l->filters;
    const size_t v_point = v_point_floats(l, per_block), m_point = m_point_floats(l, per_block);
    const size_t u_point = u_point_floats(out, in);
    float *v = net->workspace, *m = v + DN_WINO_POINTS * v_point;
    float *scratch = m + DN_WINO_POINTS * m_point;
    const size_t scratch_each = scratch_floats(l);
    float *act = (mode == DN_WINO_EPILOGUE && net->train) ? l->act_input : NULL;
    for (long g0 = 0; g0 < total; g0 += per_block) {
        const int count = total - g0 < per_block ? (int)(total - g0) : per_block;
#pragma omp parallel num_threads(threads)
        {
            float *mine = scratch + (size_t)dn_thread_index() * scratch_each;
#pragma omp for schedule(static)
            for (int c = 0; c < in; c += DN_GEMM_NR)
                transform_inputs(l, input, g0, count, c, c + DN_GEMM_NR < in ? c + DN_GEMM_NR : in, v, v_point, mine);
#pragma omp for schedule(dynamic, 1)
            for (int p = 0; p < DN_WINO_POINTS; ++p)
                dn_gemm_packed(out, count, in, l->winograd_kernels + p * u_point, v + p * v_point,
                               m + p * m_point_floats(l, count), count);
#pragma omp for schedule(static)
            for (int f = 0; f < out; ++f) transform_outputs(l, m, g0, count, f, f + 1, output, act, mode, mine);
        }
    }
}

/* The convolution of `l` (a layer, or the backward pass's view of one) on n images of input into
 * output, with l->winograd_kernels, as `mode` says. */
static void run(const dn_layer *l, struct dn_network *net, const float *input, float *output, int n, dn_wino_mode mode)
{
    const int threads = net->threads;
    const long total = (long)n * tile_count(l);
    const int per_block = block_tiles(l, threads, n);
    const long blocks = (total + per_block - 1) / per_block;
    if (threads > 1 && blocks < threads) {
        run_shared_blocks(l, net, input, output, n, per_block, mode);
        return;
    }
    const int in = l->c, out = l->filters;
    const size_t per_thread = thread_floats(l);
    const size_t v_point = v_point_floats(l, per_block), m_point = m_point_floats(l, per_block);
    const size_t u_point = u_point_floats(out, in);
    float *act = (mode == DN_WINO_EPILOGUE && net->train) ? l->act_input : NULL;

#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (blocks > 1)
    for (long block = 0; block < blocks; ++block) {
        const long g0 = block * per_block;
        const int count = total - g0 < per_block ? (int)(total - g0) : per_block;
        float *v = net->workspace + (size_t)dn_thread_index() * per_thread;
        float *m = v + DN_WINO_POINTS * v_point;
        float *scratch = m + DN_WINO_POINTS * m_point;
        transform_inputs(l, input, g0, count, 0, in, v, v_point, scratch);
        for (int p = 0; p < DN_WINO_POINTS; ++p)
            dn_gemm_packed(out, count, in, l->winograd_kernels + p * u_point, v + p * v_point,
                           m + p * m_point_floats(l, count), count);
        transform_outputs(l, m, g0, count, 0, out, output, act, mode, scratch);
    }
}

void dn_winograd_forward(dn_layer *l, struct dn_network *net, const float *input, int n, int raw)
{
    run(l, net, input, l->output, n, raw ? DN_WINO_RAW : DN_WINO_EPILOGUE);
}

/* The backward pass's view of l: the gradient to the input is the forward convolution of delta
 * (filters channels) with the turned kernels into c outputs (stride 1, pad 1: same sides). */
static dn_layer backward_view(const dn_layer *l)
{
    dn_layer view = *l;
    view.c = l->filters;
    view.filters = l->c;
    view.h = l->out_h;
    view.w = l->out_w;
    view.out_h = l->h;
    view.out_w = l->w;
    view.inputs = l->outputs;
    view.outputs = l->inputs;
    view.winograd_kernels = l->winograd_data_kernels;
    return view;
}

int dn_winograd_prepare_backward(dn_layer *l, int threads)
{
    return prepare_kernels(l, &l->winograd_data_kernels, &l->winograd_data_version, 1, threads);
}

void dn_winograd_backward_data(dn_layer *l, struct dn_network *net, const float *delta, float *input_delta, int n)
{
    const dn_layer view = backward_view(l);
    run(&view, net, delta, input_delta, n, DN_WINO_ADD);
}

/*
 * The weight gradient through Winograd. With Y = A^T M A and M_p = sum_c U_p[o][c] V_p[c], the
 * gradient of U_p[o][c] is the sum over tiles of (A delta A^T)_p V_p[c], and that of the 3x3
 * kernel g is G^T dU G. Per block of tiles of one image, all threads together: the input
 * transform with the tiles as the GEMM's depth (split over channels), the output-gradient
 * transform (split over filters), then dU_p += dM_p V_p^T (split over the 36 points). Every dU
 * value is summed block after block in the same order, whichever thread takes its point.
 */

/* A applied to four values (a row, or a column, of a 4x4 output gradient): six. */
#define DN_WINO_A(x0, x1, x2, x3, y0, y1, y2, y3, y4, y5)        \
    do {                                                         \
        const float even = (x0) + (x2), odd = (x1) + (x3);       \
        const float even4 = (x0) + 4.0f * (x2), odd4 = 2.0f * (x1) + 8.0f * (x3); \
        y0 = (x0);                                               \
        y1 = even + odd;                                         \
        y2 = even - odd;                                         \
        y3 = even4 + odd4;                                       \
        y4 = even4 - odd4;                                       \
        y5 = (x3);                                               \
    } while (0)

/* A delta A^T for one 4x4 output-gradient patch, d(i, j) = in[i * row_step + j * column_step]:
 * point p into dst[p * point_step]. Straight-line code, inlined into a loop over the lanes. */
__attribute__((always_inline)) static inline void transform_grad_patch(const float *restrict in, int row_step,
                                                                      int column_step, float *restrict dst,
                                                                      size_t point_step)
{
#define D(i, j) in[(i) * row_step + (j) * column_step]
    float e00, e01, e02, e03, e10, e11, e12, e13, e20, e21, e22, e23;
    float e30, e31, e32, e33, e40, e41, e42, e43, e50, e51, e52, e53;
    DN_WINO_A(D(0, 0), D(1, 0), D(2, 0), D(3, 0), e00, e10, e20, e30, e40, e50);
    DN_WINO_A(D(0, 1), D(1, 1), D(2, 1), D(3, 1), e01, e11, e21, e31, e41, e51);
    DN_WINO_A(D(0, 2), D(1, 2), D(2, 2), D(3, 2), e02, e12, e22, e32, e42, e52);
    DN_WINO_A(D(0, 3), D(1, 3), D(2, 3), D(3, 3), e03, e13, e23, e33, e43, e53);
#undef D
#define ROW(i, a, b, c, d)                                  \
    do {                                                    \
        float r0, r1, r2, r3, r4, r5;                       \
        DN_WINO_A(a, b, c, d, r0, r1, r2, r3, r4, r5);      \
        dst[(6 * (i)) * point_step] = r0;                   \
        dst[(6 * (i) + 1) * point_step] = r1;               \
        dst[(6 * (i) + 2) * point_step] = r2;               \
        dst[(6 * (i) + 3) * point_step] = r3;               \
        dst[(6 * (i) + 4) * point_step] = r4;               \
        dst[(6 * (i) + 5) * point_step] = r5;               \
    } while (0)
    ROW(0, e00, e01, e02, e03);
    ROW(1, e10, e11, e12, e13);
    ROW(2, e20, e21, e22, e23);
    ROW(3, e30, e31, e32, e33);
    ROW(4, e40, e41, e42, e43);
    ROW(5, e50, e51, e52, e53);
#undef ROW
}

/* Filters the output-gradient transform takes at a time: whole NR-lane vectors that fill whole A
 * panels of MR rows (48 = 3 x 16 = 8 x 6). */
#define DN_WINO_GRAD_FILTERS (3 * DN_GEMM_NR)
_Static_assert(DN_WINO_GRAD_FILTERS % DN_GEMM_MR == 0, "a group of filters fills whole A panels");

/* Scratch of transform_output_grads: the four delta rows under the widest segment for a group of
 * filters (NR a cell), then one tile's dM for them. */
static size_t grad_rows_floats(const dn_layer *l)
{
    return (size_t)DN_WINO_OUT * DN_WINO_OUT * tiles_across(l) * DN_WINO_GRAD_FILTERS;
}
static size_t grad_stage_floats(const dn_layer *l)
{
    return grad_rows_floats(l) + (size_t)DN_WINO_POINTS * DN_WINO_GRAD_FILTERS;
}

/*
 * dM = A delta A^T for the batch's tiles [g0 + t0, g0 + t1) of a block of `count` and every
 * filter: point p is a filters x count matrix in dn_gemm_packed's A panels (the tiles as the
 * depth), so a tile's value for MR filters is MR consecutive floats. The filters are the vector
 * lanes, 48 at a time: the delta rows under a segment of tiles are laid out filter-innermost
 * first (as transform_segment does with the input), each tile's 36 x 48 values are computed
 * together and copied out a panel's MR at a time. With the tiles as the lanes, the patch reads
 * were gathers and every store a scattered single float.
 */
DN_HOT_WIDE static void transform_output_grads(const dn_layer *l, const float *delta, long g0, int count, int t0,
                                               int t1, float *dm, size_t dm_point, float *scratch)
{
    const int oh = l->out_h, ow = l->out_w, filters = l->filters;
    const size_t plane = (size_t)oh * ow;
    float *stage = scratch, *tile_dm = scratch + grad_rows_floats(l);
    for (long g = g0 + t0; g < g0 + t1;) {
        long image;
        int ty, tx0;
        const int n = row_segment(l, g, g0 + t1, &image, &ty, &tx0);
        const int width = DN_WINO_OUT * n, x0 = DN_WINO_OUT * tx0; /* delta columns x0 .. x0 + width */
        const int xb = ow - x0 < width ? ow - x0 : width;          /* those inside the map: [0, xb) */
        const size_t chunk_floats = (size_t)DN_WINO_OUT * width * DN_GEMM_NR;
        for (int f0 = 0; f0 < filters; f0 += DN_WINO_GRAD_FILTERS) {
            const int group = filters - f0 < DN_WINO_GRAD_FILTERS ? filters - f0 : DN_WINO_GRAD_FILTERS;
            const int chunks = (group + DN_GEMM_NR - 1) / DN_GEMM_NR;
            /* stage[((chunk * 4 + i) * width + x) * NR + k]: filter f0 + NR chunk + k at row 4 ty + i,
             * column x0 + x */
            for (int chunk = 0; chunk < chunks; ++chunk) {
                const int lanes = group - chunk * DN_GEMM_NR < DN_GEMM_NR ? group - chunk * DN_GEMM_NR : DN_GEMM_NR;
                const float *planes = delta + (size_t)image * l->outputs + (size_t)(f0 + chunk * DN_GEMM_NR) * plane;
                for (int i = 0; i < DN_WINO_OUT; ++i) {
                    const int y = DN_WINO_OUT * ty + i;
                    stage_row(y < oh ? planes + (size_t)y * ow + x0 : NULL, plane, 0, xb, width, lanes,
                              stage + (chunk * DN_WINO_OUT + i) * (size_t)width * DN_GEMM_NR);
                }
            }
            for (int q = 0; q < n; ++q) {
                for (int chunk = 0; chunk < chunks; ++chunk) {
                    const float *patch = stage + chunk * chunk_floats + (size_t)DN_WINO_OUT * q * DN_GEMM_NR;
                    float *at = tile_dm + chunk * DN_GEMM_NR;
#pragma omp simd
                    for (int k = 0; k < DN_GEMM_NR; ++k)
                        transform_grad_patch(patch + k, width * DN_GEMM_NR, DN_GEMM_NR, at + k, DN_WINO_GRAD_FILTERS);
                }
                /* tile (g - g0 + q)'s MR values of each panel of the group, point by point */
                const size_t tile_at = (size_t)(g - g0 + q) * DN_GEMM_MR;
                for (int r = 0; r < group; r += DN_GEMM_MR) {
                    const int rows = group - r < DN_GEMM_MR ? group - r : DN_GEMM_MR;
                    float *panel = dm + (size_t)(f0 + r) * count + tile_at;
                    const float *from = tile_dm + r;
                    if (rows == DN_GEMM_MR) /* a constant size: inline moves, not calls of memcpy */
                        for (int p = 0; p < DN_WINO_POINTS; ++p)
                            memcpy(panel + p * dm_point, from + p * DN_WINO_GRAD_FILTERS, sizeof(float) * DN_GEMM_MR);
                    else
                        for (int p = 0; p < DN_WINO_POINTS; ++p)
                            memcpy(panel + p * dm_point, from + p * DN_WINO_GRAD_FILTERS, sizeof(float) * rows);
                }
            }
        }
        g += n;
    }
}

/* Tiles per block of the weight gradient: as many as DN_WINO_GRAD_BLOCK_FLOATS of V and dM hold
 * (the tiles are the GEMMs' depth: each block reads and writes all of dU once), whatever the
 * thread count. */
#define DN_WINO_GRAD_BLOCK_FLOATS ((size_t)4 * 1024 * 1024) /* 16 MiB */
static int grad_block_tiles(const dn_layer *l)
{
    size_t count = DN_WINO_GRAD_BLOCK_FLOATS / ((size_t)DN_WINO_POINTS * (l->c + l->filters));
    count = count / DN_GEMM_NR * DN_GEMM_NR;
    return count < DN_GEMM_NR ? DN_GEMM_NR : (int)count;
}

/* Parts of net->winograd_grads: dU (36 x filters x c, row-major), then V (36 points, tiles as the
 * depth) and dM (36 points) of one block, then each thread's scratch. */
static size_t du_point_floats(const dn_layer *l) { return skewed((size_t)l->filters * l->c); }
static size_t vt_point_floats(const dn_layer *l, int per_block) { return skewed(dn_packed_b_floats(per_block, l->c)); }
static size_t dm_point_floats(const dn_layer *l, int per_block) { return skewed(dn_packed_a_floats(l->filters, per_block)); }

/* Scratch per thread of the weight gradient: the output-gradient transform's, or the input
 * transform's stage. */
static size_t grad_scratch_floats(const dn_layer *l)
{
    return grad_stage_floats(l) > stage_floats(l) ? grad_stage_floats(l) : stage_floats(l);
}

size_t dn_winograd_grads_floats(const dn_layer *l, int threads)
{
    if (!dn_winograd_applies(l)) return 0;
    const int per_block = grad_block_tiles(l);
    return DN_WINO_POINTS * (du_point_floats(l) + vt_point_floats(l, per_block) + dm_point_floats(l, per_block)) +
           (size_t)threads * grad_scratch_floats(l);
}

/* G^T applied to six values: three (G's zeros left out). */
#define DN_WINO_GT(x0, x1, x2, x3, x4, x5, y0, y1, y2)                                  \
    do {                                                                                \
        const float sum12 = (x1) + (x2), sum34 = (x3) + (x4);                           \
        y0 = (x0) * 0.25f - sum12 * (1.0f / 6) + sum34 * (1.0f / 24);                   \
        y1 = ((x2) - (x1)) * (1.0f / 6) + ((x3) - (x4)) * (1.0f / 12);                  \
        y2 = (sum34 - sum12) * (1.0f / 6) + (x5);                                       \
    } while (0)

/* weight_updates[o][c] += G^T dU[o][c] G for filter o, the channels as the vector lanes. */
DN_HOT static void add_kernel_gradients(dn_layer *l, const float *du, int o)
{
    const size_t point = du_point_floats(l);
    const int in = l->c;
    const float *restrict d = du + (size_t)o * in;
    float *restrict grad = l->weight_updates + (size_t)o * in * 9;
#pragma omp simd
    for (int c = 0; c < in; ++c) {
#define U(i, j) d[(size_t)(DN_WINO_IN * (i) + (j)) * point + c]
        float t00, t01, t02, t03, t04, t05, t10, t11, t12, t13, t14, t15, t20, t21, t22, t23, t24, t25;
        DN_WINO_GT(U(0, 0), U(1, 0), U(2, 0), U(3, 0), U(4, 0), U(5, 0), t00, t10, t20);
        DN_WINO_GT(U(0, 1), U(1, 1), U(2, 1), U(3, 1), U(4, 1), U(5, 1), t01, t11, t21);
        DN_WINO_GT(U(0, 2), U(1, 2), U(2, 2), U(3, 2), U(4, 2), U(5, 2), t02, t12, t22);
        DN_WINO_GT(U(0, 3), U(1, 3), U(2, 3), U(3, 3), U(4, 3), U(5, 3), t03, t13, t23);
        DN_WINO_GT(U(0, 4), U(1, 4), U(2, 4), U(3, 4), U(4, 4), U(5, 4), t04, t14, t24);
        DN_WINO_GT(U(0, 5), U(1, 5), U(2, 5), U(3, 5), U(4, 5), U(5, 5), t05, t15, t25);
#undef U
        float g0, g1, g2, g3, g4, g5, g6, g7, g8; /* (G^T dU) G */
        DN_WINO_GT(t00, t01, t02, t03, t04, t05, g0, g1, g2);
        DN_WINO_GT(t10, t11, t12, t13, t14, t15, g3, g4, g5);
        DN_WINO_GT(t20, t21, t22, t23, t24, t25, g6, g7, g8);
        float *k = grad + (size_t)c * 9;
        k[0] += g0, k[1] += g1, k[2] += g2, k[3] += g3, k[4] += g4, k[5] += g5, k[6] += g6, k[7] += g7, k[8] += g8;
    }
}

void dn_winograd_backward_weights(dn_layer *l, struct dn_network *net, const float *input, int n)
{
    const int threads = net->threads, per_block = grad_block_tiles(l);
    const long total = (long)n * tile_count(l);
    const int in = l->c, out = l->filters;
    const size_t du_point = du_point_floats(l), vt_point = vt_point_floats(l, per_block);
    const size_t dm_point = dm_point_floats(l, per_block);
    const size_t scratch_each = grad_scratch_floats(l);
    float *du = net->winograd_grads, *vt = du + DN_WINO_POINTS * du_point;
    float *dm = vt + DN_WINO_POINTS * vt_point, *scratch = dm + DN_WINO_POINTS * dm_point;
#pragma omp parallel num_threads(threads)
    {
        float *mine = scratch + (size_t)dn_thread_index() * scratch_each;
        for (long g0 = 0; g0 < total; g0 += per_block) {
            const int count = total - g0 < per_block ? (int)(total - g0) : per_block;
#pragma omp for schedule(static)
            for (int c = 0; c < in; c += DN_GEMM_NR)
                transform_inputs_by_channel(l, input, g0, count, c, vt + (size_t)c * count, vt_point, mine);
#pragma omp for schedule(static) /* the block's tiles split over the threads */
            for (int part = 0; part < threads; ++part)
                transform_output_grads(l, l->delta, g0, count, (int)((long)count * part / threads),
                                       (int)((long)count * (part + 1) / threads), dm, dm_point, mine);
#pragma omp for schedule(dynamic, 1)
            for (int p = 0; p < DN_WINO_POINTS; ++p) /* the first block sets dU, the others add */
                (g0 ? dn_gemm_packed_add : dn_gemm_packed)(out, in, count, dm + p * dm_point, vt + p * vt_point,
                                                           du + p * du_point, in);
        }
#pragma omp for schedule(static)
        for (int f = 0; f < out; ++f) add_kernel_gradients(l, du, f);
    }
}

/* The packed GEMM's micro-kernels (gemm_packed.c) against a double-precision product, at shapes
 * with partial panels and more than one depth and row block; an internal test (internal.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int passed, failed;

static void check(int ok, const char *what, int m, int n, int k)
{
    if (ok) {
        ++passed;
    } else {
        ++failed;
        fprintf(stderr, "test_gemm: %s failed at m=%d n=%d k=%d\n", what, m, n, k);
    }
}

static float uniform(unsigned *state)
{
    *state = *state * 1664525u + 1013904223u;
    return (float)(*state >> 8) / (float)(1u << 24) - 0.5f;
}

/* x rounded to bfloat16 (nearest, ties to even), as a float */
static float bf16(float x)
{
    unsigned bits;
    memcpy(&bits, &x, sizeof bits);
    bits += 0x7FFFu + ((bits >> 16) & 1u);
    bits &= 0xFFFF0000u;
    memcpy(&x, &bits, sizeof x);
    return x;
}

static float exact(float x) { return x; }

/* The largest |C - (start + A B)| (infinite where C is NaN), with the product in double of the
 * operands as `rounded` gives them: row-major A (m x k), B (k x n), C (m x n). */
static double worst_error(int m, int n, int k, const float *a, const float *b, const float *c, float (*rounded)(float),
                          double start)
{
    double worst = 0;
    for (int i = 0; i < m; ++i)
        for (int j = 0; j < n; ++j) {
            double sum = start;
            for (int p = 0; p < k; ++p) sum += (double)rounded(a[i * k + p]) * rounded(b[p * n + j]);
            const double error = fabs(sum - c[i * n + j]);
            worst = error > worst || isnan(error) ? (isnan(error) ? INFINITY : error) : worst;
        }
    return worst;
}

/* Each bf16 kernel this CPU runs against a double product of the bf16-rounded operands, B
 * packed and as rows, written and accumulated. */
static void test_bf16(int m, int n, int k, const float *a, const float *b, const float *pb, float *c)
{
    const dn_bf16_kernel kernels[] = {DN_BF16_AVX512, DN_BF16_AMX};
    for (size_t kind = 0; kind < sizeof kernels / sizeof kernels[0]; ++kind) {
        if (!dn_bf16_kernel_runs(kernels[kind])) continue;
        uint16_t *a16 = malloc(sizeof(uint16_t) * dn_packed_a_bf16_values(kernels[kind], m, k));
        dn_pack_a_bf16(kernels[kind], a, k, m, k, a16);
        for (int form = 0; form < 4; ++form) {
            const int rows_form = form & 1, accumulate = form >> 1;
            for (int i = 0; i < m * n; ++i) c[i] = accumulate ? 1.0f : NAN;
            if (rows_form)
                dn_gemm_bf16(kernels[kind], m, n, k, a16, b, 1, n, c, n, accumulate);
            else
                dn_gemm_bf16(kernels[kind], m, n, k, a16, pb, (size_t)k, DN_GEMM_NR, c, n, accumulate);
            char what[64];
            snprintf(what, sizeof what, "bf16 %s %s%s", dn_bf16_kernel_name(kernels[kind]),
                     rows_form ? "rows" : "packed", accumulate ? " accumulated" : "");
            check(worst_error(m, n, k, a, b, c, bf16, accumulate ? 1.0 : 0.0) <= 1e-6 * k, what, m, n, k);
        }
        free(a16);
    }
}

static void test_shape(int m, int n, int k)
{
    unsigned state = (unsigned)(m * 131 + n * 17 + k);
    float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n);
    float *pa = malloc(sizeof(float) * dn_packed_a_floats(m, k)), *pb = malloc(sizeof(float) * dn_packed_b_floats(k, n));
    float *c = malloc(sizeof(float) * m * n), *rows = malloc(sizeof(float) * m * n);
    float *tail = malloc(sizeof(float) * dn_packed_b_floats(k, DN_GEMM_NR));
    for (int i = 0; i < m * k; ++i) a[i] = uniform(&state);
    for (int i = 0; i < k * n; ++i) b[i] = uniform(&state);
    dn_pack_a(a, k, m, k, pa);
    dn_pack_b(b, n, k, n, pb);
    const char *kernels[] = {"portable", "avx2", "avx512"};
    for (size_t kind = 0; kind < sizeof kernels / sizeof kernels[0]; ++kind) {
        for (int i = 0; i < m * n; ++i) c[i] = NAN; /* every value must be written */
        if (!dn_gemm_packed_with(kernels[kind], m, n, k, pa, pb, c, n)) continue; /* not on this CPU */
        check(worst_error(m, n, k, a, b, c, exact, 0.0) <= 1e-6 * k, kernels[kind], m, n, k);
    }
    /* the AVX-512 kernels add in the AVX2 kernel's order: the same bits (results do not depend on the CPU) */
    if (dn_gemm_packed_with("avx2", m, n, k, pa, pb, c, n) && dn_gemm_packed_with("avx512", m, n, k, pa, pb, rows, n))
        check(memcmp(c, rows, sizeof(float) * m * n) == 0, "avx512 == avx2", m, n, k);
    test_bf16(m, n, k, a, b, pb, c);
    /* plain rows of B give the very same sums as packed B (1x1 layers rely on it) */
    dn_gemm_packed(m, n, k, pa, pb, c, n);
    dn_gemm_rows(m, n, k, pa, b, n, rows, n, tail);
    check(memcmp(c, rows, sizeof(float) * m * n) == 0, "rows == packed", m, n, k);
    free(a), free(b), free(pa), free(pb), free(c), free(rows), free(tail);
}

/* dn_gemm_bf16_taps on dn_bf16_pair_planes (stride 1) or dn_bf16_pair_phases (stride 2), as
 * direct_bf16.c calls them, against a 3x3 pad-1 convolution in double of the bf16-rounded input
 * and weights: odd channels, two channel chunks, partial rows of the kernel, narrow maps. */
static void test_taps(int channels, int filters, int height, int width, int stride)
{
    if (!dn_bf16_kernel_runs(DN_BF16_AVX512)) return;
    unsigned state = (unsigned)(channels * 7 + filters * 131 + height * 17 + width + stride);
    const int out_h = (height - 1) / stride + 1, out_w = (width - 1) / stride + 1;
    const int wide = stride == 1 ? width + 2 : out_w + 1, rows = stride == 1 ? height + 2 : out_h + 1;
    const int pairs = (channels + 1) / 2, phases = stride * stride, n = out_h * wide;
    const size_t plane = (size_t)rows * wide + 2 + DN_GEMM_NC - 1, pair_step = phases * plane;
    float *im = malloc(sizeof(float) * channels * height * width), *w = malloc(sizeof(float) * filters * channels * 9);
    uint16_t *a = malloc(sizeof(uint16_t) * dn_packed_taps_bf16_values(filters, 9, pairs));
    uint32_t *planes = malloc(sizeof(uint32_t) * pairs * pair_step);
    float *c = malloc(sizeof(float) * filters * n);
    for (int i = 0; i < channels * height * width; ++i) im[i] = uniform(&state);
    for (int i = 0; i < filters * channels * 9; ++i) w[i] = uniform(&state);
    dn_pack_taps_bf16(w, filters, channels, 9, a);
    for (int q = 0; q < pairs; ++q) {
        if (stride == 1)
            dn_bf16_pair_planes(im, channels, height, width, 1, pair_step, q, planes);
        else
            dn_bf16_pair_phases(im, channels, height, width, rows, wide, plane, q, planes);
    }
    long offsets[9];
    for (int t = 0; t < 9; ++t) {
        const int ky = t / 3, kx = t % 3;
        offsets[t] = (long)((ky % stride) * stride + kx % stride) * (long)plane + (long)(ky / stride) * wide + kx / stride;
    }
    for (int i = 0; i < filters * n; ++i) c[i] = NAN;
    dn_gemm_bf16_taps(filters, n, 9, offsets, pairs, a, planes, pair_step, c, n);
    double worst = 0;
    for (int f = 0; f < filters; ++f)
        for (int y = 0; y < out_h; ++y)
            for (int x = 0; x < out_w; ++x) {
                double sum = 0;
                for (int ch = 0; ch < channels; ++ch)
                    for (int t = 0; t < 9; ++t) {
                        const int iy = y * stride + t / 3 - 1, ix = x * stride + t % 3 - 1;
                        if (iy < 0 || iy >= height || ix < 0 || ix >= width) continue;
                        sum += (double)bf16(w[(f * channels + ch) * 9 + t]) * bf16(im[(ch * height + iy) * width + ix]);
                    }
                const double error = fabs(sum - c[f * n + y * wide + x]);
                worst = isnan(error) ? INFINITY : error > worst ? error : worst;
            }
    char what[64];
    snprintf(what, sizeof what, "bf16 taps %dx%dx%dx%d stride %d", channels, filters, height, width, stride);
    check(worst <= 1e-6 * channels * 9, what, filters, n, channels * 9);
    free(im), free(w), free(a), free(planes), free(c);
}

int main(void)
{
    const int shapes[][3] = {{1, 1, 1},      {6, 16, 8},     {7, 17, 3},  {13, 50, 27},  {125, 33, 300},
                             {64, 129, 600}, {250, 20, 64},  {12, 48, 5}, {30, 200, 260}, {32, 32, 32},
                             {96, 64, 1100}, {33, 31, 513}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; ++i) test_shape(shapes[i][0], shapes[i][1], shapes[i][2]);
    /* channels, filters, height, width, stride */
    const int taps[][5] = {{3, 16, 13, 11, 1}, {67, 25, 5, 9, 1}, {8, 40, 7, 2, 1}, {64, 12, 1, 1, 1},
                           {3, 16, 16, 13, 2}, {67, 25, 9, 34, 2}, {8, 8, 1, 7, 2}, {5, 13, 6, 1, 2}};
    for (size_t i = 0; i < sizeof taps / sizeof taps[0]; ++i)
        test_taps(taps[i][0], taps[i][1], taps[i][2], taps[i][3], taps[i][4]);
    const char *bf16_kernel = dn_bf16_kernel_name(dn_bf16_best_kernel());
    printf("test_gemm (%s micro-kernel here, bf16 %s): %d passed, %d failed\n", dn_gemm_packed_kernel_name(),
           bf16_kernel ? bf16_kernel : "not on this CPU", passed, failed);
    return failed ? 1 : 0;
}

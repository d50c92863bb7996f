/*
 * Packed single-precision GEMM for the convolution forward: C (m x n, row-major) = A B, with A
 * (the weights, m x k) and B (columns or Winograd-transformed inputs, k x n) already laid out in
 * the micro-kernel's panel order. The weights are packed once per weight change and cached on
 * the layer; B is written in panel order by whoever produces it (im2col, the Winograd input
 * transform), so no call copies its operands the way a BLAS sgemm must (OpenBLAS's packing took
 * a fifth of yolov4-tiny's forward).
 *
 * Panels (DN_GEMM_MR, DN_GEMM_NR in internal.h):
 *   A: panel i holds rows i*MR .. i*MR + MR - 1, for each p in 0..k-1 the MR values A[row][p]
 *      (rows past m are 0); it starts at float i * MR * k.
 *   B: panel j holds columns j*NR .. j*NR + NR - 1, for each p the NR values B[p][column]
 *      (columns past n are 0); it starts at float j * NR * k.
 * The micro-kernel keeps an MR x NR block of C in registers over a depth of up to DN_GEMM_KC.
 * On x86-64 with AVX-512 or AVX2 and FMA (checked at run time) it is written with intrinsics;
 * elsewhere a plain C kernel with the same layout and the same order of additions per output runs.
 */
#include "internal.h"

#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define DN_GEMM_X86 1
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#define DN_GEMM_KC 256 /* depth of one pass: a B panel (KC x NR floats, 16 KiB) stays in L1 */
#define DN_GEMM_MC 120 /* rows of one pass (a multiple of MR): the A block (MC x KC, 120 KiB) stays in L2 */

size_t dn_packed_a_floats(int m, int k) { return (size_t)((m + DN_GEMM_MR - 1) / DN_GEMM_MR) * DN_GEMM_MR * k; }
size_t dn_packed_b_floats(int k, int n) { return (size_t)((n + DN_GEMM_NR - 1) / DN_GEMM_NR) * DN_GEMM_NR * k; }

void dn_pack_a(const float *a, int lda, int m, int k, float *packed)
{
    for (int i0 = 0; i0 < m; i0 += DN_GEMM_MR) {
        float *panel = packed + (size_t)i0 * k;
        const int rows = m - i0 < DN_GEMM_MR ? m - i0 : DN_GEMM_MR;
        for (int p = 0; p < k; ++p)
            for (int r = 0; r < DN_GEMM_MR; ++r)
                panel[(size_t)p * DN_GEMM_MR + r] = r < rows ? a[(size_t)(i0 + r) * lda + p] : 0.0f;
    }
}

void dn_pack_b(const float *b, int ldb, int k, int n, float *packed)
{
    for (int j0 = 0; j0 < n; j0 += DN_GEMM_NR) {
        float *panel = packed + (size_t)j0 * k;
        const int cols = n - j0 < DN_GEMM_NR ? n - j0 : DN_GEMM_NR;
        for (int p = 0; p < k; ++p) {
            float *dst = panel + (size_t)p * DN_GEMM_NR;
            memcpy(dst, b + (size_t)p * ldb + j0, sizeof(float) * (size_t)cols);
            for (int c = cols; c < DN_GEMM_NR; ++c) dst[c] = 0.0f;
        }
    }
}

/* The MR x NR block of C at c (rows x cols of it inside C) = (accumulate ? c : 0) + a b over depth k;
 * b's NR values of depth p are at b + p * ldb (NR in a packed panel). */
typedef void (*dn_micro_kernel)(int k, const float *restrict a, const float *restrict b, int ldb, float *restrict c,
                                int ldc, int accumulate, int rows, int cols);

/* Write a full MR x NR block from `block` into C, or the rows x cols part of it. */
static void store_block(const float *block, float *c, int ldc, int accumulate, int rows, int cols)
{
    for (int r = 0; r < rows; ++r) {
        float *row = c + (size_t)r * ldc;
        const float *src = block + r * DN_GEMM_NR;
        if (accumulate)
            for (int j = 0; j < cols; ++j) row[j] += src[j];
        else
            memcpy(row, src, sizeof(float) * (size_t)cols);
    }
}

static void kernel_portable(int k, const float *restrict a, const float *restrict b, int ldb, float *restrict c,
                            int ldc, int accumulate, int rows, int cols)
{
    float block[DN_GEMM_MR * DN_GEMM_NR] = {0};
    for (int p = 0; p < k; ++p) {
        const float *bp = b + (size_t)p * ldb;
        for (int r = 0; r < DN_GEMM_MR; ++r) {
            const float av = a[(size_t)p * DN_GEMM_MR + r];
            for (int j = 0; j < DN_GEMM_NR; ++j) block[r * DN_GEMM_NR + j] += av * bp[j];
        }
    }
    store_block(block, c, ldc, accumulate, rows, cols);
}

#ifdef DN_GEMM_X86
/* 12 of the 16 ymm registers hold the 6 x 16 block; per step two loads of B, six broadcasts of A. */
__attribute__((target("avx2,fma"))) static void kernel_avx2(int k, const float *restrict a, const float *restrict b,
                                                             int ldb, float *restrict c, int ldc, int accumulate,
                                                             int rows, int cols)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int p = 0; p < k; ++p) {
        const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        __m256 av = _mm256_broadcast_ss(a);
        c00 = _mm256_fmadd_ps(av, b0, c00);
        c01 = _mm256_fmadd_ps(av, b1, c01);
        av = _mm256_broadcast_ss(a + 1);
        c10 = _mm256_fmadd_ps(av, b0, c10);
        c11 = _mm256_fmadd_ps(av, b1, c11);
        av = _mm256_broadcast_ss(a + 2);
        c20 = _mm256_fmadd_ps(av, b0, c20);
        c21 = _mm256_fmadd_ps(av, b1, c21);
        av = _mm256_broadcast_ss(a + 3);
        c30 = _mm256_fmadd_ps(av, b0, c30);
        c31 = _mm256_fmadd_ps(av, b1, c31);
        av = _mm256_broadcast_ss(a + 4);
        c40 = _mm256_fmadd_ps(av, b0, c40);
        c41 = _mm256_fmadd_ps(av, b1, c41);
        av = _mm256_broadcast_ss(a + 5);
        c50 = _mm256_fmadd_ps(av, b0, c50);
        c51 = _mm256_fmadd_ps(av, b1, c51);
        a += DN_GEMM_MR;
        b += ldb;
    }
    if (rows == DN_GEMM_MR && cols == DN_GEMM_NR) {
        const __m256 acc[DN_GEMM_MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
        for (int r = 0; r < DN_GEMM_MR; ++r) {
            float *row = c + (size_t)r * ldc;
            __m256 lo = acc[r][0], hi = acc[r][1];
            if (accumulate) {
                lo = _mm256_add_ps(lo, _mm256_loadu_ps(row));
                hi = _mm256_add_ps(hi, _mm256_loadu_ps(row + 8));
            }
            _mm256_storeu_ps(row, lo);
            _mm256_storeu_ps(row + 8, hi);
        }
        return;
    }
    float block[DN_GEMM_MR * DN_GEMM_NR];
    const __m256 acc[DN_GEMM_MR * 2] = {c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51};
    for (int i = 0; i < DN_GEMM_MR * 2; ++i) _mm256_storeu_ps(block + 8 * i, acc[i]);
    store_block(block, c, ldc, accumulate, rows, cols);
}
#endif

#ifdef DN_GEMM_X86
/* AVX-512 (checked at run time): 12 of the 32 zmm registers hold a 6 x 32 block that spans two
 * neighbouring B panels (b, b2), so each step's two loads and six broadcasts feed 12 FMAs. A lone
 * last B panel takes the 12 x 16 kernel (two A panels), or the 6 x 16 one where a single A panel
 * is left. The additions per output are those of the AVX2 kernel, in the same order, so both
 * give the same bits. */
#define DN_AVX512_TARGET __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))

/* Rows r < rows of a block (row r's 16 columns in acc[r * acc_step], the first `cols` of them)
 * into C, added to it when accumulate. */
DN_AVX512_TARGET static inline void store_zmm_rows(const __m512 *acc, int acc_step, float *c, int ldc, int accumulate,
                                                  int rows, int cols)
{
    const __mmask16 mask = cols >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << cols) - 1u);
    for (int r = 0; r < rows; ++r) {
        float *row = c + (size_t)r * ldc;
        __m512 value = acc[r * acc_step];
        if (accumulate) value = _mm512_add_ps(value, _mm512_maskz_loadu_ps(mask, row));
        _mm512_mask_storeu_ps(row, mask, value);
    }
}

DN_AVX512_TARGET static void kernel_avx512(int k, const float *restrict a, const float *restrict b, int ldb,
                                           float *restrict c, int ldc, int accumulate, int rows, int cols)
{
    __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
    for (int p = 0; p < k; ++p) {
        const __m512 b0 = _mm512_loadu_ps(b);
        c0 = _mm512_fmadd_ps(_mm512_set1_ps(a[0]), b0, c0);
        c1 = _mm512_fmadd_ps(_mm512_set1_ps(a[1]), b0, c1);
        c2 = _mm512_fmadd_ps(_mm512_set1_ps(a[2]), b0, c2);
        c3 = _mm512_fmadd_ps(_mm512_set1_ps(a[3]), b0, c3);
        c4 = _mm512_fmadd_ps(_mm512_set1_ps(a[4]), b0, c4);
        c5 = _mm512_fmadd_ps(_mm512_set1_ps(a[5]), b0, c5);
        a += DN_GEMM_MR;
        b += ldb;
    }
    const __m512 acc[DN_GEMM_MR] = {c0, c1, c2, c3, c4, c5};
    store_zmm_rows(acc, 1, c, ldc, accumulate, rows, cols);
}

DN_AVX512_TARGET static void kernel_avx512_wide(int k, const float *restrict a, const float *restrict b,
                                                const float *restrict b2, int ldb, float *restrict c, int ldc,
                                                int accumulate, int rows, int cols)
{
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m512 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int p = 0; p < k; ++p) {
        const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b2);
        __m512 av = _mm512_set1_ps(a[0]);
        c00 = _mm512_fmadd_ps(av, b0, c00);
        c01 = _mm512_fmadd_ps(av, b1, c01);
        av = _mm512_set1_ps(a[1]);
        c10 = _mm512_fmadd_ps(av, b0, c10);
        c11 = _mm512_fmadd_ps(av, b1, c11);
        av = _mm512_set1_ps(a[2]);
        c20 = _mm512_fmadd_ps(av, b0, c20);
        c21 = _mm512_fmadd_ps(av, b1, c21);
        av = _mm512_set1_ps(a[3]);
        c30 = _mm512_fmadd_ps(av, b0, c30);
        c31 = _mm512_fmadd_ps(av, b1, c31);
        av = _mm512_set1_ps(a[4]);
        c40 = _mm512_fmadd_ps(av, b0, c40);
        c41 = _mm512_fmadd_ps(av, b1, c41);
        av = _mm512_set1_ps(a[5]);
        c50 = _mm512_fmadd_ps(av, b0, c50);
        c51 = _mm512_fmadd_ps(av, b1, c51);
        a += DN_GEMM_MR;
        b += ldb;
        b2 += ldb;
    }
    const __m512 acc[DN_GEMM_MR * 2] = {c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51};
    store_zmm_rows(acc, 2, c, ldc, accumulate, rows, DN_GEMM_NR);
    store_zmm_rows(acc + 1, 2, c + DN_GEMM_NR, ldc, accumulate, rows, cols - DN_GEMM_NR);
}

/* 12 x 16: two neighbouring A panels (a, a2) over one B panel, for a lone last panel of B (a
 * 13x13 map's 16 Winograd tiles): 12 accumulators keep both FMA pipes busy where 6 could not. */
DN_AVX512_TARGET static void kernel_avx512_tall(int k, const float *restrict a, const float *restrict a2,
                                                const float *restrict b, int ldb, float *restrict c, int ldc,
                                                int accumulate, int rows, int cols)
{
    __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
    __m512 c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
    for (int p = 0; p < k; ++p) {
        const __m512 b0 = _mm512_loadu_ps(b);
        c0 = _mm512_fmadd_ps(_mm512_set1_ps(a[0]), b0, c0);
        c1 = _mm512_fmadd_ps(_mm512_set1_ps(a[1]), b0, c1);
        c2 = _mm512_fmadd_ps(_mm512_set1_ps(a[2]), b0, c2);
        c3 = _mm512_fmadd_ps(_mm512_set1_ps(a[3]), b0, c3);
        c4 = _mm512_fmadd_ps(_mm512_set1_ps(a[4]), b0, c4);
        c5 = _mm512_fmadd_ps(_mm512_set1_ps(a[5]), b0, c5);
        c6 = _mm512_fmadd_ps(_mm512_set1_ps(a2[0]), b0, c6);
        c7 = _mm512_fmadd_ps(_mm512_set1_ps(a2[1]), b0, c7);
        c8 = _mm512_fmadd_ps(_mm512_set1_ps(a2[2]), b0, c8);
        c9 = _mm512_fmadd_ps(_mm512_set1_ps(a2[3]), b0, c9);
        c10 = _mm512_fmadd_ps(_mm512_set1_ps(a2[4]), b0, c10);
        c11 = _mm512_fmadd_ps(_mm512_set1_ps(a2[5]), b0, c11);
        a += DN_GEMM_MR;
        a2 += DN_GEMM_MR;
        b += ldb;
    }
    const __m512 acc[2 * DN_GEMM_MR] = {c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11};
    store_zmm_rows(acc, 1, c, ldc, accumulate, rows < DN_GEMM_MR ? rows : DN_GEMM_MR, cols);
    if (rows > DN_GEMM_MR)
        store_zmm_rows(acc + DN_GEMM_MR, 1, c + (size_t)DN_GEMM_MR * ldc, ldc, accumulate, rows - DN_GEMM_MR, cols);
}
#endif

/* A 6 x 32 block over two neighbouring B panels (b, b2); cols is 17..32. */
typedef void (*dn_wide_kernel)(int k, const float *restrict a, const float *restrict b, const float *restrict b2,
                               int ldb, float *restrict c, int ldc, int accumulate, int rows, int cols);
/* A 12 x 16 block from two neighbouring A panels (a, a2); rows is 7..12. */
typedef void (*dn_tall_kernel)(int k, const float *restrict a, const float *restrict a2, const float *restrict b,
                               int ldb, float *restrict c, int ldc, int accumulate, int rows, int cols);

/* The micro-kernels one GEMM runs: `narrow` for one B panel, `wide` (or NULL) for two, `tall`
 * (or NULL) for one B panel and two A panels. */
typedef struct {
    dn_micro_kernel narrow;
    dn_wide_kernel wide;
    dn_tall_kernel tall;
} dn_kernels;

static int cpu_has(const char *level)
{
#ifdef DN_GEMM_X86
    __builtin_cpu_init();
    if (strcmp(level, "avx2") == 0) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (strcmp(level, "avx512") == 0)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
#endif
    (void)level;
    return 0;
}

/* The micro-kernels called `name` ("avx512", "avx2", "portable"; NULL: the best this CPU runs);
 * narrow is NULL where this CPU cannot run them. */
static dn_kernels micro_kernels(const char *name)
{
    dn_kernels kernels = {NULL, NULL, NULL};
#ifdef DN_GEMM_X86
    if ((!name || strcmp(name, "avx512") == 0) && cpu_has("avx512")) {
        kernels.narrow = kernel_avx512;
        kernels.wide = kernel_avx512_wide;
        kernels.tall = kernel_avx512_tall;
        return kernels;
    }
    if ((!name || strcmp(name, "avx2") == 0) && cpu_has("avx2")) {
        kernels.narrow = kernel_avx2;
        return kernels;
    }
#endif
    if (!name || strcmp(name, "portable") == 0) kernels.narrow = kernel_portable;
    return kernels;
}

const char *dn_gemm_packed_kernel_name(void)
{
    return cpu_has("avx512") ? "avx512" : cpu_has("avx2") ? "avx2" : "portable";
}

/* The blocked loops over C; B's panel of columns jr.. starts at b + jr * column_step, its depth p
 * at + p * ldb (packed: column_step k, ldb NR; plain rows: 1 and the row length). */
static void gemm_blocks(dn_kernels kernels, int m, int n, int k, const float *a, const float *b,
                        size_t column_step, int ldb, float *c, int ldc, int accumulate)
{
    for (int pc = 0; pc < k; pc += DN_GEMM_KC) {
        const int kc = k - pc < DN_GEMM_KC ? k - pc : DN_GEMM_KC;
        for (int ic = 0; ic < m; ic += DN_GEMM_MC) {
            const int mc = m - ic < DN_GEMM_MC ? m - ic : DN_GEMM_MC;
            for (int jr = 0; jr < n;) {
                const float *bp = b + (size_t)jr * column_step + (size_t)pc * ldb;
                const int wide = kernels.wide && n - jr > DN_GEMM_NR;
                const int span = wide ? 2 * DN_GEMM_NR : DN_GEMM_NR;
                const int cols = n - jr < span ? n - jr : span;
                for (int ir = ic; ir < ic + mc;) {
                    const float *ap = a + (size_t)ir * k + (size_t)pc * DN_GEMM_MR;
                    const int tall = !wide && kernels.tall && ir + DN_GEMM_MR < ic + mc;
                    const int height = tall ? 2 * DN_GEMM_MR : DN_GEMM_MR;
                    const int rows = m - ir < height ? m - ir : height;
                    float *block = c + (size_t)ir * ldc + jr;
                    if (wide)
                        kernels.wide(kc, ap, bp, bp + DN_GEMM_NR * column_step, ldb, block, ldc, accumulate || pc > 0,
                                     rows, cols);
                    else if (tall)
                        kernels.tall(kc, ap, ap + (size_t)DN_GEMM_MR * k, bp, ldb, block, ldc, accumulate || pc > 0,
                                     rows, cols);
                    else
                        kernels.narrow(kc, ap, bp, ldb, block, ldc, accumulate || pc > 0, rows, cols);
                    ir += height;
                }
                jr += span;
            }
        }
    }
}

void dn_gemm_packed(int m, int n, int k, const float *a, const float *b, float *c, int ldc)
{
    gemm_blocks(micro_kernels(NULL), m, n, k, a, b, (size_t)k, DN_GEMM_NR, c, ldc, 0);
}

void dn_gemm_packed_add(int m, int n, int k, const float *a, const float *b, float *c, int ldc)
{
    gemm_blocks(micro_kernels(NULL), m, n, k, a, b, (size_t)k, DN_GEMM_NR, c, ldc, 1);
}

void dn_gemm_rows(int m, int n, int k, const float *a, const float *b, int ldb, float *c, int ldc, float *tail)
{
    const dn_kernels kernels = micro_kernels(NULL);
    const int whole = n / DN_GEMM_NR * DN_GEMM_NR;
    if (whole) gemm_blocks(kernels, m, whole, k, a, b, 1, ldb, c, ldc, 0);
    if (whole == n) return;
    dn_pack_b(b + whole, ldb, k, n - whole, tail);
    gemm_blocks(kernels, m, n - whole, k, a, tail, (size_t)k, DN_GEMM_NR, c + whole, ldc, 0);
}

int dn_gemm_packed_with(const char *kernel_name, int m, int n, int k, const float *a, const float *b, float *c,
                        int ldc)
{
    const dn_kernels kernels = micro_kernels(kernel_name);
    if (!kernels.narrow) return 0;
    gemm_blocks(kernels, m, n, k, a, b, (size_t)k, DN_GEMM_NR, c, ldc, 0);
    return 1;
}

/*
 * bf16 inference GEMM: C (fp32) = A B with A and B rounded to bfloat16 (round to nearest even)
 * and the products summed in fp32. Two kernels, each with its own layout of A (the weights,
 * packed once per weight change):
 *   DN_BF16_AVX512 (AVX512-BF16: vdpbf16ps, two depths per instruction): panels of
 *      DN_BF16_MR rows; panel i holds, for each pair q of depths (2q, 2q + 1), DN_BF16_MR pairs
 *      (A[row][2q], A[row][2q + 1]); an odd depth's last pair ends in 0. It starts at value
 *      i * DN_BF16_MR * 2 * ceil(k / 2).
 *   DN_BF16_AMX (AMX-BF16: one instruction makes a 16 x 16 block of C from 32 depths): tiles of
 *      DN_AMX_TILE_ROWS rows x DN_AMX_TILE_DEPTHS depths, row after row; tile (i, t) holds rows
 *      16i.. and depths 32t.. and starts at value (i * ceil(k / 32) + t) * 512. Rows are padded
 *      with zeros to a multiple of 32 (a kernel call makes two tiles of rows), depths to one of 32.
 *   B: fp32, as dn_gemm_packed or dn_gemm_rows take it; each depth block of NC columns is
 *      rounded into a bf16 block on the calling thread's stack just before the kernels read it
 *      (per depth pair, NC column pairs: what vdpbf16ps reads, and AMX's B tiles too), so the
 *      producers (im2col, the Winograd input transform, 1x1 inputs read in place) stay fp32.
 * The kernels add in different orders: their results agree to rounding, not bit for bit.
 *
 * dn_gemm_bf16_taps (AVX512-BF16; convolutions without im2col): B is bf16 pairs already, read in
 * place at a shifted offset per kernel tap (dn_bf16_pair_planes makes them); A
 * (dn_pack_taps_bf16): per panel of DN_BF16_MR rows, per chunk of DN_TAPS_CHUNK_PAIRS channel
 * pairs, per tap, per pair, the panel rows' two values (channels 2q, 2q + 1; 0 past the channels
 * and rows). dn_bf16_pair_phases makes the pairs of stride-2 layers.
 */
#define DN_AMX_TILE_ROWS 16   /* rows of a tile (and of C's tiles) */
#define DN_AMX_TILE_DEPTHS 32 /* bf16 values in a tile row: 64 bytes */
#define DN_AMX_TILE_VALUES (DN_AMX_TILE_ROWS * DN_AMX_TILE_DEPTHS)
#define DN_AMX_BLOCK_ROWS (2 * DN_AMX_TILE_ROWS) /* rows of C one kernel call makes */
#define DN_AMX_KC 512                            /* depth of one B block (32 KiB of bf16) */
/* Channel pairs of one depth chunk of dn_gemm_bf16_taps: the B it reads for a block of NC
 * columns (3x3 taps: 3 rows of NC + 2 pairs per channel pair, 13 KiB) stays in L1. */
#define DN_TAPS_CHUNK_PAIRS 32

static int round_up(int x, int step) { return (x + step - 1) / step * step; }

static uint16_t round_to_bf16(float x)
{
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((bits >> 16) | 0x40u); /* NaN stays NaN */
    bits += 0x7FFFu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

int dn_cpu_has_bf16(void)
{
#ifdef DN_GEMM_X86
    return cpu_has("avx512") && __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

/* AMX-TILE and AMX-BF16 (CPUID leaf 7, EDX bits 24 and 22), and Linux's leave to use the tile
 * data (arch_prctl ARCH_REQ_XCOMP_PERM, Linux 5.16 on; without it the first tile instruction
 * kills the process). Asking again once granted is harmless: one system call per pass. */
#define DN_ARCH_REQ_XCOMP_PERM 0x1023
#define DN_XFEATURE_XTILEDATA 18
static int amx_usable(void)
{
#if defined(DN_GEMM_X86) && defined(__linux__)
    unsigned eax, ebx, ecx, edx;
    if (!dn_cpu_has_bf16() || !__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    if (!(edx & (1u << 24)) || !(edx & (1u << 22))) return 0;
    return syscall(SYS_arch_prctl, DN_ARCH_REQ_XCOMP_PERM, DN_XFEATURE_XTILEDATA) == 0;
#else
    return 0;
#endif
}

dn_bf16_kernel dn_bf16_best_kernel(void)
{
    if (amx_usable()) return DN_BF16_AMX;
    return dn_cpu_has_bf16() ? DN_BF16_AVX512 : DN_BF16_NONE;
}

int dn_bf16_kernel_runs(dn_bf16_kernel kernel)
{
    if (kernel == DN_BF16_AMX) return amx_usable();
    return kernel == DN_BF16_AVX512 && dn_cpu_has_bf16();
}

const char *dn_bf16_kernel_name(dn_bf16_kernel kernel)
{
    return kernel == DN_BF16_AMX ? "AMX" : kernel == DN_BF16_AVX512 ? "AVX512-BF16" : NULL;
}

size_t dn_packed_a_bf16_values(dn_bf16_kernel kernel, int m, int k)
{
    if (kernel == DN_BF16_AMX) return (size_t)round_up(m, DN_AMX_BLOCK_ROWS) * (size_t)round_up(k, DN_AMX_TILE_DEPTHS);
    return (size_t)((m + DN_BF16_MR - 1) / DN_BF16_MR) * DN_BF16_MR * 2 * (size_t)((k + 1) / 2);
}

/* A[row][p] in bf16, 0 past the matrix (the layouts' padding) */
static uint16_t a_value(const float *a, int lda, int m, int k, int row, int p)
{
    return row < m && p < k ? round_to_bf16(a[(size_t)row * lda + p]) : 0;
}

void dn_pack_a_bf16(dn_bf16_kernel kernel, const float *a, int lda, int m, int k, uint16_t *out)
{
    if (kernel == DN_BF16_AMX) {
        const int chunks = round_up(k, DN_AMX_TILE_DEPTHS) / DN_AMX_TILE_DEPTHS;
        for (int row = 0; row < round_up(m, DN_AMX_BLOCK_ROWS); ++row)
            for (int t = 0; t < chunks; ++t) {
                uint16_t *dst = out + ((size_t)(row / DN_AMX_TILE_ROWS) * chunks + t) * DN_AMX_TILE_VALUES +
                                (size_t)(row % DN_AMX_TILE_ROWS) * DN_AMX_TILE_DEPTHS;
                for (int d = 0; d < DN_AMX_TILE_DEPTHS; ++d) dst[d] = a_value(a, lda, m, k, row, t * DN_AMX_TILE_DEPTHS + d);
            }
        return;
    }
    const int panels = (m + DN_BF16_MR - 1) / DN_BF16_MR, pairs = (k + 1) / 2;
    for (int i = 0; i < panels; ++i) {
        uint16_t *dst = out + (size_t)i * DN_BF16_MR * 2 * pairs;
        for (int q = 0; q < pairs; ++q)
            for (int r = 0; r < DN_BF16_MR; ++r) {
                dst[(size_t)q * DN_BF16_MR * 2 + 2 * r] = a_value(a, lda, m, k, i * DN_BF16_MR + r, 2 * q);
                dst[(size_t)q * DN_BF16_MR * 2 + 2 * r + 1] = a_value(a, lda, m, k, i * DN_BF16_MR + r, 2 * q + 1);
            }
    }
}

size_t dn_packed_taps_bf16_values(int m, int taps, int pairs)
{
    return (size_t)((m + DN_BF16_MR - 1) / DN_BF16_MR) * DN_BF16_MR * 2 * (size_t)taps * pairs;
}

void dn_pack_taps_bf16(const float *w, int m, int channels, int taps, uint16_t *out)
{
    const int pairs = (channels + 1) / 2, k = channels * taps, panels = (m + DN_BF16_MR - 1) / DN_BF16_MR;
    for (int i = 0; i < panels; ++i)
        for (int q0 = 0; q0 < pairs; q0 += DN_TAPS_CHUNK_PAIRS) {
            const int qc = pairs - q0 < DN_TAPS_CHUNK_PAIRS ? pairs - q0 : DN_TAPS_CHUNK_PAIRS;
            for (int t = 0; t < taps; ++t)
                for (int q = q0; q < q0 + qc; ++q)
                    for (int r = 0; r < DN_BF16_MR; ++r) {
                        const int row = i * DN_BF16_MR + r, even = 2 * q, odd = 2 * q + 1;
                        *out++ = even < channels ? a_value(w, k, m, k, row, even * taps + t) : 0;
                        *out++ = odd < channels ? a_value(w, k, m, k, row, odd * taps + t) : 0;
                    }
        }
}

#ifdef DN_GEMM_X86
#define DN_BF16_TARGET __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx512bf16,fma")))
#define DN_AMX_TARGET __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx512bf16,fma,amx-tile,amx-bf16")))
#define DN_BF16_PAIR_VALUES (2 * DN_GEMM_NC) /* bf16 values of one depth pair in a B block */
/* Two fp32 vectors as bf16 pairs (a in the low half). */
DN_BF16_TARGET static inline __m512i bf16_pairs(__m512 a, __m512 b)
{
    const __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(a));
    const __m512i hi = _mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(b)), 16);
    return _mm512_or_si512(lo, hi);
}

/* Depths pc .. pc + kc - 1 of B's columns jr .. jr + cols - 1 (cols <= NC; panels as
 * gemm_blocks reads them) into `block`: per depth pair, NC column pairs (depth 2q in the low
 * half); missing columns and depths are 0. */
DN_BF16_TARGET static void round_b_block(const float *b, size_t column_step, int ldb, int k, int pc, int kc, int jr,
                                         int cols, uint16_t *block)
{
    for (int half = 0; half < DN_GEMM_NC / DN_GEMM_NR; ++half) {
        const int valid = cols - half * DN_GEMM_NR;
        const __mmask16 mask =
            valid >= DN_GEMM_NR ? (__mmask16)0xFFFF : valid > 0 ? (__mmask16)((1u << valid) - 1u) : 0;
        const float *panel = b + (size_t)(jr + half * DN_GEMM_NR) * column_step;
        for (int q = 0; 2 * q < kc; ++q) {
            const int p = pc + 2 * q;
            const __m512 even = _mm512_maskz_loadu_ps(mask, panel + (size_t)p * ldb);
            const __m512 odd =
                p + 1 < k ? _mm512_maskz_loadu_ps(mask, panel + (size_t)(p + 1) * ldb) : _mm512_setzero_ps();
            _mm512_store_si512((void *)(block + (size_t)q * DN_BF16_PAIR_VALUES + half * 2 * DN_GEMM_NR),
                               bf16_pairs(even, odd));
        }
    }
}

/* Row r's pair of A (two bf16 values) as one 32-bit lane broadcast to all 16 (memcpy: the
 * values are uint16_t, read here 32 bits at a time). */
DN_BF16_TARGET static inline __m512bh broadcast_pair(const uint16_t *a, int r)
{
    uint32_t pair;
    memcpy(&pair, a + 2 * r, sizeof pair);
    return (__m512bh)_mm512_set1_epi32((int)pair);
}

/* The DN_BF16_MR x cols block of C (cols <= NC: one B panel's half of the block, or both) from `pairs`
 * depth pairs under each of `taps` taps. Pair q of tap t of B is the NC 32-bit column pairs at
 * b + offsets[t] + q * b_step (in uint32 units: a rounded block has taps 1, offset 0, step NC);
 * A's pairs follow one another over the taps. */
DN_BF16_TARGET static void kernel_bf16(int taps, const long *offsets, int pairs, const uint16_t *restrict a,
                                       const uint32_t *b, size_t b_step, float *restrict c, int ldc,
                                       int accumulate, int rows, int cols)
{
    __m512 acc[2 * DN_BF16_MR];
#pragma GCC unroll 24
    for (int i = 0; i < 2 * DN_BF16_MR; ++i) acc[i] = _mm512_setzero_ps();
    for (int t = 0; t < taps; ++t) {
        const uint32_t *bq = b + offsets[t];
        if (cols > DN_GEMM_NR) {
            for (int q = 0; q < pairs; ++q) {
                const __m512bh b0 = (__m512bh)_mm512_loadu_si512((const void *)bq);
                const __m512bh b1 = (__m512bh)_mm512_loadu_si512((const void *)(bq + DN_GEMM_NR));
#pragma GCC unroll 12
                for (int r = 0; r < DN_BF16_MR; ++r) {
                    const __m512bh av = broadcast_pair(a, r);
                    acc[2 * r] = _mm512_dpbf16_ps(acc[2 * r], av, b0);
                    acc[2 * r + 1] = _mm512_dpbf16_ps(acc[2 * r + 1], av, b1);
                }
                a += 2 * DN_BF16_MR;
                bq += b_step;
            }
        } else {
            for (int q = 0; q < pairs; ++q) {
                const __m512bh b0 = (__m512bh)_mm512_loadu_si512((const void *)bq);
#pragma GCC unroll 12
                for (int r = 0; r < DN_BF16_MR; ++r) acc[2 * r] = _mm512_dpbf16_ps(acc[2 * r], broadcast_pair(a, r), b0);
                a += 2 * DN_BF16_MR;
                bq += b_step;
            }
        }
    }
    store_zmm_rows(acc, 2, c, ldc, accumulate, rows, cols < DN_GEMM_NR ? cols : DN_GEMM_NR);
    if (cols > DN_GEMM_NR) store_zmm_rows(acc + 1, 2, c + DN_GEMM_NR, ldc, accumulate, rows, cols - DN_GEMM_NR);
}

DN_BF16_TARGET static void gemm_bf16_blocks(int m, int n, int k, const uint16_t *a, const float *b,
                                            size_t column_step, int ldb, float *c, int ldc, int accumulate)
{
    _Alignas(64) uint16_t block[(DN_GEMM_KC / 2) * DN_BF16_PAIR_VALUES];
    const size_t panel_values = (size_t)DN_BF16_MR * 2 * ((k + 1) / 2);
    static const long no_offset = 0;
    for (int pc = 0; pc < k; pc += DN_GEMM_KC) {
        const int kc = k - pc < DN_GEMM_KC ? k - pc : DN_GEMM_KC, pairs = (kc + 1) / 2;
        for (int jr = 0; jr < n; jr += DN_GEMM_NC) {
            const int cols = n - jr < DN_GEMM_NC ? n - jr : DN_GEMM_NC;
            round_b_block(b, column_step, ldb, k, pc, kc, jr, cols, block);
            for (int ir = 0; ir < m; ir += DN_BF16_MR) {
                const uint16_t *ap = a + (size_t)(ir / DN_BF16_MR) * panel_values + (size_t)pc * DN_BF16_MR;
                const int rows = m - ir < DN_BF16_MR ? m - ir : DN_BF16_MR;
                kernel_bf16(1, &no_offset, pairs, ap, (const uint32_t *)block, DN_GEMM_NC, c + (size_t)ir * ldc + jr,
                            ldc, accumulate || pc > 0, rows, cols);
            }
        }
    }
}

/* Channels 2q and 2q + 1 of one image row (fp32, `count` values) as bf16 pairs (2q in the low
 * half; `odd` NULL for a missing last channel). */
DN_BF16_TARGET static void pair_row(const float *even, const float *odd, int count, uint32_t *out)
{
    for (int x = 0; x < count; x += DN_GEMM_NR) {
        const int left = count - x;
        const __mmask16 mask = left >= DN_GEMM_NR ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
        const __m512 high = odd ? _mm512_maskz_loadu_ps(mask, odd + x) : _mm512_setzero_ps();
        _mm512_mask_storeu_epi32(out + x, mask, bf16_pairs(_mm512_maskz_loadu_ps(mask, even + x), high));
    }
}

/* src[0], src[2], .. src[2 (count - 1)] (count <= 16) in the first lanes, 0 after; reads nothing
 * past src[2 (count - 1)]. */
DN_BF16_TARGET static inline __m512 even_lanes(const float *src, int count)
{
    const int reach = 2 * count - 1;
    const __mmask16 first = reach >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << reach) - 1u);
    const __mmask16 second = reach >= 32 ? (__mmask16)0xFFFF
                             : reach > 16 ? (__mmask16)((1u << (reach - 16)) - 1u) : (__mmask16)0;
    const __m512 lo = _mm512_maskz_loadu_ps(first, src), hi = _mm512_maskz_loadu_ps(second, src + 16);
    const __m512i every_other = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(lo, every_other, hi);
}

/* Values 0, 2, 4, .. of `count` pairs from rows even and odd (odd NULL: 0) as bf16 pairs. */
DN_BF16_TARGET static void pair_row_every_other(const float *even, const float *odd, int count, uint32_t *out)
{
    for (int x = 0; x < count; x += DN_GEMM_NR) {
        const int now = count - x < DN_GEMM_NR ? count - x : DN_GEMM_NR;
        const __mmask16 mask = now == DN_GEMM_NR ? (__mmask16)0xFFFF : (__mmask16)((1u << now) - 1u);
        const __m512 high = odd ? even_lanes(odd + 2 * x, now) : _mm512_setzero_ps();
        _mm512_mask_storeu_epi32(out + x, mask, bf16_pairs(even_lanes(even + 2 * x, now), high));
    }
}

DN_BF16_TARGET static void gemm_bf16_taps(int m, int n, int taps, const long *offsets, int pairs, const uint16_t *a,
                                          const uint32_t *b, size_t b_step, float *c, int ldc)
{
    const size_t panel_values = (size_t)DN_BF16_MR * 2 * taps * pairs;
    for (int q0 = 0; q0 < pairs; q0 += DN_TAPS_CHUNK_PAIRS) {
        const int qc = pairs - q0 < DN_TAPS_CHUNK_PAIRS ? pairs - q0 : DN_TAPS_CHUNK_PAIRS;
        for (int jr = 0; jr < n; jr += DN_GEMM_NC) {
            const int cols = n - jr < DN_GEMM_NC ? n - jr : DN_GEMM_NC;
            for (int ir = 0; ir < m; ir += DN_BF16_MR) {
                const uint16_t *ap = a + (size_t)(ir / DN_BF16_MR) * panel_values + (size_t)q0 * taps * 2 * DN_BF16_MR;
                const int rows = m - ir < DN_BF16_MR ? m - ir : DN_BF16_MR;
                kernel_bf16(taps, offsets, qc, ap, b + (size_t)q0 * b_step + jr, b_step, c + (size_t)ir * ldc + jr,
                            ldc, q0 > 0, rows, cols);
            }
        }
    }
}

/* The tile palette every AMX kernel call uses: tiles 0-3 hold C's 32 x 32 block (rows 0-15 and
 * 16-31 by columns 0-15 and 16-31: tile 2 * (row half) + column half), 4-5 A's two row tiles, 6-7
 * B's two column tiles (16 depth pairs x 16 columns). Every tile is 16 rows of 64 bytes. */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t bytes_per_row[16];
    uint8_t rows[16];
} dn_tile_config;

DN_AMX_TARGET static void configure_tiles(void)
{
    _Alignas(64) dn_tile_config config;
    memset(&config, 0, sizeof config);
    config.palette = 1;
    for (int t = 0; t < 8; ++t) {
        config.bytes_per_row[t] = 64;
        config.rows[t] = DN_AMX_TILE_ROWS;
    }
    _tile_loadconfig(&config);
}

/* The compiler does not see the tile instructions touch memory: a fence for its reordering. */
#define DN_MEMORY_FENCE() __asm__ __volatile__("" ::: "memory")

/* C's rows x cols block at c (rows, cols <= 32) = (load_c ? c : 0) + A B over `steps` * 32 depths:
 * A's two row tiles of each depth step at a and a + a_row_tile_step, B's at block + step * 16
 * pairs. A whole 32 x 32 block is read and written in place, a partial one through `scratch`. */
DN_AMX_TARGET static void kernel_amx(int steps, const uint16_t *a, size_t a_row_tile_step, const uint16_t *block,
                                     float *c, int ldc, int load_c, int rows, int cols)
{
    _Alignas(64) float scratch[DN_AMX_BLOCK_ROWS * DN_GEMM_NC];
    const int whole = rows == DN_AMX_BLOCK_ROWS && cols == DN_GEMM_NC;
    float *base = whole ? c : scratch;
    const int ld = whole ? ldc : DN_GEMM_NC;
    const long stride = (long)ld * (long)sizeof(float);
    if (!whole && load_c) {
        memset(scratch, 0, sizeof scratch);
        for (int r = 0; r < rows; ++r) memcpy(scratch + r * DN_GEMM_NC, c + (size_t)r * ldc, sizeof(float) * cols);
    }
    float *const lower = base + (size_t)DN_AMX_TILE_ROWS * ld;
    DN_MEMORY_FENCE();
    if (load_c) {
        _tile_loadd(0, base, stride);
        _tile_loadd(1, base + DN_GEMM_NR, stride);
        _tile_loadd(2, lower, stride);
        _tile_loadd(3, lower + DN_GEMM_NR, stride);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    }
    const long b_stride = DN_BF16_PAIR_VALUES * (long)sizeof(uint16_t);
    for (int s = 0; s < steps; ++s) {
        const uint16_t *b = block + (size_t)s * DN_AMX_TILE_ROWS * DN_BF16_PAIR_VALUES;
        _tile_loadd(4, a, 64);
        _tile_loadd(5, a + a_row_tile_step, 64);
        _tile_loadd(6, b, b_stride);
        _tile_loadd(7, b + 2 * DN_GEMM_NR, b_stride);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
        a += DN_AMX_TILE_VALUES;
    }
    _tile_stored(0, base, stride);
    _tile_stored(1, base + DN_GEMM_NR, stride);
    _tile_stored(2, lower, stride);
    _tile_stored(3, lower + DN_GEMM_NR, stride);
    DN_MEMORY_FENCE();
    if (!whole)
        for (int r = 0; r < rows; ++r) memcpy(c + (size_t)r * ldc, scratch + r * DN_GEMM_NC, sizeof(float) * cols);
}

DN_AMX_TARGET static void gemm_amx_blocks(int m, int n, int k, const uint16_t *a, const float *b, size_t column_step,
                                          int ldb, float *c, int ldc, int accumulate)
{
    _Alignas(64) uint16_t block[(DN_AMX_KC / 2) * DN_BF16_PAIR_VALUES];
    const int chunks = round_up(k, DN_AMX_TILE_DEPTHS) / DN_AMX_TILE_DEPTHS;
    const size_t row_tile_values = (size_t)chunks * DN_AMX_TILE_VALUES;
    configure_tiles();
    for (int pc = 0; pc < k; pc += DN_AMX_KC) {
        const int kc = k - pc < DN_AMX_KC ? k - pc : DN_AMX_KC, pairs = (kc + 1) / 2;
        const int steps = (pairs + DN_AMX_TILE_ROWS - 1) / DN_AMX_TILE_ROWS;
        for (int jr = 0; jr < n; jr += DN_GEMM_NC) {
            const int cols = n - jr < DN_GEMM_NC ? n - jr : DN_GEMM_NC;
            round_b_block(b, column_step, ldb, k, pc, kc, jr, cols, block);
            /* the last step's pairs past the depth: A is 0 there, and so must B be (0 * NaN) */
            memset(block + (size_t)pairs * DN_BF16_PAIR_VALUES, 0,
                   sizeof(uint16_t) * (size_t)(steps * DN_AMX_TILE_ROWS - pairs) * DN_BF16_PAIR_VALUES);
            for (int ir = 0; ir < m; ir += DN_AMX_BLOCK_ROWS) {
                const uint16_t *ap = a + (size_t)(ir / DN_AMX_TILE_ROWS) * row_tile_values +
                                     (size_t)(pc / DN_AMX_TILE_DEPTHS) * DN_AMX_TILE_VALUES;
                const int rows = m - ir < DN_AMX_BLOCK_ROWS ? m - ir : DN_AMX_BLOCK_ROWS;
                kernel_amx(steps, ap, row_tile_values, block, c + (size_t)ir * ldc + jr, ldc, accumulate || pc > 0,
                           rows, cols);
            }
        }
    }
    _tile_release();
}
#endif

int dn_gemm_bf16(dn_bf16_kernel kernel, int m, int n, int k, const uint16_t *a, const float *b, size_t column_step,
                 int ldb, float *c, int ldc, int accumulate)
{
#ifdef DN_GEMM_X86
    if (kernel == DN_BF16_AMX) {
        gemm_amx_blocks(m, n, k, a, b, column_step, ldb, c, ldc, accumulate);
        return 1;
    }
    if (kernel == DN_BF16_AVX512 && dn_cpu_has_bf16()) {
        gemm_bf16_blocks(m, n, k, a, b, column_step, ldb, c, ldc, accumulate);
        return 1;
    }
#endif
    (void)kernel, (void)m, (void)n, (void)k, (void)a, (void)b, (void)column_step, (void)ldb, (void)c, (void)ldc,
        (void)accumulate;
    return 0;
}

int dn_bf16_pair_planes(const float *im, int channels, int height, int width, int pad, size_t plane_step, int pair,
                        uint32_t *out)
{
#ifdef DN_GEMM_X86
    if (!dn_cpu_has_bf16()) return 0;
    const int wide = width + 2 * pad;
    const float *even = im + (size_t)2 * pair * height * width;
    const float *odd = 2 * pair + 1 < channels ? even + (size_t)height * width : NULL;
    uint32_t *plane = out + (size_t)pair * plane_step;
    memset(plane, 0, sizeof(uint32_t) * ((size_t)pad * wide + pad));
    for (int y = 0; y < height; ++y) {
        uint32_t *row = plane + (size_t)(y + pad) * wide + pad;
        pair_row(even + (size_t)y * width, odd ? odd + (size_t)y * width : NULL, width, row);
        /* this row's right border and the next row's left one */
        memset(row + width, 0, sizeof(uint32_t) * 2 * (size_t)pad);
    }
    const size_t written = (size_t)(height + pad) * wide + pad;
    memset(plane + written, 0, sizeof(uint32_t) * (plane_step - written));
    return 1;
#else
    (void)im, (void)channels, (void)height, (void)width, (void)pad, (void)plane_step, (void)pair, (void)out;
    return 0;
#endif
}

int dn_bf16_pair_phases(const float *im, int channels, int height, int width, int rows, int wide, size_t phase_step,
                        int pair, uint32_t *out)
{
#ifdef DN_GEMM_X86
    if (!dn_cpu_has_bf16()) return 0;
    const float *even = im + (size_t)2 * pair * height * width;
    const float *odd = 2 * pair + 1 < channels ? even + (size_t)height * width : NULL;
    for (int phase = 0; phase < 4; ++phase) {
        const int py = phase / 2, px = phase % 2;
        uint32_t *plane = out + ((size_t)pair * 4 + phase) * phase_step;
        /* plane column b is padded column 2b + px, image column 2b + px - 1: inside for b in [lo, hi) */
        const int lo = px ? 0 : 1;
        int hi = (width - px) / 2 + 1;
        if (hi > wide) hi = wide;
        for (int a = 0; a < rows; ++a) {
            uint32_t *row = plane + (size_t)a * wide;
            const int iy = 2 * a + py - 1;
            if (iy < 0 || iy >= height || hi <= lo) {
                memset(row, 0, sizeof(uint32_t) * (size_t)wide);
                continue;
            }
            const size_t at = (size_t)iy * width + 2 * lo + px - 1;
            row[0] = 0;
            pair_row_every_other(even + at, odd ? odd + at : NULL, hi - lo, row + lo);
            memset(row + hi, 0, sizeof(uint32_t) * (size_t)(wide - hi));
        }
        memset(plane + (size_t)rows * wide, 0, sizeof(uint32_t) * (phase_step - (size_t)rows * wide));
    }
    return 1;
#else
    (void)im, (void)channels, (void)height, (void)width, (void)rows, (void)wide, (void)phase_step, (void)pair,
        (void)out;
    return 0;
#endif
}

int dn_gemm_bf16_taps(int m, int n, int taps, const long *offsets, int pairs, const uint16_t *a, const uint32_t *b,
                      size_t b_step, float *c, int ldc)
{
#ifdef DN_GEMM_X86
    if (!dn_cpu_has_bf16()) return 0;
    gemm_bf16_taps(m, n, taps, offsets, pairs, a, b, b_step, c, ldc);
    return 1;
#else
    (void)m, (void)n, (void)taps, (void)offsets, (void)pairs, (void)a, (void)b, (void)b_step, (void)c, (void)ldc;
    return 0;
#endif
}

/* Unfold image patches into columns so a convolution becomes one GEMM. */
#include "internal.h"

#include <string.h>

/* The output columns [*lo, *hi) whose input column ox * stride - pad + kx lies inside [0, width)
 * (hi not clamped to the output width). */
static inline void inside_columns(int width, int stride, int pad, int kx, int *lo, int *hi)
{
    *lo = pad - kx > 0 ? (pad - kx + stride - 1) / stride : 0;
    *hi = width - 1 + pad - kx >= 0 ? (width - 1 + pad - kx) / stride + 1 : 0;
}

/* dn_im2col for 3x3 stride-1 pad-1 layers: a tap row's three columns at once, from the same input
 * row. On small maps the general loop's memcpy per tap and output row cost more than the copying. */
__attribute__((always_inline)) static inline void im2col_3x3_stride1(const float *im, int channels, int height,
                                                                    int width, float *col, size_t ld)
{
    for (int ch = 0; ch < channels; ++ch) {
        const float *src = im + (size_t)ch * height * width;
        for (int ky = 0; ky < 3; ++ky) {
            float *restrict left = col + (size_t)(ch * 3 + ky) * 3 * ld, *restrict mid = left + ld;
            float *restrict right = mid + ld;
            for (int oy = 0; oy < height; ++oy) {
                const int iy = oy - 1 + ky;
                float *restrict l = left + (size_t)oy * width, *restrict m = mid + (size_t)oy * width;
                float *restrict r = right + (size_t)oy * width;
                if (iy < 0 || iy >= height) {
                    for (int x = 0; x < width; ++x) l[x] = m[x] = r[x] = 0.0f;
                    continue;
                }
                const float *restrict in = src + (size_t)iy * width;
                l[0] = 0.0f;
                for (int x = 1; x < width; ++x) l[x] = in[x - 1];
                for (int x = 0; x < width; ++x) m[x] = in[x];
                for (int x = 0; x < width - 1; ++x) r[x] = in[x + 1];
                r[width - 1] = 0.0f;
            }
        }
    }
}

/*
 * col has (channels * ksize * ksize) rows, ld floats apart, of (out_h * out_w) values; row
 * (ch, ky, kx) holds the input pixel under kernel tap (ky, kx) for every output position, 0
 * where the tap falls into the padding. (ld > out_h * out_w puts several images side by side.)
 */
DN_HOT void dn_im2col(const float *im, int channels, int height, int width, int ksize, int stride, int pad,
                      float *col, size_t ld)
{
    const int out_h = (height + 2 * pad - ksize) / stride + 1;
    const int out_w = (width + 2 * pad - ksize) / stride + 1;
    if (ksize == 3 && stride == 1 && pad == 1) {
        im2col_3x3_stride1(im, channels, height, width, col, ld);
        return;
    }
    for (int ch = 0; ch < channels; ++ch) {
        const float *src = im + (size_t)ch * height * width;
        for (int ky = 0; ky < ksize; ++ky) {
            for (int kx = 0; kx < ksize; ++kx) {
                float *dst = col + ((size_t)(ch * ksize + ky) * ksize + kx) * ld;
                for (int oy = 0; oy < out_h; ++oy) {
                    const int iy = oy * stride - pad + ky;
                    float *out_row = dst + (size_t)oy * out_w;
                    if (iy < 0 || iy >= height) {
                        memset(out_row, 0, sizeof(float) * (size_t)out_w);
                        continue;
                    }
                    const float *in_row = src + (size_t)iy * width;
                    if (stride == 1) {
                        /* contiguous run in the middle, zeros at the borders */
                        int ox_begin = pad - kx > 0 ? pad - kx : 0;
                        int ox_end = width + pad - kx < out_w ? width + pad - kx : out_w;
                        if (ox_end < ox_begin) ox_end = ox_begin;
                        for (int ox = 0; ox < ox_begin; ++ox) out_row[ox] = 0;
                        if (ox_end > ox_begin)
                            memcpy(out_row + ox_begin, in_row + ox_begin - pad + kx,
                                   sizeof(float) * (size_t)(ox_end - ox_begin));
                        for (int ox = ox_end; ox < out_w; ++ox) out_row[ox] = 0;
                    } else { /* the taps inside the row: ox in [lo, hi), zeros around */
                        int lo, hi;
                        inside_columns(width, stride, pad, kx, &lo, &hi);
                        if (hi > out_w) hi = out_w;
                        const float *restrict from = in_row - pad + kx;
                        float *restrict out = out_row;
                        int ox = 0;
                        for (; ox < lo && ox < out_w; ++ox) out[ox] = 0;
                        if (stride == 2) /* a plain strided loop: vectorises (even or odd lanes) */
                            for (; ox < hi; ++ox) out[ox] = from[2 * ox];
                        else
                            for (; ox < hi; ++ox) out[ox] = from[ox * stride];
                        for (; ox < out_w; ++ox) out[ox] = 0;
                    }
                }
            }
        }
    }
}

/*
 * dn_col2im_add for darknet's downsampling layers (3x3, stride 2, pad 1), a tap row's three
 * columns kx at once: input column 2m gets kx = 1 of output m, column 2m + 1 gets kx = 0 of
 * output m + 1 and kx = 2 of output m. Each value sums its taps in the general loop's order
 * (ky, then kx), so the bits are the same; the scattered single-float updates become a loop over
 * pairs that vectorises.
 */
__attribute__((always_inline)) static inline void col2im_add_3x3_stride2(const float *col, size_t ld, int channels,
                                                                        int height, int width, int out_h, int out_w,
                                                                        float *im)
{
    const int pairs = width / 2, whole = width % 2 ? pairs : pairs - 1; /* pairs with both taps of 2m + 1 */
    for (int ch = 0; ch < channels; ++ch) {
        float *dst = im + (size_t)ch * height * width;
        for (int ky = 0; ky < 3; ++ky) {
            const float *taps = col + (size_t)(ch * 3 + ky) * 3 * ld;
            for (int oy = 0; oy < out_h; ++oy) {
                const int iy = 2 * oy - 1 + ky;
                if (iy < 0 || iy >= height) continue;
                float *restrict row = dst + (size_t)iy * width;
                const float *restrict left = taps + (size_t)oy * out_w, *restrict mid = left + ld;
                const float *restrict right = mid + ld;
                for (int m = 0; m < whole; ++m) {
                    row[2 * m] += mid[m];
                    row[2 * m + 1] = row[2 * m + 1] + left[m + 1] + right[m];
                }
                if (width % 2) {
                    row[2 * pairs] += mid[pairs];
                } else if (pairs > 0) {
                    row[2 * whole] += mid[whole];
                    row[2 * whole + 1] += right[whole];
                }
            }
        }
    }
}

/*
 * dn_col2im_add for 3x3 stride-1 pad-1 layers (same size in and out), a tap row's three columns
 * at once: input column x gets kx = 0 of output x + 1, kx = 1 of output x and kx = 2 of output
 * x - 1. The general loop's order (ky, then kx) is kept, so the bits are the same; on small maps
 * (5x5, 10x10 at 160x160 inputs) its runs of a few values per tap cost more in loop control than
 * in additions.
 */
__attribute__((always_inline)) static inline void col2im_add_3x3_stride1(const float *col, size_t ld, int channels,
                                                                        int height, int width, float *im)
{
    for (int ch = 0; ch < channels; ++ch) {
        float *dst = im + (size_t)ch * height * width;
        for (int ky = 0; ky < 3; ++ky) {
            const float *taps = col + (size_t)(ch * 3 + ky) * 3 * ld;
            for (int oy = 0; oy < height; ++oy) {
                const int iy = oy - 1 + ky;
                if (iy < 0 || iy >= height) continue;
                float *restrict row = dst + (size_t)iy * width;
                const float *restrict left = taps + (size_t)oy * width, *restrict mid = left + ld;
                const float *restrict right = mid + ld;
                if (width == 1) { /* kx = 0 and 2 fall into the padding */
                    row[0] += mid[0];
                    continue;
                }
                row[0] = row[0] + left[1] + mid[0];
                for (int x = 1; x < width - 1; ++x) row[x] = row[x] + left[x + 1] + mid[x] + right[x - 1];
                row[width - 1] = row[width - 1] + mid[width - 1] + right[width - 2];
            }
        }
    }
}

DN_HOT void dn_col2im_add(const float *col, size_t ld, int channels, int height, int width, int ksize, int stride,
                          int pad, float *im)
{
    const int out_h = (height + 2 * pad - ksize) / stride + 1;
    const int out_w = (width + 2 * pad - ksize) / stride + 1;
    if (ksize == 3 && stride == 2 && pad == 1) {
        col2im_add_3x3_stride2(col, ld, channels, height, width, out_h, out_w, im);
        return;
    }
    if (ksize == 3 && stride == 1 && pad == 1) {
        col2im_add_3x3_stride1(col, ld, channels, height, width, im);
        return;
    }
    for (int ch = 0; ch < channels; ++ch) {
        float *dst = im + (size_t)ch * height * width;
        for (int ky = 0; ky < ksize; ++ky) {
            for (int kx = 0; kx < ksize; ++kx) {
                const float *src = col + ((size_t)(ch * ksize + ky) * ksize + kx) * ld;
                for (int oy = 0; oy < out_h; ++oy) {
                    const int iy = oy * stride - pad + ky;
                    if (iy < 0 || iy >= height) continue;
                    float *row = dst + (size_t)iy * width;
                    const float *src_row = src + (size_t)oy * out_w;
                    if (stride == 1) { /* the taps inside the row: one contiguous run */
                        const int lo = pad - kx > 0 ? pad - kx : 0;
                        const int hi = width + pad - kx < out_w ? width + pad - kx : out_w;
                        float *restrict into = row - pad + kx;
                        for (int ox = lo; ox < hi; ++ox) into[ox] += src_row[ox];
                        continue;
                    }
                    for (int ox = 0; ox < out_w; ++ox) {
                        const int ix = ox * stride - pad + kx;
                        if (ix >= 0 && ix < width) row[ix] += src_row[ox];
                    }
                }
            }
        }
    }
}

/* NR inputs `stride` (1 or 2) apart into one panel row. Stride 2 takes the even values of 8-float
 * loads (at[0..15], then at[15..30]: none past the last value used) in GCC's generic vectors:
 * left to itself the compiler copies them one by one. */
typedef float dn_eight_floats __attribute__((vector_size(8 * sizeof(float))));
_Static_assert(DN_GEMM_NR == 16, "copy_panel_row spells out two halves of 8");
__attribute__((always_inline)) static inline void copy_panel_row(const float *restrict at, int stride,
                                                                 float *restrict dst)
{
    if (stride == 1) {
        memcpy(dst, at, sizeof(float) * DN_GEMM_NR);
        return;
    }
    dn_eight_floats a, b, even;
    memcpy(&a, at, sizeof a);
    memcpy(&b, at + 8, sizeof b);
    even = __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14); /* at[0, 2, .., 14] */
    memcpy(dst, &even, sizeof even);
    memcpy(&a, at + 15, sizeof a);
    memcpy(&b, at + 23, sizeof b);
    even = __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15); /* at[16, 18, .., 30] */
    memcpy(dst + 8, &even, sizeof even);
}

/* Columns [first, first + count) of one image's im2col matrix into panel columns [at, at + count). */
__attribute__((always_inline)) static inline void panels_at(const float *im, int channels, int height, int width,
                                                            int ksize, int stride, int pad, int first, int count,
                                                            float *panels, size_t rows, int at)
{
    const int out_w = (width + 2 * pad - ksize) / stride + 1;
    const int end = first + count;
    for (int ch = 0; ch < channels; ++ch) {
        const float *src = im + (size_t)ch * height * width;
        for (int ky = 0; ky < ksize; ++ky) {
            for (int kx = 0; kx < ksize; ++kx) {
                const size_t r = ((size_t)ch * ksize + ky) * ksize + kx;
                int lo, hi;
                inside_columns(width, stride, pad, kx, &lo, &hi);
                /* one output row (a run of positions with the same oy) at a time, in pieces that
                 * stay within one panel */
                for (int p = first; p < end;) {
                    const int oy = p / out_w, ox0 = p % out_w;
                    const int ox1 = (end - p < out_w - ox0) ? ox0 + (end - p) : out_w;
                    const int iy = oy * stride - pad + ky;
                    const float *in_row = iy >= 0 && iy < height ? src + (size_t)iy * width : NULL;
                    for (int ox = ox0; ox < ox1;) {
                        const int q = at + p - first + (ox - ox0), lane = q % DN_GEMM_NR;
                        const int piece = DN_GEMM_NR - lane < ox1 - ox ? DN_GEMM_NR - lane : ox1 - ox;
                        float *restrict dst = panels + (size_t)(q / DN_GEMM_NR) * DN_GEMM_NR * rows + r * DN_GEMM_NR + lane;
                        if (!in_row) {
                            for (int j = 0; j < piece; ++j) dst[j] = 0.0f;
                        } else if (ox >= lo && ox + piece <= hi) { /* all inside */
                            const float *restrict at = in_row + ox * stride - pad + kx;
                            if (piece == DN_GEMM_NR && stride <= 2) /* whole panel rows: constant trips vectorise */
                                copy_panel_row(at, stride, dst);
                            else if (stride == 1)
                                for (int j = 0; j < piece; ++j) dst[j] = at[j];
                            else
                                for (int j = 0; j < piece; ++j) dst[j] = at[j * stride];
                        } else {
                            for (int j = 0; j < piece; ++j) {
                                const int ix = (ox + j) * stride - pad + kx;
                                dst[j] = ix >= 0 && ix < width ? in_row[ix] : 0.0f;
                            }
                        }
                        ox += piece;
                    }
                    p += ox1 - ox0;
                }
            }
        }
    }
}

/* Zeros in the last panel's columns past count. */
static void zero_panel_tail(float *panels, size_t rows, int count)
{
    const int tail = count % DN_GEMM_NR;
    if (!tail) return;
    float *last = panels + (size_t)(count / DN_GEMM_NR) * DN_GEMM_NR * rows;
    for (size_t r = 0; r < rows; ++r) memset(last + r * DN_GEMM_NR + tail, 0, sizeof(float) * (DN_GEMM_NR - tail));
}

DN_HOT void dn_im2col_panels(const float *im, int channels, int height, int width, int ksize, int stride, int pad,
                             int first, int count, float *panels)
{
    const size_t rows = (size_t)channels * ksize * ksize;
    panels_at(im, channels, height, width, ksize, stride, pad, first, count, panels, rows, 0);
    zero_panel_tail(panels, rows, count);
}

/*
 * dn_im2col_panels_batch for maps narrower than a panel (5x5, 10x10): a panel at a time, each of
 * its NR columns (an output position of some image) read at every tap, 0 where the tap falls into
 * the padding. Row by row, as panels_at goes, a panel row would take several runs of a few values:
 * a 512-channel 3x3 layer's 64 columns on 5x5 maps took 1.3 ms that way, 0.56 ms this way.
 */
__attribute__((always_inline)) static inline void panels_of_small_maps(const float *im, size_t image_floats,
                                                                      int channels, int height, int width,
                                                                      int ksize, int stride, int pad, long first,
                                                                      int count, float *panels)
{
    const int out_h = (height + 2 * pad - ksize) / stride + 1;
    const int out_w = (width + 2 * pad - ksize) / stride + 1;
    const long spatial = (long)out_h * out_w;
    const size_t rows = (size_t)channels * ksize * ksize, plane = (size_t)height * width;
    for (int p0 = 0; p0 < count; p0 += DN_GEMM_NR) {
        /* each column's image and the input position of its tap (0, 0) */
        size_t base[DN_GEMM_NR];
        int top[DN_GEMM_NR], left[DN_GEMM_NR];
        for (int j = 0; j < DN_GEMM_NR; ++j) {
            const long p = first + p0 + (p0 + j < count ? j : 0); /* past count: a copy of the first, zeroed below */
            const long position = p % spatial;
            top[j] = (int)(position / out_w) * stride - pad;
            left[j] = (int)(position % out_w) * stride - pad;
            base[j] = (size_t)(p / spatial) * image_floats;
        }
        const int used = count - p0 < DN_GEMM_NR ? count - p0 : DN_GEMM_NR;
        float *restrict dst = panels + (size_t)p0 * rows;
        for (int ch = 0; ch < channels; ++ch) {
            const float *src = im + (size_t)ch * plane;
            for (int ky = 0; ky < ksize; ++ky)
                for (int kx = 0; kx < ksize; ++kx) {
                    for (int j = 0; j < DN_GEMM_NR; ++j) {
                        const int y = top[j] + ky, x = left[j] + kx;
                        const int inside = j < used && (unsigned)y < (unsigned)height && (unsigned)x < (unsigned)width;
                        dst[j] = inside ? src[base[j] + (size_t)y * width + x] : 0.0f;
                    }
                    dst += DN_GEMM_NR;
                }
        }
    }
}

DN_HOT void dn_im2col_panels_batch(const float *im, size_t image_floats, int channels, int height, int width,
                                   int ksize, int stride, int pad, long first, int count, float *panels)
{
    const int out_h = (height + 2 * pad - ksize) / stride + 1;
    const int out_w = (width + 2 * pad - ksize) / stride + 1;
    const long spatial = (long)out_h * out_w;
    const size_t rows = (size_t)channels * ksize * ksize;
    if (out_w < DN_GEMM_NR && ksize > 1) { /* a 1x1 layer's rows are whole runs of its input rows */
        panels_of_small_maps(im, image_floats, channels, height, width, ksize, stride, pad, first, count, panels);
        return;
    }
    for (long p = first; p < first + count;) {
        const long image = p / spatial, position = p % spatial;
        const int piece = (int)(spatial - position < first + count - p ? spatial - position : first + count - p);
        panels_at(im + (size_t)image * image_floats, channels, height, width, ksize, stride, pad, (int)position, piece,
                  panels, rows, (int)(p - first));
        p += piece;
    }
    zero_panel_tail(panels, rows, count);
}

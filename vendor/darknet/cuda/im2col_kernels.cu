/* GPU twin of im2col.c: one thread per column entry; col2im gathers, so no atomics. */
#include "common.cuh"
#include "kernels.h"

__global__ static void im2col_kernel(const float *im, int channels, int height, int width, int ksize, int stride,
                                     int pad, int out_h, int out_w, float *col)
{
    const size_t plane = (size_t)out_h * out_w;
    const size_t total = (size_t)channels * ksize * ksize * plane;
    DN_GRID_LOOP(i, total) {
        const int ox = (int)(i % out_w);
        const int oy = (int)((i / out_w) % out_h);
        const size_t row = i / plane; /* (ch * ksize + ky) * ksize + kx */
        const int kx = (int)(row % ksize);
        const int ky = (int)((row / ksize) % ksize);
        const int ch = (int)(row / ((size_t)ksize * ksize));
        const int iy = oy * stride - pad + ky;
        const int ix = ox * stride - pad + kx;
        col[i] = (iy >= 0 && iy < height && ix >= 0 && ix < width) ? im[((size_t)ch * height + iy) * width + ix] : 0.0f;
    }
}

/* Each image pixel sums the column entries that read it: taps (ky, kx) with
 * iy = oy * stride - pad + ky for an integer oy in range (same for x). */
__global__ static void col2im_kernel(const float *col, int channels, int height, int width, int ksize, int stride,
                                     int pad, int out_h, int out_w, float *im)
{
    const size_t plane = (size_t)out_h * out_w;
    const size_t total = (size_t)channels * height * width;
    DN_GRID_LOOP(i, total) {
        const int ix = (int)(i % width);
        const int iy = (int)((i / width) % height);
        const int ch = (int)(i / ((size_t)width * height));
        float sum = 0.0f;
        for (int ky = 0; ky < ksize; ++ky) {
            const int ty = iy + pad - ky;
            if (ty < 0 || ty % stride) continue;
            const int oy = ty / stride;
            if (oy >= out_h) continue;
            for (int kx = 0; kx < ksize; ++kx) {
                const int tx = ix + pad - kx;
                if (tx < 0 || tx % stride) continue;
                const int ox = tx / stride;
                if (ox >= out_w) continue;
                sum += col[((size_t)(ch * ksize + ky) * ksize + kx) * plane + (size_t)oy * out_w + ox];
            }
        }
        im[i] += sum;
    }
}

extern "C" void dn_im2col_gpu(const float *im, int channels, int height, int width, int ksize, int stride, int pad,
                              float *col, cudaStream_t stream)
{
    const int out_h = (height + 2 * pad - ksize) / stride + 1;
    const int out_w = (width + 2 * pad - ksize) / stride + 1;
    const size_t total = (size_t)channels * ksize * ksize * out_h * out_w;
    im2col_kernel<<<dn_blocks(total), DN_THREADS, 0, stream>>>(im, channels, height, width, ksize, stride, pad, out_h,
                                                               out_w, col);
}

extern "C" void dn_col2im_add_gpu(const float *col, int channels, int height, int width, int ksize, int stride,
                                  int pad, float *im, cudaStream_t stream)
{
    const int out_h = (height + 2 * pad - ksize) / stride + 1;
    const int out_w = (width + 2 * pad - ksize) / stride + 1;
    const size_t total = (size_t)channels * height * width;
    col2im_kernel<<<dn_blocks(total), DN_THREADS, 0, stream>>>(col, channels, height, width, ksize, stride, pad, out_h,
                                                               out_w, im);
}

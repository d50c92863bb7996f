/* GPU twin of maxpool_layer.c: window at -pad/2, pixels outside the input ignored. */
#include <float.h>

#include "common.cuh"
#include "kernels.h"

__global__ static void maxpool_forward_kernel(const float *input, float *output, int *indexes, int n, int c, int h,
                                              int w, int out_h, int out_w, int size, int stride, int pad)
{
    const size_t total = (size_t)n * c * out_h * out_w;
    const int offset = -pad / 2;
    DN_GRID_LOOP(i, total) {
        const int ox = (int)(i % out_w);
        const int oy = (int)((i / out_w) % out_h);
        const size_t plane_index = i / ((size_t)out_w * out_h); /* b * c + ch */
        const int ch = (int)(plane_index % c);
        const float *in = input + plane_index * h * w;
        float best = -FLT_MAX;
        int best_index = -1;
        for (int ky = 0; ky < size; ++ky) {
            const int iy = offset + oy * stride + ky;
            if (iy < 0 || iy >= h) continue;
            for (int kx = 0; kx < size; ++kx) {
                const int ix = offset + ox * stride + kx;
                if (ix < 0 || ix >= w) continue;
                const float v = in[iy * w + ix];
                if (v > best) {
                    best = v;
                    best_index = iy * w + ix;
                }
            }
        }
        output[i] = best;
        /* as on the CPU: an index within the image (channel plane included), -1 for none */
        if (indexes) indexes[i] = best_index < 0 ? -1 : ch * h * w + best_index;
    }
}

/* Windows overlap (stride < size), so several outputs may add into one input: atomics. */
__global__ static void maxpool_backward_kernel(const float *delta, const int *indexes, float *input_delta,
                                               size_t inputs, size_t outputs, size_t total)
{
    DN_GRID_LOOP(i, total) {
        const int index = indexes[i];
        if (index < 0) continue;
        const size_t b = i / outputs;
        atomicAdd(input_delta + b * inputs + index, delta[i]);
    }
}

extern "C" void dn_maxpool_forward_gpu(const float *input, float *output, int *indexes, int n, int c, int h, int w,
                                       int out_h, int out_w, int size, int stride, int pad, cudaStream_t stream)
{
    const size_t total = (size_t)n * c * out_h * out_w;
    maxpool_forward_kernel<<<dn_blocks(total), DN_THREADS, 0, stream>>>(input, output, indexes, n, c, h, w, out_h,
                                                                        out_w, size, stride, pad);
}

extern "C" void dn_maxpool_backward_gpu(const float *delta, const int *indexes, float *input_delta, int n,
                                        size_t inputs, size_t outputs, cudaStream_t stream)
{
    const size_t total = (size_t)n * outputs;
    maxpool_backward_kernel<<<dn_blocks(total), DN_THREADS, 0, stream>>>(delta, indexes, input_delta, inputs, outputs,
                                                                         total);
}

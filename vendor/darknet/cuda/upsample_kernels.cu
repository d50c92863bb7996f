/* GPU twin of upsample_layer.c: nearest neighbour; the backward gathers each s x s block. */
#include "common.cuh"
#include "kernels.h"

__global__ static void upsample_forward_kernel(const float *input, float *output, int h, int w, int s, float scale,
                                               size_t total)
{
    const int out_w = w * s, out_h = h * s;
    DN_GRID_LOOP(i, total) {
        const int x = (int)(i % out_w);
        const int y = (int)((i / out_w) % out_h);
        const size_t plane = i / ((size_t)out_w * out_h);
        output[i] = scale * input[(plane * h + y / s) * w + x / s];
    }
}

__global__ static void upsample_backward_kernel(const float *delta, float *input_delta, int h, int w, int s,
                                                float scale, size_t total)
{
    const int out_w = w * s;
    DN_GRID_LOOP(i, total) {
        const int x = (int)(i % w);
        const int y = (int)((i / w) % h);
        const size_t plane = i / ((size_t)w * h);
        const float *d = delta + plane * (size_t)out_w * h * s;
        float sum = 0.0f;
        for (int dy = 0; dy < s; ++dy)
            for (int dx = 0; dx < s; ++dx) sum += scale * d[(size_t)(y * s + dy) * out_w + x * s + dx];
        input_delta[i] += sum;
    }
}

extern "C" void dn_upsample_forward_gpu(const float *input, float *output, int n, int c, int h, int w, int stride,
                                        float scale, cudaStream_t stream)
{
    const size_t total = (size_t)n * c * h * w * stride * stride;
    upsample_forward_kernel<<<dn_blocks(total), DN_THREADS, 0, stream>>>(input, output, h, w, stride, scale, total);
}

extern "C" void dn_upsample_backward_gpu(const float *delta, float *input_delta, int n, int c, int h, int w,
                                         int stride, float scale, cudaStream_t stream)
{
    const size_t total = (size_t)n * c * h * w;
    upsample_backward_kernel<<<dn_blocks(total), DN_THREADS, 0, stream>>>(delta, input_delta, h, w, stride, scale,
                                                                          total);
}

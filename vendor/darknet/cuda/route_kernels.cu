/* GPU twin of route_layer.c's backward (the forward is cudaMemcpy2DAsync in src/gpu.c). */
#include "common.cuh"
#include "kernels.h"

__global__ static void add_strided_kernel(float *dst, size_t dst_stride, const float *src, size_t src_stride,
                                          size_t count, size_t total)
{
    DN_GRID_LOOP(i, total) {
        const size_t b = i / count, j = i % count;
        dst[b * dst_stride + j] += src[b * src_stride + j];
    }
}

extern "C" void dn_add_strided_gpu(float *dst, size_t dst_stride, const float *src, size_t src_stride, size_t count,
                                   int n, cudaStream_t stream)
{
    const size_t total = (size_t)n * count;
    if (total) add_strided_kernel<<<dn_blocks(total), DN_THREADS, 0, stream>>>(dst, dst_stride, src, src_stride, count,
                                                                              total);
}

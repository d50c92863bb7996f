/* GPU twin of shortcut_layer.c's sum (activation and backward reuse the generic kernels). */
#include "common.cuh"
#include "kernels.h"

__global__ static void add3_kernel(const float *a, const float *b, float *out, size_t n)
{
    DN_GRID_LOOP(i, n) out[i] = a[i] + b[i];
}

extern "C" void dn_add3_gpu(const float *a, const float *b, float *out, size_t n, cudaStream_t stream)
{
    if (n) add3_kernel<<<dn_blocks(n), DN_THREADS, 0, stream>>>(a, b, out, n);
}

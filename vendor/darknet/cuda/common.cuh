/* Shared by the .cu files: launch geometry and a block-wide sum. */
#ifndef DN_CUDA_COMMON_CUH
#define DN_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <stddef.h>

#define DN_THREADS 256

/* Enough blocks for n elements, capped so grid-stride loops cover the rest. */
static inline unsigned dn_blocks(size_t n)
{
    size_t blocks = (n + DN_THREADS - 1) / DN_THREADS;
    if (blocks > 65535u * 16u) blocks = 65535u * 16u;
    return blocks ? (unsigned)blocks : 1u;
}

#define DN_GRID_LOOP(i, n) \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)blockDim.x * gridDim.x)

/* Sum of one double per thread over a DN_THREADS block; every thread gets the result.
 * Doubles because the CPU engine accumulates batch statistics in double. */
__device__ static inline double dn_block_sum(double v, double *shared)
{
    shared[threadIdx.x] = v;
    __syncthreads();
    for (int s = DN_THREADS / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
        __syncthreads();
    }
    double total = shared[0];
    __syncthreads(); /* the buffer is reused by the next call */
    return total;
}

#endif

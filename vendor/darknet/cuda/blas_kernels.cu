/* Small vector kernels (axpy, scal) and darknet's SGD step for the GPU twin of the update. */
#include "common.cuh"
#include "kernels.h"

__global__ static void axpy_kernel(size_t n, float alpha, const float *x, float *y)
{
    DN_GRID_LOOP(i, n) y[i] += alpha * x[i];
}

__global__ static void scal_kernel(size_t n, float alpha, float *x)
{
    DN_GRID_LOOP(i, n) x[i] *= alpha;
}

/* The same three statements as dn_convolutional_update, in the same order, so the CPU and GPU
 * round alike. */
__global__ static void sgd_kernel(float *w, float *u, size_t n, float step, float momentum, float decay_term)
{
    DN_GRID_LOOP(i, n) {
        float update = u[i] + decay_term * w[i];
        w[i] += step * update;
        u[i] = update * momentum;
    }
}

extern "C" void dn_axpy_gpu(size_t n, float alpha, const float *x, float *y, cudaStream_t stream)
{
    if (n) axpy_kernel<<<dn_blocks(n), DN_THREADS, 0, stream>>>(n, alpha, x, y);
}

extern "C" void dn_scal_gpu(size_t n, float alpha, float *x, cudaStream_t stream)
{
    if (n) scal_kernel<<<dn_blocks(n), DN_THREADS, 0, stream>>>(n, alpha, x);
}

extern "C" void dn_sgd_gpu(float *w, float *u, size_t n, float step, float momentum, float decay_term,
                           cudaStream_t stream)
{
    if (n) sgd_kernel<<<dn_blocks(n), DN_THREADS, 0, stream>>>(w, u, n, step, momentum, decay_term);
}

/*
 * GPU twin of convolutional_layer.c's batch norm and bias (the GEMMs are cuBLAS calls in src/gpu.c). Statistics and the backward
 * sums take one block per filter, accumulating in double like the CPU, so both engines
 * agree to float rounding.
 */
#include "common.cuh"
#include "kernels.h"

#define BN_EPSILON 0.00001f

__global__ static void scale_bias_kernel(float *x, size_t total, int filters, int spatial, const float *scales,
                                         const float *biases, const float *mean, const float *variance)
{
    DN_GRID_LOOP(i, total) {
        const int f = (int)((i / spatial) % filters);
        float mul = 1.0f, add = biases[f];
        if (scales) {
            mul = scales[f] / sqrtf(variance[f] + BN_EPSILON);
            add = biases[f] - mean[f] * mul;
        }
        x[i] = x[i] * mul + add;
    }
}

/* One block per filter f: its values are n planes of `spatial` floats, plane b at
 * (b * filters + f) * spatial. */
#define FOR_FILTER(b, i, n, spatial)   \
    for (int b = 0; b < (n); ++b)      \
        for (int i = threadIdx.x; i < (spatial); i += DN_THREADS)

__global__ static void bn_forward_train_kernel(float *x, float *bn_x, float *bn_x_norm, float *mean, float *variance,
                                               float *rolling_mean, float *rolling_variance, const float *scales,
                                               const float *biases, int n, int filters, int spatial)
{
    __shared__ double shared[DN_THREADS];
    const int f = blockIdx.x;
    const double count = (double)n * spatial;
    double sum = 0;
    FOR_FILTER(b, i, n, spatial) {
        const size_t k = ((size_t)b * filters + f) * spatial + i;
        bn_x[k] = x[k];
        sum += x[k];
    }
    const float m = (float)(dn_block_sum(sum, shared) / count);
    double squares = 0;
    FOR_FILTER(b, i, n, spatial) {
        const float d = bn_x[((size_t)b * filters + f) * spatial + i] - m;
        squares += (double)d * d;
    }
    const float v = (float)(dn_block_sum(squares, shared) / count);
    if (threadIdx.x == 0) {
        mean[f] = m;
        variance[f] = v;
        rolling_mean[f] = 0.99f * rolling_mean[f] + 0.01f * m;
        rolling_variance[f] = 0.99f * rolling_variance[f] + 0.01f * v;
    }
    const float inv_std = 1.0f / sqrtf(v + BN_EPSILON);
    FOR_FILTER(b, i, n, spatial) {
        const size_t k = ((size_t)b * filters + f) * spatial + i;
        const float x_norm = (bn_x[k] - m) * inv_std;
        bn_x_norm[k] = x_norm;
        x[k] = x_norm * scales[f] + biases[f];
    }
}

__global__ static void bn_backward_kernel(float *delta, const float *bn_x, const float *bn_x_norm, const float *mean,
                                          const float *variance, const float *scales, float *scale_updates,
                                          float *bias_updates, int n, int filters, int spatial)
{
    __shared__ double shared[DN_THREADS];
    const int f = blockIdx.x;
    const float count = (float)((size_t)n * spatial);
    const float scale = scales[f], mu = mean[f];
    double bias_sum = 0, scale_sum = 0, mean_delta = 0, variance_delta = 0;
    FOR_FILTER(b, i, n, spatial) {
        const size_t k = ((size_t)b * filters + f) * spatial + i;
        const float d = delta[k];
        bias_sum += d;
        scale_sum += (double)d * bn_x_norm[k];
        const float ds = d * scale;
        mean_delta += ds;
        variance_delta += (double)ds * (bn_x[k] - mu);
    }
    bias_sum = dn_block_sum(bias_sum, shared);
    scale_sum = dn_block_sum(scale_sum, shared);
    mean_delta = dn_block_sum(mean_delta, shared);
    variance_delta = dn_block_sum(variance_delta, shared);
    if (threadIdx.x == 0) {
        bias_updates[f] += (float)bias_sum;
        scale_updates[f] += (float)scale_sum;
    }
    const float inv_std = 1.0f / sqrtf(variance[f] + BN_EPSILON);
    const float mean_term = (float)(-mean_delta * inv_std) / count;
    const float variance_term =
        (float)(variance_delta * -0.5 * pow((double)(variance[f] + BN_EPSILON), -1.5)) * 2.0f / count;
    FOR_FILTER(b, i, n, spatial) {
        const size_t k = ((size_t)b * filters + f) * spatial + i;
        const float ds = delta[k] * scale;
        delta[k] = ds * inv_std + variance_term * (bn_x[k] - mu) + mean_term;
    }
}

__global__ static void bias_backward_kernel(const float *delta, float *bias_updates, int n, int filters, int spatial)
{
    __shared__ double shared[DN_THREADS];
    const int f = blockIdx.x;
    double sum = 0;
    FOR_FILTER(b, i, n, spatial) sum += delta[((size_t)b * filters + f) * spatial + i];
    sum = dn_block_sum(sum, shared);
    if (threadIdx.x == 0) bias_updates[f] += (float)sum;
}

extern "C" void dn_scale_bias_gpu(float *x, int n, int filters, int spatial, const float *scales, const float *biases,
                                  const float *mean, const float *variance, cudaStream_t stream)
{
    const size_t total = (size_t)n * filters * spatial;
    scale_bias_kernel<<<dn_blocks(total), DN_THREADS, 0, stream>>>(x, total, filters, spatial, scales, biases, mean,
                                                                   variance);
}

extern "C" void dn_bn_forward_train_gpu(float *x, float *bn_x, float *bn_x_norm, float *mean, float *variance,
                                        float *rolling_mean, float *rolling_variance, const float *scales,
                                        const float *biases, int n, int filters, int spatial, cudaStream_t stream)
{
    bn_forward_train_kernel<<<filters, DN_THREADS, 0, stream>>>(x, bn_x, bn_x_norm, mean, variance, rolling_mean,
                                                                rolling_variance, scales, biases, n, filters, spatial);
}

extern "C" void dn_bn_backward_gpu(float *delta, const float *bn_x, const float *bn_x_norm, const float *mean,
                                   const float *variance, const float *scales, float *scale_updates,
                                   float *bias_updates, int n, int filters, int spatial, cudaStream_t stream)
{
    bn_backward_kernel<<<filters, DN_THREADS, 0, stream>>>(delta, bn_x, bn_x_norm, mean, variance, scales,
                                                           scale_updates, bias_updates, n, filters, spatial);
}

extern "C" void dn_bias_backward_gpu(const float *delta, float *bias_updates, int n, int filters, int spatial,
                                     cudaStream_t stream)
{
    bias_backward_kernel<<<filters, DN_THREADS, 0, stream>>>(delta, bias_updates, n, filters, spatial);
}

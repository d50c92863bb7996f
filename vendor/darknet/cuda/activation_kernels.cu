/* GPU twin of activations.c: the same formulas, element by element. */
#include "common.cuh"
#include "kernels.h"

/* dn_activation's values (darknet.h is C; repeating five numbers beats including it here) */
enum { ACT_LOGISTIC = 0, ACT_LINEAR = 1, ACT_LEAKY = 2, ACT_RELU = 3, ACT_MISH = 4, ACT_SWISH = 5 };

__device__ static inline float logistic(float x) { return 1.0f / (1.0f + expf(-x)); }

/* mish as on the CPU: tanh(softplus(x)) = q / (q + 2) with q = e^x (e^x + 2); 1 above 20 */
__device__ static inline float mish(float x)
{
    if (x > 20.0f) return x;
    const float e = expf(x);
    const float q = e * (e + 2.0f);
    return x * q / (q + 2.0f);
}

__device__ static inline float mish_gradient(float x)
{
    if (x > 20.0f) return 1.0f;
    const float e = expf(x);
    const float q = e * (e + 2.0f);
    const float t = q / (q + 2.0f);
    return t + x * (1.0f - t * t) * logistic(x);
}

__global__ static void activate_kernel(float *x, size_t n, int a)
{
    DN_GRID_LOOP(i, n) {
        const float v = x[i];
        switch (a) {
        case ACT_LOGISTIC: x[i] = logistic(v); break;
        case ACT_LEAKY: x[i] = v > 0 ? v : 0.1f * v; break;
        case ACT_RELU: x[i] = v > 0 ? v : 0; break;
        case ACT_MISH: x[i] = mish(v); break;
        case ACT_SWISH: x[i] = v * logistic(v); break;
        default: break;
        }
    }
}

__global__ static void gradient_kernel(const float *x, size_t n, int a, float *delta)
{
    DN_GRID_LOOP(i, n) {
        const float v = x[i];
        float g = 1.0f;
        switch (a) {
        case ACT_LOGISTIC: { const float s = logistic(v); g = s * (1.0f - s); break; }
        case ACT_LEAKY: g = v > 0 ? 1.0f : 0.1f; break;
        case ACT_RELU: g = v > 0 ? 1.0f : 0.0f; break;
        case ACT_MISH: g = mish_gradient(v); break;
        case ACT_SWISH: { const float s = logistic(v); g = s + v * s * (1.0f - s); break; }
        default: break;
        }
        delta[i] *= g;
    }
}

extern "C" void dn_activate_gpu(float *x, size_t n, int activation, cudaStream_t stream)
{
    if (activation == ACT_LINEAR || n == 0) return;
    activate_kernel<<<dn_blocks(n), DN_THREADS, 0, stream>>>(x, n, activation);
}

extern "C" void dn_gradient_gpu(const float *x, size_t n, int activation, float *delta, cudaStream_t stream)
{
    if (activation == ACT_LINEAR || n == 0) return;
    gradient_kernel<<<dn_blocks(n), DN_THREADS, 0, stream>>>(x, n, activation, delta);
}

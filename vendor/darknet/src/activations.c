/* Activation functions of darknet's convolutional and shortcut layers. */
#include "internal.h"

#include <string.h>

int dn_activation_from_name(const char *name, dn_activation *out)
{
    for (int i = 0; i < dn_name_count(DN_NAMES_ACTIVATION); ++i) {
        if (strcmp(name, dn_name(DN_NAMES_ACTIVATION, i)) == 0) {
            *out = (dn_activation)i;
            return 1;
        }
    }
    return 0;
}

DN_HOT_WIDE void dn_activate_array(float *x, size_t n, dn_activation a)
{
    size_t i;
    switch (a) {
    case DN_ACT_LINEAR:
        break;
    case DN_ACT_LOGISTIC:
        for (i = 0; i < n; ++i) x[i] = dn_logistic(x[i]);
        break;
    case DN_ACT_LEAKY:
        /* max(x, 0.1x) is x > 0 ? x : 0.1x, written so that the compiler vectorises it */
        for (i = 0; i < n; ++i) {
            const float small = 0.1f * x[i];
            x[i] = x[i] > small ? x[i] : small;
        }
        break;
    case DN_ACT_RELU:
        for (i = 0; i < n; ++i) x[i] = x[i] > 0 ? x[i] : 0.0f;
        break;
    case DN_ACT_MISH:
        for (i = 0; i < n; ++i) x[i] = dn_mish(x[i]);
        break;
    case DN_ACT_SWISH:
        for (i = 0; i < n; ++i) x[i] = x[i] * dn_logistic(x[i]);
        break;
    }
}

static inline float mish_gradient(float x)
{
    /* d/dx [x tanh(sp(x))] = tanh(sp) + x (1 - tanh^2(sp)) sigmoid(x), with tanh(sp) from n = e^x */
    const float n = dn_expf(x);
    const float q = n * (n + 2.0f);
    const float t = q / (q + 2.0f);
    const float value = t + x * (1.0f - t * t) * dn_logistic(x);
    return x > 20.0f ? 1.0f : value; /* a select, so that the loop vectorises */
}

DN_HOT void dn_gradient_array(const float *restrict x, size_t n, dn_activation a, float *restrict delta)
{
    size_t i;
    switch (a) {
    case DN_ACT_LINEAR:
        break;
    case DN_ACT_LOGISTIC:
        for (i = 0; i < n; ++i) {
            const float s = dn_logistic(x[i]);
            delta[i] *= s * (1.0f - s);
        }
        break;
    case DN_ACT_LEAKY: /* both sides computed first: a select, which vectorises (a skipped multiply does not) */
        for (i = 0; i < n; ++i) {
            const float d = delta[i], scaled = 0.1f * d;
            delta[i] = x[i] > 0 ? d : scaled;
        }
        break;
    case DN_ACT_RELU:
        for (i = 0; i < n; ++i) {
            const float d = delta[i], zero = 0.0f * d;
            delta[i] = x[i] > 0 ? d : zero;
        }
        break;
    case DN_ACT_MISH:
        for (i = 0; i < n; ++i) delta[i] *= mish_gradient(x[i]);
        break;
    case DN_ACT_SWISH:
        for (i = 0; i < n; ++i) {
            const float s = dn_logistic(x[i]);
            delta[i] *= s + x[i] * s * (1.0f - s);
        }
        break;
    }
}

/* Elements per chunk of the threaded loops: big enough that a chunk outweighs the hand-over. */
#define DN_ACTIVATION_CHUNK 16384

void dn_gradient_parallel(const float *x, size_t n, dn_activation a, float *delta, int threads)
{
    if (a == DN_ACT_LINEAR) return;
    const long chunks = (long)((n + DN_ACTIVATION_CHUNK - 1) / DN_ACTIVATION_CHUNK);
#pragma omp parallel for num_threads(threads) schedule(static) if (chunks > 1)
    for (long c = 0; c < chunks; ++c) {
        const size_t first = (size_t)c * DN_ACTIVATION_CHUNK;
        const size_t count = n - first < DN_ACTIVATION_CHUNK ? n - first : DN_ACTIVATION_CHUNK;
        dn_gradient_array(x + first, count, a, delta + first);
    }
}

/* [convolutional]: grouped convolution as im2col + GEMM, batch norm, bias, activation. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

#define BN_EPSILON 0.00001f

static void normalize_batch(dn_layer *l, int n);

/* Options that change the math and that this engine does not implement: refusing
 * them beats silently computing something else. */
static const char *const unsupported[] = {"dilation", "stride_x", "stride_y", "antialiasing", "binary",
                                          "xnor", "deform", "share_index", "assisted_excitation"};

dn_status dn_convolutional_setup(dn_layer *l, dn_options *o, struct dn_network *net)
{
    (void)net;
    l->filters = dn_opt_int(o, "filters", 1);
    l->size = dn_opt_int(o, "size", 1);
    l->stride = dn_opt_int(o, "stride", 1);
    int pad_flag = dn_opt_int(o, "pad", 0);
    int padding = dn_opt_int(o, "padding", 0);
    l->pad = pad_flag ? l->size / 2 : padding;
    l->groups = dn_opt_int(o, "groups", 1);
    l->batch_normalize = dn_opt_int(o, "batch_normalize", 0);
    l->stopbackward = dn_opt_int(o, "stopbackward", 0);
    const char *activation = dn_opt_str(o, "activation", "logistic");
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; ++i) {
        const char *key = unsupported[i];
        if (!dn_opt_has(o, key)) continue;
        const char *value = dn_opt_str(o, key, "0");
        int is_default = strcmp(value, "0") == 0 || ((strcmp(key, "dilation") == 0 || strncmp(key, "stride_", 7) == 0) &&
                                                     strcmp(value, "1") == 0);
        if (!is_default) {
            char option[DN_QUOTE_SIZE + 32], q[DN_QUOTE_SIZE];
            snprintf(option, sizeof option, "%s=%s", key, value);
            dn_opt_error(o, key, "option %s is not supported by this engine", dn_quote_str(q, option));
        }
    }
    if (o->status != DN_OK) return o->status;
    if (!dn_activation_from_name(activation, &l->activation)) {
        char q[DN_QUOTE_SIZE];
        dn_opt_error(o, "activation", "unknown activation %s", dn_quote_str(q, activation));
        return o->status;
    }
    if (l->filters < 1) dn_opt_error(o, "filters", "filters must be >= 1, got %d", l->filters);
    if (l->size < 1) dn_opt_error(o, "size", "size must be >= 1, got %d", l->size);
    if (l->stride < 1) dn_opt_error(o, "stride", "stride must be >= 1, got %d", l->stride);
    if (l->pad < 0) dn_opt_error(o, "padding", "padding must be >= 0, got %d", l->pad);
    if (l->groups < 1) dn_opt_error(o, "groups", "groups must be >= 1, got %d", l->groups);
    if (l->filters > DN_MAX_CHANNELS) dn_opt_error(o, "filters", "filters must be at most %d, got %d", DN_MAX_CHANNELS, l->filters);
    if (l->size > DN_MAX_SIDE) dn_opt_error(o, "size", "size must be at most %d, got %d", DN_MAX_SIDE, l->size);
    if (l->stride > DN_MAX_SIDE) dn_opt_error(o, "stride", "stride must be at most %d, got %d", DN_MAX_SIDE, l->stride);
    if (l->pad > DN_MAX_SIDE) dn_opt_error(o, "padding", "padding must be at most %d, got %d", DN_MAX_SIDE, l->pad);
    if (o->status != DN_OK) return o->status;
    if (l->c % l->groups || l->filters % l->groups)
        dn_opt_error(o, "groups", "groups=%d must divide the input channels (%d) and filters (%d)", l->groups,
                     l->c, l->filters);
    if (o->status == DN_OK && !dn_convolutional_reshape(l))
        dn_opt_error(o, "size", "kernel %dx%d does not fit the %dx%d input", l->size, l->size, l->w, l->h);
    if (o->status != DN_OK) return o->status;

    size_t per_filter;
    if (!dn_mul_within((size_t)(l->c / l->groups) * l->size, (size_t)l->size, DN_MAX_LAYER_WEIGHTS, &per_filter) ||
        !dn_mul_within(per_filter, (size_t)l->filters, DN_MAX_LAYER_WEIGHTS, &l->nweights)) {
        dn_opt_error(o, "filters", "filters=%d x %d input channels x %dx%d kernel is more than %zu weights", l->filters,
                     l->c / l->groups, l->size, l->size, DN_MAX_LAYER_WEIGHTS);
        return o->status;
    }
    l->weights = dn_calloc(l->nweights, sizeof(float));
    l->biases = dn_calloc((size_t)l->filters, sizeof(float));
    if (l->batch_normalize) {
        l->scales = dn_calloc((size_t)l->filters, sizeof(float));
        l->rolling_mean = dn_calloc((size_t)l->filters, sizeof(float));
        l->rolling_variance = dn_calloc((size_t)l->filters, sizeof(float));
    }
    if (!l->weights || !l->biases || (l->batch_normalize && (!l->scales || !l->rolling_mean || !l->rolling_variance)))
        return dn_fail(DN_ERR_MEMORY, "out of memory for layer %d ([convolutional], %zu weights)", l->index,
                       l->nweights);
    return DN_OK;
}

int dn_convolutional_reshape(dn_layer *l)
{
    if (l->w + 2 * l->pad < l->size || l->h + 2 * l->pad < l->size) return 0;
    l->out_w = (l->w + 2 * l->pad - l->size) / l->stride + 1;
    l->out_h = (l->h + 2 * l->pad - l->size) / l->stride + 1;
    l->out_c = l->filters;
    return 1;
}

void dn_convolutional_init_weights(dn_layer *l, dn_rng *rng)
{
    const float scale = sqrtf(2.0f / (float)(l->size * l->size * (l->c / l->groups)));
    for (size_t i = 0; i < l->nweights; ++i) l->weights[i] = scale * (2.0f * dn_rng_uniform(rng) - 1.0f);
    for (int i = 0; i < l->filters; ++i) {
        l->biases[i] = 0;
        if (l->batch_normalize) {
            l->scales[i] = 1;
            l->rolling_mean[i] = 0;
            /* 1 rather than darknet's 0, so an untrained network's inference stays finite */
            l->rolling_variance[i] = 1;
        }
    }
}

static int is_pointwise(const dn_layer *l) { return l->size == 1 && l->stride == 1 && l->pad == 0; }

size_t dn_convolutional_workspace(const dn_layer *l)
{
    if (is_pointwise(l)) return 0;
    return (size_t)(l->c / l->groups) * l->size * l->size * l->out_h * l->out_w;
}

void dn_convolutional_forward(dn_layer *l, struct dn_network *net, const float *input, int n)
{
    const int m = l->filters / l->groups;
    const int k = (l->c / l->groups) * l->size * l->size;
    const int spatial = l->out_h * l->out_w;
    const size_t in_group = (size_t)(l->c / l->groups) * l->h * l->w;
    const size_t weights_group = l->nweights / (size_t)l->groups;

    for (int b = 0; b < n; ++b) {
        for (int g = 0; g < l->groups; ++g) {
            const float *im = input + (size_t)b * l->inputs + g * in_group;
            float *out = l->output + (size_t)b * l->outputs + (size_t)g * m * spatial;
            const float *columns = im;
            if (!is_pointwise(l)) {
                dn_im2col(im, l->c / l->groups, l->h, l->w, l->size, l->stride, l->pad, net->workspace);
                columns = net->workspace;
            }
            dn_gemm(0, 0, m, spatial, k, 1.0f, l->weights + g * weights_group, k, columns, spatial, 0.0f, out,
                    spatial);
        }
    }

    if (l->batch_normalize && net->train) {
        normalize_batch(l, n);
    } else {
        for (int b = 0; b < n; ++b) {
            for (int f = 0; f < l->filters; ++f) {
                float *plane = l->output + (size_t)b * l->outputs + (size_t)f * spatial;
                float mul = 1.0f, add = l->biases[f];
                if (l->batch_normalize) {
                    /* (x - mean) / sqrt(var + eps) * scale + bias, folded into one multiply-add */
                    mul = l->scales[f] / sqrtf(l->rolling_variance[f] + BN_EPSILON);
                    add = l->biases[f] - l->rolling_mean[f] * mul;
                }
                for (int i = 0; i < spatial; ++i) plane[i] = plane[i] * mul + add;
            }
        }
    }
    if (net->train) memcpy(l->act_input, l->output, (size_t)n * l->outputs * sizeof(float));
    dn_activate_array(l->output, (size_t)n * l->outputs, l->activation);
}

/*
 * Training-mode batch norm over the n images and all positions of each filter. The variance
 * is the biased one (1/N) so that the backward pass is the exact gradient of this forward
 * (darknet divides by N - 1 here, a difference of under 1% for N >= 100).
 */
static void normalize_batch(dn_layer *l, int n)
{
    const size_t spatial = (size_t)l->out_h * l->out_w;
    const double count = (double)n * spatial;
    memcpy(l->bn_x, l->output, (size_t)n * l->outputs * sizeof(float));
    for (int f = 0; f < l->filters; ++f) {
        double sum = 0, squares = 0;
        for (int b = 0; b < n; ++b) {
            const float *plane = l->bn_x + (size_t)b * l->outputs + f * spatial;
            for (size_t i = 0; i < spatial; ++i) sum += plane[i];
        }
        const float mean = (float)(sum / count);
        for (int b = 0; b < n; ++b) {
            const float *plane = l->bn_x + (size_t)b * l->outputs + f * spatial;
            for (size_t i = 0; i < spatial; ++i) squares += (double)(plane[i] - mean) * (plane[i] - mean);
        }
        const float variance = (float)(squares / count);
        l->bn_mean[f] = mean;
        l->bn_variance[f] = variance;
        /* darknet's GPU momentum (.99/.01), on the CPU too */
        l->rolling_mean[f] = 0.99f * l->rolling_mean[f] + 0.01f * mean;
        l->rolling_variance[f] = 0.99f * l->rolling_variance[f] + 0.01f * variance;
        const float inv_std = 1.0f / sqrtf(variance + BN_EPSILON);
        for (int b = 0; b < n; ++b) {
            const size_t offset = (size_t)b * l->outputs + f * spatial;
            for (size_t i = 0; i < spatial; ++i) {
                const float x_norm = (l->bn_x[offset + i] - mean) * inv_std;
                l->bn_x_norm[offset + i] = x_norm;
                l->output[offset + i] = x_norm * l->scales[f] + l->biases[f];
            }
        }
    }
}

/* The adjoint of normalize_batch: turns l->delta from -dL/d(normalised output) into
 * -dL/d(convolution result), accumulating the scale and bias updates. */
static void normalize_batch_backward(dn_layer *l, int n)
{
    const size_t spatial = (size_t)l->out_h * l->out_w;
    const float count = (float)((size_t)n * spatial);
    for (int f = 0; f < l->filters; ++f) {
        double bias_sum = 0, scale_sum = 0;
        for (int b = 0; b < n; ++b) {
            const size_t offset = (size_t)b * l->outputs + f * spatial;
            for (size_t i = 0; i < spatial; ++i) {
                bias_sum += l->delta[offset + i];
                scale_sum += (double)l->delta[offset + i] * l->bn_x_norm[offset + i];
            }
        }
        l->bias_updates[f] += (float)bias_sum;
        l->scale_updates[f] += (float)scale_sum;
        const float inv_std = 1.0f / sqrtf(l->bn_variance[f] + BN_EPSILON);
        double mean_delta = 0, variance_delta = 0;
        for (int b = 0; b < n; ++b) {
            const size_t offset = (size_t)b * l->outputs + f * spatial;
            for (size_t i = 0; i < spatial; ++i) {
                const float d = l->delta[offset + i] * l->scales[f];
                mean_delta += d;
                variance_delta += (double)d * (l->bn_x[offset + i] - l->bn_mean[f]);
            }
        }
        const float mean_term = (float)(-mean_delta * inv_std) / count;
        const float variance_term = (float)(variance_delta * -0.5 * pow(l->bn_variance[f] + BN_EPSILON, -1.5)) * 2.0f / count;
        for (int b = 0; b < n; ++b) {
            const size_t offset = (size_t)b * l->outputs + f * spatial;
            for (size_t i = 0; i < spatial; ++i) {
                const float d = l->delta[offset + i] * l->scales[f];
                l->delta[offset + i] = d * inv_std + variance_term * (l->bn_x[offset + i] - l->bn_mean[f]) + mean_term;
            }
        }
    }
}

void dn_convolutional_backward(dn_layer *l, struct dn_network *net, const float *input, float *input_delta, int n)
{
    const int m = l->filters / l->groups;
    const int k = (l->c / l->groups) * l->size * l->size;
    const int spatial = l->out_h * l->out_w;
    const size_t in_group = (size_t)(l->c / l->groups) * l->h * l->w;
    const size_t weights_group = l->nweights / (size_t)l->groups;

    dn_gradient_array(l->act_input, (size_t)n * l->outputs, l->activation, l->delta);
    if (l->batch_normalize) {
        normalize_batch_backward(l, n);
    } else {
        for (int b = 0; b < n; ++b)
            for (int f = 0; f < l->filters; ++f) {
                const float *plane = l->delta + (size_t)b * l->outputs + (size_t)f * spatial;
                double sum = 0;
                for (int i = 0; i < spatial; ++i) sum += plane[i];
                l->bias_updates[f] += (float)sum;
            }
    }
    for (int b = 0; b < n; ++b) {
        for (int g = 0; g < l->groups; ++g) {
            const float *im = input + (size_t)b * l->inputs + g * in_group;
            const float *d = l->delta + (size_t)b * l->outputs + (size_t)g * m * spatial;
            const float *columns = im;
            if (!is_pointwise(l)) {
                dn_im2col(im, l->c / l->groups, l->h, l->w, l->size, l->stride, l->pad, net->workspace);
                columns = net->workspace;
            }
            dn_gemm(0, 1, m, k, spatial, 1.0f, d, spatial, columns, spatial, 1.0f, l->weight_updates + g * weights_group, k);
            if (!input_delta) continue;
            float *im_delta = input_delta + (size_t)b * l->inputs + g * in_group;
            if (is_pointwise(l)) {
                dn_gemm(1, 0, k, spatial, m, 1.0f, l->weights + g * weights_group, k, d, spatial, 1.0f, im_delta, spatial);
            } else {
                dn_gemm(1, 0, k, spatial, m, 1.0f, l->weights + g * weights_group, k, d, spatial, 0.0f, net->workspace,
                        spatial);
                dn_col2im_add(net->workspace, l->c / l->groups, l->h, l->w, l->size, l->stride, l->pad, im_delta);
            }
        }
    }
}

void dn_convolutional_update(dn_layer *l, float learning_rate, float momentum, float decay, int batch)
{
    const float step = learning_rate / (float)batch;
    for (int f = 0; f < l->filters; ++f) {
        l->biases[f] += step * l->bias_updates[f];
        l->bias_updates[f] *= momentum;
        if (l->batch_normalize) {
            l->scales[f] += step * l->scale_updates[f];
            l->scale_updates[f] *= momentum;
        }
    }
    for (size_t i = 0; i < l->nweights; ++i) {
        l->weight_updates[i] += -decay * (float)batch * l->weights[i];
        l->weights[i] += step * l->weight_updates[i];
        l->weight_updates[i] *= momentum;
    }
}

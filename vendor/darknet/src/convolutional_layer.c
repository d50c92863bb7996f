/* [convolutional]: grouped convolution as im2col + GEMM, batch norm, bias, activation. */
#include "internal.h"

#include <string.h>

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
        if (!is_default) dn_opt_error(o, key, "option '%s=%s' is not supported by this engine", key, value);
    }
    if (o->status != DN_OK) return o->status;
    if (!dn_activation_from_name(activation, &l->activation)) {
        dn_opt_error(o, "activation", "unknown activation '%s'", activation);
        return o->status;
    }
    if (l->filters < 1) dn_opt_error(o, "filters", "filters must be >= 1, got %d", l->filters);
    if (l->size < 1) dn_opt_error(o, "size", "size must be >= 1, got %d", l->size);
    if (l->stride < 1) dn_opt_error(o, "stride", "stride must be >= 1, got %d", l->stride);
    if (l->pad < 0) dn_opt_error(o, "padding", "padding must be >= 0, got %d", l->pad);
    if (l->groups < 1) dn_opt_error(o, "groups", "groups must be >= 1, got %d", l->groups);
    if (o->status != DN_OK) return o->status;
    if (l->c % l->groups || l->filters % l->groups)
        dn_opt_error(o, "groups", "groups=%d must divide the input channels (%d) and filters (%d)", l->groups,
                     l->c, l->filters);
    l->out_w = (l->w + 2 * l->pad - l->size) / l->stride + 1;
    l->out_h = (l->h + 2 * l->pad - l->size) / l->stride + 1;
    l->out_c = l->filters;
    if (l->w + 2 * l->pad < l->size || l->h + 2 * l->pad < l->size || l->out_w < 1 || l->out_h < 1)
        dn_opt_error(o, "size", "kernel %dx%d does not fit the %dx%d input", l->size, l->size, l->w, l->h);
    if (o->status != DN_OK) return o->status;

    l->nweights = (size_t)l->filters * (l->c / l->groups) * l->size * l->size;
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

    for (int b = 0; b < n; ++b) {
        for (int f = 0; f < l->filters; ++f) {
            float *plane = l->output + (size_t)b * l->outputs + (size_t)f * spatial;
            float mul = 1.0f, add = l->biases[f];
            if (l->batch_normalize) {
                /* (x - mean) / sqrt(var + eps) * scale + bias, folded into one multiply-add */
                mul = l->scales[f] / sqrtf(l->rolling_variance[f] + 0.00001f);
                add = l->biases[f] - l->rolling_mean[f] * mul;
            }
            for (int i = 0; i < spatial; ++i) plane[i] = plane[i] * mul + add;
            dn_activate_array(plane, (size_t)spatial, l->activation);
        }
    }
}

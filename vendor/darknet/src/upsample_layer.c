/* [upsample]: nearest-neighbour upscaling by an integer stride. */
#include "internal.h"

dn_status dn_upsample_setup(dn_layer *l, dn_options *o)
{
    l->upsample_stride = dn_opt_int(o, "stride", 2);
    l->upsample_scale = dn_opt_float(o, "scale", 1.0f);
    if (o->status != DN_OK) return o->status;
    if (l->upsample_stride < 1) {
        dn_opt_error(o, "stride", "stride must be >= 1 (downsampling is not supported), got %d", l->upsample_stride);
        return o->status;
    }
    if (!dn_upsample_reshape(l))
        dn_opt_error(o, "stride", "stride=%d makes the %dx%d input larger than %d pixels", l->upsample_stride, l->w, l->h,
                     DN_MAX_SIDE);
    return o->status;
}

int dn_upsample_reshape(dn_layer *l)
{
    if ((long long)l->w * l->upsample_stride > DN_MAX_SIDE || (long long)l->h * l->upsample_stride > DN_MAX_SIDE)
        return 0;
    l->out_w = l->w * l->upsample_stride;
    l->out_h = l->h * l->upsample_stride;
    l->out_c = l->c;
    return 1;
}

void dn_upsample_forward(dn_layer *l, const float *input, int n, int threads)
{
    const int s = l->upsample_stride;
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int b = 0; b < n; ++b) {
        for (int ch = 0; ch < l->c; ++ch) {
            const float *in = input + (size_t)b * l->inputs + (size_t)ch * l->h * l->w;
            float *out = l->output + (size_t)b * l->outputs + (size_t)ch * l->out_h * l->out_w;
            for (int y = 0; y < l->out_h; ++y) {
                const float *in_row = in + (size_t)(y / s) * l->w;
                float *out_row = out + (size_t)y * l->out_w;
                for (int x = 0; x < l->out_w; ++x) out_row[x] = l->upsample_scale * in_row[x / s];
            }
        }
    }
}

void dn_upsample_backward(dn_layer *l, float *input_delta, int n, int threads)
{
    if (!input_delta) return;
    const int s = l->upsample_stride;
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int b = 0; b < n; ++b) {
        for (int ch = 0; ch < l->c; ++ch) {
            float *in = input_delta + (size_t)b * l->inputs + (size_t)ch * l->h * l->w;
            const float *out = l->delta + (size_t)b * l->outputs + (size_t)ch * l->out_h * l->out_w;
            for (int y = 0; y < l->out_h; ++y)
                for (int x = 0; x < l->out_w; ++x)
                    in[(size_t)(y / s) * l->w + x / s] += l->upsample_scale * out[(size_t)y * l->out_w + x];
        }
    }
}

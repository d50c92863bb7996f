/* [maxpool]: darknet's window starts at -padding/2 and ignores pixels outside the input. */
#include "internal.h"

#include <float.h>

dn_status dn_maxpool_setup(dn_layer *l, dn_options *o)
{
    l->size = dn_opt_int(o, "size", 1);
    l->stride = dn_opt_int(o, "stride", 1);
    l->pad = dn_opt_int(o, "padding", l->size - 1);
    if (dn_opt_has(o, "maxpool_depth") && dn_opt_int(o, "maxpool_depth", 0) != 0)
        dn_opt_error(o, "maxpool_depth", "option 'maxpool_depth' is not supported by this engine");
    if (dn_opt_has(o, "stride_x") || dn_opt_has(o, "stride_y"))
        dn_opt_error(o, "stride_x", "options 'stride_x'/'stride_y' are not supported by this engine");
    if (o->status != DN_OK) return o->status;
    if (l->size < 1) dn_opt_error(o, "size", "size must be >= 1, got %d", l->size);
    if (l->stride < 1) dn_opt_error(o, "stride", "stride must be >= 1, got %d", l->stride);
    if (l->pad < 0) dn_opt_error(o, "padding", "padding must be >= 0, got %d", l->pad);
    if (l->size > DN_MAX_SIDE) dn_opt_error(o, "size", "size must be at most %d, got %d", DN_MAX_SIDE, l->size);
    if (l->stride > DN_MAX_SIDE) dn_opt_error(o, "stride", "stride must be at most %d, got %d", DN_MAX_SIDE, l->stride);
    if (l->pad > DN_MAX_SIDE) dn_opt_error(o, "padding", "padding must be at most %d, got %d", DN_MAX_SIDE, l->pad);
    if (o->status != DN_OK) return o->status;
    if (!dn_maxpool_reshape(l))
        dn_opt_error(o, "size", "window %dx%d does not fit the %dx%d input", l->size, l->size, l->w, l->h);
    return o->status;
}

int dn_maxpool_reshape(dn_layer *l)
{
    if (l->w + l->pad < l->size || l->h + l->pad < l->size) return 0;
    l->out_w = (l->w + l->pad - l->size) / l->stride + 1;
    l->out_h = (l->h + l->pad - l->size) / l->stride + 1;
    l->out_c = l->c;
    return 1;
}

void dn_maxpool_forward(dn_layer *l, const float *input, int n, int threads)
{
    const int offset = -l->pad / 2;
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int b = 0; b < n; ++b) {
        for (int ch = 0; ch < l->c; ++ch) {
            const float *in = input + (size_t)b * l->inputs + (size_t)ch * l->h * l->w;
            float *out = l->output + (size_t)b * l->outputs + (size_t)ch * l->out_h * l->out_w;
            for (int oy = 0; oy < l->out_h; ++oy) {
                for (int ox = 0; ox < l->out_w; ++ox) {
                    float best = -FLT_MAX;
                    int best_index = -1;
                    /* only the taps inside the input: a window far larger than the input (size=65535
                     * on 16x16) costs what the input holds, not size * size */
                    const int y0 = offset + oy * l->stride, x0 = offset + ox * l->stride;
                    const int ky_end = l->size < l->h - y0 ? l->size : l->h - y0;
                    const int kx_end = l->size < l->w - x0 ? l->size : l->w - x0;
                    for (int ky = y0 < 0 ? -y0 : 0; ky < ky_end; ++ky) {
                        const int iy = y0 + ky;
                        for (int kx = x0 < 0 ? -x0 : 0; kx < kx_end; ++kx) {
                            const int ix = x0 + kx;
                            const float v = in[iy * l->w + ix];
                            if (v > best) {
                                best = v;
                                best_index = iy * l->w + ix;
                            }
                        }
                    }
                    out[oy * l->out_w + ox] = best;
                    if (l->indexes) /* training: remember where the maximum came from */
                        l->indexes[(size_t)b * l->outputs + (size_t)ch * l->out_h * l->out_w + oy * l->out_w + ox] =
                            best_index < 0 ? -1 : (int)((size_t)ch * l->h * l->w) + best_index;
                }
            }
        }
    }
}

void dn_maxpool_backward(dn_layer *l, float *input_delta, int n, int threads)
{
    if (!input_delta) return;
    const size_t plane = (size_t)l->out_h * l->out_w;
    /* a channel's outputs point into the same channel of the input: channels are independent */
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int b = 0; b < n; ++b) {
        for (int ch = 0; ch < l->c; ++ch) {
            const float *d = l->delta + (size_t)b * l->outputs + ch * plane;
            const int *idx = l->indexes + (size_t)b * l->outputs + ch * plane;
            float *in_delta = input_delta + (size_t)b * l->inputs;
            for (size_t i = 0; i < plane; ++i)
                if (idx[i] >= 0) in_delta[idx[i]] += d[i];
        }
    }
}

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

/* The maximum over the window of output (oy, ox), scanning rows then columns, the first of equal
 * maxima winning; only the taps inside the input (a window far larger than the input, size=65535
 * on 16x16, costs what the input holds, not size * size). *where: its index in the plane, -1
 * when no tap was above -FLT_MAX. */
static float window_max(const dn_layer *l, const float *in, int oy, int ox, int *where)
{
    const int offset = -l->pad / 2;
    const int y0 = offset + oy * l->stride, x0 = offset + ox * l->stride;
    const int ky_end = l->size < l->h - y0 ? l->size : l->h - y0;
    const int kx_end = l->size < l->w - x0 ? l->size : l->w - x0;
    float best = -FLT_MAX;
    int best_index = -1;
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
    *where = best_index;
    return best;
}

/* One channel. The 2x2 stride-2 windows inside the input (YOLO's downsampling) take a loop of
 * selects in window_max's order; the rest (borders, other windows) take window_max. indexes
 * (training): per output, the input index in the whole image (plane_base + index in the plane). */
DN_HOT static void pool_plane(const dn_layer *l, const float *in, float *out, int *indexes, int plane_base)
{
    const int ow = l->out_w, w = l->w;
    const int pairs = l->size == 2 && l->stride == 2 && l->pad / 2 == 0;
    for (int oy = 0; oy < l->out_h; ++oy) {
        int ox = 0;
        if (pairs && 2 * oy + 1 < l->h) {
            const int inside = ow < w / 2 ? ow : w / 2;
            const float *r0 = in + (size_t)(2 * oy) * w, *r1 = r0 + w;
            float *o = out + (size_t)oy * ow;
            if (indexes) {
                int *idx = indexes + (size_t)oy * ow;
                for (; ox < inside; ++ox) {
                    const int at = 2 * oy * w + 2 * ox;
                    float best = -FLT_MAX;
                    int where = -1;
                    if (r0[2 * ox] > best) best = r0[2 * ox], where = at;
                    if (r0[2 * ox + 1] > best) best = r0[2 * ox + 1], where = at + 1;
                    if (r1[2 * ox] > best) best = r1[2 * ox], where = at + w;
                    if (r1[2 * ox + 1] > best) best = r1[2 * ox + 1], where = at + w + 1;
                    o[ox] = best;
                    idx[ox] = where < 0 ? -1 : plane_base + where;
                }
            } else {
                for (; ox < inside; ++ox) {
                    float best = -FLT_MAX;
                    best = r0[2 * ox] > best ? r0[2 * ox] : best;
                    best = r0[2 * ox + 1] > best ? r0[2 * ox + 1] : best;
                    best = r1[2 * ox] > best ? r1[2 * ox] : best;
                    best = r1[2 * ox + 1] > best ? r1[2 * ox + 1] : best;
                    o[ox] = best;
                }
            }
        }
        for (; ox < ow; ++ox) {
            int where;
            out[(size_t)oy * ow + ox] = window_max(l, in, oy, ox, &where);
            if (indexes) indexes[(size_t)oy * ow + ox] = where < 0 ? -1 : plane_base + where;
        }
    }
}

void dn_maxpool_forward(dn_layer *l, const float *input, int n, int threads)
{
    const size_t in_plane = (size_t)l->h * l->w, out_plane = (size_t)l->out_h * l->out_w;
#pragma omp parallel for collapse(2) num_threads(threads) schedule(static)
    for (int b = 0; b < n; ++b) {
        for (int ch = 0; ch < l->c; ++ch) {
            const size_t out_at = (size_t)b * l->outputs + (size_t)ch * out_plane;
            /* training: remember where each maximum came from */
            pool_plane(l, input + (size_t)b * l->inputs + (size_t)ch * in_plane, l->output + out_at,
                       l->indexes ? l->indexes + out_at : NULL, (int)((size_t)ch * in_plane));
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

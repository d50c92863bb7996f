/* [route]: concatenates earlier outputs along channels, optionally one channel group of each. */
#include "internal.h"

#include <string.h>

dn_status dn_route_setup(dn_layer *l, dn_options *o, struct dn_network *net)
{
    int layers[DN_MAX_ROUTE_INPUTS];
    int count = dn_opt_int_list(o, "layers", layers, DN_MAX_ROUTE_INPUTS);
    l->route_groups = dn_opt_int(o, "groups", 1);
    l->route_group_id = dn_opt_int(o, "group_id", 0);
    if (o->status != DN_OK) return o->status;
    if (count <= 0) {
        dn_opt_error(o, "layers", "option 'layers' is missing or empty");
        return o->status;
    }
    if (l->route_groups < 1 || l->route_group_id < 0 || l->route_group_id >= l->route_groups) {
        dn_opt_error(o, "group_id", "group_id=%d must be in [0, groups=%d)", l->route_group_id, l->route_groups);
        return o->status;
    }
    l->num_inputs = count;
    l->out_c = 0;
    for (int i = 0; i < count; ++i) {
        const int index = layers[i] < 0 ? l->index + layers[i] : layers[i];
        if (index < 0 || index >= l->index) {
            dn_opt_error(o, "layers", "layers=%d points to layer %d, which is not an earlier layer (this is layer %d)",
                         layers[i], index, l->index);
            return o->status;
        }
        const dn_layer *in = &net->layers[index];
        if (in->out_c % l->route_groups) {
            dn_opt_error(o, "groups", "groups=%d does not divide the %d channels of layer %d", l->route_groups,
                         in->out_c, index);
            return o->status;
        }
        if (i > 0 && (in->out_w != l->out_w || in->out_h != l->out_h)) {
            dn_opt_error(o, "layers", "layer %d is %dx%d but layer %d is %dx%d; routed layers must match", index,
                         in->out_w, in->out_h, l->input_layers[0], l->out_w, l->out_h);
            return o->status;
        }
        l->input_layers[i] = index;
        l->out_w = in->out_w;
        l->out_h = in->out_h;
        l->out_c += in->out_c / l->route_groups;
    }
    /* a route's "input" is what it concatenates */
    l->w = l->out_w;
    l->h = l->out_h;
    l->c = l->out_c;
    return DN_OK;
}

void dn_route_forward(dn_layer *l, struct dn_network *net, int n)
{
    const long copies = (long)n * l->num_inputs;
#pragma omp parallel for num_threads(net->threads) schedule(static) if (copies > 1)
    for (long task = 0; task < copies; ++task) {
        const int b = (int)(task / l->num_inputs), i = (int)(task % l->num_inputs);
        size_t offset = 0;
        for (int j = 0; j < i; ++j) offset += net->layers[l->input_layers[j]].outputs / (size_t)l->route_groups;
        const dn_layer *in = &net->layers[l->input_layers[i]];
        const size_t part = in->outputs / (size_t)l->route_groups;
        memcpy(l->output + (size_t)b * l->outputs + offset,
               in->output + (size_t)b * in->outputs + part * (size_t)l->route_group_id, part * sizeof(float));
    }
}

void dn_route_backward(dn_layer *l, struct dn_network *net, int n)
{
    /* one input after the other: a layer named twice gets both parts added in order */
    for (int b = 0; b < n; ++b) {
        size_t offset = 0;
        for (int i = 0; i < l->num_inputs; ++i) {
            dn_layer *in = &net->layers[l->input_layers[i]];
            const long part = (long)(in->outputs / (size_t)l->route_groups);
            float *dst = in->delta + (size_t)b * in->outputs + (size_t)part * l->route_group_id;
            const float *src = l->delta + (size_t)b * l->outputs + offset;
#pragma omp parallel for num_threads(net->threads) schedule(static)
            for (long j = 0; j < part; ++j) dst[j] += src[j];
            offset += (size_t)part;
        }
    }
}

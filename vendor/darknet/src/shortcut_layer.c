/* [shortcut]: adds an earlier layer's output to the previous one, then activates. */
#include "internal.h"

#include <string.h>

dn_status dn_shortcut_setup(dn_layer *l, dn_options *o, struct dn_network *net)
{
    int from[8];
    int count = dn_opt_int_list(o, "from", from, 8);
    const char *activation = dn_opt_str(o, "activation", "linear");
    if (dn_opt_has(o, "weights_type") && strcmp(dn_opt_str(o, "weights_type", "none"), "none") != 0)
        dn_opt_error(o, "weights_type", "weighted shortcuts (weights_type) are not supported by this engine");
    if (o->status != DN_OK) return o->status;
    if (count != 1) {
        dn_opt_error(o, "from", "option 'from' must name exactly one layer");
        return o->status;
    }
    if (!dn_activation_from_name(activation, &l->activation)) {
        char q[DN_QUOTE_SIZE];
        dn_opt_error(o, "activation", "unknown activation %s", dn_quote_str(q, activation));
        return o->status;
    }
    const int index = from[0] < 0 ? l->index + from[0] : from[0];
    if (index < 0 || index >= l->index) {
        dn_opt_error(o, "from", "from=%d points to layer %d, which is not an earlier layer (this is layer %d)",
                     from[0], index, l->index);
        return o->status;
    }
    const dn_layer *other = &net->layers[index];
    if (other->out_w != l->w || other->out_h != l->h || other->out_c != l->c) {
        dn_opt_error(o, "from", "layer %d is %dx%dx%d but the previous layer is %dx%dx%d; shapes must match", index,
                     other->out_w, other->out_h, other->out_c, l->w, l->h, l->c);
        return o->status;
    }
    l->num_inputs = 1;
    l->input_layers[0] = index;
    l->out_w = l->w;
    l->out_h = l->h;
    l->out_c = l->c;
    return DN_OK;
}

/* Elements per chunk of the threaded loops. */
#define DN_SHORTCUT_CHUNK 16384

void dn_shortcut_forward(dn_layer *l, struct dn_network *net, const float *input, int n)
{
    const dn_layer *other = &net->layers[l->input_layers[0]];
    const size_t count = (size_t)n * l->outputs;
    const long chunks = (long)((count + DN_SHORTCUT_CHUNK - 1) / DN_SHORTCUT_CHUNK);
#pragma omp parallel for num_threads(net->threads) schedule(static) if (chunks > 1)
    for (long c = 0; c < chunks; ++c) {
        const size_t first = (size_t)c * DN_SHORTCUT_CHUNK;
        const size_t end = first + DN_SHORTCUT_CHUNK < count ? first + DN_SHORTCUT_CHUNK : count;
        for (size_t i = first; i < end; ++i) l->output[i] = input[i] + other->output[i];
        if (net->train) memcpy(l->act_input + first, l->output + first, (end - first) * sizeof(float));
        dn_activate_array(l->output + first, end - first, l->activation);
    }
}

void dn_shortcut_backward(dn_layer *l, struct dn_network *net, float *input_delta, int n)
{
    dn_layer *other = &net->layers[l->input_layers[0]];
    const size_t count = (size_t)n * l->outputs;
    const long chunks = (long)((count + DN_SHORTCUT_CHUNK - 1) / DN_SHORTCUT_CHUNK);
    /* other->delta may be input_delta itself (from = -1 after the previous layer): both adds, in order */
#pragma omp parallel for num_threads(net->threads) schedule(static) if (chunks > 1)
    for (long c = 0; c < chunks; ++c) {
        const size_t first = (size_t)c * DN_SHORTCUT_CHUNK;
        const size_t end = first + DN_SHORTCUT_CHUNK < count ? first + DN_SHORTCUT_CHUNK : count;
        dn_gradient_array(l->act_input + first, end - first, l->activation, l->delta + first);
        for (size_t i = first; i < end; ++i) other->delta[i] += l->delta[i];
        if (input_delta)
            for (size_t i = first; i < end; ++i) input_delta[i] += l->delta[i];
    }
}

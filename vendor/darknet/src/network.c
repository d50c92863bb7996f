/* The network handle: creation from a cfg, forward orchestration, accessors. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

dn_status dn_layer_alloc_output(dn_layer *l, int batch)
{
    free(l->output);
    l->output = dn_calloc((size_t)batch * l->outputs, sizeof(float));
    if (!l->output)
        return dn_fail(DN_ERR_MEMORY, "out of memory for layer %d's output (%zu floats)", l->index,
                       (size_t)batch * l->outputs);
    return DN_OK;
}

static void free_layer(dn_layer *l)
{
    free(l->output);
    free(l->weights);
    free(l->biases);
    free(l->scales);
    free(l->rolling_mean);
    free(l->rolling_variance);
}

void dn_network_free(dn_network *net)
{
    if (!net) return;
    for (int i = 0; i < net->n && net->layers; ++i) free_layer(&net->layers[i]);
    free(net->layers);
    free(net->workspace);
    free(net->cfg_path);
    free(net);
}

dn_status dn_network_create(const char *cfg_path, int batch, uint64_t seed, dn_log_fn log, void *log_user,
                            dn_network **out)
{
    dn_clear_error();
    if (!out) return dn_fail(DN_ERR_ARGUMENT, "dn_network_create: out is NULL");
    *out = NULL;
    if (!cfg_path) return dn_fail(DN_ERR_ARGUMENT, "dn_network_create: cfg path is NULL");
    if (batch < 1) return dn_fail(DN_ERR_ARGUMENT, "batch must be >= 1, got %d", batch);

    dn_network *net = dn_calloc(1, sizeof *net);
    if (!net) return dn_fail(DN_ERR_MEMORY, "out of memory");
    net->batch = batch;
    net->rng.state = seed;
    net->log = log;
    net->log_user = log_user;
    net->cfg_path = strdup(cfg_path);

    dn_cfg cfg;
    dn_status st = dn_cfg_read(cfg_path, &cfg);
    if (st == DN_OK) {
        st = dn_parse_network(&cfg, net);
        dn_cfg_free(&cfg);
    }
    if (st == DN_OK) {
        for (int i = 0; i < net->n; ++i) {
            dn_layer *l = &net->layers[i];
            if (l->type != DN_LAYER_CONVOLUTIONAL) continue;
            dn_convolutional_init_weights(l, &net->rng);
            size_t need = dn_convolutional_workspace(l);
            if (need > net->workspace_size) net->workspace_size = need;
        }
        net->workspace = dn_calloc(net->workspace_size, sizeof(float));
        if (!net->workspace) st = dn_fail(DN_ERR_MEMORY, "out of memory for the %zu-float workspace", net->workspace_size);
    }
    if (st != DN_OK) {
        dn_network_free(net);
        return st;
    }
    *out = net;
    return DN_OK;
}

dn_status dn_network_params(const dn_network *net, dn_net_params *out)
{
    dn_clear_error();
    if (!net || !out) return dn_fail(DN_ERR_ARGUMENT, "dn_network_params: NULL argument");
    *out = net->params;
    return DN_OK;
}

int dn_network_layer_count(const dn_network *net) { return net ? net->n : 0; }

int dn_network_batch(const dn_network *net) { return net ? net->batch : 0; }

uint64_t dn_network_seen(const dn_network *net) { return net ? net->seen : 0; }

static dn_status check_layer(const dn_network *net, int index)
{
    if (!net) return dn_fail(DN_ERR_ARGUMENT, "network is NULL");
    if (index < 0 || index >= net->n)
        return dn_fail(DN_ERR_ARGUMENT, "layer index %d is outside [0, %d)", index, net->n);
    return DN_OK;
}

dn_status dn_network_layer_info(const dn_network *net, int index, dn_layer_info *out)
{
    dn_clear_error();
    dn_status st = check_layer(net, index);
    if (st != DN_OK) return st;
    const dn_layer *l = &net->layers[index];
    memset(out, 0, sizeof *out);
    out->type = l->type;
    out->cfg_line = l->cfg_line;
    out->w = l->w;
    out->h = l->h;
    out->c = l->c;
    out->out_w = l->out_w;
    out->out_h = l->out_h;
    out->out_c = l->out_c;
    out->filters = l->filters;
    out->size = l->size;
    out->stride = l->type == DN_LAYER_UPSAMPLE ? l->upsample_stride : l->stride;
    out->pad = l->pad;
    out->groups = l->groups;
    out->batch_normalize = l->batch_normalize;
    out->activation = l->activation;
    out->stopbackward = l->stopbackward;
    out->num_inputs = l->num_inputs;
    memcpy(out->inputs, l->input_layers, sizeof out->inputs);
    out->route_groups = l->route_groups;
    out->route_group_id = l->route_group_id;
    out->upsample_scale = l->upsample_scale;
    out->classes = l->classes;
    out->num_masks = l->num_masks;
    out->total_anchors = l->total_anchors;
    memcpy(out->mask, l->mask, sizeof out->mask);
    memcpy(out->anchors, l->anchors, sizeof out->anchors);
    out->scale_x_y = l->scale_x_y;
    out->jitter = l->jitter;
    out->ignore_thresh = l->ignore_thresh;
    out->truth_thresh = l->truth_thresh;
    out->iou_thresh = l->iou_thresh;
    out->iou_normalizer = l->iou_normalizer;
    out->cls_normalizer = l->cls_normalizer;
    out->obj_normalizer = l->obj_normalizer;
    out->max_delta = l->max_delta;
    out->label_smooth_eps = l->label_smooth_eps;
    out->beta_nms = l->beta_nms;
    out->resize = l->resize;
    out->nms_kind = l->nms_kind;
    out->iou_loss = l->iou_loss;
    out->random = l->random;
    out->max_boxes = l->max_boxes;
    return DN_OK;
}

dn_status dn_network_forward(dn_network *net, const float *input, int n)
{
    dn_clear_error();
    if (!net || !input) return dn_fail(DN_ERR_ARGUMENT, "dn_network_forward: NULL argument");
    if (n < 1 || n > net->batch)
        return dn_fail(DN_ERR_ARGUMENT, "%d images given, the network was created for 1 to %d", n, net->batch);
    const float *x = input;
    for (int i = 0; i < net->n; ++i) {
        dn_layer *l = &net->layers[i];
        switch (l->type) {
        case DN_LAYER_CONVOLUTIONAL: dn_convolutional_forward(l, net, x, n); break;
        case DN_LAYER_MAXPOOL: dn_maxpool_forward(l, x, n); break;
        case DN_LAYER_ROUTE: dn_route_forward(l, net, n); break;
        case DN_LAYER_SHORTCUT: dn_shortcut_forward(l, net, x, n); break;
        case DN_LAYER_UPSAMPLE: dn_upsample_forward(l, x, n); break;
        case DN_LAYER_YOLO: dn_yolo_forward(l, x, n); break;
        }
        x = l->output;
    }
    return DN_OK;
}

dn_status dn_network_copy_output(const dn_network *net, int index, float *dst, size_t count)
{
    dn_clear_error();
    dn_status st = check_layer(net, index);
    if (st != DN_OK) return st;
    const dn_layer *l = &net->layers[index];
    if (!dst) return dn_fail(DN_ERR_ARGUMENT, "dn_network_copy_output: destination is NULL");
    if (count > (size_t)net->batch * l->outputs)
        return dn_fail(DN_ERR_ARGUMENT, "layer %d holds %zu floats, %zu asked for", index,
                       (size_t)net->batch * l->outputs, count);
    memcpy(dst, l->output, count * sizeof(float));
    return DN_OK;
}

static float *param_array(const dn_layer *l, int kind, size_t *count)
{
    switch (kind) {
    case DN_PARAM_WEIGHTS: *count = l->nweights; return l->weights;
    case DN_PARAM_BIASES: *count = (size_t)l->filters; return l->biases;
    case DN_PARAM_SCALES: *count = (size_t)l->filters; return l->scales;
    case DN_PARAM_ROLLING_MEAN: *count = (size_t)l->filters; return l->rolling_mean;
    case DN_PARAM_ROLLING_VARIANCE: *count = (size_t)l->filters; return l->rolling_variance;
    }
    *count = 0;
    return NULL;
}

static dn_status find_param(const dn_network *net, int index, int kind, float **array, size_t *count)
{
    dn_status st = check_layer(net, index);
    if (st != DN_OK) return st;
    const dn_layer *l = &net->layers[index];
    if (l->type != DN_LAYER_CONVOLUTIONAL)
        return dn_fail(DN_ERR_ARGUMENT, "layer %d is not [convolutional] and has no parameters", index);
    *array = param_array(l, kind, count);
    if (!*array)
        return dn_fail(DN_ERR_ARGUMENT, "layer %d has no parameter of kind %d (batch_normalize=%d)", index, kind,
                       l->batch_normalize);
    return DN_OK;
}

dn_status dn_network_param_size(const dn_network *net, int index, int kind, size_t *count)
{
    dn_clear_error();
    float *array;
    return find_param(net, index, kind, &array, count);
}

dn_status dn_network_get_param(const dn_network *net, int index, int kind, float *dst, size_t count)
{
    dn_clear_error();
    float *array;
    size_t size = 0;
    dn_status st = find_param(net, index, kind, &array, &size);
    if (st != DN_OK) return st;
    if (count != size) return dn_fail(DN_ERR_ARGUMENT, "layer %d: parameter has %zu values, %zu given", index, size, count);
    memcpy(dst, array, size * sizeof(float));
    return DN_OK;
}

dn_status dn_network_set_param(dn_network *net, int index, int kind, const float *src, size_t count)
{
    dn_clear_error();
    float *array;
    size_t size = 0;
    dn_status st = find_param(net, index, kind, &array, &size);
    if (st != DN_OK) return st;
    if (count != size) return dn_fail(DN_ERR_ARGUMENT, "layer %d: parameter has %zu values, %zu given", index, size, count);
    memcpy(array, src, size * sizeof(float));
    return DN_OK;
}

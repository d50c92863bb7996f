/* The network handle: creation from a cfg, forward orchestration, accessors. */
#include "internal.h"

#include <stdio.h>
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

int dn_layer_size_problem(dn_layer *l, int batch, char *why, size_t why_size)
{
    if (l->w < 1 || l->h < 1 || l->c < 1 || l->out_w < 1 || l->out_h < 1 || l->out_c < 1 || l->w > DN_MAX_SIDE ||
        l->h > DN_MAX_SIDE || l->out_w > DN_MAX_SIDE || l->out_h > DN_MAX_SIDE) {
        snprintf(why, why_size, "input %dx%dx%d or output %dx%dx%d is outside [1, %d] pixels", l->w, l->h, l->c,
                 l->out_w, l->out_h, l->out_c, DN_MAX_SIDE);
        return 1;
    }
    if (l->c > DN_MAX_CHANNELS * 8 || l->out_c > DN_MAX_CHANNELS) {
        snprintf(why, why_size, "%d output channels are more than %d", l->out_c, DN_MAX_CHANNELS);
        return 1;
    }
    size_t plane, inputs, outputs;
    if (!dn_mul_within((size_t)l->w * l->h, (size_t)l->c, DN_MAX_LAYER_FLOATS, &inputs) ||
        !dn_mul_within((size_t)l->out_w, (size_t)l->out_h, DN_MAX_LAYER_FLOATS, &plane) ||
        !dn_mul_within(plane, (size_t)l->out_c, DN_MAX_LAYER_FLOATS, &outputs)) {
        snprintf(why, why_size, "%dx%dx%d -> %dx%dx%d is more than %zu values per image", l->w, l->h, l->c,
                 l->out_w, l->out_h, l->out_c, DN_MAX_LAYER_FLOATS);
        return 1;
    }
    l->inputs = inputs;
    l->outputs = outputs;
    size_t all;
    if (!dn_mul_within(outputs > inputs ? outputs : inputs, (size_t)batch, DN_MAX_BUFFER_FLOATS, &all)) {
        snprintf(why, why_size, "batch=%d images of %zu values are more than %zu", batch,
                 outputs > inputs ? outputs : inputs, DN_MAX_BUFFER_FLOATS);
        return 2;
    }
    if (l->type == DN_LAYER_CONVOLUTIONAL && dn_convolutional_workspace(l, 1) > DN_MAX_BUFFER_FLOATS) {
        snprintf(why, why_size, "its im2col workspace (%zu values) is more than %zu", dn_convolutional_workspace(l, 1),
                 DN_MAX_BUFFER_FLOATS);
        return 1;
    }
    return 0;
}

static void free_training_buffers(dn_layer *l)
{
    free(l->delta);
    free(l->act_input);
    free(l->bn_x_norm);
    free(l->indexes);
    l->delta = l->act_input = l->bn_x_norm = NULL;
    l->indexes = NULL;
}

static void free_layer(dn_layer *l)
{
    free_training_buffers(l);
    free(l->bn_mean);
    free(l->bn_variance);
    free(l->weight_updates);
    free(l->bias_updates);
    free(l->scale_updates);
    free(l->output);
    free(l->weights);
    free(l->biases);
    free(l->scales);
    free(l->rolling_mean);
    free(l->rolling_variance);
    free(l->winograd_kernels);
    free(l->winograd_data_kernels);
    free(l->packed_weights);
    free(l->packed_weights_bf16);
}

void dn_network_free(dn_network *net)
{
    if (!net) return;
#ifdef DN_GPU
    dn_gpu_release(net);
#endif
    for (int i = 0; i < net->n && net->layers; ++i) free_layer(&net->layers[i]);
    dn_onednn_release(net);
    free(net->layers);
    free(net->train_input);
    free(net->backward_scratch);
    free(net->winograd_grads);
    free(net->workspace);
    free(net->cfg_path);
    free(net);
}

/* The workspace for the layers' current shapes and `threads` threads (a new buffer: the old one
 * is kept when this fails). */
static dn_status remake_workspace(dn_network *net, int threads)
{
    size_t floats = 0;
    for (int i = 0; i < net->n; ++i) {
        const dn_layer *l = &net->layers[i];
        if (l->type == DN_LAYER_CONVOLUTIONAL && dn_convolutional_workspace(l, threads) > floats)
            floats = dn_convolutional_workspace(l, threads);
    }
    float *fresh = dn_calloc(floats, sizeof(float));
    if (!fresh) return dn_fail(DN_ERR_MEMORY, "out of memory for the %zu-float workspace", floats);
    free(net->workspace);
    net->workspace = fresh;
    net->workspace_size = floats;
    return DN_OK;
}

dn_status dn_network_set_threads(dn_network *net, int threads)
{
    dn_clear_error();
    if (!net) return dn_fail(DN_ERR_ARGUMENT, "network is NULL");
    if (threads < 1 || threads > DN_MAX_THREADS)
        return dn_fail(DN_ERR_ARGUMENT, "threads must be in [1, %d], got %d", DN_MAX_THREADS, threads);
    if (threads == net->threads) return DN_OK;
    dn_status st = remake_workspace(net, threads);
    if (st == DN_OK) net->threads = threads;
    return st;
}

int dn_network_threads(const dn_network *net) { return net ? net->threads : 0; }

int dn_precision_supported(int precision)
{
    if (precision == DN_PRECISION_FP32) return 1;
    if (precision == DN_PRECISION_BF16) return dn_cpu_has_bf16();
    return 0;
}

const char *dn_cpu_bf16_kernel(void) { return dn_bf16_kernel_name(dn_bf16_best_kernel()); }

dn_status dn_network_set_precision(dn_network *net, int precision)
{
    dn_clear_error();
    if (!net) return dn_fail(DN_ERR_ARGUMENT, "network is NULL");
    if (!dn_name(DN_NAMES_PRECISION, precision))
        return dn_fail(DN_ERR_ARGUMENT, "precision must be in [0, %d], got %d", dn_name_count(DN_NAMES_PRECISION) - 1,
                       precision);
    if (!dn_precision_supported(precision))
        return dn_fail(DN_ERR_STATE,
                       "precision %s needs a CPU with AVX512-BF16 (Intel Cooper Lake, Sapphire Rapids or newer; "
                       "AMD Zen 4 or newer), which this one lacks",
                       dn_name(DN_NAMES_PRECISION, precision));
#ifdef DN_GPU
    if (net->gpu && precision != DN_PRECISION_FP32)
        return dn_fail(DN_ERR_STATE, "precision %s runs on the CPU only; this network runs on a GPU",
                       dn_name(DN_NAMES_PRECISION, precision));
#endif
    net->precision = precision;
    return DN_OK;
}

int dn_network_precision(const dn_network *net) { return net ? net->precision : DN_PRECISION_FP32; }

int dn_threads_available(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
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
    net->threads = 1;
    net->frozen_through = -1;
    dn_gemm_single_threaded();
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
        }
        st = remake_workspace(net, net->threads);
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

static dn_status check_images(const dn_network *net, const void *input, int n)
{
    if (!net || !input) return dn_fail(DN_ERR_ARGUMENT, "NULL network or input");
    if (n < 1 || n > net->batch)
        return dn_fail(DN_ERR_ARGUMENT, "%d images given, the network was created for 1 to %d", n, net->batch);
    return DN_OK;
}

static dn_status run_forward(dn_network *net, const float *input, int n, int train)
{
    const int bf16 = !train && net->precision == DN_PRECISION_BF16; /* training runs in fp32 */
    dn_onednn_forget_outputs(net);
    if (bf16) { /* the oneDNN build runs it as one graph, where the network allows */
        int ran;
        const dn_status st = dn_onednn_forward(net, input, n, &ran);
        if (st != DN_OK || ran) return st;
    }
    const dn_bf16_kernel kernel = bf16 ? dn_bf16_best_kernel() : DN_BF16_NONE; /* after oneDNN: a system call */
    for (int i = 0; i < net->n; ++i) {
        if (net->layers[i].type != DN_LAYER_CONVOLUTIONAL) continue;
        dn_status st = dn_convolutional_prepare(&net->layers[i], net->threads);
        if (st == DN_OK && bf16) st = dn_convolutional_prepare_bf16(&net->layers[i], net->threads, kernel);
        if (st != DN_OK) return st;
    }
    net->train = train;
    net->bf16_pass = kernel;
    const float *x = input;
    for (int i = 0; i < net->n; ++i) {
        dn_layer *l = &net->layers[i];
        switch (l->type) {
        case DN_LAYER_CONVOLUTIONAL: dn_convolutional_forward(l, net, x, n); break;
        case DN_LAYER_MAXPOOL: dn_maxpool_forward(l, x, n, net->threads); break;
        case DN_LAYER_ROUTE: dn_route_forward(l, net, n); break;
        case DN_LAYER_SHORTCUT: dn_shortcut_forward(l, net, x, n); break;
        case DN_LAYER_UPSAMPLE: dn_upsample_forward(l, x, n, net->threads); break;
        case DN_LAYER_YOLO: dn_yolo_forward(l, x, n); break;
        }
        x = l->output;
    }
    net->train = 0;
    net->bf16_pass = DN_BF16_NONE;
    return DN_OK;
}

dn_status dn_network_forward(dn_network *net, const float *input, int n)
{
    dn_clear_error();
    dn_status st = check_images(net, input, n);
    if (st != DN_OK) return st;
    net->input = NULL; /* the layers now hold an inference pass: nothing to back-propagate */
#ifdef DN_GPU
    if (net->gpu) return dn_gpu_forward(net, input, n, 0);
#endif
    return run_forward(net, input, n, 0);
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
#ifdef DN_GPU
    if (net->gpu) return dn_gpu_pull_output(net, index, dst, count);
#endif
    if ((st = dn_onednn_materialize(net, index)) != DN_OK) return st;
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
    case DN_PARAM_WEIGHTS_GRAD: *count = l->nweights; return l->weight_updates;
    case DN_PARAM_BIASES_GRAD: *count = (size_t)l->filters; return l->bias_updates;
    case DN_PARAM_SCALES_GRAD: *count = (size_t)l->filters; return l->scale_updates;
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
#ifdef DN_GPU
    if (net->gpu && (st = dn_gpu_pull_params(net, index)) != DN_OK) return st;
#endif
    /* gradients are kept as darknet's update buffers, which hold -dL/dparam */
    const float sign = kind >= DN_PARAM_WEIGHTS_GRAD ? -1.0f : 1.0f;
    for (size_t i = 0; i < size; ++i) dst[i] = sign * array[i];
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
    const float sign = kind >= DN_PARAM_WEIGHTS_GRAD ? -1.0f : 1.0f;
    for (size_t i = 0; i < size; ++i) array[i] = sign * src[i];
    if (kind == DN_PARAM_WEIGHTS) ++net->layers[index].weights_version;
#ifdef DN_GPU
    if (net->gpu) return dn_gpu_push_params(net, index);
#endif
    return DN_OK;
}

/* ---- training ---- */

static float *alloc_floats(size_t count, int *ok)
{
    float *p = dn_calloc(count, sizeof(float));
    if (!p) *ok = 0;
    return p;
}

/* Per-image buffers that follow the layer's size (re-made on resize). */
static int alloc_training_buffers(dn_layer *l, int batch)
{
    int ok = 1;
    const size_t count = (size_t)batch * l->outputs;
    free_training_buffers(l);
    l->delta = alloc_floats(count, &ok);
    /* batch-norm layers compute their activation's input again from bn_x_norm */
    const int batch_norm = l->type == DN_LAYER_CONVOLUTIONAL && l->batch_normalize;
    if ((l->type == DN_LAYER_CONVOLUTIONAL && !batch_norm) || l->type == DN_LAYER_SHORTCUT)
        l->act_input = alloc_floats(count, &ok);
    if (batch_norm) l->bn_x_norm = alloc_floats(count, &ok);
    if (l->type == DN_LAYER_MAXPOOL) {
        l->indexes = dn_calloc(count, sizeof(int));
        if (!l->indexes) ok = 0;
    }
    return ok;
}

static size_t input_floats(const dn_network *net)
{
    return (size_t)net->batch * net->params.channels * net->params.height * net->params.width;
}

static dn_status ensure_training(dn_network *net)
{
    if (!net->train_input) {
        net->train_input = dn_calloc(input_floats(net), sizeof(float));
        if (!net->train_input) return dn_fail(DN_ERR_MEMORY, "out of memory for the training input copy");
    }
#ifdef DN_GPU
    /* the device half may have failed (out of memory) after the host half succeeded */
    if (net->training_ready && net->gpu) return dn_gpu_ensure_training(net);
#endif
    if (net->training_ready) return DN_OK;
    for (int i = 0; i < net->n; ++i) {
        dn_layer *l = &net->layers[i];
        int ok = alloc_training_buffers(l, net->batch);
        if (l->type == DN_LAYER_CONVOLUTIONAL) {
            /* a retry after an out-of-memory failure part-way must not leak the first attempt's */
            free(l->weight_updates);
            free(l->bias_updates);
            free(l->scale_updates);
            free(l->bn_mean);
            free(l->bn_variance);
            l->weight_updates = l->bias_updates = l->scale_updates = l->bn_mean = l->bn_variance = NULL;
            l->weight_updates = alloc_floats(l->nweights, &ok);
            l->bias_updates = alloc_floats((size_t)l->filters, &ok);
            if (l->batch_normalize) {
                l->scale_updates = alloc_floats((size_t)l->filters, &ok);
                l->bn_mean = alloc_floats((size_t)l->filters, &ok);
                l->bn_variance = alloc_floats((size_t)l->filters, &ok);
            }
        }
        if (!ok) return dn_fail(DN_ERR_MEMORY, "out of memory for the training buffers of layer %d", i);
    }
    net->training_ready = 1;
#ifdef DN_GPU
    if (net->gpu) return dn_gpu_ensure_training(net);
#endif
    return DN_OK;
}

/* Floats per piece of zero_deltas' memset (1 MiB). */
#define DN_ZERO_CHUNK 262144

/* Every layer's delta to 0 before a backward pass, the pieces shared among the threads: for
 * yolov4-tiny-416 at batch 16 that is about 500 MB. The first pass touches new pages, whose faults
 * the threads then take side by side (1.85 -> 0.69 s on 2 Zen 3 cores); later passes
 * are bound by memory and gain little (40 -> 37 ms). */
static void zero_deltas(dn_network *net, int n)
{
#pragma omp parallel num_threads(net->threads)
    for (int i = 0; i < net->n; ++i) {
        float *delta = net->layers[i].delta;
        const size_t count = (size_t)n * net->layers[i].outputs;
        const long pieces = (long)((count + DN_ZERO_CHUNK - 1) / DN_ZERO_CHUNK);
#pragma omp for schedule(static) nowait
        for (long c = 0; c < pieces; ++c) {
            const size_t first = (size_t)c * DN_ZERO_CHUNK;
            memset(delta + first, 0, (count - first < DN_ZERO_CHUNK ? count - first : DN_ZERO_CHUNK) * sizeof(float));
        }
    }
}

int dn_frozen_through(const dn_network *net, int iteration)
{
    for (int i = net->n - 1; i >= 0; --i)
        if (net->layers[i].stopbackward > iteration) return i;
    return -1;
}

/* Back-propagate from the deltas already in the layers; `input_delta` (may be NULL) receives
 * -dL/d(input). Stops above the layers frozen by stopbackward at `iteration`. */
/* net->backward_scratch for the current shapes and threads; left NULL (each image's GEMMs are
 * then split over the threads) with one thread or when the memory is not there. */
static void ensure_backward_scratch(dn_network *net)
{
    size_t per_thread = 0;
    for (int i = 0; i < net->n; ++i) {
        const size_t need = dn_convolutional_backward_scratch(&net->layers[i]);
        if (need > per_thread) per_thread = need;
    }
    const size_t floats = net->threads > 1 ? per_thread * (size_t)net->threads : 0;
    if (floats == net->backward_scratch_size) return;
    free(net->backward_scratch);
    net->backward_scratch = floats ? malloc(floats * sizeof(float)) : NULL;
    net->backward_scratch_size = net->backward_scratch ? floats : 0;
}

/* net->winograd_grads for the largest Winograd layer (layers whose need it does not meet take
 * the im2col path). */
static void ensure_winograd_grads(dn_network *net)
{
    size_t floats = 0;
    for (int i = 0; i < net->n; ++i) {
        const size_t need = dn_winograd_grads_floats(&net->layers[i], net->threads);
        if (need > floats) floats = need;
    }
    if (floats == net->winograd_grads_size) return;
    free(net->winograd_grads);
    net->winograd_grads = floats ? calloc(floats, sizeof(float)) : NULL;
    net->winograd_grads_size = net->winograd_grads ? floats : 0;
}

static void run_backward(dn_network *net, float *input_delta, int n, int iteration)
{
    const int frozen = dn_frozen_through(net, iteration);
    if (n >= net->threads) ensure_backward_scratch(net);
    ensure_winograd_grads(net);
    for (int i = net->n - 1; i > frozen; --i) {
        dn_layer *l = &net->layers[i];
        const float *input = i == 0 ? net->input : net->layers[i - 1].output;
        float *in_delta = i == 0 ? input_delta : net->layers[i - 1].delta;
        switch (l->type) {
        case DN_LAYER_CONVOLUTIONAL: dn_convolutional_backward(l, net, input, in_delta, n); break;
        case DN_LAYER_MAXPOOL: dn_maxpool_backward(l, in_delta, n, net->threads); break;
        case DN_LAYER_ROUTE: dn_route_backward(l, net, n); break;
        case DN_LAYER_SHORTCUT: dn_shortcut_backward(l, net, in_delta, n); break;
        case DN_LAYER_UPSAMPLE: dn_upsample_backward(l, in_delta, n, net->threads); break;
        case DN_LAYER_YOLO: dn_yolo_backward(l, in_delta, n); break;
        }
    }
}

/* The input of a training forward, copied: backward reads it after the caller's call returned
 * (and the caller's buffer may be a temporary, or change). */
static const float *keep_training_input(dn_network *net, const float *input, int n)
{
    const size_t per_image = (size_t)net->params.channels * net->params.height * net->params.width;
    memcpy(net->train_input, input, (size_t)n * per_image * sizeof(float));
    net->input = net->train_input;
    net->train_n = n;
    return net->train_input;
}

dn_status dn_network_forward_train(dn_network *net, const float *input, int n)
{
    dn_clear_error();
    dn_status st = check_images(net, input, n);
    if (st == DN_OK) st = ensure_training(net);
    if (st != DN_OK) return st;
    const float *kept = keep_training_input(net, input, n);
#ifdef DN_GPU
    if (net->gpu) return dn_gpu_forward(net, kept, n, 1); /* the device copies it once more */
#endif
    return run_forward(net, kept, n, 1);
}

#ifdef DN_GPU
/* dn_network_backward on the device: the host delta of the last layer carries top_grad over. */
static dn_status gpu_backward(dn_network *net, const float *top_grad, float *input_grad, int n)
{
    dn_layer *last = &net->layers[net->n - 1];
    const size_t count = (size_t)n * last->outputs;
    const size_t in_count = (size_t)n * net->params.channels * net->params.height * net->params.width;
    dn_status st = dn_gpu_zero_deltas(net, n);
    for (size_t i = 0; i < count; ++i) last->delta[i] = -top_grad[i];
    if (st == DN_OK) st = dn_gpu_push_delta(net, net->n - 1, last->delta, count);
    if (st == DN_OK) st = dn_gpu_backward(net, input_grad, n, INT32_MAX);
    if (st == DN_OK && input_grad)
        for (size_t i = 0; i < in_count; ++i) input_grad[i] = -input_grad[i];
    return st;
}
#endif

dn_status dn_network_backward(dn_network *net, const float *top_grad, float *input_grad, int n)
{
    dn_clear_error();
    dn_status st = check_images(net, top_grad, n);
    if (st != DN_OK) return st;
    if (!net->training_ready || !net->input)
        return dn_fail(DN_ERR_STATE, "dn_network_backward needs a dn_network_forward_train first (since the "
                                     "last inference forward or resize)");
    if (n != net->train_n)
        return dn_fail(DN_ERR_ARGUMENT, "backward for %d images after a forward_train of %d", n, net->train_n);
#ifdef DN_GPU
    if (net->gpu) return gpu_backward(net, top_grad, input_grad, n);
#endif
    zero_deltas(net, n);
    dn_layer *last = &net->layers[net->n - 1];
    const size_t count = (size_t)n * last->outputs;
    for (size_t i = 0; i < count; ++i) last->delta[i] = -top_grad[i];
    const size_t in_count = (size_t)n * net->params.channels * net->params.height * net->params.width;
    float *in_delta = NULL;
    if (input_grad) {
        in_delta = dn_calloc(in_count, sizeof(float));
        if (!in_delta) return dn_fail(DN_ERR_MEMORY, "out of memory for the input gradient");
    }
    run_backward(net, in_delta, n, INT32_MAX);
    if (input_grad) {
        for (size_t i = 0; i < in_count; ++i) input_grad[i] = -in_delta[i];
        free(in_delta);
    }
    return DN_OK;
}

dn_status dn_network_copy_delta(const dn_network *net, int index, float *dst, size_t count)
{
    dn_clear_error();
    dn_status st = check_layer(net, index);
    if (st != DN_OK) return st;
    if (!net->training_ready) return dn_fail(DN_ERR_STATE, "no training step has run on this network");
    const dn_layer *l = &net->layers[index];
    if (!dst || count > (size_t)net->batch * l->outputs)
        return dn_fail(DN_ERR_ARGUMENT, "layer %d holds %zu delta values, %zu asked for", index,
                       (size_t)net->batch * l->outputs, count);
#ifdef DN_GPU
    if (net->gpu) return dn_gpu_pull_delta(net, index, dst, count);
#endif
    memcpy(dst, l->delta, count * sizeof(float));
    return DN_OK;
}

dn_status dn_network_zero_grad(dn_network *net)
{
    dn_clear_error();
    if (!net) return dn_fail(DN_ERR_ARGUMENT, "network is NULL");
    dn_status st = ensure_training(net);
    if (st != DN_OK) return st;
    for (int i = 0; i < net->n; ++i) {
        dn_layer *l = &net->layers[i];
        if (l->type != DN_LAYER_CONVOLUTIONAL) continue;
        memset(l->weight_updates, 0, l->nweights * sizeof(float));
        memset(l->bias_updates, 0, (size_t)l->filters * sizeof(float));
        if (l->scale_updates) memset(l->scale_updates, 0, (size_t)l->filters * sizeof(float));
    }
#ifdef DN_GPU
    if (net->gpu) return dn_gpu_zero_updates(net);
#endif
    return DN_OK;
}

dn_status dn_network_train_step(dn_network *net, const float *input, const float *truths, int n, int max_truths,
                                int iteration, dn_train_stats *stats)
{
    dn_clear_error();
    dn_status st = check_images(net, input, n);
    if (st != DN_OK) return st;
    if (!truths || max_truths < 1) return dn_fail(DN_ERR_ARGUMENT, "truths must hold at least one row per image");
    st = ensure_training(net);
    if (st != DN_OK) return st;
    net->frozen_through = dn_frozen_through(net, iteration);
    const float *kept = keep_training_input(net, input, n);
#ifdef DN_GPU
    if (net->gpu) {
        st = dn_gpu_forward(net, kept, n, 1);
        if (st == DN_OK) st = dn_gpu_zero_deltas(net, n);
        if (st != DN_OK) return st;
    } else
#endif
    {
        st = run_forward(net, kept, n, 1);
        if (st != DN_OK) return st;
        zero_deltas(net, n);
    }
    dn_train_stats total;
    memset(&total, 0, sizeof total);
    int yolo_layers = 0;
    for (int i = 0; i < net->n; ++i) {
        dn_layer *l = &net->layers[i];
        if (l->type != DN_LAYER_YOLO) continue;
#ifdef DN_GPU
        /* as darknet does: the yolo deltas are computed on the CPU from the pulled-back output */
        if (net->gpu && (st = dn_gpu_pull_output(net, i, l->output, (size_t)n * l->outputs)) != DN_OK) return st;
#endif
        dn_yolo_deltas(l, net, truths, n, max_truths);
#ifdef DN_GPU
        if (net->gpu && (st = dn_gpu_push_delta(net, i, l->delta, (size_t)n * l->outputs)) != DN_OK) return st;
#endif
        const dn_train_stats *s = &l->stats;
        total.loss += s->loss;
        total.iou_loss += s->iou_loss;
        total.class_loss += s->class_loss;
        /* averages over assigned truths, weighted by how many each layer had */
        total.avg_iou += s->avg_iou * s->count;
        total.avg_obj += s->avg_obj * s->count;
        total.avg_class += s->avg_class * s->count;
        total.recall50 += s->recall50 * s->count;
        total.recall75 += s->recall75 * s->count;
        total.count += s->count;
        ++yolo_layers;
    }
    if (yolo_layers == 0) return dn_fail(DN_ERR_STATE, "the network has no [yolo] layer to train");
    total.loss /= yolo_layers;
    total.iou_loss /= yolo_layers;
    total.class_loss /= yolo_layers;
    if (total.count > 0) {
        total.avg_iou /= total.count;
        total.avg_obj /= total.count;
        total.avg_class /= total.count;
        total.recall50 /= total.count;
        total.recall75 /= total.count;
    }
    if (stats) *stats = total;
    if (!isfinite(total.loss))
        return dn_fail(DN_ERR_STATE, "the training loss is not finite (%f); no gradient was applied", total.loss);
#ifdef DN_GPU
    if (net->gpu) return dn_gpu_backward(net, NULL, n, iteration);
#endif
    run_backward(net, NULL, n, iteration);
    return DN_OK;
}

dn_status dn_network_update(dn_network *net, float learning_rate, float momentum, float decay, int batch_images)
{
    dn_clear_error();
    if (!net) return dn_fail(DN_ERR_ARGUMENT, "network is NULL");
    if (batch_images < 1) return dn_fail(DN_ERR_ARGUMENT, "batch_images must be >= 1, got %d", batch_images);
    if (!isfinite(learning_rate) || !isfinite(momentum) || !isfinite(decay))
        return dn_fail(DN_ERR_ARGUMENT, "learning rate, momentum and decay must be finite");
    dn_status st = ensure_training(net);
    if (st != DN_OK) return st;
#ifdef DN_GPU
    if (net->gpu) return dn_gpu_update(net, learning_rate, momentum, decay, batch_images);
#endif
    /* frozen layers got no gradient: no decay or momentum step either, so they stay exactly as loaded */
    for (int i = net->frozen_through + 1; i < net->n; ++i)
        if (net->layers[i].type == DN_LAYER_CONVOLUTIONAL)
            dn_convolutional_update(&net->layers[i], learning_rate, momentum, decay, batch_images, net->threads);
    return DN_OK;
}

dn_status dn_network_set_seen(dn_network *net, uint64_t seen)
{
    dn_clear_error();
    if (!net) return dn_fail(DN_ERR_ARGUMENT, "network is NULL");
    net->seen = seen;
    return DN_OK;
}

/* Recompute every layer's shape for a new input size; 0 and a message when one does not fit. */
static dn_status reshape_layers(dn_network *net, int width, int height)
{
    int w = width, h = height, c = net->params.channels;
    for (int i = 0; i < net->n; ++i) {
        dn_layer *l = &net->layers[i];
        l->w = w;
        l->h = h;
        l->c = c;
        int ok = 1;
        switch (l->type) {
        case DN_LAYER_CONVOLUTIONAL: ok = dn_convolutional_reshape(l); break;
        case DN_LAYER_MAXPOOL: ok = dn_maxpool_reshape(l); break;
        case DN_LAYER_UPSAMPLE: ok = dn_upsample_reshape(l); break;
        case DN_LAYER_ROUTE: {
            const dn_layer *first = &net->layers[l->input_layers[0]];
            for (int k = 1; k < l->num_inputs; ++k) {
                const dn_layer *in = &net->layers[l->input_layers[k]];
                if (in->out_w != first->out_w || in->out_h != first->out_h) ok = 0;
            }
            l->w = l->out_w = first->out_w;
            l->h = l->out_h = first->out_h;
            l->c = l->out_c;
            break;
        }
        case DN_LAYER_SHORTCUT: {
            const dn_layer *other = &net->layers[l->input_layers[0]];
            ok = other->out_w == l->w && other->out_h == l->h;
            l->out_w = l->w;
            l->out_h = l->h;
            break;
        }
        case DN_LAYER_YOLO:
            l->out_w = l->w;
            l->out_h = l->h;
            break;
        }
        if (!ok)
            return dn_fail(DN_ERR_ARGUMENT, "%s: input %dx%d does not fit layer %d (cfg line %d)", net->cfg_path, width,
                           height, i, l->cfg_line);
        char why[256];
        if (dn_layer_size_problem(l, net->batch, why, sizeof why))
            return dn_fail(DN_ERR_ARGUMENT, "%s: input %dx%d is too large for layer %d (cfg line %d): %s", net->cfg_path,
                           width, height, i, l->cfg_line, why);
        w = l->out_w;
        h = l->out_h;
        c = l->out_c;
    }
    return DN_OK;
}

dn_status dn_network_resize(dn_network *net, int width, int height)
{
    dn_clear_error();
    if (!net) return dn_fail(DN_ERR_ARGUMENT, "network is NULL");
    if (width < 1 || height < 1 || width > DN_MAX_SIDE || height > DN_MAX_SIDE)
        return dn_fail(DN_ERR_ARGUMENT, "resize to %dx%d: sizes must be in [1, %d]", width, height, DN_MAX_SIDE);
    size_t in_floats;
    if (!dn_mul_within((size_t)width * height, (size_t)net->params.channels, DN_MAX_LAYER_FLOATS, &in_floats))
        return dn_fail(DN_ERR_ARGUMENT, "resize to %dx%d: %dx%dx%d is more than %zu values per image", width, height,
                       width, height, net->params.channels, DN_MAX_LAYER_FLOATS);
    const int old_w = net->params.width, old_h = net->params.height;
    net->input = NULL; /* the layers' training state no longer matches any input */
    dn_status st = reshape_layers(net, width, height);
    if (st != DN_OK) {
        reshape_layers(net, old_w, old_h); /* the old size fitted before */
        return st;
    }
    net->params.width = width;
    net->params.height = height;
    for (int i = 0; i < net->n; ++i) {
        dn_layer *l = &net->layers[i];
        st = dn_layer_alloc_output(l, net->batch);
        if (st == DN_OK && net->training_ready && !alloc_training_buffers(l, net->batch))
            st = dn_fail(DN_ERR_MEMORY, "out of memory for the training buffers of layer %d", i);
        if (st != DN_OK) return st;
    }
    if ((st = remake_workspace(net, net->threads)) != DN_OK) return st;
    free(net->train_input); /* re-made at the new size by the next training call */
    net->train_input = NULL;
#ifdef DN_GPU
    if (net->gpu) return dn_gpu_resize(net);
#endif
    return DN_OK;
}

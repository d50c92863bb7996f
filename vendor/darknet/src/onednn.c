/*
 * bf16 inference on oneDNN (the opt-in build: DARKNET_PY_ONEDNN=1, see build_ext.py).
 *
 * The whole network runs as one chain of oneDNN primitives whose activations stay in oneDNN's
 * blocked layouts, in bf16, from layer to layer: convolutions (brgconv: vdpbf16ps on
 * AVX512-BF16, tile multiplies on AMX) with the inference batch norm (a per-filter multiply and
 * add) and the activation as post-ops, max pooling, concatenation (route, groups as channel
 * views), addition (shortcut) and nearest resampling (upsample). Measured on two Zen 4 cores, a
 * layer at a time (our NCHW fp32 in and out, reordered around each convolution) gained nothing:
 * the reorders cost what the faster convolutions saved; kept in bf16 throughout, the network
 * halves its memory traffic as OpenVINO's bf16 does.
 *
 * Numbers: every convolution rounds its input and weights to bf16 (nearest even) and sums the
 * products in fp32 (darknet's formula on bf16 operands), then multiplies, adds and activates in
 * fp32. Unlike the engine's own bf16 path, the values between layers are bf16 too (rounded once,
 * after the activation), and so are pooling, routes and shortcut sums. The convolutions feeding
 * [yolo] layers (and the last layer) write fp32, in NCHW into their l->output, and the engine's
 * own yolo layer reads it. Other layers' l->output is filled only when asked for
 * (dn_onednn_materialize, from dn_network_copy_output).
 *
 * The graph is built for n images, the network's thread count and input size, and rebuilt when
 * any of them changes; the bf16 weights are refreshed when weights_version changes, the batch
 * norm's multipliers and the biases are read afresh on every pass. A network it cannot express
 * (an activation or option oneDNN lacks) runs on the engine's own bf16 path instead.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#ifdef DN_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

/* Channels per block of the layouts the graph keeps its values in (nChw16c). */
#define DN_ONEDNN_CHANNEL_BLOCK 16

/* The most arguments one step passes: a concatenation of every route input, and its output. */
#define DN_ONEDNN_STEP_ARGS (DN_MAX_ROUTE_INPUTS + 1)

typedef struct {
    dnnl_primitive_t primitive; /* NULL: run the engine's yolo layer `yolo` on its input's l->output */
    int yolo;
    int nargs;
    dnnl_exec_arg_t args[DN_ONEDNN_STEP_ARGS];
} step;

/* One convolution's parameters as the graph holds them. */
typedef struct {
    dnnl_primitive_t to_weights; /* l->weights (fp32 OIHW) into `weights` (bf16, the convolution's layout) */
    dnnl_memory_t user_weights, weights, bias, mul, add;
    unsigned weights_version;
    int weights_ready;
} conv_params;

typedef struct {
    dnnl_memory_t *items;
    int count, capacity;
} memory_list;

struct dn_onednn {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    /* the graph, for `images` images, `threads` threads and a w x h input; none while images is 0 */
    int images, threads, w, h;
    int layers;
    dnnl_memory_t user_input;      /* the network input, fp32 NCHW (its handle set on every pass) */
    dnnl_memory_t *outputs;        /* per layer: its output inside the graph (one of `owned`, or a view) */
    dnnl_memory_t *user_outputs;   /* per layer: l->output as fp32 NCHW, made when a step or a copy needs it */
    unsigned char *materialized;   /* per layer: l->output holds the last pass's values */
    conv_params *convs;            /* per layer (convolutions only) */
    step *steps;
    int nsteps, steps_capacity;
    memory_list owned;             /* every memory of the graph but the per-layer user outputs */
    dnnl_primitive_t *primitives;
    int nprimitives, primitives_capacity;
    int outputs_pending;           /* the last forward was a graph pass (outputs not all in l->output) */
};

static dn_status onednn_failed(dnnl_status_t s, const char *what, int layer)
{
    if (layer < 0)
        return dn_fail(s == dnnl_out_of_memory ? DN_ERR_MEMORY : DN_ERR_STATE, "oneDNN: %s failed (%s)", what,
                       dnnl_status2str(s));
    return dn_fail(s == dnnl_out_of_memory ? DN_ERR_MEMORY : DN_ERR_STATE, "oneDNN: %s failed for layer %d (%s)",
                   what, layer, dnnl_status2str(s));
}

/* Calls below run inside functions with a `dn_status st` and a `done:` label, and a `layer` index. */
#define TRY(call, what)                                                          \
    do {                                                                         \
        const dnnl_status_t status_ = (call);                                    \
        if (status_ != dnnl_success) {                                           \
            st = onednn_failed(status_, what, layer);                            \
            goto done;                                                           \
        }                                                                        \
    } while (0)

/* The OpenMP thread count oneDNN reads (omp_get_max_threads) set to the network's, for one call. */
static int use_threads(int threads)
{
#ifdef _OPENMP
    const int before = omp_get_max_threads();
    omp_set_num_threads(threads);
    return before;
#else
    (void)threads;
    return 1;
#endif
}

static void restore_threads(int before)
{
#ifdef _OPENMP
    omp_set_num_threads(before);
#else
    (void)before;
#endif
}

/* Growth of the graph's arrays: 0 when out of memory. */
static int grow(void **items, int *capacity, int needed, size_t size)
{
    if (needed <= *capacity) return 1;
    const int wanted = needed > 2 * *capacity ? needed : 2 * *capacity;
    void *more = realloc(*items, (size_t)wanted * size);
    if (!more) return 0;
    *items = more;
    *capacity = wanted;
    return 1;
}

static dnnl_status_t keep_memory(struct dn_onednn *g, dnnl_memory_t m)
{
    if (!grow((void **)&g->owned.items, &g->owned.capacity, g->owned.count + 1, sizeof(dnnl_memory_t))) {
        dnnl_memory_destroy(m);
        return dnnl_out_of_memory;
    }
    g->owned.items[g->owned.count++] = m;
    return dnnl_success;
}

/* A memory of the graph for `md` (allocated by oneDNN, or over `handle`). */
static dnnl_status_t new_memory(struct dn_onednn *g, const_dnnl_memory_desc_t md, void *handle, dnnl_memory_t *out)
{
    dnnl_status_t s = dnnl_memory_create(out, md, g->engine, handle);
    if (s == dnnl_success) s = keep_memory(g, *out);
    return s;
}

/* A primitive of the graph for a descriptor (which stays the caller's). */
static dnnl_status_t new_primitive(struct dn_onednn *g, const_dnnl_primitive_desc_t pd, dnnl_primitive_t *out)
{
    dnnl_status_t s = dnnl_primitive_create(out, pd);
    if (s != dnnl_success) return s;
    if (!grow((void **)&g->primitives, &g->primitives_capacity, g->nprimitives + 1, sizeof(dnnl_primitive_t))) {
        dnnl_primitive_destroy(*out);
        return dnnl_out_of_memory;
    }
    g->primitives[g->nprimitives++] = *out;
    return dnnl_success;
}

/* A step running `p` with the given (argument, memory) pairs. */
static dnnl_status_t add_step(struct dn_onednn *g, dnnl_primitive_t p, int yolo, int nargs, const dnnl_exec_arg_t *args)
{
    if (!grow((void **)&g->steps, &g->steps_capacity, g->nsteps + 1, sizeof(step))) return dnnl_out_of_memory;
    step *s = &g->steps[g->nsteps++];
    s->primitive = p;
    s->yolo = yolo;
    s->nargs = nargs;
    if (nargs) memcpy(s->args, args, (size_t)nargs * sizeof *args);
    return dnnl_success;
}

/* A step copying memory `from` into memory `to` (layout or number format may differ). */
static dnnl_status_t add_reorder(struct dn_onednn *g, dnnl_memory_t from, dnnl_memory_t to, dnnl_primitive_t *made)
{
    const_dnnl_memory_desc_t from_md, to_md;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t s = dnnl_memory_get_memory_desc(from, &from_md);
    if (s == dnnl_success) s = dnnl_memory_get_memory_desc(to, &to_md);
    if (s == dnnl_success) s = dnnl_reorder_primitive_desc_create(&pd, from_md, g->engine, to_md, g->engine, NULL);
    dnnl_primitive_t p;
    if (s == dnnl_success) s = new_primitive(g, pd, &p);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (s != dnnl_success) return s;
    if (made) {
        *made = p;
        return dnnl_success;
    }
    const dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    return add_step(g, p, -1, 2, args);
}

/* `m` as a primitive wants it (descriptor `wanted`): m itself, or a copy made by a reorder step. */
static dnnl_status_t adapt(struct dn_onednn *g, dnnl_memory_t m, const_dnnl_memory_desc_t wanted, dnnl_memory_t *out)
{
    const_dnnl_memory_desc_t md;
    dnnl_status_t s = dnnl_memory_get_memory_desc(m, &md);
    if (s != dnnl_success) return s;
    if (dnnl_memory_desc_equal(md, wanted)) {
        *out = m;
        return dnnl_success;
    }
    s = new_memory(g, wanted, DNNL_MEMORY_ALLOCATE, out);
    return s == dnnl_success ? add_reorder(g, m, *out, NULL) : s;
}

/* The same values as `m` (n x c x h x w) in bf16: m itself when it already is. */
static dnnl_status_t as_bf16(struct dn_onednn *g, dnnl_memory_t m, const int64_t *dims, dnnl_memory_t *out)
{
    const_dnnl_memory_desc_t md;
    dnnl_status_t s = dnnl_memory_get_memory_desc(m, &md);
    dnnl_data_type_t type;
    if (s == dnnl_success) s = dnnl_memory_desc_query(md, dnnl_query_data_type, &type);
    if (s != dnnl_success) return s;
    if (type == dnnl_bf16) {
        *out = m;
        return dnnl_success;
    }
    dnnl_memory_desc_t wanted;
    const dnnl_dims_t all = {dims[0], dims[1], dims[2], dims[3]};
    s = dnnl_memory_desc_create_with_tag(&wanted, 4, all, dnnl_bf16, dnnl_nChw16c);
    if (s != dnnl_success) return s;
    s = adapt(g, m, wanted, out);
    dnnl_memory_desc_destroy(wanted);
    return s;
}

/* l->output of layer i (n images) as fp32 NCHW: made once per graph, its handle set every pass. */
static dnnl_status_t user_output(struct dn_onednn *g, const struct dn_network *net, int i, dnnl_memory_t *out)
{
    if (g->user_outputs[i]) {
        *out = g->user_outputs[i];
        return dnnl_success;
    }
    const dn_layer *l = &net->layers[i];
    const dnnl_dims_t dims = {g->images, l->out_c, l->out_h, l->out_w};
    dnnl_memory_desc_t md;
    dnnl_status_t s = dnnl_memory_desc_create_with_tag(&md, 4, dims, dnnl_f32, dnnl_nchw);
    if (s != dnnl_success) return s;
    s = dnnl_memory_create(out, md, g->engine, l->output);
    dnnl_memory_desc_destroy(md);
    if (s == dnnl_success) g->user_outputs[i] = *out;
    return s;
}

/* The eltwise post-op of an activation; 0 where oneDNN has none (linear: nothing to append). */
static int append_activation(dnnl_post_ops_t ops, dn_activation a)
{
    switch (a) {
    case DN_ACT_LINEAR: return 1;
    case DN_ACT_LEAKY: return dnnl_post_ops_append_eltwise(ops, dnnl_eltwise_relu, 0.1f, 0) == dnnl_success;
    case DN_ACT_RELU: return dnnl_post_ops_append_eltwise(ops, dnnl_eltwise_relu, 0, 0) == dnnl_success;
    case DN_ACT_LOGISTIC: return dnnl_post_ops_append_eltwise(ops, dnnl_eltwise_logistic, 0, 0) == dnnl_success;
    case DN_ACT_MISH: return dnnl_post_ops_append_eltwise(ops, dnnl_eltwise_mish, 0, 0) == dnnl_success;
    case DN_ACT_SWISH: return dnnl_post_ops_append_eltwise(ops, dnnl_eltwise_swish, 1.0f, 0) == dnnl_success;
    }
    return 0;
}

/* The padding after the input along a side of `in` values that gives darknet's output size
 * (`out`, rounded down from (in + pads - size) / stride + 1): can be negative, which the graph
 * does not take. */
static int padding_after(int in, int out, int size, int stride, int before)
{
    return (out - 1) * stride + size - in - before;
}

/* What the graph cannot express: it then stays unbuilt and the engine's own path runs. */
static int expressible(const struct dn_network *net)
{
    for (int i = 0; i < net->n; ++i) {
        const dn_layer *l = &net->layers[i];
        switch (l->type) {
        case DN_LAYER_CONVOLUTIONAL:
            if (l->groups != 1 || padding_after(l->w, l->out_w, l->size, l->stride, l->pad) < 0 ||
                padding_after(l->h, l->out_h, l->size, l->stride, l->pad) < 0)
                return 0;
            break;
        case DN_LAYER_MAXPOOL: /* darknet's window starts pad / 2 before the input */
            if (padding_after(l->w, l->out_w, l->size, l->stride, l->pad / 2) < 0 ||
                padding_after(l->h, l->out_h, l->size, l->stride, l->pad / 2) < 0)
                return 0;
            break;
        case DN_LAYER_UPSAMPLE:
            if (l->upsample_scale != 1.0f) return 0;
            break;
        case DN_LAYER_ROUTE: /* channel views must start and end on whole blocks of the blocked layouts */
            for (int j = 0; j < l->num_inputs && l->route_groups > 1; ++j)
                if (net->layers[l->input_layers[j]].out_c / l->route_groups % DN_ONEDNN_CHANNEL_BLOCK) return 0;
            break;
        case DN_LAYER_SHORTCUT:
        case DN_LAYER_YOLO:
            break;
        default:
            return 0;
        }
        if (i + 1 < net->n && l->type == DN_LAYER_YOLO) {
            const dn_layer *next = &net->layers[i + 1];
            if (next->type != DN_LAYER_ROUTE && next->type != DN_LAYER_YOLO) return 0; /* reads a yolo output */
        }
        if (l->type == DN_LAYER_ROUTE || l->type == DN_LAYER_SHORTCUT)
            for (int j = 0; j < l->num_inputs; ++j)
                if (net->layers[l->input_layers[j]].type == DN_LAYER_YOLO) return 0;
    }
    return 1;
}

/* Layer i's output leaves the graph: a [yolo] layer reads it, or it is the network's output. */
static int leaves_graph(const struct dn_network *net, int i)
{
    return i == net->n - 1 || (i + 1 < net->n && net->layers[i + 1].type == DN_LAYER_YOLO);
}

static dn_status build_conv(struct dn_onednn *g, struct dn_network *net, int layer, dnnl_memory_t input)
{
    dn_status st = DN_OK;
    dn_layer *l = &net->layers[layer];
    conv_params *c = &g->convs[layer];
    const int out_f32 = leaves_graph(net, layer);
    const dnnl_dims_t src_dims = {g->images, l->c, l->h, l->w}, weights_dims = {l->filters, l->c, l->size, l->size};
    const dnnl_dims_t dst_dims = {g->images, l->filters, l->out_h, l->out_w}, channel_dims = {1, l->filters, 1, 1};
    const dnnl_dims_t bias_dims = {l->filters}, strides = {l->stride, l->stride}, dilation = {0, 0};
    const dnnl_dims_t pad_before = {l->pad, l->pad};
    const dnnl_dims_t pad_after = {padding_after(l->h, l->out_h, l->size, l->stride, l->pad),
                                   padding_after(l->w, l->out_w, l->size, l->stride, l->pad)};
    dnnl_memory_desc_t src_md = NULL, weights_md = NULL, user_weights_md = NULL, dst_md = NULL, channel_md = NULL;
    dnnl_memory_desc_t bias_md = NULL;
    dnnl_post_ops_t ops = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    TRY(dnnl_memory_desc_create_with_tag(&src_md, 4, src_dims, dnnl_bf16, dnnl_format_tag_any), "a descriptor");
    TRY(dnnl_memory_desc_create_with_tag(&weights_md, 4, weights_dims, dnnl_bf16, dnnl_format_tag_any), "a descriptor");
    TRY(dnnl_memory_desc_create_with_tag(&user_weights_md, 4, weights_dims, dnnl_f32, dnnl_oihw), "a descriptor");
    TRY(dnnl_memory_desc_create_with_tag(&dst_md, 4, dst_dims, out_f32 ? dnnl_f32 : dnnl_bf16, dnnl_format_tag_any),
        "a descriptor");
    TRY(dnnl_memory_desc_create_with_tag(&channel_md, 4, channel_dims, dnnl_f32, dnnl_nchw), "a descriptor");
    TRY(dnnl_post_ops_create(&ops), "the post-ops");
    if (l->batch_normalize) { /* x * mul + add, as dn_convolutional_affine folds it */
        TRY(dnnl_post_ops_append_binary(ops, dnnl_binary_mul, channel_md), "the batch norm's multiply");
        TRY(dnnl_post_ops_append_binary(ops, dnnl_binary_add, channel_md), "the batch norm's add");
    } else {
        TRY(dnnl_memory_desc_create_with_tag(&bias_md, 1, bias_dims, dnnl_f32, dnnl_a), "a descriptor");
    }
    if (!append_activation(ops, l->activation)) {
        st = dn_fail(DN_ERR_STATE, "oneDNN: no post-op for the activation of layer %d", layer);
        goto done;
    }
    TRY(dnnl_primitive_attr_create(&attr), "the attributes");
    TRY(dnnl_primitive_attr_set_post_ops(attr, ops), "the post-ops");
    TRY(dnnl_convolution_forward_primitive_desc_create(&pd, g->engine, dnnl_forward_inference, dnnl_convolution_direct,
                                                       src_md, weights_md, bias_md, dst_md, strides, dilation,
                                                       pad_before, pad_after, attr),
        "the convolution's descriptor");
    dnnl_memory_t src, dst;
    TRY(adapt(g, input, dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0), &src), "the input's reorder");
    TRY(new_memory(g, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), DNNL_MEMORY_ALLOCATE, &dst), "the output");
    TRY(new_memory(g, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), DNNL_MEMORY_ALLOCATE, &c->weights),
        "the bf16 weights");
    TRY(new_memory(g, user_weights_md, l->weights, &c->user_weights), "the weights");
    TRY(add_reorder(g, c->user_weights, c->weights, &c->to_weights), "the weights' reorder");
    dnnl_exec_arg_t args[DN_ONEDNN_STEP_ARGS] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, c->weights}, {DNNL_ARG_DST, dst}};
    int nargs = 3;
    if (l->batch_normalize) {
        TRY(new_memory(g, channel_md, DNNL_MEMORY_ALLOCATE, &c->mul), "the batch norm's multipliers");
        TRY(new_memory(g, channel_md, DNNL_MEMORY_ALLOCATE, &c->add), "the batch norm's offsets");
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, c->mul};
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_MULTIPLE_POST_OP(1) | DNNL_ARG_SRC_1, c->add};
    } else {
        TRY(new_memory(g, bias_md, l->biases, &c->bias), "the biases");
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, c->bias};
    }
    dnnl_primitive_t conv;
    TRY(new_primitive(g, pd, &conv), "the convolution");
    TRY(add_step(g, conv, -1, nargs, args), "a step");
    g->outputs[layer] = dst;
done:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (ops) dnnl_post_ops_destroy(ops);
    dnnl_memory_desc_t descriptors[] = {src_md, weights_md, user_weights_md, dst_md, channel_md, bias_md};
    for (size_t i = 0; i < sizeof descriptors / sizeof *descriptors; ++i)
        if (descriptors[i]) dnnl_memory_desc_destroy(descriptors[i]);
    return st;
}

/* A step of a primitive of one source and one destination (pooling, resampling) reading `src`. */
static dn_status build_simple(struct dn_onednn *g, int layer, const_dnnl_primitive_desc_t pd, dnnl_memory_t src)
{
    dn_status st = DN_OK;
    dnnl_memory_t dst;
    dnnl_primitive_t p;
    TRY(new_memory(g, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), DNNL_MEMORY_ALLOCATE, &dst), "the output");
    TRY(new_primitive(g, pd, &p), "the primitive");
    const dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}};
    TRY(add_step(g, p, -1, 2, args), "a step");
    g->outputs[layer] = dst;
done:
    return st;
}

static dn_status build_layer(struct dn_onednn *g, struct dn_network *net, int layer)
{
    dn_status st = DN_OK;
    dn_layer *l = &net->layers[layer];
    const dnnl_dims_t out_dims = {g->images, l->out_c, l->out_h, l->out_w};
    dnnl_memory_desc_t dst_md = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    dnnl_memory_desc_t views[DN_MAX_ROUTE_INPUTS] = {0};
    const dnnl_memory_t previous = layer ? g->outputs[layer - 1] : g->user_input;
    switch (l->type) {
    case DN_LAYER_CONVOLUTIONAL:
        return build_conv(g, net, layer, previous);
    case DN_LAYER_MAXPOOL: {
        const_dnnl_memory_desc_t src_md;
        const int before = l->pad / 2;
        const dnnl_dims_t strides = {l->stride, l->stride}, kernel = {l->size, l->size}, dilation = {0, 0};
        const dnnl_dims_t pad_before = {before, before};
        const dnnl_dims_t pad_after = {padding_after(l->h, l->out_h, l->size, l->stride, before),
                                       padding_after(l->w, l->out_w, l->size, l->stride, before)};
        TRY(dnnl_memory_desc_create_with_tag(&dst_md, 4, out_dims, dnnl_bf16, dnnl_format_tag_any), "a descriptor");
        dnnl_memory_t src;
        TRY(as_bf16(g, previous, (const int64_t[]){g->images, l->c, l->h, l->w}, &src), "the input");
        TRY(dnnl_memory_get_memory_desc(src, &src_md), "the input");
        TRY(dnnl_pooling_forward_primitive_desc_create(&pd, g->engine, dnnl_forward_inference, dnnl_pooling_max, src_md,
                                                       dst_md, strides, kernel, dilation, pad_before, pad_after, NULL),
            "the pooling's descriptor");
        st = build_simple(g, layer, pd, src);
        break;
    }
    case DN_LAYER_UPSAMPLE: {
        const float factors[] = {(float)l->upsample_stride, (float)l->upsample_stride};
        dnnl_memory_t src;
        const_dnnl_memory_desc_t src_md;
        TRY(as_bf16(g, previous, (const int64_t[]){g->images, l->c, l->h, l->w}, &src), "the input");
        TRY(dnnl_memory_get_memory_desc(src, &src_md), "the input");
        TRY(dnnl_memory_desc_create_with_tag(&dst_md, 4, out_dims, dnnl_bf16, dnnl_format_tag_any), "a descriptor");
        TRY(dnnl_resampling_forward_primitive_desc_create(&pd, g->engine, dnnl_forward_inference,
                                                          dnnl_resampling_nearest, factors, src_md, dst_md, NULL),
            "the resampling's descriptor");
        st = build_simple(g, layer, pd, src);
        break;
    }
    case DN_LAYER_SHORTCUT: {
        const dn_layer *other = &net->layers[l->input_layers[0]];
        const int64_t dims[] = {g->images, l->c, l->h, l->w};
        dnnl_memory_t a, b, dst;
        TRY(as_bf16(g, previous, dims, &a), "the input");
        TRY(as_bf16(g, g->outputs[other->index], dims, &b), "the shortcut's input");
        const_dnnl_memory_desc_t a_md, b_md;
        TRY(dnnl_memory_get_memory_desc(a, &a_md), "the input");
        TRY(dnnl_memory_get_memory_desc(b, &b_md), "the input");
        TRY(dnnl_memory_desc_create_with_tag(&dst_md, 4, out_dims, leaves_graph(net, layer) ? dnnl_f32 : dnnl_bf16,
                                             dnnl_format_tag_any), "a descriptor");
        TRY(dnnl_post_ops_create(&ops), "the post-ops");
        if (!append_activation(ops, l->activation)) {
            st = dn_fail(DN_ERR_STATE, "oneDNN: no post-op for the activation of layer %d", layer);
            goto done;
        }
        TRY(dnnl_primitive_attr_create(&attr), "the attributes");
        TRY(dnnl_primitive_attr_set_post_ops(attr, ops), "the post-ops");
        TRY(dnnl_binary_primitive_desc_create(&pd, g->engine, dnnl_binary_add, a_md, b_md, dst_md, attr),
            "the addition's descriptor");
        TRY(new_memory(g, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), DNNL_MEMORY_ALLOCATE, &dst), "the output");
        dnnl_primitive_t p;
        TRY(new_primitive(g, pd, &p), "the addition");
        const dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC_0, a}, {DNNL_ARG_SRC_1, b}, {DNNL_ARG_DST, dst}};
        TRY(add_step(g, p, -1, 3, args), "a step");
        g->outputs[layer] = dst;
        break;
    }
    case DN_LAYER_ROUTE: {
        dnnl_memory_t sources[DN_MAX_ROUTE_INPUTS];
        const_dnnl_memory_desc_t source_mds[DN_MAX_ROUTE_INPUTS];
        for (int j = 0; j < l->num_inputs; ++j) {
            const dn_layer *in = &net->layers[l->input_layers[j]];
            const int64_t dims[] = {g->images, in->out_c, in->out_h, in->out_w};
            dnnl_memory_t whole;
            TRY(as_bf16(g, g->outputs[in->index], dims, &whole), "a route input");
            if (l->route_groups > 1) { /* channels [id * part, (id + 1) * part) of the input */
                const int part = in->out_c / l->route_groups;
                const_dnnl_memory_desc_t whole_md;
                void *handle;
                TRY(dnnl_memory_get_memory_desc(whole, &whole_md), "a route input");
                const dnnl_dims_t view_dims = {g->images, part, in->out_h, in->out_w};
                const dnnl_dims_t offsets = {0, (int64_t)part * l->route_group_id, 0, 0};
                TRY(dnnl_memory_desc_create_submemory(&views[j], whole_md, view_dims, offsets), "a channel view");
                TRY(dnnl_memory_get_data_handle(whole, &handle), "a channel view");
                TRY(new_memory(g, views[j], handle, &sources[j]), "a channel view");
            } else {
                sources[j] = whole;
            }
            TRY(dnnl_memory_get_memory_desc(sources[j], &source_mds[j]), "a route input");
        }
        if (l->num_inputs == 1 && l->route_groups == 1) { /* the input itself */
            g->outputs[layer] = sources[0];
            break;
        }
        TRY(dnnl_concat_primitive_desc_create(&pd, g->engine, NULL, l->num_inputs, 1, source_mds, NULL),
            "the concatenation's descriptor");
        dnnl_memory_t dst;
        TRY(new_memory(g, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), DNNL_MEMORY_ALLOCATE, &dst), "the output");
        dnnl_primitive_t p;
        TRY(new_primitive(g, pd, &p), "the concatenation");
        dnnl_exec_arg_t args[DN_ONEDNN_STEP_ARGS];
        for (int j = 0; j < l->num_inputs; ++j) args[j] = (dnnl_exec_arg_t){DNNL_ARG_MULTIPLE_SRC + j, sources[j]};
        args[l->num_inputs] = (dnnl_exec_arg_t){DNNL_ARG_DST, dst};
        TRY(add_step(g, p, -1, l->num_inputs + 1, args), "a step");
        g->outputs[layer] = dst;
        break;
    }
    case DN_LAYER_YOLO: { /* the engine's own layer, on its input in fp32 NCHW */
        dnnl_memory_t user;
        TRY(user_output(g, net, layer - 1, &user), "the yolo layer's input");
        TRY(add_reorder(g, previous, user, NULL), "the yolo layer's input");
        TRY(add_step(g, NULL, layer, 0, NULL), "a step");
        g->outputs[layer] = NULL;
        break;
    }
    }
done:
    for (int j = 0; j < DN_MAX_ROUTE_INPUTS; ++j)
        if (views[j]) dnnl_memory_desc_destroy(views[j]);
    if (dst_md) dnnl_memory_desc_destroy(dst_md);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (ops) dnnl_post_ops_destroy(ops);
    return st;
}

/* Everything of the graph, not the engine and stream. */
static void release_graph(struct dn_onednn *g)
{
    for (int i = 0; i < g->nprimitives; ++i) dnnl_primitive_destroy(g->primitives[i]);
    for (int i = 0; i < g->owned.count; ++i) dnnl_memory_destroy(g->owned.items[i]);
    for (int i = 0; i < g->layers && g->user_outputs; ++i)
        if (g->user_outputs[i]) dnnl_memory_destroy(g->user_outputs[i]);
    if (g->user_input) dnnl_memory_destroy(g->user_input);
    free(g->primitives);
    free(g->owned.items);
    free(g->user_outputs);
    free(g->outputs);
    free(g->materialized);
    free(g->convs);
    free(g->steps);
    const dnnl_engine_t engine = g->engine;
    const dnnl_stream_t stream = g->stream;
    memset(g, 0, sizeof *g);
    g->engine = engine;
    g->stream = stream;
}

static dn_status build_graph(struct dn_onednn *g, struct dn_network *net, int n)
{
    dn_status st = DN_OK;
    int layer = -1;
    g->layers = net->n;
    g->outputs = calloc((size_t)net->n, sizeof *g->outputs);
    g->user_outputs = calloc((size_t)net->n, sizeof *g->user_outputs);
    g->materialized = calloc((size_t)net->n, 1);
    g->convs = calloc((size_t)net->n, sizeof *g->convs);
    if (!g->outputs || !g->user_outputs || !g->materialized || !g->convs) {
        st = dn_fail(DN_ERR_MEMORY, "out of memory for the oneDNN graph");
        goto done;
    }
    g->images = n;
    g->threads = net->threads;
    g->w = net->layers[0].w;
    g->h = net->layers[0].h;
    const dnnl_dims_t input_dims = {n, net->layers[0].c, net->layers[0].h, net->layers[0].w};
    dnnl_memory_desc_t input_md;
    TRY(dnnl_memory_desc_create_with_tag(&input_md, 4, input_dims, dnnl_f32, dnnl_nchw), "the input's descriptor");
    const dnnl_status_t s = dnnl_memory_create(&g->user_input, input_md, g->engine, DNNL_MEMORY_NONE);
    dnnl_memory_desc_destroy(input_md);
    TRY(s, "the input");
    for (layer = 0; layer < net->n; ++layer)
        if ((st = build_layer(g, net, layer)) != DN_OK) goto done;
    layer = net->n - 1;
    if (net->layers[layer].type != DN_LAYER_YOLO) { /* the network's output in its l->output */
        dnnl_memory_t user;
        TRY(user_output(g, net, layer, &user), "the network's output");
        TRY(add_reorder(g, g->outputs[layer], user, NULL), "the network's output");
    }
done:
    if (st != DN_OK) release_graph(g);
    return st;
}

/* The bf16 weights (on a change) and the batch norm's multipliers and offsets (every pass). */
static dn_status refresh_parameters(struct dn_onednn *g, struct dn_network *net)
{
    dn_status st = DN_OK;
    int layer;
    for (layer = 0; layer < net->n; ++layer) {
        dn_layer *l = &net->layers[layer];
        conv_params *c = &g->convs[layer];
        if (l->type != DN_LAYER_CONVOLUTIONAL) continue;
        if (!c->weights_ready || c->weights_version != l->weights_version) {
            TRY(dnnl_memory_set_data_handle(c->user_weights, l->weights), "the weights");
            const dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, c->user_weights}, {DNNL_ARG_TO, c->weights}};
            TRY(dnnl_primitive_execute(c->to_weights, g->stream, 2, args), "the weights' reorder");
            c->weights_version = l->weights_version;
            c->weights_ready = 1;
        }
        if (l->batch_normalize) {
            float *mul, *add;
            TRY(dnnl_memory_get_data_handle(c->mul, (void **)&mul), "the batch norm");
            TRY(dnnl_memory_get_data_handle(c->add, (void **)&add), "the batch norm");
            for (int f = 0; f < l->filters; ++f) dn_convolutional_affine(l, f, &mul[f], &add[f]);
        } else {
            TRY(dnnl_memory_set_data_handle(c->bias, l->biases), "the biases");
        }
    }
    layer = -1;
    TRY(dnnl_stream_wait(g->stream), "the weights' reorder");
done:
    return st;
}

int dn_onednn_version(void)
{
    const dnnl_version_t *v = dnnl_version();
    return v->major * 10000 + v->minor * 100 + v->patch;
}

dn_status dn_onednn_forward(struct dn_network *net, const float *input, int n, int *ran)
{
    dn_status st = DN_OK;
    int layer = -1;
    *ran = 0;
    if (!expressible(net)) return DN_OK;
    struct dn_onednn *g = net->onednn;
    if (!g) {
        g = calloc(1, sizeof *g);
        if (!g) return dn_fail(DN_ERR_MEMORY, "out of memory for the oneDNN engine");
        dnnl_status_t s = dnnl_engine_create(&g->engine, dnnl_cpu, 0);
        if (s == dnnl_success) s = dnnl_stream_create(&g->stream, g->engine, dnnl_stream_default_flags);
        if (s != dnnl_success) {
            if (g->engine) dnnl_engine_destroy(g->engine);
            free(g);
            return dn_fail(DN_ERR_STATE, "oneDNN: its CPU engine could not be made (%s)", dnnl_status2str(s));
        }
        net->onednn = g;
    }
    const int before = use_threads(net->threads);
    if (g->images && (g->images != n || g->threads != net->threads || g->w != net->layers[0].w ||
                      g->h != net->layers[0].h || g->layers != net->n))
        release_graph(g);
    if (!g->images && (st = build_graph(g, net, n)) != DN_OK) goto done;
    if ((st = refresh_parameters(g, net)) != DN_OK) goto done;
    TRY(dnnl_memory_set_data_handle(g->user_input, (void *)input), "the input"); /* read only */
    for (int i = 0; i < net->n; ++i) {
        g->materialized[i] = 0;
        if (g->user_outputs[i]) TRY(dnnl_memory_set_data_handle(g->user_outputs[i], net->layers[i].output), "an output");
    }
    for (int i = 0; i < g->nsteps; ++i) {
        const step *s = &g->steps[i];
        if (s->primitive) {
            TRY(dnnl_primitive_execute(s->primitive, g->stream, s->nargs, s->args), "a primitive");
            continue;
        }
        layer = s->yolo;
        TRY(dnnl_stream_wait(g->stream), "the yolo layer's input");
        dn_yolo_forward(&net->layers[layer], net->layers[layer - 1].output, n);
        g->materialized[layer] = g->materialized[layer - 1] = 1;
        layer = -1;
    }
    TRY(dnnl_stream_wait(g->stream), "the forward pass");
    if (net->layers[net->n - 1].type != DN_LAYER_YOLO) g->materialized[net->n - 1] = 1;
    g->outputs_pending = 1;
    *ran = 1;
done:
    restore_threads(before);
    return st;
}

void dn_onednn_forget_outputs(struct dn_network *net)
{
    if (net->onednn) net->onednn->outputs_pending = 0;
}

dn_status dn_onednn_materialize(const struct dn_network *net, int index)
{
    dn_status st = DN_OK;
    struct dn_onednn *g = net->onednn;
    const int layer = index;
    if (!g || !g->outputs_pending || g->materialized[index] || !g->outputs[index]) return DN_OK;
    const int before = use_threads(g->threads);
    dnnl_memory_t user;
    dnnl_primitive_t copy = NULL;
    TRY(user_output(g, net, index, &user), "a layer's output");
    TRY(dnnl_memory_set_data_handle(user, net->layers[index].output), "a layer's output");
    const_dnnl_memory_desc_t from_md, to_md;
    dnnl_primitive_desc_t pd;
    TRY(dnnl_memory_get_memory_desc(g->outputs[index], &from_md), "a layer's output");
    TRY(dnnl_memory_get_memory_desc(user, &to_md), "a layer's output");
    TRY(dnnl_reorder_primitive_desc_create(&pd, from_md, g->engine, to_md, g->engine, NULL), "a layer's output");
    const dnnl_status_t made = dnnl_primitive_create(&copy, pd);
    dnnl_primitive_desc_destroy(pd);
    TRY(made, "a layer's output");
    const dnnl_exec_arg_t args[] = {{DNNL_ARG_FROM, g->outputs[index]}, {DNNL_ARG_TO, user}};
    TRY(dnnl_primitive_execute(copy, g->stream, 2, args), "a layer's output");
    TRY(dnnl_stream_wait(g->stream), "a layer's output");
    g->materialized[index] = 1;
done:
    if (copy) dnnl_primitive_destroy(copy);
    restore_threads(before);
    return st;
}

void dn_onednn_release(struct dn_network *net)
{
    struct dn_onednn *g = net->onednn;
    if (!g) return;
    release_graph(g);
    dnnl_stream_destroy(g->stream);
    dnnl_engine_destroy(g->engine);
    free(g);
    net->onednn = NULL;
}

#else /* the default build: bf16 runs on the engine's own kernels */

int dn_onednn_version(void) { return 0; }
dn_status dn_onednn_forward(struct dn_network *net, const float *input, int n, int *ran)
{
    (void)net, (void)input, (void)n;
    *ran = 0;
    return DN_OK;
}
void dn_onednn_forget_outputs(struct dn_network *net) { (void)net; }
dn_status dn_onednn_materialize(const struct dn_network *net, int index)
{
    (void)net, (void)index;
    return DN_OK;
}
void dn_onednn_release(struct dn_network *net) { (void)net; }

#endif

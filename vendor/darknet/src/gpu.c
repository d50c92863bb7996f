/*
 * The network's CUDA twin: device buffers per layer, the forward and backward passes on the
 * GPU (kernels in the .cu files in cuda/, GEMM from cuBLAS) and the copies between host and device.
 * Compiled with DN_GPU only; a CPU build gets the public calls as stubs that say so.
 *
 * Each network owns a stream and a cuBLAS handle; nothing is global, so networks on several
 * threads (or devices) run independently. Every public call selects the network's device
 * first, because the calling thread may have another one current.
 */
#include "internal.h"

#include <stdio.h>

/* "13.0" from CUDA's 1000 * major + 10 * minor. */
static void cuda_version(int v, char out[24])
{
    snprintf(out, 24, "%d.%d", v / 1000, (v % 1000) / 10);
}

/* In both builds: the answer to "can a GPU be used", from what the CUDA runtime said. */
int dn_gpu_explain(int cuda_error, const char *cuda_message, int driver_version, int runtime_version,
                   int device_count, char *buf, size_t cap)
{
    char driver[24], runtime[24], ignored[1];
    cuda_version(driver_version, driver);
    cuda_version(runtime_version, runtime);
    if (!buf || !cap) {
        buf = ignored;
        cap = sizeof ignored;
    }
    const char *what = cuda_message && *cuda_message ? cuda_message : "an unnamed CUDA error";
    if (driver_version <= 0) {
        snprintf(buf, cap, "no NVIDIA driver: the CUDA driver library libcuda.so.1 was not found "
                           "(install the NVIDIA driver; darknet_py's CUDA runtime is %s)", runtime);
        return DN_GPU_NO_DRIVER;
    }
    /* 35 cudaErrorInsufficientDriver, 36 cudaErrorCallRequiresNewerDriver; a driver of an older
       CUDA major version cannot serve this runtime whatever the error */
    if (cuda_error == 35 || cuda_error == 36 || (cuda_error != 0 && driver_version / 1000 < runtime_version / 1000)) {
        snprintf(buf, cap, "the NVIDIA driver is too old: it supports CUDA %s, darknet_py's CUDA runtime is %s "
                           "(update the driver)", driver, runtime);
        return DN_GPU_DRIVER_TOO_OLD;
    }
    if (cuda_error == 100 || (cuda_error == 0 && device_count <= 0)) { /* 100 cudaErrorNoDevice */
        snprintf(buf, cap, "no CUDA device: the NVIDIA driver (CUDA %s) found none", driver);
        return DN_GPU_NO_DEVICE;
    }
    if (cuda_error != 0) {
        snprintf(buf, cap, "the CUDA runtime cannot use the GPU: %s (driver CUDA %s, runtime CUDA %s)", what, driver,
                 runtime);
        return DN_GPU_CUDA_ERROR;
    }
    snprintf(buf, cap, "%d CUDA device%s (driver CUDA %s, runtime CUDA %s)", device_count, device_count == 1 ? "" : "s",
             driver, runtime);
    return DN_GPU_READY;
}

#ifdef DN_GPU

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "../cuda/kernels.h"

typedef struct {
    float *output, *delta, *act_input, *bn_x, *bn_x_norm, *bn_mean, *bn_variance;
    float *weights, *biases, *scales, *rolling_mean, *rolling_variance;
    float *weight_updates, *bias_updates, *scale_updates;
    int *indexes;
} gpu_layer;

struct dn_gpu {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    gpu_layer *layers;
    float *workspace;         /* im2col columns, one image and group at a time */
    float *input;             /* the current forward's input (batch images at the current size) */
    float *input_delta;       /* -dL/d(input) for dn_network_backward, allocated on demand */
    int training;             /* training buffers allocated */
};

static dn_status cuda_fail(cudaError_t e, const char *what)
{
    if (e == cudaErrorMemoryAllocation)
        return dn_fail(DN_ERR_MEMORY, "CUDA: out of device memory (%s)", what);
    return dn_fail(DN_ERR_STATE, "CUDA error while %s: %s (%s)", what, cudaGetErrorName(e), cudaGetErrorString(e));
}

#define CU(call, what)                                        \
    do {                                                      \
        cudaError_t e_ = (call);                              \
        if (e_ != cudaSuccess) return cuda_fail(e_, (what)); \
    } while (0)

#define TRY(call)                      \
    do {                               \
        dn_status s_ = (call);         \
        if (s_ != DN_OK) return s_;    \
    } while (0)

/* Zeroed device memory (cudaMalloc does not clear, and deltas/updates must start at 0). */
static void dev_free(void *p_);

static dn_status dev_alloc(void **p, size_t count, size_t size, const char *what)
{
    dev_free(p); /* a retry after a failed allocation must not leak the first attempt */
    if (count == 0) return DN_OK;
    CU(cudaMalloc(p, count * size), what);
    cudaError_t e = cudaMemset(*p, 0, count * size);
    if (e != cudaSuccess) {
        cudaFree(*p);
        *p = NULL;
        return cuda_fail(e, what);
    }
    return DN_OK;
}

static void dev_free(void *p_)
{
    void **p = (void **)p_;
    if (*p) cudaFree(*p);
    *p = NULL;
}

static dn_status enter(const dn_network *net)
{
    CU(cudaSetDevice(net->gpu->device), "selecting the network's CUDA device");
    return DN_OK;
}

/* Launch errors, then the stream's completion: asynchronous failures surface here. */
static dn_status finish(const dn_network *net, const char *what)
{
    CU(cudaGetLastError(), what);
    CU(cudaStreamSynchronize(net->gpu->stream), what);
    return DN_OK;
}

static dn_status copy_to_device(const dn_network *net, void *dst, const void *src, size_t bytes, const char *what)
{
    if (!bytes) return DN_OK;
    CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, net->gpu->stream), what);
    return finish(net, what);
}

static dn_status copy_to_host(const dn_network *net, void *dst, const void *src, size_t bytes, const char *what)
{
    if (!bytes) return DN_OK;
    CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, net->gpu->stream), what);
    return finish(net, what);
}

/*
 * Row-major C = alpha op(A) op(B) + beta C through column-major cuBLAS: a row-major matrix is
 * its transpose in column-major, so compute C^T = op(B)^T op(A)^T by swapping the operands.
 */
static dn_status gemm(const dn_network *net, int trans_a, int trans_b, int m, int n, int k, float alpha,
                      const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    cublasStatus_t s = cublasSgemm(net->gpu->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                   trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, ldb, a, lda, &beta, c, ldc);
    if (s != CUBLAS_STATUS_SUCCESS) return dn_fail(DN_ERR_STATE, "cuBLAS sgemm failed: %s", cublasGetStatusString(s));
    return DN_OK;
}

/* ---- device buffers ---- */

static size_t input_size(const dn_network *net)
{
    return (size_t)net->batch * net->params.channels * net->params.height * net->params.width;
}

static void free_size_buffers(gpu_layer *g)
{
    dev_free(&g->output);
    dev_free(&g->delta);
    dev_free(&g->act_input);
    dev_free(&g->bn_x);
    dev_free(&g->bn_x_norm);
    dev_free(&g->indexes);
}

/* Buffers that follow the input size: the output, and the training buffers once training. */
static dn_status alloc_size_buffers(const dn_network *net, int i)
{
    const dn_layer *l = &net->layers[i];
    gpu_layer *g = &net->gpu->layers[i];
    const size_t count = (size_t)net->batch * l->outputs;
    free_size_buffers(g);
    TRY(dev_alloc((void **)&g->output, count, sizeof(float), "allocating a layer output"));
    if (!net->gpu->training) return DN_OK;
    TRY(dev_alloc((void **)&g->delta, count, sizeof(float), "allocating a layer delta"));
    if (l->type == DN_LAYER_CONVOLUTIONAL || l->type == DN_LAYER_SHORTCUT)
        TRY(dev_alloc((void **)&g->act_input, count, sizeof(float), "allocating training buffers"));
    if (l->type == DN_LAYER_CONVOLUTIONAL && l->batch_normalize) {
        TRY(dev_alloc((void **)&g->bn_x, count, sizeof(float), "allocating batch-norm buffers"));
        TRY(dev_alloc((void **)&g->bn_x_norm, count, sizeof(float), "allocating batch-norm buffers"));
    }
    if (l->type == DN_LAYER_MAXPOOL) TRY(dev_alloc((void **)&g->indexes, count, sizeof(int), "allocating maxpool indexes"));
    return DN_OK;
}

static dn_status alloc_shared_buffers(dn_network *net)
{
    struct dn_gpu *g = net->gpu;
    dev_free(&g->workspace);
    dev_free(&g->input);
    dev_free(&g->input_delta);
    TRY(dev_alloc((void **)&g->workspace, net->workspace_size, sizeof(float), "allocating the im2col workspace"));
    return dev_alloc((void **)&g->input, input_size(net), sizeof(float), "allocating the input buffer");
}

static dn_status alloc_params(dn_network *net, int i)
{
    const dn_layer *l = &net->layers[i];
    gpu_layer *g = &net->gpu->layers[i];
    const size_t f = (size_t)l->filters;
    if (l->type != DN_LAYER_CONVOLUTIONAL) return DN_OK;
    TRY(dev_alloc((void **)&g->weights, l->nweights, sizeof(float), "allocating weights"));
    TRY(dev_alloc((void **)&g->biases, f, sizeof(float), "allocating biases"));
    if (l->batch_normalize) {
        TRY(dev_alloc((void **)&g->scales, f, sizeof(float), "allocating batch-norm parameters"));
        TRY(dev_alloc((void **)&g->rolling_mean, f, sizeof(float), "allocating batch-norm parameters"));
        TRY(dev_alloc((void **)&g->rolling_variance, f, sizeof(float), "allocating batch-norm parameters"));
    }
    return DN_OK;
}

static dn_status alloc_training_params(dn_network *net, int i)
{
    const dn_layer *l = &net->layers[i];
    gpu_layer *g = &net->gpu->layers[i];
    const size_t f = (size_t)l->filters;
    if (l->type != DN_LAYER_CONVOLUTIONAL) return DN_OK;
    TRY(dev_alloc((void **)&g->weight_updates, l->nweights, sizeof(float), "allocating weight updates"));
    TRY(dev_alloc((void **)&g->bias_updates, f, sizeof(float), "allocating bias updates"));
    if (l->batch_normalize) {
        TRY(dev_alloc((void **)&g->scale_updates, f, sizeof(float), "allocating scale updates"));
        TRY(dev_alloc((void **)&g->bn_mean, f, sizeof(float), "allocating batch statistics"));
        TRY(dev_alloc((void **)&g->bn_variance, f, sizeof(float), "allocating batch statistics"));
    }
    return DN_OK;
}

void dn_gpu_release(dn_network *net)
{
    struct dn_gpu *g = net ? net->gpu : NULL;
    if (!g) return;
    /* the host weights may have been refreshed from the device: CPU caches made from them are stale */
    for (int i = 0; i < net->n; ++i) ++net->layers[i].weights_version;
    cudaSetDevice(g->device);
    if (g->stream) cudaStreamSynchronize(g->stream);
    for (int i = 0; g->layers && i < net->n; ++i) {
        gpu_layer *l = &g->layers[i];
        free_size_buffers(l);
        dev_free(&l->bn_mean);
        dev_free(&l->bn_variance);
        dev_free(&l->weights);
        dev_free(&l->biases);
        dev_free(&l->scales);
        dev_free(&l->rolling_mean);
        dev_free(&l->rolling_variance);
        dev_free(&l->weight_updates);
        dev_free(&l->bias_updates);
        dev_free(&l->scale_updates);
    }
    dev_free(&g->workspace);
    dev_free(&g->input);
    dev_free(&g->input_delta);
    if (g->blas) cublasDestroy(g->blas);
    if (g->stream) cudaStreamDestroy(g->stream);
    free(g->layers);
    free(g);
    net->gpu = NULL;
}

/* ---- parameters ---- */

/* The host and device arrays of a conv layer that travel together, in one table. */
static int param_pairs(const dn_network *net, int i, float *host[8], float *dev[8], size_t size[8])
{
    const dn_layer *l = &net->layers[i];
    const gpu_layer *g = &net->gpu->layers[i];
    const size_t f = (size_t)l->filters;
    int k = 0;
#define PAIR(h, d, s) \
    if ((h) && (d)) { host[k] = (h); dev[k] = (d); size[k] = (s); ++k; }
    PAIR(l->weights, g->weights, l->nweights);
    PAIR(l->biases, g->biases, f);
    PAIR(l->scales, g->scales, f);
    PAIR(l->rolling_mean, g->rolling_mean, f);
    PAIR(l->rolling_variance, g->rolling_variance, f);
    PAIR(l->weight_updates, g->weight_updates, l->nweights);
    PAIR(l->bias_updates, g->bias_updates, f);
    PAIR(l->scale_updates, g->scale_updates, f);
#undef PAIR
    return k;
}

static dn_status move_params(const dn_network *net, int index, int to_device)
{
    TRY(enter(net));
    for (int i = index < 0 ? 0 : index; i < (index < 0 ? net->n : index + 1); ++i) {
        if (net->layers[i].type != DN_LAYER_CONVOLUTIONAL) continue;
        float *host[8], *dev[8];
        size_t size[8];
        const int count = param_pairs(net, i, host, dev, size);
        for (int k = 0; k < count; ++k) {
            if (to_device)
                CU(cudaMemcpyAsync(dev[k], host[k], size[k] * sizeof(float), cudaMemcpyHostToDevice, net->gpu->stream),
                   "copying parameters to the device");
            else
                CU(cudaMemcpyAsync(host[k], dev[k], size[k] * sizeof(float), cudaMemcpyDeviceToHost, net->gpu->stream),
                   "copying parameters from the device");
        }
    }
    return finish(net, to_device ? "copying parameters to the device" : "copying parameters from the device");
}

dn_status dn_gpu_push_params(dn_network *net, int index) { return move_params(net, index, 1); }

dn_status dn_gpu_pull_params(const dn_network *net, int index) { return move_params(net, index, 0); }

dn_status dn_gpu_ensure_training(dn_network *net)
{
    struct dn_gpu *g = net->gpu;
    if (g->training) return DN_OK;
    TRY(enter(net));
    g->training = 1;
    for (int i = 0; i < net->n; ++i) {
        dn_status st = alloc_size_buffers(net, i);
        if (st == DN_OK) st = alloc_training_params(net, i);
        if (st != DN_OK) {
            g->training = 0; /* tried again (and freed) by the next training call */
            return st;
        }
    }
    /* the host update buffers may hold momentum restored before the move */
    return dn_gpu_push_params(net, -1);
}

dn_status dn_gpu_zero_updates(dn_network *net)
{
    TRY(enter(net));
    for (int i = 0; i < net->n; ++i) {
        const dn_layer *l = &net->layers[i];
        const gpu_layer *g = &net->gpu->layers[i];
        if (l->type != DN_LAYER_CONVOLUTIONAL || !g->weight_updates) continue;
        CU(cudaMemsetAsync(g->weight_updates, 0, l->nweights * sizeof(float), net->gpu->stream), "clearing gradients");
        CU(cudaMemsetAsync(g->bias_updates, 0, (size_t)l->filters * sizeof(float), net->gpu->stream), "clearing gradients");
        if (g->scale_updates)
            CU(cudaMemsetAsync(g->scale_updates, 0, (size_t)l->filters * sizeof(float), net->gpu->stream),
               "clearing gradients");
    }
    return finish(net, "clearing gradients");
}

dn_status dn_gpu_update(dn_network *net, float learning_rate, float momentum, float decay, int batch)
{
    TRY(enter(net));
    cudaStream_t s = net->gpu->stream;
    const float step = learning_rate / (float)batch;
    for (int i = net->frozen_through + 1; i < net->n; ++i) { /* as dn_network_update: frozen layers stay */
        const dn_layer *l = &net->layers[i];
        const gpu_layer *g = &net->gpu->layers[i];
        if (l->type != DN_LAYER_CONVOLUTIONAL) continue;
        /* no decay on biases and scales, as in dn_convolutional_update */
        dn_sgd_gpu(g->biases, g->bias_updates, (size_t)l->filters, step, momentum, 0.0f, s);
        if (l->batch_normalize) dn_sgd_gpu(g->scales, g->scale_updates, (size_t)l->filters, step, momentum, 0.0f, s);
        dn_sgd_gpu(g->weights, g->weight_updates, l->nweights, step, momentum, -decay * (float)batch, s);
    }
    return finish(net, "updating the weights");
}

/* ---- forward ---- */

static int is_pointwise(const dn_layer *l) { return l->size == 1 && l->stride == 1 && l->pad == 0; }

static dn_status convolutional_forward(dn_network *net, int i, const float *input, int n, int train)
{
    const dn_layer *l = &net->layers[i];
    gpu_layer *g = &net->gpu->layers[i];
    cudaStream_t s = net->gpu->stream;
    const int m = l->filters / l->groups;
    const int k = (l->c / l->groups) * l->size * l->size;
    const int spatial = l->out_h * l->out_w;
    const size_t in_group = (size_t)(l->c / l->groups) * l->h * l->w;
    const size_t weights_group = l->nweights / (size_t)l->groups;
    for (int b = 0; b < n; ++b) {
        for (int gr = 0; gr < l->groups; ++gr) {
            const float *im = input + (size_t)b * l->inputs + gr * in_group;
            float *out = g->output + (size_t)b * l->outputs + (size_t)gr * m * spatial;
            const float *columns = im;
            if (!is_pointwise(l)) {
                dn_im2col_gpu(im, l->c / l->groups, l->h, l->w, l->size, l->stride, l->pad, net->gpu->workspace, s);
                columns = net->gpu->workspace;
            }
            TRY(gemm(net, 0, 0, m, spatial, k, 1.0f, g->weights + gr * weights_group, k, columns, spatial, 0.0f, out,
                     spatial));
        }
    }
    if (l->batch_normalize && train)
        dn_bn_forward_train_gpu(g->output, g->bn_x, g->bn_x_norm, g->bn_mean, g->bn_variance, g->rolling_mean,
                                g->rolling_variance, g->scales, g->biases, n, l->filters, spatial, s);
    else
        dn_scale_bias_gpu(g->output, n, l->filters, spatial, l->batch_normalize ? g->scales : NULL, g->biases,
                          g->rolling_mean, g->rolling_variance, s);
    const size_t count = (size_t)n * l->outputs;
    if (train) CU(cudaMemcpyAsync(g->act_input, g->output, count * sizeof(float), cudaMemcpyDeviceToDevice, s),
                  "saving activations");
    dn_activate_gpu(g->output, count, l->activation, s);
    return DN_OK;
}

static dn_status route_forward(dn_network *net, int i, int n)
{
    const dn_layer *l = &net->layers[i];
    size_t offset = 0;
    for (int k = 0; k < l->num_inputs; ++k) {
        const int j = l->input_layers[k];
        const dn_layer *in = &net->layers[j];
        const size_t part = in->outputs / (size_t)l->route_groups;
        /* n rows of `part` floats, one per image, between two differently strided buffers */
        CU(cudaMemcpy2DAsync(net->gpu->layers[i].output + offset, l->outputs * sizeof(float),
                             net->gpu->layers[j].output + part * (size_t)l->route_group_id, in->outputs * sizeof(float),
                             part * sizeof(float), (size_t)n, cudaMemcpyDeviceToDevice, net->gpu->stream),
           "concatenating route inputs");
        offset += part;
    }
    return DN_OK;
}

static dn_status forward_layer(dn_network *net, int i, const float *x, int n, int train)
{
    const dn_layer *l = &net->layers[i];
    gpu_layer *g = &net->gpu->layers[i];
    cudaStream_t s = net->gpu->stream;
    const size_t count = (size_t)n * l->outputs;
    switch (l->type) {
    case DN_LAYER_CONVOLUTIONAL: return convolutional_forward(net, i, x, n, train);
    case DN_LAYER_MAXPOOL:
        dn_maxpool_forward_gpu(x, g->output, train ? g->indexes : NULL, n, l->c, l->h, l->w, l->out_h, l->out_w,
                               l->size, l->stride, l->pad, s);
        return DN_OK;
    case DN_LAYER_ROUTE: return route_forward(net, i, n);
    case DN_LAYER_SHORTCUT:
        dn_add3_gpu(x, net->gpu->layers[l->input_layers[0]].output, g->output, count, s);
        if (train) CU(cudaMemcpyAsync(g->act_input, g->output, count * sizeof(float), cudaMemcpyDeviceToDevice, s),
                      "saving activations");
        dn_activate_gpu(g->output, count, l->activation, s);
        return DN_OK;
    case DN_LAYER_UPSAMPLE:
        dn_upsample_forward_gpu(x, g->output, n, l->c, l->h, l->w, l->upsample_stride, l->upsample_scale, s);
        return DN_OK;
    case DN_LAYER_YOLO:
        dn_yolo_forward_gpu(x, g->output, n, l->num_masks, l->classes + 5, l->w * l->h, l->scale_x_y, s);
        return DN_OK;
    }
    return DN_OK;
}

dn_status dn_gpu_forward(dn_network *net, const float *input, int n, int train)
{
    TRY(enter(net));
    if (train) TRY(dn_gpu_ensure_training(net));
    const size_t in_count = (size_t)n * net->params.channels * net->params.height * net->params.width;
    /* the one host-to-device copy of the pass */
    CU(cudaMemcpyAsync(net->gpu->input, input, in_count * sizeof(float), cudaMemcpyHostToDevice, net->gpu->stream),
       "copying the input to the device");
    const float *x = net->gpu->input;
    for (int i = 0; i < net->n; ++i) {
        TRY(forward_layer(net, i, x, n, train));
        x = net->gpu->layers[i].output;
    }
    return finish(net, "running the forward pass");
}

/* ---- backward ---- */

static dn_status convolutional_backward(dn_network *net, int i, const float *input, float *input_delta, int n)
{
    const dn_layer *l = &net->layers[i];
    gpu_layer *g = &net->gpu->layers[i];
    cudaStream_t s = net->gpu->stream;
    const int m = l->filters / l->groups;
    const int k = (l->c / l->groups) * l->size * l->size;
    const int spatial = l->out_h * l->out_w;
    const size_t in_group = (size_t)(l->c / l->groups) * l->h * l->w;
    const size_t weights_group = l->nweights / (size_t)l->groups;
    float *ws = net->gpu->workspace;

    dn_gradient_gpu(g->act_input, (size_t)n * l->outputs, l->activation, g->delta, s);
    if (l->batch_normalize)
        dn_bn_backward_gpu(g->delta, g->bn_x, g->bn_x_norm, g->bn_mean, g->bn_variance, g->scales, g->scale_updates,
                           g->bias_updates, n, l->filters, spatial, s);
    else
        dn_bias_backward_gpu(g->delta, g->bias_updates, n, l->filters, spatial, s);
    for (int b = 0; b < n; ++b) {
        for (int gr = 0; gr < l->groups; ++gr) {
            const float *im = input + (size_t)b * l->inputs + gr * in_group;
            const float *d = g->delta + (size_t)b * l->outputs + (size_t)gr * m * spatial;
            const float *columns = im;
            if (!is_pointwise(l)) {
                dn_im2col_gpu(im, l->c / l->groups, l->h, l->w, l->size, l->stride, l->pad, ws, s);
                columns = ws;
            }
            TRY(gemm(net, 0, 1, m, k, spatial, 1.0f, d, spatial, columns, spatial, 1.0f,
                     g->weight_updates + gr * weights_group, k));
            if (!input_delta) continue;
            float *im_delta = input_delta + (size_t)b * l->inputs + gr * in_group;
            if (is_pointwise(l)) {
                TRY(gemm(net, 1, 0, k, spatial, m, 1.0f, g->weights + gr * weights_group, k, d, spatial, 1.0f, im_delta,
                         spatial));
            } else {
                TRY(gemm(net, 1, 0, k, spatial, m, 1.0f, g->weights + gr * weights_group, k, d, spatial, 0.0f, ws,
                         spatial));
                dn_col2im_add_gpu(ws, l->c / l->groups, l->h, l->w, l->size, l->stride, l->pad, im_delta, s);
            }
        }
    }
    return DN_OK;
}

static dn_status backward_layer(dn_network *net, int i, const float *input, float *in_delta, int n)
{
    const dn_layer *l = &net->layers[i];
    gpu_layer *g = &net->gpu->layers[i];
    cudaStream_t s = net->gpu->stream;
    const size_t count = (size_t)n * l->outputs;
    switch (l->type) {
    case DN_LAYER_CONVOLUTIONAL: return convolutional_backward(net, i, input, in_delta, n);
    case DN_LAYER_MAXPOOL:
        if (in_delta) dn_maxpool_backward_gpu(g->delta, g->indexes, in_delta, n, l->inputs, l->outputs, s);
        return DN_OK;
    case DN_LAYER_ROUTE: {
        size_t offset = 0;
        for (int k = 0; k < l->num_inputs; ++k) {
            const int j = l->input_layers[k];
            const size_t part = net->layers[j].outputs / (size_t)l->route_groups;
            dn_add_strided_gpu(net->gpu->layers[j].delta + part * (size_t)l->route_group_id, net->layers[j].outputs,
                               g->delta + offset, l->outputs, part, n, s);
            offset += part;
        }
        return DN_OK;
    }
    case DN_LAYER_SHORTCUT:
        dn_gradient_gpu(g->act_input, count, l->activation, g->delta, s);
        dn_axpy_gpu(count, 1.0f, g->delta, net->gpu->layers[l->input_layers[0]].delta, s);
        if (in_delta) dn_axpy_gpu(count, 1.0f, g->delta, in_delta, s);
        return DN_OK;
    case DN_LAYER_UPSAMPLE:
        if (in_delta)
            dn_upsample_backward_gpu(g->delta, in_delta, n, l->c, l->h, l->w, l->upsample_stride, l->upsample_scale, s);
        return DN_OK;
    case DN_LAYER_YOLO:
        /* the deltas are already w.r.t. the yolo layer's input (see dn_yolo_backward) */
        if (in_delta) dn_axpy_gpu(count, 1.0f, g->delta, in_delta, s);
        return DN_OK;
    }
    return DN_OK;
}

dn_status dn_gpu_backward(dn_network *net, float *input_delta, int n, int iteration)
{
    TRY(enter(net));
    struct dn_gpu *g = net->gpu;
    const size_t in_count = (size_t)n * net->params.channels * net->params.height * net->params.width;
    if (input_delta) {
        if (!g->input_delta)
            TRY(dev_alloc((void **)&g->input_delta, input_size(net), sizeof(float), "allocating the input gradient"));
        CU(cudaMemsetAsync(g->input_delta, 0, in_count * sizeof(float), g->stream), "clearing the input gradient");
    }
    const int frozen = dn_frozen_through(net, iteration);
    for (int i = net->n - 1; i > frozen; --i) {
        const float *input = i == 0 ? g->input : g->layers[i - 1].output;
        float *in_delta = i == 0 ? (input_delta ? g->input_delta : NULL) : g->layers[i - 1].delta;
        TRY(backward_layer(net, i, input, in_delta, n));
    }
    if (input_delta)
        return copy_to_host(net, input_delta, g->input_delta, in_count * sizeof(float), "copying the input gradient");
    return finish(net, "running the backward pass");
}

dn_status dn_gpu_zero_deltas(dn_network *net, int n)
{
    TRY(enter(net));
    for (int i = 0; i < net->n; ++i)
        CU(cudaMemsetAsync(net->gpu->layers[i].delta, 0, (size_t)n * net->layers[i].outputs * sizeof(float),
                           net->gpu->stream),
           "clearing deltas");
    return DN_OK; /* ordered on the stream before whatever comes next */
}

dn_status dn_gpu_pull_output(const dn_network *net, int index, float *dst, size_t count)
{
    TRY(enter(net));
    return copy_to_host(net, dst, net->gpu->layers[index].output, count * sizeof(float), "copying an output");
}

dn_status dn_gpu_pull_delta(const dn_network *net, int index, float *dst, size_t count)
{
    TRY(enter(net));
    if (!net->gpu->layers[index].delta) return dn_fail(DN_ERR_STATE, "no training step has run on this network");
    return copy_to_host(net, dst, net->gpu->layers[index].delta, count * sizeof(float), "copying a delta");
}

dn_status dn_gpu_push_delta(dn_network *net, int index, const float *src, size_t count)
{
    TRY(enter(net));
    return copy_to_device(net, net->gpu->layers[index].delta, src, count * sizeof(float), "copying a delta");
}

dn_status dn_gpu_resize(dn_network *net)
{
    TRY(enter(net));
    for (int i = 0; i < net->n; ++i) TRY(alloc_size_buffers(net, i));
    TRY(alloc_shared_buffers(net));
    return finish(net, "resizing device buffers");
}

/* ---- public calls ---- */

int dn_gpu_built(void) { return 1; }

int dn_gpu_count(void)
{
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError(); /* "no driver" is an answer here, not an error to keep */
        return 0;
    }
    return count;
}

int dn_gpu_available(void) { return dn_gpu_count() > 0; }

/* dn_gpu_explain's numbers are these enumerators (it is compiled without CUDA's headers too). */
_Static_assert(cudaErrorInsufficientDriver == 35 && cudaErrorCallRequiresNewerDriver == 36 && cudaErrorNoDevice == 100,
               "cudaError_t values changed");

int dn_gpu_status(char *buf, size_t cap)
{
    int driver = 0, runtime = 0, count = 0;
    if (cudaDriverGetVersion(&driver) != cudaSuccess) driver = 0;
    if (cudaRuntimeGetVersion(&runtime) != cudaSuccess) runtime = CUDART_VERSION;
    const cudaError_t e = cudaGetDeviceCount(&count);
    char what[256] = "";
    if (e != cudaSuccess) {
        snprintf(what, sizeof what, "%s (%s)", cudaGetErrorName(e), cudaGetErrorString(e));
        cudaGetLastError(); /* an answer, not an error to keep */
        count = 0;
    }
    const int code = dn_gpu_explain((int)e, what, driver, runtime, count, buf, cap);
    const char *visible = getenv("CUDA_VISIBLE_DEVICES");
    if (code == DN_GPU_NO_DEVICE && visible && buf && cap) {
        const size_t used = strlen(buf);
        snprintf(buf + used, cap - used, " (CUDA_VISIBLE_DEVICES=\"%s\")", visible);
    }
    return code;
}

int dn_network_gpu(const dn_network *net) { return net && net->gpu ? net->gpu->device : -1; }

static dn_status attach(dn_network *net, int device)
{
    struct dn_gpu *g = dn_calloc(1, sizeof *g);
    if (!g) return dn_fail(DN_ERR_MEMORY, "out of memory");
    g->device = device;
    g->layers = dn_calloc((size_t)net->n, sizeof(gpu_layer));
    net->gpu = g;
    if (!g->layers) return dn_fail(DN_ERR_MEMORY, "out of memory");
    TRY(enter(net));
    CU(cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking), "creating a CUDA stream");
    cublasStatus_t bs = cublasCreate(&g->blas);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        g->blas = NULL;
        return dn_fail(bs == CUBLAS_STATUS_ALLOC_FAILED ? DN_ERR_MEMORY : DN_ERR_STATE, "cuBLAS initialisation failed: %s",
                       cublasGetStatusString(bs));
    }
    cublasSetStream(g->blas, g->stream);
    /* full FP32 products: TF32 tensor cores would break agreement with the CPU engine */
    cublasSetMathMode(g->blas, CUBLAS_DEFAULT_MATH);
    for (int i = 0; i < net->n; ++i) {
        TRY(alloc_size_buffers(net, i));
        TRY(alloc_params(net, i));
    }
    TRY(alloc_shared_buffers(net));
    if (net->training_ready) TRY(dn_gpu_ensure_training(net));
    return dn_gpu_push_params(net, -1);
}

dn_status dn_network_use_gpu(dn_network *net, int device)
{
    dn_clear_error();
    if (!net) return dn_fail(DN_ERR_ARGUMENT, "network is NULL");
    if (net->gpu && net->gpu->device == device) return DN_OK;
    if (device >= 0) {
        int count = 0;
        cudaError_t e = cudaGetDeviceCount(&count);
        if (e != cudaSuccess || count == 0) {
            char why[512];
            cudaGetLastError();
            dn_gpu_status(why, sizeof why); /* no driver, driver too old, no device ... */
            return dn_fail(DN_ERR_STATE, "no usable CUDA device: %s", why);
        }
        if (device >= count)
            return dn_fail(DN_ERR_ARGUMENT, "CUDA device %d does not exist (%d device%s found)", device, count,
                           count == 1 ? "" : "s");
    } else if (device != -1) {
        return dn_fail(DN_ERR_ARGUMENT, "device must be -1 (CPU) or a CUDA device index, got %d", device);
    }
    if (device >= 0 && net->precision != DN_PRECISION_FP32)
        return dn_fail(DN_ERR_STATE, "precision %s runs on the CPU only: set fp32 before moving the network to a GPU",
                       dn_name(DN_NAMES_PRECISION, net->precision));
    if (net->gpu) { /* the device holds the current parameters: bring them home first */
        dn_status st = dn_gpu_pull_params(net, -1);
        if (st != DN_OK) return st;
        dn_gpu_release(net);
    }
    if (device < 0) return DN_OK;
    dn_status st = attach(net, device);
    if (st != DN_OK) {
        char message[512];
        snprintf(message, sizeof message, "%s", dn_last_error());
        dn_gpu_release(net);
        return dn_fail(st, "%s", message); /* releasing may have touched the last error */
    }
    return DN_OK;
}

#else /* CPU build: the GPU calls exist so that every build has the same interface */

int dn_gpu_built(void) { return 0; }

int dn_gpu_count(void) { return 0; }

int dn_gpu_available(void) { return 0; }

int dn_gpu_status(char *buf, size_t cap)
{
    if (buf && cap) snprintf(buf, cap, "darknet_py was built without CUDA (rebuild with DARKNET_PY_GPU=1)");
    return DN_GPU_NOT_BUILT;
}

int dn_network_gpu(const dn_network *net)
{
    (void)net;
    return -1;
}

dn_status dn_network_use_gpu(dn_network *net, int device)
{
    dn_clear_error();
    if (!net) return dn_fail(DN_ERR_ARGUMENT, "network is NULL");
    if (device == -1) return DN_OK;
    return dn_fail(DN_ERR_STATE, "darknet_py was not built with CUDA (rebuild with DARKNET_PY_GPU=1 to use GPU %d)",
                   device);
}

#endif

/* Engine internals shared by the layer files; nothing here is public. */
#ifndef DN_INTERNAL_H
#define DN_INTERNAL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "darknet.h"
#include "errors.h"
#include "rng.h"

/* The most layers one [route] concatenates. */
#define DN_MAX_ROUTE_INPUTS 8

#ifdef _OPENMP
#include <omp.h>
static inline int dn_thread_index(void) { return omp_get_thread_num(); }
#else
static inline int dn_thread_index(void) { return 0; }
#endif

/*
 * DN_HOT marks the per-element loops (transforms, im2col, activations, pooling, batch norm): on
 * x86-64 Linux with GCC they are compiled twice, for x86-64-v3 (AVX2, FMA: 8 floats a vector)
 * and for the baseline (SSE2: 4), and the dynamic loader picks the one this CPU runs (an ifunc;
 * GCC's target_clones). The baseline build stays the package's promise; the GEMM's micro-kernel
 * chooses its own way (gemm_packed.c). Values differ between the two by rounding (FMA) only.
 * DN_HOT_WIDE adds an x86-64-v4 (AVX-512: 16 floats) clone, for the loops bound by arithmetic
 * and in-register shuffles (the activations: mish and logistic 37 % faster on Zen 5; the
 * Winograd input and output-gradient transforms, 16 channels a vector); the loops that gather or
 * scatter (im2col, the output transform) ran slower as AVX-512 clones, so they stay DN_HOT.
 */
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__) && !defined(DN_NO_CLONES)
#define DN_HOT __attribute__((target_clones("arch=x86-64-v3", "default")))
#define DN_HOT_WIDE __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DN_HOT
#define DN_HOT_WIDE
#endif

/* Threads of one network: the engine's loops run on OpenMP with `num_threads(net->threads)` and
 * call the BLAS single-threaded from inside them, so there is one pool of threads, never the
 * BLAS's pool competing with the engine's (or spinning while the engine works alone). */
#define DN_MAX_THREADS 1024

/* ---- cfg text: sections of key = value options, with line numbers ---- */
typedef struct {
    char *key;
    char *value;
    int line;
    int used;
} dn_option;

typedef struct {
    char *name;
    int line;
    dn_option *options;
    int count, capacity;
} dn_section;

typedef struct {
    char *path;
    dn_section *sections;
    int count, capacity;
} dn_cfg;

dn_status dn_cfg_read(const char *path, dn_cfg *out);
void dn_cfg_free(dn_cfg *cfg);

/*
 * Typed option access for one section. The first failure is kept in `status`
 * (and its message in the thread's last error); later reads return defaults,
 * so a section is parsed straight through and checked once.
 */
typedef struct {
    const dn_cfg *cfg;
    dn_section *section;
    dn_status status;
} dn_options;

int dn_opt_int(dn_options *o, const char *key, int fallback);
float dn_opt_float(dn_options *o, const char *key, float fallback);
const char *dn_opt_str(dn_options *o, const char *key, const char *fallback);
int dn_opt_has(dn_options *o, const char *key);
/* Comma-separated list; returns the number of items (-1 when absent). */
int dn_opt_int_list(dn_options *o, const char *key, int *dst, int capacity);
int dn_opt_float_list(dn_options *o, const char *key, float *dst, int capacity);
/* Fail with "file:line: [section] message" pointing at `key` (or the section). */
void dn_opt_error(dn_options *o, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The line of `key` in this section, or of the section header when absent. */
int dn_opt_line(const dn_options *o, const char *key);

/*
 * ---- limits on sizes read from a cfg (or asked for by resize / batch) ----
 * Checked before any size is multiplied or allocated, so that a hostile or mistyped file is a
 * DN_ERR_CFG naming the option, never an integer overflow or an attempt at terabytes. Each is
 * far above what darknet's YOLO networks use (yolov4: 1024 filters, 4.7M weights in its largest
 * layer, 64M in all; yolov4x-mish 99M; 608x608 inputs), and low enough that creating a network at
 * the limits (which initialises every weight) stays near a second.
 */
#define DN_MAX_SIDE 65536                        /* width, height, kernel size, stride, padding */
#define DN_MAX_CHANNELS 65536                    /* channels and filters of any layer */
#define DN_MAX_CLASSES 65536                     /* [yolo] classes */
#define DN_MAX_BOXES 65536                       /* [yolo] max (truths per image) */
#define DN_MAX_LAYER_FLOATS ((size_t)1 << 30)    /* one image's input or output of one layer (4 GiB) */
#define DN_MAX_LAYER_WEIGHTS ((size_t)1 << 26)   /* weights of one [convolutional] (256 MiB) */
#define DN_MAX_NETWORK_WEIGHTS ((size_t)1 << 27) /* weights of all layers together (512 MiB) */
#define DN_MAX_BUFFER_FLOATS ((size_t)1 << 32)   /* any one buffer: batch x a layer, the workspace (16 GiB) */

/* a * b into *out when it fits in `limit`; 0 (and *out untouched) when not. */
static inline int dn_mul_within(size_t a, size_t b, size_t limit, size_t *out)
{
    if (a != 0 && b > limit / a) return 0;
    *out = a * b;
    return 1;
}

/* ---- layers ---- */
/* The bf16 GEMM kernels (gemm_packed.c; dn_gemm_bf16 below) */
typedef enum { DN_BF16_NONE = 0, DN_BF16_AVX512, DN_BF16_AMX } dn_bf16_kernel;

typedef struct dn_layer dn_layer;

struct dn_layer {
    dn_layer_type type;
    int index;
    int cfg_line;
    int batch;
    int w, h, c;
    int out_w, out_h, out_c;
    size_t inputs, outputs;   /* per image */
    float *output;            /* batch * outputs */

    /* training buffers, allocated on the first training call */
    float *delta;             /* batch * outputs: -dL/d(output), darknet's sign */
    float *act_input;         /* batch * outputs: values before the activation (not for batch norm) */
    float *bn_x_norm;         /* batch * outputs: batch-normalised values */
    float *bn_mean, *bn_variance;  /* filters each: statistics of the last training batch */
    float *weight_updates, *bias_updates, *scale_updates;             /* -dL/dparam, momentum */
    int *indexes;             /* maxpool: argmax input index per output */
    dn_train_stats stats;     /* yolo: figures of the last training step */
    float cost;

    /* convolutional */
    int filters, size, stride, pad, groups, batch_normalize, stopbackward;
    dn_activation activation;
    size_t nweights;
    float *weights, *biases, *scales, *rolling_mean, *rolling_variance;
    unsigned weights_version;    /* bumped by every change of `weights` (load, set, update) */
    float *winograd_kernels;     /* winograd.c: the transformed kernels, made on first use */
    unsigned winograd_version;   /* weights_version they were made from */
    float *winograd_data_kernels; /* winograd.c: the turned kernels of the backward pass to the input */
    unsigned winograd_data_version;
    float *packed_weights;       /* the weights in dn_gemm_packed's panel order (per group), made on
                                  * first use by a layer that runs im2col + GEMM */
    unsigned packed_version;     /* weights_version they were made from */
    uint16_t *packed_weights_bf16; /* bf16 inference: the weights in dn_gemm_bf16's layout of packed_bf16_kernel */
    unsigned packed_bf16_version;
    dn_bf16_kernel packed_bf16_kernel;

    /* maxpool reuses size, stride, pad (darknet's "padding") */

    /* route / shortcut */
    int num_inputs;
    int input_layers[DN_MAX_ROUTE_INPUTS];
    int route_groups, route_group_id;

    /* upsample */
    int upsample_stride;
    float upsample_scale;

    /* yolo */
    int classes, num_masks, total_anchors, max_boxes, random;
    int mask[16];
    float anchors[64];
    float scale_x_y, jitter, ignore_thresh, truth_thresh, iou_thresh;
    float iou_normalizer, cls_normalizer, obj_normalizer, max_delta, label_smooth_eps;
    float beta_nms, resize;
    dn_nms_kind nms_kind;
    dn_iou_loss iou_loss;
};

struct dn_network {
    int n;
    dn_layer *layers;
    int batch;
    dn_net_params params;
    uint64_t seen;
    dn_rng rng;
    float *workspace;         /* im2col columns (a whole image, for backward) and, in the same
                               * buffer, one forward tile per thread */
    size_t workspace_size;
    int threads;              /* dn_network_set_threads; 1 by default */
    int precision;            /* dn_network_set_precision: of the inference forward */
    dn_bf16_kernel bf16_pass; /* the kernel of the inference pass now running in bf16, else DN_BF16_NONE (set by run_forward) */
    int training_ready;       /* training buffers allocated */
    int train;                /* the current forward runs in training mode */
    int frozen_through;       /* layers 0..frozen_through got no gradient in the last training step
                               * (stopbackward) and update() leaves them as they are; -1: none */
    const float *input;       /* the last training forward's input (train_input), NULL when backward
                                 has nothing to read (no training forward yet, or resized since) */
    float *train_input;       /* the engine's own copy of that input: batch images, re-made on resize */
    float *backward_scratch;  /* per thread: one image's columns and a private weight gradient, so
                               * that the threads of a backward pass take whole images (NULL: the
                               * pass splits each image's GEMMs instead) */
    size_t backward_scratch_size;
    float *winograd_grads;    /* the Winograd weight gradient's transformed gradients, inputs and
                               * output gradients (the largest layer's; NULL: none yet) */
    size_t winograd_grads_size;
    int train_n;              /* images in the last training forward */
    struct dn_onednn *onednn; /* onednn.c: its engine and stream (oneDNN build), made on first use */
    dn_log_fn log;
    void *log_user;
    char *cfg_path;
#ifdef DN_GPU
    struct dn_gpu *gpu;       /* device twin of the network; NULL while it runs on the CPU */
#endif
};

/* network.c: the highest layer whose stopbackward is still in force at `iteration` (no gradient
 * reaches it or any layer below it), or -1. */
int dn_frozen_through(const struct dn_network *net, int iteration);

/* parse.c: build the layer list from a cfg (allocations included). */
dn_status dn_parse_network(const dn_cfg *cfg, struct dn_network *net);

/* Per-layer set-up (shapes, buffers) and forward passes. `input` is the previous
 * layer's output (or the network input) for `n` images. */
dn_status dn_convolutional_setup(dn_layer *l, dn_options *o, struct dn_network *net);
void dn_convolutional_forward(dn_layer *l, struct dn_network *net, const float *input, int n);
void dn_convolutional_init_weights(dn_layer *l, dn_rng *rng);
size_t dn_convolutional_workspace(const dn_layer *l, int threads);
/* Make (or refresh after a weight change) the forward's copy of the weights in the layout its
 * path reads (packed panels or Winograd kernels): DN_ERR_MEMORY when that copy cannot be made. */
dn_status dn_convolutional_prepare(dn_layer *l, int threads);
/* The bf16 copies of the weights the inference forward reads at DN_PRECISION_BF16 (after
 * dn_convolutional_prepare), in the layout of `kernel` (or of direct_bf16.c). The layers that
 * stay on Winograd have none: they stay fp32 (see there). */
dn_status dn_convolutional_prepare_bf16(dn_layer *l, int threads, dn_bf16_kernel kernel);
/* onednn.c, the oneDNN build's bf16 inference (stubs elsewhere).
 * dn_onednn_forward: the whole inference forward of n images as oneDNN's graph; *ran is 0 (and
 *   nothing done) where the build has no oneDNN or the network has a layer it cannot express.
 * dn_onednn_forget_outputs: a forward of the engine's own now fills every l->output.
 * dn_onednn_materialize: layer `index`'s l->output made current after a graph pass (the graph
 *   keeps most layers' values in its own bf16 layouts). */
dn_status dn_onednn_forward(struct dn_network *net, const float *input, int n, int *ran);
void dn_onednn_forget_outputs(struct dn_network *net);
dn_status dn_onednn_materialize(const struct dn_network *net, int index);
void dn_onednn_release(struct dn_network *net);

dn_status dn_maxpool_setup(dn_layer *l, dn_options *o);
void dn_maxpool_forward(dn_layer *l, const float *input, int n, int threads);

dn_status dn_route_setup(dn_layer *l, dn_options *o, struct dn_network *net);
void dn_route_forward(dn_layer *l, struct dn_network *net, int n);

dn_status dn_shortcut_setup(dn_layer *l, dn_options *o, struct dn_network *net);
void dn_shortcut_forward(dn_layer *l, struct dn_network *net, const float *input, int n);

dn_status dn_upsample_setup(dn_layer *l, dn_options *o);
void dn_upsample_forward(dn_layer *l, const float *input, int n, int threads);

dn_status dn_yolo_setup(dn_layer *l, dn_options *o);
void dn_yolo_forward(dn_layer *l, const float *input, int n);

/* Allocate a layer's output for net->batch images. */
dn_status dn_layer_alloc_output(dn_layer *l, int batch);

/* Whether a layer whose shape was just set fits the DN_MAX_* limits for `batch` images: 0 when
 * it does, else 1 (the layer itself is too large: `why` says which figure) or 2 (the layer fits
 * but `batch` copies of a buffer do not). Also sets l->inputs and l->outputs. */
int dn_layer_size_problem(dn_layer *l, int batch, char *why, size_t why_size);

/* Backward passes: l->delta holds -dL/d(output); each adds -dL/d(input) into input_delta
 * (NULL for the first layer) and accumulates its parameter updates. */
void dn_convolutional_backward(dn_layer *l, struct dn_network *net, const float *input, float *input_delta, int n);
void dn_convolutional_update(dn_layer *l, float learning_rate, float momentum, float decay, int batch, int threads);
/* Floats of net->backward_scratch one thread needs for this layer (0: not a conv layer). */
size_t dn_convolutional_backward_scratch(const dn_layer *l);
void dn_maxpool_backward(dn_layer *l, float *input_delta, int n, int threads);
void dn_route_backward(dn_layer *l, struct dn_network *net, int n);
void dn_shortcut_backward(dn_layer *l, struct dn_network *net, float *input_delta, int n);
void dn_upsample_backward(dn_layer *l, float *input_delta, int n, int threads);
void dn_yolo_backward(dn_layer *l, float *input_delta, int n);
/* Fill l->delta and l->stats from truths (n x max_truths x 5) after a training forward. */
void dn_yolo_deltas(dn_layer *l, const struct dn_network *net, const float *truths, int n, int max_truths);

/* The multiply-add of inference batch norm (or of the bias alone) for filter f. */
void dn_convolutional_affine(const dn_layer *l, int f, float *mul, float *add);

/* direct_bf16.c: bf16 inference of 3x3 pad-1 ungrouped convolutions of stride 1 or 2 on the
 * AVX512-BF16 kernel, without im2col. The weights (dn_direct_bf16_weight_values of them) are packed by
 * dn_direct_bf16_pack; the forward of n images needs dn_direct_bf16_workspace floats. */
int dn_direct_bf16_applies(const dn_layer *l);
size_t dn_direct_bf16_workspace(const dn_layer *l, int threads);
size_t dn_direct_bf16_weight_values(const dn_layer *l);
void dn_direct_bf16_pack(const dn_layer *l, uint16_t *out);
void dn_direct_bf16_forward(dn_layer *l, struct dn_network *net, const float *input, int n);
/* The inference forward's epilogue (bias or batch norm, activation) for `count` values of filter f
 * at output offset `at`, from `from` (which may be the output itself). */
void dn_convolutional_finish(dn_layer *l, const struct dn_network *net, int f, size_t at, const float *from,
                             int count);

/* winograd.c: F(4x4, 3x3) for 3x3 stride-1 pad-1 convolutions with enough channels and tiles. */
int dn_winograd_applies(const dn_layer *l);
size_t dn_winograd_workspace(const dn_layer *l, int threads);
/* Make (or refresh after a weight change) the transformed kernels; 0 when out of memory. */
int dn_winograd_prepare(dn_layer *l, int threads);
/* The forward of all n images into l->output; `raw`: without the epilogue (training batch norm). */
void dn_winograd_forward(dn_layer *l, struct dn_network *net, const float *input, int n, int raw);
/* The backward pass to the input: make (or refresh) the turned kernels, 0 when out of memory (the
 * caller then takes the im2col path); then input_delta += the gradient through the convolution
 * of delta (n images). */
int dn_winograd_prepare_backward(dn_layer *l, int threads);
/* Floats of net->winograd_grads that dn_winograd_backward_weights needs for this layer (0: none). */
size_t dn_winograd_grads_floats(const dn_layer *l, int threads);
/* weight_updates += the weight gradient (from l->delta, darknet's sign) through Winograd, in
 * net->winograd_grads. */
void dn_winograd_backward_weights(dn_layer *l, struct dn_network *net, const float *input, int n);
void dn_winograd_backward_data(dn_layer *l, struct dn_network *net, const float *delta, float *input_delta, int n);

/* Shapes from l->w, l->h, l->c (set-up and resize); 0 when the input is too small. */
int dn_convolutional_reshape(dn_layer *l);
int dn_maxpool_reshape(dn_layer *l);
int dn_upsample_reshape(dn_layer *l);

/* activations.c: delta *= f'(x) where x is the activation's input */
void dn_gradient_array(const float *restrict x, size_t n, dn_activation a, float *restrict delta);

/* im2col.c: the adjoint of dn_im2col, adding columns back into an image */
void dn_col2im_add(const float *col, size_t ld, int channels, int height, int width, int ksize, int stride, int pad,
                   float *im);

/* activations.c */
int dn_activation_from_name(const char *name, dn_activation *out);
void dn_activate_array(float *x, size_t n, dn_activation a);
/* dn_gradient_array split over `threads` (contiguous chunks: the results do not depend on the count). */
void dn_gradient_parallel(const float *x, size_t n, dn_activation a, float *delta, int threads);
/*
 * e^x in straight-line arithmetic, so that loops over it vectorise (libm's expf is a call):
 * x = n ln2 + r with |r| <= ln2 / 2, e^r by Cephes' degree-7 minimax polynomial, 2^n through
 * the exponent bits. Within 2 ulp of expf over [-87, 88]; clamped outside (e^-87 ~ 1.6e-38:
 * the activations below see 0 or a huge number either way).
 */
__attribute__((always_inline)) static inline float dn_expf(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    const float t = x * 1.44269504088896341f;           /* log2(e) */
    /* round to nearest by adding and taking away 1.5 * 2^23 (exact for |t| < 2^22): plain
     * arithmetic, where a rounding branch kept GCC from vectorising the AVX2 clones */
    const float fn = (t + 12582912.0f) - 12582912.0f;
    const int n = (int)fn;
    float r = x - fn * 0.693359375f;                     /* ln2, split so fn * hi is exact */
    r = r - fn * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { uint32_t bits; float value; } scale = {.bits = (uint32_t)(n + 127) << 23};
    return p * scale.value;
}

__attribute__((always_inline)) static inline float dn_logistic(float x) { return 1.0f / (1.0f + dn_expf(-x)); }

/*
 * mish(x) = x * tanh(softplus(x)). With n = e^x, tanh(log(1 + n)) = n(n + 2) / (n(n + 2) + 2),
 * which needs one exp instead of exp, log1p and tanh (mish dominates YOLOv4's run time).
 * Above 20 (darknet's softplus threshold) tanh(softplus(x)) is 1 in float.
 */
__attribute__((always_inline)) static inline float dn_mish(float x)
{
    const float n = dn_expf(x);
    const float q = n * (n + 2.0f);
    const float value = x * q / (q + 2.0f);
    return x > 20.0f ? x : value; /* a select, not a branch: loops over it vectorise */
}

/* gemm.c: C = alpha * A * B + beta * C, row-major, no transposes needed for forward. Runs on the
 * calling thread: the engine splits the work over its own threads (dn_gemm_single_threaded). */
void dn_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
             const float *b, int ldb, float beta, float *c, int ldc);
/* Ask the BLAS library to compute on the calling thread only (process-wide; idempotent). */
void dn_gemm_single_threaded(void);

/* gemm_packed.c: C = A B on operands already in panel order (see there), on the calling thread.
 * MR x NR is the micro-kernel's block of C: 12 of x86-64's 16 AVX2 registers. The AVX-512 kernel
 * covers two B panels at once (DN_GEMM_NC columns), so tiles and blocks of B columns are made
 * multiples of DN_GEMM_NC where they can be. */
#define DN_GEMM_MR 6
#define DN_GEMM_NR 16
#define DN_GEMM_NC (2 * DN_GEMM_NR)
/* Rows of C of one AVX512-BF16 kernel call (the panels of its A): 12 x 32 columns are 24
 * accumulators of the 32 zmm registers. With 6 rows (12 accumulators) the kernel ran at 690
 * GFLOP/s on two Zen 5 cores (a 512x512 3x3 layer on 26x26: 4.74 ms), with 12 at 760-1000
 * (4.22 ms). */
#define DN_BF16_MR 12

/* Columns of one task's tile of a convolution's `total` output columns: at most `fit` (what its
 * cache budget holds), yet few enough that one image is split over all threads, in whole
 * DN_GEMM_NC blocks where it can be. It depends on the layer and the thread count only, never on
 * the batch, so an image's result does not depend on the images beside it. */
static inline int dn_tile_columns(size_t total, size_t fit, int threads)
{
    const size_t share = (total + (size_t)threads - 1) / (size_t)threads;
    size_t cols = fit < share ? fit : share;
    cols = (cols + DN_GEMM_NC - 1) / DN_GEMM_NC * DN_GEMM_NC;
    if (cols < DN_GEMM_NC) cols = DN_GEMM_NC;
    return cols > total ? (int)total : (int)cols;
}
size_t dn_packed_a_floats(int m, int k);
size_t dn_packed_b_floats(int k, int n);
/* A (m x k, row-major, lda) into panels of MR rows; B (k x n, row-major, ldb) into panels of NR columns. */
void dn_pack_a(const float *a, int lda, int m, int k, float *packed);
void dn_pack_b(const float *b, int ldb, int k, int n, float *packed);
/* C (m x n, row-major, ldc) = A B: its rows and columns past m and n are not touched. */
void dn_gemm_packed(int m, int n, int k, const float *a, const float *b, float *c, int ldc);
/* C += A B, the same way. */
void dn_gemm_packed_add(int m, int n, int k, const float *a, const float *b, float *c, int ldc);
/* The same with B as plain rows (k x n, ldb apart), read in place; only a last partial panel of
 * columns is packed, into `tail` (k x NR floats). Each value is the same sum as with packed B. */
void dn_gemm_rows(int m, int n, int k, const float *a, const float *b, int ldb, float *c, int ldc, float *tail);
/* "avx2" or "portable": the micro-kernel this CPU runs. */
const char *dn_gemm_packed_kernel_name(void);
/* bf16 inference GEMM (see gemm_packed.c): A in the bf16 layout of `kernel` (dn_pack_a_bf16 of
 * row-major weights, lda apart; dn_packed_a_bf16_values of them), B fp32 as gemm takes it: packed
 * panels (column_step k, ldb DN_GEMM_NR) or plain rows (column_step 1, ldb the row length).
 * C = A B, or C += A B when accumulate. `kernel` must be one dn_bf16_kernel_runs says this CPU runs
 * (dn_gemm_bf16 returns 0 and computes nothing for DN_BF16_NONE, or AVX512-BF16 where it is missing).
 * dn_bf16_best_kernel: AMX where the CPU and the OS allow it, else AVX512-BF16, else NONE. */
dn_bf16_kernel dn_bf16_best_kernel(void);
int dn_bf16_kernel_runs(dn_bf16_kernel kernel);
const char *dn_bf16_kernel_name(dn_bf16_kernel kernel); /* "AMX", "AVX512-BF16"; NULL for NONE */
size_t dn_packed_a_bf16_values(dn_bf16_kernel kernel, int m, int k);
void dn_pack_a_bf16(dn_bf16_kernel kernel, const float *a, int lda, int m, int k, uint16_t *out);
int dn_cpu_has_bf16(void);
int dn_gemm_bf16(dn_bf16_kernel kernel, int m, int n, int k, const uint16_t *a, const float *b, size_t column_step,
                 int ldb, float *c, int ldc, int accumulate);
/* Convolutions with bf16 pairs read in place (AVX512-BF16), see gemm_packed.c:
 * dn_pack_taps_bf16: w holds m rows of channels x taps weights (darknet's [filter][channel][tap])
 *   into dn_packed_taps_bf16_values(m, taps, ceil(channels / 2)) values.
 * dn_bf16_pair_planes: pair `pair` of channels 2 pair, 2 pair + 1 of im (channels x height x width,
 *   fp32) as one plane of 32-bit bf16 pairs at out + pair * plane_step: the image at
 *   (y + pad) * (width + 2 pad) + x + pad, zeros around it and up to plane_step.
 * dn_gemm_bf16_taps: C (m x n, ldc) = sum over taps t and pairs q of A times the pairs at
 *   b + offsets[t] + q * b_step + column (uint32 units). Columns are read up to NC - 1 past n
 *   (their results are not stored), so the planes need that much beyond the last one read.
 * Both return 0 (and do nothing) where the CPU lacks AVX512-BF16. */
size_t dn_packed_taps_bf16_values(int m, int taps, int pairs);
void dn_pack_taps_bf16(const float *w, int m, int channels, int taps, uint16_t *out);
int dn_bf16_pair_planes(const float *im, int channels, int height, int width, int pad, size_t plane_step, int pair,
                        uint32_t *out);
/* dn_bf16_pair_phases: the same for stride 2, as the padded image's four phases (rows and columns
 *   of even or odd padded index): phase 2 py + px of pair `pair` at out + (4 pair + phase) *
 *   phase_step holds padded (2a + py, 2b + px) at a * wide + b for a < rows, b < wide, 0 outside
 *   the image and up to phase_step. A stride-2 tap (ky, kx) then reads phase (ky % 2, kx % 2) at
 *   a fixed shift (ky / 2, kx / 2). */
int dn_bf16_pair_phases(const float *im, int channels, int height, int width, int rows, int wide, size_t phase_step,
                        int pair, uint32_t *out);
int dn_gemm_bf16_taps(int m, int n, int taps, const long *offsets, int pairs, const uint16_t *a, const uint32_t *b,
                      size_t b_step, float *c, int ldc);
/* dn_gemm_packed with the micro-kernel of that name, for tests/test_gemm.c; 0 (nothing done) when
 * this CPU or build has no such kernel. */
int dn_gemm_packed_with(const char *kernel_name, int m, int n, int k, const float *a, const float *b, float *c,
                        int ldc);

/* im2col.c */
void dn_im2col(const float *im, int channels, int height, int width, int ksize, int stride,
               int pad, float *col, size_t ld);
/* Columns [first, first + count) of dn_im2col's matrix (output positions in row-major order),
 * as the B operand of dn_gemm_packed: (channels * ksize * ksize) x count in panels of NR columns,
 * the last panel padded with zeros. */
void dn_im2col_panels(const float *im, int channels, int height, int width, int ksize, int stride, int pad,
                      int first, int count, float *panels);
/* The same over a batch's columns, image after image (images image_floats apart): column
 * b * out_h * out_w + i is position i of image b. */
void dn_im2col_panels_batch(const float *im, size_t image_floats, int channels, int height, int width, int ksize,
                            int stride, int pad, long first, int count, float *panels);

/* box helpers (nms.c) */
float dn_box_iou(const float *a, const float *b);
float dn_box_diou(const float *a, const float *b, float exponent);

void *dn_calloc(size_t count, size_t size);

#ifdef DN_GPU
/*
 * gpu.c: the network's CUDA twin. While net->gpu is set the device holds the authoritative
 * parameters, outputs and deltas; the host arrays are refreshed only by the pull calls.
 * Every call returns DN_ERR_STATE / DN_ERR_MEMORY with a message on a CUDA failure.
 */
void dn_gpu_release(struct dn_network *net);
dn_status dn_gpu_forward(struct dn_network *net, const float *input, int n, int train);
/* Back-propagate from the device deltas; `input_delta` (host, may be NULL) gets -dL/d(input). */
dn_status dn_gpu_backward(struct dn_network *net, float *input_delta, int n, int iteration);
dn_status dn_gpu_zero_deltas(struct dn_network *net, int n);
dn_status dn_gpu_pull_output(const struct dn_network *net, int index, float *dst, size_t count);
dn_status dn_gpu_pull_delta(const struct dn_network *net, int index, float *dst, size_t count);
dn_status dn_gpu_push_delta(struct dn_network *net, int index, const float *src, size_t count);
/* Parameters (and update buffers once training) of one conv layer, or all with index -1. */
dn_status dn_gpu_push_params(struct dn_network *net, int index);
dn_status dn_gpu_pull_params(const struct dn_network *net, int index);
dn_status dn_gpu_ensure_training(struct dn_network *net);
dn_status dn_gpu_zero_updates(struct dn_network *net);
dn_status dn_gpu_update(struct dn_network *net, float learning_rate, float momentum, float decay, int batch);
/* Re-make the size-dependent device buffers after dn_network_resize changed the shapes. */
dn_status dn_gpu_resize(struct dn_network *net);
#endif

#endif

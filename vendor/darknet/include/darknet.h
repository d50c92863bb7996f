/*
 * darknet_py engine: a darknet-compatible YOLO engine built as a library.
 *
 * Conventions
 *  - Opaque handles with explicit create/free; the library keeps no global state
 *    except the per-thread "last error" message.
 *  - Every fallible call returns a dn_status; on failure dn_last_error() holds a
 *    message naming the file, line and option (or the argument) at fault.
 *  - The library never exits, aborts or prints; warnings go to a dn_log_fn.
 *  - Arrays are caller-owned float32, NCHW, contiguous.
 */
#ifndef DARKNET_H
#define DARKNET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    DN_OK = 0,
    DN_ERR_IO = 1,        /* a file cannot be opened, read or written */
    DN_ERR_CFG = 2,       /* the cfg text is invalid */
    DN_ERR_WEIGHTS = 3,   /* the .weights file is invalid or truncated */
    DN_ERR_ARGUMENT = 4,  /* a caller passed a bad value (shape, index, ...) */
    DN_ERR_MEMORY = 5,    /* an allocation failed */
    DN_ERR_STATE = 6      /* the call does not fit the object's state */
} dn_status;

/* Message of the last failed call on this thread ("" when none). */
const char *dn_last_error(void);

typedef enum { DN_LOG_INFO = 0, DN_LOG_WARNING = 1 } dn_log_level;
typedef void (*dn_log_fn)(void *user, int level, const char *message);

typedef enum {
    DN_LAYER_CONVOLUTIONAL = 0,
    DN_LAYER_MAXPOOL = 1,
    DN_LAYER_ROUTE = 2,
    DN_LAYER_SHORTCUT = 3,
    DN_LAYER_UPSAMPLE = 4,
    DN_LAYER_YOLO = 5
} dn_layer_type;

typedef enum {
    DN_ACT_LOGISTIC = 0,
    DN_ACT_LINEAR = 1,
    DN_ACT_LEAKY = 2,
    DN_ACT_RELU = 3,
    DN_ACT_MISH = 4,
    DN_ACT_SWISH = 5
} dn_activation;

typedef enum {
    DN_NMS_DEFAULT = 0,   /* per-class greedy on IoU */
    DN_NMS_GREEDY = 1,    /* "greedynms": DIoU with exponent 0.6 */
    DN_NMS_DIOU = 2       /* "diounms": DIoU with exponent beta_nms */
} dn_nms_kind;

typedef enum { DN_IOU_MSE = 0, DN_IOU_GIOU = 1, DN_IOU_DIOU = 2, DN_IOU_CIOU = 3 } dn_iou_loss;

typedef enum { DN_POLICY_CONSTANT = 0, DN_POLICY_STEPS = 1, DN_POLICY_POLY = 2 } dn_lr_policy;

/* Number format of the inference forward's convolutions: fp32, or "bf16" (weights and the
 * convolutions' inputs rounded to bfloat16, products summed in fp32; CPUs with AVX512-BF16).
 * Layers on the Winograd path (3x3 stride 1, see winograd.c) stay fp32 in bf16: its transforms
 * would magnify bf16's rounding about twentyfold. */
typedef enum { DN_PRECISION_FP32 = 0, DN_PRECISION_BF16 = 1 } dn_precision;

/* The names cfg files use for the enums above: dn_name(DN_NAMES_ACTIVATION, DN_ACT_MISH) is
 * "mish"; NULL for a value outside the table. dn_name_count gives a table's length. */
typedef enum {
    DN_NAMES_LAYER = 0, DN_NAMES_ACTIVATION = 1, DN_NAMES_NMS_KIND = 2, DN_NAMES_IOU_LOSS = 3, DN_NAMES_POLICY = 4,
    DN_NAMES_PRECISION = 5
} dn_name_table;
const char *dn_name(int table, int value);
int dn_name_count(int table);

#define DN_MAX_STEPS 16

/* The [net] section as read from the cfg (training settings included). */
typedef struct {
    int batch, subdivisions;
    int width, height, channels;
    float momentum, decay, learning_rate;
    int burn_in;
    float power;
    int max_batches;
    int policy;                     /* dn_lr_policy */
    int num_steps;
    int steps[DN_MAX_STEPS];
    float scales[DN_MAX_STEPS];
    float angle, saturation, exposure, hue;
    int mosaic, flip, letter_box;
} dn_net_params;

/* One layer's shape and settings; fields that do not apply to a type are 0. */
typedef struct {
    int type;                       /* dn_layer_type */
    int cfg_line;                   /* line of the section header in the cfg */
    int w, h, c;                    /* input, per image */
    int out_w, out_h, out_c;        /* output, per image */
    /* convolutional / maxpool */
    int filters, size, stride, pad, groups, batch_normalize, activation, stopbackward;
    /* route */
    int num_inputs;
    int inputs[8];                  /* absolute layer indexes (route: up to 8, shortcut: 1) */
    int route_groups, route_group_id;
    /* upsample */
    float upsample_scale;
    /* yolo */
    int classes, num_masks, total_anchors;
    int mask[16];
    float anchors[64];              /* all anchors, w,h pairs in network pixels */
    float scale_x_y, jitter, ignore_thresh, truth_thresh, iou_thresh;
    float iou_normalizer, cls_normalizer, obj_normalizer, max_delta, label_smooth_eps;
    float beta_nms, resize;
    int nms_kind, iou_loss, random, max_boxes;
} dn_layer_info;

typedef struct dn_network dn_network;

/*
 * Parse a cfg and allocate the network for `batch` images per forward pass.
 * Weights get darknet's random initialisation drawn from `seed`.
 * `log` (may be NULL) receives warnings such as unknown options.
 */
dn_status dn_network_create(const char *cfg_path, int batch, uint64_t seed,
                            dn_log_fn log, void *log_user, dn_network **out);
void dn_network_free(dn_network *net);

dn_status dn_network_params(const dn_network *net, dn_net_params *out);
int dn_network_layer_count(const dn_network *net);
dn_status dn_network_layer_info(const dn_network *net, int index, dn_layer_info *out);
int dn_network_batch(const dn_network *net);
uint64_t dn_network_seen(const dn_network *net);

/*
 * Load a .weights file. A file that ends at a layer boundary (e.g. *.conv.137)
 * loads the layers it holds; *layers_loaded tells how many convolutional
 * layers were filled. A file that ends inside a layer is an error.
 */
dn_status dn_network_load_weights(dn_network *net, const char *path, int *layers_loaded);
/* Write version 0.2.5 weights with a 64-bit `seen`. */
dn_status dn_network_save_weights(const dn_network *net, const char *path);
/* darknet's `partial`: the parameters of layers [0, layers) only, `seen` written as 0. Such a
 * file loads into any cfg whose first `layers` layers match (other classes included). */
dn_status dn_network_save_partial(const dn_network *net, const char *path, int layers);

/*
 * Forward `n` images (1 <= n <= batch), input shaped (n, c, h, w), values
 * usually in [0, 1], RGB. Outputs stay in the network until the next call.
 */
dn_status dn_network_forward(dn_network *net, const float *input, int n);

/* Copy layer `index`'s output for the last forward: n * out_c * out_h * out_w floats. */
dn_status dn_network_copy_output(const dn_network *net, int index, float *dst, size_t count);

/* Number of parameters of a convolutional layer and access to them. */
typedef enum {
    DN_PARAM_WEIGHTS = 0, DN_PARAM_BIASES = 1, DN_PARAM_SCALES = 2,
    DN_PARAM_ROLLING_MEAN = 3, DN_PARAM_ROLLING_VARIANCE = 4,
    /* gradients dL/dparam (training only) */
    DN_PARAM_WEIGHTS_GRAD = 5, DN_PARAM_BIASES_GRAD = 6, DN_PARAM_SCALES_GRAD = 7
} dn_param_kind;
dn_status dn_network_param_size(const dn_network *net, int index, int kind, size_t *count);
dn_status dn_network_get_param(const dn_network *net, int index, int kind, float *dst, size_t count);
dn_status dn_network_set_param(dn_network *net, int index, int kind, const float *src, size_t count);

/* ---- training ---- */

/* What the [yolo] layers measured in the last training step (sums over its images). */
typedef struct {
    float loss;          /* mean over [yolo] layers of each layer's cost per image */
    float avg_iou;       /* mean IoU of the predictions assigned to truths */
    float avg_obj;       /* mean objectness at assigned predictions */
    float avg_class;     /* mean probability of the true class at assigned predictions */
    float recall50, recall75;
    float iou_loss, class_loss; /* parts of the loss (box term, objectness + class term) */
    int count;           /* truths assigned to predictions */
} dn_train_stats;

/*
 * One forward/backward pass in training mode on n images (n <= batch), input (n, c, h, w);
 * truths (n, max_truths, 5): cx, cy, w, h relative to the image, then the class id, rows
 * of zeros after the last box. Gradients accumulate until dn_network_update. `iteration`
 * decides stopbackward. Fails with DN_ERR_STATE when the loss is not finite.
 */
dn_status dn_network_train_step(dn_network *net, const float *input, const float *truths, int n, int max_truths,
                                int iteration, dn_train_stats *stats);

/* darknet's SGD once per batch of `batch_images` images (batch * subdivisions):
 * dw += -decay * B * w; w += lr / B * dw; dw *= momentum (no decay on biases and scales). */
dn_status dn_network_update(dn_network *net, float learning_rate, float momentum, float decay, int batch_images);

/* Change the input size (multiple of 32 for YOLO; any size that fits the layers). */
dn_status dn_network_resize(dn_network *net, int width, int height);
dn_status dn_network_set_seen(dn_network *net, uint64_t seen);

/* Threads the network's CPU passes use (1 at creation; at most 1024). Results are reproducible
 * for a given count and do not depend on the batch (an image's tiles are the same alone or in
 * a batch); another count splits the GEMMs differently, which may change the last bits. The
 * BLAS runs inside these threads, single-threaded. dn_threads_available: 0 when built without
 * OpenMP (then the count is accepted and the passes run on the calling thread). */
dn_status dn_network_set_threads(dn_network *net, int threads);
int dn_network_threads(const dn_network *net);
int dn_threads_available(void);

/* The precision of the CPU inference forward (DN_PRECISION_FP32 at creation). Training steps
 * (forward and backward) always run in fp32, whatever is set. DN_PRECISION_BF16 fails with
 * DN_ERR_STATE where dn_precision_supported says no, or on a network that runs on a GPU (and
 * dn_network_use_gpu refuses a network whose precision is not fp32).
 * dn_precision_supported: 1 when this CPU (and build) runs that precision. */
dn_status dn_network_set_precision(dn_network *net, int precision);
int dn_network_precision(const dn_network *net);
int dn_precision_supported(int precision);
/* The oneDNN version the bf16 inference convolutions run on, as major * 10000 + minor * 100 +
 * patch, in a build made with DARKNET_PY_ONEDNN=1; 0 in the default build (the engine's own
 * bf16 kernels, Winograd layers in fp32). */
int dn_onednn_version(void);
/* The engine's own bf16 GEMM kernel on this CPU: "AMX" (AMX-BF16 tiles) or "AVX512-BF16"
 * (vdpbf16ps), or NULL where the CPU runs no bf16 (Winograd layers stay fp32 with either). A
 * oneDNN build runs it for the layers its graph cannot express. */
const char *dn_cpu_bf16_kernel(void);

/*
 * Low-level access for gradient checks: forward in training mode (batch statistics),
 * then backward from `top_grad` = dL/d(last layer's output) giving input_grad = dL/d(input)
 * (may be NULL). Parameter gradients dL/dparam are read with dn_network_get_param and the
 * DN_PARAM_*_GRAD kinds (they accumulate until dn_network_update or dn_network_zero_grad).
 */
dn_status dn_network_forward_train(dn_network *net, const float *input, int n);
dn_status dn_network_backward(dn_network *net, const float *top_grad, float *input_grad, int n);
dn_status dn_network_zero_grad(dn_network *net);
/* Copy layer `index`'s delta (-dL/d(output), darknet's sign) from the last training step. */
dn_status dn_network_copy_delta(const dn_network *net, int index, float *dst, size_t count);

/*
 * Non-maximum suppression in darknet's way: for each class, boxes sorted by
 * probability; a box whose overlap with a stronger one exceeds `thresh` gets
 * that class's probability set to 0. boxes: n x (cx, cy, w, h); probs: n x classes.
 */
dn_status dn_nms(const float *boxes, float *probs, int n, int classes, float thresh,
                 int kind, float beta);

/*
 * darknet's calc_anchors: k-means over (w, h) points with distance 1 - IoU of
 * corner-aligned boxes, seeded with k random points drawn from `seed`.
 * anchors_out receives k (w, h) pairs sorted by area; *avg_iou the mean best IoU.
 */
dn_status dn_calc_anchors(const float *wh, int n, int k, uint64_t seed, int max_iterations,
                          float *anchors_out, float *avg_iou, int *iterations_run);

/* ---- GPU (a CUDA build: DARKNET_PY_GPU=1) ---- */

/* 1 when the library was compiled with CUDA, else 0 (the calls below then report that). */
int dn_gpu_built(void);
/* CUDA devices usable now: 0 in a CPU build, without a driver or without a device. */
int dn_gpu_count(void);
/* 1 when dn_gpu_count() > 0. */
int dn_gpu_available(void);

/* dn_gpu_status's answers: whether a CUDA device is usable now, and if not, why. */
typedef enum {
    DN_GPU_READY = 0,          /* at least one device */
    DN_GPU_NOT_BUILT = 1,      /* a CPU build */
    DN_GPU_NO_DRIVER = 2,      /* no NVIDIA driver (libcuda.so.1 not found) */
    DN_GPU_DRIVER_TOO_OLD = 3, /* the driver's CUDA version is older than the runtime's */
    DN_GPU_NO_DEVICE = 4,      /* a driver, but no device (or none visible) */
    DN_GPU_CUDA_ERROR = 5      /* the CUDA runtime failed otherwise (its error is named) */
} dn_gpu_state;
/*
 * One of DN_GPU_* for this machine, and one sentence saying it into buf (cap bytes, always
 * NUL-terminated; buf may be NULL): "1 CUDA device (driver CUDA 13.0, runtime CUDA 13.0)",
 * "no NVIDIA driver: ...", "the NVIDIA driver is too old: ...". Not an error: the last error
 * is left alone. A CPU build answers DN_GPU_NOT_BUILT.
 */
int dn_gpu_status(char *buf, size_t cap);
/*
 * The mapping dn_gpu_status applies to what the CUDA runtime answered, in every build and with
 * no CUDA call, so that its messages can be checked without a GPU: cuda_error is
 * cudaGetDeviceCount's cudaError_t (0 success, 35 cudaErrorInsufficientDriver, 36
 * cudaErrorCallRequiresNewerDriver, 100 cudaErrorNoDevice, ...), cuda_message its name and
 * description (or NULL), driver_version cudaDriverGetVersion's (0: no driver) and
 * runtime_version cudaRuntimeGetVersion's (1000 * major + 10 * minor), device_count the devices
 * found. Returns one of DN_GPU_* (never DN_GPU_NOT_BUILT) and writes the sentence as above.
 */
int dn_gpu_explain(int cuda_error, const char *cuda_message, int driver_version, int runtime_version,
                   int device_count, char *buf, size_t cap);
/*
 * Run the network on CUDA device `device` from now on: its parameters (and training state)
 * are copied to the device and every later call runs there; device = -1 copies them back and
 * returns to the CPU. Fails with DN_ERR_STATE in a CPU build, without a usable device or on a
 * CUDA error, DN_ERR_MEMORY when the device memory is too small, DN_ERR_ARGUMENT for a device
 * that does not exist. Without a usable device the message is "no usable CUDA device: " and
 * dn_gpu_status's sentence. On failure the network stays on the CPU.
 */
dn_status dn_network_use_gpu(dn_network *net, int device);
/* The CUDA device the network runs on, -1 for the CPU. */
int dn_network_gpu(const dn_network *net);

#ifdef __cplusplus
}
#endif

#endif

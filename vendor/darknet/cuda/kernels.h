/*
 * Launchers of the engine's CUDA kernels (one .cu twin per layer file). Plain C declarations
 * so that src/gpu.c, compiled by the C compiler, can call what nvcc compiled. Every launcher
 * only enqueues work on `stream`; errors surface at the caller's next synchronisation.
 */
#ifndef DN_CUDA_KERNELS_H
#define DN_CUDA_KERNELS_H

#include <stddef.h>
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* activation_kernels.cu (activation ids are dn_activation's) */
void dn_activate_gpu(float *x, size_t n, int activation, cudaStream_t stream);
void dn_gradient_gpu(const float *x, size_t n, int activation, float *delta, cudaStream_t stream);

/* im2col_kernels.cu */
void dn_im2col_gpu(const float *im, int channels, int height, int width, int ksize, int stride, int pad,
                   float *col, cudaStream_t stream);
void dn_col2im_add_gpu(const float *col, int channels, int height, int width, int ksize, int stride, int pad,
                       float *im, cudaStream_t stream);

/* blas_kernels.cu: y += alpha * x; x *= alpha */
void dn_axpy_gpu(size_t n, float alpha, const float *x, float *y, cudaStream_t stream);
void dn_scal_gpu(size_t n, float alpha, float *x, cudaStream_t stream);
/* darknet's SGD for one array: u += decay_term * w; w += step * u; u *= momentum */
void dn_sgd_gpu(float *w, float *u, size_t n, float step, float momentum, float decay_term, cudaStream_t stream);

/* convolutional_kernels.cu (batch norm and bias); planes are `spatial` floats, image b / filter f at (b * filters + f) * spatial */
/* inference: x = x * scale / sqrt(var + eps) + (bias - mean * that), or x += bias without batch norm */
void dn_scale_bias_gpu(float *x, int n, int filters, int spatial, const float *scales, const float *biases,
                       const float *mean, const float *variance, cudaStream_t stream);
/* training: batch statistics (biased variance), rolling .99/.01, normalised values and output */
void dn_bn_forward_train_gpu(float *x, float *bn_x, float *bn_x_norm, float *mean, float *variance,
                             float *rolling_mean, float *rolling_variance, const float *scales,
                             const float *biases, int n, int filters, int spatial, cudaStream_t stream);
/* the adjoint of the above: delta becomes -dL/d(conv result); scale and bias updates accumulate */
void dn_bn_backward_gpu(float *delta, const float *bn_x, const float *bn_x_norm, const float *mean,
                        const float *variance, const float *scales, float *scale_updates, float *bias_updates,
                        int n, int filters, int spatial, cudaStream_t stream);
/* bias_updates[f] += sum of delta over images and positions */
void dn_bias_backward_gpu(const float *delta, float *bias_updates, int n, int filters, int spatial,
                          cudaStream_t stream);

/* maxpool_kernels.cu; indexes may be NULL (inference) */
void dn_maxpool_forward_gpu(const float *input, float *output, int *indexes, int n, int c, int h, int w,
                            int out_h, int out_w, int size, int stride, int pad, cudaStream_t stream);
void dn_maxpool_backward_gpu(const float *delta, const int *indexes, float *input_delta, int n,
                             size_t inputs, size_t outputs, cudaStream_t stream);

/* route_kernels.cu: dst[b * dst_stride + j] += src[b * src_stride + j] for j < count */
void dn_add_strided_gpu(float *dst, size_t dst_stride, const float *src, size_t src_stride, size_t count, int n,
                        cudaStream_t stream);

/* shortcut_kernels.cu: out = a + b */
void dn_add3_gpu(const float *a, const float *b, float *out, size_t n, cudaStream_t stream);

/* upsample_kernels.cu */
void dn_upsample_forward_gpu(const float *input, float *output, int n, int c, int h, int w, int stride,
                             float scale, cudaStream_t stream);
void dn_upsample_backward_gpu(const float *delta, float *input_delta, int n, int c, int h, int w, int stride,
                              float scale, cudaStream_t stream);

/* yolo_kernels.cu: logistic on x, y (scale_x_y), objectness and classes; raw w, h */
void dn_yolo_forward_gpu(const float *input, float *output, int n, int masks, int entries, int plane,
                         float scale_x_y, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif

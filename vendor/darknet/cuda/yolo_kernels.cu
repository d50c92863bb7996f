/* GPU twin of dn_yolo_forward; the deltas are computed on the CPU from the pulled output. */
#include "common.cuh"
#include "kernels.h"

__global__ static void yolo_forward_kernel(const float *input, float *output, int entries, int plane,
                                           float scale, float shift, size_t total)
{
    DN_GRID_LOOP(i, total) {
        const int e = (int)((i / plane) % entries); /* x, y, w, h, objectness, classes */
        const float v = input[i];
        if (e == 2 || e == 3) {
            output[i] = v;
        } else {
            const float s = 1.0f / (1.0f + expf(-v));
            output[i] = e < 2 ? s * scale + shift : s;
        }
    }
}

extern "C" void dn_yolo_forward_gpu(const float *input, float *output, int n, int masks, int entries, int plane,
                                    float scale_x_y, cudaStream_t stream)
{
    const size_t total = (size_t)n * masks * entries * plane;
    yolo_forward_kernel<<<dn_blocks(total), DN_THREADS, 0, stream>>>(input, output, entries, plane, scale_x_y,
                                                                     -0.5f * (scale_x_y - 1.0f), total);
}

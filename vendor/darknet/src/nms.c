/* Box overlap measures and darknet's per-class non-maximum suppression. */
#include "internal.h"

#include <stdlib.h>

/* Boxes are (cx, cy, w, h). */
static float overlap(float c1, float w1, float c2, float w2)
{
    const float left = fmaxf(c1 - w1 / 2, c2 - w2 / 2);
    const float right = fminf(c1 + w1 / 2, c2 + w2 / 2);
    return right - left;
}

float dn_box_iou(const float *a, const float *b)
{
    const float w = overlap(a[0], a[2], b[0], b[2]);
    const float h = overlap(a[1], a[3], b[1], b[3]);
    if (w <= 0 || h <= 0) return 0;
    const float inter = w * h;
    const float uni = a[2] * a[3] + b[2] * b[3] - inter;
    return uni > 0 ? inter / uni : 0;
}

/* IoU minus (centre distance^2 / enclosing diagonal^2)^exponent. */
float dn_box_diou(const float *a, const float *b, float exponent)
{
    const float left = fminf(a[0] - a[2] / 2, b[0] - b[2] / 2);
    const float right = fmaxf(a[0] + a[2] / 2, b[0] + b[2] / 2);
    const float top = fminf(a[1] - a[3] / 2, b[1] - b[3] / 2);
    const float bottom = fmaxf(a[1] + a[3] / 2, b[1] + b[3] / 2);
    const float diag = (right - left) * (right - left) + (bottom - top) * (bottom - top);
    const float iou = dn_box_iou(a, b);
    if (diag == 0) return iou;
    const float dist = (a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1]);
    return iou - powf(dist / diag, exponent);
}

typedef struct {
    float prob;
    int index;
} ranked;

/* Higher probability first; equal ones keep their input order, so results never
 * depend on the sort algorithm. */
static int by_prob_desc(const void *pa, const void *pb)
{
    const ranked *a = pa, *b = pb;
    if (a->prob != b->prob) return a->prob > b->prob ? -1 : 1;
    return a->index - b->index;
}

dn_status dn_nms(const float *boxes, float *probs, int n, int classes, float thresh, int kind, float beta)
{
    dn_clear_error();
    if (n < 0 || classes < 1) return dn_fail(DN_ERR_ARGUMENT, "dn_nms: n=%d classes=%d", n, classes);
    if (n == 0) return DN_OK;
    if (!boxes || !probs) return dn_fail(DN_ERR_ARGUMENT, "dn_nms: NULL array");
    if (kind < DN_NMS_DEFAULT || kind > DN_NMS_DIOU) return dn_fail(DN_ERR_ARGUMENT, "dn_nms: unknown kind %d", kind);
    ranked *order = malloc(sizeof(ranked) * (size_t)n);
    if (!order) return dn_fail(DN_ERR_MEMORY, "dn_nms: out of memory for %d boxes", n);
    const float exponent = kind == DN_NMS_DIOU ? beta : 0.6f;
    for (int k = 0; k < classes; ++k) {
        int live = 0;
        for (int i = 0; i < n; ++i) {
            const float p = probs[(size_t)i * classes + k];
            if (p > 0) order[live++] = (ranked){p, i};
        }
        qsort(order, (size_t)live, sizeof(ranked), by_prob_desc);
        for (int i = 0; i < live; ++i) {
            const int a = order[i].index;
            if (probs[(size_t)a * classes + k] == 0) continue;
            for (int j = i + 1; j < live; ++j) {
                const int b = order[j].index;
                const float *ba = boxes + (size_t)a * 4, *bb = boxes + (size_t)b * 4;
                const float overlap_measure = kind == DN_NMS_DEFAULT ? dn_box_iou(ba, bb) : dn_box_diou(ba, bb, exponent);
                if (overlap_measure > thresh) probs[(size_t)b * classes + k] = 0;
            }
        }
    }
    free(order);
    return DN_OK;
}

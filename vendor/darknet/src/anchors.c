/*
 * calc_anchors: darknet's k-means over box sizes, with distance 1 - IoU of
 * boxes that share a corner (only their width and height matter).
 */
#include "darknet.h"
#include "errors.h"
#include "rng.h"

#include <math.h>
#include <stdlib.h>

/* IoU of two boxes aligned at their top-left corner. */
static float corner_iou(float w1, float h1, float w2, float h2)
{
    float inter = fminf(w1, w2) * fminf(h1, h2);
    return inter / (w1 * h1 + w2 * h2 - inter);
}

/* Index of the centre with the highest IoU to (w, h); the first one on ties. */
static int nearest_centre(float w, float h, const float *centres, int k, float *best_iou)
{
    int best = 0;
    float best_value = -1.0f;
    for (int j = 0; j < k; ++j) {
        float iou = corner_iou(w, h, centres[2 * j], centres[2 * j + 1]);
        if (iou > best_value) {
            best_value = iou;
            best = j;
        }
    }
    if (best_iou) *best_iou = best_value;
    return best;
}

/* k distinct points as first centres (darknet may draw the same point twice,
 * which wastes a cluster; a partial Fisher-Yates shuffle avoids that). */
static void seed_centres(const float *wh, int n, int k, dn_rng *rng, int *order, float *centres)
{
    for (int i = 0; i < n; ++i) order[i] = i;
    for (int j = 0; j < k; ++j) {
        int pick = j + dn_rng_below(rng, n - j);
        int tmp = order[j];
        order[j] = order[pick];
        order[pick] = tmp;
        centres[2 * j] = wh[2 * order[j]];
        centres[2 * j + 1] = wh[2 * order[j] + 1];
    }
}

/* Assign every point to its nearest centre; returns how many assignments changed. */
static int assign_points(const float *wh, int n, const float *centres, int k, int *assignment)
{
    int changed = 0;
    for (int i = 0; i < n; ++i) {
        int c = nearest_centre(wh[2 * i], wh[2 * i + 1], centres, k, NULL);
        if (c != assignment[i]) {
            assignment[i] = c;
            ++changed;
        }
    }
    return changed;
}

/* Move every centre to the mean of its points; an empty cluster keeps its centre. */
static void update_centres(const float *wh, int n, const int *assignment, float *centres,
                           int k, double *sums, int *counts)
{
    for (int j = 0; j < k; ++j) {
        sums[2 * j] = sums[2 * j + 1] = 0.0;
        counts[j] = 0;
    }
    for (int i = 0; i < n; ++i) {
        int c = assignment[i];
        sums[2 * c] += wh[2 * i];
        sums[2 * c + 1] += wh[2 * i + 1];
        ++counts[c];
    }
    for (int j = 0; j < k; ++j) {
        if (counts[j] == 0) continue;
        centres[2 * j] = (float)(sums[2 * j] / counts[j]);
        centres[2 * j + 1] = (float)(sums[2 * j + 1] / counts[j]);
    }
}

static int by_area(const void *a, const void *b)
{
    const float *x = a, *y = b;
    float ax = x[0] * x[1], ay = y[0] * y[1];
    if (ax != ay) return ax < ay ? -1 : 1;
    return (x[0] > y[0]) - (x[0] < y[0]);
}

static dn_status check_points(const float *wh, int n)
{
    for (int i = 0; i < 2 * n; ++i) {
        if (!(wh[i] > 0.0f) || !isfinite(wh[i]))
            return dn_fail(DN_ERR_ARGUMENT,
                           "dn_calc_anchors: box %d has %s %g; widths and heights must be "
                           "positive and finite", i / 2, i % 2 ? "height" : "width",
                           (double)wh[i]);
    }
    return DN_OK;
}

dn_status dn_calc_anchors(const float *wh, int n, int k, uint64_t seed, int max_iterations,
                          float *anchors_out, float *avg_iou, int *iterations_run)
{
    dn_clear_error();
    if (!wh || !anchors_out)
        return dn_fail(DN_ERR_ARGUMENT, "dn_calc_anchors: wh and anchors_out must not be NULL");
    if (k < 1)
        return dn_fail(DN_ERR_ARGUMENT, "dn_calc_anchors: number of clusters must be >= 1, got %d", k);
    if (n < k)
        return dn_fail(DN_ERR_ARGUMENT,
                       "dn_calc_anchors: %d boxes are too few for %d clusters", n, k);
    if (max_iterations < 0)
        return dn_fail(DN_ERR_ARGUMENT, "dn_calc_anchors: max_iterations must be >= 0, got %d",
                       max_iterations);
    dn_status status = check_points(wh, n);
    if (status != DN_OK) return status;

    int *assignment = malloc(sizeof(int) * (size_t)n);
    int *counts = malloc(sizeof(int) * (size_t)k);
    double *sums = malloc(sizeof(double) * 2 * (size_t)k);
    if (!assignment || !counts || !sums) {
        free(assignment); free(counts); free(sums);
        return dn_fail(DN_ERR_MEMORY, "dn_calc_anchors: out of memory for %d boxes", n);
    }

    dn_rng rng = {seed};
    /* `assignment` doubles as the shuffle buffer, then starts as "no cluster". */
    seed_centres(wh, n, k, &rng, assignment, anchors_out);
    for (int i = 0; i < n; ++i) assignment[i] = -1;

    int iterations = 0;
    while (iterations < max_iterations && assign_points(wh, n, anchors_out, k, assignment)) {
        update_centres(wh, n, assignment, anchors_out, k, sums, counts);
        ++iterations;
    }
    qsort(anchors_out, (size_t)k, 2 * sizeof(float), by_area);

    if (avg_iou) {
        double total = 0.0;
        for (int i = 0; i < n; ++i) {
            float best;
            nearest_centre(wh[2 * i], wh[2 * i + 1], anchors_out, k, &best);
            total += best;
        }
        *avg_iou = (float)(total / n);
    }
    if (iterations_run) *iterations_run = iterations;
    free(assignment); free(counts); free(sums);
    return DN_OK;
}

/* [yolo]: activates x, y, objectness and class scores per anchor; w, h stay raw. */
#include "internal.h"

#include <float.h>
#include <string.h>

static int parse_enum(dn_options *o, const char *key, const char *fallback, dn_name_table table, int *out)
{
    const char *value = dn_opt_str(o, key, fallback);
    for (int i = 0; i < dn_name_count(table); ++i) {
        if (strcmp(value, dn_name(table, i)) == 0) {
            *out = i;
            return 1;
        }
    }
    char q[DN_QUOTE_SIZE];
    dn_opt_error(o, key, "unknown %s %s", key, dn_quote_str(q, value));
    return 0;
}

dn_status dn_yolo_setup(dn_layer *l, dn_options *o)
{
    int value;

    l->classes = dn_opt_int(o, "classes", 20);
    l->total_anchors = dn_opt_int(o, "num", 1);
    l->max_boxes = dn_opt_int(o, "max", 200);
    l->jitter = dn_opt_float(o, "jitter", 0.2f);
    l->ignore_thresh = dn_opt_float(o, "ignore_thresh", 0.5f);
    l->truth_thresh = dn_opt_float(o, "truth_thresh", 1.0f);
    l->iou_thresh = dn_opt_float(o, "iou_thresh", 1.0f);
    l->random = dn_opt_int(o, "random", 0);
    l->scale_x_y = dn_opt_float(o, "scale_x_y", 1.0f);
    l->iou_normalizer = dn_opt_float(o, "iou_normalizer", 0.75f);
    l->cls_normalizer = dn_opt_float(o, "cls_normalizer", 1.0f);
    l->obj_normalizer = dn_opt_float(o, "obj_normalizer", 1.0f);
    l->max_delta = dn_opt_float(o, "max_delta", FLT_MAX);
    l->label_smooth_eps = dn_opt_float(o, "label_smooth_eps", 0.0f);
    l->beta_nms = dn_opt_float(o, "beta_nms", 0.6f);
    l->resize = dn_opt_float(o, "resize", 1.0f);
    if (parse_enum(o, "iou_loss", "mse", DN_NAMES_IOU_LOSS, &value)) l->iou_loss = (dn_iou_loss)value;
    if (parse_enum(o, "nms_kind", "default", DN_NAMES_NMS_KIND, &value)) l->nms_kind = (dn_nms_kind)value;
    if (dn_opt_int(o, "new_coords", 0) != 0)
        dn_opt_error(o, "new_coords", "option 'new_coords=1' (scaled-YOLOv4 boxes) is not supported by this engine");
    int masks = dn_opt_int_list(o, "mask", l->mask, 16);
    int anchors = dn_opt_float_list(o, "anchors", l->anchors, 64);
    if (o->status != DN_OK) return o->status;

    if (l->classes < 1 || l->classes > DN_MAX_CLASSES)
        dn_opt_error(o, "classes", "classes must be in [1, %d], got %d", DN_MAX_CLASSES, l->classes);
    if (l->total_anchors < 1 || l->total_anchors > 32)
        dn_opt_error(o, "num", "num must be in [1, 32], got %d", l->total_anchors);
    if (l->max_boxes < 1 || l->max_boxes > DN_MAX_BOXES)
        dn_opt_error(o, "max", "max must be in [1, %d], got %d", DN_MAX_BOXES, l->max_boxes);
    if (o->status != DN_OK) return o->status;
    if (masks < 0) {
        masks = l->total_anchors > 16 ? 16 : l->total_anchors;
        for (int i = 0; i < masks; ++i) l->mask[i] = i;
    }
    if (masks == 0) dn_opt_error(o, "mask", "option 'mask' is empty");
    for (int i = 0; i < masks && o->status == DN_OK; ++i)
        if (l->mask[i] < 0 || l->mask[i] >= l->total_anchors)
            dn_opt_error(o, "mask", "mask %d is outside the num=%d anchors", l->mask[i], l->total_anchors);
    if (anchors < 0) {
        dn_opt_error(o, "anchors", "option 'anchors' is missing");
    } else if (anchors != 2 * l->total_anchors) {
        dn_opt_error(o, "anchors", "%d anchor values given, num=%d needs %d (w,h pairs)", anchors, l->total_anchors,
                     2 * l->total_anchors);
    }
    if (o->status != DN_OK) return o->status;
    l->num_masks = masks;
    const int needed = masks * (l->classes + 5);
    if (l->c != needed) {
        dn_opt_error(o, NULL,
                     "the layer before [yolo] has filters=%d, but classes=%d with %d masks needs "
                     "filters=(classes + 5) * masks = %d",
                     l->c, l->classes, masks, needed);
        return o->status;
    }
    l->out_w = l->w;
    l->out_h = l->h;
    l->out_c = l->c;
    return DN_OK;
}

void dn_yolo_forward(dn_layer *l, const float *input, int n)
{
    const size_t plane = (size_t)l->w * l->h;
    const size_t entries = (size_t)(l->classes + 5);
    const float scale = l->scale_x_y, shift = -0.5f * (l->scale_x_y - 1.0f);
    memcpy(l->output, input, (size_t)n * l->outputs * sizeof(float));
    for (int b = 0; b < n; ++b) {
        for (int a = 0; a < l->num_masks; ++a) {
            float *base = l->output + (size_t)b * l->outputs + (size_t)a * entries * plane;
            for (size_t i = 0; i < 2 * plane; ++i) base[i] = dn_logistic(base[i]) * scale + shift;
            dn_activate_array(base + 4 * plane, (entries - 4) * plane, DN_ACT_LOGISTIC);
        }
    }
}

/* ---- training: darknet's yolo deltas (negative gradients w.r.t. the layer's input) ---- */

static const double kPi = 3.14159265358979323846;

/* IoU-family metric of a predicted box p against a truth t (both cx, cy, w, h) and its
 * derivatives d metric / d(p.x, p.y, p.w, p.h). CIoU treats its trade-off weight alpha as a
 * constant, as the CIoU paper does. */
typedef struct {
    double iou, metric;
    double d[4];
} iou_gradient;

static iou_gradient iou_metric_gradient(const float *pf, const float *tf, dn_iou_loss kind)
{
    const double p[4] = {pf[0], pf[1], pf[2], pf[3]}, t[4] = {tf[0], tf[1], tf[2], tf[3]};
    const double pl = p[0] - p[2] / 2, pr = p[0] + p[2] / 2, pt = p[1] - p[3] / 2, pb = p[1] + p[3] / 2;
    const double tl = t[0] - t[2] / 2, tr = t[0] + t[2] / 2, tt = t[1] - t[3] / 2, tb = t[1] + t[3] / 2;
    /* derivatives are taken w.r.t. the edges (pl, pr, pt, pb), then mapped to (x, y, w, h) */
    double d_edges[4] = {0, 0, 0, 0};
    double iw = fmin(pr, tr) - fmax(pl, tl), ih = fmin(pb, tb) - fmax(pt, tt);
    double inter = 0, dI[4] = {0, 0, 0, 0};
    if (iw > 0 && ih > 0) {
        inter = iw * ih;
        dI[0] = pl > tl ? -ih : 0;
        dI[1] = pr < tr ? ih : 0;
        dI[2] = pt > tt ? -iw : 0;
        dI[3] = pb < tb ? iw : 0;
    }
    const double uni = p[2] * p[3] + t[2] * t[3] - inter;
    const double dU[4] = {-p[3] - dI[0], p[3] - dI[1], -p[2] - dI[2], p[2] - dI[3]};
    iou_gradient g = {0, 0, {0, 0, 0, 0}};
    if (uni <= 0) return g;
    g.iou = inter / uni;
    for (int k = 0; k < 4; ++k) d_edges[k] = (dI[k] * uni - inter * dU[k]) / (uni * uni);
    g.metric = g.iou;

    const double cw = fmax(pr, tr) - fmin(pl, tl), ch = fmax(pb, tb) - fmin(pt, tt);
    const double dcw[4] = {pl < tl ? -1 : 0, pr > tr ? 1 : 0, 0, 0};
    const double dch[4] = {0, 0, pt < tt ? -1 : 0, pb > tb ? 1 : 0};
    if (kind == DN_IOU_GIOU) {
        const double c_area = cw * ch;
        if (c_area > 0) {
            g.metric -= (c_area - uni) / c_area;
            for (int k = 0; k < 4; ++k) {
                const double dC = dcw[k] * ch + cw * dch[k];
                /* d[(C - U) / C] = d[1 - U / C] = -(dU C - U dC) / C^2 */
                d_edges[k] += (dU[k] * c_area - uni * dC) / (c_area * c_area);
            }
        }
    } else if (kind == DN_IOU_DIOU || kind == DN_IOU_CIOU) {
        const double c2 = cw * cw + ch * ch;
        const double rho2 = (p[0] - t[0]) * (p[0] - t[0]) + (p[1] - t[1]) * (p[1] - t[1]);
        if (c2 > 0) {
            g.metric -= rho2 / c2;
            const double drho2[4] = {p[0] - t[0], p[0] - t[0], p[1] - t[1], p[1] - t[1]};
            for (int k = 0; k < 4; ++k) {
                const double dc2 = 2 * cw * dcw[k] + 2 * ch * dch[k];
                d_edges[k] -= (drho2[k] * c2 - rho2 * dc2) / (c2 * c2);
            }
        }
        if (kind == DN_IOU_CIOU && p[3] > 0 && t[3] > 0) {
            const double diff = atan(t[2] / t[3]) - atan(p[2] / p[3]);
            const double v = 4 / (kPi * kPi) * diff * diff;
            const double alpha = v > 0 ? v / (1 - g.iou + v) : 0;
            g.metric -= alpha * v;
            const double denom = p[2] * p[2] + p[3] * p[3];
            const double dv_dw = -8 / (kPi * kPi) * diff * (p[3] / denom);
            const double dv_dh = 8 / (kPi * kPi) * diff * (p[2] / denom);
            /* w = pr - pl, h = pb - pt */
            d_edges[0] -= alpha * -dv_dw;
            d_edges[1] -= alpha * dv_dw;
            d_edges[2] -= alpha * -dv_dh;
            d_edges[3] -= alpha * dv_dh;
        }
    }
    /* pl = x - w/2, pr = x + w/2: d/dx = d/dpl + d/dpr, d/dw = (d/dpr - d/dpl) / 2 */
    g.d[0] = d_edges[0] + d_edges[1];
    g.d[1] = d_edges[2] + d_edges[3];
    g.d[2] = (d_edges[1] - d_edges[0]) / 2;
    g.d[3] = (d_edges[3] - d_edges[2]) / 2;
    return g;
}

typedef struct {
    const dn_layer *l;
    const float *out;   /* this image's output */
    float *delta;       /* this image's delta */
    size_t plane;
    size_t entries;
    int net_w, net_h;
} yolo_image;

static size_t entry(const yolo_image *im, int anchor_slot, int e, int i, int j)
{
    return ((size_t)anchor_slot * im->entries + (size_t)e) * im->plane + (size_t)j * im->l->w + i;
}

static void predicted_box(const yolo_image *im, int slot, int anchor, int i, int j, float box[4])
{
    const dn_layer *l = im->l;
    box[0] = (i + im->out[entry(im, slot, 0, i, j)]) / l->w;
    box[1] = (j + im->out[entry(im, slot, 1, i, j)]) / l->h;
    box[2] = expf(im->out[entry(im, slot, 2, i, j)]) * l->anchors[2 * anchor] / im->net_w;
    box[3] = expf(im->out[entry(im, slot, 3, i, j)]) * l->anchors[2 * anchor + 1] / im->net_h;
}

static float clean_delta(float v, float max_delta)
{
    if (!isfinite(v)) return 0;
    if (v > max_delta) return max_delta;
    if (v < -max_delta) return -max_delta;
    return v;
}

/* Box deltas for truth t at (slot, i, j); returns the IoU-family figures of the prediction. */
static iou_gradient delta_box(const yolo_image *im, const float *truth, int slot, int anchor, int i, int j)
{
    const dn_layer *l = im->l;
    float pred[4];
    predicted_box(im, slot, anchor, i, j, pred);
    iou_gradient g = iou_metric_gradient(pred, truth, l->iou_loss);
    const size_t x = entry(im, slot, 0, i, j), y = entry(im, slot, 1, i, j);
    const size_t w = entry(im, slot, 2, i, j), h = entry(im, slot, 3, i, j);
    if (l->iou_loss == DN_IOU_MSE) {
        const float scale = (2 - truth[2] * truth[3]) * l->iou_normalizer;
        im->delta[x] += scale * (truth[0] * l->w - i - im->out[x]);
        im->delta[y] += scale * (truth[1] * l->h - j - im->out[y]);
        im->delta[w] += scale * (logf(truth[2] * im->net_w / l->anchors[2 * anchor]) - im->out[w]);
        im->delta[h] += scale * (logf(truth[3] * im->net_h / l->anchors[2 * anchor + 1]) - im->out[h]);
    } else {
        /* darknet's chain rule stops at the box for x, y and applies only e^t for w, h */
        im->delta[x] += clean_delta((float)g.d[0] * l->iou_normalizer, l->max_delta);
        im->delta[y] += clean_delta((float)g.d[1] * l->iou_normalizer, l->max_delta);
        im->delta[w] += clean_delta((float)(g.d[2] * exp(im->out[w])) * l->iou_normalizer, l->max_delta);
        im->delta[h] += clean_delta((float)(g.d[3] * exp(im->out[h])) * l->iou_normalizer, l->max_delta);
    }
    return g;
}

static float smoothed(const dn_layer *l, float target)
{
    return l->label_smooth_eps ? target * (1 - l->label_smooth_eps) + 0.5f * l->label_smooth_eps : target;
}

/* Class deltas (binary cross-entropy on logistic outputs); a cell that already has class deltas
 * from another truth only gets this truth's class added (multi-label). */
static void delta_class(const yolo_image *im, int slot, int i, int j, int class_id, float *avg_class)
{
    const dn_layer *l = im->l;
    const size_t own = entry(im, slot, 5 + class_id, i, j);
    *avg_class += im->out[own];
    if (im->delta[own] != 0) {
        im->delta[own] = l->cls_normalizer * (smoothed(l, 1) - im->out[own]);
        return;
    }
    for (int k = 0; k < l->classes; ++k) {
        const size_t idx = entry(im, slot, 5 + k, i, j);
        im->delta[idx] = l->cls_normalizer * (smoothed(l, k == class_id ? 1.0f : 0.0f) - im->out[idx]);
    }
}

static int mask_slot(const dn_layer *l, int anchor)
{
    for (int s = 0; s < l->num_masks; ++s)
        if (l->mask[s] == anchor) return s;
    return -1;
}

static int truth_valid(const dn_layer *l, const float *truth)
{
    return truth[2] > 0 && truth[3] > 0 && truth[4] >= 0 && (int)truth[4] < l->classes;
}

typedef struct {
    double iou, metric_loss, obj, cls, recall50, recall75;
    int count;
} yolo_totals;

static void assign(const yolo_image *im, const float *truth, int slot, int anchor, int i, int j, yolo_totals *tot)
{
    const dn_layer *l = im->l;
    iou_gradient g = delta_box(im, truth, slot, anchor, i, j);
    const size_t obj = entry(im, slot, 4, i, j);
    im->delta[obj] = l->obj_normalizer * (1 - im->out[obj]);
    float avg_class = 0;
    delta_class(im, slot, i, j, (int)truth[4], &avg_class);
    tot->iou += g.iou;
    tot->metric_loss += 1 - (l->iou_loss == DN_IOU_GIOU ? g.metric : g.iou);
    tot->obj += im->out[obj];
    tot->cls += avg_class;
    tot->recall50 += g.iou > 0.5;
    tot->recall75 += g.iou > 0.75;
    tot->count += 1;
}

/* An anchor-shaped box at the origin, for matching truths to anchors by shape. */
static float shape_iou(const dn_layer *l, const float *truth, int anchor, int net_w, int net_h)
{
    const float a[4] = {0, 0, l->anchors[2 * anchor] / net_w, l->anchors[2 * anchor + 1] / net_h};
    const float t[4] = {0, 0, truth[2], truth[3]};
    return dn_box_iou(a, t);
}

static void image_deltas(const yolo_image *im, const float *truths, int max_truths, yolo_totals *tot)
{
    const dn_layer *l = im->l;
    int num_truths = 0;
    while (num_truths < max_truths && truths[num_truths * 5] != 0) ++num_truths;

    /* every prediction: objectness pushed to 0 unless it already overlaps a truth well */
    for (int slot = 0; slot < l->num_masks; ++slot) {
        for (int j = 0; j < l->h; ++j) {
            for (int i = 0; i < l->w; ++i) {
                float pred[4];
                predicted_box(im, slot, l->mask[slot], i, j, pred);
                int confident = 0;
                for (int k = 0; k < l->classes && !confident; ++k)
                    confident = im->out[entry(im, slot, 5 + k, i, j)] > 0.25f;
                float best_iou = 0, best_match_iou = 0;
                int best_t = -1;
                for (int t = 0; t < num_truths; ++t) {
                    const float *truth = truths + t * 5;
                    if (!truth_valid(l, truth)) continue;
                    const float iou = dn_box_iou(pred, truth);
                    if (iou > best_iou) {
                        best_iou = iou;
                        best_t = t;
                    }
                    if (confident && iou > best_match_iou) best_match_iou = iou;
                }
                const size_t obj = entry(im, slot, 4, i, j);
                im->delta[obj] = best_match_iou > l->ignore_thresh ? 0 : l->obj_normalizer * (0 - im->out[obj]);
                if (best_t >= 0 && best_iou > l->truth_thresh) {
                    yolo_totals ignored = {0};
                    assign(im, truths + best_t * 5, slot, l->mask[slot], i, j, &ignored);
                }
            }
        }
    }

    /* every truth: the anchor of the most similar shape (and, with iou_thresh < 1, any anchor
     * similar enough) predicts it from the cell holding its centre */
    for (int t = 0; t < num_truths; ++t) {
        const float *truth = truths + t * 5;
        if (!truth_valid(l, truth)) continue;
        int i = (int)(truth[0] * l->w), j = (int)(truth[1] * l->h);
        if (i < 0 || j < 0) continue;
        if (i >= l->w) i = l->w - 1;
        if (j >= l->h) j = l->h - 1;
        int best_anchor = 0;
        float best_iou = 0;
        for (int a = 0; a < l->total_anchors; ++a) {
            const float iou = shape_iou(l, truth, a, im->net_w, im->net_h);
            if (iou > best_iou) {
                best_iou = iou;
                best_anchor = a;
            }
        }
        for (int a = 0; a < l->total_anchors; ++a) {
            const int slot = mask_slot(l, a);
            if (slot < 0) continue;
            if (a == best_anchor || (l->iou_thresh < 1.0f && shape_iou(l, truth, a, im->net_w, im->net_h) > l->iou_thresh))
                assign(im, truth, slot, a, i, j, tot);
        }
    }

    /* a prediction assigned several truths of different classes averages their box deltas */
    for (int slot = 0; slot < l->num_masks; ++slot) {
        for (int j = 0; j < l->h; ++j) {
            for (int i = 0; i < l->w; ++i) {
                int positive = 0;
                for (int k = 0; k < l->classes; ++k) positive += im->delta[entry(im, slot, 5 + k, i, j)] > 0;
                if (positive > 1)
                    for (int e = 0; e < 4; ++e) im->delta[entry(im, slot, e, i, j)] /= (float)positive;
            }
        }
    }
}

void dn_yolo_deltas(dn_layer *l, const struct dn_network *net, const float *truths, int n, int max_truths)
{
    yolo_totals tot = {0};
    double box_loss = 0, class_loss = 0;
    memset(l->delta, 0, (size_t)n * l->outputs * sizeof(float));
    for (int b = 0; b < n; ++b) {
        yolo_image im = {l, l->output + (size_t)b * l->outputs, l->delta + (size_t)b * l->outputs,
                         (size_t)l->w * l->h, (size_t)(l->classes + 5), net->params.width, net->params.height};
        image_deltas(&im, truths + (size_t)b * max_truths * 5, max_truths, &tot);
        for (int slot = 0; slot < l->num_masks; ++slot) {
            const float *d = im.delta + (size_t)slot * im.entries * im.plane;
            for (size_t k = 0; k < im.entries * im.plane; ++k) {
                const double sq = (double)d[k] * d[k];
                if (k < 4 * im.plane) box_loss += sq;
                else class_loss += sq;
            }
        }
    }
    const int count = tot.count > 0 ? tot.count : 1;
    const double iou_loss = l->iou_loss == DN_IOU_MSE ? box_loss : l->iou_normalizer * tot.metric_loss / count;
    l->cost = (float)(iou_loss + class_loss);
    dn_train_stats *s = &l->stats;
    s->loss = l->cost / (float)n;
    s->iou_loss = (float)(iou_loss / n);
    s->class_loss = (float)(class_loss / n);
    s->avg_iou = (float)(tot.iou / count);
    s->avg_obj = (float)(tot.obj / count);
    s->avg_class = (float)(tot.cls / count);
    s->recall50 = (float)(tot.recall50 / count);
    s->recall75 = (float)(tot.recall75 / count);
    s->count = tot.count;
}

void dn_yolo_backward(dn_layer *l, float *input_delta, int n)
{
    /* the deltas are already w.r.t. the logits of x, y, objectness and classes (darknet's
     * convention: sigmoid + cross-entropy cancel), and w.r.t. the raw w, h */
    if (!input_delta) return;
    const size_t count = (size_t)n * l->outputs;
    for (size_t i = 0; i < count; ++i) input_delta[i] += l->delta[i];
}

/* [yolo]: activates x, y, objectness and class scores per anchor; w, h stay raw. */
#include "internal.h"

#include <float.h>
#include <string.h>

static int parse_enum(dn_options *o, const char *key, const char *fallback, const char *const *names, int count,
                      int *out)
{
    const char *value = dn_opt_str(o, key, fallback);
    for (int i = 0; i < count; ++i) {
        if (strcmp(value, names[i]) == 0) {
            *out = i;
            return 1;
        }
    }
    dn_opt_error(o, key, "unknown %s '%s'", key, value);
    return 0;
}

dn_status dn_yolo_setup(dn_layer *l, dn_options *o)
{
    static const char *const iou_losses[] = {"mse", "giou", "diou", "ciou"};
    static const char *const nms_kinds[] = {"default", "greedynms", "diounms"};
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
    if (parse_enum(o, "iou_loss", "mse", iou_losses, 4, &value)) l->iou_loss = (dn_iou_loss)value;
    if (parse_enum(o, "nms_kind", "default", nms_kinds, 3, &value)) l->nms_kind = (dn_nms_kind)value;
    if (dn_opt_int(o, "new_coords", 0) != 0)
        dn_opt_error(o, "new_coords", "option 'new_coords=1' (scaled-YOLOv4 boxes) is not supported by this engine");
    int masks = dn_opt_int_list(o, "mask", l->mask, 16);
    int anchors = dn_opt_float_list(o, "anchors", l->anchors, 64);
    if (o->status != DN_OK) return o->status;

    if (l->classes < 1) dn_opt_error(o, "classes", "classes must be >= 1, got %d", l->classes);
    if (l->total_anchors < 1 || l->total_anchors > 32)
        dn_opt_error(o, "num", "num must be in [1, 32], got %d", l->total_anchors);
    if (l->max_boxes < 1) dn_opt_error(o, "max", "max must be >= 1, got %d", l->max_boxes);
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

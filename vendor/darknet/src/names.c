/* The names of the engine's enums as cfg files spell them: the one table the cfg parser and the
 * Python side (darknet_py.names) read. */
#include "internal.h"

#include <stddef.h>

static const char *const layer_names[] = {"convolutional", "maxpool", "route", "shortcut", "upsample", "yolo"};
static const char *const activation_names[] = {"logistic", "linear", "leaky", "relu", "mish", "swish"};
static const char *const nms_kind_names[] = {"default", "greedynms", "diounms"};
static const char *const iou_loss_names[] = {"mse", "giou", "diou", "ciou"};
static const char *const policy_names[] = {"constant", "steps", "poly"};
static const char *const precision_names[] = {"fp32", "bf16"};

static const struct {
    const char *const *names;
    int count;
} tables[] = {
    [DN_NAMES_LAYER] = {layer_names, sizeof layer_names / sizeof layer_names[0]},
    [DN_NAMES_ACTIVATION] = {activation_names, sizeof activation_names / sizeof activation_names[0]},
    [DN_NAMES_NMS_KIND] = {nms_kind_names, sizeof nms_kind_names / sizeof nms_kind_names[0]},
    [DN_NAMES_IOU_LOSS] = {iou_loss_names, sizeof iou_loss_names / sizeof iou_loss_names[0]},
    [DN_NAMES_POLICY] = {policy_names, sizeof policy_names / sizeof policy_names[0]},
    [DN_NAMES_PRECISION] = {precision_names, sizeof precision_names / sizeof precision_names[0]},
};

const char *dn_name(int table, int value)
{
    if (table < 0 || table >= (int)(sizeof tables / sizeof tables[0])) return NULL;
    if (value < 0 || value >= tables[table].count) return NULL;
    return tables[table].names[value];
}

int dn_name_count(int table)
{
    if (table < 0 || table >= (int)(sizeof tables / sizeof tables[0])) return 0;
    return tables[table].count;
}

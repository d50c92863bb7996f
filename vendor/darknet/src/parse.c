/* Turns a read cfg into the network's [net] parameters and its list of layers. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    dn_layer_type type;
} section_types[] = {
    {"convolutional", DN_LAYER_CONVOLUTIONAL}, {"conv", DN_LAYER_CONVOLUTIONAL}, {"maxpool", DN_LAYER_MAXPOOL},
    {"max", DN_LAYER_MAXPOOL},                 {"route", DN_LAYER_ROUTE},        {"shortcut", DN_LAYER_SHORTCUT},
    {"upsample", DN_LAYER_UPSAMPLE},           {"yolo", DN_LAYER_YOLO},
};

/* darknet sections this engine knows of but does not implement (a clearer message than "unknown"). */
static const char *const unsupported_sections[] = {
    "connected", "dropout", "avgpool", "softmax", "region", "reorg", "reorg3d", "local", "crnn", "rnn",
    "gru", "lstm", "conv_lstm", "history", "crop", "cost", "detection", "batchnorm", "scale_channels",
    "sam", "gaussian_yolo", "contrastive", "empty", "silence", "implicit_add", "implicit_mul",
    "deconvolutional", "deconv", "normalization", "l2norm", "logistic", "activation"};

/* A section name for a message: as it is when it is plain ([a-z0-9_]), else dn_quote'd. */
static const char *quote_section(char *buf, const char *name)
{
    size_t n = strlen(name);
    int plain = n > 0 && n <= DN_QUOTE_CHARS;
    for (size_t i = 0; plain && i < n; ++i)
        plain = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') || name[i] == '_';
    if (!plain) return dn_quote(buf, name, n);
    memcpy(buf, name, n + 1);
    return buf;
}

static int section_type(const char *name, dn_layer_type *out)
{
    for (size_t i = 0; i < sizeof section_types / sizeof section_types[0]; ++i) {
        if (strcmp(name, section_types[i].name) == 0) {
            *out = section_types[i].type;
            return 1;
        }
    }
    return 0;
}

static int is_unsupported_section(const char *name)
{
    for (size_t i = 0; i < sizeof unsupported_sections / sizeof unsupported_sections[0]; ++i)
        if (strcmp(name, unsupported_sections[i]) == 0) return 1;
    return 0;
}

static void warn_unused(const dn_cfg *cfg, const dn_section *s, struct dn_network *net)
{
    char q[DN_QUOTE_SIZE];
    for (int i = 0; i < s->count; ++i)
        if (!s->options[i].used)
            dn_log(net->log, net->log_user, DN_LOG_WARNING, "%s:%d: [%s] unknown option %s ignored", cfg->path,
                   s->options[i].line, s->name, dn_quote_str(q, s->options[i].key));
}

static dn_status parse_net_section(dn_options *o, dn_net_params *p)
{
    p->batch = dn_opt_int(o, "batch", 1);
    p->subdivisions = dn_opt_int(o, "subdivisions", 1);
    p->width = dn_opt_int(o, "width", 0);
    p->height = dn_opt_int(o, "height", 0);
    p->channels = dn_opt_int(o, "channels", 0);
    p->momentum = dn_opt_float(o, "momentum", 0.9f);
    p->decay = dn_opt_float(o, "decay", 0.0001f);
    p->learning_rate = dn_opt_float(o, "learning_rate", 0.001f);
    p->burn_in = dn_opt_int(o, "burn_in", 0);
    p->power = dn_opt_float(o, "power", 4.0f);
    p->max_batches = dn_opt_int(o, "max_batches", 0);
    p->angle = dn_opt_float(o, "angle", 0.0f);
    p->saturation = dn_opt_float(o, "saturation", 1.0f);
    p->exposure = dn_opt_float(o, "exposure", 1.0f);
    p->hue = dn_opt_float(o, "hue", 0.0f);
    p->mosaic = dn_opt_int(o, "mosaic", 0);
    p->flip = dn_opt_int(o, "flip", 1);
    p->letter_box = dn_opt_int(o, "letter_box", 0);
    const char *policy = dn_opt_str(o, "policy", "constant");
    int steps = dn_opt_int_list(o, "steps", p->steps, DN_MAX_STEPS);
    int scales = dn_opt_float_list(o, "scales", p->scales, DN_MAX_STEPS);
    if (o->status != DN_OK) return o->status;

    if (strcmp(policy, dn_name(DN_NAMES_POLICY, DN_POLICY_CONSTANT)) == 0) {
        p->policy = DN_POLICY_CONSTANT;
    } else if (strcmp(policy, dn_name(DN_NAMES_POLICY, DN_POLICY_STEPS)) == 0) {
        p->policy = DN_POLICY_STEPS;
        if (steps <= 0) dn_opt_error(o, "steps", "policy=steps needs a 'steps' list");
        else if (scales != steps)
            dn_opt_error(o, "scales", "%d scales for %d steps; give one scale per step", scales < 0 ? 0 : scales, steps);
        p->num_steps = steps < 0 ? 0 : steps;
    } else if (strcmp(policy, dn_name(DN_NAMES_POLICY, DN_POLICY_POLY)) == 0) {
        p->policy = DN_POLICY_POLY;
    } else {
        char q[DN_QUOTE_SIZE];
        dn_opt_error(o, "policy", "learning-rate policy %s is not supported (use steps, constant or poly)",
                     dn_quote_str(q, policy));
    }
    if (p->width < 1 || p->height < 1 || p->channels < 1)
        dn_opt_error(o, p->width < 1 ? "width" : p->height < 1 ? "height" : "channels",
                     "width, height and channels must be positive (got %dx%dx%d)", p->width, p->height, p->channels);
    else if (p->width > DN_MAX_SIDE || p->height > DN_MAX_SIDE)
        dn_opt_error(o, p->width > DN_MAX_SIDE ? "width" : "height", "width and height must be at most %d (got %dx%d)",
                     DN_MAX_SIDE, p->width, p->height);
    else if (p->channels > DN_MAX_CHANNELS)
        dn_opt_error(o, "channels", "channels must be at most %d, got %d", DN_MAX_CHANNELS, p->channels);
    else if ((size_t)p->width * p->height * p->channels > DN_MAX_LAYER_FLOATS)
        dn_opt_error(o, "width", "an input of %dx%dx%d is more than %zu values", p->width, p->height, p->channels,
                     DN_MAX_LAYER_FLOATS);
    if (p->batch < 1) dn_opt_error(o, "batch", "batch must be >= 1, got %d", p->batch);
    if (p->subdivisions < 1 || p->subdivisions > p->batch)
        dn_opt_error(o, "subdivisions", "subdivisions must be in [1, batch=%d], got %d", p->batch, p->subdivisions);
    return o->status;
}

static dn_status setup_layer(dn_layer *l, dn_options *o, struct dn_network *net)
{
    switch (l->type) {
    case DN_LAYER_CONVOLUTIONAL: return dn_convolutional_setup(l, o, net);
    case DN_LAYER_MAXPOOL: return dn_maxpool_setup(l, o);
    case DN_LAYER_ROUTE: return dn_route_setup(l, o, net);
    case DN_LAYER_SHORTCUT: return dn_shortcut_setup(l, o, net);
    case DN_LAYER_UPSAMPLE: return dn_upsample_setup(l, o);
    case DN_LAYER_YOLO: return dn_yolo_setup(l, o);
    }
    return dn_fail(DN_ERR_CFG, "internal: unknown layer type %d", (int)l->type);
}

dn_status dn_parse_network(const dn_cfg *cfg, struct dn_network *net)
{
    dn_section *first = &cfg->sections[0];
    char q[DN_QUOTE_SIZE];
    if (strcmp(first->name, "net") != 0 && strcmp(first->name, "network") != 0)
        return dn_fail(DN_ERR_CFG, "%s:%d: the first section must be [net], found [%s]", cfg->path, first->line,
                       quote_section(q, first->name));
    dn_options net_options = {cfg, first, DN_OK};
    dn_status st = parse_net_section(&net_options, &net->params);
    if (st != DN_OK) return st;
    warn_unused(cfg, first, net);

    net->n = cfg->count - 1;
    if (net->n < 1) return dn_fail(DN_ERR_CFG, "%s: the cfg has a [net] section but no layers", cfg->path);
    net->layers = dn_calloc((size_t)net->n, sizeof(dn_layer));
    if (!net->layers) return dn_fail(DN_ERR_MEMORY, "out of memory for %d layers", net->n);

    int w = net->params.width, h = net->params.height, c = net->params.channels;
    size_t weights = 0;
    for (int i = 0; i < net->n; ++i) {
        dn_section *s = &cfg->sections[i + 1];
        dn_layer *l = &net->layers[i];
        if (!section_type(s->name, &l->type)) {
            if (strcmp(s->name, "net") == 0 || strcmp(s->name, "network") == 0)
                return dn_fail(DN_ERR_CFG, "%s:%d: a second [%s] section", cfg->path, s->line, s->name);
            return dn_fail(DN_ERR_CFG, "%s:%d: %s section [%s]", cfg->path, s->line,
                           is_unsupported_section(s->name) ? "unsupported" : "unknown", quote_section(q, s->name));
        }
        l->index = i;
        l->cfg_line = s->line;
        l->batch = net->batch;
        l->w = w;
        l->h = h;
        l->c = c;
        dn_options o = {cfg, s, DN_OK};
        st = setup_layer(l, &o, net);
        if (st == DN_OK && o.status != DN_OK) st = o.status;
        if (st != DN_OK) return st;
        if (l->type == DN_LAYER_YOLO && i == 0)
            return dn_fail(DN_ERR_CFG, "%s:%d: [yolo] cannot be the first layer", cfg->path, s->line);
        warn_unused(cfg, s, net);
        char why[256];
        switch (dn_layer_size_problem(l, net->batch, why, sizeof why)) {
        case 1: return dn_fail(DN_ERR_CFG, "%s:%d: [%s] layer %d is too large: %s", cfg->path, s->line, s->name, i, why);
        case 2: return dn_fail(DN_ERR_ARGUMENT, "%s:%d: [%s] layer %d: %s", cfg->path, s->line, s->name, i, why);
        }
        if (l->type == DN_LAYER_CONVOLUTIONAL) {
            weights += l->nweights;
            if (weights > DN_MAX_NETWORK_WEIGHTS)
                return dn_fail(DN_ERR_CFG, "%s:%d: [%s] layer %d brings the network's weights to %zu, more than %zu",
                               cfg->path, s->line, s->name, i, weights, DN_MAX_NETWORK_WEIGHTS);
        }
        st = dn_layer_alloc_output(l, net->batch);
        if (st != DN_OK) return st;
        w = l->out_w;
        h = l->out_h;
        c = l->out_c;
    }
    return DN_OK;
}

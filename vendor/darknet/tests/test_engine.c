/* The engine's own tests, through the public header only (no Python involved). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "darknet.h"

static int passed, failed;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (cond) {                                                                  \
            ++passed;                                                                \
        } else {                                                                     \
            ++failed;                                                                \
            fprintf(stderr, "%s:%d: check failed: %s (%s)\n", __FILE__, __LINE__, #cond, \
                    dn_last_error());                                                \
        }                                                                            \
    } while (0)

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static int warnings_seen;
static void count_warning(void *user, int level, const char *message)
{
    (void)user;
    if (level == DN_LOG_WARNING && strstr(message, "unknown option 'colour'")) ++warnings_seen;
}

static const char *TINY_CFG =
    "[net]\nwidth=32\nheight=32\nchannels=3\ncolour=1\n"
    "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=2\npad=1\nactivation=mish\n"
    "[maxpool]\nsize=2\nstride=1\n"
    "[route]\nlayers=-1,-2\n"
    "[convolutional]\nfilters=14\nsize=1\nactivation=linear\n"
    "[yolo]\nmask=0,1\nanchors=4,4, 8,8\nclasses=2\nnum=2\nscale_x_y=1.05\n";

static void test_forward_and_weights(void)
{
    dn_network *net = NULL;
    write_file("tiny.cfg", TINY_CFG);
    CHECK(dn_network_create("tiny.cfg", 2, 7, count_warning, NULL, &net) == DN_OK);
    if (!net) return;
    CHECK(warnings_seen == 1);
    CHECK(dn_network_layer_count(net) == 5);
    dn_layer_info info;
    CHECK(dn_network_layer_info(net, 2, &info) == DN_OK && info.type == DN_LAYER_ROUTE && info.out_c == 16);
    CHECK(dn_network_layer_info(net, 4, &info) == DN_OK && info.out_w == 16 && info.out_c == 14);

    float input[2 * 3 * 32 * 32];
    for (size_t i = 0; i < sizeof input / sizeof input[0]; ++i) input[i] = (float)(i % 97) / 97.0f;
    CHECK(dn_network_forward(net, input, 2) == DN_OK);
    float out[2 * 14 * 16 * 16];
    CHECK(dn_network_copy_output(net, 4, out, sizeof out / sizeof out[0]) == DN_OK);
    int in_range = 1;
    for (int a = 0; a < 2; ++a) /* objectness of each anchor is a probability */
        for (int i = 0; i < 256; ++i) {
            float obj = out[(a * 7 + 4) * 256 + i];
            if (!(obj > 0 && obj < 1)) in_range = 0;
        }
    CHECK(in_range);
    /* the two images differ, so must the outputs */
    CHECK(memcmp(out, out + 14 * 256, 14 * 256 * sizeof(float)) != 0);

    CHECK(dn_network_save_weights(net, "tiny.weights") == DN_OK);
    dn_network *copy = NULL;
    int loaded = -1;
    CHECK(dn_network_create("tiny.cfg", 1, 99, NULL, NULL, &copy) == DN_OK);
    CHECK(dn_network_load_weights(copy, "tiny.weights", &loaded) == DN_OK && loaded == 2);
    CHECK(dn_network_forward(copy, input, 1) == DN_OK);
    float again[14 * 16 * 16];
    CHECK(dn_network_copy_output(copy, 4, again, sizeof again / sizeof again[0]) == DN_OK);
    CHECK(memcmp(again, out, sizeof again) == 0);
    CHECK(dn_network_forward(copy, input, 2) == DN_ERR_ARGUMENT && strstr(dn_last_error(), "1 to 1"));
    dn_network_free(copy);
    dn_network_free(net);
}

static void test_errors(void)
{
    dn_network *net = (dn_network *)1;
    CHECK(dn_network_create("does-not-exist.cfg", 1, 0, NULL, NULL, &net) == DN_ERR_IO);
    CHECK(net == NULL && strstr(dn_last_error(), "does-not-exist.cfg: cannot open cfg"));
    write_file("bad.cfg", "[net]\nwidth=32\nheight=32\nchannels=3\n[convolutional]\nactivation=mish2\n");
    CHECK(dn_network_create("bad.cfg", 1, 0, NULL, NULL, &net) == DN_ERR_CFG);
    CHECK(strstr(dn_last_error(), "bad.cfg:6: [convolutional] unknown activation 'mish2'") != NULL);
    dn_network_free(NULL); /* allowed */
}

static void test_nms(void)
{
    /* two heavily overlapping boxes and one apart: the weaker overlapping one goes */
    const float boxes[] = {0.5f, 0.5f, 0.2f, 0.2f, 0.51f, 0.5f, 0.2f, 0.2f, 0.1f, 0.1f, 0.1f, 0.1f};
    float probs[] = {0.9f, 0.8f, 0.7f};
    CHECK(dn_nms(boxes, probs, 3, 1, 0.45f, DN_NMS_DEFAULT, 0.6f) == DN_OK);
    CHECK(probs[0] == 0.9f && probs[1] == 0.0f && probs[2] == 0.7f);
}

static void test_calc_anchors(void)
{
    /* two tight clusters around (10, 10) and (100, 50) */
    float wh[40];
    for (int i = 0; i < 20; ++i) {
        wh[2 * i] = i < 10 ? 10.0f + (float)(i % 3) : 100.0f + (float)(i % 3);
        wh[2 * i + 1] = i < 10 ? 10.0f : 50.0f;
    }
    float anchors[4], avg_iou = 0;
    int iterations = 0;
    CHECK(dn_calc_anchors(wh, 20, 2, 3, 1000, anchors, &avg_iou, &iterations) == DN_OK);
    CHECK(fabsf(anchors[0] - 11.0f) < 1.01f && fabsf(anchors[2] - 101.0f) < 1.01f);
    CHECK(avg_iou > 0.9f);
}

int main(void)
{
    test_forward_and_weights();
    test_errors();
    test_nms();
    test_calc_anchors();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

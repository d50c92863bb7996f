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

static void test_gpu_status(void)
{
    char why[256];
    /* this test program is the CPU build */
    CHECK(dn_gpu_status(why, sizeof why) == DN_GPU_NOT_BUILT && strstr(why, "DARKNET_PY_GPU=1"));
    CHECK(dn_gpu_status(NULL, 0) == DN_GPU_NOT_BUILT);
    /* the mapping from the CUDA runtime's answers, as a GPU build sees them */
    CHECK(dn_gpu_explain(35, "cudaErrorInsufficientDriver (...)", 0, 13000, 0, why, sizeof why) == DN_GPU_NO_DRIVER);
    CHECK(strstr(why, "no NVIDIA driver") && strstr(why, "libcuda.so.1") && strstr(why, "13.0"));
    CHECK(dn_gpu_explain(35, "cudaErrorInsufficientDriver (...)", 12020, 13000, 0, why, sizeof why) ==
          DN_GPU_DRIVER_TOO_OLD);
    CHECK(strstr(why, "too old") && strstr(why, "CUDA 12.2") && strstr(why, "13.0"));
    CHECK(dn_gpu_explain(999, "cudaErrorUnknown (unknown error)", 12080, 13000, 0, why, sizeof why) ==
          DN_GPU_DRIVER_TOO_OLD);
    CHECK(dn_gpu_explain(100, "cudaErrorNoDevice (...)", 13000, 13000, 0, why, sizeof why) == DN_GPU_NO_DEVICE);
    CHECK(strstr(why, "no CUDA device"));
    CHECK(dn_gpu_explain(0, NULL, 13000, 13000, 0, why, sizeof why) == DN_GPU_NO_DEVICE);
    CHECK(dn_gpu_explain(803, "cudaErrorSystemDriverMismatch (system has unsupported display driver / cuda driver "
                              "combination)", 13000, 13000, 0, why, sizeof why) == DN_GPU_CUDA_ERROR);
    CHECK(strstr(why, "cudaErrorSystemDriverMismatch"));
    CHECK(dn_gpu_explain(0, NULL, 13010, 13000, 2, why, sizeof why) == DN_GPU_READY);
    CHECK(strcmp(why, "2 CUDA devices (driver CUDA 13.1, runtime CUDA 13.0)") == 0);
    CHECK(dn_gpu_explain(0, NULL, 13000, 13000, 1, why, 8) == DN_GPU_READY && strlen(why) == 7); /* truncated */
    CHECK(dn_gpu_explain(0, NULL, 13000, 13000, 1, NULL, 0) == DN_GPU_READY);
}

int main(void)
{
    test_forward_and_weights();
    test_errors();
    test_nms();
    test_calc_anchors();
    test_gpu_status();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

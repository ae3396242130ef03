/*
 * augment.c - on-the-fly data augmentation for training images.
 *
 * Each output pixel q (x right, y down) is traced back to a source position and sampled
 * bilinearly (zero outside the image, which is MNIST's background):
 *   elastic:  q' = q + alpha * G_sigma * U(-1,1) fields      (Simard, Steinkraus, Platt 2003)
 *   affine:   p  = A^-1 (q' - c - t) + c,  A = R(theta) * [[s, s tan(phi)], [0, s]]
 *             c = image centre, t = shift, theta = rotation, s = scale, phi = shear
 * One sampling pass, so the two distortions cost one interpolation. All randomness comes from
 * the rng passed in, so a batch is reproducible from its seed whatever the thread count.
 * No allocation: the elastic fields live on the stack (images up to 64x64; larger images get
 * the affine part only).
 */
#include <math.h>
#include <string.h>

#include "internal.h"

#define ELASTIC_MAX_PIXELS 4096

void cnn_augment_default(struct cnn_augment *a, int elastic) {
    a->shift = 2.0f;
    a->rotate = 10.0f;
    a->scale = 0.1f;
    a->shear = 10.0f;
    a->elastic_alpha = elastic ? 6.0f : 0.0f;
    a->elastic_sigma = 4.0f;
}

static float uniform_pm(struct cnn_rng *r, float a) {
    return a * (2.0f * cnn_rng_uniform(r) - 1.0f);
}

/* In-place separable Gaussian blur of f (h,w) with sigma; tmp has h*w floats. */
static void blur(float *f, float *tmp, int h, int w, float sigma) {
    float k[33];
    int rad = (int)ceilf(3.0f * sigma);
    if (rad > 16) rad = 16;
    float sum = 0.0f;
    for (int i = -rad; i <= rad; i++) sum += k[i + rad] = expf(-0.5f * i * i / (sigma * sigma));
    for (int i = 0; i <= 2 * rad; i++) k[i] /= sum;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float s = 0.0f;
            for (int i = -rad; i <= rad; i++) {
                const int xx = x + i;
                if (xx >= 0 && xx < w) s += k[i + rad] * f[y * w + xx];
            }
            tmp[y * w + x] = s;
        }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float s = 0.0f;
            for (int i = -rad; i <= rad; i++) {
                const int yy = y + i;
                if (yy >= 0 && yy < h) s += k[i + rad] * tmp[yy * w + x];
            }
            f[y * w + x] = s;
        }
}

/* Bilinear sample of src (h,w) u8 at (x,y), 0 outside; result in [0,255]. */
static float sample(const uint8_t *src, int h, int w, float x, float y) {
    const float fx = floorf(x), fy = floorf(y);
    const int x0 = (int)fx, y0 = (int)fy;
    const float ax = x - fx, ay = y - fy;
    float v = 0.0f;
    for (int dy = 0; dy < 2; dy++)
        for (int dx = 0; dx < 2; dx++) {
            const int xx = x0 + dx, yy = y0 + dy;
            if (xx < 0 || yy < 0 || xx >= w || yy >= h) continue;
            const float wgt = (dx ? ax : 1.0f - ax) * (dy ? ay : 1.0f - ay);
            v += wgt * src[yy * w + xx];
        }
    return v;
}

int cnn_augment_image(const struct cnn_augment *a, const uint8_t *src, float *dst, int h, int w,
                      float mean, float std, struct cnn_rng *rng) {
    /* h, w <= 4096 keeps h * w (and every index below) inside an int; sigma 0 would divide
     * by zero in the Gaussian (NaN weights, NaN images) */
    if (h < 1 || w < 1 || h > 4096 || w > 4096)
        return cnn_fail(CNN_ERR_ARG, "augment: image size %dx%d out of range [1, 4096]", h, w);
    if (!(std > 0.0f))
        return cnn_fail(CNN_ERR_ARG, "augment: normalisation std %g must be > 0", (double)std);
    if (a->elastic_alpha > 0.0f && !(a->elastic_sigma > 0.0f))
        return cnn_fail(CNN_ERR_ARG, "augment: elastic sigma %g must be > 0",
                        (double)a->elastic_sigma);
    const float deg = 3.14159265f / 180.0f;
    const float th = uniform_pm(rng, a->rotate) * deg, sh = uniform_pm(rng, a->shear) * deg;
    const float s = 1.0f + uniform_pm(rng, a->scale);
    const float tx = uniform_pm(rng, a->shift), ty = uniform_pm(rng, a->shift);
    /* A = R * S, S = [[s, s tan sh], [0, s]]; invert the 2x2 directly */
    const float c = cosf(th), si = sinf(th), t = tanf(sh);
    const float a00 = c * s, a01 = c * s * t - si * s, a10 = si * s, a11 = si * s * t + c * s;
    const float det = a00 * a11 - a01 * a10;
    const float i00 = a11 / det, i01 = -a01 / det, i10 = -a10 / det, i11 = a00 / det;
    const float cx = 0.5f * (float)(w - 1), cy = 0.5f * (float)(h - 1);
    float ex[ELASTIC_MAX_PIXELS], ey[ELASTIC_MAX_PIXELS], tmp[ELASTIC_MAX_PIXELS];
    const int elastic = a->elastic_alpha > 0.0f && h * w <= ELASTIC_MAX_PIXELS;
    if (elastic) {
        for (int i = 0; i < h * w; i++) ex[i] = 2.0f * cnn_rng_uniform(rng) - 1.0f;
        for (int i = 0; i < h * w; i++) ey[i] = 2.0f * cnn_rng_uniform(rng) - 1.0f;
        blur(ex, tmp, h, w, a->elastic_sigma);
        blur(ey, tmp, h, w, a->elastic_sigma);
    }
    const float scale = 1.0f / (255.0f * std), shift = mean / std;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float qx = (float)x, qy = (float)y;
            if (elastic) {
                qx += a->elastic_alpha * ex[y * w + x];
                qy += a->elastic_alpha * ey[y * w + x];
            }
            const float ux = qx - cx - tx, uy = qy - cy - ty;
            const float px = i00 * ux + i01 * uy + cx, py = i10 * ux + i11 * uy + cy;
            dst[y * w + x] = sample(src, h, w, px, py) * scale - shift;
        }
    return CNN_OK;
}

/*
 * image.c - decode an image file and prepare a photographed digit the way MNIST digits were.
 *
 * What it is: the bridge between "a picture somebody took of a digit on paper" and the
 * 28x28 u8 input a network trained on MNIST expects. What it is not: a general document
 * scanner. It assumes one digit that is the largest ink structure in the picture.
 *
 * Why it matters. A model with 99% test accuracy will still call a perfectly legible photo
 * of a "7" a "2" when the input does not look like MNIST. Almost every "my own digit is
 * predicted wrong" report comes down to one of three differences:
 *   - polarity: MNIST is light ink (255) on black (0); a photo is dark ink on light paper;
 *   - scale:    MNIST digits fill a 20x20 box (longer side = 20 px, aspect kept); a photo
 *               digit fills a random part of a random-sized canvas;
 *   - centring: MNIST puts the centre of mass at (14,14) (measured over t10k: 13.99, 14.01),
 *               not the centre of the bounding box.
 * Less often: uneven lighting or tinted paper, noise and JPEG artefacts read as ink, a speck
 * of dust widens the crop, or a thin pen stroke shrinks to a faint 0.3 px line at 20 px.
 *
 * The pipeline of cnn_image_to_mnist (LeCun et al. 1998, section "MNIST", plus robustness):
 *   Before all: the decoders have turned the picture upright by its EXIF orientation.
 *   0. Work image: area-average down so the longer side is <= WORK_MAX px. Bounds time and
 *      memory for 50-megapixel photos; the digit ends at 20 px, so nothing useful is lost.
 *   1. Polarity. Ink is a minority wherever it is: next to the median of its cell it is an
 *      outlier on one side only, while shadows, vignetting and noise make outliers on both.
 *      Two grids (2x2 and 4x4 cells) count the outliers by sign; when both clearly agree that
 *      is the answer, otherwise the border ring's median is taken as the paper. Dark ink is
 *      inverted, so ink is bright from here on; light-on-dark input (MNIST itself, a canvas
 *      drawing) is left as is.
 *   2. Local background. A flat page (60% of the pixels at one value, almost none below it:
 *      a drawing app's canvas, a generated image) is taken as it is, which is faster and keeps
 *      the middle of the boldest strokes (flat_background). Otherwise: medians of 64 cells
 *      across (paper wherever paper is the majority), then a grey-scale opening (min, then
 *      max) 30% of the image wide, which removes ink (narrower) and keeps the lighting
 *      (wider): linear ramps, vignettes, a shadow's edge.
 *      The grid is padded with its own edge values first so that light falling off towards an
 *      edge is followed too, except where a cell on the edge holds a stroke running along it
 *      (a sharp, ink-deep drop inwards: the bar of a 7 touching the top), which would
 *      otherwise become background and vanish. Where neighbouring cells jump (a shadow's or
 *      the page's edge) the brighter side is taken, so the edge itself never reads as ink.
 *      For dark ink the difference is divided by the paper's brightness (a photo shows
 *      lighting x reflectance), so ink in a shadow counts as much as ink in the light.
 *   3. Contrast: d = pixel - background. Noise sigma = 1.4826 * median|d| (MAD). Strong ink S
 *      is the 90th percentile of d over pixels above 3 sigma. No digit when S is below
 *      max(MIN_CONTRAST, 6 sigma). Ink = d * 255 / S, clamped, and 0 where d <= T with
 *      T = max(3.5 sigma, 0.25 S): noise, JPEG ringing and the blur halo become exact zeros,
 *      the stroke keeps its own profile above T. (Measured on rendered photos and raw MNIST:
 *      this hard cut at 0.25 S beat a soft ramp (d - T) / (S - T) and binarising at 0.3-0.5 S;
 *      0.1 S keeps too much halo, 0.4 S starts to thin MNIST's own anti-aliased edges.)
 *   3b. Ruled paper (photos and scans; a flat page has none): thin straight lines across at
 *      least 60% of the picture, level or turned up to 4 degrees, two or more of them, are
 *      found by a Hough transform over the long thin runs of ink, along the rows and then
 *      along the columns (lined and squared paper). Each is erased where it is no thicker
 *      than 1.5x its usual width, so a stroke crossing it keeps its pixels.
 *   4. Crop: 8-connected components of the ink. Keep the heaviest by ink mass, but never a
 *      frame (lying along an image edge, a sparse outline around another component: the
 *      page's edge on a desk, or a wedge of desk beside a page photographed at a slant), then
 *      any with >= 2% of its mass within a quarter of the box so far, or with >= 15% within
 *      0.6 of it (a detached bar) unless it touches the picture's edge. Specks, far smudges
 *      and frames are erased. Fewer than max(10, 0.05% of the pixels) kept: no digit.
 *   5. Scale: the longer side of the crop to 20 px, aspect kept, with stb_image_resize
 *      (Mitchell down, Catmull-Rom up, zero outside the crop). When the strokes would be
 *      thinner than 1.5 px at that scale (a ballpoint on a big digit; MNIST's thinnest are
 *      about 2 px), they are first dilated with a disc at 4x scale to about 2.5 px.
 *      The result is stretched so its maximum is 255, as in MNIST.
 *   6. Centre: the 20x20-box result is placed in 28x28 so its centre of mass lands on
 *      (14,14), rounded to whole pixels as MNIST did; anything shifted off the edge is clipped.
 * Known limits: the page must fill most of the picture (a page covering less than about half
 * of it, on a dark desk, reads as light ink on a dark background); a single ruled line (the
 * only one in the picture) through the digit joins it, as does a line fainter than the
 * threshold in most places; a stroke along 80% or more of an edge (a 7 cropped right at its
 * bar), or along most of its own length in an edge's outer quarter (a 1 cropped right at its
 * stroke), reads as the page's edge or the desk, and is taken only when nothing else is
 * there; of two digits, the heavier one is prepared (and
 * cnn_image_to_mnist_found says there were two: count_objects).
 *
 * Decoding (cnn_image_decode) sniffs the format from the first bytes. PNG goes to libpng and
 * JPEG to libjpeg-turbo (decode.c says why not stb, and how each is bounded); BMP, GIF (first
 * frame), TGA and PGM/PPM go to stb_image, with its other decoders compiled out (stb_impl.c).
 * For stb's formats the dimensions are read with stbi_info_from_memory first, so an image over
 * CNN_IMAGE_MAX_PIXELS is refused before any pixel is decoded, as decode.c does for PNG and
 * JPEG. stb reports failures through stbi_failure_reason(), documented as a global; stb_impl.c
 * compiles stb as C11, where stb declares it _Thread_local (STBI_THREAD_LOCAL), and we copy it
 * into our own thread-local message right away, so concurrent decodes in other threads never
 * see each other's reasons.
 * Every decoder's pixels go through the same gray conversion (cnn_decode_gray).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#endif
#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#include "internal.h"

#define IMAGE_MAX_FILE ((size_t)256 << 20) /* bytes read by cnn_image_load */
#define WORK_MAX 1024                      /* longer side of the work image */
#define STB_PIXELS_PER_BYTE 4096u          /* the most any BMP, GIF, TGA or PNM packs in a byte */
#define BG_CELLS 64                        /* background cells along the longer side */
#define BG_OPEN 0.3                        /* opening window, fraction of the longer side */
#define BG_STEP 24.0f                      /* a jump between cells: an edge, not a gradient */
#define FLAT_FRAC 0.6                      /* this much of the image at one value: a flat page */
#define VOTE_RATIO 2.5                     /* ink vs its cell's median, for the polarity vote */
#define VOTE_MIXED 0.1                     /* a 2x2 vote more mixed than this is checked 4x4 */
#define MIN_CONTRAST 20.0f                 /* strong ink must differ this much from paper */
#define RANGE_PIXELS 64                    /* ... over at least this many pixels */
#define NOISE_FG 3.0f                      /* sigmas: pixels counted when estimating S */
#define NOISE_T 3.5f                       /* sigmas: ink threshold floor */
#define NOISE_S 6.0f                       /* sigmas: S below this is noise, not ink */
#define T_FRAC 0.25f                       /* ink threshold as a fraction of S */
#define KEEP_FRAC 0.02                     /* components lighter than this x heaviest: specks */
#define KEEP_GAP 0.25                      /* max gap to the digit, fraction of its box */
#define KEEP_BIG 0.15                      /* a component this heavy (x heaviest) may be ... */
#define KEEP_BIG_GAP 0.6                   /* ... this far away (the detached bar of a 5 or 7) */
#define LINE_RUN 8                         /* ruled lines: runs >= 1/LINE_RUN of the side, ... */
#define LINE_TILT 0.07                     /* ... turned up to this slope (4 degrees), ... */
#define LINE_GAP 3                         /* ... gaps of up to this many px bridged, ... */
#define LINE_NEAR 2.0f                     /* ... (taken within this many px of it), ... */
#define LINE_FILL 0.15                     /* ... over this much of the side, ... */
#define LINE_SPAN 0.6                      /* ... spread across this much of it, ... */
#define LINE_THIN 40                       /* ... and at most 1/LINE_THIN of the other side thick */
#define MAX_LINES 256                      /* ruled lines removed in each direction */
#define LINE_MIN 64                        /* smaller pictures: no ruled lines looked for */
#define WEDGE_MIN 64                       /* px: smaller components meeting an edge are specks */
#define MAX_CAND 64                        /* components considered as parts of the digit */
#define MANY_MASS 0.3                      /* another object this heavy (x the digit's) ... */
#define MANY_SIDE 0.5                      /* ... and this big is another digit, ... */
#define MANY_GAP 0.1                       /* ... unless this near (x its side) */
#define BOX 20                             /* MNIST: longer side of the digit */
#define FIELD 28                           /* MNIST: image side */
#define THIN_T20 1.5                       /* stroke width (px at BOX scale) that is too thin */
#define TARGET_T20 2.5                     /* ... and what it is thickened to */
#define THICK_SCALE 4                      /* the dilation runs at BOX * THICK_SCALE */

/* ---- decoding ------------------------------------------------------------------------------- */

void cnn_image_free(struct cnn_image *img) {
    if (!img) return;
    free(img->gray);
    memset(img, 0, sizeof *img);
}

/* PGM/PPM (P5/P6): the header's numbers (width, height, maximum value) must each have at most
 * 9 digits. Debian's stb_image (2.27) accumulates them in an int without an overflow check,
 * which is undefined behaviour for "888888888888" (found by fuzz_image). */
static int check_pnm(const uint8_t *b, size_t len, const char *name) {
    size_t pos = 2;
    for (int field = 0; field < 3; field++) {
        for (;;) { /* whitespace and # comments */
            while (pos < len && (b[pos] == ' ' || (b[pos] >= '\t' && b[pos] <= '\r'))) pos++;
            if (pos < len && b[pos] == '#') {
                while (pos < len && b[pos] != '\n' && b[pos] != '\r') pos++;
                continue;
            }
            break;
        }
        size_t digits = 0;
        while (pos < len && b[pos] >= '0' && b[pos] <= '9') pos++, digits++;
        if (digits > 9)
            return cnn_fail(CNN_ERR_FORMAT, "%s: PNM header number with %zu digits: corrupt",
                            name, digits);
        if (digits == 0) break; /* malformed: stb reports it */
    }
    return CNN_OK;
}

/* BMP, GIF, TGA, PGM/PPM through stb_image: dimensions from the header
 * first, then the pixels in their own channel count, then the common gray conversion. */
static int stb_decode(const uint8_t *buf, size_t len, const char *name, struct cnn_image *out) {
    int x = 0, y = 0, n = 0;
    if (!stbi_info_from_memory(buf, (int)len, &x, &y, &n)) {
        const char *why = stbi_failure_reason();
        return cnn_fail(CNN_ERR_FORMAT, "%s: not a supported image (%s)", name,
                        why ? why : "unknown format");
    }
    if (x <= 0 || y <= 0 || (uint64_t)x * (uint64_t)y > (uint64_t)CNN_IMAGE_MAX_PIXELS)
        return cnn_fail(CNN_ERR_LIMIT, "%s: image is %dx%d, over the limit of %ld pixels", name, x,
                        y, (long)CNN_IMAGE_MAX_PIXELS);
    /* stb decodes a truncated file as if zeros followed: 20 bytes of TGA header made a 38
     * megapixel image (0.6 s of work). No format here packs more than STB_PIXELS_PER_BYTE pixels
     * in a byte (GIF's LZW, the densest, reaches about 2,730 with a full code table). */
    if ((uint64_t)x * (uint64_t)y > (uint64_t)len * STB_PIXELS_PER_BYTE)
        return cnn_fail(CNN_ERR_FORMAT, "%s: %dx%d pixels cannot be in %zu bytes: truncated or "
                        "forged", name, x, y, len);
    /* Another library in the process may have asked stb to flip globally; not for us. */
    stbi_set_flip_vertically_on_load_thread(0);
    int w = 0, h = 0;
    uint8_t *px = stbi_load_from_memory(buf, (int)len, &w, &h, &n, 0);
    if (!px) {
        const char *why = stbi_failure_reason();
        if (why && strcmp(why, "outofmem") == 0)
            return cnn_fail(CNN_ERR_NOMEM, "%s: out of memory decoding a %dx%d image", name, x, y);
        return cnn_fail(CNN_ERR_FORMAT, "%s: corrupt or unsupported image (%s)", name,
                        why ? why : "decode failed");
    }
    int rc = CNN_OK;
    if (w != x || h != y || n < 1 || n > 4) {
        rc = cnn_fail(CNN_ERR_FORMAT, "%s: decoder returned %dx%dx%d, header said %dx%d", name, w,
                      h, n, x, y);
        goto fail;
    }
    const size_t np = (size_t)w * (size_t)h;
    uint8_t *g = malloc(np);
    if (!g) {
        rc = cnn_fail(CNN_ERR_NOMEM, "%s: cannot allocate %zu bytes", name, np);
        goto fail;
    }
    cnn_decode_gray(g, px, np, n);
    out->w = w;
    out->h = h;
    out->gray = g;
fail:
    stbi_image_free(px);
    return rc;
}

/* Contract: buf holds len bytes of an encoded image; name is only used in messages (NULL is
 * "<memory>"). On success out->gray is a (h,w) u8 luminance image owned by the caller
 * (cnn_image_free). On error *out is zeroed and the status is CNN_ERR_FORMAT (empty, not an
 * image, corrupt), CNN_ERR_LIMIT (over CNN_IMAGE_MAX_PIXELS or 2 GiB, checked before decoding;
 * a JPEG of more scans than decode.c allows) or CNN_ERR_NOMEM. Colour: Y = 0.299 R + 0.587 G +
 * 0.114 B (Rec. 601, as JPEG). Alpha is composited on white, so a transparent background reads
 * as a white page. The format is told by the first bytes, never by the name: the PNG signature
 * goes to libpng, FF D8 (a JPEG's SOI marker) to libjpeg-turbo, anything else to stb. */
int cnn_image_decode(const void *buf, size_t len, const char *name, struct cnn_image *out) {
    memset(out, 0, sizeof *out);
    if (!name) name = "<memory>";
    if (!buf || len == 0) return cnn_fail(CNN_ERR_FORMAT, "%s: empty file, not an image", name);
    if (len > (size_t)0x7fffffff)
        return cnn_fail(CNN_ERR_LIMIT, "%s: %zu bytes, over the 2 GiB an image may have", name,
                        len);
    const uint8_t *bytes = buf;
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    if (len >= 8 && memcmp(bytes, png_sig, 8) == 0) return cnn_decode_png(bytes, len, name, out);
    if (len >= 2 && bytes[0] == 0xFF && bytes[1] == 0xD8)
        return cnn_decode_jpeg(bytes, len, name, out);
    if (len >= 2 && bytes[0] == 'P' && (bytes[1] == '5' || bytes[1] == '6')) {
        const int rc = check_pnm(bytes, len, name);
        if (rc != CNN_OK) return rc;
    }
    return stb_decode(bytes, len, name, out);
}

/* Contract: reads the file at path (at most 256 MiB) and decodes it as cnn_image_decode does;
 * messages name the path. CNN_ERR_IO when the file cannot be read. */
int cnn_image_load(const char *path, struct cnn_image *out) {
    memset(out, 0, sizeof *out);
    uint8_t *buf = NULL;
    size_t len = 0;
    const int rc = cnn_read_file(path, IMAGE_MAX_FILE, &buf, &len);
    if (rc != CNN_OK) return rc;
    const int drc = cnn_image_decode(buf, len, path, out);
    free(buf);
    return drc;
}

/* ---- small helpers ------------------------------------------------------------------------- */

/* Smallest bin b with hist[0..b] >= q * total (total > 0), i.e. the q-quantile. */
static int hist_quantile(const size_t *hist, int nbins, size_t total, double q) {
    size_t need = (size_t)ceil(q * (double)total);
    if (need < 1) need = 1;
    size_t cum = 0;
    for (int b = 0; b < nbins; b++) {
        cum += hist[b];
        if (cum >= need) return b;
    }
    return nbins - 1;
}

/* fmaxf and fminf without the library call (GCC keeps the call for their NaN and signed-zero
 * rules; nothing here is NaN). */
static inline float maxf(float a, float b) { return a > b ? a : b; }
static inline float minf(float a, float b) { return a < b ? a : b; }

/* hist[b] += how many bytes of v (h,w) equal b in rows y0..y1-1, columns x0..x1-1. Four
 * interleaved counters: on a run of equal bytes (a black canvas) one counter would wait for
 * its own previous increment at every pixel. */
static void hist_rect(const uint8_t *v, int w, int x0, int y0, int x1, int y1, size_t *hist) {
    uint32_t part[4][256];
    memset(part, 0, sizeof part);
    for (int y = y0; y < y1; y++) {
        const uint8_t *row = v + (size_t)y * (size_t)w;
        int x = x0;
        for (; x + 4 <= x1; x += 4) {
            part[0][row[x]]++;
            part[1][row[x + 1]]++;
            part[2][row[x + 2]]++;
            part[3][row[x + 3]]++;
        }
        for (; x < x1; x++) part[0][row[x]]++;
    }
    for (int b = 0; b < 256; b++) hist[b] += part[0][b] + part[1][b] + part[2][b] + part[3][b];
}

/* The median (hist_quantile 0.5) of n bytes, by insertion sort: for cells of a few dozen
 * pixels, where a 256-bin histogram costs more than the pixels. */
static int median_small(const uint8_t *v, int w, int x0, int y0, int x1, int y1) {
    uint8_t t[64];
    int n = 0;
    for (int y = y0; y < y1; y++) {
        for (int x = x0; x < x1; x++) {
            const uint8_t q = v[(size_t)y * (size_t)w + (size_t)x];
            int j = n++;
            for (; j > 0 && t[j - 1] > q; j--) t[j] = t[j - 1];
            t[j] = q;
        }
    }
    return t[(n + 1) / 2 - 1];
}

/* lrintf for 0 <= v < 2^22 in the default rounding mode (to nearest, ties to even), without
 * the library call: adding 1.5 * 2^23 leaves no fraction bits, so the FPU rounds v there. */
static inline int round_even(float v) {
    const float big = 0x1.8p23f; /* no -ffast-math here, so (v + big) - big is not folded */
    return (int)((v + big) - big);
}

static float clampf(float v, float lo, float hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

/* Area-average g (h,w) by the integer factor f into o (oh,ow), oh = ceil(h/f), ow = ceil(w/f).
 * Partial blocks at the right and bottom average only their real pixels. acc: ow sums. */
static void downscale_area(const uint8_t *g, int w, int h, int f, uint8_t *o, int ow, int oh,
                           uint64_t *acc) {
    if (f == 1) {
        memcpy(o, g, (size_t)w * (size_t)h);
        return;
    }
    for (int oy = 0; oy < oh; oy++) {
        memset(acc, 0, (size_t)ow * sizeof *acc);
        const int y0 = oy * f, y1 = (int64_t)y0 + f < h ? y0 + f : h;
        for (int y = y0; y < y1; y++) {
            const uint8_t *row = g + (size_t)y * (size_t)w;
            for (int ox = 0, x = 0; ox < ow; ox++)
                for (const int x1 = x + f < w ? x + f : w; x < x1; x++) acc[ox] += row[x];
        }
        for (int ox = 0; ox < ow; ox++) {
            const int x0 = ox * f, x1 = (int64_t)x0 + f < w ? x0 + f : w;
            const uint64_t cnt = (uint64_t)(x1 - x0) * (uint64_t)(y1 - y0);
            o[(size_t)oy * (size_t)ow + (size_t)ox] = (uint8_t)((acc[ox] + cnt / 2) / cnt);
        }
    }
}

/* Polarity vote of v (h,w) on a grid of `cells` cells along the longer side: a pixel under
 * 1/VOTE_RATIO of its cell's median votes "dark ink", one over VOTE_RATIO times it votes
 * "light ink" (levels offset by 8 so that black is not a ratio of zero). Ratios, because light
 * multiplies: ink takes 65-90% of the light away, a shadow rarely more than half, so the
 * paper on either side of a shadow's edge does not vote. Returns 1 (dark), -1 (light) on a
 * clear majority (1.25 : 1), else 0; *mixed: the minority's votes over the majority's. */
static int polarity_vote(const uint8_t *v, int w, int h, int cells, double *mixed) {
    const int s = ((w > h ? w : h) + cells - 1) / cells;
    size_t dark = 0, light = 0;
    for (int y0 = 0; y0 < h; y0 += s) {
        for (int x0 = 0; x0 < w; x0 += s) {
            const int y1 = y0 + s < h ? y0 + s : h, x1 = x0 + s < w ? x0 + s : w;
            size_t hist[256] = {0};
            hist_rect(v, w, x0, y0, x1, y1, hist);
            const int med = hist_quantile(hist, 256, (size_t)(y1 - y0) * (size_t)(x1 - x0), 0.5);
            for (int q = 0; q < 256; q++) {
                if ((q + 8) * VOTE_RATIO < med + 8) dark += hist[q];
                if (q + 8 > (med + 8) * VOTE_RATIO) light += hist[q];
            }
        }
    }
    const size_t most = dark > light ? dark : light, least = dark > light ? light : dark;
    *mixed = most ? (double)least / (double)most : 0.0;
    if (4 * dark > 5 * light + 4) return 1;
    if (4 * light > 5 * dark + 4) return -1;
    return 0;
}

/* Step 1. Decide polarity on v (h,w): 1 when the ink is darker than the paper.
 * Ink is the minority wherever it is, so next to the median of its own cell it is an outlier
 * on one side only (see polarity_vote). Cells must be larger than the strokes, or a bold
 * digit's paper votes the wrong way: the 2x2 grid votes first, the 4x4 grid when that is
 * unclear, or when it clearly says the opposite of a 2x2 vote that was not near-unanimous (a
 * bold digit filling most of one 2x2 cell of a dark canvas: that cell's canvas votes "dark
 * ink" while the other cells' ink votes "light", 18-55% of the majority, where a right 2x2
 * vote against the 4x4 grid had at most 1%, in 20,000 renderings of bench/predict_accuracy).
 * When both are unclear (faint pencil, low contrast, or strokes so thin that the
 * work image's averaging left them at half contrast) the border ring decides: its median is the
 * paper, light when nearer the image's lightest pixels than its darkest. "Lightest" and
 * "darkest" are the 0.5% quantiles, or the RANGE_PIXELS-th pixel from either end when that is
 * less: a 1 px stroke on a big canvas covers far less than 0.5% of it, and must still count.
 * *range gets the spread between the two, all the histogram of v. */
static int ink_is_dark(const uint8_t *v, int w, int h, int *range, size_t all[256]) {
    size_t ring[256] = {0};
    memset(all, 0, 256 * sizeof *all);
    const int m = (w < h ? w : h) / 32 + 1;
    hist_rect(v, w, 0, 0, w, h, all);
    /* the ring: m rows at the top and bottom, m columns at the sides between them */
    const int top = m < h ? m : h, bottom = h - m > top ? h - m : top;
    const int left = m < w ? m : w, right = w - m > left ? w - m : left;
    hist_rect(v, w, 0, 0, w, top, ring);
    hist_rect(v, w, 0, bottom, w, h, ring);
    hist_rect(v, w, 0, top, left, bottom, ring);
    hist_rect(v, w, right, top, w, bottom, ring);
    size_t n_ring = 0;
    for (int b = 0; b < 256; b++) n_ring += ring[b];
    const size_t n = (size_t)w * (size_t)h;
    const double q = fmin(0.005, (double)RANGE_PIXELS / (double)n);
    const int lo = hist_quantile(all, 256, n, q), hi = hist_quantile(all, 256, n, 1.0 - q);
    const int b = hist_quantile(ring, 256, n_ring, 0.5);
    *range = hi - lo;
    double mixed;
    const int coarse = polarity_vote(v, w, h, 2, &mixed);
    if (coarse != 0 && mixed <= VOTE_MIXED) return coarse > 0;
    const int fine = polarity_vote(v, w, h, 4, &mixed);
    if (coarse != 0 && fine != -coarse) return coarse > 0;
    if (fine != 0) return fine > 0;
    return b - lo > hi - b;
}

/* Separable min (is_max = 0) or max filter of a (gh,gw) with a (2r+1)^2 square clipped at the
 * grid edge; tmp: gw*gh. Erosion then dilation is a grey-scale opening. Each pass widens the
 * window by one cell on each side at a time, over whole rows, so the inner loops run along a
 * row and vectorise; min and max are exact, so the order does not change the result. */
static void minmax_filter(float *a, float *tmp, int gw, int gh, int r, int is_max) {
    const size_t n = (size_t)gw * (size_t)gh;
    /* rows: tmp[y][x] = min/max of a[y][x-r .. x+r] */
    memcpy(tmp, a, n * sizeof *a);
    for (int y = 0; y < gh; y++) {
        const float *src = a + (size_t)y * (size_t)gw;
        float *dst = tmp + (size_t)y * (size_t)gw;
        for (int k = 1; k <= r && k < gw; k++) {
            for (int x = 0; x < gw - k; x++) /* the right neighbour at distance k */
                dst[x] = is_max ? maxf(dst[x], src[x + k]) : minf(dst[x], src[x + k]);
            for (int x = k; x < gw; x++) /* the left one */
                dst[x] = is_max ? maxf(dst[x], src[x - k]) : minf(dst[x], src[x - k]);
        }
    }
    /* columns: a[y][x] = min/max of tmp[y-r .. y+r][x] */
    memcpy(a, tmp, n * sizeof *a);
    for (int k = 1; k <= r && k < gh; k++) {
        for (int y = 0; y < gh; y++) {
            float *dst = a + (size_t)y * (size_t)gw;
            if (y + k < gh) {
                const float *below = tmp + (size_t)(y + k) * (size_t)gw;
                for (int x = 0; x < gw; x++)
                    dst[x] = is_max ? maxf(dst[x], below[x]) : minf(dst[x], below[x]);
            }
            if (y - k >= 0) {
                const float *above = tmp + (size_t)(y - k) * (size_t)gw;
                for (int x = 0; x < gw; x++)
                    dst[x] = is_max ? maxf(dst[x], above[x]) : minf(dst[x], above[x]);
            }
        }
    }
}

/* Median of the n <= 2 * BG_CELLS + 1 values a[0], a[step], ...: insertion sort of a copy. */
static float median_strided(const float *a, int n, int step) {
    float t[2 * BG_CELLS + 1];
    for (int i = 0; i < n; i++) {
        const float q = a[i * step];
        int j = i;
        for (; j > 0 && t[j - 1] > q; j--) t[j] = t[j - 1];
        t[j] = q;
    }
    return t[n / 2];
}

/* One row of subtract_background: bg = the step's high side where there is one, else top and
 * bottom blended by ty; d = v - bg. restrict: no array overlaps another, so it vectorises. */
static void blend_row(const float *restrict top, const float *restrict bot,
                      const float *restrict step_hi, float ty, const uint8_t *restrict v, int w,
                      float *restrict bg, float *restrict d) {
    for (int x = 0; x < w; x++) {
        bg[x] = step_hi[x] >= 0.0f ? step_hi[x] : top[x] + (bot[x] - top[x]) * ty;
        d[x] = (float)v[x] - bg[x];
    }
}

/* Cells of the background estimate: a gh x gw grid of s x s blocks, and the opening radius r
 * in cells. The opening runs on a padded grid (gh + 4r, gw + 4r). */
struct cells {
    int s, gw, gh, r;
    int pw, ph;       /* padded grid */
    float *g;         /* (gh,gw) block medians, then the background */
    float *edge[4];   /* top, bottom (gw); left, right (gh): padding values */
    float *pad, *tmp; /* (ph,pw) */
};

/* Whether ink (a band of value `band`, ink bright) over paper (value `paper`) is a stroke and
 * not a shadow: by ratios, as polarity_vote, since light multiplies. Dark ink (the values are
 * inverted) takes 65-90% of the light away, a shadow rarely more than half. */
static int ink_step(float band, float paper, int dark) {
    if (dark) return (263.0f - band) * (float)VOTE_RATIO < 263.0f - paper;
    return band + 8.0f > (paper + 8.0f) * (float)VOTE_RATIO;
}

/* Step 2a. The values the grid c->g is padded with along each edge e (0 top, 1 bottom, 2 left,
 * 3 right): min(cell, median of the 2r+1 edge cells around it), so a stroke crossing the edge
 * is not stretched into a plateau. A stroke running along the edge (the bar of a 7 touching
 * the top) is wider than that median and would become background, and vanish: so where the
 * cells drop sharply (by more than BG_STEP between neighbours, to a level that makes the edge
 * cell ink rather than shadow: ink_step) within a third of the grid inwards, the edge cell
 * holds a band, and the padding takes the level past the drop. Unless the edge cells at the
 * bands' level (a band's, or a desk's corner, where no drop is seen along the edge) cover >=
 * 80% of the edge: that is the page's edge on a desk, which the background must follow, and a
 * stroke that long reads as one. */
static void edge_padding(struct cells *c, int dark) {
    const int gw = c->gw, gh = c->gh, r = c->r;
    for (int e = 0; e < 4; e++) {
        const int len = e < 2 ? gw : gh, step = e < 2 ? 1 : gw;
        const int depth_max = (e < 2 ? gh : gw) / 3;
        const int inward = e == 0 ? gw : e == 1 ? -gw : e == 2 ? 1 : -1;
        const float *line = e == 0   ? c->g
                            : e == 1 ? c->g + (gh - 1) * gw
                            : e == 2 ? c->g
                                     : c->g + gw - 1;
        float *past = c->tmp; /* the level past a band's drop, or -1: no band */
        float band_min = 256.0f; /* the faintest edge cell holding a band */
        for (int i = 0; i < len; i++) {
            const int lo = i - r < 0 ? 0 : i - r, hi = i + r >= len ? len - 1 : i + r;
            const float med = median_strided(line + lo * step, hi - lo + 1, step);
            c->edge[e][i] = fminf(line[i * step], med);
            const float *cell = line + i * step;
            past[i] = -1.0f;
            for (int k = 1; k <= depth_max; k++) {
                if (ink_step(cell[0], cell[k * inward], dark) &&
                    cell[(k - 1) * inward] - cell[k * inward] > BG_STEP) {
                    past[i] = cell[k * inward];
                    band_min = fminf(band_min, cell[0]);
                    break;
                }
            }
        }
        int along = 0; /* edge cells at the bands' level: with a desk, its corners too */
        for (int i = 0; i < len; i++) along += line[i * step] >= band_min - BG_STEP;
        if (5 * along >= 4 * len) continue;
        for (int i = 0; i < len; i++)
            if (past[i] >= 0.0f) c->edge[e][i] = fminf(c->edge[e][i], past[i]);
    }
}

/* Step 2. Background of v (h,w) (ink bright). Cells: block medians; a cell where paper is the
 * majority holds the paper's level whatever ink it has. Ink-majority cells (inside strokes) are
 * removed by a grey-scale opening (erosion, then dilation) with a square BG_OPEN of the longer
 * side wide: it removes bright things narrower than that and keeps wider ones exactly - a
 * linear ramp, a vignette, a shadow's edge (to within a cell). Clipping the window at the
 * image edge would flatten a background that rises towards the edge (a dark corner of a photo,
 * inverted), so the grid is first padded by 2r cells with its edge values, each limited to
 * the median along its edge over 2r+1 cells so that a stroke touching the edge is not
 * stretched into a wide plateau. Background = opened grid, bilinear between cell centres
 * ((i + 0.5) s - 0.5), clamped at the outer centres. Writes d = v - background into d (h,w).
 * With relative (dark ink on paper: what we see is lighting x reflectance) d is divided by
 * the local paper brightness, so ink in a shadow counts as much as ink in the light. */
static void cell_medians(const uint8_t *v, int w, int h, struct cells *c) {
    const int s = c->s, gw = c->gw;
    for (int gy = 0; gy < c->gh; gy++) {
        for (int gx = 0; gx < gw; gx++) {
            const int y0 = gy * s, y1 = y0 + s < h ? y0 + s : h;
            const int x0 = gx * s, x1 = x0 + s < w ? x0 + s : w;
            const size_t cnt = (size_t)(y1 - y0) * (size_t)(x1 - x0);
            if (cnt <= 64) {
                c->g[gy * gw + gx] = (float)median_small(v, w, x0, y0, x1, y1);
                continue;
            }
            size_t hist[256] = {0};
            for (int y = y0; y < y1; y++)
                for (int x = x0; x < x1; x++) hist[v[(size_t)y * (size_t)w + (size_t)x]]++;
            c->g[gy * gw + gx] = (float)hist_quantile(hist, 256, cnt, 0.5);
        }
    }
}

/* The opening of the cell grid c->g (gh,gw), in place, through the padded grid; returns the
 * least paper brightness a relative difference divides by. */
static float open_cells(struct cells *c, int relative) {
    const int gw = c->gw, gh = c->gh, r = c->r, pw = c->pw;
    edge_padding(c, relative);
    for (int py = 0; py < c->ph; py++) {
        const int gy = py - 2 * r;
        const int cy = gy < 0 ? 0 : gy >= gh ? gh - 1 : gy;
        for (int px = 0; px < pw; px++) {
            const int gx = px - 2 * r;
            const int cx = gx < 0 ? 0 : gx >= gw ? gw - 1 : gx;
            float q = c->g[cy * gw + cx];
            if (gy < 0) q = fminf(q, c->edge[0][cx]);
            if (gy >= gh) q = fminf(q, c->edge[1][cx]);
            if (gx < 0) q = fminf(q, c->edge[2][cy]);
            if (gx >= gw) q = fminf(q, c->edge[3][cy]);
            c->pad[py * pw + px] = q;
        }
    }
    if (r >= 1) {
        minmax_filter(c->pad, c->tmp, pw, c->ph, r, 0);
        minmax_filter(c->pad, c->tmp, pw, c->ph, r, 1);
    }
    size_t hist[256] = {0};
    for (int gy = 0; gy < gh; gy++) {
        for (int gx = 0; gx < gw; gx++) {
            const float q = c->pad[(gy + 2 * r) * pw + gx + 2 * r];
            c->g[gy * gw + gx] = q;
            hist[(int)clampf(255.5f - q, 0.0f, 255.0f)]++;
        }
    }
    /* Relative ink: the paper brightness divided by is at least 40% of the typical paper's
     * (a dark desk around the page is not paper in a deep shadow; its noise stays small). */
    return fmaxf(16.0f, 0.4f * (float)hist_quantile(hist, 256, (size_t)gw * (size_t)gh, 0.5));
}

static int subtract_background(const uint8_t *v, int w, int h, struct cells *c, int relative,
                               float *d) {
    const int s = c->s, gw = c->gw, gh = c->gh;
    cell_medians(v, w, h, c);
    const float paper_min = open_cells(c, relative);
    /* Bilinear between cell centres. Per column: the two cells and the weight. Per pair of cell
     * rows (every s image rows): the interpolated top and bottom and the step test, which do
     * not depend on the row within; per row only the vertical blend is left, and it
     * vectorises. The expressions are those of the direct formula, so the result is the same
     * to the bit. */
    float *col = malloc((size_t)w * 5 * sizeof *col);
    int *ixs = malloc((size_t)w * sizeof *ixs);
    if (!col || !ixs) {
        free(col);
        free(ixs);
        return CNN_ERR_NOMEM;
    }
    float *top = col, *bot = col + w, *step_hi = col + 2 * (size_t)w, *txs = col + 3 * (size_t)w;
    float *bg = col + 4 * (size_t)w;
    for (int x = 0; x < w; x++) {
        const float fx = clampf(((float)x + 0.5f) / (float)s - 0.5f, 0.0f, (float)(gw - 1));
        ixs[x] = (int)fx;
        txs[x] = fx - (float)(int)fx;
    }
    int pair = -1;
    for (int y = 0; y < h; y++) {
        const float fy = clampf(((float)y + 0.5f) / (float)s - 0.5f, 0.0f, (float)(gh - 1));
        const int iy = (int)fy, iy1 = iy + 1 < gh ? iy + 1 : iy;
        const float ty = fy - (float)iy;
        if (iy != pair) {
            pair = iy;
            const float *r0 = c->g + iy * gw, *r1 = c->g + iy1 * gw;
            for (int x = 0; x < w; x++) {
                const int ix = ixs[x], ix1 = ix + 1 < gw ? ix + 1 : ix;
                const float tx = txs[x];
                top[x] = r0[ix] + (r0[ix1] - r0[ix]) * tx;
                bot[x] = r1[ix] + (r1[ix1] - r1[ix]) * tx;
                const float hi = maxf(maxf(r0[ix], r0[ix1]), maxf(r1[ix], r1[ix1]));
                const float lo = minf(minf(r0[ix], r0[ix1]), minf(r1[ix], r1[ix1]));
                step_hi[x] = hi - lo > BG_STEP ? hi : -1.0f; /* backgrounds are >= 0 */
            }
        }
        blend_row(top, bot, step_hi, ty, v + (size_t)y * (size_t)w, w, bg, d + (size_t)y * (size_t)w);
        if (relative) {
            float *drow = d + (size_t)y * (size_t)w;
            for (int x = 0; x < w; x++) drow[x] *= 255.0f / maxf(255.0f - bg[x], paper_min);
        }
    }
    free(col);
    free(ixs);
    return CNN_OK;
}

/* Step 2, for a flat page: the value m that at least FLAT_FRAC of the n pixels whose histogram
 * is hv hold exactly, with at most 1% of them below it (ink is bright here), or -1. A drawing
 * app's canvas, a generated image or a scan clipped to white has such a background and nothing
 * for the lighting model to follow; a photo's noise never leaves 60% of its pixels equal. */
static int flat_background(const size_t *hv, size_t n) {
    int m = 0;
    for (int b = 1; b < 256; b++) m = hv[b] > hv[m] ? b : m;
    size_t below = 0;
    for (int b = 0; b < m; b++) below += hv[b];
    return (double)hv[m] >= FLAT_FRAC * (double)n && below * 100 <= n ? m : -1;
}

/* d = (v - m) * gain for v = 0..255: what subtract_background computes when every cell's
 * background is m (with relative, divided by the paper's brightness as there). */
static void flat_levels(int m, int relative, float d[256]) {
    const float bg = (float)m, paper_min = fmaxf(16.0f, 0.4f * (255.0f - bg));
    const float gain = relative ? 255.0f / maxf(255.0f - bg, paper_min) : 1.0f;
    for (int b = 0; b < 256; b++) d[b] = ((float)b - bg) * gain;
}

/* Where a level d of the difference image lands: its rounded magnitude (for the noise), and
 * its rounded value, both clamped to a histogram bin. */
static inline int abs_bin(float d) { return (int)clampf(fabsf(d) + 0.5f, 0.0f, 255.0f); }
static inline int value_bin(float d) { return (int)clampf(d + 0.5f, 0.0f, 255.0f); }

/* Step 3's levels from the histogram of abs_bin(d) over n pixels: the noise sigma, and
 * fg = the level above which a pixel counts when estimating the ink's strength. */
static float noise_sigma(const size_t *hist, size_t n, float *fg) {
    const float sigma = 1.4826f * (float)hist_quantile(hist, 256, n, 0.5);
    *fg = maxf(NOISE_FG * sigma, 4.0f);
    return sigma;
}

/* ... and from the histogram of value_bin(d) over the n_fg pixels above fg: the ink threshold
 * T and the gain that takes the ink's strength S to 255. CNN_ERR_NODIGIT when nothing stands
 * out of the noise. */
static int ink_levels(const size_t *hist, size_t n_fg, float sigma, float *T, float *gain) {
    if (n_fg == 0) return CNN_ERR_NODIGIT;
    const float S = (float)hist_quantile(hist, 256, n_fg, 0.9);
    if (S < fmaxf(MIN_CONTRAST, NOISE_S * sigma)) return CNN_ERR_NODIGIT;
    *T = fmaxf(NOISE_T * sigma, T_FRAC * S);
    *gain = 255.0f / S;
    return CNN_OK;
}

/* A pixel of level d in the ink map: 0 at or under T, else its strength, at least 1 so that
 * faint kept pixels stay in the mask. */
static inline uint8_t ink_of(float d, float T, float gain) {
    return d <= T ? 0 : (uint8_t)round_even(clampf(d * gain, 1.0f, 255.0f));
}

/* Step 3 on the difference image d (n): the ink map. */
static int ink_from_levels(const float *d, size_t n, uint8_t *ink) {
    size_t hist[256] = {0}, n_fg = 0;
    uint32_t part[4][256]; /* four interleaved counters, as in hist_rect */
    memset(part, 0, sizeof part);
    for (size_t i = 0; i < n; i++) part[i & 3][abs_bin(d[i])]++;
    for (int b = 0; b < 256; b++) hist[b] = part[0][b] + part[1][b] + part[2][b] + part[3][b];
    float fg, T, gain;
    const float sigma = noise_sigma(hist, n, &fg);
    memset(part, 0, sizeof part);
    for (size_t i = 0; i < n; i++)
        if (d[i] > fg) part[i & 3][value_bin(d[i])]++;
    for (int b = 0; b < 256; b++) {
        hist[b] = part[0][b] + part[1][b] + part[2][b] + part[3][b];
        n_fg += hist[b];
    }
    const int rc = ink_levels(hist, n_fg, sigma, &T, &gain);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) ink[i] = ink_of(d[i], T, gain);
    return CNN_OK;
}

/* The same for a flat page of background m: every pixel's level is one of 256, so the
 * histograms come from v's own (hv) and the map from a table, to the same bytes. */
static int ink_from_flat(const uint8_t *v, size_t n, const size_t *hv, int m, int relative,
                         uint8_t *ink) {
    float d[256], fg, T, gain;
    flat_levels(m, relative, d);
    size_t hist[256] = {0}, n_fg = 0;
    for (int b = 0; b < 256; b++) hist[abs_bin(d[b])] += hv[b];
    const float sigma = noise_sigma(hist, n, &fg);
    memset(hist, 0, sizeof hist);
    for (int b = 0; b < 256; b++)
        if (d[b] > fg) hist[value_bin(d[b])] += hv[b], n_fg += hv[b];
    const int rc = ink_levels(hist, n_fg, sigma, &T, &gain);
    if (rc) return rc;
    uint8_t table[256];
    for (int b = 0; b < 256; b++) table[b] = ink_of(d[b], T, gain);
    /* eight pixels at a time where all are the background m (most of a canvas) */
    const uint64_t ones = 0x0101010101010101ULL, bg = ones * (uint64_t)m, bg_ink = ones * table[m];
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t word;
        memcpy(&word, v + i, 8);
        if (word == bg)
            memcpy(ink + i, &bg_ink, 8);
        else
            for (int j = 0; j < 8; j++) ink[i + j] = table[v[i + j]];
    }
    for (; i < n; i++) ink[i] = table[v[i]];
    return CNN_OK;
}

/* Steps 2-3. The ink map of v (h,w) (ink bright; hv its histogram): ink (h,w) u8, 0 = paper,
 * 255 = strong ink. Returns CNN_OK, CNN_ERR_NODIGIT (nothing stands out of the noise) or
 * CNN_ERR_NOMEM. */
static int ink_map(const uint8_t *v, const size_t *hv, int w, int h, int relative, int modelled,
                   uint8_t *ink, int *is_flat) {
    const size_t n = (size_t)w * (size_t)h;
    const int flat = modelled ? -1 : flat_background(hv, n);
    *is_flat = flat >= 0;
    if (flat >= 0) return ink_from_flat(v, n, hv, flat, relative, ink);
    const int longest = w > h ? w : h;
    struct cells c = {0};
    c.s = (longest + BG_CELLS - 1) / BG_CELLS;
    c.gw = (w + c.s - 1) / c.s, c.gh = (h + c.s - 1) / c.s;
    c.r = (int)lround((BG_OPEN * longest / c.s - 1.0) / 2.0);
    if (c.r < 0) c.r = 0;
    c.pw = c.gw + 4 * c.r, c.ph = c.gh + 4 * c.r;
    const size_t n_cells =
        (size_t)c.gw * (size_t)c.gh + 2 * (size_t)(c.gw + c.gh) + 2 * (size_t)c.pw * (size_t)c.ph;
    float *d = malloc(n * sizeof *d), *cf = malloc(n_cells * sizeof *cf);
    int rc = CNN_ERR_NOMEM;
    if (d && cf) {
        c.g = cf;
        c.edge[0] = c.g + c.gw * c.gh, c.edge[1] = c.edge[0] + c.gw;
        c.edge[2] = c.edge[1] + c.gw, c.edge[3] = c.edge[2] + c.gh;
        c.pad = c.edge[3] + c.gh, c.tmp = c.pad + c.pw * c.ph;
        rc = subtract_background(v, w, h, &c, relative, d);
        if (rc == CNN_OK) rc = ink_from_levels(d, n, ink);
    }
    free(d);
    free(cf);
    return rc;
}

/* One 8-connected component of ink. */
struct comp {
    size_t count;
    double mass;        /* sum of ink values */
    int x0, y0, x1, y1; /* inclusive bounding box */
    int frame;          /* never the digit: see mark_frames */
    int edge;           /* touches the picture's edge (mark_frames: never in tiny pictures) */
    int touch[4];       /* its pixels on the top, bottom, left and right edges */
    int keep;
};

/* The first index in [i, end) with ink, or end: eight bytes at a time over blank paper. */
static size_t next_ink(const uint8_t *ink, size_t i, size_t end) {
    for (; i < end && (i & 7); i++)
        if (ink[i]) return i;
    for (; i + 8 <= end; i += 8) {
        uint64_t word;
        memcpy(&word, ink + i, 8);
        if (word) break;
    }
    while (i < end && !ink[i]) i++;
    return i;
}

/* Step 4a. Label the 8-connected components of ink > 0 (h,w): lab gets 1..n (0 = no ink),
 * numbered in raster order of their first pixel. Breadth-first flood fill; queue: w*h ints,
 * each a pixel's (y << 16 | x) (w, h <= WORK_MAX), so no division per pixel. Returns n. */
static int label_components(const uint8_t *ink, int w, int h, int32_t *lab, int32_t *queue) {
    const size_t n = (size_t)w * (size_t)h;
    for (size_t i = 0; i < n; i++) lab[i] = ink[i] ? -1 : 0;
    int nc = 0;
    for (size_t i = next_ink(ink, 0, n); i < n; i = next_ink(ink, i + 1, n)) {
        if (lab[i] != -1) continue;
        nc++;
        size_t head = 0, tail = 0;
        lab[i] = nc;
        queue[tail++] = (int32_t)((i / (size_t)w) << 16 | i % (size_t)w);
        while (head < tail) {
            const int32_t p = queue[head++];
            const int py = p >> 16, px = p & 0xffff;
            for (int dy = -1; dy <= 1; dy++) {
                const int yy = py + dy;
                if (yy < 0 || yy >= h) continue;
                for (int dx = -1; dx <= 1; dx++) {
                    const int xx = px + dx;
                    if (xx < 0 || xx >= w) continue;
                    const int32_t q = yy * w + xx;
                    if (lab[q] == -1) {
                        lab[q] = nc;
                        queue[tail++] = yy << 16 | xx;
                    }
                }
            }
        }
    }
    return nc;
}

/* ---- ruled lines ----------------------------------------------------------------------------- */

/* An ink map seen along its rows (sx 1, sy its width) or along its columns (sx its width,
 * sy 1, w and h swapped): pixel (x, y) of the view is p[x sx + y sy]. */
struct view {
    uint8_t *p;
    int w, h;
    size_t sx, sy;
};

static inline uint8_t *view_at(const struct view *v, int x, int y) {
    return v->p + (size_t)x * v->sx + (size_t)y * v->sy;
}

/* The run of ink down column x through row y (ink there): its first row, and its length or,
 * past limit, limit + 1. */
static int column_run(const struct view *v, int x, int y, int limit, int *top) {
    int y0 = y, y1 = y;
    while (y0 > 0 && y1 - y0 <= limit && *view_at(v, x, y0 - 1)) y0--;
    while (y1 + 1 < v->h && y1 - y0 <= limit && *view_at(v, x, y1 + 1)) y1++;
    *top = y0;
    return y1 - y0 + 1 > limit ? limit + 1 : y1 - y0 + 1;
}

/* Nearly level lines through the candidate pixels, by a Hough transform: one vote per slope
 * k / w (|k| <= k_max) for the intercept of the line through the pixel at that slope. */
struct ruling {
    int w, h, k_max, nb; /* nb intercept bins per slope */
    int32_t *acc;        /* (2 k_max + 1, nb) votes */
    uint8_t *cand;       /* (h,w): 1 = a candidate on no line found yet */
};

/* The row at column x of the line of slope k / w through row y0 at x = 0. */
static inline float line_y(int k, float y0, int x, int w) {
    return y0 + (float)k * (float)x / (float)w;
}

static inline int32_t *ruling_cell(const struct ruling *r, int k, int x, int y) {
    const int b = (int)lrintf((float)y - line_y(k, 0.0f, x, r->w)) + r->k_max + 1;
    return r->acc + (size_t)(k + r->k_max) * (size_t)r->nb + (size_t)b;
}

/* Add (sign 1) or take back (sign -1) the votes of pixel (x, y). */
static void ruling_vote(struct ruling *r, int x, int y, int sign) {
    for (int k = -r->k_max; k <= r->k_max; k++) *ruling_cell(r, k, x, y) += sign;
}

/* The candidates: the thin pixels (a column run of at most `thin`) of ink runs along the rows
 * at least max(8, w / LINE_RUN) long, gaps of up to LINE_GAP px included. A line turned a
 * little is a staircase of such runs; a faint one, broken by the threshold, a dashed row.
 * Returns their number. */
static size_t ruling_candidates(struct ruling *r, const struct view *v, int thin) {
    const int w = v->w, min_run = w / LINE_RUN > 8 ? w / LINE_RUN : 8;
    size_t n = 0;
    int top;
    memset(r->cand, 0, (size_t)w * (size_t)v->h);
    for (int y = 0; y < v->h; y++) {
        for (int x = 0; x < w;) {
            if (!*view_at(v, x, y)) {
                x++;
                continue;
            }
            int end = x;
            for (int gap = 0; end < w && gap <= LINE_GAP;)
                gap = *view_at(v, end++, y) ? 0 : gap + 1;
            while (!*view_at(v, end - 1, y)) end--; /* end: past the run's last ink */
            for (int xx = x; xx < end && end - x >= min_run; xx++) {
                const int c = *view_at(v, xx, y) && column_run(v, xx, y, thin, &top) <= thin;
                r->cand[(size_t)y * (size_t)w + (size_t)xx] = (uint8_t)c;
                n += (size_t)c;
            }
            x = end;
        }
    }
    return n;
}

/* The strongest line left, as its centre's row at x = 0 (*y0) and slope *k; its votes: those
 * of two neighbouring intercepts, as a line's pixels straddle them. */
static int32_t ruling_peak(const struct ruling *r, int *k, float *y0) {
    int32_t best = 0;
    *k = 0, *y0 = 0.0f;
    for (int kk = -r->k_max; kk <= r->k_max; kk++) {
        const int32_t *a = r->acc + (size_t)(kk + r->k_max) * (size_t)r->nb;
        for (int b = 0; b + 1 < r->nb; b++)
            if (a[b] + a[b + 1] > best) best = a[b] + a[b + 1], *k = kk, *y0 = (float)b + 0.5f;
    }
    *y0 -= (float)(r->k_max + 1);
    return best;
}

/* Take the candidates within `near` px of line (k, y0) off it; returns the width they span. */
static int ruling_take(struct ruling *r, int k, float y0, float near) {
    int x_min = r->w, x_max = -1;
    for (int x = 0; x < r->w; x++) {
        const float yc = line_y(k, y0, x, r->w);
        const int lo = (int)ceilf(yc - near), hi = (int)floorf(yc + near);
        for (int y = lo < 0 ? 0 : lo; y <= hi && y < r->h; y++) {
            uint8_t *c = r->cand + (size_t)y * (size_t)r->w + (size_t)x;
            if (!*c) continue;
            *c = 0;
            ruling_vote(r, x, y, -1);
            x_min = x < x_min ? x : x_min;
            x_max = x;
        }
    }
    return x_max - x_min + 1;
}

/* The run of ink down column x through the line's centre yc, or a pixel next to it: its
 * first row and length (at most limit + 1, as column_run); 0 where the line has a gap. */
static int line_run(const struct view *v, int x, float yc, int limit, int *top) {
    const int c = (int)lrintf(yc);
    for (int d = 0; d <= 1; d++)
        for (int y = c - d; y <= c + d; y += 2 * d + !d)
            if (y >= 0 && y < v->h && *view_at(v, x, y)) return column_run(v, x, y, limit, top);
    return 0;
}

/* The lines found: slope k / w and centre y0 at x = 0 each. */
struct lines {
    int n, k[MAX_LINES];
    float y0[MAX_LINES];
};

/* The ruled lines through the candidates of r (ruling_candidates), strongest first: the most
 * votes in two neighbouring intercepts at one slope (the line's pixels within a pixel of a
 * straight line), at least LINE_FILL of the width; with them, every candidate within
 * LINE_NEAR px plus half the thickest line is taken off the transform. A line is kept when
 * what was taken spreads across at least LINE_SPAN of the width. */
static void find_lines(struct ruling *r, int thin, struct lines *ln) {
    const float near = LINE_NEAR + 0.5f * (float)thin;
    ln->n = 0;
    for (int guard = 0; guard < r->h && ln->n < MAX_LINES; guard++) {
        if (ruling_peak(r, &ln->k[ln->n], &ln->y0[ln->n]) < LINE_FILL * r->w) break;
        if (ruling_take(r, ln->k[ln->n], ln->y0[ln->n], near) >= LINE_SPAN * r->w) ln->n++;
    }
}

/* Erase the lines ln from the view: the column runs through each of them up to 1.5x the
 * most common one (thin px at most). Where a stroke crosses or touches a line, the run is
 * longer, and the digit keeps its pixels. */
static void erase_lines(const struct view *v, const struct lines *ln, int thin) {
    int runs[WORK_MAX / LINE_THIN + 2] = {0}, top, mode = 1;
    for (int j = 0; j < ln->n; j++)
        for (int x = 0; x < v->w; x++)
            runs[line_run(v, x, line_y(ln->k[j], ln->y0[j], x, v->w), thin, &top)]++;
    for (int len = 1; len <= thin; len++)
        if (runs[len] > runs[mode]) mode = len;
    const int longest = mode + (mode + 1) / 2;
    for (int j = 0; j < ln->n; j++)
        for (int x = 0; x < v->w; x++) {
            const int len = line_run(v, x, line_y(ln->k[j], ln->y0[j], x, v->w), longest, &top);
            for (int y = top; len && len <= longest && y < top + len; y++) *view_at(v, x, y) = 0;
        }
}

/* Step 3b, across: remove from the view the ruled lines that run along its rows.
 * 1. Candidates (ruling_candidates), thin: at most max(3, h / LINE_THIN) px across. Lines are
 *    thin; the strokes of a digit big enough for long runs are not.
 * 2. Lines (find_lines): a Hough transform over slopes up to LINE_TILT. A digit's bar spans
 *    the digit, not the picture; its candidates are taken off the transform too, but it is no
 *    line. One line alone is left alone: it may be a thin 1 that fills the picture, and ruled
 *    paper shows more than one.
 * 3. Erasing (erase_lines), with two lines or more, where no stroke crosses them.
 * cand: (h,w) scratch. Returns CNN_OK or CNN_ERR_NOMEM. */
static int strip_lines_across(const struct view *v, uint8_t *cand) {
    const int w = v->w, h = v->h, thin = h / LINE_THIN > 3 ? h / LINE_THIN : 3;
    struct ruling r = {w, h, (int)ceil(LINE_TILT * w), 0, NULL, cand};
    r.nb = h + 2 * r.k_max + 3;
    if (ruling_candidates(&r, v, thin) < LINE_FILL * w) return CNN_OK;
    r.acc = calloc((size_t)(2 * r.k_max + 1) * (size_t)r.nb, sizeof *r.acc);
    struct lines *ln = malloc(sizeof *ln);
    if (!r.acc || !ln) {
        free(r.acc), free(ln);
        return CNN_ERR_NOMEM;
    }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            if (cand[(size_t)y * (size_t)w + (size_t)x]) ruling_vote(&r, x, y, 1);
    find_lines(&r, thin, ln);
    if (ln->n >= 2) erase_lines(v, ln, thin);
    free(r.acc), free(ln);
    return CNN_OK;
}

/* Step 3b. Remove the ruled lines of lined or squared paper from ink (h,w): those along the
 * rows (strip_lines_across), then those along the columns. A crossing of two lines goes with
 * the second pass, once the first has taken the line across it. Pictures under LINE_MIN px
 * a side have no lines worth finding. */
static int strip_ruled_lines(uint8_t *ink, int w, int h) {
    if (w < LINE_MIN || h < LINE_MIN) return CNN_OK;
    uint8_t *cand = malloc((size_t)w * (size_t)h);
    if (!cand) return CNN_ERR_NOMEM;
    const struct view rows = {ink, w, h, 1, (size_t)w}, columns = {ink, h, w, (size_t)w, 1};
    int rc = strip_lines_across(&rows, cand);
    if (rc == CNN_OK) rc = strip_lines_across(&columns, cand);
    free(cand);
    return rc;
}

/* Up to k indices (into out, heaviest first) of the heaviest components c[1..nc] with
 * mass >= min_mass, other than skip. O(nc k): this bounds the pairwise work below, which an
 * image of thousands of equal specks would otherwise make quadratic in nc. */
static int heaviest(const struct comp *c, int nc, double min_mass, int skip, int *out, int k) {
    int n = 0;
    for (int j = 1; j <= nc; j++) {
        if (j == skip || c[j].mass < min_mass) continue;
        if (n == k && c[j].mass <= c[out[k - 1]].mass) continue;
        int at = n < k ? n++ : k - 1;
        for (; at > 0 && c[out[at - 1]].mass < c[j].mass; at--) out[at] = out[at - 1];
        out[at] = j;
    }
    return n;
}

/* Whether q's box reaches an edge of the picture (h,w). */
static int touches_edge(const struct comp *q, int w, int h) {
    return q->x0 == 0 || q->y0 == 0 || q->x1 == w - 1 || q->y1 == h - 1;
}

/* Step 4a'. Mark frames (c[1..nc]), never chosen as the digit (the outline of a page on a
 * desk, a table edge, a scanner's border):
 *   - a component that touches an image edge and runs along >= 80% of it;
 *   - a straight line (8 times longer than wide) along an edge, in its outer quarter, at
 *     least 60% as long as that edge;
 *   - a wedge: a component in the outer quarter of an edge that meets it along 3/4 of its
 *     own box's side there (the desk beyond the corner of a page photographed at a slant; a
 *     stroke crossing the edge meets it along its width only);
 *   - a sparse component (ink on < 12% of its box) whose box holds another component of
 *     >= 10% of its mass (an outline around the digit).
 * Tiny images have no frames. list: MAX_CAND ints of scratch. */
static void mark_frames(struct comp *c, int nc, int w, int h, int *list) {
    if (w < 8 || h < 8) return;
    double mmax = 0.0;
    for (int k = 1; k <= nc; k++) {
        const struct comp *q = &c[k];
        const int cw = q->x1 - q->x0 + 1, ch = q->y1 - q->y0 + 1;
        const int hline = 8 * ch <= cw && 5 * cw >= 3 * w && (4 * q->y1 < h || 4 * q->y0 > 3 * h);
        const int vline = 8 * cw <= ch && 5 * ch >= 3 * h && (4 * q->x1 < w || 4 * q->x0 > 3 * w);
        const int tb = q->touch[0] > q->touch[1] ? q->touch[0] : q->touch[1];
        const int lr = q->touch[2] > q->touch[3] ? q->touch[2] : q->touch[3];
        const int wedge = (4 * tb >= 3 * cw && (4 * q->x1 < w || 4 * q->x0 > 3 * w)) ||
                          (4 * lr >= 3 * ch && (4 * q->y1 < h || 4 * q->y0 > 3 * h));
        c[k].edge = touches_edge(q, w, h);
        c[k].frame = ((q->y0 == 0 || q->y1 == h - 1) && 5 * cw >= 4 * w) ||
                     ((q->x0 == 0 || q->x1 == w - 1) && 5 * ch >= 4 * h) || hline || vline ||
                     (wedge && q->count >= WEDGE_MIN);
        if (q->mass > mmax) mmax = q->mass;
    }
    /* Only the heaviest components (>= 5% of the heaviest, at most MAX_CAND) matter. */
    const int n = heaviest(c, nc, 0.05 * mmax, 0, list, MAX_CAND);
    for (int a = 0; a < n; a++) {
        struct comp *o = &c[list[a]];
        const double box = (double)(o->x1 - o->x0 + 1) * (double)(o->y1 - o->y0 + 1);
        if (o->frame || (double)o->count >= 0.12 * box) continue;
        for (int b = 0; b < n; b++) {
            const struct comp *in = &c[list[b]];
            if (b == a || in->mass < 0.1 * o->mass) continue;
            if (in->x0 > o->x0 && in->x1 < o->x1 && in->y0 > o->y0 && in->y1 < o->y1) {
                o->frame = 1;
                break;
            }
        }
    }
}

/* The longer side of q's box. */
static int comp_side(const struct comp *q) {
    return q->x1 - q->x0 > q->y1 - q->y0 ? q->x1 - q->x0 + 1 : q->y1 - q->y0 + 1;
}

/* Chebyshev gap between q's box and box (x0, y0, x1, y1); 0 when they overlap. */
static int box_gap(const struct comp *q, const int box[4]) {
    int gap = 0;
    if (q->x0 - box[2] > gap) gap = q->x0 - box[2];
    if (box[0] - q->x1 > gap) gap = box[0] - q->x1;
    if (q->y0 - box[3] > gap) gap = q->y0 - box[3];
    if (box[1] - q->y1 > gap) gap = box[1] - q->y1;
    return gap;
}

/* Step 4b. Choose the components that make up the digit (sets keep). c[1..nc]. cand: MAX_CAND
 * ints.
 * The seed is the heaviest component that is not a frame (the heaviest of all if every one
 * is); then, until nothing changes, any of the MAX_CAND heaviest non-frame components with
 * >= KEEP_FRAC of the seed's mass
 * whose box lies within KEEP_GAP of the kept box's longer side joins, or within KEEP_BIG_GAP
 * when it has >= KEEP_BIG of the seed's mass (the detached bar of a 5 or a 7, a
 * broken stroke). Returns the number of kept pixels; *box gets (x0, y0, x1, y1). */
static size_t choose_components(struct comp *c, int nc, int *cand, int box[4]) {
    int seed = 0;
    for (int pass = 0; pass < 2 && !seed; pass++)
        for (int k = 1; k <= nc; k++)
            if ((pass == 1 || !c[k].frame) && (!seed || c[k].mass > c[seed].mass)) seed = k;
    c[seed].keep = 1;
    box[0] = c[seed].x0, box[1] = c[seed].y0, box[2] = c[seed].x1, box[3] = c[seed].y1;
    size_t kept = c[seed].count;
    const int n_cand = heaviest(c, nc, KEEP_FRAC * c[seed].mass, seed, cand, MAX_CAND);
    for (int changed = 1; changed;) {
        changed = 0;
        const int side = box[2] - box[0] > box[3] - box[1] ? box[2] - box[0] : box[3] - box[1];
        const double near = fmax(2.0, KEEP_GAP * (side + 1)), far = KEEP_BIG_GAP * (side + 1);
        for (int j = 0; j < n_cand; j++) {
            struct comp *q = &c[cand[j]];
            if (q->keep || q->frame) continue;
            const int gap = box_gap(q, box);
            if (gap > near && (gap > far || q->edge || q->mass < KEEP_BIG * c[seed].mass)) continue;
            q->keep = 1;
            kept += q->count;
            if (q->x0 < box[0]) box[0] = q->x0;
            if (q->y0 < box[1]) box[1] = q->y0;
            if (q->x1 > box[2]) box[2] = q->x1;
            if (q->y1 > box[3]) box[3] = q->y1;
            changed = 1;
        }
    }
    return kept;
}

/* The digit found in the ink map: its crop and stroke width. */
struct digit {
    float *crop; /* (bh,bw) kept ink, everything else 0; owned */
    int bw, bh;
    double t20;  /* estimated stroke width in px once the longer side is BOX */
    int box[4];  /* x0, y0, x1, y1 in the work image */
    int objects; /* digit-sized objects in the picture, this one included (count_objects) */
};

/* Step 4c. Digit-sized objects in the picture (c[1..nc]): the components that are not frames,
 * do not touch the picture's edge, and have at least MANY_MASS of the heaviest one's mass
 * and MANY_SIDE of its longer side, grouped when their columns overlap or their boxes are
 * within MANY_GAP of that side (two strokes of one digit: the parts of a 4, a broken 0).
 * Returns the number of groups (at least 1): more than one means several digits side by side,
 * whether or not choose_components took them together. list: MAX_CAND ints of scratch. */
static int count_objects(const struct comp *c, int nc, int w, int h, int *list) {
    int top = 0;
    for (int k = 1; k <= nc; k++)
        if (!c[k].frame && (!top || c[k].mass > c[top].mass)) top = k;
    if (!top) return 1;
    const int side = comp_side(&c[top]);
    int n = heaviest(c, nc, MANY_MASS * c[top].mass, 0, list, MAX_CAND), m = 0;
    for (int a = 0; a < n; a++) { /* keep the digit-sized ones inside the picture */
        const struct comp *q = &c[list[a]];
        if (!q->frame && comp_side(q) >= MANY_SIDE * side && !touches_edge(q, w, h))
            list[m++] = list[a];
    }
    int group[MAX_CAND], groups = m;
    for (int a = 0; a < m; a++) group[a] = a;
    for (int a = 0; a < m; a++) { /* union by relabelling: m <= MAX_CAND */
        for (int b = a + 1; b < m; b++) {
            const struct comp *p = &c[list[a]], *q = &c[list[b]];
            const int pbox[4] = {p->x0, p->y0, p->x1, p->y1};
            const int columns = p->x0 <= q->x1 && q->x0 <= p->x1;
            if (group[a] == group[b] || (!columns && box_gap(q, pbox) >= MANY_GAP * side))
                continue;
            const int from = group[b], to = group[a];
            for (int k = 0; k < m; k++)
                if (group[k] == from) group[k] = to;
            groups--;
        }
    }
    return groups > 1 ? groups : 1;
}

/* Step 4. Find the digit in ink (h,w). Returns CNN_OK (dg filled), CNN_ERR_NODIGIT (no ink,
 * or fewer than max(10, 0.05% of the pixels) kept) or CNN_ERR_NOMEM. */
static int find_digit(const uint8_t *ink, int w, int h, struct digit *dg) {
    const size_t n = (size_t)w * (size_t)h;
    int32_t *lab = malloc(n * sizeof *lab), *queue = malloc(n * sizeof *queue);
    struct comp *c = NULL;
    int *cand = NULL;
    int rc = CNN_ERR_NOMEM;
    if (!lab || !queue) goto fail;
    const int nc = label_components(ink, w, h, lab, queue);
    rc = CNN_ERR_NODIGIT;
    if (nc == 0) goto fail;
    rc = CNN_ERR_NOMEM;
    c = calloc((size_t)nc + 1, sizeof *c);
    cand = malloc(MAX_CAND * sizeof *cand);
    if (!c || !cand) goto fail;
    for (int k = 1; k <= nc; k++) c[k].x0 = w, c[k].y0 = h, c[k].x1 = -1, c[k].y1 = -1;
    for (int y = 0; y < h; y++) {
        const size_t row = (size_t)y * (size_t)w, end = row + (size_t)w;
        for (size_t i = next_ink(ink, row, end); i < end; i = next_ink(ink, i + 1, end)) {
            const int x = (int)(i - row); /* ink here, so lab[i] is its component */
            struct comp *q = &c[lab[i]];
            q->count++;
            q->mass += ink[i];
            q->touch[0] += y == 0, q->touch[1] += y == h - 1;
            q->touch[2] += x == 0, q->touch[3] += x == w - 1;
            if (x < q->x0) q->x0 = x;
            if (x > q->x1) q->x1 = x;
            if (y < q->y0) q->y0 = y;
            if (y > q->y1) q->y1 = y;
        }
    }
    mark_frames(c, nc, w, h, cand);
    int box[4];
    const size_t kept = choose_components(c, nc, cand, box);
    rc = CNN_ERR_NODIGIT;
    if ((double)kept < fmax(10.0, 0.0005 * (double)n)) goto fail;

    /* The crop, and the stroke width 2 * area / boundary pixels: exact for a band >= 2 px
     * wide (each unit of length has two boundary pixels), 2 for a 1 px line. */
    rc = CNN_ERR_NOMEM;
    const int bw = box[2] - box[0] + 1, bh = box[3] - box[1] + 1;
    float *crop = malloc((size_t)bw * (size_t)bh * sizeof *crop);
    if (!crop) goto fail;
    size_t area = 0, edge = 0;
    for (int y = 0; y < bh; y++) {
        for (int x = 0; x < bw; x++) {
            const int gx = box[0] + x, gy = box[1] + y;
            const size_t i = (size_t)gy * (size_t)w + (size_t)gx;
            const int in = lab[i] && c[lab[i]].keep;
            crop[(size_t)y * (size_t)bw + (size_t)x] = in ? (float)ink[i] : 0.0f;
            if (!in) continue;
            area++;
            const int32_t nb[4] = {gx > 0 ? lab[i - 1] : 0, gx < w - 1 ? lab[i + 1] : 0,
                                   gy > 0 ? lab[i - (size_t)w] : 0,
                                   gy < h - 1 ? lab[i + (size_t)w] : 0};
            for (int k = 0; k < 4; k++) {
                if (!nb[k] || !c[nb[k]].keep) {
                    edge++;
                    break;
                }
            }
        }
    }
    dg->crop = crop;
    dg->bw = bw;
    dg->bh = bh;
    memcpy(dg->box, box, sizeof dg->box);
    dg->objects = count_objects(c, nc, w, h, cand);
    dg->t20 = 2.0 * (double)area / (double)(edge ? edge : 1) * BOX / (bw > bh ? bw : bh);
    rc = CNN_OK;
fail:
    free(lab);
    free(queue);
    free(c);
    free(cand);
    return rc;
}

/* Resize src (sh,sw) to dst (dh,dw), zero outside the source, stb's default filters (Mitchell
 * down, Catmull-Rom up). Negative ringing is clipped. Returns 0 on allocation failure. */
static int resize(const float *src, int sw, int sh, float *dst, int dw, int dh) {
    if (!stbir_resize_float_generic(src, sw, sh, 0, dst, dw, dh, 0, 1, STBIR_ALPHA_CHANNEL_NONE, 0,
                                    STBIR_EDGE_ZERO, STBIR_FILTER_DEFAULT, STBIR_COLORSPACE_LINEAR,
                                    NULL))
        return 0;
    for (size_t i = 0; i < (size_t)dw * (size_t)dh; i++)
        if (dst[i] < 0.0f) dst[i] = 0.0f;
    return 1;
}

/* Fit (h,w) into size x size keeping the aspect ratio: the longer side becomes size. */
static void fit_box(int w, int h, int size, int *tw, int *th) {
    if (w >= h) {
        *tw = size;
        *th = (int)lround((double)h * size / w);
    } else {
        *th = size;
        *tw = (int)lround((double)w * size / h);
    }
    if (*tw < 1) *tw = 1;
    if (*th < 1) *th = 1;
}

/* Grey-scale dilation with a disc of radius r: dst (sh+2r, sw+2r) is the max of src (sh,sw)
 * over the disc around each pixel, 0 outside src. O(area * r^2); only run at 4x BOX scale. */
static void dilate_disc(const float *src, int sw, int sh, float *dst, int r) {
    const int dw = sw + 2 * r, dh = sh + 2 * r;
    for (int y = 0; y < dh; y++) {
        for (int x = 0; x < dw; x++) {
            float acc = 0.0f;
            for (int dy = -r; dy <= r; dy++) {
                const int sy = y - r + dy;
                if (sy < 0 || sy >= sh) continue;
                for (int dx = -r; dx <= r; dx++) {
                    const int sx = x - r + dx;
                    if (sx < 0 || sx >= sw || dx * dx + dy * dy > r * r) continue;
                    const float q = src[sy * sw + sx];
                    if (q > acc) acc = q;
                }
            }
            dst[y * dw + x] = acc;
        }
    }
}

/* Step 5. Scale the crop so its longer side is BOX: box (th,tw) out, th, tw <= BOX. Strokes
 * thinner than THIN_T20 are first dilated at THICK_SCALE x BOX to about TARGET_T20.
 * Returns CNN_OK or CNN_ERR_NOMEM. */
static int scale_to_box(const struct digit *dg, float box[BOX * BOX], int *tw, int *th) {
    if (dg->t20 >= THIN_T20) {
        fit_box(dg->bw, dg->bh, BOX, tw, th);
        return resize(dg->crop, dg->bw, dg->bh, box, *tw, *th) ? CNN_OK : CNN_ERR_NOMEM;
    }
    int mw, mh;
    fit_box(dg->bw, dg->bh, BOX * THICK_SCALE, &mw, &mh);
    const int r = (int)ceil((TARGET_T20 - dg->t20) * THICK_SCALE / 2.0);
    const int fw = mw + 2 * r, fh = mh + 2 * r;
    float *mid = malloc((size_t)mw * (size_t)mh * sizeof *mid);
    float *fat = malloc((size_t)fw * (size_t)fh * sizeof *fat);
    int rc = CNN_ERR_NOMEM;
    if (!mid || !fat || !resize(dg->crop, dg->bw, dg->bh, mid, mw, mh)) goto fail;
    dilate_disc(mid, mw, mh, fat, r);
    fit_box(fw, fh, BOX, tw, th);
    if (!resize(fat, fw, fh, box, *tw, *th)) goto fail;
    rc = CNN_OK;
fail:
    free(mid);
    free(fat);
    return rc;
}

/* Step 6. Stretch box (th,tw) so its maximum is 255 and place it in out (28,28) with its centre
 * of mass on (14,14) (pixel centres at integers, as measured on MNIST), shifted by whole
 * pixels; what falls outside is clipped. Returns CNN_ERR_NODIGIT for an empty box. */
static int place_by_mass(const float *box, int tw, int th, uint8_t out[FIELD * FIELD]) {
    float peak = 0.0f;
    double m = 0.0, my = 0.0, mx = 0.0;
    for (int y = 0; y < th; y++) {
        for (int x = 0; x < tw; x++) {
            const float q = box[y * tw + x];
            if (q > peak) peak = q;
            m += q;
            my += (double)q * y;
            mx += (double)q * x;
        }
    }
    if (peak < 1.0f || m <= 0.0) return CNN_ERR_NODIGIT;
    const int oy = (int)lround(FIELD / 2.0 - my / m), ox = (int)lround(FIELD / 2.0 - mx / m);
    const float scale = 255.0f / peak;
    for (int y = 0; y < th; y++) {
        const int yy = y + oy;
        if (yy < 0 || yy >= FIELD) continue;
        for (int x = 0; x < tw; x++) {
            const int xx = x + ox;
            if (xx < 0 || xx >= FIELD) continue;
            out[yy * FIELD + xx] = (uint8_t)lrintf(clampf(box[y * tw + x] * scale, 0.0f, 255.0f));
        }
    }
    return CNN_OK;
}

/* ---- cnn_image_to_mnist ---------------------------------------------------------------------- */

/* Contract: img is any decoded image (w, h >= 1, gray non-NULL); it is not modified. Writes out
 * (28,28) u8, light ink on black like the IDX files, the digit's longer side 20 px, its centre
 * of mass at (14,14). Returns CNN_ERR_NODIGIT when no ink stands out of the paper and its
 * noise (blank, uniform, pure noise, a lone speck), CNN_ERR_ARG for a malformed img,
 * CNN_ERR_NOMEM. out is all zero on any error. Memory: about 15 bytes per work-image pixel
 * (at most WORK_MAX^2 of them) whatever the input size; time O(w*h). */
/* An image that already is an MNIST digit: 28x28, light ink on a black background (more
 * than half of the pixels exactly 0, as in every MNIST digit), with real ink. Re-running the
 * pipeline on it would only move it by rounding, so it is used as it is, and `mnist predict`
 * on an IDX digit saved as a picture agrees with `mnist eval`. */
static int already_mnist(const struct cnn_image *img) {
    if (img->w != FIELD || img->h != FIELD) return 0;
    int zeros = 0, peak = 0;
    for (int i = 0; i < FIELD * FIELD; i++) {
        zeros += img->gray[i] == 0;
        peak = img->gray[i] > peak ? img->gray[i] : peak;
    }
    return 2 * zeros > FIELD * FIELD && peak >= 128;
}

int cnn_image_to_mnist(const struct cnn_image *img, uint8_t out[28 * 28]) {
    return cnn_image_to_mnist_found(img, out, NULL);
}

/* The digit's box in the picture (h,w): the work image's box scaled by f, clipped. */
static void report_found(const struct digit *dg, int f, int w, int h, int already,
                         struct cnn_image_found *found) {
    if (!found || found->size < sizeof *found) return;
    found->objects = already ? 1 : dg->objects;
    found->x0 = already ? 0 : dg->box[0] * f;
    found->y0 = already ? 0 : dg->box[1] * f;
    found->x1 = already ? w - 1 : (dg->box[2] + 1) * f - 1 < w ? (dg->box[2] + 1) * f - 1 : w - 1;
    found->y1 = already ? h - 1 : (dg->box[3] + 1) * f - 1 < h ? (dg->box[3] + 1) * f - 1 : h - 1;
}

int cnn_image_to_mnist_found(const struct cnn_image *img, uint8_t out[28 * 28],
                             struct cnn_image_found *found) {
    return cnn_image_prepare(img, out, found, 0);
}

int cnn_image_prepare(const struct cnn_image *img, uint8_t out[28 * 28],
                      struct cnn_image_found *found, int modelled) {
    memset(out, 0, FIELD * FIELD);
    if (!img || !img->gray || img->w < 1 || img->h < 1)
        return cnn_fail(CNN_ERR_ARG, "image: no pixels (w=%d h=%d)", img ? img->w : 0,
                        img ? img->h : 0);
    if (already_mnist(img)) {
        memcpy(out, img->gray, FIELD * FIELD);
        report_found(NULL, 1, img->w, img->h, 1, found);
        return CNN_OK;
    }
    uint8_t *v = NULL, *ink = NULL;
    uint64_t *acc = NULL;
    struct digit dg = {0};
    float box[BOX * BOX];
    int rc = CNN_ERR_NOMEM;

    /* 0. Work image: longer side <= WORK_MAX by an integer area average. */
    const int64_t longest = img->w > img->h ? img->w : img->h;
    const int f = (int)((longest + WORK_MAX - 1) / WORK_MAX);
    const int w = (int)((img->w + (int64_t)f - 1) / f), h = (int)((img->h + (int64_t)f - 1) / f);
    const size_t n = (size_t)w * (size_t)h;
    v = malloc(n);
    ink = malloc(n);
    acc = malloc((size_t)w * sizeof *acc);
    if (!v || !ink || !acc) goto fail;
    downscale_area(img->gray, img->w, img->h, f, v, w, h, acc);

    /* 1. Polarity: make the ink bright (and the histogram of v with it). */
    int range = 0;
    size_t hv[256];
    const int dark = ink_is_dark(v, w, h, &range, hv);
    if (dark) {
        for (size_t i = 0; i < n; i++) v[i] = (uint8_t)(255 - v[i]);
        for (int b = 0; b < 128; b++) {
            const size_t t = hv[b];
            hv[b] = hv[255 - b], hv[255 - b] = t;
        }
    }
    rc = CNN_ERR_NODIGIT;
    if (range < MIN_CONTRAST) goto fail;

    /* 2-6. */
    int tw = 0, th = 0, flat = 0;
    rc = ink_map(v, hv, w, h, dark, modelled, ink, &flat);
    if (rc == CNN_OK && !flat) rc = strip_ruled_lines(ink, w, h);
    if (rc == CNN_OK) rc = find_digit(ink, w, h, &dg);
    if (rc == CNN_OK) rc = scale_to_box(&dg, box, &tw, &th);
    if (rc == CNN_OK) rc = place_by_mass(box, tw, th, out);
    if (rc == CNN_OK) report_found(&dg, f, img->w, img->h, 0, found);
fail:
    free(v);
    free(ink);
    free(acc);
    free(dg.crop);
    if (rc == CNN_OK) return CNN_OK;
    memset(out, 0, FIELD * FIELD);
    if (rc == CNN_ERR_NODIGIT)
        return cnn_fail(rc,
                        "image %dx%d: no digit found (no ink stands out of the paper and "
                        "its noise)",
                        img->w, img->h);
    return cnn_fail(rc, "image %dx%d: out of memory while preparing it", img->w, img->h);
}

/*
 * decode.c - PNG through libpng 1.6 and JPEG through libjpeg-turbo, from memory, to 8-bit gray.
 *
 * What it is: the two decoders cnn_image_decode (image.c) uses for the formats people actually
 * send, and the one gray conversion every decoder's pixels go through. What it is not: a
 * colour-managed decoder. gAMA, iCCP, sRGB and JPEG ICC profiles are ignored, as stb_image
 * ignored them, so a digit decodes the same whatever its file says about gamma.
 *
 * Why not stb_image. Images arrive from strangers over a socket, and Debian's stb_image 2.27
 * gave a memory-safety finding every 0.3-0.9 million fuzz executions (fuzz/README.md). libpng
 * and libjpeg-turbo are fuzzed continuously by OSS-Fuzz, and both expose the limits a server
 * needs. stb stays for BMP, GIF, TGA and PNM (image.c), with its PNG and JPEG decoders
 * compiled out (stb_impl.c).
 *
 * Common to both: the header is read first and an image over CNN_IMAGE_MAX_PIXELS is refused
 * (CNN_ERR_LIMIT) before any pixel memory is allocated. No global state: each call has its own
 * library structs, error jump and message, so any number of threads may decode at once (the
 * server does). The libraries never print: their error and warning hooks keep the message, and
 * the cnn_fail message names the file, e.g. "photo.jpg: corrupt JPEG (Premature end of JPEG
 * file)". Rows are converted to gray as they are decoded, so our memory is one byte per pixel
 * plus a row, except for an interlaced PNG, whose decoded rows are all kept until the last
 * pass (up to 4 bytes per pixel, what stb needed for every image). libjpeg itself keeps the
 * coefficients of a progressive JPEG (2 bytes per sample of each component).
 *
 * PNG: the full libpng API, not the simplified png_image one, because (1) png_set_user_limits,
 * the chunk limits and the CRC policy need the png_struct, which png_image hides; (2) png_image
 * converts colours the way PNG's colour management says: it honours gAMA and treats 16-bit
 * files as linear light, so a 16-bit gray 0x8000 would come out near 188 instead of 128, and
 * 8-bit files with a gAMA chunk would no longer match what stb gave; (3) it writes the whole
 * image into a caller buffer of 2-4 bytes per pixel. Transforms: palette to RGB, gray below 8
 * bits to 8 (scaled: 1 -> 255, as stb), tRNS to an alpha channel, 16 bits to 8 by the high byte
 * (as stb). Every ancillary chunk but tRNS and eXIf is skipped unparsed, only its CRC checked
 * (no text or ICC decompression), so the chunk cache and per-chunk allocation limits are only a
 * second line. A CRC error in any chunk, critical or ancillary, is an error (libpng's default only
 * warns for ancillary ones), and so is a zlib error in the image data, Adler-32 included.
 * libpng's warnings and "benign errors" (extra data after the image, an oversized chunk we
 * skip) are kept for the message but tolerated: they concern chunks we skip or bytes after the
 * last pixel. Valid PNGs decode bit for bit as stb_image decoded them (tests/test_image.c
 * compares every colour type and bit depth with stb's own decoder).
 *
 * JPEG: libjpeg's own API (jpeg_mem_src). Gray and YCbCr files are decoded straight to gray
 * (JCS_GRAYSCALE: the Y channel, which is the encoder's Rec. 601 luma; no chroma is upsampled).
 * RGB files (Adobe transform 0) are decoded to RGB and go through the common conversion. CMYK
 * and YCCK come out as CMYK; with an Adobe APP14 marker the values are stored inverted (255 =
 * no ink: Photoshop's convention, also stb's and browsers'), without one they are plain ink.
 * Then R = (1 - C)(1 - K), G and B alike, and the luma of that. Any other colour space (two
 * components, or five) is refused. Warnings are errors, as with TurboJPEG's stop-on-warning
 * flag: libjpeg "recovers" from truncated or corrupt entropy data by filling the rest of the
 * image with gray, which is no picture of a digit, and which would let a few hundred bytes
 * stand for a 50-megapixel decode. The one warning tolerated is "extraneous bytes before
 * marker": junk between segments, which some cameras write, and which changes no pixel. The
 * file must reach its EOI marker. Work is bounded: a progress monitor stops a file after
 * JPEG_MAX_SCANS scans (CNN_ERR_LIMIT), as libjpeg-turbo's fuzzers do at 500; an encoder
 * writes 10 or so (jpeg_simple_progression: 6 gray, 10 colour), so 256 leaves room for
 * hand-made scan scripts while a hostile file cannot make one image cost thousands of passes
 * (256 scans of a 4-megapixel gray image decode in about 0.2 s). With at most 4 components and
 * the pixel limit, a progressive file's coefficient buffers are at most 8 bytes per pixel.
 *
 * Orientation. A phone stores a portrait photo's pixels as the sensor read them, sideways,
 * and says in the EXIF Orientation tag (0x0112, 1..8) how to turn them upright. Both decoders
 * keep the EXIF block (JPEG: the APP1 segment that starts "Exif\0\0"; PNG: an eXIf chunk
 * before the image data), libexif reads the tag, and the image handed over is upright: rows
 * and columns swapped and/or mirrored as the tag says (exif_upright). A missing, unreadable or
 * out-of-range tag means 1, as it does for every viewer: a broken EXIF block never fails a
 * decode. libexif is told not to "fix" the data to the specification (that adds entries) and
 * reads no more than the marker's 64 KB.
 */
#include <setjmp.h>
#include <stdio.h> /* jpeglib.h uses FILE and size_t without including them */
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>
#include <libexif/exif-data.h>
#include <png.h>

#include "internal.h"

#define PNG_CHUNK_CACHE 32u                /* ancillary chunks libpng may store */
#define PNG_CHUNK_MALLOC ((size_t)1 << 20) /* bytes libpng may allocate for one chunk */
#define JPEG_MAX_SCANS 256                 /* scans (progressive passes) of one JPEG */

/* ---- the gray conversion ------------------------------------------------------------------ */

/* Rec. 601 luma of an RGB pixel in fixed point, rounded: weights sum to 1000. */
static inline uint32_t luma601(const uint8_t *p) {
    return (299u * p[0] + 587u * p[1] + 114u * p[2] + 500u) / 1000u;
}

/* A luminance over a white page by alpha a: lum * a + 255 * (1 - a), rounded. */
static inline uint32_t over_white(uint32_t lum, uint32_t a) {
    return (lum * a + 255u * (255u - a) + 127u) / 255u;
}

void cnn_decode_gray(uint8_t *restrict gray, const uint8_t *restrict px, size_t n, int channels) {
    switch (channels) {
    case 1:
        memcpy(gray, px, n);
        break;
    case 2:
        for (size_t i = 0; i < n; i++) gray[i] = (uint8_t)over_white(px[2 * i], px[2 * i + 1]);
        break;
    case 3:
        for (size_t i = 0; i < n; i++) gray[i] = (uint8_t)luma601(px + 3 * i);
        break;
    default:
        for (size_t i = 0; i < n; i++)
            gray[i] = (uint8_t)over_white(luma601(px + 4 * i), px[4 * i + 3]);
        break;
    }
}

/* ---- EXIF orientation ----------------------------------------------------------------------- */

/* The Orientation tag (1..8) of an EXIF block: exif (n) starts with "Exif\0\0" and a TIFF
 * header. 1 (as stored) when there is no block, no tag, or a value outside 1..8. */
static int exif_orientation(const uint8_t *exif, size_t n) {
    if (!exif || n < 14 || n > 0xffff || memcmp(exif, "Exif\0\0", 6) != 0) return 1;
    ExifData *ed = exif_data_new();
    if (!ed) return 1;
    exif_data_unset_option(ed, EXIF_DATA_OPTION_FOLLOW_SPECIFICATION);
    exif_data_load_data(ed, exif, (unsigned int)n);
    int o = 1;
    ExifEntry *e = exif_content_get_entry(ed->ifd[EXIF_IFD_0], EXIF_TAG_ORIENTATION);
    if (e && e->format == EXIF_FORMAT_SHORT && e->components >= 1 && e->data && e->size >= 2) {
        const int v = exif_get_short(e->data, exif_data_get_byte_order(ed));
        if (v >= 1 && v <= 8) o = v;
    }
    exif_data_unref(ed);
    return o;
}

/* The stored image g (h,w) turned upright as EXIF orientation o says: out (oh,ow), where
 * (ow,oh) = (h,w) for o = 5..8 (the stored rows are the picture's columns). Output pixel
 * (X,Y) reads stored (a,b) = (X,Y), or (Y,X) when transposed, with a mirrored to w-1-a and/or b
 * to h-1-b:
 *   o  transposed  mirror a  mirror b   what the viewer does
 *   1      -          -         -       nothing
 *   2      -          x         -       mirror left-right
 *   3      -          x         x       rotate 180
 *   4      -          -         x       mirror top-bottom
 *   5      x          -         -       transpose
 *   6      x          -         x       rotate 90 clockwise (a phone held upright)
 *   7      x          x         x       transverse
 *   8      x          x         -       rotate 90 anticlockwise
 * Returns the new buffer (g is then freed) or NULL when out of memory (g untouched). */
static uint8_t *exif_upright(uint8_t *g, int *w, int *h, int o) {
    static const uint8_t transposed[9] = {0, 0, 0, 0, 0, 1, 1, 1, 1};
    static const uint8_t mirror_a[9] = {0, 0, 1, 1, 0, 0, 0, 1, 1};
    static const uint8_t mirror_b[9] = {0, 0, 0, 1, 1, 0, 1, 1, 0};
    const size_t sw = (size_t)*w, sh = (size_t)*h;
    const int t = transposed[o];
    const size_t ow = t ? sh : sw, oh = t ? sw : sh;
    uint8_t *out = malloc(sw * sh);
    if (!out) return NULL;
    for (size_t y = 0; y < oh; y++) {
        for (size_t x = 0; x < ow; x++) {
            size_t a = t ? y : x, b = t ? x : y;
            if (mirror_a[o]) a = sw - 1 - a;
            if (mirror_b[o]) b = sh - 1 - b;
            out[y * ow + x] = g[b * sw + a];
        }
    }
    free(g);
    *w = (int)ow;
    *h = (int)oh;
    return out;
}

/* The end of a decode: on success out takes the pixels, turned upright as EXIF orientation o
 * (1..8) says; on failure they are freed (out stays zeroed). Returns rc. */
static int hand_over(int rc, int w, int h, uint8_t *gray, int o, const char *name,
                     struct cnn_image *out) {
    if (rc == CNN_OK && o != 1) {
        uint8_t *up = exif_upright(gray, &w, &h, o);
        if (!up) rc = cnn_fail(CNN_ERR_NOMEM, "%s: cannot allocate a %dx%d image", name, w, h);
        else gray = up;
    }
    if (rc != CNN_OK) {
        free(gray);
        return rc;
    }
    out->w = w;
    out->h = h;
    out->gray = gray;
    return CNN_OK;
}

/* ---- PNG ---------------------------------------------------------------------------------- */

/* One PNG decode. It lives in cnn_decode_png's frame, not in png_run's (the function that calls
 * setjmp), so what png_run changes in it is still valid after libpng longjmps out. */
struct png_job {
    const uint8_t *buf;
    size_t len, pos;   /* read position in buf */
    char error[128];   /* libpng's error message */
    char warning[128]; /* its first warning (the detail of "Invalid IHDR data") */
    png_structp png;
    png_infop info;
    uint8_t *gray; /* (h, w) out */
    uint8_t *rows; /* one decoded row, or all of them for an interlaced image */
    int w, h;
    int orientation; /* EXIF, 1..8, from an eXIf chunk before the image data */
};

static void png_read_mem(png_structp png, png_bytep dst, size_t n) {
    struct png_job *job = png_get_io_ptr(png);
    if (n > job->len - job->pos) png_error(png, "truncated: the file ends inside a chunk");
    memcpy(dst, job->buf + job->pos, n);
    job->pos += n;
}

static void png_on_error(png_structp png, png_const_charp msg) {
    struct png_job *job = png_get_error_ptr(png);
    snprintf(job->error, sizeof job->error, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
    struct png_job *job = png_get_error_ptr(png);
    if (!job->warning[0]) snprintf(job->warning, sizeof job->warning, "%s", msg);
}

/* The status and message for a libpng error; its first warning, if any, says more (libpng
 * reports a bad IHDR as warnings naming each fault, then the error "Invalid IHDR data"). */
static int png_failed(const struct png_job *job, const char *name) {
    if (strcmp(job->error, "Out of memory") == 0 || strcmp(job->error, "Out of Memory") == 0)
        return cnn_fail(CNN_ERR_NOMEM, "%s: out of memory decoding PNG", name);
    if (job->warning[0])
        return cnn_fail(CNN_ERR_FORMAT, "%s: corrupt PNG (%s; %s)", name, job->error, job->warning);
    return cnn_fail(CNN_ERR_FORMAT, "%s: corrupt PNG (%s)", name, job->error);
}

/* Whether buf (a PNG) has an eXIf chunk before its image data that libpng may read: at most
 * 64 KB, and all there. libpng allocates an eXIf chunk's whole declared length before reading
 * it, past the chunk limits set in png_run: a forged length of 1.1 GB was allocated so. Any
 * other eXIf chunk is skipped unread, as every other ancillary chunk is. */
static int png_has_exif(const uint8_t *buf, size_t len) {
    for (size_t at = 8; at + 8 <= len;) {
        const uint32_t n = (uint32_t)buf[at] << 24 | (uint32_t)buf[at + 1] << 16 |
                           (uint32_t)buf[at + 2] << 8 | buf[at + 3];
        const uint8_t *type = buf + at + 4;
        if (!memcmp(type, "IDAT", 4) || !memcmp(type, "IEND", 4)) return 0;
        if (!memcmp(type, "eXIf", 4)) return n <= 0xffff && at + 12 + n <= len;
        if (n > len - at - 8) return 0; /* past the end: libpng reports it */
        at += 12 + (size_t)n;
    }
    return 0;
}

/* The EXIF orientation of an eXIf chunk read with the header (its TIFF data, without the
 * "Exif\0\0" that a JPEG's APP1 segment puts first); 1 without one. */
static int png_orientation(png_structp png, png_infop info) {
    png_uint_32 n = 0;
    png_bytep tiff = NULL;
    if (!png_get_eXIf_1(png, info, &n, &tiff) || !tiff || n < 8 || n > 0xfff0) return 1;
    uint8_t *exif = malloc((size_t)n + 6);
    if (!exif) return 1;
    memcpy(exif, "Exif\0\0", 6);
    memcpy(exif + 6, tiff, n);
    const int o = exif_orientation(exif, (size_t)n + 6);
    free(exif);
    return o;
}

/* Header, transforms, then every row (every pass of an interlaced image), converted to gray
 * once complete. Calls setjmp: on a libpng error returns through png_failed. */
static int png_run(struct png_job *job, const char *name) {
    png_structp png = job->png;
    png_infop info = job->info;
    if (setjmp(png_jmpbuf(png))) return png_failed(job, name);
    /* a side over the pixel limit: already refused by png_peek_size, so this is a second line
     * (and replaces libpng's default of 1,000,000, which would refuse a 2000000x1 image) */
    png_set_user_limits(png, CNN_IMAGE_MAX_PIXELS, CNN_IMAGE_MAX_PIXELS);
    png_set_chunk_cache_max(png, PNG_CHUNK_CACHE);
    png_set_chunk_malloc_max(png, PNG_CHUNK_MALLOC);
    png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
    /* every chunk libpng knows but IHDR, PLTE, tRNS, IDAT, IEND, and all unknown ones */
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, -1);
    if (png_has_exif(job->buf, job->len))
        png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_AS_DEFAULT, (png_const_bytep) "eXIf", 1);
    png_set_read_fn(png, job, png_read_mem);
    png_read_info(png, info);
    job->orientation = png_orientation(png, info);
    const png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if ((uint64_t)w * h > (uint64_t)CNN_IMAGE_MAX_PIXELS)
        return cnn_fail(CNN_ERR_LIMIT, "%s: image is %ux%u, over the limit of %ld pixels", name,
                        (unsigned)w, (unsigned)h, (long)CNN_IMAGE_MAX_PIXELS);
    png_set_expand(png);   /* palette -> RGB, gray < 8 bits -> 8, tRNS -> alpha */
    png_set_strip_16(png); /* 16 -> 8 bits: the high byte */
    const int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    const int ch = png_get_channels(png, info);
    const size_t row = (size_t)w * (size_t)ch;
    if (ch < 1 || ch > 4 || png_get_bit_depth(png, info) != 8 || png_get_rowbytes(png, info) != row)
        return cnn_fail(CNN_ERR_FORMAT,
                        "%s: PNG decodes to %d channels of %d bits, expected "
                        "1-4 of 8",
                        name, ch, png_get_bit_depth(png, info));
    job->gray = malloc((size_t)w * h);
    job->rows = calloc(passes > 1 ? h : 1, row);
    if (!job->gray || !job->rows)
        return cnn_fail(CNN_ERR_NOMEM, "%s: cannot allocate a %ux%u image", name, (unsigned)w,
                        (unsigned)h);
    for (int pass = 0; pass < passes; pass++)
        for (png_uint_32 y = 0; y < h; y++) {
            uint8_t *r = job->rows + (passes > 1 ? y * row : 0);
            png_read_row(png, r, NULL);
            if (pass == passes - 1) cnn_decode_gray(job->gray + (size_t)y * w, r, w, ch);
        }
    png_read_end(png, NULL); /* the chunks after the image: their CRCs, up to IEND */
    job->w = (int)w;
    job->h = (int)h;
    return CNN_OK;
}

/* IHDR is the first chunk of every PNG (libpng refuses a file where it is not), so its
 * dimensions are checked here, before libpng runs: png_read_info reads every chunk up to the
 * image data before it returns, so a forged header alone would otherwise be reported as
 * truncated rather than as too big. Its CRC is not checked yet: a header over the limit is
 * refused whether it is intact or not. png_run checks libpng's own reading of it again. */
static int png_peek_size(const uint8_t *buf, size_t len, const char *name) {
    if (len < 24 || memcmp(buf + 12, "IHDR", 4) != 0) return CNN_OK; /* libpng says why */
    const uint32_t w =
        (uint32_t)buf[16] << 24 | (uint32_t)buf[17] << 16 | (uint32_t)buf[18] << 8 | buf[19];
    const uint32_t h =
        (uint32_t)buf[20] << 24 | (uint32_t)buf[21] << 16 | (uint32_t)buf[22] << 8 | buf[23];
    if ((uint64_t)w * h > (uint64_t)CNN_IMAGE_MAX_PIXELS)
        return cnn_fail(CNN_ERR_LIMIT, "%s: image is %ux%u, over the limit of %ld pixels", name,
                        (unsigned)w, (unsigned)h, (long)CNN_IMAGE_MAX_PIXELS);
    return CNN_OK;
}

int cnn_decode_png(const uint8_t *buf, size_t len, const char *name, struct cnn_image *out) {
    memset(out, 0, sizeof *out);
    const int peek = png_peek_size(buf, len, name);
    if (peek != CNN_OK) return peek;
    struct png_job job = {.buf = buf, .len = len};
    job.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &job, png_on_error, png_on_warning);
    if (job.png) job.info = png_create_info_struct(job.png);
    int rc = job.info ? png_run(&job, name)
                      : cnn_fail(CNN_ERR_NOMEM, "%s: cannot allocate a PNG decoder", name);
    png_destroy_read_struct(job.png ? &job.png : NULL, job.info ? &job.info : NULL, NULL);
    free(job.rows);
    return hand_over(rc, job.w, job.h, job.gray, job.orientation ? job.orientation : 1, name, out);
}

/* ---- JPEG --------------------------------------------------------------------------------- */

/* One JPEG decode; as struct png_job, it lives in the caller's frame, not jpeg_run's. */
struct jpeg_job {
    struct jpeg_decompress_struct cinfo; /* client_data points back here */
    struct jpeg_error_mgr err;
    struct jpeg_progress_mgr progress;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX]; /* libjpeg's message for the error or warning that stopped it */
    int code;                  /* its message code */
    int too_many_scans;
    uint8_t *gray; /* (h, w) out */
    uint8_t *row;  /* one RGB or CMYK row, NULL for gray output */
    int w, h;
    int orientation; /* EXIF, 1..8, from an APP1 "Exif" segment */
};

static void jpeg_on_error(j_common_ptr c) {
    struct jpeg_job *job = c->client_data;
    job->code = c->err->msg_code;
    c->err->format_message(c, job->msg);
    longjmp(job->jump, 1);
}

/* Warnings (level -1) stop the decode, except junk between segments; trace messages (level >= 0)
 * are dropped. Nothing is printed. */
static void jpeg_on_message(j_common_ptr c, int level) {
    if (level >= 0 || c->err->msg_code == JWRN_EXTRANEOUS_DATA) return;
    jpeg_on_error(c);
}

static void jpeg_silent(j_common_ptr c) {
    (void)c;
}

/* Called before each unit of input the decoder absorbs (a marker, an MCU row of a scan). */
static void jpeg_on_progress(j_common_ptr c) {
    struct jpeg_job *job = c->client_data;
    if (!c->is_decompressor || ((j_decompress_ptr)c)->input_scan_number <= JPEG_MAX_SCANS) return;
    job->too_many_scans = 1;
    longjmp(job->jump, 1);
}

static int jpeg_failed(const struct jpeg_job *job, const char *name) {
    if (job->too_many_scans)
        return cnn_fail(CNN_ERR_LIMIT, "%s: JPEG has more than %d scans, over the limit", name,
                        JPEG_MAX_SCANS);
    if (job->code == JERR_OUT_OF_MEMORY)
        return cnn_fail(CNN_ERR_NOMEM, "%s: out of memory decoding JPEG (%s)", name, job->msg);
    return cnn_fail(CNN_ERR_FORMAT, "%s: corrupt JPEG (%s)", name, job->msg);
}

/* A CMYK row (n pixels) to RGB in place (each RGB pixel ends at or before its CMYK pixel).
 * inverted: stored 255 - ink (Adobe). R = (255 - C)(255 - K) / 255, rounded. */
static void cmyk_to_rgb(uint8_t *px, size_t n, int inverted) {
    const unsigned flip = inverted ? 0u : 255u;
    for (size_t i = 0; i < n; i++) {
        const unsigned k = px[4 * i + 3] ^ flip;
        for (int j = 0; j < 3; j++)
            px[3 * i + (size_t)j] = (uint8_t)(((px[4 * i + (size_t)j] ^ flip) * k + 127u) / 255u);
    }
}

/* Pick the output colour space for the file's, or refuse it. *channels: of the output. */
static int jpeg_pick_output(j_decompress_ptr c, const char *name, int *channels) {
    switch (c->jpeg_color_space) {
    case JCS_GRAYSCALE:
    case JCS_YCbCr:
        c->out_color_space = JCS_GRAYSCALE;
        *channels = 1;
        return CNN_OK;
    case JCS_RGB:
        c->out_color_space = JCS_RGB;
        *channels = 3;
        return CNN_OK;
    case JCS_CMYK:
    case JCS_YCCK:
        c->out_color_space = JCS_CMYK;
        *channels = 4;
        return CNN_OK;
    default:
        return cnn_fail(CNN_ERR_FORMAT,
                        "%s: JPEG with %d colour components of unknown meaning, "
                        "expected gray, YCbCr, RGB, CMYK or YCCK",
                        name, c->num_components);
    }
}

/* Header, limit, colour space, then the scanlines. Calls setjmp: on a libjpeg error or a
 * refused warning returns through jpeg_failed. */
static int jpeg_run(struct jpeg_job *job, const uint8_t *buf, size_t len, const char *name) {
    j_decompress_ptr c = &job->cinfo;
    if (setjmp(job->jump)) return jpeg_failed(job, name);
    jpeg_create_decompress(c);
    c->progress = &job->progress;
    jpeg_mem_src(c, buf, (unsigned long)len);
    jpeg_save_markers(c, JPEG_APP0 + 1, 0xffff);
    jpeg_read_header(c, TRUE);
    job->orientation = 1;
    for (jpeg_saved_marker_ptr m = c->marker_list; m; m = m->next)
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && !memcmp(m->data, "Exif\0\0", 6)) {
            job->orientation = exif_orientation(m->data, m->data_length);
            break;
        }
    const JDIMENSION w = c->image_width, h = c->image_height;
    if ((uint64_t)w * h > (uint64_t)CNN_IMAGE_MAX_PIXELS)
        return cnn_fail(CNN_ERR_LIMIT, "%s: image is %ux%u, over the limit of %ld pixels", name,
                        (unsigned)w, (unsigned)h, (long)CNN_IMAGE_MAX_PIXELS);
    int ch = 0;
    const int rc = jpeg_pick_output(c, name, &ch);
    if (rc != CNN_OK) return rc;
    jpeg_start_decompress(c);
    if (c->output_width != w || c->output_height != h || c->output_components != ch)
        return cnn_fail(CNN_ERR_FORMAT, "%s: JPEG decoder gives %ux%ux%d, header said %ux%ux%d",
                        name, (unsigned)c->output_width, (unsigned)c->output_height,
                        c->output_components, (unsigned)w, (unsigned)h, ch);
    job->gray = malloc((size_t)w * h);
    job->row = ch > 1 ? malloc((size_t)w * (size_t)ch) : NULL;
    if (!job->gray || (ch > 1 && !job->row))
        return cnn_fail(CNN_ERR_NOMEM, "%s: cannot allocate a %ux%u image", name, (unsigned)w,
                        (unsigned)h);
    while (c->output_scanline < h) {
        uint8_t *g = job->gray + (size_t)c->output_scanline * w;
        JSAMPROW r = ch > 1 ? job->row : g;
        if (jpeg_read_scanlines(c, &r, 1) != 1) /* only a suspending source returns 0 */
            return cnn_fail(CNN_ERR_FORMAT, "%s: JPEG decoder stopped early", name);
        if (ch == 4) cmyk_to_rgb(job->row, w, c->saw_Adobe_marker);
        if (ch > 1) cnn_decode_gray(g, job->row, w, 3);
    }
    jpeg_finish_decompress(c); /* up to the EOI marker */
    job->w = (int)w;
    job->h = (int)h;
    return CNN_OK;
}

int cnn_decode_jpeg(const uint8_t *buf, size_t len, const char *name, struct cnn_image *out) {
    memset(out, 0, sizeof *out);
    struct jpeg_job job;
    memset(&job, 0, sizeof job);
    job.cinfo.err = jpeg_std_error(&job.err);
    job.err.error_exit = jpeg_on_error;
    job.err.emit_message = jpeg_on_message;
    job.err.output_message = jpeg_silent;
    job.cinfo.client_data = &job;
    job.progress.progress_monitor = jpeg_on_progress;
    const int rc = jpeg_run(&job, buf, len, name);
    jpeg_destroy_decompress(&job.cinfo); /* also when creation failed: nothing to free then */
    free(job.row);
    return hand_over(rc, job.w, job.h, job.gray, job.orientation ? job.orientation : 1, name, out);
}

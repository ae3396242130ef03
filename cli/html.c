/*
 * html.c - escaped text, PNG data URIs and inline SVG charts for the pages of `mnist report`
 * and `mnist compare` (html.h). PNGs are encoded here with zlib, which the program already
 * links, so the pages need nothing but this file and cnn.h.
 */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "cli.h"
#include "html.h"

const char *const html_palette[8] = {"#0072b2", "#e69f00", "#009e73", "#d55e00",
                                     "#cc79a7", "#56b4e9", "#555555", "#f0e442"};

/* ---- text ------------------------------------------------------------------------------- */

/* The code point of the UTF-8 sequence at p in *cp and its length, or 0 when p does not start
 * a valid one (cut short, a stray continuation byte, overlong, a surrogate, past U+10FFFF). */
static int utf8_decode(const unsigned char *p, unsigned long *cp) {
    int n;
    unsigned long v, min;
    if (p[0] >= 0xF0 && p[0] <= 0xF4)
        n = 4, v = p[0] & 0x07u, min = 0x10000;
    else if (p[0] >= 0xE0 && p[0] <= 0xEF)
        n = 3, v = p[0] & 0x0Fu, min = 0x800;
    else if (p[0] >= 0xC2 && p[0] <= 0xDF)
        n = 2, v = p[0] & 0x1Fu, min = 0x80;
    else
        return 0;
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xC0u) != 0x80u) return 0; /* also stops at the terminating NUL */
        v = v << 6 | (p[i] & 0x3Fu);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return n;
}

void html_text(FILE *f, const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned long cp;
        int n;
        switch (*p) {
        case '&':
            fputs("&amp;", f);
            continue;
        case '<':
            fputs("&lt;", f);
            continue;
        case '>':
            fputs("&gt;", f);
            continue;
        case '"':
            fputs("&quot;", f);
            continue;
        case '\'':
            fputs("&#39;", f);
            continue;
        case '\t':
        case '\n':
            fputc(*p, f);
            continue;
        default:
            break;
        }
        if (*p >= 0x20 && *p < 0x7F) {
            fputc(*p, f);
        } else if (*p >= 0x80 && (n = utf8_decode(p, &cp)) > 0 && !(cp >= 0x80 && cp < 0xA0) &&
                   cp != 0xFFFE && cp != 0xFFFF) {
            fprintf(f, "&#x%lX;", cp);
            p += n - 1;
        } else {
            fputs("&#xFFFD;", f); /* a control character or a broken sequence */
        }
    }
}

void html_textf(FILE *f, const char *fmt, ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    html_text(f, buf);
}

/* One style sheet for both pages: system fonts, nothing fetched. */
static const char style[] =
    "body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#222;"
    "max-width:1100px;margin:0 auto;padding:0 16px 40px;background:#fafafa}\n"
    "h1{font-size:1.6em;margin:24px 0 4px}h2{font-size:1.25em;margin:32px 0 8px;"
    "border-bottom:1px solid #ddd;padding-bottom:4px}\n"
    ".sub{color:#555;margin:0 0 12px}.note{color:#555;font-size:.9em;max-width:75ch}\n"
    ".split{background:#fff3cd;border:1px solid #e6c200;padding:6px 10px;display:inline-block}\n"
    ".nav a{margin-right:12px}\n"
    ".cards{display:flex;flex-wrap:wrap;gap:10px}.card{background:#fff;border:1px solid #ddd;"
    "padding:8px 14px;min-width:120px}.card b{display:block;font-size:1.4em}\n"
    "table{border-collapse:collapse;background:#fff;margin:6px 0}"
    "td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}"
    "th{background:#f0f0f0}td.l,th.l{text-align:left}\n"
    "code{font-size:.9em;overflow-wrap:anywhere}\n"
    ".row{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}\n"
    "svg.chart{background:#fff;border:1px solid #ddd;max-width:100%;height:auto}\n"
    "svg text{font:12px system-ui,sans-serif;fill:#333}\n"
    "img.px{image-rendering:pixelated;image-rendering:crisp-edges;background:#000;"
    "vertical-align:middle}\n"
    ".grid{display:flex;flex-wrap:wrap;gap:8px}.tile{background:#fff;border:1px solid #ddd;"
    "padding:4px;text-align:center;font-size:.85em;width:76px}\n"
    ".tile.bad{border-color:#d55e00}\n"
    ".cls{display:flex;align-items:center;gap:4px;margin:2px 0}.cls span{width:5em}\n"
    ".best td{font-weight:bold}.front{color:#d55e00}\n"
    ".footer{margin-top:40px;color:#777;font-size:.85em}\n";

void html_begin(FILE *f, const char *title) {
    fputs("<!DOCTYPE html>\n<html lang=\"en\" xmlns=\"http://www.w3.org/1999/xhtml\">\n<head>\n"
          "<meta charset=\"utf-8\"/>\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n<title>",
          f);
    html_text(f, title);
    fprintf(f, "</title>\n<style>\n%s</style>\n</head>\n<body>\n", style);
}

void html_end(FILE *f) {
    fprintf(f,
            "<div class=\"footer\">Written by <code>mnist</code> with libcnn %s. This page is "
            "one file: it loads nothing from anywhere else.</div>\n</body>\n</html>\n",
            cnn_version());
}

/* ---- PNG -------------------------------------------------------------------------------- */

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A PNG chunk at p: length, type, body (already at p + 8), CRC. Returns its size. */
static size_t png_chunk(uint8_t *p, const char *type, size_t len) {
    put_be32(p, (uint32_t)len);
    memcpy(p + 4, type, 4);
    put_be32(p + 8 + len, (uint32_t)crc32(crc32(0L, Z_NULL, 0), p + 4, (uInt)(len + 4)));
    return len + 12;
}

/* 8-bit gray (h, w) as a PNG in a new buffer (*len bytes); NULL when out of memory. */
static uint8_t *png_gray(const uint8_t *gray, int w, int h, size_t *len) {
    const size_t raw_len = ((size_t)w + 1) * (size_t)h;
    uint8_t *raw = malloc(raw_len);
    uLongf zlen = compressBound((uLong)raw_len);
    uint8_t *png = malloc(8 + 25 + 12 + zlen + 12);
    if (!raw || !png) goto fail;
    for (int y = 0; y < h; y++) { /* filter type 0 on every row */
        raw[(size_t)y * (w + 1)] = 0;
        memcpy(raw + (size_t)y * (w + 1) + 1, gray + (size_t)y * w, (size_t)w);
    }
    memcpy(png, "\x89PNG\r\n\x1a\n", 8);
    size_t at = 8;
    uint8_t *ihdr = png + at + 8;
    put_be32(ihdr, (uint32_t)w);
    put_be32(ihdr + 4, (uint32_t)h);
    memcpy(ihdr + 8, "\x08\x00\x00\x00\x00", 5); /* 8 bits, gray, deflate, filter 0, no interlace */
    at += png_chunk(png + at, "IHDR", 13);
    if (compress2(png + at + 8, &zlen, raw, (uLong)raw_len, 9) != Z_OK) goto fail;
    at += png_chunk(png + at, "IDAT", zlen);
    at += png_chunk(png + at, "IEND", 0);
    free(raw);
    *len = at;
    return png;
fail:
    free(raw);
    free(png);
    return NULL;
}

static void base64(FILE *f, const uint8_t *p, size_t n) {
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        const uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                           (i + 2 < n ? p[i + 2] : 0);
        fputc(digits[v >> 18 & 63], f);
        fputc(digits[v >> 12 & 63], f);
        fputc(i + 1 < n ? digits[v >> 6 & 63] : '=', f);
        fputc(i + 2 < n ? digits[v & 63] : '=', f);
    }
}

int html_gray_img(FILE *f, const uint8_t *gray, int w, int h, int css_px, const char *alt,
                  const char *title) {
    size_t len;
    uint8_t *png = png_gray(gray, w, h, &len);
    if (!png) return -1;
    /* the long src first: libxml2's HTML parser (xmllint --html) can misread a "/>" right
     * after an attribute longer than its input buffer, so the tag ends with short ones */
    fputs("<img src=\"data:image/png;base64,", f);
    base64(f, png, len);
    const int long_side = w > h ? w : h; /* shown at css_px; the other side in proportion */
    const long css_w = lround((double)css_px * w / long_side);
    const long css_h = lround((double)css_px * h / long_side);
    fprintf(f, "\" class=\"px\" width=\"%ld\" height=\"%ld\" alt=\"", css_w > 0 ? css_w : 1,
            css_h > 0 ? css_h : 1);
    html_text(f, alt);
    if (title) {
        fputs("\" title=\"", f);
        html_text(f, title);
    }
    fputs("\"/>", f);
    free(png);
    return 0;
}

/* ---- charts ----------------------------------------------------------------------------- */

/* The margins of every chart around its plot area, in viewBox units. */
enum { ML = 64, MR = 16, MT = 34, MB = 48 };
#define MAX_TICKS 24

struct ticks {
    double lo, hi;       /* the axis range (log10 of it on a log axis), a little past the ticks */
    double p0, p1;       /* where lo and hi are drawn, in viewBox units */
    double v[MAX_TICKS]; /* tick values, in data units */
    int n, log, si;
    double step; /* linear: the tick spacing */
};

/* Ticks at 1, 2 or 5 times a power of ten, about five of them, covering [mn, mx]. */
static void linear_ticks(double mn, double mx, int integer, struct ticks *t) {
    if (!(mx > mn)) {
        const double d = integer ? 1.0 : (mn != 0 ? fabs(mn) * 0.05 : 1.0);
        mn -= d, mx += d;
    }
    const double raw = (mx - mn) / 5, mag = pow(10, floor(log10(raw))), r = raw / mag;
    double step = (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * mag;
    if (integer && step < 1) step = 1;
    const double lo = floor(mn / step + 1e-9) * step, hi = ceil(mx / step - 1e-9) * step;
    t->n = 0;
    for (int i = 0; t->n < MAX_TICKS && lo + i * step <= hi + step * 1e-6; i++)
        t->v[t->n++] = lo + i * step;
    t->lo = lo, t->hi = hi, t->step = step, t->log = 0;
}

/* Ticks at 1, 2, 5 x 10^k (only powers of ten past three decades), from the last one at or
 * below mn to the first at or above mx. */
static void log_ticks(double mn, double mx, struct ticks *t) {
    if (!(mn > 0)) mn = mx > 0 ? mx / 10 : 1;
    if (!(mx > mn)) mx = mn * 10;
    const int per_decade = log10(mx / mn) > 3 ? 1 : 3;
    static const double mant[3] = {1, 2, 5};
    double cand[3 * 64];
    int nc = 0;
    for (int e = (int)floor(log10(mn)) - 1; e <= (int)ceil(log10(mx)) + 1 && nc < 3 * 63; e++)
        for (int k = 0; k < per_decade; k++) cand[nc++] = mant[k] * pow(10, e);
    int a = 0, b = nc - 1;
    for (int i = 0; i < nc; i++)
        if (cand[i] <= mn * (1 + 1e-9)) a = i;
    for (int i = nc - 1; i >= 0; i--)
        if (cand[i] >= mx * (1 - 1e-9)) b = i;
    if (b - a >= MAX_TICKS) b = a + MAX_TICKS - 1;
    t->n = 0;
    for (int i = a; i <= b; i++) t->v[t->n++] = cand[i];
    t->lo = log10(cand[a]), t->hi = log10(cand[b]), t->log = 1, t->step = 0;
}

/* The smallest and largest finite value on one axis over all series (y: which = 1). */
static int data_range(const struct svg_chart *c, int which, int log, double *mn, double *mx) {
    *mn = INFINITY, *mx = -INFINITY;
    for (int s = 0; s < c->n_series; s++)
        for (int i = 0; i < c->series[s].n; i++) {
            const double v = which ? c->series[s].y[i] : c->series[s].x[i];
            if (!isfinite(v) || (log && v <= 0)) continue;
            if (v < *mn) *mn = v;
            if (v > *mx) *mx = v;
        }
    return *mn <= *mx;
}

/* The ticks of one axis, drawn from p0 to p1; the range reaches 4% past the outer ticks, so no
 * mark sits on the frame. */
static void axis_ticks(const struct svg_chart *c, const struct svg_axis *a, int which, double p0,
                       double p1, struct ticks *t) {
    double mn = 0, mx = 1;
    if (a->lo < a->hi)
        mn = a->lo, mx = a->hi;
    else if (!data_range(c, which, a->log, &mn, &mx))
        mn = a->log ? 1 : 0, mx = a->log ? 10 : 1;
    if (a->log)
        log_ticks(mn, mx, t);
    else
        linear_ticks(mn, mx, a->integer, t);
    const double pad = 0.04 * (t->hi - t->lo);
    t->lo -= pad, t->hi += pad;
    t->p0 = p0, t->p1 = p1, t->si = a->si;
}

/* Where v is drawn on an axis. */
static double pos(const struct ticks *t, double v) {
    const double u = t->log ? log10(v) : v;
    return t->p0 + (u - t->lo) / (t->hi - t->lo) * (t->p1 - t->p0);
}

static void tick_label(const struct ticks *t, double v, char *buf, size_t n) {
    static const char prefix[] = " kMGTPE";
    if (t->si && fabs(v) >= 1000) {
        int p = 0;
        while (fabs(v) >= 1000 && p < 6) v /= 1000, p++;
        snprintf(buf, n, "%g%c", v, prefix[p]);
    } else if (t->log) {
        snprintf(buf, n, "%g", v);
    } else {
        const int dec = t->step >= 1 ? 0 : (int)ceil(-log10(t->step) - 1e-9);
        snprintf(buf, n, "%.*f", dec, fabs(v) < t->step * 1e-6 ? 0.0 : v);
    }
}

static void draw_axes(FILE *f, const struct svg_chart *c, const struct ticks *tx,
                      const struct ticks *ty) {
    char lab[32];
    for (int i = 0; i < ty->n; i++) {
        const double y = pos(ty, ty->v[i]);
        tick_label(ty, ty->v[i], lab, sizeof lab);
        fprintf(f,
                "<line class=\"grid\" x1=\"%.2f\" x2=\"%.2f\" y1=\"%.2f\" y2=\"%.2f\" "
                "stroke=\"#e5e5e5\"/>\n<text class=\"ytick\" data-v=\"%.10g\" x=\"%.2f\" "
                "y=\"%.2f\" text-anchor=\"end\" dominant-baseline=\"middle\">%s</text>\n",
                tx->p0, tx->p1, y, y, ty->v[i], tx->p0 - 6, y, lab);
    }
    for (int i = 0; i < tx->n; i++) {
        const double x = pos(tx, tx->v[i]);
        tick_label(tx, tx->v[i], lab, sizeof lab);
        fprintf(f,
                "<line class=\"grid\" x1=\"%.2f\" x2=\"%.2f\" y1=\"%.2f\" y2=\"%.2f\" "
                "stroke=\"#e5e5e5\"/>\n<text class=\"xtick\" data-v=\"%.10g\" x=\"%.2f\" "
                "y=\"%.2f\" text-anchor=\"middle\">%s</text>\n",
                x, x, ty->p1, ty->p0, tx->v[i], x, ty->p0 + 16, lab);
    }
    fprintf(f,
            "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" "
            "stroke=\"#999\"/>\n",
            tx->p0, ty->p1, tx->p1 - tx->p0, ty->p0 - ty->p1);
    fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">", (tx->p0 + tx->p1) / 2,
            ty->p0 + MB - 12);
    html_textf(f, "%s%s", c->x.label, c->x.log ? " (log scale)" : "");
    fprintf(f,
            "</text>\n<text transform=\"translate(13 %.2f) rotate(-90)\" "
            "text-anchor=\"middle\">",
            (ty->p0 + ty->p1) / 2);
    html_textf(f, "%s%s", c->y.label, c->y.log ? " (log scale)" : "");
    fputs("</text>\n", f);
}

static int plottable(const struct ticks *tx, const struct ticks *ty, double x, double y) {
    return isfinite(x) && isfinite(y) && (!tx->log || x > 0) && (!ty->log || y > 0);
}

/* A point's text label, right of it, or left of it in the right fifth of the plot. */
static void point_label(FILE *f, const struct ticks *tx, double x, double y, const char *text) {
    const int left = x > tx->p1 - 0.2 * (tx->p1 - tx->p0);
    fprintf(f, "<text class=\"label\" x=\"%.2f\" y=\"%.2f\" text-anchor=\"%s\">",
            left ? x - 7 : x + 7, y - 7, left ? "end" : "start");
    html_text(f, text);
    fputs("</text>\n", f);
}

static void draw_series(FILE *f, const struct svg_series *s, const struct ticks *tx,
                        const struct ticks *ty) {
    int drawn = 0;
    for (int i = 0; i < s->n; i++) drawn += plottable(tx, ty, s->x[i], s->y[i]);
    if ((s->style & SVG_LINE) && drawn >= 2) { /* a line of one point would be invisible */
        fputs("<polyline points=\"", f);       /* long: first, as html_gray_img says why */
        for (int i = 0, k = 0; i < s->n; i++)
            if (plottable(tx, ty, s->x[i], s->y[i]))
                fprintf(f, "%s%.2f,%.2f", k++ ? " " : "", pos(tx, s->x[i]), pos(ty, s->y[i]));
        fprintf(f, "\" data-series=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s/>\n",
                s->key, s->colour, s->style & SVG_DASHED ? " stroke-dasharray=\"6 4\"" : "");
    }
    if (!(s->style & (SVG_DOTS | SVG_HOLLOW))) return;
    for (int i = 0; i < s->n; i++) {
        if (!plottable(tx, ty, s->x[i], s->y[i])) continue;
        const double x = pos(tx, s->x[i]), y = pos(ty, s->y[i]);
        fprintf(f,
                "<circle data-series=\"%s\" cx=\"%.2f\" cy=\"%.2f\" r=\"%s\" fill=\"%s\" "
                "stroke=\"%s\" stroke-width=\"2\">",
                s->key, x, y, s->style & SVG_HOLLOW ? "5" : "3.5",
                s->style & SVG_HOLLOW ? "#fff" : s->colour, s->colour);
        if (s->tips) {
            fputs("<title>", f);
            html_text(f, s->tips[i]);
            fputs("</title>", f);
        }
        fputs("</circle>\n", f);
        if (s->labels && s->labels[i]) point_label(f, tx, x, y, s->labels[i]);
    }
}

static void draw_legend(FILE *f, const struct svg_chart *c) {
    double x = ML;
    for (int s = 0; s < c->n_series; s++) {
        const struct svg_series *se = &c->series[s];
        if (se->style & SVG_LINE)
            fprintf(f,
                    "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"16\" y2=\"16\" stroke=\"%s\" "
                    "stroke-width=\"2\"%s/>",
                    x, x + 20, se->colour,
                    se->style & SVG_DASHED ? " stroke-dasharray=\"6 4\"" : "");
        if (se->style & (SVG_DOTS | SVG_HOLLOW))
            fprintf(f,
                    "<circle cx=\"%.1f\" cy=\"16\" r=\"4\" fill=\"%s\" stroke=\"%s\" "
                    "stroke-width=\"2\"/>",
                    x + 10, se->style & SVG_HOLLOW ? "#fff" : se->colour, se->colour);
        fprintf(f, "<text class=\"legend\" x=\"%.1f\" y=\"20\">", x + 26);
        html_text(f, se->name);
        fputs("</text>\n", f);
        x += 40 + 6.5 * (double)strlen(se->name);
    }
}

void svg_chart(FILE *f, const struct svg_chart *c) {
    const int w = c->width > 0 ? c->width : 460, h = c->height > 0 ? c->height : 280;
    struct ticks tx, ty;
    axis_ticks(c, &c->x, 0, ML, w - MR, &tx);
    axis_ticks(c, &c->y, 1, h - MB, MT, &ty);
    fprintf(f,
            "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" "
            "width=\"%d\" height=\"%d\" role=\"img\" aria-label=\"",
            w, h, w, h);
    html_text(f, c->title);
    fputs("\">\n<title>", f);
    html_text(f, c->title);
    fputs("</title>\n", f);
    draw_axes(f, c, &tx, &ty);
    for (int s = 0; s < c->n_series; s++) draw_series(f, &c->series[s], &tx, &ty);
    draw_legend(f, c);
    fputs("</svg>\n", f);
}

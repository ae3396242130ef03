/*
 * html.h - the pieces of the self-contained pages that `mnist report` and `mnist compare`
 * write: escaped text, inline SVG charts and PNG images as data URIs.
 *
 * A page loads nothing from anywhere else: no scripts, fonts or style sheets, so it can be
 * mailed or attached as one file. Every byte of text that comes from outside the program (file
 * names, specs, metadata, class names) goes through html_text or html_textf; the output is
 * pure ASCII (other characters become numeric references), and well-formed XML as well as HTML,
 * so `xmllint --noout` can check it strictly.
 */
#ifndef MNIST_HTML_H
#define MNIST_HTML_H

#include <stdint.h>
#include <stdio.h>

/* s escaped for text and attribute values: & < > " ' as entities; every character past ASCII
 * as &#xHEX;; a control character, or a byte that is not part of valid UTF-8, as U+FFFD. */
void html_text(FILE *f, const char *s);
/* printf, then html_text. Output longer than 4 KB is cut. */
void html_textf(FILE *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The page up to <body>, with the shared style sheet; title is escaped. */
void html_begin(FILE *f, const char *title);
/* The footer line and the end of the page. */
void html_end(FILE *f);

/* <img> of an 8-bit gray image (h, w), as a PNG data URI, its longer side shown css_px long
 * and its pixels kept sharp; alt and title (may be NULL) are escaped. Returns 0, or -1 when out of
 * memory (nothing is written then). */
int html_gray_img(FILE *f, const uint8_t *gray, int w, int h, int css_px, const char *alt,
                  const char *title);

/* Line and scatter charts as inline SVG: a viewBox, axes with ticks and labels, a legend.
 * Every mark carries data-series, and every tick data-v (its value), so tests can check that
 * the coordinates follow the data. */
enum svg_style { SVG_LINE = 1, SVG_DOTS = 2, SVG_HOLLOW = 4, SVG_DASHED = 8 };
struct svg_series {
    const char *name;    /* in the legend */
    const char *key;     /* data-series: [a-z0-9_-] */
    const double *x, *y; /* n points; non-finite ones (or <= 0 on a log axis) are skipped */
    int n;
    const char *colour;        /* "#rrggbb" */
    int style;                 /* svg_style flags */
    const char *const *tips;   /* n hover texts, or NULL */
    const char *const *labels; /* n texts written beside the points, or NULL */
};
struct svg_axis {
    const char *label;
    int log;       /* log10 scale */
    int integer;   /* ticks on whole numbers only */
    int si;        /* tick labels with SI prefixes (10k, 1M, 1G) */
    double lo, hi; /* the range when lo < hi, else from the data */
};
struct svg_chart {
    const char *title; /* the chart's accessible name */
    struct svg_axis x, y;
    const struct svg_series *series;
    int n_series;
    int width, height; /* in CSS pixels; 0: 460 x 280 */
};
void svg_chart(FILE *f, const struct svg_chart *c);

/* The colours of the charts: Okabe-Ito, told apart by colour-blind readers too. */
extern const char *const html_palette[8];

#endif

/*
 * render_glyphs.c - pen drawings that are not digits, and digits drawn the same way, for
 * measuring how often `mnist predict` calls them unsure (bench/unsure_rates,
 * tests/test_predict.sh).
 *
 * Usage: build/tools/render_glyphs OUT_DIR N
 * Writes N drawings of each glyph of tests/render.h (the digits 7, 1 and 4; the letters X, A,
 * H, K, M, W and E) and N scribbles (3 to 6 random strokes), as OUT_DIR/KIND-NAME-III.pgm, and
 * OUT_DIR/kinds.txt ("file kind name" per line, kind digit, letter or scribble). Each is drawn
 * on a 280x280 canvas like the serve page's, at a random size and place, with a pen 6 to 20 px
 * wide; one in four is light on dark. Deterministic: the same arguments give the same files.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn.h"
#include "../tests/render.h"

#define SIDE 280

static int write_pgm(const char *path, const uint8_t *px) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fprintf(f, "P5\n%d %d\n255\n", SIDE, SIDE);
    const int ok = fwrite(px, 1, (size_t)SIDE * SIDE, f) == (size_t)SIDE * SIDE;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* 3..6 strokes joined end to end, anywhere in the unit box. */
static struct glyph scribble(void) {
    struct glyph g = {"scribble", 3 + (int)(4 * unif()), {{0}}};
    double x = unif(), y = unif();
    for (int k = 0; k < g.n; k++) {
        const double nx = unif(), ny = unif();
        g.seg[k][0] = x, g.seg[k][1] = y, g.seg[k][2] = nx, g.seg[k][3] = ny;
        x = nx, y = ny;
    }
    return g;
}

int main(int argc, char **argv) {
    if (argc != 3 || atoi(argv[2]) < 1) {
        fprintf(stderr, "usage: render_glyphs OUT_DIR N\n");
        return 2;
    }
    const char *out = argv[1];
    const int n = atoi(argv[2]), n_glyphs = (int)(sizeof glyphs / sizeof glyphs[0]);
    char path[4096];
    snprintf(path, sizeof path, "%s/kinds.txt", out);
    FILE *kinds = fopen(path, "w");
    if (!kinds) {
        fprintf(stderr, "render_glyphs: cannot write %s\n", path);
        return 1;
    }
    int status = 0;
    for (int gi = 0; gi <= n_glyphs; gi++)
        for (int i = 0; i < n; i++) {
            rng_state = 0x91790000u + (uint64_t)(gi * 1000 + i);
            const struct glyph g = gi < n_glyphs ? glyphs[gi] : scribble();
            const int dark = i % 4 == 3;
            const double bw = 110 + 110 * unif(), bh = 140 + 100 * unif();
            const double bx = (SIDE - bw) * unif(), by = (SIDE - bh) * unif();
            uint8_t *canvas = blank_canvas(SIDE, SIDE, dark);
            draw_glyph(canvas, SIDE, SIDE, &g, bx, by, bw, bh, 6 + 14 * unif(), dark);
            const char *kind = gi == n_glyphs ? "scribble" : g.name[0] <= '9' ? "digit" : "letter";
            snprintf(path, sizeof path, "%s/%s-%s-%03d.pgm", out, kind, g.name, i);
            if (write_pgm(path, canvas) != 0) {
                fprintf(stderr, "render_glyphs: cannot write %s\n", path);
                status = 1;
            } else {
                fprintf(kinds, "%s %s %s\n", path, kind, g.name);
            }
            free(canvas);
        }
    return fclose(kinds) == 0 ? status : 1;
}

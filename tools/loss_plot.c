/* loss_plot.c: the loss curve of a training run as a self-contained SVG:
   training loss per step and validation loss where measured, against the
   step, with labelled axes. Reads the run's loss.csv
   (step,train_loss,val_loss,lr; an empty field where not measured). */
#include "loss_plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double step, train, val; /* NAN where absent */
} row;

static int read_rows(const char *csv, row **out, int *n_out) {
    FILE *f = fopen(csv, "r");
    if (!f) return -1;
    char line[512];
    int n = 0, cap = 256;
    row *r = malloc(sizeof(row) * (size_t)cap);
    if (!r) {
        fclose(f);
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        if (line[0] < '0' || line[0] > '9') continue; /* the header */
        char *p = line, *end;
        row x = {NAN, NAN, NAN};
        x.step = strtod(p, &end);
        if (end == p || *end != ',') continue;
        p = end + 1;
        double v = strtod(p, &end);
        if (end != p) x.train = v;
        if (*end != ',') goto keep;
        p = end + 1;
        v = strtod(p, &end);
        if (end != p) x.val = v;
    keep:
        if (n == cap) {
            row *g = realloc(r, sizeof(row) * (size_t)(cap *= 2));
            if (!g) break;
            r = g;
        }
        r[n++] = x;
    }
    fclose(f);
    *out = r;
    *n_out = n;
    return 0;
}

/* A "nice" tick spacing: 1, 2 or 5 times a power of ten. */
static double tick_step(double span, int want) {
    double raw = span / want, p = pow(10, floor(log10(raw)));
    double m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static void polyline(FILE *f, const row *r, int n, int which, double x0, double x1,
                     double y0, double y1, const char *colour, const char *dash) {
    /* plot area: x 70..600, y 30..330 */
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\"%s points=\"",
            colour, dash);
    for (int i = 0; i < n; i++) {
        double v = which ? r[i].val : r[i].train;
        if (isnan(v)) continue;
        double px = 70 + (r[i].step - x0) / (x1 - x0) * 530;
        double py = 330 - (v - y0) / (y1 - y0) * 300;
        fprintf(f, "%.1f,%.1f ", px, py);
    }
    fprintf(f, "\"/>\n");
}

int loss_plot_svg(const char *csv_path, const char *svg_path, const char *title) {
    row *r = NULL;
    int n = 0;
    if (read_rows(csv_path, &r, &n) != 0) return -1;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int i = 0; i < n; i++) {
        x0 = fmin(x0, r[i].step), x1 = fmax(x1, r[i].step);
        if (!isnan(r[i].train)) y0 = fmin(y0, r[i].train), y1 = fmax(y1, r[i].train);
        if (!isnan(r[i].val)) y0 = fmin(y0, r[i].val), y1 = fmax(y1, r[i].val);
    }
    if (n == 0 || !isfinite(y0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
    if (x1 <= x0) x1 = x0 + 1;
    if (y1 <= y0) y1 = y0 + 1;
    y0 = floor(y0), y1 = ceil(y1);

    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", svg_path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        free(r);
        return -1;
    }
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"380\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n"
               "<rect width=\"640\" height=\"380\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"335\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">%s</text>\n",
            title ? title : "loss");
    double xs = tick_step(x1 - x0, 6), ys = tick_step(y1 - y0, 6);
    for (double v = ceil(y0 / ys) * ys; v <= y1 + 1e-9; v += ys) {
        double py = 330 - (v - y0) / (y1 - y0) * 300;
        fprintf(f, "<line x1=\"70\" x2=\"600\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                   "<text x=\"64\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                py, py, py + 4, v);
    }
    for (double v = ceil(x0 / xs) * xs; v <= x1 + 1e-9; v += xs) {
        double px = 70 + (v - x0) / (x1 - x0) * 530;
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"30\" y2=\"330\" stroke=\"#eee\"/>"
                   "<text x=\"%.1f\" y=\"346\" text-anchor=\"middle\">%g</text>\n",
                px, px, px, v);
    }
    fprintf(f, "<rect x=\"70\" y=\"30\" width=\"530\" height=\"300\" fill=\"none\" stroke=\"#444\"/>\n"
               "<text x=\"335\" y=\"372\" text-anchor=\"middle\">step</text>\n"
               "<text x=\"16\" y=\"180\" text-anchor=\"middle\" transform=\"rotate(-90 16 180)\">"
               "cross-entropy (nats/token)</text>\n");
    polyline(f, r, n, 0, x0, x1, y0, y1, "#1f77b4", "");
    polyline(f, r, n, 1, x0, x1, y0, y1, "#d62728", " stroke-dasharray=\"6 3\"");
    fprintf(f, "<line x1=\"440\" x2=\"470\" y1=\"45\" y2=\"45\" stroke=\"#1f77b4\" stroke-width=\"2\"/>"
               "<text x=\"476\" y=\"49\">train</text>\n"
               "<line x1=\"520\" x2=\"550\" y1=\"45\" y2=\"45\" stroke=\"#d62728\" stroke-width=\"2\" "
               "stroke-dasharray=\"6 3\"/><text x=\"556\" y=\"49\">val</text>\n</svg>\n");
    int bad = ferror(f);
    bad |= fclose(f);
    free(r);
    if (bad || rename(tmp, svg_path) != 0) {
        remove(tmp);
        return -1;
    }
    return 0;
}

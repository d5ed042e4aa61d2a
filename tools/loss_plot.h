/* loss_plot.h: loss.csv -> loss.svg for `gpt2 train`. */
#ifndef GPT2_LOSS_PLOT_H
#define GPT2_LOSS_PLOT_H

/* Writes svg_path (atomically) from csv_path. Returns 0, or -1 when a
   file cannot be read or written. */
int loss_plot_svg(const char *csv_path, const char *svg_path, const char *title);

#endif

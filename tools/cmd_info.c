/* cmd_info.c: `gpt2 info`: what a model is. Its config, how its weights
   are stored, whether it has a tokenizer, and where its parameters are:
   the tutorial's breakdown of GPT-2's 124M (token and position
   embeddings, per block attention, MLP and layer norms, the final layer
   norm), counted tensor by tensor from the model itself. */
#include "cli.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static const char *const CMD = "info";

enum { OPT_JSON = 0x100 };

static void usage(FILE *f) {
    fprintf(f,
"usage: gpt2 info [-m DIR] [--json]\n"
"Prints a model's config, storage (file dtype, memory-mapped or not),\n"
"tokenizer, and parameter count by group: wte, wpe, per block attention\n"
"(c_attn, c_proj), MLP (c_fc, c_proj) and layer norms (ln_1, ln_2), ln_f,\n"
"and the total.\n\n"
"  -m, --model DIR   model directory or llm.c .bin (default: the installed\n"
"                    default model)\n"
"  --json            print one JSON object\n");
    cli_common_help(f, 20);
}

/* Parameter counts by the tutorial's groups; the block groups are summed
   over all blocks. */
typedef enum {
    G_WTE, G_WPE, G_ATTN, G_MLP, G_LN, G_LNF, G_OTHER, G_COUNT
} group;

typedef struct {
    size_t n[G_COUNT];
    size_t total;
} param_counts;

static group classify(const char *name) {
    if (strncmp(name, "transformer.", 12) == 0) name += 12;
    if (strncmp(name, "wte.", 4) == 0) return G_WTE;
    if (strncmp(name, "wpe.", 4) == 0) return G_WPE;
    if (strncmp(name, "ln_f.", 5) == 0) return G_LNF;
    if (strncmp(name, "h.", 2) != 0) return G_OTHER;
    const char *rest = strchr(name + 2, '.'); /* after "h.N" */
    if (!rest) return G_OTHER;
    rest++;
    if (strncmp(rest, "attn.", 5) == 0) return G_ATTN;
    if (strncmp(rest, "mlp.", 4) == 0) return G_MLP;
    if (strncmp(rest, "ln_", 3) == 0) return G_LN;
    return G_OTHER;
}

static int count_params(const gpt2_model *m, param_counts *p) {
    memset(p, 0, sizeof *p);
    int n = gpt2_model_num_tensors(m);
    for (int i = 0; i < n; i++) {
        gpt2_tensor_info t;
        if (gpt2_model_tensor(m, i, &t) != GPT2_OK)
            return cli_lib_error(CMD, "cannot read tensor %d", i);
        p->n[classify(t.name)] += t.numel;
        p->total += t.numel;
    }
    return CLI_OK;
}

/* One line of the parameter table: label on the left, count aligned. */
static void row(const char *label, size_t n) {
    char v[32];
    printf("  %-46s %15s\n", label, cli_fmt_count(n, v));
}

static void print_text(const char *path, const gpt2_model *m,
                       const param_counts *p) {
    const gpt2_config *c = gpt2_model_config(m);
    const gpt2_tokenizer *tok = gpt2_model_tokenizer(m);
    size_t L = (size_t)c->n_layer;
    size_t blocks = p->n[G_ATTN] + p->n[G_MLP] + p->n[G_LN];
    char label[128], v[32];
    printf("model       %s\n", path);
    printf("config      n_layer %d, n_head %d, n_embd %d, n_ctx %d, "
           "vocab_size %d, layer_norm_epsilon %g\n", c->n_layer, c->n_head,
           c->n_embd, c->n_ctx, c->vocab_size, c->layer_norm_epsilon);
    printf("storage     %s, %s\n", gpt2_dtype_name(gpt2_model_file_dtype(m)),
           gpt2_model_is_mapped(m) ? "memory-mapped"
                                   : "in memory (not mapped)");
    printf("weights     matrices %s, %.1f MB in memory (what one decode step "
           "reads)\n", gpt2_dtype_name(gpt2_model_weight_dtype(m)),
           gpt2_model_weight_bytes(m) / 1e6);
    if (tok)
        printf("tokenizer   yes, %d ids\n", gpt2_tokenizer_vocab_size(tok));
    else
        printf("tokenizer   none\n");
    printf("parameters\n");
    snprintf(label, sizeof label, "token embeddings     wte (%d x %d)",
             c->vocab_size, c->n_embd);
    row(label, p->n[G_WTE]);
    snprintf(label, sizeof label, "position embeddings  wpe (%d x %d)",
             c->n_ctx, c->n_embd);
    row(label, p->n[G_WPE]);
    printf("  each block:\n");
    row("  attention    c_attn w+b, c_proj w+b", p->n[G_ATTN] / L);
    row("  MLP          c_fc w+b, c_proj w+b", p->n[G_MLP] / L);
    row("  layer norms  ln_1, ln_2", p->n[G_LN] / L);
    row("  block", blocks / L);
    snprintf(label, sizeof label, "blocks total         %zu x %s", L,
             cli_fmt_count(blocks / L, v));
    row(label, blocks);
    row("final layer norm     ln_f", p->n[G_LNF]);
    if (p->n[G_OTHER]) row("other", p->n[G_OTHER]);
    row("total", p->total);
}

/* A float's shortest decimal (1e-05, not 9.99999974737875e-06), as the
   config.json it came from would say it. */
static double float_as_written(float f) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", f);
    return strtod(buf, NULL);
}

static bool add_num(cJSON *o, const char *name, double v) {
    return cJSON_AddNumberToObject(o, name, v) != NULL;
}

static int print_json(const char *path, const gpt2_model *m,
                      const param_counts *p) {
    const gpt2_config *c = gpt2_model_config(m);
    const gpt2_tokenizer *tok = gpt2_model_tokenizer(m);
    double L = c->n_layer;
    cJSON *j = cJSON_CreateObject(), *cfg = cJSON_CreateObject(),
          *params = cJSON_CreateObject(), *blk = cJSON_CreateObject();
    bool ok = j && cfg && params && blk;
    if (ok) {
        cJSON_AddStringToObject(j, "model", path);
        cJSON_AddItemToObject(j, "config", cfg);
        cJSON_AddItemToObject(j, "params", params);
        cJSON_AddItemToObject(params, "per_block", blk);
    } else {
        cJSON_Delete(cfg);
        cJSON_Delete(params);
        cJSON_Delete(blk);
    }
    ok = ok && cJSON_GetObjectItem(j, "model") &&
         add_num(cfg, "n_layer", c->n_layer) &&
         add_num(cfg, "n_head", c->n_head) &&
         add_num(cfg, "n_embd", c->n_embd) && add_num(cfg, "n_ctx", c->n_ctx) &&
         add_num(cfg, "vocab_size", c->vocab_size) &&
         add_num(cfg, "layer_norm_epsilon",
                 float_as_written(c->layer_norm_epsilon)) &&
         cJSON_AddStringToObject(j, "dtype",
                                 gpt2_dtype_name(gpt2_model_file_dtype(m))) &&
         cJSON_AddBoolToObject(j, "mapped", gpt2_model_is_mapped(m)) &&
         cJSON_AddStringToObject(j, "weight_dtype",
                                 gpt2_dtype_name(gpt2_model_weight_dtype(m))) &&
         add_num(j, "weight_bytes", (double)gpt2_model_weight_bytes(m)) &&
         cJSON_AddBoolToObject(j, "tokenizer", tok != NULL) &&
         add_num(params, "wte", (double)p->n[G_WTE]) &&
         add_num(params, "wpe", (double)p->n[G_WPE]) &&
         add_num(blk, "attention", p->n[G_ATTN] / L) &&
         add_num(blk, "mlp", p->n[G_MLP] / L) &&
         add_num(blk, "layer_norms", p->n[G_LN] / L) &&
         add_num(blk, "total",
                 (double)(p->n[G_ATTN] + p->n[G_MLP] + p->n[G_LN]) / L) &&
         add_num(params, "blocks",
                 (double)(p->n[G_ATTN] + p->n[G_MLP] + p->n[G_LN])) &&
         add_num(params, "ln_f", (double)p->n[G_LNF]) &&
         add_num(params, "other", (double)p->n[G_OTHER]) &&
         add_num(params, "total", (double)p->total);
    char *s = ok ? cJSON_Print(j) : NULL;
    if (s) printf("%s\n", s);
    free(s);
    cJSON_Delete(j);
    return s ? CLI_OK : cli_error(CMD, CLI_FAIL, "out of memory writing JSON");
}

int cmd_info(int argc, char **argv) {
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"model", required_argument, NULL, 'm'},
        {"json", no_argument, NULL, OPT_JSON},
        {NULL, 0, NULL, 0},
    };
    const char *model = NULL;
    bool json = false;
    int c, rc = CLI_OK;
    while (rc == CLI_OK && (c = getopt_long(argc, argv,
                                            CLI_SHORTOPTS_PREFIX "m:", opts,
                                            NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return CLI_OK;
        } else if (c == 'm') {
            model = optarg;
        } else if (c == OPT_JSON) {
            json = true;
        } else {
            rc = cli_common_option(CMD, c, optarg, argv);
        }
    }
    if (rc != CLI_OK) return rc;
    if (optind < argc)
        return cli_usage_error(CMD, "unexpected argument '%s' (name the model "
                                    "with -m)", argv[optind]);
    gpt2_model *m = NULL;
    param_counts p;
    char path[4096];
    if (model) snprintf(path, sizeof path, "%s", model);
    else rc = cli_default_model(CMD, path, sizeof path);
    if (rc == CLI_OK) rc = cli_load_model(CMD, path, false, &m);
    if (rc == CLI_OK) rc = count_params(m, &p);
    if (rc == CLI_OK)
        rc = json ? print_json(path, m, &p) : (print_text(path, m, &p), CLI_OK);
    gpt2_model_free(m);
    return rc;
}

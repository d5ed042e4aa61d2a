/* cmd_quantize.c: `gpt2 quantize -m DIR --type T -o DIR2`: a model
   directory with its weight matrices in a smaller format, for faster
   decode (it reads every weight once per token). The result is still a
   model directory that every gpt2 command loads; its size and what was
   quantized are printed. To measure what it costs in perplexity, run
   `gpt2 eval` on both. */
#include "cli.h"

#include <string.h>

static const char *const CMD = "quantize";

enum { OPT_TYPE = 0x100 };

static void usage(FILE *f) {
    fprintf(f,
"usage: gpt2 quantize -m DIR --type T -o OUT\n"
"Writes the model DIR (or an llm.c .bin) as a model directory OUT whose\n"
"weight matrices (c_attn, attn.c_proj, c_fc, mlp.c_proj and the tied\n"
"wte) are stored as T; position embeddings, biases and layer norms stay\n"
"f32. Decode reads every weight once per token, so smaller is faster.\n\n"
"  -m, --model DIR    the model to quantize\n"
"  --type T           q8_0  8-bit, blocks of 32 with an f16 scale (8.5\n"
"                           bits/weight; perplexity +0.1%% or less)\n"
"                     q4_0  4-bit, blocks of 32 (4.5 bits/weight; wte\n"
"                           stays q8_0); costs more perplexity\n"
"                     f16, bf16, f32 also work (Hugging Face readable)\n"
"  -o, --output OUT   the new model directory (created if missing)\n\n"
"Q8_0 and Q4_0 directories are gpt2c's own (docs/formats.md): Hugging\n"
"Face cannot read them. `gpt2 eval` on DIR and OUT shows the cost.\n");
    cli_common_help(f, 21);
}

typedef struct {
    const char *model, *out;
    bool type_given;
    gpt2_dtype type;
} quantize_options;

static int parse_options(int argc, char **argv, quantize_options *o) {
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"model", required_argument, NULL, 'm'},
        {"type", required_argument, NULL, OPT_TYPE},
        {"output", required_argument, NULL, 'o'},
        {NULL, 0, NULL, 0},
    };
    int c, rc = CLI_OK;
    while (rc == CLI_OK && (c = getopt_long(argc, argv, CLI_SHORTOPTS_PREFIX "m:o:",
                                            opts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return -1;
        } else if (c == 'm') {
            o->model = optarg;
        } else if (c == 'o') {
            o->out = optarg;
        } else if (c == OPT_TYPE) {
            rc = cli_opt_dtype(CMD, optarg, &o->type);
            o->type_given = true;
        } else {
            rc = cli_common_option(CMD, c, optarg, argv);
        }
    }
    if (rc != CLI_OK) return rc;
    if (optind < argc)
        return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (!o->model) return cli_usage_error(CMD, "no model: give -m DIR");
    if (!o->type_given) return cli_usage_error(CMD, "no type: give --type q8_0 or q4_0");
    if (!o->out) return cli_usage_error(CMD, "no output: give -o OUT");
    if (strcmp(o->model, o->out) == 0)
        return cli_usage_error(CMD, "-o must differ from -m (the model is read "
                                    "while OUT is written)");
    return CLI_OK;
}

int cmd_quantize(int argc, char **argv) {
    quantize_options o = {0};
    int rc = parse_options(argc, argv, &o);
    if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;
    gpt2_model *m;
    if ((rc = cli_load_model(CMD, o.model, false, &m)) != CLI_OK) return rc;
    size_t before = gpt2_model_weight_bytes(m);
    gpt2_dtype from = gpt2_model_weight_dtype(m);
    /* a .bin carries no tokenizer; the directory gets GPT-2's */
    char why[512] = "";
    if (!gpt2_model_tokenizer(m)) cli_attach_data_tokenizer(m, why, sizeof why);
    if (gpt2_model_save(m, o.out, o.type) != GPT2_OK) {
        rc = cli_lib_error(CMD, "cannot write '%s'", o.out);
        gpt2_model_free(m);
        return rc;
    }
    gpt2_model_free(m);
    /* read back what was written: the figures are of the real file */
    if (gpt2_model_load(o.out, &m) != GPT2_OK)
        return cli_lib_error(CMD, "wrote '%s' but cannot load it back", o.out);
    size_t after = gpt2_model_weight_bytes(m);
    printf("quantized %s (%s, %.1f MB of weights) -> %s (%s, %.1f MB, %.2fx "
           "smaller)\n", o.model, gpt2_dtype_name(from), before / 1e6, o.out,
           gpt2_dtype_name(gpt2_model_weight_dtype(m)), after / 1e6,
           after ? (double)before / after : 0.0);
    gpt2_model_free(m);
    return CLI_OK;
}

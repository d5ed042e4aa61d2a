/* cmd_init.c: `gpt2 init`: a new model with GPT-2's random initialisation,
   one of the four released shapes or a custom one, written as a Hugging
   Face directory with the installed tokenizer (when its vocabulary fits),
   ready for generate, eval, info and training. */
#include "cli.h"

#include <string.h>

static const char *const CMD = "init";

enum {
    OPT_CONFIG = 0x100, OPT_LAYER, OPT_HEAD, OPT_EMBD, OPT_CTX, OPT_VOCAB,
    OPT_SEED, OPT_DTYPE
};

static void usage(FILE *f) {
    fprintf(f,
"usage: gpt2 init (--config NAME | --n-layer L --n-head H --n-embd C)\n"
"                 [options] -o DIR\n"
"Makes a model with GPT-2's random initialisation (weights N(0, 0.02),\n"
"residual projections scaled by 1/sqrt(2 L), biases 0, layer norms 1 and 0)\n"
"and writes it to DIR as config.json + model.safetensors, with the\n"
"installed tokenizer when the vocabulary holds it.\n\n"
"  --config NAME      a released shape: gpt2 (124M), gpt2-medium (355M),\n"
"                     gpt2-large (774M), gpt2-xl (1.5B)\n"
"  --n-layer L        decoder blocks (custom shape)\n"
"  --n-head H         attention heads; must divide n-embd (custom shape)\n"
"  --n-embd C         model width (custom shape)\n"
"  --n-ctx N          context length, positions in wpe (default 1024)\n"
"  --vocab-size V     rows of wte (default 50257, GPT-2's tokenizer)\n"
"  --seed S           random seed; same seed, same weights (default 0)\n"
"  --dtype D          f32, f16, bf16, q8_0 or q4_0 (default f32)\n"
"  -o, --output DIR   where to write the model (created if missing)\n");
    cli_common_help(f, 21);
}

typedef struct {
    const char *preset, *out;
    int n_layer, n_head, n_embd, n_ctx, vocab_size; /* 0: not given */
    uint64_t seed;
    gpt2_dtype dtype;
} init_options;

static int parse_options(int argc, char **argv, init_options *o) {
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"config", required_argument, NULL, OPT_CONFIG},
        {"n-layer", required_argument, NULL, OPT_LAYER},
        {"n-head", required_argument, NULL, OPT_HEAD},
        {"n-embd", required_argument, NULL, OPT_EMBD},
        {"n-ctx", required_argument, NULL, OPT_CTX},
        {"vocab-size", required_argument, NULL, OPT_VOCAB},
        {"seed", required_argument, NULL, OPT_SEED},
        {"dtype", required_argument, NULL, OPT_DTYPE},
        {"output", required_argument, NULL, 'o'},
        {NULL, 0, NULL, 0},
    };
    int c, rc = CLI_OK;
    while (rc == CLI_OK && (c = getopt_long(argc, argv,
                                            CLI_SHORTOPTS_PREFIX "o:", opts,
                                            NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return -1;
        case 'o': o->out = optarg; break;
        case OPT_CONFIG: o->preset = optarg; break;
        case OPT_LAYER:
            rc = cli_opt_int(CMD, "--n-layer", optarg, 1, 4096, &o->n_layer);
            break;
        case OPT_HEAD:
            rc = cli_opt_int(CMD, "--n-head", optarg, 1, 65536, &o->n_head);
            break;
        case OPT_EMBD:
            rc = cli_opt_int(CMD, "--n-embd", optarg, 1, 65536, &o->n_embd);
            break;
        case OPT_CTX:
            rc = cli_opt_int(CMD, "--n-ctx", optarg, 1, 1 << 20, &o->n_ctx);
            break;
        case OPT_VOCAB:
            rc = cli_opt_int(CMD, "--vocab-size", optarg, 1, 1 << 24,
                             &o->vocab_size);
            break;
        case OPT_SEED: rc = cli_opt_u64(CMD, "--seed", optarg, &o->seed); break;
        case OPT_DTYPE: rc = cli_opt_dtype(CMD, optarg, &o->dtype); break;
        default: rc = cli_common_option(CMD, c, optarg, argv); break;
        }
    }
    if (rc != CLI_OK) return rc;
    if (optind < argc)
        return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (!o->out) return cli_usage_error(CMD, "no output: give -o DIR");
    return CLI_OK;
}

/* The shape from --config or the three custom sizes (not both), with
   --n-ctx / --vocab-size applied to either. */
static int make_config(const init_options *o, gpt2_config *c) {
    bool custom = o->n_layer || o->n_head || o->n_embd;
    if (o->preset && custom)
        return cli_usage_error(CMD, "give --config or --n-layer/--n-head/"
                                    "--n-embd, not both");
    if (o->preset) {
        if (gpt2_config_preset(o->preset, c) != GPT2_OK)
            return cli_bad_value(CMD, "--config", o->preset,
                                 "expected gpt2, gpt2-medium, gpt2-large or "
                                 "gpt2-xl");
    } else if (!custom) {
        return cli_usage_error(CMD, "no shape: give --config NAME or "
                                    "--n-layer, --n-head and --n-embd");
    } else if (!o->n_layer || !o->n_head || !o->n_embd) {
        return cli_usage_error(CMD, "a custom shape needs all of --n-layer, "
                                    "--n-head and --n-embd");
    } else {
        c->n_layer = o->n_layer;
        c->n_head = o->n_head;
        c->n_embd = o->n_embd;
        c->n_ctx = 1024;
        c->vocab_size = 50257;
        c->layer_norm_epsilon = 1e-5f;
    }
    if (o->n_ctx) c->n_ctx = o->n_ctx;
    if (o->vocab_size) c->vocab_size = o->vocab_size;
    if (gpt2_config_check(c) != GPT2_OK)
        return cli_usage_error(CMD, "invalid shape: %s", gpt2_last_error());
    return CLI_OK;
}

int cmd_init(int argc, char **argv) {
    init_options o = {0};
    o.dtype = GPT2_DTYPE_F32;
    gpt2_config c;
    int rc = parse_options(argc, argv, &o);
    if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;
    if ((rc = make_config(&o, &c)) != CLI_OK) return rc;

    gpt2_model *m;
    if (gpt2_model_init(&c, o.seed, &m) != GPT2_OK)
        return cli_lib_error(CMD, "cannot make the model");
    char why[512] = "", count[32];
    bool has_tok = cli_attach_data_tokenizer(m, why, sizeof why);
    if (gpt2_model_save(m, o.out, o.dtype) != GPT2_OK)
        rc = cli_lib_error(CMD, "cannot write the model to '%s'", o.out);
    if (rc == CLI_OK) {
        printf("wrote %s: a GPT-2 of %s parameters (n_layer %d, n_head %d, "
               "n_embd %d, n_ctx %d, vocab_size %d), seed %llu, %s\n",
               o.out, cli_fmt_count(gpt2_model_num_params(m), count),
               c.n_layer, c.n_head, c.n_embd, c.n_ctx, c.vocab_size,
               (unsigned long long)o.seed, gpt2_dtype_name(o.dtype));
        if (has_tok) printf("tokenizer: GPT-2's, attached\n");
        else printf("tokenizer: none (%s)\n", why);
    }
    gpt2_model_free(m);
    return rc;
}

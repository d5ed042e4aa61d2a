/* cmd_convert.c: `gpt2 convert`: between the two checkpoint formats users
   already have. An llm.c .bin becomes a Hugging Face model directory (with
   the installed tokenizer, since .bin files carry none); a model directory
   becomes an llm.c .bin (float32, which is all llm.c reads). */
#include "cli.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

static const char *const CMD = "convert";

enum { OPT_DTYPE = 0x100 };

static void usage(FILE *f) {
    fprintf(f,
"usage: gpt2 convert IN OUT [--dtype f32|f16|bf16|q8_0|q4_0]\n"
"Converts a checkpoint. The direction follows IN and OUT:\n"
"  IN an llm.c checkpoint (.bin)  ->  OUT a model directory (Hugging Face\n"
"                                     layout, with GPT-2's tokenizer)\n"
"  IN a model directory           ->  OUT an llm.c checkpoint (float32)\n"
"                                     when OUT ends in .bin\n"
"  IN a model directory           ->  OUT a model directory in another\n"
"                                     dtype (e.g. a training checkpoint to\n"
"                                     bf16 weights for shipping)\n\n"
"  --dtype D      storage of OUT when it is a model directory: f32, f16,\n"
"                 bf16, q8_0 or q4_0 (default f32; see gpt2 quantize)\n");
    cli_common_help(f, 17);
}

typedef struct {
    const char *in, *out;
    bool dtype_given;
    gpt2_dtype dtype;
} convert_options;

static int parse_options(int argc, char **argv, convert_options *o) {
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"dtype", required_argument, NULL, OPT_DTYPE},
        {NULL, 0, NULL, 0},
    };
    int c, rc = CLI_OK;
    while (rc == CLI_OK && (c = getopt_long(argc, argv, CLI_SHORTOPTS_PREFIX,
                                            opts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return -1;
        } else if (c == OPT_DTYPE) {
            rc = cli_opt_dtype(CMD, optarg, &o->dtype);
            o->dtype_given = true;
        } else {
            rc = cli_common_option(CMD, c, optarg, argv);
        }
    }
    if (rc != CLI_OK) return rc;
    if (argc - optind != 2)
        return cli_usage_error(CMD, "expected IN and OUT (got %d argument%s)",
                               argc - optind, argc - optind == 1 ? "" : "s");
    o->in = argv[optind];
    o->out = argv[optind + 1];
    return CLI_OK;
}

int cmd_convert(int argc, char **argv) {
    convert_options o = {0};
    o.dtype = GPT2_DTYPE_F32;
    int rc = parse_options(argc, argv, &o);
    if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;
    struct stat st;
    if (stat(o.in, &st) != 0)
        return cli_error(CMD, CLI_FAIL, "'%s': %s", o.in, strerror(errno));
    size_t out_len = strlen(o.out);
    bool out_bin = out_len > 4 && strcmp(o.out + out_len - 4, ".bin") == 0;
    bool to_llmc = S_ISDIR(st.st_mode) && out_bin;
    bool dir_to_dir = S_ISDIR(st.st_mode) && !out_bin;
    if (to_llmc && o.dtype_given && o.dtype != GPT2_DTYPE_F32)
        return cli_usage_error(CMD, "--dtype %s: llm.c checkpoints are "
                                    "float32 only",
                               gpt2_dtype_name(o.dtype));

    gpt2_model *m;
    if (gpt2_model_load(o.in, &m) != GPT2_OK)
        return cli_lib_error(CMD, "cannot load '%s'", o.in);
    char why[512] = "", count[32];
    bool has_tok = false;
    if (to_llmc) {
        if (gpt2_model_save_llmc(m, o.out) != GPT2_OK)
            rc = cli_lib_error(CMD, "cannot write '%s'", o.out);
    } else {
        /* a directory keeps its own tokenizer; an llm.c file gets GPT-2's */
        has_tok = gpt2_model_tokenizer(m) != NULL ||
                  cli_attach_data_tokenizer(m, why, sizeof why);
        if (gpt2_model_save(m, o.out, o.dtype) != GPT2_OK)
            rc = cli_lib_error(CMD, "cannot write '%s'", o.out);
    }
    if (rc == CLI_OK) {
        cli_fmt_count(gpt2_model_num_params(m), count);
        if (to_llmc)
            printf("converted model directory %s -> llm.c checkpoint %s "
                   "(F32, %s parameters)\n", o.in, o.out, count);
        else
            printf("converted %s %s -> model directory %s "
                   "(%s, %s parameters; tokenizer: %s%s)\n",
                   dir_to_dir ? "model directory" : "llm.c checkpoint", o.in, o.out,
                   gpt2_dtype_name(o.dtype), count,
                   has_tok ? "GPT-2's" : "none, ", has_tok ? "" : why);
    }
    gpt2_model_free(m);
    return rc;
}

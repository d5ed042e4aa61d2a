/* gpt2.c: the `gpt2` command. Global options (--help, --version,
   --threads), then dispatch to one subcommand per file beside this one
   (cmd_<name>.c). Exit codes: 0 success, 1 runtime error, 2 usage error. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"generate", cmd_generate,
     "continue a prompt, streaming the text as it is made"},
    {"tokenize", cmd_tokenize, "text -> token ids (or id<TAB>piece lines)"},
    {"detokenize", cmd_detokenize, "token ids -> text, byte for byte"},
    {"eval", cmd_eval, "loss and perplexity of a model on a text file"},
    {"score", cmd_score, "the log-probability of every token of a text"},
    {"attention", cmd_attention,
     "attention weights of a text: JSON, HTML page, SVG/PNG heatmap"},
    {"init", cmd_init, "make a model with GPT-2's random initialisation"},
    {"convert", cmd_convert,
     "llm.c .bin -> model directory, or model directory -> llm.c .bin"},
    {"quantize", cmd_quantize,
     "a model with 8-bit or 4-bit weights, for faster decode"},
    {"info", cmd_info, "a model's config, storage and parameter counts"},
    {"bench", cmd_bench, "how fast gpt2c is here, beside the machine's limits"},
    {"prepare", cmd_prepare, "text files -> token shards for training"},
    {"train", cmd_train, "train or fine-tune a model on token shards"},
    {"summarize", cmd_summarize,
     "the GPT-2 paper's zero-shot summary: article + TL;DR:"},
    {"translate", cmd_translate,
     "the GPT-2 paper's few-shot translation from example pairs"},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f,
            "usage: gpt2 [--threads N] <command> [options]\n"
            "GPT-2, whole, in C.\n\n"
            "commands:\n");
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f,
            "\n"
            "global options (also accepted after the command name):\n"
            "  --threads N   threads for the forward pass (default: all "
            "cores)\n"
            "  --version     print the version\n"
            "  -h, --help    show this help\n\n"
            "'gpt2 <command> --help' (or 'gpt2 help <command>') describes a "
            "command.\n"
            "Without -m, commands use the default model ($GPT2C_MODEL, else "
            "models/kjv in the\n"
            "data location: $GPT2C_DATA, the build tree's assets/, or "
            "share/gpt2c when installed).\n");
}

static const command *find_command(const char *name) {
    for (int i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

/* `gpt2 help [command]` */
static int run_help(int argc, char **argv) {
    if (argc < 2) {
        usage(stdout);
        return CLI_OK;
    }
    const command *c = find_command(argv[1]);
    if (!c) {
        fprintf(stderr, "gpt2: unknown command '%s'\n", argv[1]);
        return CLI_USAGE;
    }
    char help[] = "--help";
    char *args[] = {argv[1], help, NULL};
    return c->run(2, args);
}

/* OpenMP's threads spin while they wait for work by default. On a quiet
   machine that saves a few microseconds per parallel region; with another
   busy process on the cores, spinning threads steal the time the working
   ones need and a decode step can take ten times longer. So unless the
   user chose a policy, gpt2 asks for threads that sleep when idle. The
   OpenMP runtime reads the setting when it loads, before main, so the
   command sets it and starts itself again, once. */
static void choose_wait_policy(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    setenv("OMP_WAIT_POLICY", "passive", 1);
    execv("/proc/self/exe", argv); /* on failure, go on as we are */
}

int main(int argc, char **argv) {
    choose_wait_policy(argv);
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int c;
    cli_getopt_reset();
    /* '+': stop at the command name; its options are its own */
    while ((c = getopt_long(argc, argv, "+" CLI_SHORTOPTS_PREFIX, opts,
                            NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return CLI_OK;
        }
        if (c == 'V') {
            printf("gpt2 (gpt2c) %s\n", GPT2_VERSION);
            return CLI_OK;
        }
        int rc = cli_common_option("", c, optarg, argv);
        if (rc != CLI_OK) return rc;
    }
    if (optind >= argc) {
        usage(stderr);
        return CLI_USAGE;
    }
    const char *name = argv[optind];
    if (strcmp(name, "help") == 0)
        return run_help(argc - optind, argv + optind);
    const command *cmd = find_command(name);
    if (!cmd) {
        fprintf(stderr, "gpt2: unknown command '%s'; 'gpt2 --help' lists "
                        "them\n", name);
        return CLI_USAGE;
    }
    int first = optind; /* the reset below clears optind */
    cli_getopt_reset();
    return cmd->run(argc - first, argv + first);
}

/* generate.c: the smallest program that embeds gpt2c. Loads a model,
   continues a prompt by 20 tokens and prints the text as it comes.

     make examples
     build/examples/generate MODEL_DIR "The meaning of life is"
*/
#include <gpt2.h>
#include <stdio.h>

/* Called once per new token; the text is whole UTF-8 characters. */
static int print_step(void *user, const gpt2_step *step) {
    (void)user;
    fwrite(step->text, 1, step->len, stdout);
    fflush(stdout); /* show each token as soon as it is made */
    return 0;       /* non-zero would stop generation */
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL_DIR PROMPT\n", argv[0]);
        return 2;
    }
    gpt2_model *model;
    if (gpt2_model_load(argv[1], &model) != GPT2_OK) {
        fprintf(stderr, "%s\n", gpt2_last_error());
        return 1;
    }
    gpt2_generate_params params = gpt2_generate_defaults();
    params.max_new_tokens = 20;
    params.sampler.seed = 42; /* same seed, same text */
    fputs(argv[2], stdout);
    gpt2_status s = gpt2_generate(model, argv[2], &params, print_step, NULL,
                                  NULL);
    putchar('\n');
    if (s != GPT2_OK) fprintf(stderr, "%s\n", gpt2_last_error());
    gpt2_model_free(model);
    return s == GPT2_OK ? 0 : 1;
}

/* test_generate.c: the generation loop: seeds, the KV cache on and off,
   stop strings, UTF-8 hold-back, stopping from the callback. Uses GPT-2's
   real tokenizer (assets/tokenizer) on a small random model. */
#include "check.h"
#include "internal.h"

#include <stdlib.h>

typedef struct {
    char text[1 << 16];
    size_t len;
    int ids[1024];
    int n_ids;
    int stop_after; /* stop from the callback after this many tokens; 0 never */
    int last_token_minus_one;
} collected;

static int collect(void *user, const gpt2_step *st) {
    collected *c = user;
    memcpy(c->text + c->len, st->text, st->len);
    c->len += st->len;
    if (st->token >= 0) c->ids[c->n_ids++] = st->token;
    else c->last_token_minus_one = 1;
    return c->stop_after && c->n_ids >= c->stop_after;
}

static collected *run(const gpt2_model *m, const gpt2_generate_params *p) {
    collected *c = calloc(1, sizeof *c);
    int n = 0;
    CHECK_OK(gpt2_generate(m, "Hello, world. This is", p, collect, c, &n));
    CHECK(n == c->n_ids);
    return c;
}

int main(void) {
    gpt2_tokenizer *tok;
    if (gpt2_tokenizer_load("assets/tokenizer", &tok) != GPT2_OK) {
        fprintf(stderr, "run from the repository root: %s\n", gpt2_last_error());
        return 1;
    }
    gpt2_config cfg = {.n_layer = 1, .n_head = 2, .n_embd = 32, .n_ctx = 64,
                       .vocab_size = 50257, .layer_norm_epsilon = 1e-5f};
    gpt2_model *m;
    CHECK_OK(gpt2_model_init(&cfg, 3, &m));
    gpt2_model_set_tokenizer(m, tok);

    gpt2_generate_params p = gpt2_generate_defaults();
    p.max_new_tokens = 100; /* past the 64-token context: the window slides */
    p.stop_at_eot = 0;
    p.sampler.seed = 11;
    collected *a = run(m, &p), *b = run(m, &p);
    CHECK(a->n_ids == 100 && b->n_ids == 100);
    CHECK(a->len == b->len && memcmp(a->text, b->text, a->len) == 0);

    /* what was streamed is exactly the decoded ids, byte for byte */
    char *dec = malloc(1 << 16);
    size_t dlen = 0;
    CHECK_OK(gpt2_tokenizer_decode(tok, a->ids, (size_t)a->n_ids, dec, 1 << 16, &dlen));
    CHECK(dlen == a->len && memcmp(dec, a->text, dlen) == 0);

    /* greedy, with and without the KV cache: the same tokens */
    p.sampler.temperature = 0;
    p.max_new_tokens = 30;
    collected *g1 = run(m, &p);
    p.kv_cache = 0;
    collected *g2 = run(m, &p);
    p.kv_cache = 1;
    CHECK(g1->n_ids == g2->n_ids && memcmp(g1->ids, g2->ids, sizeof(int) * g1->n_ids) == 0);

    /* a stop string taken from the middle of the free-running text: the
       output ends right before its first occurrence */
    p.sampler.temperature = 1;
    p.max_new_tokens = 100;
    size_t cut = a->len / 2;
    char stop[8] = {0};
    memcpy(stop, a->text + cut, 4);
    const char *stops[] = {"\x01never\x01", stop, NULL};
    p.stop = stops;
    collected *st = run(m, &p);
    char *first = memmem(a->text, a->len, stop, 4);
    CHECK(first != NULL);
    CHECK(st->len == (size_t)(first - a->text) && memcmp(st->text, a->text, st->len) == 0);
    p.stop = NULL;

    /* the callback stops generation */
    collected *cb = calloc(1, sizeof *cb);
    cb->stop_after = 5;
    int n = 0;
    CHECK_OK(gpt2_generate(m, "Hello", &p, collect, cb, &n));
    CHECK(n == 5 && cb->n_ids == 5);

    /* bad input */
    CHECK(gpt2_generate(m, "", &p, NULL, NULL, NULL) == GPT2_ERR_ARG);
    gpt2_model *bare;
    CHECK_OK(gpt2_model_init(&cfg, 3, &bare));
    CHECK(gpt2_generate(bare, "Hi", &p, NULL, NULL, NULL) == GPT2_ERR_ARG);
    CHECK(strstr(gpt2_last_error(), "tokenizer") != NULL);
    /* without a tokenizer, ids still flow and every step's text is empty */
    collected *ids_only = calloc(1, sizeof *ids_only);
    int one = 464, n_bare = 0;
    p.max_new_tokens = 5;
    CHECK_OK(gpt2_generate_ids(bare, &one, 1, &p, collect, ids_only, &n_bare));
    CHECK(n_bare == 5 && ids_only->n_ids == 5 && ids_only->len == 0);
    free(ids_only);
    p.sampler.top_p = 0;
    CHECK(gpt2_generate(m, "Hi", &p, NULL, NULL, NULL) == GPT2_ERR_ARG);

    free(a), free(b), free(g1), free(g2), free(st), free(cb), free(dec);
    gpt2_model_free(bare);
    gpt2_model_free(m);
    return CHECK_DONE();
}

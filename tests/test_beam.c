/* test_beam.c: beam search against brute force. On small random models
   with a tiny vocabulary every continuation of a few tokens can be scored
   by a full forward pass (gpt2_batch_forward, no KV cache), so where the
   beams are wide enough to be exhaustive the returned sequences must be
   exactly the best by length-penalised joint log-probability, with and
   without an end token (different lengths) and with the n-gram rule.
   Narrow searches (beams dropping out, ends competing for the pool, the
   stopping rules) must match a plain reference written here the way
   Hugging Face's BeamSearchScorer reads. Also: one beam is greedy
   decoding (gpt2_generate_ids at temperature 0), scores are what the
   model gives when the window slides, the step callback stops, results
   are deterministic, and bad parameters fail. */
#include "check.h"
#include "internal.h"

#include <stdlib.h>

/* A model with a vocabulary of V. GPT-2's init (N(0, 0.02)) makes a tiny
   model's next-token distribution nearly uniform, so near-ties would be
   everywhere; larger weights make it peaked and varied, like a trained
   model's (a larger wte alone makes every token predict itself). */
static gpt2_model *tiny_model(int V, int n_ctx, uint64_t seed) {
    gpt2_config c = {.n_layer = 2, .n_head = 2, .n_embd = 16, .n_ctx = n_ctx,
                     .vocab_size = V, .layer_norm_epsilon = 1e-5f};
    gpt2_model *m = NULL;
    CHECK_OK(gpt2_model_init(&c, seed, &m));
    for (int t = 0; m && t < m->n_tensors; t++) {
        float f = t == GPT2__WTE ? 30.0f : m->specs[t].ndim == 2 ? 50.0f : 1.0f;
        for (size_t i = 0; i < m->specs[t].numel; i++) m->tensor[t][i] *= f;
    }
    return m;
}

/* --------------------------------------------------------- brute force */

typedef struct {
    int tok[8];
    int n;
    double logprob, score;
} seqrec;

static int ipow(int b, int e) {
    int r = 1;
    while (e-- > 0) r *= b;
    return r;
}

/* The cumulative log-probabilities of all V^L continuations of the prompt
   by full forward passes: cum[i * (L + 1) + l] is the log-probability of
   the first l tokens of continuation i, whose token l is digit l of i in
   base V (most significant first). */
static double *all_continuations(const gpt2_model *m, const int *prompt, int P,
                                 int L) {
    int V = gpt2_model_config(m)->vocab_size, n = ipow(V, L), T = P + L;
    int B = 64;
    double *cum = calloc((size_t)n * (L + 1), sizeof(double));
    int *toks = malloc(sizeof(int) * (size_t)B * T);
    gpt2_batch *b = NULL;
    CHECK_OK(gpt2_batch_new(m, B, T, &b));
    for (int first = 0; first < n; first += B) {
        for (int r = 0; r < B; r++) {
            int idx = first + r < n ? first + r : n - 1;
            memcpy(toks + r * T, prompt, sizeof(int) * P);
            for (int l = 0; l < L; l++)
                toks[r * T + P + l] = idx / ipow(V, L - 1 - l) % V;
        }
        const float *lg;
        CHECK_OK(gpt2_batch_forward(b, toks, NULL, &lg, NULL));
        for (int r = 0; r < B && first + r < n; r++) {
            double *c = cum + (size_t)(first + r) * (L + 1);
            for (int l = 0; l < L; l++) {
                const float *x = lg + ((size_t)r * T + P + l - 1) * V;
                double mx = x[0], s = 0;
                for (int v = 1; v < V; v++) mx = fmax(mx, x[v]);
                for (int v = 0; v < V; v++) s += exp(x[v] - mx);
                c[l + 1] = c[l] + x[toks[r * T + P + l]] - mx - log(s);
            }
        }
    }
    gpt2_batch_free(b);
    free(toks);
    return cum;
}

/* Does prompt + tok[0..n) hold some n-gram twice? */
static bool repeats_ngram(const int *prompt, int P, const int *tok, int n, int ng) {
    int seq[64], len = 0;
    for (int i = 0; i < P; i++) seq[len++] = prompt[i];
    for (int i = 0; i < n; i++) seq[len++] = tok[i];
    for (int i = 0; i + ng <= len; i++)
        for (int j = i + 1; j + ng <= len; j++)
            if (memcmp(seq + i, seq + j, sizeof(int) * ng) == 0) return true;
    return false;
}

static int by_score_desc(const void *a, const void *b) {
    const seqrec *x = a, *y = b;
    return x->score > y->score ? -1 : x->score < y->score ? 1 : 0;
}

/* Every hypothesis beam search could return after at most L tokens: a
   sequence ending at the first eot (eot < 0: none), or L tokens without
   one; none repeating an ngram (0: any). Sorted best first. */
static seqrec *all_hypotheses(const double *cum, int V, int L, int eot, float lp,
                              const int *prompt, int P, int ngram, int *count) {
    int n = 0;
    size_t cap = (size_t)L;
    for (int l = 0; l < L; l++) cap *= (size_t)V;
    seqrec *out = calloc(cap, sizeof(seqrec));
    for (int len = 1; len <= L; len++)
        for (int i = 0; i < ipow(V, len); i++) {
            seqrec s = {.n = len};
            bool ok = true;
            for (int l = 0; l < len; l++) {
                s.tok[l] = i / ipow(V, len - 1 - l) % V;
                if (s.tok[l] == eot && l < len - 1) ok = false;
            }
            if (!ok || (len < L && s.tok[len - 1] != eot)) continue;
            if (ngram && repeats_ngram(prompt, P, s.tok, len, ngram)) continue;
            int full = i * ipow(V, L - len); /* continued by zeros */
            s.logprob = cum[(size_t)full * (L + 1) + len];
            s.score = s.logprob / pow(len, lp);
            out[n++] = s;
        }
    qsort(out, (size_t)n, sizeof(seqrec), by_score_desc);
    *count = n;
    return out;
}

static bool same_tokens(const gpt2_beam_hyp *h, const seqrec *s) {
    return h->n_tokens == s->n && memcmp(h->tokens, s->tok, sizeof(int) * s->n) == 0;
}

/* The result is the best of want, in order; where two brute-force scores
   are within float noise of each other either order is accepted. */
static void check_best(const gpt2_beam_result *r, const seqrec *want, int n_want,
                       int num_return, const char *what) {
    int expect = num_return < n_want ? num_return : n_want;
    CHECK(r->n == expect);
    int bad = 0;
    for (int i = 0; i < r->n && i < n_want; i++) {
        const gpt2_beam_hyp *h = &r->hyp[i];
        bool ok = same_tokens(h, &want[i]);
        for (int j = 0; j < n_want && !ok; j++)
            ok = same_tokens(h, &want[j]) && fabs(want[j].score - want[i].score) < 1e-4;
        ok &= fabs(h->score - want[i].score) <= 1e-4 * fmax(1, fabs(want[i].score));
        double sum = 0;
        for (int t = 0; t < h->n_tokens; t++) sum += h->logprobs[t];
        ok &= fabs(sum - h->logprob) < 1e-4;
        if (!ok && bad++ < 3)
            fprintf(stderr, "  %s: rank %d: score %.6f, want %.6f\n", what, i,
                    h->score, want[i].score);
    }
    CHECK(bad == 0);
}

/* --------------------------------------------------------- exhaustive */

/* No end token: with N >= V^(L-1) beams every prefix survives until the
   last step, so the N returned are the N best of all V^L sequences. */
static void test_exhaustive_fixed_length(void) {
    int V = 8, L = 3, prompt[] = {1, 5, 2};
    gpt2_model *m = tiny_model(V, 16, 11);
    double *cum = all_continuations(m, prompt, 3, L);
    const float lps[] = {1.0f, 0.0f, 2.0f, -0.5f};
    for (int k = 0; k < 4; k++) {
        gpt2_beam_params p = gpt2_beam_defaults();
        p.num_beams = p.num_return = ipow(V, L - 1);
        p.max_new_tokens = L;
        p.stop_at_eot = 0;
        p.length_penalty = lps[k];
        int n_want;
        seqrec *want = all_hypotheses(cum, V, L, -1, lps[k], prompt, 3, 0, &n_want);
        CHECK(n_want == ipow(V, L));
        gpt2_beam_result *r = NULL;
        CHECK_OK(gpt2_beam_search(m, prompt, 3, &p, NULL, NULL, &r));
        if (r) check_best(r, want, n_want, p.num_return, "fixed length");
        if (r) CHECK(r->n_steps == L);
        gpt2_beam_result_free(r);
        free(want);
    }
    free(cum);
    gpt2_model_free(m);
}

/* Four tokens, V = 7: 343 beams hold every prefix of three. */
static void test_exhaustive_four_tokens(void) {
    int V = 7, L = 4, prompt[] = {3, 3};
    gpt2_model *m = tiny_model(V, 12, 5);
    double *cum = all_continuations(m, prompt, 2, L);
    int n_want;
    seqrec *want = all_hypotheses(cum, V, L, -1, 1.0f, prompt, 2, 0, &n_want);
    gpt2_beam_params p = gpt2_beam_defaults();
    p.num_beams = ipow(V, L - 1);
    p.num_return = 50;
    p.max_new_tokens = L;
    p.stop_at_eot = 0;
    gpt2_beam_result *r = NULL;
    CHECK_OK(gpt2_beam_search(m, prompt, 2, &p, NULL, NULL, &r));
    if (r) check_best(r, want, n_want, p.num_return, "four tokens");
    gpt2_beam_result_free(r);
    free(want);
    free(cum);
    gpt2_model_free(m);
}

/* With an end token, hypotheses have lengths 1..L and the length penalty
   reorders them. N = V^L beams never drop a candidate nor fill the pool
   early, so the search is exhaustive over all of them. */
static void test_exhaustive_with_eot(void) {
    int V = 7, L = 3, eot = 2, prompt[] = {4, 0, 6, 1};
    gpt2_model *m = tiny_model(V, 12, 23);
    double *cum = all_continuations(m, prompt, 4, L);
    const float lps[] = {0.0f, 0.5f, 1.0f, 2.0f, -1.0f};
    int lengths_seen = 0;
    for (int k = 0; k < 5; k++) {
        gpt2_beam_params p = gpt2_beam_defaults();
        p.num_beams = ipow(V, L);
        p.num_return = 25;
        p.max_new_tokens = L;
        p.eot_token = eot;
        p.length_penalty = lps[k];
        int n_want;
        seqrec *want = all_hypotheses(cum, V, L, eot, lps[k], prompt, 4, 0, &n_want);
        CHECK(n_want == 1 + 6 + 36 + 216);
        gpt2_beam_result *r = NULL;
        CHECK_OK(gpt2_beam_search(m, prompt, 4, &p, NULL, NULL, &r));
        if (!r) continue;
        check_best(r, want, n_want, p.num_return, "with eot");
        for (int i = 0; i < r->n; i++) {
            const gpt2_beam_hyp *h = &r->hyp[i];
            CHECK(h->ended_at_eot == (h->tokens[h->n_tokens - 1] == eot));
            lengths_seen |= 1 << h->n_tokens;
        }
        gpt2_beam_result_free(r);
        free(want);
    }
    /* the penalties made both short and long sequences win somewhere */
    CHECK((lengths_seen & 0x2) && (lengths_seen & 0x8));
    free(cum);
    gpt2_model_free(m);
}

/* no_repeat_ngram 2 over a prompt that already holds bigrams: the best
   allowed sequences, by brute force over those without a repeat. */
static void test_exhaustive_no_repeat(void) {
    int V = 8, L = 3, prompt[] = {1, 2, 1, 6};
    gpt2_model *m = tiny_model(V, 16, 31);
    double *cum = all_continuations(m, prompt, 4, L);
    int n_want;
    seqrec *want = all_hypotheses(cum, V, L, -1, 1.0f, prompt, 4, 2, &n_want);
    CHECK(n_want > 64 && n_want < ipow(V, L));
    gpt2_beam_params p = gpt2_beam_defaults();
    p.num_beams = p.num_return = ipow(V, L - 1);
    p.max_new_tokens = L;
    p.stop_at_eot = 0;
    p.no_repeat_ngram = 2;
    gpt2_beam_result *r = NULL;
    CHECK_OK(gpt2_beam_search(m, prompt, 4, &p, NULL, NULL, &r));
    if (r) check_best(r, want, n_want, p.num_return, "no repeat");
    gpt2_beam_result_free(r);
    free(want);
    free(cum);
    gpt2_model_free(m);
}

/* More beams than tokens: the beams grow as distinct sequences appear. */
static void test_more_beams_than_vocab(void) {
    int V = 7, prompt[] = {5};
    gpt2_model *m = tiny_model(V, 12, 2);
    double *cum = all_continuations(m, prompt, 1, 2);
    int n_want;
    seqrec *want = all_hypotheses(cum, V, 2, -1, 1.0f, prompt, 1, 0, &n_want);
    gpt2_beam_params p = gpt2_beam_defaults();
    p.num_beams = p.num_return = 20;
    p.max_new_tokens = 2;
    p.stop_at_eot = 0;
    gpt2_beam_result *r = NULL;
    CHECK_OK(gpt2_beam_search(m, prompt, 1, &p, NULL, NULL, &r));
    if (r) check_best(r, want, n_want, 20, "beams > vocab");
    gpt2_beam_result_free(r);
    /* one token: only V distinct sequences to return */
    p.max_new_tokens = 1;
    CHECK_OK(gpt2_beam_search(m, prompt, 1, &p, NULL, NULL, &r));
    if (r) CHECK(r->n == V);
    gpt2_beam_result_free(r);
    free(want);
    free(cum);
    gpt2_model_free(m);
}

/* ------------------------------------------------------------- greedy */

/* Greedy decoding as gpt2_generate does it: prefill, then the sampler at
   temperature 0 and one decode step per token. (gpt2_generate_ids itself
   is compared below on a model with GPT-2's tokenizer.) */
static void greedy(const gpt2_model *m, const int *prompt, int P, int n, int *ids) {
    gpt2_sampler_params sp = gpt2_sampler_defaults();
    sp.temperature = 0;
    gpt2_sampler *smp = NULL;
    gpt2_session *s = NULL;
    const float *lg = NULL;
    CHECK_OK(gpt2_sampler_new(&sp, gpt2_model_config(m)->vocab_size, &smp));
    CHECK_OK(gpt2_session_new(m, NULL, &s));
    CHECK_OK(gpt2_session_prefill(s, prompt, P, &lg));
    for (int i = 0; i < n; i++) {
        CHECK_OK(gpt2_sampler_sample(smp, lg, NULL, 0, &ids[i], NULL));
        if (i + 1 < n) CHECK_OK(gpt2_session_step(s, ids[i], &lg));
    }
    gpt2_session_free(s);
    gpt2_sampler_free(smp);
}

/* One beam is greedy decoding, also past the context (both slide), and
   with an end token it stops where greedy first takes it. */
static void test_one_beam_is_greedy(void) {
    int V = 9, prompt[] = {1, 2, 3, 4, 5}, ids[30];
    gpt2_model *m = tiny_model(V, 12, 41);
    greedy(m, prompt, 5, 30, ids);
    gpt2_beam_params p = gpt2_beam_defaults();
    p.num_beams = 1;
    p.max_new_tokens = 30;
    p.stop_at_eot = 0;
    gpt2_beam_result *r = NULL;
    CHECK_OK(gpt2_beam_search(m, prompt, 5, &p, NULL, NULL, &r));
    if (r) {
        CHECK(r->n == 1 && r->hyp[0].n_tokens == 30);
        CHECK(memcmp(r->hyp[0].tokens, ids, sizeof(int) * 30) == 0);
    }
    gpt2_beam_result_free(r);

    /* the end token: a token greedy first takes at step k > 0 */
    int k = -1;
    for (int i = 1; i < 30 && k < 0; i++) {
        bool seen = false;
        for (int j = 0; j < i; j++) seen |= ids[j] == ids[i];
        if (!seen) k = i;
    }
    CHECK(k > 0);
    if (k > 0) {
        p.eot_token = ids[k];
        p.stop_at_eot = 1;
        CHECK_OK(gpt2_beam_search(m, prompt, 5, &p, NULL, NULL, &r));
        if (r) {
            CHECK(r->n == 1 && r->hyp[0].n_tokens == k + 1 && r->hyp[0].ended_at_eot);
            CHECK(memcmp(r->hyp[0].tokens, ids, sizeof(int) * (k + 1)) == 0);
        }
        gpt2_beam_result_free(r);
    }

    /* an end token greedy never takes: one beam never ends, even where
       the end is the runner-up (it does not rank among the best N = 1,
       Hugging Face's rule) */
    int absent = -1;
    for (int t = 0; t < V && absent < 0; t++) {
        bool seen = false;
        for (int j = 0; j < 30; j++) seen |= ids[j] == t;
        if (!seen) absent = t;
    }
    CHECK(absent >= 0);
    p.eot_token = absent;
    p.length_penalty = 0.0f; /* a short ending would beat the long one */
    CHECK_OK(gpt2_beam_search(m, prompt, 5, &p, NULL, NULL, &r));
    if (r) CHECK(r->n == 1 && r->hyp[0].n_tokens == 30 && !r->hyp[0].ended_at_eot &&
                 memcmp(r->hyp[0].tokens, ids, sizeof(int) * 30) == 0);
    gpt2_beam_result_free(r);
    gpt2_model_free(m);
}

typedef struct {
    int ids[256];
    float lps[256];
    int n;
} collected;

static int collect(void *user, const gpt2_step *st) {
    collected *c = user;
    if (st->token >= 0) {
        c->lps[c->n] = st->logprob;
        c->ids[c->n++] = st->token;
    }
    return 0;
}

/* With GPT-2's tokenizer (its <|endoftext|> ends a beam) against
   gpt2_generate_ids at temperature 0, past a 32-token context. */
static void test_one_beam_is_generate(void) {
    gpt2_tokenizer *tok = NULL;
    CHECK_OK(gpt2_tokenizer_load("assets/tokenizer", &tok));
    if (!tok) return;
    gpt2_config c = {.n_layer = 1, .n_head = 2, .n_embd = 32, .n_ctx = 32,
                     .vocab_size = 50257, .layer_norm_epsilon = 1e-5f};
    gpt2_model *m = NULL;
    CHECK_OK(gpt2_model_init(&c, 9, &m));
    gpt2_model_set_tokenizer(m, tok);
    int prompt[] = {464, 3290, 286, 1204, 318}; /* "The meaning of life is" */
    gpt2_generate_params g = gpt2_generate_defaults();
    g.sampler.temperature = 0;
    g.max_new_tokens = 40;
    collected *col = calloc(1, sizeof *col);
    CHECK_OK(gpt2_generate_ids(m, prompt, 5, &g, collect, col, NULL));
    gpt2_beam_params p = gpt2_beam_defaults();
    p.num_beams = 1;
    p.max_new_tokens = 40;
    gpt2_beam_result *r = NULL;
    CHECK_OK(gpt2_beam_search(m, prompt, 5, &p, NULL, NULL, &r));
    if (r) {
        /* greedy stops before <|endoftext|>; the beam's hypothesis ends with it */
        const gpt2_beam_hyp *h = &r->hyp[0];
        CHECK(h->n_tokens == col->n + h->ended_at_eot);
        CHECK(!h->ended_at_eot || h->tokens[col->n] == 50256);
        CHECK(memcmp(h->tokens, col->ids, sizeof(int) * col->n) == 0);
        double sum = 0;
        for (int i = 0; i < col->n; i++) sum += col->lps[i];
        if (h->ended_at_eot) sum += h->logprobs[col->n];
        CHECK_NEAR(h->logprob, sum, 1e-4);
    }
    gpt2_beam_result_free(r);
    free(col);
    gpt2_model_free(m);
}

/* ---------------------------------------------------- a plain reference */

/* Beam search written the plain way, as Hugging Face's BeamSearchScorer
   reads: every prefix recomputed by a full forward pass, all candidates
   sorted, the pool a list. No sessions, heaps or slot juggling, so it
   checks those. Needs P + max_new_tokens <= n_ctx. */
typedef struct {
    int tok[32];
    int n;
    double logprob, score;
} ref_hyp;

/* log-softmax of the logits after prompt + tok[0..n) */
static void ref_logprobs(const gpt2_model *m, const int *prompt, int P,
                         const int *tok, int n, double *out) {
    int V = gpt2_model_config(m)->vocab_size, seq[64];
    memcpy(seq, prompt, sizeof(int) * P);
    memcpy(seq + P, tok, sizeof(int) * n);
    gpt2_batch *b = NULL;
    const float *lg = NULL;
    CHECK_OK(gpt2_batch_new(m, 1, P + n, &b));
    CHECK_OK(gpt2_batch_forward(b, seq, NULL, &lg, NULL));
    const float *x = lg + (size_t)(P + n - 1) * V;
    double mx = x[0], z = 0;
    for (int v = 1; v < V; v++) mx = fmax(mx, x[v]);
    for (int v = 0; v < V; v++) z += exp(x[v] - mx);
    for (int v = 0; v < V; v++) out[v] = x[v] - mx - log(z);
    gpt2_batch_free(b);
}

typedef struct {
    double score, lp;
    int beam, token;
} ref_cand;

static int ref_cand_cmp(const void *a, const void *b) {
    const ref_cand *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    if (x->beam != y->beam) return x->beam - y->beam;
    return x->token - y->token;
}

/* Hugging Face's BeamHypotheses.add: keep the N best (a tie keeps the
   earlier one, which is first in the list). */
static void ref_pool_add(ref_hyp *pool, int *n_pool, int N, const ref_hyp *h) {
    if (*n_pool < N) {
        pool[(*n_pool)++] = *h;
        return;
    }
    int worst = 0;
    for (int i = 1; i < N; i++)
        if (pool[i].score <= pool[worst].score) worst = i;
    if (h->score <= pool[worst].score) return;
    for (int i = worst; i + 1 < N; i++) pool[i] = pool[i + 1];
    pool[N - 1] = *h;
}

static double ref_worst(const ref_hyp *pool, int n) {
    double w = pool[0].score;
    for (int i = 1; i < n; i++) w = fmin(w, pool[i].score);
    return w;
}

static int ref_hyp_cmp(const void *a, const void *b) {
    const ref_hyp *x = a, *y = b;
    return x->score > y->score ? -1 : x->score < y->score ? 1 : 0;
}

/* Returns the number of hypotheses written to out (best first). */
static int ref_beam_search(const gpt2_model *m, const int *prompt, int P,
                           const gpt2_beam_params *p, ref_hyp *out) {
    int V = gpt2_model_config(m)->vocab_size, N = p->num_beams, n_pool = 0;
    int eot = p->stop_at_eot ? p->eot_token : -1, n_beams = 1;
    ref_hyp beams[64] = {{.n = 0}}, next[64], pool[64];
    ref_cand *cands = malloc(sizeof(ref_cand) * 64 * V);
    double *lps = malloc(sizeof(double) * V);
    bool done = false;
    for (int step = 0; step < p->max_new_tokens && !done && n_beams > 0; step++) {
        int nc = 0;
        for (int b = 0; b < n_beams; b++) {
            ref_logprobs(m, prompt, P, beams[b].tok, step, lps);
            for (int t = 0; t < V; t++) {
                beams[b].tok[step] = t;
                if (p->no_repeat_ngram &&
                    repeats_ngram(prompt, P, beams[b].tok, step + 1, p->no_repeat_ngram))
                    continue;
                cands[nc++] = (ref_cand){beams[b].logprob + lps[t], lps[t], b, t};
            }
        }
        qsort(cands, nc, sizeof(ref_cand), ref_cand_cmp);
        int nn = 0;
        for (int r = 0; r < nc && r < 2 * N && nn < N; r++) {
            ref_hyp h = beams[cands[r].beam];
            h.tok[step] = cands[r].token;
            h.n = step + 1;
            h.logprob = cands[r].score;
            if (cands[r].token == eot) {
                if (r >= N) continue;
                h.score = h.logprob / pow(h.n, p->length_penalty);
                ref_pool_add(pool, &n_pool, N, &h);
            } else {
                next[nn++] = h;
            }
        }
        done = n_pool == N && (p->early_stopping ||
                               ref_worst(pool, n_pool) >=
                                   cands[0].score / pow(step + 1, p->length_penalty));
        memcpy(beams, next, sizeof(ref_hyp) * nn);
        n_beams = nn;
    }
    for (int b = 0; !done && b < n_beams; b++) {
        beams[b].score = beams[b].logprob / pow(beams[b].n, p->length_penalty);
        ref_pool_add(pool, &n_pool, N, &beams[b]);
    }
    qsort(pool, n_pool, sizeof(ref_hyp), ref_hyp_cmp);
    int n = n_pool < p->num_return ? n_pool : p->num_return;
    memcpy(out, pool, sizeof(ref_hyp) * n);
    free(cands);
    free(lps);
    return n;
}

/* Narrow searches, where beams drop out, ends compete for the pool and
   the stopping rule matters: the same hypotheses as the reference. */
static void test_against_reference(void) {
    int V = 11, prompt[] = {0, 1, 2, 3};
    gpt2_model *m = tiny_model(V, 16, 53);
    const float lps[] = {1.0f, 0.0f, 2.0f, -1.0f};
    int eots[] = {5, 7, 9}, mismatches = 0, runs = 0, ended = 0;
    for (int k = 0; k < 4; k++)
        for (int e = 0; e < 3; e++)
            for (int variant = 0; variant < 4; variant++) {
                gpt2_beam_params p = gpt2_beam_defaults();
                p.num_beams = variant == 3 ? 1 : 3 + variant;
                p.num_return = p.num_beams;
                p.max_new_tokens = 12;
                p.eot_token = eots[e];
                p.length_penalty = lps[k];
                p.early_stopping = variant == 1;
                p.no_repeat_ngram = variant == 2 ? 2 : 0;
                ref_hyp want[64];
                int n_want = ref_beam_search(m, prompt, 4, &p, want);
                gpt2_beam_result *r = NULL;
                CHECK_OK(gpt2_beam_search(m, prompt, 4, &p, NULL, NULL, &r));
                if (!r) continue;
                runs++;
                bool same = r->n == n_want;
                for (int i = 0; same && i < n_want; i++) {
                    const gpt2_beam_hyp *h = &r->hyp[i];
                    same = h->n_tokens == want[i].n &&
                           memcmp(h->tokens, want[i].tok, sizeof(int) * want[i].n) == 0 &&
                           fabs(h->score - want[i].score) <= 1e-4 * fmax(1, fabs(want[i].score));
                    ended += h->ended_at_eot;
                }
                if (!same && mismatches++ < 3)
                    fprintf(stderr, "  reference: lp %g, eot %d, variant %d differ\n",
                            lps[k], eots[e], variant);
                gpt2_beam_result_free(r);
            }
    printf("reference beam search: %d runs, %d differ, %d ended hypotheses\n",
           runs, mismatches, ended);
    CHECK(mismatches == 0 && runs == 48 && ended > 0);
    gpt2_model_free(m);
}

/* -------------------------------------------------------------- narrow */

/* The log-probabilities of tokens after prompt, by a fresh session that
   slides as the beams' did. */
static double replay(const gpt2_model *m, const int *prompt, int P, const int *tok,
                     int n, float *lps) {
    int V = gpt2_model_config(m)->vocab_size;
    gpt2_session *s = NULL;
    const float *lg = NULL;
    double sum = 0;
    CHECK_OK(gpt2_session_new(m, NULL, &s));
    CHECK_OK(gpt2_session_prefill(s, prompt, P, &lg));
    for (int i = 0; i < n; i++) {
        double mx = lg[0], z = 0;
        for (int v = 1; v < V; v++) mx = fmax(mx, lg[v]);
        for (int v = 0; v < V; v++) z += exp(lg[v] - mx);
        lps[i] = (float)(lg[tok[i]] - mx - log(z));
        sum += lps[i];
        if (i + 1 < n) CHECK_OK(gpt2_session_step(s, tok[i], &lg));
    }
    gpt2_session_free(s);
    return sum;
}

/* A few beams over a longer horizon than the context: not exhaustive,
   but sorted, distinct, and each score what the model gives. */
static void test_narrow_search(void) {
    int V = 11, eot = 5, prompt[] = {0, 1, 2, 3, 4, 6};
    gpt2_model *m = tiny_model(V, 12, 53);
    gpt2_beam_params p = gpt2_beam_defaults();
    p.num_beams = 3;
    p.num_return = 3;
    p.max_new_tokens = 20;
    p.eot_token = eot;
    p.length_penalty = 0.7f;
    gpt2_beam_result *r = NULL;
    CHECK_OK(gpt2_beam_search(m, prompt, 6, &p, NULL, NULL, &r));
    if (!r) return;
    CHECK(r->n == 3);
    float lps[64];
    for (int i = 0; i < r->n; i++) {
        const gpt2_beam_hyp *h = &r->hyp[i];
        CHECK(h->n_tokens >= 1 && h->n_tokens <= 20);
        if (i > 0) CHECK(h->score <= r->hyp[i - 1].score);
        if (i > 0) CHECK(h->n_tokens != r->hyp[i - 1].n_tokens ||
                         memcmp(h->tokens, r->hyp[i - 1].tokens,
                                sizeof(int) * h->n_tokens) != 0);
        for (int t = 0; t + 1 < h->n_tokens; t++) CHECK(h->tokens[t] != eot);
        CHECK(h->ended_at_eot == (h->tokens[h->n_tokens - 1] == eot));
        CHECK(h->ended_at_eot || h->n_tokens == 20);
        double want = replay(m, prompt, 6, h->tokens, h->n_tokens, lps);
        CHECK_NEAR(h->logprob, want, 1e-4);
        CHECK_NEAR(h->score, want / pow(h->n_tokens, 0.7), 1e-4);
        for (int t = 0; t < h->n_tokens; t++) CHECK_NEAR(h->logprobs[t], lps[t], 1e-4);
    }
    /* no KV cache: every beam recomputes its window, same result */
    gpt2_beam_result *r2 = NULL;
    p.kv_cache = 0;
    CHECK_OK(gpt2_beam_search(m, prompt, 6, &p, NULL, NULL, &r2));
    if (r2) {
        CHECK(r2->n == r->n);
        for (int i = 0; i < r->n && i < r2->n; i++)
            CHECK(r2->hyp[i].n_tokens == r->hyp[i].n_tokens &&
                  memcmp(r2->hyp[i].tokens, r->hyp[i].tokens,
                         sizeof(int) * r->hyp[i].n_tokens) == 0);
    }
    gpt2_beam_result_free(r2);
    gpt2_beam_result_free(r);
    gpt2_model_free(m);
}

/* n-grams never repeat, whatever n; with n = 1 every token may appear
   once, so 9 tokens minus the prompt's 2 run out after 7 steps. */
static void test_no_repeat_ngram(void) {
    int V = 9, prompt[] = {7, 8};
    gpt2_model *m = tiny_model(V, 32, 61);
    for (int n = 1; n <= 3; n++) {
        gpt2_beam_params p = gpt2_beam_defaults();
        p.num_beams = 4;
        p.num_return = 4;
        p.max_new_tokens = 14;
        p.stop_at_eot = 0;
        p.no_repeat_ngram = n;
        gpt2_beam_result *r = NULL;
        CHECK_OK(gpt2_beam_search(m, prompt, 2, &p, NULL, NULL, &r));
        if (!r) continue;
        CHECK(r->n == 4);
        for (int i = 0; i < r->n; i++) {
            const gpt2_beam_hyp *h = &r->hyp[i];
            CHECK(!repeats_ngram(prompt, 2, h->tokens, h->n_tokens, n));
            CHECK(h->n_tokens == (n == 1 ? 7 : 14));
        }
        gpt2_beam_result_free(r);
    }
    gpt2_model_free(m);
}

/* ------------------------------------------------- callback, stopping */

typedef struct {
    int stop_at;   /* step index to stop after */
    int calls;
    bool ordered;  /* beams were best first with index + 1 tokens each */
} watch;

static int on_step(void *user, const gpt2_beam_step *st) {
    watch *w = user;
    w->calls++;
    for (int b = 1; b < st->n_beams; b++)
        w->ordered &= st->logprobs[b] <= st->logprobs[b - 1];
    w->ordered &= st->n_beams >= 1 && st->tokens[0] != NULL;
    return st->index == w->stop_at;
}

static bool same_result(const gpt2_beam_result *a, const gpt2_beam_result *b) {
    if (a->n != b->n) return false;
    for (int i = 0; i < a->n; i++)
        if (a->hyp[i].n_tokens != b->hyp[i].n_tokens || a->hyp[i].score != b->hyp[i].score ||
            memcmp(a->hyp[i].tokens, b->hyp[i].tokens, sizeof(int) * a->hyp[i].n_tokens))
            return false;
    return true;
}

static void test_callback_and_determinism(void) {
    int V = 10, prompt[] = {2, 9, 4};
    gpt2_model *m = tiny_model(V, 16, 71);
    gpt2_beam_params p = gpt2_beam_defaults();
    p.num_beams = 5;
    p.num_return = 5;
    p.max_new_tokens = 9;
    p.stop_at_eot = 0;
    gpt2_beam_result *a = NULL, *b = NULL, *c = NULL;
    CHECK_OK(gpt2_beam_search(m, prompt, 3, &p, NULL, NULL, &a));
    CHECK_OK(gpt2_beam_search(m, prompt, 3, &p, NULL, NULL, &b));
    CHECK(a && b && same_result(a, b));

    /* stopping after step 3 (4 tokens) is max_new_tokens 4 */
    watch w = {.stop_at = 3, .ordered = true};
    CHECK_OK(gpt2_beam_search(m, prompt, 3, &p, on_step, &w, &c));
    CHECK(w.calls == 4 && w.ordered);
    gpt2_beam_result_free(b);
    p.max_new_tokens = 4;
    CHECK_OK(gpt2_beam_search(m, prompt, 3, &p, NULL, NULL, &b));
    CHECK(b && c && same_result(b, c));
    if (c) CHECK(c->n == 5 && c->hyp[0].n_tokens == 4);

    /* early stopping: once num_beams hypotheses end, the search ends */
    gpt2_beam_result_free(c);
    p.max_new_tokens = 12;
    p.eot_token = a ? a->hyp[0].tokens[1] : 0; /* a likely token */
    p.stop_at_eot = 1;
    p.early_stopping = 1;
    CHECK_OK(gpt2_beam_search(m, prompt, 3, &p, NULL, NULL, &c));
    if (c) {
        CHECK(c->n == 5);
        for (int i = 0; i < c->n; i++) CHECK(c->hyp[i].ended_at_eot);
        CHECK(c->n_steps < 12);
    }
    gpt2_beam_result_free(a);
    gpt2_beam_result_free(b);
    gpt2_beam_result_free(c);
    gpt2_model_free(m);
}

/* ------------------------------------------------------------ bad input */

static void test_bad_params(void) {
    int V = 8, prompt[] = {1, 2}, bad_prompt[] = {1, 8};
    gpt2_model *m = tiny_model(V, 12, 3);
    gpt2_beam_result *r = (gpt2_beam_result *)&r; /* must be reset to NULL */
    gpt2_beam_params ok = gpt2_beam_defaults(), p;
#define BAD(field, value)                                                   \
    do {                                                                    \
        p = ok;                                                             \
        p.field = value;                                                    \
        CHECK(gpt2_beam_search(m, prompt, 2, &p, NULL, NULL, &r) == GPT2_ERR_ARG); \
        CHECK(r == NULL && strstr(gpt2_last_error(), "beam_search") != NULL); \
    } while (0)
    BAD(num_beams, 0);
    BAD(num_beams, GPT2_BEAM_MAX + 1);
    BAD(num_return, 0);
    BAD(num_return, 5); /* > num_beams = 4 */
    BAD(max_new_tokens, -1);
    BAD(length_penalty, NAN);
    BAD(length_penalty, INFINITY);
    BAD(no_repeat_ngram, -1);
    BAD(eot_token, V);
    BAD(eot_token, -2);
#undef BAD
    CHECK(gpt2_beam_search(m, prompt, 0, &ok, NULL, NULL, &r) == GPT2_ERR_ARG);
    CHECK(gpt2_beam_search(m, NULL, 2, &ok, NULL, NULL, &r) == GPT2_ERR_ARG);
    CHECK(gpt2_beam_search(m, bad_prompt, 2, &ok, NULL, NULL, &r) == GPT2_ERR_ARG);
    CHECK(strstr(gpt2_last_error(), "index 1") != NULL);

    /* nothing to generate: one empty hypothesis */
    p = ok;
    p.max_new_tokens = 0;
    p.num_return = 3;
    CHECK_OK(gpt2_beam_search(m, prompt, 2, &p, NULL, NULL, &r));
    if (r) CHECK(r->n == 1 && r->hyp[0].n_tokens == 0 && r->hyp[0].logprob == 0 &&
                 r->hyp[0].score == 0 && r->n_steps == 0);
    gpt2_beam_result_free(r);
    gpt2_beam_result_free(NULL);

    /* a prompt longer than the context is cut to its last n_ctx tokens */
    int longp[20];
    for (int i = 0; i < 20; i++) longp[i] = i % V;
    p = ok;
    p.max_new_tokens = 3;
    p.num_beams = 2;
    CHECK_OK(gpt2_beam_search(m, longp, 20, &p, NULL, NULL, &r));
    gpt2_beam_result *r2 = NULL;
    CHECK_OK(gpt2_beam_search(m, longp + 8, 12, &p, NULL, NULL, &r2));
    CHECK(r && r2 && same_result(r, r2));
    gpt2_beam_result_free(r);
    gpt2_beam_result_free(r2);

    /* defaults for NULL params; a model without tokenizer has no end */
    CHECK_OK(gpt2_beam_search(m, prompt, 2, NULL, NULL, NULL, &r));
    if (r) CHECK(r->n == 1 && r->hyp[0].n_tokens == 64 && !r->hyp[0].ended_at_eot);
    gpt2_beam_result_free(r);
    gpt2_model_free(m);
}

int main(void) {
    test_exhaustive_fixed_length();
    test_exhaustive_four_tokens();
    test_exhaustive_with_eot();
    test_exhaustive_no_repeat();
    test_more_beams_than_vocab();
    test_one_beam_is_greedy();
    test_one_beam_is_generate();
    test_against_reference();
    test_narrow_search();
    test_no_repeat_ngram();
    test_callback_and_determinism();
    test_bad_params();
    return CHECK_DONE();
}

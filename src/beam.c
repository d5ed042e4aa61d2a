/* beam.c: beam search on the KV cache, the tutorial's "sequences by joint
   probability". The rules (which continuations go on, when a hypothesis
   is finished, how it is scored, when the search stops) are Hugging Face
   transformers' BeamSearchScorer, documented in gpt2.h; this file keeps
   the beams' sessions, histories and the pool of finished hypotheses.

   Each live beam owns one session slot. When the beams of the next step
   are chosen, the first child of a beam takes over its parent's slot and
   every further child gets a free slot holding a copy of the parent's
   cache (copied before any parent runs its new token), so a step costs
   one decode per live beam plus one cache copy per extra child. */
#include "internal.h"

#include <math.h>
#include <string.h>

gpt2_beam_params gpt2_beam_defaults(void) {
    gpt2_beam_params p = {.num_beams = 4,
                          .num_return = 1,
                          .max_new_tokens = 64,
                          .length_penalty = 1.0f,
                          .no_repeat_ngram = 0,
                          .early_stopping = 0,
                          .stop_at_eot = 1,
                          .eot_token = -1,
                          .kv_cache = 1};
    return p;
}

/* A live beam. */
typedef struct {
    int slot;        /* its session: search.slot[slot] */
    int parent;      /* the beam of the previous step it continues */
    double logprob;  /* the sum of its tokens' log-probabilities */
    int *tokens;     /* generated ids (a row of a history buffer) */
    float *lps;      /* their log-probabilities */
} beam;

/* A continuation: beam `parent` followed by `token`. */
typedef struct {
    double score;    /* the parent's logprob + lp */
    double lp;       /* the token's log-probability */
    int parent, token;
} cand;

/* A finished hypothesis. */
typedef struct {
    int *tokens;
    float *lps;
    int n, eot;
    double logprob, score;
    long order;      /* when it was added: on equal scores earlier wins */
} hyp;

typedef struct {
    const gpt2_model *m;
    gpt2_beam_params p;
    int V, N, eot;          /* eot: -1 when nothing ends a hypothesis */
    const int *prompt;
    int n_prompt;
    gpt2_session_options so;
    gpt2_session **slot;    /* N, made on demand */
    beam *beams, *next;     /* N each: this step's beams, the next step's */
    int n_beams;
    int *tok_rows[2];       /* N rows of max_new_tokens ids, for beams/next */
    float *lp_rows[2];
    int rows;               /* which of the two rows beams uses */
    cand *top;              /* the best K = 2N continuations, a heap */
    int K, n_top;
    unsigned char *banned;  /* V marks for no_repeat_ngram */
    int *owner;             /* N: the child that took a parent's slot */
    unsigned char *busy;    /* N: slots taken in the next step */
    hyp *pool;              /* N finished, a heap with the worst at 0 */
    int n_pool;
    long n_added;
    const int **step_tokens;/* N, for the step callback */
    double *step_lps;
} search;

/* ------------------------------------------------------------- scoring */

/* Hugging Face's length penalty: logprob / length ^ length_penalty. */
static double length_score(double logprob, int n, float length_penalty) {
    return n > 0 ? logprob / pow((double)n, (double)length_penalty) : logprob;
}

/* The order of candidates: score, then lower beam, then lower token. */
static bool cand_better(const cand *a, const cand *b) {
    if (a->score != b->score) return a->score > b->score;
    if (a->parent != b->parent) return a->parent < b->parent;
    return a->token < b->token;
}

/* The order of hypotheses: score, then the one added first. */
static bool hyp_worse(const hyp *a, const hyp *b) {
    if (a->score != b->score) return a->score < b->score;
    return a->order > b->order;
}

/* ---------------------------------------------- the top continuations */

/* Min-heap of candidates: the worst kept one at top[0]. */
static void cand_sift_down(cand *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && cand_better(&h[w], &h[l])) w = l;
        if (r < n && cand_better(&h[w], &h[r])) w = r;
        if (w == i) return;
        cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

static void cand_sift_up(cand *h, int i) {
    while (i > 0) {
        int up = (i - 1) / 2;
        if (!cand_better(&h[up], &h[i])) return;
        cand t = h[i];
        h[i] = h[up];
        h[up] = t;
        i = up;
    }
}

static void cand_offer(search *s, const cand *c) {
    if (s->n_top < s->K) {
        s->top[s->n_top] = *c;
        cand_sift_up(s->top, s->n_top++);
    } else if (cand_better(c, &s->top[0])) {
        s->top[0] = *c;
        cand_sift_down(s->top, s->n_top, 0);
    }
}

static int cand_cmp_best_first(const void *a, const void *b) {
    return cand_better(a, b) ? -1 : cand_better(b, a) ? 1 : 0;
}

/* The i-th token of beam b's whole sequence: prompt, then generated. */
static int seq_at(const search *s, const beam *b, int i) {
    return i < s->n_prompt ? s->prompt[i] : b->tokens[i - s->n_prompt];
}

/* Marks (value 1) or clears (0) the tokens that would complete an n-gram
   already in beam b's sequence of n_prompt + n_gen tokens, as Hugging
   Face's NoRepeatNGramLogitsProcessor does. */
static void mark_ngram_bans(search *s, const beam *b, int n_gen,
                            unsigned char value) {
    int n = s->p.no_repeat_ngram, len = s->n_prompt + n_gen;
    if (n <= 0 || len + 1 < n) return;
    /* the last n-1 tokens; every earlier n-gram starting with them bans
       the token that followed */
    int from = len - (n - 1);
    for (int i = 0; i + n <= len; i++) {
        int k = 0;
        while (k < n - 1 && seq_at(s, b, i + k) == seq_at(s, b, from + k)) k++;
        if (k == n - 1) s->banned[seq_at(s, b, i + n - 1)] = value;
    }
}

/* Offers every allowed continuation of beam bi to the top-K heap. */
static void offer_beam(search *s, int bi, int n_gen) {
    const beam *b = &s->beams[bi];
    const float *lg = gpt2_session_logits(s->slot[b->slot]);
    int V = s->V;
    float maxv = lg[0];
    for (int t = 1; t < V; t++)
        if (lg[t] > maxv) maxv = lg[t];
    double sum = 0.0;
    for (int t = 0; t < V; t++) sum += exp((double)lg[t] - maxv);
    double lse = maxv + log(sum);
    mark_ngram_bans(s, b, n_gen, 1);
    for (int t = 0; t < V; t++) {
        if (s->banned[t]) continue;
        cand c = {.lp = (double)lg[t] - lse, .parent = bi, .token = t};
        c.score = b->logprob + c.lp;
        if (isfinite(c.score)) cand_offer(s, &c);
    }
    mark_ngram_bans(s, b, n_gen, 0);
}

/* Fills s->top with the best K continuations of all beams, best first. */
static void collect_candidates(search *s, int n_gen) {
    s->n_top = 0;
    for (int b = 0; b < s->n_beams; b++) offer_beam(s, b, n_gen);
    qsort(s->top, (size_t)s->n_top, sizeof(cand), cand_cmp_best_first);
}

/* ------------------------------------------------------------- the pool */

static void hyp_free(hyp *h) {
    free(h->tokens);
    free(h->lps);
}

static void pool_sift_down(hyp *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && hyp_worse(&h[l], &h[w])) w = l;
        if (r < n && hyp_worse(&h[r], &h[w])) w = r;
        if (w == i) return;
        hyp t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

static void pool_sift_up(hyp *h, int i) {
    while (i > 0) {
        int up = (i - 1) / 2;
        if (!hyp_worse(&h[i], &h[up])) return;
        hyp t = h[i];
        h[i] = h[up];
        h[up] = t;
        i = up;
    }
}

/* Adds beam b's n tokens (tokens/lps, then `last` with lp when last >= 0)
   as a finished hypothesis of total log-probability logprob, if it beats
   the worst of a full pool (Hugging Face's BeamHypotheses.add). */
static gpt2_status pool_add(search *s, const beam *b, int n, int last,
                            double lp, double logprob) {
    int len = n + (last >= 0);
    hyp h = {.n = len, .eot = last >= 0, .logprob = logprob,
             .score = length_score(logprob, len, s->p.length_penalty),
             .order = s->n_added++};
    if (s->n_pool == s->N && !hyp_worse(&s->pool[0], &h)) return GPT2_OK;
    /* +1: never a zero-byte allocation for an empty hypothesis */
    h.tokens = gpt2__malloc((size_t)len + 1, sizeof(int), "beam hypothesis");
    h.lps = gpt2__malloc((size_t)len + 1, sizeof(float), "beam hypothesis");
    if (!h.tokens || !h.lps) {
        hyp_free(&h);
        return GPT2_ERR_NOMEM;
    }
    if (n > 0) {
        memcpy(h.tokens, b->tokens, sizeof(int) * (size_t)n);
        memcpy(h.lps, b->lps, sizeof(float) * (size_t)n);
    }
    if (last >= 0) {
        h.tokens[n] = last;
        h.lps[n] = (float)lp;
    }
    if (s->n_pool == s->N) {
        hyp_free(&s->pool[0]);
        s->pool[0] = h;
        pool_sift_down(s->pool, s->n_pool, 0);
    } else {
        s->pool[s->n_pool] = h;
        pool_sift_up(s->pool, s->n_pool++);
    }
    return GPT2_OK;
}

/* Hugging Face's BeamHypotheses.is_done after a step that made n_gen
   tokens, best the score of its best continuation. */
static bool pool_done(const search *s, double best, int n_gen) {
    if (s->n_pool < s->N) return false;
    if (s->p.early_stopping) return true;
    return s->pool[0].score >= length_score(best, n_gen, s->p.length_penalty);
}

/* Every live beam of n_gen tokens joins the pool as it is. */
static gpt2_status finish_live(search *s, int n_gen) {
    gpt2_status st = GPT2_OK;
    for (int b = 0; b < s->n_beams && !st; b++)
        st = pool_add(s, &s->beams[b], n_gen, -1, 0.0, s->beams[b].logprob);
    return st;
}

/* ------------------------------------------------------------ stepping */

/* From this step's ranked candidates: hypotheses that end go to the pool,
   the rest (at most N) become s->next; *n_next receives their count. */
static gpt2_status choose_next(search *s, int n_gen, int *n_next) {
    int nn = 0, row = 1 - s->rows;
    for (int r = 0; r < s->n_top && nn < s->N; r++) {
        const cand *c = &s->top[r];
        const beam *par = &s->beams[c->parent];
        if (c->token == s->eot) {
            /* only an end among the best N counts (Hugging Face) */
            if (r >= s->N) continue;
            gpt2_status st = pool_add(s, par, n_gen, c->token, c->lp, c->score);
            if (st) return st;
            continue;
        }
        beam *b = &s->next[nn];
        size_t off = (size_t)nn * (size_t)s->p.max_new_tokens;
        b->tokens = s->tok_rows[row] + off;
        b->lps = s->lp_rows[row] + off;
        memcpy(b->tokens, par->tokens, sizeof(int) * (size_t)n_gen);
        memcpy(b->lps, par->lps, sizeof(float) * (size_t)n_gen);
        b->tokens[n_gen] = c->token;
        b->lps[n_gen] = (float)c->lp;
        b->logprob = c->score;
        b->parent = c->parent;
        b->slot = -1;
        nn++;
    }
    *n_next = nn;
    return GPT2_OK;
}

/* Gives each of the n_new beams of the next step (nw) a session holding
   its parent's (in old) cache: the first child of a parent takes the
   parent's slot, the others copies in free slots. Copies come first,
   before any parent's session moves on. */
static gpt2_status assign_slots(search *s, const beam *old, int n_old, beam *nw,
                                int n_new) {
    for (int b = 0; b < n_old; b++) s->owner[b] = -1;
    memset(s->busy, 0, (size_t)s->N);
    for (int j = 0; j < n_new; j++) {
        if (s->owner[nw[j].parent] >= 0) continue;
        s->owner[nw[j].parent] = j;
        nw[j].slot = old[nw[j].parent].slot;
        s->busy[nw[j].slot] = 1;
    }
    int f = 0;
    for (int j = 0; j < n_new; j++) {
        if (nw[j].slot >= 0) continue;
        while (f < s->N && s->busy[f]) f++;
        GPT2_ASSERT(f < s->N); /* n_new <= N beams need at most N slots */
        gpt2_status st = GPT2_OK;
        if (!s->slot[f]) st = gpt2_session_new(s->m, &s->so, &s->slot[f]);
        if (!st) st = gpt2_session_copy(s->slot[f], s->slot[old[nw[j].parent].slot]);
        if (st) return st;
        nw[j].slot = f;
        s->busy[f] = 1;
    }
    return GPT2_OK;
}

/* Runs each beam's newest token (its n_gen-th) through its session. */
static gpt2_status run_beams(search *s, const beam *bs, int n, int n_gen) {
    for (int j = 0; j < n; j++) {
        gpt2_status st = gpt2_session_step(s->slot[bs[j].slot], bs[j].tokens[n_gen], NULL);
        if (st) return st;
    }
    return GPT2_OK;
}

static int call_step_fn(search *s, gpt2_beam_step_fn fn, void *user, int index) {
    for (int b = 0; b < s->n_beams; b++) {
        s->step_tokens[b] = s->beams[b].tokens;
        s->step_lps[b] = s->beams[b].logprob;
    }
    gpt2_beam_step info = {.index = index,
                           .n_beams = s->n_beams,
                           .tokens = s->step_tokens,
                           .logprobs = s->step_lps,
                           .n_finished = s->n_pool};
    return fn(user, &info);
}

/* The search proper; *n_steps receives the steps made. */
static gpt2_status run_search(search *s, gpt2_beam_step_fn fn, void *user,
                              int *n_steps) {
    *n_steps = 0;
    gpt2_status st = gpt2_session_new(s->m, &s->so, &s->slot[0]);
    if (!st) st = gpt2_session_prefill(s->slot[0], s->prompt, s->n_prompt, NULL);
    if (st) return st;
    s->beams[0] = (beam){.slot = 0, .parent = -1, .logprob = 0.0,
                         .tokens = s->tok_rows[0], .lps = s->lp_rows[0]};
    s->n_beams = 1;
    s->rows = 0;
    if (s->p.max_new_tokens == 0) return finish_live(s, 0);
    for (int n_gen = 0;; n_gen++) {
        *n_steps = n_gen + 1;
        collect_candidates(s, n_gen);
        if (s->n_top == 0) /* every continuation is banned */
            return finish_live(s, n_gen);
        int n_next;
        if ((st = choose_next(s, n_gen, &n_next))) return st;
        bool done = pool_done(s, s->top[0].score, n_gen + 1);
        /* the next beams become this step's */
        beam *old = s->beams;
        int n_old = s->n_beams;
        s->beams = s->next;
        s->next = old;
        s->n_beams = n_next;
        s->rows = 1 - s->rows;
        if (done || n_next == 0) return GPT2_OK;
        bool stop = fn && call_step_fn(s, fn, user, n_gen);
        if (stop || n_gen + 1 == s->p.max_new_tokens) return finish_live(s, n_gen + 1);
        if ((st = assign_slots(s, old, n_old, s->beams, n_next))) return st;
        if ((st = run_beams(s, s->beams, n_next, n_gen))) return st;
    }
}

/* --------------------------------------------------------------- setup */

static gpt2_status check_params(const gpt2_model *m, const int *prompt,
                                int n_prompt, const gpt2_beam_params *p) {
    int V = m->cfg.vocab_size;
    if (p->num_beams < 1 || p->num_beams > GPT2_BEAM_MAX)
        return gpt2__fail(GPT2_ERR_ARG, "beam_search: num_beams %d outside [1, %d]",
                          p->num_beams, GPT2_BEAM_MAX);
    if (p->num_return < 1 || p->num_return > p->num_beams)
        return gpt2__fail(GPT2_ERR_ARG,
                          "beam_search: num_return %d outside [1, num_beams=%d]",
                          p->num_return, p->num_beams);
    if (p->max_new_tokens < 0)
        return gpt2__fail(GPT2_ERR_ARG, "beam_search: max_new_tokens %d must be >= 0",
                          p->max_new_tokens);
    if (!isfinite(p->length_penalty))
        return gpt2__fail(GPT2_ERR_ARG, "beam_search: length_penalty %g must be finite",
                          p->length_penalty);
    if (p->no_repeat_ngram < 0)
        return gpt2__fail(GPT2_ERR_ARG, "beam_search: no_repeat_ngram %d must be >= 0",
                          p->no_repeat_ngram);
    if (p->eot_token < -1 || p->eot_token >= V)
        return gpt2__fail(GPT2_ERR_ARG,
                          "beam_search: eot_token %d outside [0, %d) (or -1)",
                          p->eot_token, V);
    if (n_prompt < 1 || !prompt)
        return gpt2__fail(GPT2_ERR_ARG, "beam_search: the prompt has no tokens");
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= V)
            return gpt2__fail(GPT2_ERR_ARG,
                              "beam_search: prompt token %d at index %d is outside [0, %d)",
                              prompt[i], i, V);
    return GPT2_OK;
}

static void search_free(search *s) {
    if (s->slot)
        for (int i = 0; i < s->N; i++) gpt2_session_free(s->slot[i]);
    for (int i = 0; i < s->n_pool; i++) hyp_free(&s->pool[i]);
    free(s->slot);
    free(s->beams);
    free(s->next);
    for (int i = 0; i < 2; i++) {
        free(s->tok_rows[i]);
        free(s->lp_rows[i]);
    }
    free(s->top);
    free(s->banned);
    free(s->owner);
    free(s->busy);
    free(s->pool);
    free(s->step_tokens);
    free(s->step_lps);
}

static gpt2_status search_init(search *s, const gpt2_model *m, const int *prompt,
                               int n_prompt, const gpt2_beam_params *p) {
    memset(s, 0, sizeof *s);
    s->m = m;
    s->p = *p;
    s->V = m->cfg.vocab_size;
    s->N = p->num_beams;
    s->K = 2 * p->num_beams;
    s->prompt = prompt;
    s->n_prompt = n_prompt;
    s->eot = -1;
    if (p->stop_at_eot)
        s->eot = p->eot_token >= 0 ? p->eot_token : m->tok ? gpt2_tokenizer_eot(m->tok) : -1;
    s->so = gpt2_session_defaults();
    s->so.kv_cache = p->kv_cache;
    size_t N = (size_t)s->N, rows;
    /* one row per beam, +1 so max_new_tokens 0 allocates something */
    if (!gpt2__mul_ok(N, (size_t)p->max_new_tokens + 1, &rows))
        return gpt2__fail(GPT2_ERR_NOMEM, "beam_search: %d beams x %d tokens is too large",
                          s->N, p->max_new_tokens);
    s->slot = gpt2__calloc(N, sizeof(gpt2_session *), "beam sessions");
    s->beams = gpt2__calloc(N, sizeof(beam), "beams");
    s->next = gpt2__calloc(N, sizeof(beam), "beams");
    for (int i = 0; i < 2; i++) {
        s->tok_rows[i] = gpt2__malloc(rows, sizeof(int), "beam histories");
        s->lp_rows[i] = gpt2__malloc(rows, sizeof(float), "beam histories");
    }
    s->top = gpt2__malloc((size_t)s->K, sizeof(cand), "beam candidates");
    s->banned = gpt2__calloc((size_t)s->V, 1, "beam n-gram bans");
    s->owner = gpt2__malloc(N, sizeof(int), "beam slots");
    s->busy = gpt2__malloc(N, 1, "beam slots");
    s->pool = gpt2__calloc(N, sizeof(hyp), "beam hypotheses");
    s->step_tokens = gpt2__malloc(N, sizeof(int *), "beam step");
    s->step_lps = gpt2__malloc(N, sizeof(double), "beam step");
    if (!s->slot || !s->beams || !s->next || !s->tok_rows[0] || !s->tok_rows[1] ||
        !s->lp_rows[0] || !s->lp_rows[1] || !s->top || !s->banned || !s->owner ||
        !s->busy || !s->pool || !s->step_tokens || !s->step_lps)
        return GPT2_ERR_NOMEM;
    return GPT2_OK;
}

static int hyp_cmp_best_first(const void *a, const void *b) {
    return hyp_worse(b, a) ? -1 : hyp_worse(a, b) ? 1 : 0;
}

/* Moves the best num_return hypotheses of the pool into a new result. */
static gpt2_status take_result(search *s, int n_steps, gpt2_beam_result **out) {
    gpt2_beam_result *r = gpt2__calloc(1, sizeof *r, "beam result");
    int n = s->n_pool < s->p.num_return ? s->n_pool : s->p.num_return;
    if (r) r->hyp = gpt2__calloc((size_t)n + 1, sizeof(gpt2_beam_hyp), "beam result");
    if (!r || !r->hyp) {
        free(r);
        return GPT2_ERR_NOMEM;
    }
    qsort(s->pool, (size_t)s->n_pool, sizeof(hyp), hyp_cmp_best_first);
    for (int i = 0; i < n; i++) {
        hyp *h = &s->pool[i];
        r->hyp[i] = (gpt2_beam_hyp){.tokens = h->tokens, .logprobs = h->lps,
                                    .n_tokens = h->n, .ended_at_eot = h->eot,
                                    .logprob = h->logprob, .score = h->score};
        h->tokens = NULL; /* the result owns them now */
        h->lps = NULL;
    }
    r->n = n;
    r->n_steps = n_steps;
    *out = r;
    return GPT2_OK;
}

gpt2_status gpt2_beam_search(const gpt2_model *m, const int *prompt,
                             int n_prompt, const gpt2_beam_params *p,
                             gpt2_beam_step_fn on_step, void *user,
                             gpt2_beam_result **out) {
    gpt2_beam_params def = gpt2_beam_defaults();
    if (!p) p = &def;
    if (!out) return gpt2__fail(GPT2_ERR_ARG, "beam_search: out is NULL");
    *out = NULL;
    gpt2_status st = check_params(m, prompt, n_prompt, p);
    if (st) return st;
    search s;
    int n_steps = 0;
    st = search_init(&s, m, prompt, n_prompt, p);
    if (!st) st = run_search(&s, on_step, user, &n_steps);
    if (!st) st = take_result(&s, n_steps, out);
    search_free(&s);
    return st;
}

void gpt2_beam_result_free(gpt2_beam_result *r) {
    if (!r) return;
    for (int i = 0; i < r->n; i++) {
        free(r->hyp[i].tokens);
        free(r->hyp[i].logprobs);
    }
    free(r->hyp);
    free(r);
}

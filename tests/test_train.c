/* test_train.c: the whole-model gradient against finite differences of
   the loss, the learning-rate schedule, and a tiny model memorising a
   batch (the loss must fall far). The PyTorch reference test checks the
   same gradients and AdamW steps to 1e-4. */
#include "check.h"
#include "internal.h"

#include <stdlib.h>

int main(void) {
    gpt2_config c = {.n_layer = 2, .n_head = 2, .n_embd = 16, .n_ctx = 8,
                     .vocab_size = 23, .layer_norm_epsilon = 1e-5f};
    gpt2_model *m;
    CHECK_OK(gpt2_model_init(&c, 5, &m));
    gpt2_train_params p = gpt2_train_defaults();
    p.batch_size = 2;
    p.seq_len = 8;
    p.lr = 1e-2f;
    p.warmup_steps = 0;
    p.total_steps = 100;
    p.weight_decay = 0.0f;
    gpt2_trainer *tr;
    CHECK_OK(gpt2_trainer_new(m, &p, &tr));
    int tok[16], tgt[16];
    for (int i = 0; i < 16; i++) tok[i] = (i * 5 + 3) % 23, tgt[i] = (i * 7 + 1) % 23;
    tgt[5] = -1;

    /* gradient vs central differences of the loss, on a sample of
       parameters from every tensor (double-sided, h = 1e-2) */
    float loss;
    CHECK_OK(gpt2_trainer_forward_backward(tr, tok, tgt, 1.0f, &loss));
    float *w = gpt2_trainer_params(tr), *g = gpt2_trainer_grads(tr);
    float *gcopy = malloc(sizeof(float) * gpt2_trainer_num_params(tr));
    memcpy(gcopy, g, sizeof(float) * gpt2_trainer_num_params(tr));
    int bad = 0, tried = 0;
    for (int k = 0; k < gpt2_model_num_tensors(m); k++) {
        gpt2_tensor_info ti;
        gpt2_model_tensor(m, k, &ti);
        size_t off = (size_t)(ti.data - w);
        for (int j = 0; j < 3; j++) {
            size_t i = off + (size_t)((j * 7919 + k * 31) % (int)ti.numel);
            float keep = w[i], h = 1e-2f, lp, lm;
            w[i] = keep + h;
            CHECK_OK(gpt2_trainer_eval(tr, tok, tgt, &lp));
            w[i] = keep - h;
            CHECK_OK(gpt2_trainer_eval(tr, tok, tgt, &lm));
            w[i] = keep;
            double num = ((double)lp - lm) / (2 * h);
            tried++;
            if (fabs(num - gcopy[i]) > 2e-3 + 2e-2 * fabs(gcopy[i])) {
                bad++;
                fprintf(stderr, "%s[%zu]: analytic %.6g numeric %.6g\n", ti.name, i - off,
                        gcopy[i], num);
            }
        }
    }
    CHECK(tried > 80 && bad == 0);
    free(gcopy);

    /* memorise the batch */
    float first = loss, last = loss, norm;
    CHECK_OK(gpt2_trainer_update(tr, p.lr, &norm));
    CHECK(norm > 0);
    for (int s = 1; s < 60; s++) {
        CHECK_OK(gpt2_trainer_forward_backward(tr, tok, tgt, 1.0f, &last));
        CHECK_OK(gpt2_trainer_update(tr, p.lr, NULL));
    }
    printf("loss %.4f -> %.4f after 60 AdamW steps\n", first, last);
    CHECK(first > 2.5f && last < 0.5f * first);
    CHECK(gpt2_trainer_steps_done(tr) == 60);

    /* the schedule: warm-up, cosine, floor */
    gpt2_train_params q = gpt2_train_defaults();
    q.lr = 1.0f, q.min_lr = 0.1f, q.warmup_steps = 10, q.total_steps = 110;
    CHECK_NEAR(gpt2_train_lr(&q, 0), 0.1, 1e-6);
    CHECK_NEAR(gpt2_train_lr(&q, 9), 1.0, 1e-6);
    CHECK_NEAR(gpt2_train_lr(&q, 10), 1.0, 1e-6);
    CHECK_NEAR(gpt2_train_lr(&q, 60), 0.55, 1e-5);
    CHECK_NEAR(gpt2_train_lr(&q, 110), 0.1, 1e-6);
    CHECK_NEAR(gpt2_train_lr(&q, 500), 0.1, 1e-6);

    /* dropout: the gradient of the loss under fixed masks */
    {
        gpt2_model *dm;
        CHECK_OK(gpt2_model_init(&c, 9, &dm));
        gpt2_train_params dp = p;
        dp.dropout = 0.3f;
        gpt2_trainer *dt;
        CHECK_OK(gpt2_trainer_new(dm, &dp, &dt));
        tok[3] = 4;
        float l0, le, l1;
        gpt2_trainer_set_steps_done(dt, 3);
        CHECK_OK(gpt2_trainer_forward_backward(dt, tok, tgt, 1.0f, &l0));
        CHECK_OK(gpt2_trainer_eval(dt, tok, tgt, &le));
        gpt2_trainer_set_steps_done(dt, 3);
        CHECK_OK(gpt2_trainer_forward_backward(dt, tok, tgt, 1.0f, &l1));
        CHECK(l0 == l1 && l0 != le); /* same masks again; eval has none */
        size_t np = gpt2_trainer_num_params(dt);
        float *dw = gpt2_trainer_params(dt), *dg = malloc(sizeof(float) * np);
        memset(gpt2_trainer_grads(dt), 0, sizeof(float) * np);
        gpt2_trainer_set_steps_done(dt, 3);
        CHECK_OK(gpt2_trainer_forward_backward(dt, tok, tgt, 1.0f, &l0));
        memcpy(dg, gpt2_trainer_grads(dt), sizeof(float) * np);
        int dbad = 0;
        for (size_t i = 0; i < np; i += np / 97) {
            float keep = dw[i], h = 1e-2f, lp, lm;
            dw[i] = keep + h;
            gpt2_trainer_set_steps_done(dt, 3);
            CHECK_OK(gpt2_trainer_forward_backward(dt, tok, tgt, 1.0f, &lp));
            dw[i] = keep - h;
            gpt2_trainer_set_steps_done(dt, 3);
            CHECK_OK(gpt2_trainer_forward_backward(dt, tok, tgt, 1.0f, &lm));
            dw[i] = keep;
            double num = ((double)lp - lm) / (2 * h);
            if (fabs(num - dg[i]) > 2e-3 + 2e-2 * fabs(dg[i])) {
                dbad++;
                fprintf(stderr, "dropout grad [%zu]: analytic %.6g numeric %.6g\n", i, dg[i], num);
            }
        }
        CHECK(dbad == 0);
        free(dg);
        gpt2_trainer_free(dt);
        gpt2_model_free(dm);
    }

    /* bf16 matmuls read a bf16 copy of the weights that AdamW keeps up to
       date: after updates, and after writes through gpt2_trainer_params,
       a step's loss must be that of a fresh trainer (whose copy is made
       from the same weights) bit for bit; a stale copy would differ */
    {
        gpt2_model *am, *fm;
        CHECK_OK(gpt2_model_init(&c, 11, &am));
        CHECK_OK(gpt2_model_init(&c, 12, &fm));
        gpt2_train_params bp = p;
        bp.matmul_dtype = GPT2_DTYPE_BF16;
        gpt2_trainer *at, *ft;
        CHECK_OK(gpt2_trainer_new(am, &bp, &at));
        CHECK_OK(gpt2_trainer_new(fm, &bp, &ft));
        size_t np = gpt2_trainer_num_params(at);
        float la, lf;
        int same = 0, rounds = 0;
        const float *aw0 = gpt2_trainer_params(at); /* read only, below */
        for (int s = 0; s < 5; s++, rounds++) {
            if (s == 4) { /* the caller changes the weights */
                float *aw = gpt2_trainer_params(at);
                for (size_t i = 0; i < np; i++) aw[i] *= 0.75f;
            }
            memcpy(gpt2_trainer_params(ft), aw0, sizeof(float) * np);
            CHECK_OK(gpt2_trainer_forward_backward(at, tok, tgt, 1.0f, &la));
            CHECK_OK(gpt2_trainer_forward_backward(ft, tok, tgt, 1.0f, &lf));
            same += la == lf;
            if (la != lf) fprintf(stderr, "bf16 weights, round %d: %.9g against %.9g\n", s, la, lf);
            CHECK_OK(gpt2_trainer_update(at, 1e-2f, NULL));
            memset(gpt2_trainer_grads(ft), 0, sizeof(float) * np);
        }
        CHECK(same == rounds);
        gpt2_trainer_free(at);
        gpt2_trainer_free(ft);
        gpt2_model_free(am);
        gpt2_model_free(fm);
    }

    /* bad input */
    tok[3] = 23;
    CHECK(gpt2_trainer_forward_backward(tr, tok, tgt, 1.0f, &loss) == GPT2_ERR_ARG);
    gpt2_trainer *t2;
    p.seq_len = 9;
    CHECK(gpt2_trainer_new(m, &p, &t2) == GPT2_ERR_ARG);

    gpt2_trainer_free(tr);
    gpt2_model_free(m);
    return CHECK_DONE();
}

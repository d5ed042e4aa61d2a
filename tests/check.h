/* check.h: the unit tests' few macros. Each failure prints file:line and
   what differed; CHECK_DONE() prints a summary and returns the exit code. */
#ifndef GPT2_CHECK_H
#define GPT2_CHECK_H

#include <math.h>
#include <stdio.h>
#include <string.h>

static int check_count, check_failed;

#define CHECK(cond)                                                         \
    do {                                                                    \
        check_count++;                                                      \
        if (!(cond)) {                                                      \
            check_failed++;                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                 \
        }                                                                   \
    } while (0)

/* |a - b| <= tol * max(1, |b|) */
#define CHECK_NEAR(a, b, tol)                                               \
    do {                                                                    \
        double a_ = (a), b_ = (b), t_ = (tol) * fmax(1.0, fabs(b_));        \
        check_count++;                                                      \
        if (!(fabs(a_ - b_) <= t_)) {                                       \
            check_failed++;                                                 \
            fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s = %.9g, %s = %.9g\n", \
                    __FILE__, __LINE__, #a, a_, #b, b_);                    \
        }                                                                   \
    } while (0)

/* A call that must return GPT2_OK; prints gpt2_last_error() otherwise. */
#define CHECK_OK(call)                                                      \
    do {                                                                    \
        int s_ = (call);                                                    \
        check_count++;                                                      \
        if (s_ != 0) {                                                      \
            check_failed++;                                                 \
            fprintf(stderr, "%s:%d: %s returned %d: %s\n", __FILE__,        \
                    __LINE__, #call, s_, gpt2_last_error());                \
        }                                                                   \
    } while (0)

#define CHECK_DONE()                                                        \
    (printf("%s: %d checks, %d failed\n", __FILE__, check_count,            \
            check_failed),                                                  \
     check_failed ? 1 : 0)

#endif

/* sampler.c -- next-token choice with llama2.c run.c's exact semantics, so that the
 * same model, prompt and seed tell the same story: the xorshift64* generator, one
 * coin per sampled token, softmax in run.c's order, and top-p's pre-filter cutoff. */
#include "sb_internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { float prob; int index; } cand;

struct sb_sampler {
    int vocab_size;
    float temperature, topp;
    uint64_t state;
    cand *cands;
    cand *tmp;
    long full_sorts;    /* times the head did not hold the nucleus (tests read it) */
};

int sb_sampler_new(int vocab_size, float temperature, float topp, uint64_t seed,
                   sb_sampler **out, sb_error *err) {
    if (err) { err->code = 0; err->message[0] = 0; }
    if (!out) return sb_fail(err, SB_ERR_ARG, "sb_sampler_new needs an output pointer");
    *out = NULL;
    if (vocab_size <= 0 || vocab_size > SB_MAX_VOCAB) return sb_fail(err, SB_ERR_ARG, "vocab_size %d is out of range", vocab_size);
    if (!(temperature >= 0.0f) || isinf(temperature)) return sb_fail(err, SB_ERR_ARG, "temperature must be 0 or more (got %g)", (double)temperature);
    if (!(topp >= 0.0f && topp <= 1.0f)) return sb_fail(err, SB_ERR_ARG, "top-p must be between 0 and 1 (got %g)", (double)topp);
    struct sb_sampler *s = calloc(1, sizeof *s);
    if (!s) return sb_fail(err, SB_ERR_NOMEM, "out of memory for the sampler");
    s->cands = malloc((size_t)vocab_size * sizeof *s->cands);
    s->tmp = malloc((size_t)vocab_size * sizeof *s->tmp);
    if (!s->cands || !s->tmp) { sb_sampler_free(s); return sb_fail(err, SB_ERR_NOMEM, "out of memory for the sampler"); }
    s->vocab_size = vocab_size;
    s->temperature = temperature;
    s->topp = topp;
    s->state = seed;
    *out = s;
    return SB_OK;
}

void sb_sampler_free(sb_sampler *s) {
    if (!s) return;
    free(s->cands); free(s->tmp); free(s);
}

uint64_t sb_sampler_state(const sb_sampler *s) { return s ? s->state : 0; }

long sb_sampler_full_sorts(const sb_sampler *s) { return s ? s->full_sorts : 0; }

static uint32_t next_u32(uint64_t *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (uint32_t)((*state * 0x2545F4914F6CDD1Dull) >> 32);
}

static float next_f32(uint64_t *state) { return (float)(next_u32(state) >> 8) / 16777216.0f; }

/* Descending by probability; equal probabilities keep index order (stable merge),
 * which is what glibc's merge-sorting qsort gave run.c. */
static void sort_desc(cand *a, cand *tmp, int n) {
    for (int w = 1; w < n; w *= 2) {
        for (int lo = 0; lo < n; lo += 2 * w) {
            int mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int i = lo, j = mid, k = lo;
            while (i < mid && j < hi) tmp[k++] = a[j].prob > a[i].prob ? a[j++] : a[i++];
            while (i < mid) tmp[k++] = a[i++];
            while (j < hi) tmp[k++] = a[j++];
        }
        memcpy(a, tmp, (size_t)n * sizeof *a);
    }
}

/* The vector pre-filter: indices (ascending) of every logit whose p = e / sum may reach
 * pmin, into s->tmp. It keeps e >= pmin * sum less a margin far wider than the rounding
 * of either side, so it drops nothing run.c keeps. */
static int prefilter(struct sb_sampler *s, const float *e, float sum, float pmin, const sb_ops *ops) {
    return ops->collect_ge(e, s->vocab_size, pmin * sum * (1.0f - 1e-6f), (int *)s->tmp);
}

/* Those with p >= pmin (pmin >= run.c's cutoff), p computed and tested as run.c does.
 * p rises with e, so the set is closed under ties: exactly the head of run.c's sorted
 * list down to pmin. */
static int gather(struct sb_sampler *s, const float *e, float sum, float pmin, int k) {
    const int *idx = (const int *)s->tmp;
    int n0 = 0;
    for (int j = 0; j < k; j++) {
        float p = e[idx[j]] / sum;
        if (p >= pmin) { s->cands[n0].prob = p; s->cands[n0].index = idx[j]; n0++; }
    }
    return n0;
}

/* How much more than topp the head's vector-order sum must hold; a test build sets it
 * negative to drive the fall-back. */
#ifndef SB_HEAD_MARGIN
#define SB_HEAD_MARGIN 1e-3f
#endif

static float head_threshold(const float *e, int n, float sum, float topp, float cutoff, const sb_ops *ops) {
    int lo = 0, hi = 0;
    while (hi < 126 && ldexpf(1.0f, -hi) > cutoff) hi++;
    const float want = (topp + SB_HEAD_MARGIN) * sum;
    if (!(ops->sum_ge(e, n, ldexpf(sum, -hi)) > want)) return cutoff;
    while (lo < hi) {   /* smallest k whose head passes */
        int mid = (lo + hi) / 2;
        if (ops->sum_ge(e, n, ldexpf(sum, -mid)) > want) hi = mid; else lo = mid + 1;
    }
    float t = ldexpf(1.0f, -lo);
    return t > cutoff ? t : cutoff;
}

/* Sorting a few hundred candidates costs less than finding the head. */
#define SB_SORT_ALL 256

static int sample_topp(struct sb_sampler *s, const float *e, float sum, float coin, const sb_ops *ops) {
    const float cutoff = (1.0f - s->topp) / (float)(s->vocab_size - 1);
    float pmin = cutoff;
    int k = prefilter(s, e, sum, cutoff, ops);
    if (k > SB_SORT_ALL && (pmin = head_threshold(e, s->vocab_size, sum, s->topp, cutoff, ops)) > cutoff)
        k = prefilter(s, e, sum, pmin, ops);
    for (;;) {
        int m = gather(s, e, sum, pmin, k);
        if (m == 0 && pmin == cutoff) return -1;   /* NaN logits: nothing compares */
        sort_desc(s->cands, s->tmp, m);
        float cum = 0.0f;
        int last = -1;
        for (int i = 0; i < m; i++) {
            cum += s->cands[i].prob;
            if (cum > s->topp) { last = i; break; }
        }
        if (last < 0 && pmin > cutoff) {
            s->full_sorts++;
            pmin = cutoff;
            k = prefilter(s, e, sum, cutoff, ops);
            continue;
        }
        if (last < 0) last = m - 1;   /* the candidates hold less than topp: use them all */
        float r = coin * cum, cdf = 0.0f;
        for (int i = 0; i <= last; i++) {
            cdf += s->cands[i].prob;
            if (r < cdf) return s->cands[i].index;
        }
        return s->cands[last].index;
    }
}

static int argmax(const float *x, int n, const sb_ops *ops) {
    int i = ops->first_ge(x, n, ops->max(x, n));
    return i < n ? i : 0;
}

int sb_sample_ops(sb_sampler *s, float *x, const sb_ops *ops, int exact) {
    if (!s || !x || !ops) return -SB_ERR_ARG;
    int n = s->vocab_size;
    if (s->temperature == 0.0f) return argmax(x, n, ops);
    float sum;
    if (exact) {
        /* run.c: logits / temperature, then softmax with libm's expf, summed in order.
         * Its final division is left to the few values that are read. */
        for (int i = 0; i < n; i++) x[i] /= s->temperature;
        float max = ops->max(x, n);
        sum = 0.0f;
        for (int i = 0; i < n; i++) { x[i] = expf(x[i] - max); sum += x[i]; }
    } else {
        sum = ops->exp_sum(x, n, ops->max(x, n), 1.0f / s->temperature);
    }
    float coin = next_f32(&s->state);
    if (s->topp <= 0.0f || s->topp >= 1.0f) {
        float cdf = 0.0f;
        for (int i = 0; i < n; i++) { cdf += x[i] / sum; if (coin < cdf) return i; }
        return n - 1;
    }
    int t = sample_topp(s, x, sum, coin, ops);
    return t >= 0 ? t : 0;
}

int sb_sample(sb_sampler *s, float *logits) { return sb_sample_ops(s, logits, sb_ops_fast(), 1); }

int sb_sample_with(sb_sampler *smp, const sb_session *s, float *logits) {
    if (!s) return -SB_ERR_ARG;
    return sb_sample_ops(smp, logits, sb_session_ops(s), sb_session_exact(s));
}

int sb_next(sb_session *s, sb_sampler *smp, int token, int pos, int forced) {
    float *logits;
    int rc = sb_forward(s, token, pos, &logits);
    if (rc) return -rc;
    if (forced >= 0) return forced;
    return sb_sample_with(smp, s, logits);
}

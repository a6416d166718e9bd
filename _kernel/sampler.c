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

/* Top-p's candidates, in index order: p = e / sum >= cutoff, as run.c computes p.
 * The vector pass keeps e >= cutoff * sum less a margin far wider than the rounding
 * of either side, so it drops nothing run.c keeps, and p is then computed and tested
 * as run.c does for those few. */
static int gather(struct sb_sampler *s, const float *e, float sum, float cutoff, const sb_ops *ops) {
    int *idx = (int *)s->tmp, n0 = 0;
    int k = ops->collect_ge(e, s->vocab_size, cutoff * sum * (1.0f - 1e-6f), idx);
    for (int j = 0; j < k; j++) {
        float p = e[idx[j]] / sum;
        if (p >= cutoff) { s->cands[n0].prob = p; s->cands[n0].index = idx[j]; n0++; }
    }
    return n0;
}

/* Probabilities with different binary exponents are strictly ordered, so the sorted
 * list is the sorted exponent buckets one after another. The nucleus usually lies in
 * the top few buckets; sorting only those (checked below: the sorted head must itself
 * pass topp, else everything is sorted) gives run.c's order at a fraction of the cost. */
#define SB_BUCKETS 32
static int bucket_of(float p) {
    uint32_t b;
    memcpy(&b, &p, sizeof b);
    int k = 127 - (int)((b >> 23) & 0xff);
    return k < 0 ? 0 : k >= SB_BUCKETS ? SB_BUCKETS - 1 : k;
}

static int head_of(cand *a, int n0, float topp) {
    double sums[SB_BUCKETS] = {0}, acc = 0;
    for (int i = 0; i < n0; i++) sums[bucket_of(a[i].prob)] += a[i].prob;
    int top = SB_BUCKETS - 1;
    for (int b = 0; b < SB_BUCKETS; b++)
        if ((acc += sums[b]) > (double)topp + 1e-3) { top = b; break; }
    if (top == SB_BUCKETS - 1) return n0;
    int m = 0;
    for (int i = 0; i < n0; i++) if (bucket_of(a[i].prob) <= top) a[m++] = a[i];
    return m;
}

static int sample_topp(struct sb_sampler *s, const float *e, float sum, float coin, const sb_ops *ops) {
    const float cutoff = (1.0f - s->topp) / (float)(s->vocab_size - 1);
    int n0 = gather(s, e, sum, cutoff, ops);
    if (n0 == 0) return -1;   /* NaN logits: nothing compares */
    int m = n0 > 64 ? head_of(s->cands, n0, s->topp) : n0;
    for (;;) {
        sort_desc(s->cands, s->tmp, m);
        float cum = 0.0f;
        int last = -1;
        for (int i = 0; i < m; i++) {
            cum += s->cands[i].prob;
            if (cum > s->topp) { last = i; break; }
        }
        if (last < 0 && m < n0) { gather(s, e, sum, cutoff, ops); m = n0; continue; }
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

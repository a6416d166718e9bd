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

static void softmax(float *x, int n) {
    float max = x[0];
    for (int i = 1; i < n; i++) if (x[i] > max) max = x[i];
    float sum = 0.0f;
    for (int i = 0; i < n; i++) { x[i] = expf(x[i] - max); sum += x[i]; }
    for (int i = 0; i < n; i++) x[i] /= sum;
}

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

static int sample_topp(struct sb_sampler *s, const float *p, float coin) {
    int n = s->vocab_size, n0 = 0;
    /* tokens below this cannot be in the nucleus; dropping them first keeps the sort short */
    const float cutoff = (1.0f - s->topp) / (float)(n - 1);
    for (int i = 0; i < n; i++)
        if (p[i] >= cutoff) { s->cands[n0].index = i; s->cands[n0].prob = p[i]; n0++; }
    sort_desc(s->cands, s->tmp, n0);
    float cum = 0.0f;
    int last = n0 - 1;
    for (int i = 0; i < n0; i++) {
        cum += s->cands[i].prob;
        if (cum > s->topp) { last = i; break; }
    }
    float r = coin * cum, cdf = 0.0f;
    for (int i = 0; i <= last; i++) {
        cdf += s->cands[i].prob;
        if (r < cdf) return s->cands[i].index;
    }
    return s->cands[last].index;
}

int sb_sample(sb_sampler *s, float *logits) {
    if (!s || !logits) return -SB_ERR_ARG;
    int n = s->vocab_size;
    if (s->temperature == 0.0f) {
        int best = 0;
        float bp = logits[0];
        for (int i = 1; i < n; i++) if (logits[i] > bp) { bp = logits[i]; best = i; }
        return best;
    }
    for (int i = 0; i < n; i++) logits[i] /= s->temperature;
    softmax(logits, n);
    float coin = next_f32(&s->state);
    if (s->topp <= 0.0f || s->topp >= 1.0f) {
        float cdf = 0.0f;
        for (int i = 0; i < n; i++) { cdf += logits[i]; if (coin < cdf) return i; }
        return n - 1;
    }
    return sample_topp(s, logits, coin);
}

/* ktest -- the kernel's ops tables tested op by op, below the public API: the fast
 * table (portable C or RVV, whichever this build has) against the naive one on
 * seeded random data, over shapes that reach every edge (partial row blocks, group
 * tails, 4-bit groups wider than 32, llama2.c row-major groups of 4..64).
 *
 *   ktest            correctness; exit 1 on any disagreement
 *   ktest --profile  one call of each op at the stories15M shapes, each between the
 *                    rvcount markers (RISC-V), with a "roi N: op" line on stdout
 *
 * Integer sums are exact and the float steps of the quantised kernels come in the same
 * order everywhere, so quantised matrix products must match bit for bit; fp32 sums
 * are reordered by the vector code and get a tolerance. */
#include "sb_internal.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roi.h"

static unsigned long long rng = 88172645463325252ULL;
static float frand(void) { /* xorshift64, uniform [-1, 1) */
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) { fprintf(stderr, "ktest: out of memory\n"); exit(2); }
    return p;
}

/* A random quantised matrix: row-major int8 (llama2.c), or SBQ1 blocks of q8/q4. */
static sb_tensor make_tensor(int type, int blocked, int rows, int cols, int gs) {
    sb_tensor t = {type, rows, cols, gs, blocked, NULL, NULL};
    size_t groups = (size_t)rows * cols / gs, vbytes = type == SB_W_Q4 ? (size_t)rows * cols / 2 : (size_t)rows * cols;
    unsigned char *b = xmalloc(vbytes + groups * 4);
    if (!blocked) {
        for (size_t i = 0; i < vbytes; i++) b[i] = i % 89 ? (unsigned char)(int8_t)lrintf(frand() * 127.0f) : 0x80;
        float *s = (float *)(b + vbytes);
        for (size_t g = 0; g < groups; g++) s[g] = 0.001f + 0.01f * fabsf(frand());
        t.q = b; t.s = s;
        return t;
    }
    /* blocks: scales [group][row] then values; fill each block in place */
    unsigned char *p = b;
    for (int r0 = 0; r0 < rows; r0 += SB_RB) {
        int rr = rows - r0 < SB_RB ? rows - r0 : SB_RB;
        float *s = (float *)p;
        for (int i = 0; i < rr * (cols / gs); i++) s[i] = 0.001f + 0.01f * fabsf(frand());
        unsigned char *v = p + (size_t)rr * (cols / gs) * 4;
        size_t nv = (size_t)rr * (type == SB_W_Q4 ? cols / 2 : cols);
        for (size_t i = 0; i < nv; i++) {
            float r = frand();
            v[i] = type == SB_W_Q4 ? (unsigned char)(rng >> 20) : (unsigned char)(int8_t)lrintf(r * 127.0f);
            if (type == SB_W_Q8 && i % 97 == 0) v[i] = 0x80; /* -128: a file may hold it */
        }
        p += sb_block_bytes(&t, rr);
    }
    t.q = b;
    return t;
}

static sb_qact make_qact(int n, int gs) {
    sb_qact a = {n, gs, xmalloc((size_t)n), xmalloc((size_t)n * 4), xmalloc((size_t)n * 4),
                 xmalloc((size_t)n * 2), xmalloc((size_t)n * 4), xmalloc((size_t)n * SB_RB)};
    return a;
}

static void free_qact(sb_qact *a) { free(a->q); free(a->s); free(a->sum); free(a->q16); free(a->s16); free(a->bcast); }

static int failures;

static void check(int ok, const char *what) {
    if (!ok) { failures++; printf("FAIL %s\n", what); }
}

static float *rand_vec(int n, float scale) {
    float *v = xmalloc((size_t)n * 4);
    for (int i = 0; i < n; i++) v[i] = frand() * scale;
    return v;
}

static void test_quantize(const sb_ops *f, int n, int gs) {
    float *v = rand_vec(n, 3.0f);
    if (n > 3) v[3] = 0.0f, v[1] = -v[2]; /* exact zeros and ties of magnitude */
    sb_qact a = make_qact(n, gs), b = make_qact(n, gs);
    sb_ops_naive.quantize_act(&a, v);
    f->quantize_act(&b, v);
    char what[96];
    snprintf(what, sizeof what, "quantize_act n=%d gs=%d", n, gs);
    check(!memcmp(a.q, b.q, (size_t)n) && !memcmp(a.s, b.s, (size_t)(n / gs) * 4) && !memcmp(a.sum, b.sum, (size_t)(n / gs) * 4) &&
          !memcmp(a.q16, b.q16, (size_t)n * 2) && !memcmp(a.s16, b.s16, (size_t)(n / gs) * 4), what);
    /* 16-bit levels: the group maximum maps to +-SB_Q16_MAX, nothing beyond */
    int lim = (int)sb_q16_max(gs), top = 0;
    for (int i = 0; i < n; i++) { int m = a.q16[i] < 0 ? -a.q16[i] : a.q16[i]; top = m > top ? m : top; }
    snprintf(what, sizeof what, "quantize_act n=%d gs=%d: int16 peak %d of %d", n, gs, top, lim);
    check(top == lim, what);
    free_qact(&a); free_qact(&b); free(v);
}

static void test_matvec_q(const sb_ops *f, int type, int blocked, int rows, int cols, int gs) {
    sb_tensor t = make_tensor(type, blocked, rows, cols, gs);
    float *v = rand_vec(cols, 2.0f), *o1 = xmalloc((size_t)rows * 4), *o2 = xmalloc((size_t)rows * 4 + 256);
    sb_qact a = make_qact(cols, gs);
    sb_ops_naive.quantize_act(&a, v);
    for (int i = 0; i < 64; i++) o2[rows + i] = 12345.0f; /* canary: no writes past the end */
    if (type == SB_W_Q4) { sb_ops_naive.matvec_q4b(o1, &a, &t); f->matvec_q4b(o2, &a, &t); }
    else if (blocked) { sb_ops_naive.matvec_q8b(o1, &a, &t); f->matvec_q8b(o2, &a, &t); }
    else { sb_ops_naive.matvec_q8(o1, &a, &t); f->matvec_q8(o2, &a, &t); }
    int same = !memcmp(o1, o2, (size_t)rows * 4), canary = 1;
    for (int i = 0; i < 64; i++) canary &= o2[rows + i] == 12345.0f;
    char what[128];
    snprintf(what, sizeof what, "matvec %s %dx%d gs=%d: %s", type == SB_W_Q4 ? "q4 blocks" : blocked ? "q8 blocks" : "q8 rows",
             rows, cols, gs, !same ? "differs from naive" : "writes past the output");
    check(same && canary, what);
    /* and a row of the token table, dequantised the same way */
    float *row = xmalloc((size_t)cols * 4);
    sb_tensor_row(&t, rows - 1, row);
    free(row);
    free_qact(&a); free(v); free(o1); free(o2); free((void *)t.q);
}

/* The largest int32 sums a blocked int8 matrix can meet: every weight -128, every
 * activation at the 16-bit limit of its group. */
static void test_q8_extreme(const sb_ops *f, int cols, int gs) {
    sb_tensor t = make_tensor(SB_W_Q8, 1, SB_RB, cols, gs);
    memset((unsigned char *)t.q + (size_t)SB_RB * (cols / gs) * 4, 0x80, (size_t)SB_RB * cols);
    float *v = xmalloc((size_t)cols * 4), *o1 = xmalloc(SB_RB * 4), *o2 = xmalloc(SB_RB * 4);
    for (int i = 0; i < cols; i++) v[i] = -1.0f;
    sb_qact a = make_qact(cols, gs);
    f->quantize_act(&a, v);
    sb_ops_naive.matvec_q8b(o1, &a, &t);
    f->matvec_q8b(o2, &a, &t);
    const float *sc = (const float *)t.q;
    double want = 0;
    for (int g = 0; g < cols / gs; g++) want += (double)gs * 128.0 * sb_q16_max(gs) * a.s16[g] * sc[(size_t)g * SB_RB];
    char what[96];
    snprintf(what, sizeof what, "q8 blocks, extreme sums, %d columns in groups of %d", cols, gs);
    check(fabs(o1[0] - want) <= 1e-5 * fabs(want) && !memcmp(o1, o2, SB_RB * 4), what);
    free_qact(&a); free(v); free(o1); free(o2); free((void *)t.q);
}

static double rel(double a, double b) { return fabs(a - b) / (1e-6 + fabs(a)); }

static void test_f32(const sb_ops *f, int n, int d) {
    size_t m = (size_t)(n > d ? n : d) * 4;
    float *w = rand_vec(n * d, 1.0f), *x = rand_vec(n, 1.0f), *o1 = xmalloc(m), *o2 = xmalloc(m);
    sb_ops_naive.matvec_f32(o1, x, w, n, d);
    f->matvec_f32(o2, x, w, n, d);
    double worst = 0, scale = 0;
    for (int i = 0; i < d; i++) { worst = fmax(worst, fabs(o1[i] - o2[i])); scale = fmax(scale, fabs(o1[i])); }
    char what[96];
    snprintf(what, sizeof what, "matvec_f32 %dx%d (max diff %.3g of %.3g)", d, n, worst, scale);
    check(worst <= 1e-5 * (scale + 1) * sqrt(n), what);
    snprintf(what, sizeof what, "dot n=%d", n);
    check(rel(sb_ops_naive.dot(w, x, n), f->dot(w, x, n)) < 1e-4 || fabs(sb_ops_naive.dot(w, x, n) - f->dot(w, x, n)) < 1e-4, what);
    sb_ops_naive.rmsnorm(o1, x, w, n);
    f->rmsnorm(o2, x, w, n);
    worst = 0;
    for (int i = 0; i < n; i++) worst = fmax(worst, fabs(o1[i] - o2[i]));
    snprintf(what, sizeof what, "rmsnorm n=%d", n);
    check(worst < 1e-5, what);
    memcpy(o1, x, (size_t)n * 4);
    memcpy(o2, x, (size_t)n * 4);
    sb_ops_naive.axpy(o1, 0.37f, w, n);
    f->axpy(o2, 0.37f, w, n);
    worst = 0;
    for (int i = 0; i < n; i++) worst = fmax(worst, fabs(o1[i] - o2[i]));
    snprintf(what, sizeof what, "axpy n=%d", n);
    check(worst < 1e-6, what);
    free(w); free(x); free(o1); free(o2);
}

static void test_attention(const sb_ops *f, int hs, int n, size_t stride, int exact) {
    float *q = rand_vec(hs, 1.0f), *k = rand_vec((int)(stride * n), 1.0f), *v = rand_vec((int)(stride * n), 1.0f);
    float *o1 = xmalloc((size_t)hs * 4), *o2 = xmalloc((size_t)hs * 4 + 256), *att = xmalloc((size_t)n * 4);
    for (int i = 0; i < 64; i++) o2[hs + i] = 12345.0f;
    sb_ops_naive.attention(o1, q, k, v, stride, hs, n, sqrtf((float)hs), att, 1);
    f->attention(o2, q, k, v, stride, hs, n, sqrtf((float)hs), att, exact);
    double worst = 0;
    int canary = 1;
    for (int i = 0; i < hs; i++) worst = fmax(worst, fabs(o1[i] - o2[i]));
    for (int i = 0; i < 64; i++) canary &= o2[hs + i] == 12345.0f;
    char what[96];
    snprintf(what, sizeof what, "attention hs=%d n=%d exact=%d (max diff %.3g)", hs, n, exact, worst);
    check(worst < 1e-5 && canary, what);
    free(q); free(k); free(v); free(o1); free(o2); free(att);
}

/* The gate over the range a layer sees and beyond: libm's expf when exact, else the
 * table's own exp within a few ulp. */
static void test_silu(const sb_ops *f, int n, int exact) {
    float *h1 = rand_vec(n, 30.0f), *g = rand_vec(n, 2.0f), *h2 = xmalloc((size_t)n * 4);
    h1[0] = 0.0f;
    if (n > 2) h1[1] = -100.0f, h1[2] = 100.0f;
    memcpy(h2, h1, (size_t)n * 4);
    sb_ops_naive.silu_mul(h1, g, n, 1);
    f->silu_mul(h2, g, n, exact);
    double worst = 0;
    /* relative, but a gate of 1e-36 where libm's overflows to 0 (h = -100) is fine */
    for (int i = 0; i < n; i++) worst = fmax(worst, fabs(h1[i] - h2[i]) / (1e-20 + fabs(h1[i])));
    char what[96];
    snprintf(what, sizeof what, "silu_mul n=%d exact=%d (max rel diff %.3g)", n, exact, worst);
    check(exact ? !memcmp(h1, h2, (size_t)n * 4) : worst < 1e-6, what);
    free(h1); free(h2); free(g);
}

/* ------------------------------------------------------------------ the sampler */

/* run.c's sampler as run.c writes it (softmax over everything, the whole candidate
 * list sorted), the reference the kernel's shortcuts must reproduce. */
typedef struct { float prob; int index; } ref_cand;
static int ref_cmp(const void *a, const void *b) {
    const ref_cand *x = a, *y = b;
    if (x->prob > y->prob) return -1;
    if (x->prob < y->prob) return 1;
    return x->index - y->index;   /* what a stable sort of index order gives */
}

static int ref_sample(float *x, int n, float temp, float topp, float coin) {
    if (temp == 0.0f) {
        int best = 0;
        for (int i = 1; i < n; i++) if (x[i] > x[best]) best = i;
        return best;
    }
    for (int i = 0; i < n; i++) x[i] /= temp;
    float max = x[0], sum = 0.0f;
    for (int i = 1; i < n; i++) if (x[i] > max) max = x[i];
    for (int i = 0; i < n; i++) { x[i] = expf(x[i] - max); sum += x[i]; }
    for (int i = 0; i < n; i++) x[i] /= sum;
    if (topp <= 0.0f || topp >= 1.0f) {
        float cdf = 0.0f;
        for (int i = 0; i < n; i++) { cdf += x[i]; if (coin < cdf) return i; }
        return n - 1;
    }
    ref_cand *c = xmalloc((size_t)n * sizeof *c);
    const float cutoff = (1.0f - topp) / (float)(n - 1);
    int n0 = 0;
    for (int i = 0; i < n; i++) if (x[i] >= cutoff) { c[n0].index = i; c[n0].prob = x[i]; n0++; }
    qsort(c, (size_t)n0, sizeof *c, ref_cmp);
    float cum = 0.0f;
    int last = n0 - 1;
    for (int i = 0; i < n0; i++) { cum += c[i].prob; if (cum > topp) { last = i; break; } }
    float r = coin * cum, cdf = 0.0f;
    int tok = c[last].index;
    for (int i = 0; i <= last; i++) { cdf += c[i].prob; if (r < cdf) { tok = c[i].index; break; } }
    free(c);
    return tok;
}

/* Logits shaped like a language model's: a broad bulk, a few strong candidates, and
 * sometimes ties among them. */
static void lm_logits(float *x, int n, float spread, int ties) {
    for (int i = 0; i < n; i++) x[i] = frand() * spread;
    for (int k = 0; k < 1 + n / 1000; k++) x[(int)((frand() + 1.0f) * 0.5f * (float)n) % n] += spread * (1.0f + frand());
    if (ties) for (int k = 1; k < 8; k++) x[(k * 7919) % n] = x[0];
}

/* The comparing passes must equal the scalar loops exactly, tails included. */
static void test_sampler_ops(const sb_ops *f, int n) {
    float *x = rand_vec(n, 8.0f);
    int *a = xmalloc((size_t)n * sizeof *a), *b = xmalloc((size_t)n * sizeof *b);
    char what[96];
    int ok = f->max(x, n) == sb_max_loop(x, n);
    for (int k = 0; k < 6 && ok; k++) {
        float v = k == 0 ? sb_max_loop(x, n) : k == 1 ? x[n - 1] : k == 2 ? 100.0f : 8.0f - (float)k * 1.5f;
        ok &= f->first_ge(x, n, v) == sb_first_ge_loop(x, n, v);
        int ca = f->collect_ge(x, n, v, a), cb = sb_collect_ge_loop(x, n, v, b);
        ok &= ca == cb && !memcmp(a, b, (size_t)ca * sizeof *a);
    }
    snprintf(what, sizeof what, "sampler compare passes n=%d", n);
    check(ok, what);
    for (int k = 0; k < 3; k++) {
        float v = k == 0 ? -100.0f : k == 1 ? 0.0f : 7.0f;
        double want = 0;
        for (int i = 0; i < n; i++) if (x[i] >= v) want += x[i];
        double got = f->sum_ge(x, n, v), in_order = sb_sum_ge_loop(x, n, v);
        double scale = 1e-5 * (8.0 * n);
        snprintf(what, sizeof what, "sum_ge n=%d v=%g (%.6g vs %.6g)", n, (double)v, got, want);
        check(fabs(got - want) <= scale && fabs(in_order - want) <= scale, what);
    }
    float *y = xmalloc((size_t)n * 4), *z = xmalloc((size_t)n * 4);
    memcpy(y, x, (size_t)n * 4);
    memcpy(z, x, (size_t)n * 4);
    float m = sb_max_loop(x, n);
    float s1 = sb_exp_sum_loop(y, n, m, 1.25f), s2 = f->exp_sum(z, n, m, 1.25f);
    double worst = 0, exact_sum = 0;
    for (int i = 0; i < n; i++) worst = fmax(worst, fabs((double)y[i] - z[i]) / (1e-30 + y[i]));
    for (int i = 0; i < n; i++) exact_sum += y[i];
    /* both sums against the double-precision one: the in-order float sum drifts with n
     * (about 3e-5 at 32,000 terms here); the lane-wise one must do no worse */
    double e1 = fabs(s1 - exact_sum) / exact_sum, e2 = fabs(s2 - exact_sum) / exact_sum;
    snprintf(what, sizeof what, "exp_sum n=%d (sum rel err %.2g, in order %.2g; max rel diff %.2g)", n, e2, e1, worst);
    check(e2 <= fmax(e1, 1e-6) && worst < 2e-6, what);
    free(x); free(y); free(z); free(a); free(b);
}

/* Whole samples: the exact mode must pick run.c's token every time, through either
 * table; the quantised-model mode (own exp, own summation order) may differ only when
 * the coin lands within rounding of a boundary, and its agreement is printed. */
static void test_sampler(const sb_ops *f) {
    static const float temps[] = {0.0f, 1.0f, 0.8f, 1.3f, 1.0f, 0.5f};
    static const float topps[] = {0.9f, 0.9f, 0.95f, 0.9f, 1.0f, 0.5f};
    static const int sizes[] = {32000, 512, 100, 33};
    int trials = 0, same_exact = 0, same_fast = 0;
    long full_sorts = 0;
    for (int si = 0; si < 4; si++) {
        int n = sizes[si];
        float *x = xmalloc((size_t)n * 4), *y = xmalloc((size_t)n * 4);
        for (int cfg = 0; cfg < 6; cfg++) {
            sb_sampler *smp[3];
            for (int j = 0; j < 3; j++) sb_sampler_new(n, temps[cfg], topps[cfg], 1000 + cfg, &smp[j], NULL);
            uint64_t coin_state = 1000 + cfg;
            for (int t = 0; t < 40; t++) {
                lm_logits(x, n, 2.0f + (float)(t % 10) * 2.0f, t % 7 == 3);
                /* the coin the samplers will draw: xorshift64* as run.c */
                coin_state ^= coin_state >> 12; coin_state ^= coin_state << 25; coin_state ^= coin_state >> 27;
                float coin = (float)((uint32_t)((coin_state * 0x2545F4914F6CDD1Dull) >> 32) >> 8) / 16777216.0f;
                if (temps[cfg] == 0.0f) coin_state = 1000 + cfg;   /* greedy draws no coin */
                memcpy(y, x, (size_t)n * 4);
                int want = ref_sample(y, n, temps[cfg], topps[cfg], coin);
                memcpy(y, x, (size_t)n * 4);
                int e1 = sb_sample_ops(smp[0], y, f, 1);
                memcpy(y, x, (size_t)n * 4);
                int e2 = sb_sample_ops(smp[1], y, &sb_ops_naive, 1);
                memcpy(y, x, (size_t)n * 4);
                int q = sb_sample_ops(smp[2], y, f, 0);
                trials++;
                same_exact += want == e1 && want == e2;
                same_fast += want == q;
            }
            for (int j = 0; j < 3; j++) full_sorts += sb_sampler_full_sorts(smp[j]);
            for (int j = 0; j < 3; j++) sb_sampler_free(smp[j]);
        }
        free(x); free(y);
    }
    char what[128];
    snprintf(what, sizeof what, "sampler exact = run.c %d/%d; quantised-model softmax = run.c %d/%d",
             same_exact, trials, same_fast, trials);
    check(same_exact == trials && same_fast >= trials - trials / 50, what);
    printf("ktest: %s\n", what);
    printf("ktest: nucleus re-sorted in full %ld times\n", full_sorts);
}

static void profile(const sb_ops *f) {
    /* stories15M: dim 288, hidden 768, vocab 32000; the default groups of 32 */
    int roi = 0;
    struct { const char *name; int type, blocked, rows, cols, gs; } m[] = {
        {"q8 blocks 288x288 (wq, wk, wv, wo)", SB_W_Q8, 1, 288, 288, 32},
        {"q8 blocks 768x288 (w1, w3)", SB_W_Q8, 1, 768, 288, 32},
        {"q8 blocks 288x768 (w2)", SB_W_Q8, 1, 288, 768, 32},
        {"q8 blocks 32000x288 (classifier)", SB_W_Q8, 1, 32000, 288, 32},
        {"q4 blocks 32000x288 (classifier)", SB_W_Q4, 1, 32000, 288, 32},
        {"q8 rows 32000x288 gs 32 (llama2.c classifier)", SB_W_Q8, 0, 32000, 288, 32},
    };
    float *x = rand_vec(768, 2.0f), *out = xmalloc(32000 * 4);
    for (size_t k = 0; k < sizeof m / sizeof *m; k++) {
        sb_tensor t = make_tensor(m[k].type, m[k].blocked, m[k].rows, m[k].cols, m[k].gs);
        sb_qact a = make_qact(m[k].cols, m[k].gs);
        f->quantize_act(&a, x);
        printf("roi %d: %s\n", roi++, m[k].name);
        fflush(stdout);
        ROI_BEGIN();
        if (m[k].type == SB_W_Q4) f->matvec_q4b(out, &a, &t);
        else if (m[k].blocked) f->matvec_q8b(out, &a, &t);
        else f->matvec_q8(out, &a, &t);
        ROI_END();
        free_qact(&a); free((void *)t.q);
    }
    sb_qact a = make_qact(768, 128);
    printf("roi %d: quantize_act 768 gs 128\n", roi++);
    fflush(stdout);
    ROI_BEGIN();
    f->quantize_act(&a, x);
    ROI_END();
    free_qact(&a);
    float *w = rand_vec(288 * 768, 1.0f);
    printf("roi %d: matvec_f32 768x288\n", roi++);
    fflush(stdout);
    ROI_BEGIN();
    f->matvec_f32(out, x, w, 288, 768);
    ROI_END();
    printf("roi %d: dot 48 x 129 (one head's scores at pos 128)\n", roi++);
    fflush(stdout);
    float acc = 0;
    ROI_BEGIN();
    for (int t = 0; t < 129; t++) acc += f->dot(x, w + t * 48, 48);
    ROI_END();
    float *att = xmalloc(129 * 4);
    for (int exact = 1; exact >= 0; exact--) {
        printf("roi %d: attention hs 48 at pos 128 (one head), %s exp\n", roi++, exact ? "libm" : "vector");
        fflush(stdout);
        ROI_BEGIN();
        f->attention(out, x, w, w + 5000, 288, 48, 129, 6.9f, att, exact);
        ROI_END();
        printf("roi %d: silu_mul 768, %s exp\n", roi++, exact ? "libm" : "vector");
        fflush(stdout);
        ROI_BEGIN();
        f->silu_mul(w, x, 768, exact);
        ROI_END();
    }
    free(att);
    printf("roi %d: axpy 48 x 129 (one head's weighted values at pos 128)\n", roi++);
    fflush(stdout);
    ROI_BEGIN();
    for (int t = 0; t < 129; t++) f->axpy(out, 0.01f, w + t * 48, 48);
    ROI_END();
    printf("roi %d: rmsnorm 288\n", roi++);
    fflush(stdout);
    ROI_BEGIN();
    f->rmsnorm(out, x, w, 288);
    ROI_END();
    /* the sampler over a stories15M vocabulary of LM-like logits, t 1.0 p 0.9 */
    float *lg = xmalloc(32000 * 4), *y = xmalloc(32000 * 4);
    lm_logits(lg, 32000, 6.0f, 0);
    for (int exact = 1; exact >= 0; exact--) {
        sb_sampler *smp;
        sb_sampler_new(32000, 1.0f, 0.9f, 123, &smp, NULL);
        memcpy(y, lg, 32000 * 4);
        printf("roi %d: sample 32000 logits, t 1 p 0.9, %s softmax\n", roi++, exact ? "run.c's" : "vector");
        fflush(stdout);
        ROI_BEGIN();
        acc += (float)sb_sample_ops(smp, y, f, exact);
        ROI_END();
        sb_sampler_free(smp);
    }
    free(lg); free(y);
    printf("(%g)\n", acc + out[0]);
    free(w); free(x); free(out);
}

int main(int argc, char **argv) {
    const sb_ops *f = sb_ops_fast();
    if (argc > 1 && !strcmp(argv[1], "--profile")) { profile(f); return 0; }
    printf("ktest: fast table %s vs naive\n", f->name);
    int qshapes[][2] = {{288, 96}, {768, 128}, {768, 768}, {1024, 1024}, {64, 64}, {172, 86}, {48, 48}, {48, 24}, {128, 16}, {64, 4}, {288, 32}, {96, 2}, {1, 1}};
    for (size_t i = 0; i < sizeof qshapes / sizeof *qshapes; i++)
        if (qshapes[i][0] % qshapes[i][1] == 0) test_quantize(f, qshapes[i][0], qshapes[i][1]);
    struct { int rows, cols, gs; } ms[] = {
        {288, 288, 96}, {768, 288, 96}, {288, 768, 128}, {300, 288, 32}, {172, 64, 64}, {64, 172, 86},
        {48, 48, 48}, {16, 48, 24}, {45, 64, 64}, {33, 128, 128}, {31, 96, 96}, {1, 8, 8}, {70, 40, 4}, {40, 768, 768},
    };
    for (size_t i = 0; i < sizeof ms / sizeof *ms; i++) {
        test_matvec_q(f, SB_W_Q8, 1, ms[i].rows, ms[i].cols, ms[i].gs);
        test_matvec_q(f, SB_W_Q8, 0, ms[i].rows, ms[i].cols, ms[i].gs);
        if (ms[i].gs % 2 == 0) test_matvec_q(f, SB_W_Q4, 1, ms[i].rows, ms[i].cols, ms[i].gs);
    }
    test_q8_extreme(f, 512, 512);
    test_q8_extreme(f, 768, 768);
    test_q8_extreme(f, 288, 32);
    int fshapes[][2] = {{288, 288}, {288, 768}, {768, 288}, {48, 48}, {64, 172}, {172, 64}, {8, 5}, {33, 7}, {1, 3}};
    for (size_t i = 0; i < sizeof fshapes / sizeof *fshapes; i++) test_f32(f, fshapes[i][0], fshapes[i][1]);
    int ashapes[][3] = {{48, 129, 288}, {48, 1, 48}, {8, 37, 32}, {64, 20, 64}, {32, 5, 96}, {96, 9, 96}, {2, 3, 2}, {40, 50, 80}};
    for (size_t i = 0; i < sizeof ashapes / sizeof *ashapes; i++)
        for (int exact = 0; exact < 2; exact++) test_attention(f, ashapes[i][0], ashapes[i][1], (size_t)ashapes[i][2], exact);
    int sshapes[] = {768, 172, 31, 1, 100};
    for (size_t i = 0; i < sizeof sshapes / sizeof *sshapes; i++)
        for (int exact = 0; exact < 2; exact++) test_silu(f, sshapes[i], exact);
    int vshapes[] = {32000, 512, 100, 33, 31, 1};
    for (size_t i = 0; i < sizeof vshapes / sizeof *vshapes; i++) test_sampler_ops(f, vshapes[i]);
    test_sampler(f);
    printf("ktest: %s\n", failures ? "FAILED" : "all ops agree");
    return failures ? 1 : 0;
}

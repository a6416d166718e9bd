/* ops_portable.c -- the FAST table for hosts without hand-written intrinsics (and the
 * "scalar" RISC-V build that the vector builds are checked against).
 *
 * Written so that GCC/Clang vectorise it at -O2/-O3 without -ffast-math: fp32 sums
 * keep several independent accumulator lanes (so no reassociation is needed), and
 * the blocked quantised kernels put the SB_RB rows of a block in the innermost loop,
 * which vectorises with no horizontal reduction at all.
 * Integer sums are exact; float operations on the quantised paths come in the same
 * order as in ops_rvv.c, so the two builds give bit-identical matrix products. */
#include "sb_internal.h"
#include <math.h>
#include <string.h>

#if !defined(SB_HAVE_RVV)
/* 16 independent partial sums: two AVX / four SSE or NEON registers, enough to hide
 * the add latency. (GCC 12 turns several rows per pass with lane arrays into shuffle
 * storms, so rows go one at a time; each row is a long contiguous stream anyway.) */
#define LANES 16

static float hsum(const float *a) {
    float s = 0.0f;
    for (int k = 0; k < LANES; k++) s += a[k];
    return s;
}

/* Pointers, not int indices: Python builds extensions with -fwrapv, under which GCC
 * cannot prove that a[j + k] walks memory contiguously and gives up vectorising. */
static float dot(const float *a, const float *b, int n) {
    float acc[LANES] = {0};
    const float *end = a + (n - n % LANES), *stop = a + n;
    for (; a < end; a += LANES, b += LANES)
        for (int k = 0; k < LANES; k++) acc[k] += a[k] * b[k];
    float s = hsum(acc);
    for (; a < stop; a++, b++) s += *a * *b;
    return s;
}

static void matvec_f32(float *out, const float *x, const float *w, int n, int d) {
    for (int i = 0; i < d; i++) out[i] = dot(w + (size_t)i * n, x, n);
}

static void axpy(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static void rmsnorm(float *o, const float *x, const float *w, int n) {
    float ss = dot(x, x, n) / n + 1e-5f;
    ss = 1.0f / sqrtf(ss);
    for (int j = 0; j < n; j++) o[j] = w[j] * (ss * x[j]);
}

/* Round to nearest even like lrintf (the default rounding mode), but as plain float
 * arithmetic the compiler can vectorise: adding 1.5 * 2^23 pushes the fraction bits
 * out for |v| < 2^22, and activations here are within +-32767.5. */
static inline float round_even(float v) {
    const float magic = 12582912.0f;
    return (v + magic) - magic;
}

/* The level of v, clamped to +-lim, NaN as 0: for groups where a plain conversion
 * would be undefined behaviour (see quantize_act). Plain selects, so it vectorises. */
static inline float level(float v, float lim) {
    v = v == v ? v : 0.0f;
    v = v > lim ? lim : v < -lim ? -lim : v;
    return round_even(v);
}

/* Levels are within +-lim because inv comes from the group's largest |value|, but a
 * group can be wild: NaN weights make NaN activations, and a largest value so small
 * that 1/scale overflows makes inf levels. Converting NaN or inf to an integer is
 * undefined behaviour in C, so wild groups (garbage in any case) take level()'s
 * clamps; the others keep the plain loop, which the compiler unswitches. */
static void quantize_act(sb_qact *a, const float *v) {
    int groups = a->n / a->gs;
    for (int g = 0; g < groups; g++) {
        const float *src = v + (size_t)g * a->gs;
        int8_t *dst = a->q + (size_t)g * a->gs;
        float amax = 0.0f;
        int nan = 0;
        for (int i = 0; i < a->gs; i++) { float f = fabsf(src[i]); amax = f > amax ? f : amax; nan |= f != f; }
        float scale = amax / 127.0f;
        float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
        float max16 = sb_q16_max(a->gs), scale16 = amax / max16;
        float inv16 = scale16 > 0.0f ? 1.0f / scale16 : 0.0f;
        const int wild = nan || !(amax * inv < 4194304.0f && amax * inv16 < 4194304.0f);
        a->s[g] = scale;
        int32_t sum = 0;
        for (int i = 0; i < a->gs; i++) {
            int q = (int)(wild ? level(src[i] * inv, 127.0f) : round_even(src[i] * inv));
            dst[i] = (int8_t)q;
            sum += q;
        }
        a->sum[g] = sum;
        int16_t *dst16 = a->q16 + (size_t)g * a->gs;
        a->s16[g] = scale16;
        for (int i = 0; i < a->gs; i++)
            dst16[i] = (int16_t)(wild ? level(src[i] * inv16, max16) : round_even(src[i] * inv16));
    }
}

/* Row-major int8 (llama2.c Q8_0): int16 products summed into int32 lanes vectorise
 * well on x86 and ARM. */
static int32_t idot(const int8_t *a, const int8_t *b, int n) {
    int32_t s = 0;
    for (int j = 0; j < n; j++) s += (int16_t)a[j] * (int16_t)b[j];
    return s;
}

static void matvec_q8(float *out, const sb_qact *x, const sb_tensor *w) {
    int n = w->cols, gs = w->gs, groups = n / gs;
    const int8_t *q = (const int8_t *)w->q;
    for (int i = 0; i < w->rows; i++) {
        const int8_t *r = q + (size_t)i * n;
        const float *ws = w->s + (size_t)i * groups;
        float val = 0.0f;
        for (int g = 0; g < groups; g++)
            val += (float)idot(r + g * gs, x->q + g * gs, gs) * x->s[g] * ws[g];
        out[i] = val;
    }
}

/* One block of rr rows of a blocked int8 matrix. Inlined with rr == SB_RB for full
 * blocks, so the row loops have a constant trip count and become plain vector code. */
static inline void q8_block(float *out, const sb_qact *x, const float *sc, const int8_t *v,
                            int rr, int gs, int groups) {
    float acc[SB_RB];
    for (int r = 0; r < rr; r++) acc[r] = 0.0f;
    for (int g = 0; g < groups; g++, sc += rr) {
        int32_t ia[SB_RB];
        for (int r = 0; r < rr; r++) ia[r] = 0;
        const int16_t *xq = x->q16 + (size_t)g * gs;
        /* two columns per pass as int16 x int16 pairs into int32, the shape of pmaddwd */
        for (int j = 0; j < gs; j += 2, v += 2 * rr) {
            int16_t x0 = xq[j], x1 = xq[j + 1];
            const int8_t *v1 = v + rr;
            for (int r = 0; r < rr; r++) ia[r] += (int32_t)(int16_t)v[r] * x0 + (int32_t)(int16_t)v1[r] * x1;
        }
        float xs = x->s16[g];
        for (int r = 0; r < rr; r++) acc[r] += ((float)ia[r] * xs) * sc[r];
    }
    for (int r = 0; r < rr; r++) out[r] = acc[r];
}

static void matvec_q8b(float *out, const sb_qact *x, const sb_tensor *w) {
    int gs = w->gs, groups = w->cols / gs;
    const unsigned char *blk = (const unsigned char *)w->q;
    size_t step = sb_block_bytes(w, SB_RB);
    int r0 = 0;
    for (; r0 + SB_RB <= w->rows; r0 += SB_RB, blk += step)
        q8_block(out + r0, x, (const float *)blk, (const int8_t *)(blk + (size_t)SB_RB * groups * 4), SB_RB, gs, groups);
    if (r0 < w->rows) {
        int rr = w->rows - r0;
        q8_block(out + r0, x, (const float *)blk, (const int8_t *)(blk + (size_t)rr * groups * 4), rr, gs, groups);
    }
}

/* 4-bit blocks: nibbles are the value + 8, so each group sums unsigned nibbles times
 * x and subtracts 8 * (sum of the group's x) once, instead of re-centring every nibble. */
static inline void q4_block(float *out, const sb_qact *x, const float *sc, const uint8_t *v,
                            int rr, int gs, int groups) {
    int half = gs / 2;
    float acc[SB_RB];
    for (int r = 0; r < rr; r++) acc[r] = 0.0f;
    for (int g = 0; g < groups; g++, sc += rr) {
        int32_t ia[SB_RB];
        int32_t init = -8 * x->sum[g];
        for (int r = 0; r < rr; r++) ia[r] = init;
        const int8_t *xq = x->q + (size_t)g * gs;
        for (int p = 0; p < half; p++, v += rr) {
            int16_t xl = xq[p], xh = xq[p + half];   /* |sum of the two| <= 2 * 15 * 127 */
            for (int r = 0; r < rr; r++) ia[r] += (int16_t)((v[r] & 15) * xl + (v[r] >> 4) * xh);
        }
        float xs = x->s[g];
        for (int r = 0; r < rr; r++) acc[r] += ((float)ia[r] * xs) * sc[r];
    }
    for (int r = 0; r < rr; r++) out[r] = acc[r];
}

static void matvec_q4b(float *out, const sb_qact *x, const sb_tensor *w) {
    int gs = w->gs, groups = w->cols / gs;
    const unsigned char *blk = (const unsigned char *)w->q;
    size_t step = sb_block_bytes(w, SB_RB);
    int r0 = 0;
    for (; r0 + SB_RB <= w->rows; r0 += SB_RB, blk += step)
        q4_block(out + r0, x, (const float *)blk, blk + (size_t)SB_RB * groups * 4, SB_RB, gs, groups);
    if (r0 < w->rows) {
        int rr = w->rows - r0;
        q4_block(out + r0, x, (const float *)blk, blk + (size_t)rr * groups * 4, rr, gs, groups);
    }
}

static void attention(float *out, const float *q, const float *k, const float *v, size_t stride,
                      int hs, int n, float scale, float *att, int exact) {
    (void)exact;   /* always libm's expf here */
    sb_attention_loop(dot, axpy, out, q, k, v, stride, hs, n, scale, att);
}

static const sb_ops portable = {
    .name = "portable",
    .matvec_f32 = matvec_f32,
    .matvec_q8 = matvec_q8,
    .matvec_q8b = matvec_q8b,
    .matvec_q4b = matvec_q4b,
    .quantize_act = quantize_act,
    .dot = dot,
    .axpy = axpy,
    .rmsnorm = rmsnorm,
    .attention = attention,
    .silu_mul = sb_silu_mul_libm,
    .max = sb_max_loop,
    .first_ge = sb_first_ge_loop,
    .collect_ge = sb_collect_ge_loop,
    .exp_sum = sb_exp_sum_loop,
    .sum_ge = sb_sum_ge_loop,
};

const sb_ops *sb_ops_fast(void) { return &portable; }
const char *sb_ops_fast_isa(void) { return "portable"; }
#endif

/* ops_naive.c -- the plain loops: run.c's arithmetic, one element at a time.
 * Every speed figure is a ratio against this table, so it stays simple on purpose. */
#include "sb_internal.h"
#include <math.h>

static void matvec_f32(float *out, const float *x, const float *w, int n, int d) {
    for (int i = 0; i < d; i++) {
        float val = 0.0f;
        for (int j = 0; j < n; j++) val += w[(size_t)i * n + j] * x[j];
        out[i] = val;
    }
}

static void quantize_act(sb_qact *a, const float *v) {
    int groups = a->n / a->gs;
    for (int g = 0; g < groups; g++) {
        const float *src = v + (size_t)g * a->gs;
        float amax = 0.0f;
        for (int i = 0; i < a->gs; i++) { float f = fabsf(src[i]); if (f > amax) amax = f; }
        float scale = amax / 127.0f;
        float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
        a->s[g] = scale;
        int32_t sum = 0;
        for (int i = 0; i < a->gs; i++) {
            a->q[(size_t)g * a->gs + i] = (int8_t)lrintf(src[i] * inv);
            sum += a->q[(size_t)g * a->gs + i];
        }
        a->sum[g] = sum;
        float scale16 = amax / sb_q16_max(a->gs);
        float inv16 = scale16 > 0.0f ? 1.0f / scale16 : 0.0f;
        a->s16[g] = scale16;
        for (int i = 0; i < a->gs; i++) a->q16[(size_t)g * a->gs + i] = (int16_t)lrintf(src[i] * inv16);
    }
}

static void matvec_q8(float *out, const sb_qact *x, const sb_tensor *w) {
    int n = w->cols, gs = w->gs, groups = n / gs;
    const int8_t *q = (const int8_t *)w->q;
    for (int i = 0; i < w->rows; i++) {
        float val = 0.0f;
        for (int g = 0; g < groups; g++) {
            int32_t acc = 0;
            for (int j = 0; j < gs; j++)
                acc += (int32_t)q[(size_t)i * n + g * gs + j] * x->q[g * gs + j];
            val += (float)acc * x->s[g] * w->s[(size_t)i * groups + g];
        }
        out[i] = val;
    }
}

/* Blocked tensors (sb_internal.h): row i is lane i % SB_RB of its block. */
static void block_of(const sb_tensor *w, int i, const float **sc, const unsigned char **v, int *rr, int *r) {
    int b = i / SB_RB;
    *rr = w->rows - b * SB_RB < SB_RB ? w->rows - b * SB_RB : SB_RB;
    *r = i % SB_RB;
    const unsigned char *blk = (const unsigned char *)w->q + (size_t)b * sb_block_bytes(w, SB_RB);
    *sc = (const float *)blk;
    *v = blk + (size_t)*rr * (size_t)(w->cols / w->gs) * sizeof(float);
}

static void matvec_q8b(float *out, const sb_qact *x, const sb_tensor *w) {
    int gs = w->gs, groups = w->cols / gs;
    for (int i = 0; i < w->rows; i++) {
        const float *sc;
        const unsigned char *v;
        int rr, r;
        block_of(w, i, &sc, &v, &rr, &r);
        float val = 0.0f;
        for (int g = 0; g < groups; g++) {
            int32_t acc = 0;
            for (int j = 0; j < gs; j++)
                acc += (int32_t)(int8_t)v[(size_t)(g * gs + j) * rr + r] * x->q16[g * gs + j];
            val += (float)acc * x->s16[g] * sc[(size_t)g * rr + r];
        }
        out[i] = val;
    }
}

/* 4-bit: in each group, byte p holds column p (low nibble) and p + gs/2 (high), value + 8 */
static void matvec_q4b(float *out, const sb_qact *x, const sb_tensor *w) {
    int gs = w->gs, groups = w->cols / gs, half = gs / 2;
    for (int i = 0; i < w->rows; i++) {
        const float *sc;
        const unsigned char *v;
        int rr, r;
        block_of(w, i, &sc, &v, &rr, &r);
        float val = 0.0f;
        for (int g = 0; g < groups; g++) {
            int32_t acc = 0;
            for (int j = 0; j < gs; j++) {
                unsigned byte = v[(size_t)(g * half + j % half) * rr + r];
                int q = j < half ? (int)(byte & 15) - 8 : (int)(byte >> 4) - 8;
                acc += q * x->q[g * gs + j];
            }
            val += (float)acc * x->s[g] * sc[(size_t)g * rr + r];
        }
        out[i] = val;
    }
}

static float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void axpy(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static void rmsnorm(float *o, const float *x, const float *w, int n) {
    float ss = 0.0f;
    for (int j = 0; j < n; j++) ss += x[j] * x[j];
    ss /= n;
    ss += 1e-5f;
    ss = 1.0f / sqrtf(ss);
    for (int j = 0; j < n; j++) o[j] = w[j] * (ss * x[j]);
}

static void attention(float *out, const float *q, const float *k, const float *v, size_t stride,
                      int hs, int n, float scale, float *att, int exact) {
    (void)exact;   /* always libm's expf here */
    sb_attention_loop(dot, axpy, out, q, k, v, stride, hs, n, scale, att);
}

const sb_ops sb_ops_naive = {
    .name = "naive",
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

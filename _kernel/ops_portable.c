/* ops_portable.c -- the FAST table for hosts without hand-written intrinsics.
 * Written so that GCC/Clang vectorise it at -O2/-O3 without -ffast-math: several
 * independent accumulator lanes (no reassociation needed) and four rows per pass
 * so each load of x feeds four rows. */
#include "sb_internal.h"
#include <math.h>
#include <string.h>

#if !defined(SB_HAVE_RVV)
#define LANES 8

static float hsum(const float *a) {
    float s = 0.0f;
    for (int k = 0; k < LANES; k++) s += a[k];
    return s;
}

static void matvec_f32(float *out, const float *x, const float *w, int n, int d) {
    int nv = n - n % LANES;
    int i = 0;
    for (; i + 4 <= d; i += 4) {
        const float *w0 = w + (size_t)i * n, *w1 = w0 + n, *w2 = w1 + n, *w3 = w2 + n;
        float a0[LANES] = {0}, a1[LANES] = {0}, a2[LANES] = {0}, a3[LANES] = {0};
        for (int j = 0; j < nv; j += LANES)
            for (int k = 0; k < LANES; k++) {
                float xv = x[j + k];
                a0[k] += w0[j + k] * xv; a1[k] += w1[j + k] * xv;
                a2[k] += w2[j + k] * xv; a3[k] += w3[j + k] * xv;
            }
        float s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
        for (int j = nv; j < n; j++) { s0 += w0[j] * x[j]; s1 += w1[j] * x[j]; s2 += w2[j] * x[j]; s3 += w3[j] * x[j]; }
        out[i] = s0; out[i + 1] = s1; out[i + 2] = s2; out[i + 3] = s3;
    }
    for (; i < d; i++) {
        const float *r = w + (size_t)i * n;
        float a[LANES] = {0};
        for (int j = 0; j < nv; j += LANES)
            for (int k = 0; k < LANES; k++) a[k] += r[j + k] * x[j + k];
        float s = hsum(a);
        for (int j = nv; j < n; j++) s += r[j] * x[j];
        out[i] = s;
    }
}

static float dot(const float *a, const float *b, int n) {
    float acc[LANES] = {0};
    int nv = n - n % LANES;
    for (int j = 0; j < nv; j += LANES)
        for (int k = 0; k < LANES; k++) acc[k] += a[j + k] * b[j + k];
    float s = hsum(acc);
    for (int j = nv; j < n; j++) s += a[j] * b[j];
    return s;
}

static void axpy(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static void rmsnorm(float *o, const float *x, const float *w, int n) {
    float ss = dot(x, x, n) / n + 1e-5f;
    ss = 1.0f / sqrtf(ss);
    for (int j = 0; j < n; j++) o[j] = w[j] * (ss * x[j]);
}

static void quantize_act(sb_qact *a, const float *v) {
    int groups = a->n / a->gs;
    for (int g = 0; g < groups; g++) {
        const float *src = v + (size_t)g * a->gs;
        int8_t *dst = a->q + (size_t)g * a->gs;
        float amax = 0.0f;
        for (int i = 0; i < a->gs; i++) { float f = fabsf(src[i]); amax = f > amax ? f : amax; }
        float scale = amax / 127.0f;
        float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
        a->s[g] = scale;
        for (int i = 0; i < a->gs; i++) dst[i] = (int8_t)lrintf(src[i] * inv);
    }
}

/* int8 group dot: int16 products summed into int32 lanes vectorise well on x86 and ARM */
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
            val += (float)idot(r + g * gs, x->q + g * gs, gs) * (ws[g] * x->s[g]);
        out[i] = val;
    }
}

/* 4-bit rows: byte j of a group holds element j (low nibble) and j + gs/2 (high),
 * so unpacking is two contiguous streams rather than an interleave. */
static void matvec_q4(float *out, const sb_qact *x, const sb_tensor *w) {
    int n = w->cols, gs = w->gs, groups = n / gs, half = gs / 2;
    const uint8_t *q = (const uint8_t *)w->q;
    for (int i = 0; i < w->rows; i++) {
        const uint8_t *r = q + (size_t)i * n / 2;
        const float *ws = w->s + (size_t)i * groups;
        float val = 0.0f;
        for (int g = 0; g < groups; g++) {
            const uint8_t *b = r + (size_t)g * half;
            const int8_t *xq = x->q + g * gs;
            int32_t acc = 0;
            for (int j = 0; j < half; j++)
                acc += ((int)(b[j] & 15) - 8) * xq[j] + ((int)(b[j] >> 4) - 8) * xq[j + half];
            val += (float)acc * (ws[g] * x->s[g]);
        }
        out[i] = val;
    }
}

static const sb_ops portable = {
    "portable", matvec_f32, matvec_q8, matvec_q4, quantize_act, dot, axpy, rmsnorm,
};

const sb_ops *sb_ops_fast(void) { return &portable; }
const char *sb_ops_fast_isa(void) { return "portable"; }
#endif

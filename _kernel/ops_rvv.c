/* ops_rvv.c -- the FAST table for RISC-V vectors: one source for RVV 1.0
 * (-march=rv64gcv) and for the C906's XTheadVector / RVV 0.7.1
 * (-march=rv64gc_xtheadvector, GCC >= 14). On other ISAs it compiles to nothing.
 *
 * Rules that keep one source correct on both (0.7.1 zeroes tail elements, has no
 * fractional LMUL and no tail-undisturbed policy): accumulate only in full-VLMAX
 * strips and reduce any tail separately; never rely on _tu; LMUL >= 1 everywhere.
 * And one learned here: GCC 14 switches element width with "vsetvli zero,zero",
 * which RVV 1.0 reads as "keep vl" but 0.7.1 as "vl = VLMAX" (xuantie-qemu does
 * so), so on XTheadVector code that mixes widths (widening, narrowing, int -> float)
 * runs only at vl == VLMAX; its short tails go through the small scalar loops below.
 *
 * The quantised matrices (the bulk of the work) are SBQ1 row blocks (sb_internal.h):
 * the SB_RB = 32 rows of a block are the lanes of every vector, so a weight column is
 * one 32-byte load and one widening multiply-accumulate by its activation, with no
 * reductions until the block's 32 outputs are stored:
 *   int8  x int8: int16 sums of two columns (|w x| <= 128 * 127) into int32; on the
 *                 C906 one sign-extending th.vlb + vwmacc.vx per column instead
 *   4-bit x int8: int16 for a whole group of <= 32 (|(n - 8) x| <= 8 * 127), 64 lanes
 *                 (two columns) per vwmaccsu.vv against splatted activations
 * then int -> fp32, times the activation scale and the 32 weight scales. The float
 * operations come in the same order as ops_portable.c and ops_naive.c (unfused), so
 * every table gives bit-identical quantised matrix products (bench/ktest.c checks). */
#include "sb_internal.h"

#if defined(SB_HAVE_RVV)
#include <math.h>
#include <riscv_vector.h>

#if defined(__riscv_xtheadvector)
#define MIXED_TAILS 0   /* mixed-width vector code only at vl == VLMAX */
#define Q4_WIDE 0
#else
#define MIXED_TAILS 1
#define Q4_WIDE 1
#endif

/* ------------------------------------------------------------------ fp32 */

/* sum(a[i] * b[i]): e32m8 strips (32 lanes at VLEN 128) into one accumulator, the
 * tail multiplied and reduced on its own. */
static float dot(const float *a, const float *b, int n) {
    size_t vlmax = __riscv_vsetvlmax_e32m8(), i = 0, N = (size_t)n;
    vfloat32m1_t s = __riscv_vfmv_v_f_f32m1(0.0f, 1);
    if (N >= vlmax) {
        vfloat32m8_t acc = __riscv_vfmul_vv_f32m8(__riscv_vle32_v_f32m8(a, vlmax), __riscv_vle32_v_f32m8(b, vlmax), vlmax);
        for (i = vlmax; i + vlmax <= N; i += vlmax)
            acc = __riscv_vfmacc_vv_f32m8(acc, __riscv_vle32_v_f32m8(a + i, vlmax), __riscv_vle32_v_f32m8(b + i, vlmax), vlmax);
        s = __riscv_vfredusum_vs_f32m8_f32m1(acc, s, vlmax);
    }
    if (i < N) {
        size_t vl = __riscv_vsetvl_e32m8(N - i);
        vfloat32m8_t p = __riscv_vfmul_vv_f32m8(__riscv_vle32_v_f32m8(a + i, vl), __riscv_vle32_v_f32m8(b + i, vl), vl);
        s = __riscv_vfredusum_vs_f32m8_f32m1(p, s, vl);
    }
    return __riscv_vfmv_f_s_f32m1_f32(s);
}

/* Four rows per pass share each load of x; e32m4 keeps 4 accumulators + x + w in 24
 * of the 32 vector registers. */
static void matvec_f32(float *out, const float *x, const float *w, int n, int d) {
    size_t vlmax = __riscv_vsetvlmax_e32m4(), N = (size_t)n, full = N - N % vlmax;
    int i = 0;
    for (; i + 4 <= d && full; i += 4) {
        const float *w0 = w + (size_t)i * N, *w1 = w0 + N, *w2 = w1 + N, *w3 = w2 + N;
        vfloat32m4_t xv = __riscv_vle32_v_f32m4(x, vlmax);
        vfloat32m4_t a0 = __riscv_vfmul_vv_f32m4(__riscv_vle32_v_f32m4(w0, vlmax), xv, vlmax);
        vfloat32m4_t a1 = __riscv_vfmul_vv_f32m4(__riscv_vle32_v_f32m4(w1, vlmax), xv, vlmax);
        vfloat32m4_t a2 = __riscv_vfmul_vv_f32m4(__riscv_vle32_v_f32m4(w2, vlmax), xv, vlmax);
        vfloat32m4_t a3 = __riscv_vfmul_vv_f32m4(__riscv_vle32_v_f32m4(w3, vlmax), xv, vlmax);
        for (size_t j = vlmax; j < full; j += vlmax) {
            xv = __riscv_vle32_v_f32m4(x + j, vlmax);
            a0 = __riscv_vfmacc_vv_f32m4(a0, __riscv_vle32_v_f32m4(w0 + j, vlmax), xv, vlmax);
            a1 = __riscv_vfmacc_vv_f32m4(a1, __riscv_vle32_v_f32m4(w1 + j, vlmax), xv, vlmax);
            a2 = __riscv_vfmacc_vv_f32m4(a2, __riscv_vle32_v_f32m4(w2 + j, vlmax), xv, vlmax);
            a3 = __riscv_vfmacc_vv_f32m4(a3, __riscv_vle32_v_f32m4(w3 + j, vlmax), xv, vlmax);
        }
        vfloat32m1_t z = __riscv_vfmv_v_f_f32m1(0.0f, 1);
        vfloat32m1_t s0 = __riscv_vfredusum_vs_f32m4_f32m1(a0, z, vlmax);
        vfloat32m1_t s1 = __riscv_vfredusum_vs_f32m4_f32m1(a1, z, vlmax);
        vfloat32m1_t s2 = __riscv_vfredusum_vs_f32m4_f32m1(a2, z, vlmax);
        vfloat32m1_t s3 = __riscv_vfredusum_vs_f32m4_f32m1(a3, z, vlmax);
        if (full < N) {
            size_t vl = __riscv_vsetvl_e32m4(N - full);
            xv = __riscv_vle32_v_f32m4(x + full, vl);
            s0 = __riscv_vfredusum_vs_f32m4_f32m1(__riscv_vfmul_vv_f32m4(__riscv_vle32_v_f32m4(w0 + full, vl), xv, vl), s0, vl);
            s1 = __riscv_vfredusum_vs_f32m4_f32m1(__riscv_vfmul_vv_f32m4(__riscv_vle32_v_f32m4(w1 + full, vl), xv, vl), s1, vl);
            s2 = __riscv_vfredusum_vs_f32m4_f32m1(__riscv_vfmul_vv_f32m4(__riscv_vle32_v_f32m4(w2 + full, vl), xv, vl), s2, vl);
            s3 = __riscv_vfredusum_vs_f32m4_f32m1(__riscv_vfmul_vv_f32m4(__riscv_vle32_v_f32m4(w3 + full, vl), xv, vl), s3, vl);
        }
        out[i] = __riscv_vfmv_f_s_f32m1_f32(s0);
        out[i + 1] = __riscv_vfmv_f_s_f32m1_f32(s1);
        out[i + 2] = __riscv_vfmv_f_s_f32m1_f32(s2);
        out[i + 3] = __riscv_vfmv_f_s_f32m1_f32(s3);
    }
    for (; i < d; i++) out[i] = dot(w + (size_t)i * N, x, n);
}

/* y += a * x: every element is written once, so a short last strip is harmless. */
static void axpy(float *y, float a, const float *x, int n) {
    for (size_t i = 0, N = (size_t)n, vl; i < N; i += vl) {
        vl = __riscv_vsetvl_e32m8(N - i);
        vfloat32m8_t v = __riscv_vle32_v_f32m8(y + i, vl);
        v = __riscv_vfadd_vv_f32m8(v, __riscv_vfmul_vf_f32m8(__riscv_vle32_v_f32m8(x + i, vl), a, vl), vl);
        __riscv_vse32_v_f32m8(y + i, v, vl);
    }
}

static void rmsnorm(float *o, const float *x, const float *w, int n) {
    float ss = dot(x, x, n) / n + 1e-5f;
    ss = 1.0f / sqrtf(ss);
    for (size_t i = 0, N = (size_t)n, vl; i < N; i += vl) {
        vl = __riscv_vsetvl_e32m8(N - i);
        vfloat32m8_t v = __riscv_vfmul_vf_f32m8(__riscv_vle32_v_f32m8(x + i, vl), ss, vl);
        __riscv_vse32_v_f32m8(o + i, __riscv_vfmul_vv_f32m8(__riscv_vle32_v_f32m8(w + i, vl), v, vl), vl);
    }
}

/* exp for quantised models (exact = 0): 2^k * p(r) with k = round(x / ln 2),
 * r = x - k ln 2 in two parts (|r| <= 0.35), p the degree-7 Taylor polynomial: a few
 * ulp from expf, 24 vector instructions per 32 values instead of ~30 scalar
 * instructions per value. Float and int32 views share e32m8, so short strips are safe
 * on both ISAs. Inputs are clamped to [-87, 88], where 2^k stays a normal float. */
static inline vfloat32m8_t vexp(vfloat32m8_t x, size_t vl) {
    x = __riscv_vfmax_vf_f32m8(__riscv_vfmin_vf_f32m8(x, 88.0f, vl), -87.0f, vl);
    vint32m8_t k = __riscv_vfcvt_x_f_v_i32m8(__riscv_vfmul_vf_f32m8(x, 1.44269504f, vl), vl);
    vfloat32m8_t kf = __riscv_vfcvt_f_x_v_f32m8(k, vl);
    vfloat32m8_t r = __riscv_vfnmsac_vf_f32m8(x, 0.693145752f, kf, vl);
    r = __riscv_vfnmsac_vf_f32m8(r, 1.42860677e-6f, kf, vl);
    vfloat32m8_t p = __riscv_vfadd_vf_f32m8(__riscv_vfmul_vf_f32m8(r, 1.0f / 5040.0f, vl), 1.0f / 720.0f, vl);
    p = __riscv_vfadd_vf_f32m8(__riscv_vfmul_vv_f32m8(p, r, vl), 1.0f / 120.0f, vl);
    p = __riscv_vfadd_vf_f32m8(__riscv_vfmul_vv_f32m8(p, r, vl), 1.0f / 24.0f, vl);
    p = __riscv_vfadd_vf_f32m8(__riscv_vfmul_vv_f32m8(p, r, vl), 1.0f / 6.0f, vl);
    p = __riscv_vfadd_vf_f32m8(__riscv_vfmul_vv_f32m8(p, r, vl), 0.5f, vl);
    p = __riscv_vfadd_vf_f32m8(__riscv_vfmul_vv_f32m8(p, r, vl), 1.0f, vl);
    p = __riscv_vfadd_vf_f32m8(__riscv_vfmul_vv_f32m8(p, r, vl), 1.0f, vl);
    vint32m8_t e = __riscv_vsll_vx_i32m8(__riscv_vadd_vx_i32m8(k, 127, vl), 23, vl);
    return __riscv_vfmul_vv_f32m8(p, __riscv_vreinterpret_v_i32m8_f32m8(e), vl);
}

static void silu_mul(float *h, const float *g, int n, int exact) {
    if (exact) { sb_silu_mul_loop(h, g, n); return; }
    for (size_t i = 0, N = (size_t)n, vl; i < N; i += vl) {
        vl = __riscv_vsetvl_e32m8(N - i);
        vfloat32m8_t x = __riscv_vle32_v_f32m8(h + i, vl);
        vfloat32m8_t d = __riscv_vfadd_vf_f32m8(vexp(__riscv_vfneg_v_f32m8(x, vl), vl), 1.0f, vl);
        x = __riscv_vfmul_vv_f32m8(__riscv_vfdiv_vv_f32m8(x, d, vl), __riscv_vle32_v_f32m8(g + i, vl), vl);
        __riscv_vse32_v_f32m8(h + i, x, vl);
    }
}

/* Softmax of att[0..n) in place (run.c's for exact, the vector exp otherwise). */
static void softmax_att(float *att, size_t N, float max, int exact) {
    if (exact) {
        float sum = 0.0f;
        for (size_t t = 0; t < N; t++) { att[t] = expf(att[t] - max); sum += att[t]; }
        for (size_t t = 0; t < N; t++) att[t] /= sum;
        return;
    }
    vfloat32m1_t sum = __riscv_vfmv_v_f_f32m1(0.0f, 1);
    for (size_t t = 0, vl; t < N; t += vl) {
        vl = __riscv_vsetvl_e32m8(N - t);
        vfloat32m8_t e = vexp(__riscv_vfsub_vf_f32m8(__riscv_vle32_v_f32m8(att + t, vl), max, vl), vl);
        __riscv_vse32_v_f32m8(att + t, e, vl);
        sum = __riscv_vfredusum_vs_f32m8_f32m1(e, sum, vl);
    }
    float inv = 1.0f / __riscv_vfmv_f_s_f32m1_f32(sum);
    for (size_t t = 0, vl; t < N; t += vl) {
        vl = __riscv_vsetvl_e32m8(N - t);
        __riscv_vse32_v_f32m8(att + t, __riscv_vfmul_vf_f32m8(__riscv_vle32_v_f32m8(att + t, vl), inv, vl), vl);
    }
}

/* Heads of up to three e32m4 strips (48 at VLEN 128, stories15M's size): the products
 * of a position's strips are summed lane-wise (vfmacc) and reduced once, an m4
 * reduction where two m8 ones were needed; the C906 takes a vector instruction's time
 * from its LMUL, not its vl, so the m8 strips cost 2x for 32 lanes and 4x for the
 * 16-lane tail. The last strip may be short; every instruction on a strip uses its
 * own vl, which both ISAs execute alike. */
static void attention_m4(float *out, const float *q, const float *k, const float *v, size_t stride,
                         size_t H, size_t N, float scale, float *att, int exact) {
    size_t l4 = __riscv_vsetvlmax_e32m4();
    size_t la = H < l4 ? H : l4, lb = H - la < l4 ? H - la : l4, lc = H - la - lb;
    vfloat32m4_t qa = __riscv_vle32_v_f32m4(q, la), qb = qa, qc = qa;
    if (lb) qb = __riscv_vle32_v_f32m4(q + la, lb);
    if (lc) qc = __riscv_vle32_v_f32m4(q + la + lb, lc);
    vfloat32m1_t z = __riscv_vfmv_v_f_f32m1(0.0f, 1);
    float max = -INFINITY;
    for (size_t t = 0; t < N; t++) {
        const float *kt = k + t * stride;
        vfloat32m4_t p = __riscv_vfmul_vv_f32m4(__riscv_vle32_v_f32m4(kt, la), qa, la);
        if (lb == la) p = __riscv_vfmacc_vv_f32m4(p, __riscv_vle32_v_f32m4(kt + la, lb), qb, lb);
        if (lc == la) p = __riscv_vfmacc_vv_f32m4(p, __riscv_vle32_v_f32m4(kt + la + lb, lc), qc, lc);
        vfloat32m1_t sc = __riscv_vfredusum_vs_f32m4_f32m1(p, z, la);
        if (lb && lb < la) sc = __riscv_vfredusum_vs_f32m4_f32m1(__riscv_vfmul_vv_f32m4(__riscv_vle32_v_f32m4(kt + la, lb), qb, lb), sc, lb);
        if (lc && lc < la) sc = __riscv_vfredusum_vs_f32m4_f32m1(__riscv_vfmul_vv_f32m4(__riscv_vle32_v_f32m4(kt + la + lb, lc), qc, lc), sc, lc);
        float a = __riscv_vfmv_f_s_f32m1_f32(sc) / scale;
        att[t] = a;
        max = a > max ? a : max;
    }
    softmax_att(att, N, max, exact);
    vfloat32m4_t oa = __riscv_vfmv_v_f_f32m4(0.0f, la), ob = oa, oc = oa;
    if (lb) ob = __riscv_vfmv_v_f_f32m4(0.0f, lb);
    if (lc) oc = __riscv_vfmv_v_f_f32m4(0.0f, lc);
    for (size_t t = 0; t < N; t++) {
        const float *vt = v + t * stride;
        oa = __riscv_vfmacc_vf_f32m4(oa, att[t], __riscv_vle32_v_f32m4(vt, la), la);
        if (lb) ob = __riscv_vfmacc_vf_f32m4(ob, att[t], __riscv_vle32_v_f32m4(vt + la, lb), lb);
        if (lc) oc = __riscv_vfmacc_vf_f32m4(oc, att[t], __riscv_vle32_v_f32m4(vt + la + lb, lc), lc);
    }
    __riscv_vse32_v_f32m4(out, oa, la);
    if (lb) __riscv_vse32_v_f32m4(out + la, ob, lb);
    if (lc) __riscv_vse32_v_f32m4(out + la + lb, oc, lc);
}

/* One head of attention: q and the running weighted sum of values stay in registers
 * across positions (head sizes up to two e32m8 strips, 64 at VLEN 128). The second
 * strip may be short, but every instruction on it uses the same short vl and the same
 * element width, which both ISAs execute alike. */
static void attention(float *out, const float *q, const float *k, const float *v, size_t stride,
                      int hs, int n, float scale, float *att, int exact) {
    size_t vlmax = __riscv_vsetvlmax_e32m8(), H = (size_t)hs, N = (size_t)n;
    if (H <= 3 * __riscv_vsetvlmax_e32m4()) { attention_m4(out, q, k, v, stride, H, N, scale, att, exact); return; }
    if (H > 2 * vlmax) { sb_attention_loop(dot, axpy, out, q, k, v, stride, hs, n, scale, att); return; }
    size_t la = H < vlmax ? H : vlmax, lb = H - la;
    vfloat32m8_t qa = __riscv_vle32_v_f32m8(q, la), qb = qa;
    if (lb) qb = __riscv_vle32_v_f32m8(q + la, lb);
    vfloat32m1_t z = __riscv_vfmv_v_f_f32m1(0.0f, 1);
    float max = -INFINITY;
    for (int t = 0; t < n; t++) {
        const float *kt = k + (size_t)t * stride;
        vfloat32m1_t sc = __riscv_vfredusum_vs_f32m8_f32m1(__riscv_vfmul_vv_f32m8(__riscv_vle32_v_f32m8(kt, la), qa, la), z, la);
        if (lb) sc = __riscv_vfredusum_vs_f32m8_f32m1(__riscv_vfmul_vv_f32m8(__riscv_vle32_v_f32m8(kt + la, lb), qb, lb), sc, lb);
        float a = __riscv_vfmv_f_s_f32m1_f32(sc) / scale;
        att[t] = a;
        max = a > max ? a : max;
    }
    softmax_att(att, N, max, exact);
    vfloat32m8_t oa = __riscv_vfmv_v_f_f32m8(0.0f, la), ob = oa;
    if (lb) ob = __riscv_vfmv_v_f_f32m8(0.0f, lb);
    for (int t = 0; t < n; t++) {
        const float *vt = v + (size_t)t * stride;
        oa = __riscv_vfmacc_vf_f32m8(oa, att[t], __riscv_vle32_v_f32m8(vt, la), la);
        if (lb) ob = __riscv_vfmacc_vf_f32m8(ob, att[t], __riscv_vle32_v_f32m8(vt + la, lb), lb);
    }
    __riscv_vse32_v_f32m8(out, oa, la);
    if (lb) __riscv_vse32_v_f32m8(out + la, ob, lb);
}

/* ------------------------------------------------------------------ activations */

/* Per group: scale = absmax / 127, q = round-to-nearest-even(v / scale) exactly as
 * the scalar code (vfcvt.x.f uses the dynamic rounding mode, like lrintf), and the
 * group's sum of q for the 4-bit kernels. */
static void quantize_act(sb_qact *a, const float *v) {
    size_t gs = (size_t)a->gs;
    for (int g = 0; g < a->n / a->gs; g++) {
        const float *src = v + (size_t)g * gs;
        int8_t *dst = a->q + (size_t)g * gs;
        vfloat32m1_t m = __riscv_vfmv_v_f_f32m1(0.0f, 1);
        for (size_t i = 0, vl; i < gs; i += vl) {
            vl = __riscv_vsetvl_e32m8(gs - i);
            m = __riscv_vfredmax_vs_f32m8_f32m1(__riscv_vfabs_v_f32m8(__riscv_vle32_v_f32m8(src + i, vl), vl), m, vl);
        }
        float amax = __riscv_vfmv_f_s_f32m1_f32(m);
        float scale = amax / 127.0f;
        float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
        a->s[g] = scale;
        vint32m1_t sum = __riscv_vmv_v_x_i32m1(0, 1);
        size_t vlmax = __riscv_vsetvlmax_e32m8(), end = MIXED_TAILS ? gs : gs - gs % vlmax, i = 0;
        for (size_t vl; i < end; i += vl) {
            vl = __riscv_vsetvl_e32m8(end - i);
            vint32m8_t q32 = __riscv_vfcvt_x_f_v_i32m8(__riscv_vfmul_vf_f32m8(__riscv_vle32_v_f32m8(src + i, vl), inv, vl), vl);
            vint16m4_t q16 = __riscv_vnsra_wx_i16m4(q32, 0, vl);
            sum = __riscv_vwredsum_vs_i16m4_i32m1(q16, sum, vl);
            __riscv_vse8_v_i8m2(dst + i, __riscv_vnsra_wx_i8m2(q16, 0, vl), vl);
        }
        int32_t total = __riscv_vmv_x_s_i32m1_i32(sum);
        for (; i < gs; i++) {
            /* 1.5 * 2^23 rounds to nearest even like lrintf, for |v| <= 127.5 */
            int q = (int)((src[i] * inv + 12582912.0f) - 12582912.0f);
            dst[i] = (int8_t)q;
            total += q;
        }
        a->sum[g] = total;
        /* the same group maximum at 16 bits, for the blocked int8 matrices */
        float scale16 = amax / sb_q16_max(a->gs);
        float inv16 = scale16 > 0.0f ? 1.0f / scale16 : 0.0f;
        int16_t *d16 = a->q16 + (size_t)g * gs;
        a->s16[g] = scale16;
        for (i = 0; i < end;) {
            size_t vl = __riscv_vsetvl_e32m8(end - i);
            vint32m8_t q32 = __riscv_vfcvt_x_f_v_i32m8(__riscv_vfmul_vf_f32m8(__riscv_vle32_v_f32m8(src + i, vl), inv16, vl), vl);
            __riscv_vse16_v_i16m4(d16 + i, __riscv_vnsra_wx_i16m4(q32, 0, vl), vl);
            i += vl;
        }
        for (; i < gs; i++) d16[i] = (int16_t)((src[i] * inv16 + 12582912.0f) - 12582912.0f);
    }
}

/* ------------------------------------------------------------------ row-major int8 */

/* llama2.c Q8_0 files: per row and group, int8 x int8 -> int16 products reduced
 * straight into an int32 (vwredsum chains strips through its scalar operand). */
static void matvec_q8(float *out, const sb_qact *x, const sb_tensor *w) {
    size_t n = (size_t)w->cols, gs = (size_t)w->gs, groups = n / gs;
    size_t vlmax = __riscv_vsetvlmax_e8m2(), end = MIXED_TAILS ? gs : gs - gs % vlmax;
    const int8_t *q = (const int8_t *)w->q;
    const vint32m1_t zero = __riscv_vmv_v_x_i32m1(0, 1);
    if (gs % vlmax == 0) {
        /* whole strips only (llama2.c's groups of 32 or 64): one element width per
         * strip at vl = VLMAX, two rows per pass share each load of x */
        const float *xs = x->s;
        int i = 0;
        for (; i + 2 <= w->rows; i += 2) {
            const int8_t *r0 = q + (size_t)i * n, *r1 = r0 + n, *xg = x->q;
            const float *ws0 = w->s + (size_t)i * groups, *ws1 = ws0 + groups;
            float v0 = 0.0f, v1 = 0.0f;
            for (size_t g = 0; g < groups; g++) {
                vint32m1_t a0 = zero, a1 = zero;
                for (size_t j = 0; j < gs; j += vlmax, r0 += vlmax, r1 += vlmax, xg += vlmax) {
                    vint8m2_t xv = __riscv_vle8_v_i8m2(xg, vlmax);
                    a0 = __riscv_vwredsum_vs_i16m4_i32m1(__riscv_vwmul_vv_i16m4(__riscv_vle8_v_i8m2(r0, vlmax), xv, vlmax), a0, vlmax);
                    a1 = __riscv_vwredsum_vs_i16m4_i32m1(__riscv_vwmul_vv_i16m4(__riscv_vle8_v_i8m2(r1, vlmax), xv, vlmax), a1, vlmax);
                }
                v0 += (float)__riscv_vmv_x_s_i32m1_i32(a0) * xs[g] * ws0[g];
                v1 += (float)__riscv_vmv_x_s_i32m1_i32(a1) * xs[g] * ws1[g];
            }
            out[i] = v0;
            out[i + 1] = v1;
        }
        if (i < w->rows) { /* an odd last row */
            const int8_t *r = q + (size_t)i * n;
            float val = 0.0f;
            for (size_t g = 0; g < groups; g++) {
                int32_t isum = 0;
                for (size_t j = 0; j < gs; j++) isum += r[g * gs + j] * x->q[g * gs + j];
                val += (float)isum * xs[g] * w->s[(size_t)i * groups + g];
            }
            out[i] = val;
        }
        return;
    }
    for (int i = 0; i < w->rows; i++) {
        const int8_t *r = q + (size_t)i * n;
        const float *ws = w->s + (size_t)i * groups;
        float val = 0.0f;
        for (size_t g = 0; g < groups; g++) {
            const int8_t *rg = r + g * gs, *xg = x->q + g * gs;
            vint32m1_t acc = zero;
            size_t j = 0;
            for (size_t vl; j < end; j += vl) {
                vl = __riscv_vsetvl_e8m2(end - j);
                vint16m4_t p = __riscv_vwmul_vv_i16m4(__riscv_vle8_v_i8m2(rg + j, vl), __riscv_vle8_v_i8m2(xg + j, vl), vl);
                acc = __riscv_vwredsum_vs_i16m4_i32m1(p, acc, vl);
            }
            int32_t isum = __riscv_vmv_x_s_i32m1_i32(acc);
            for (; j < gs; j++) isum += rg[j] * xg[j];
            val += (float)isum * x->s[g] * ws[g];
        }
        out[i] = val;
    }
}

/* ------------------------------------------------------------------ blocked int8 */

/* vl = rows in this block (32, fewer in the last); v walks the [column][row] values;
 * activations are int16 (sb_qact). Each column is widened to int16 and multiplied
 * into the int32 accumulator by its activation with one vwmacc.vx. On the C906 the
 * widening is the load itself (th.vlb sign-extends bytes to 16-bit elements), so a
 * column costs one load and one vwmacc with no change of element width in the loop.
 * RVV 1.0 has no such load: a vsext.vf2 per column, and with `wide` (VLEN 128, a full
 * block) four columns come in one 128-byte e8m8 load whose m2 quarters are the
 * columns (GCC 14 copies such views for XTheadVector, so not there). */
static inline void q8_block(float *out, const sb_qact *x, const float *sc, const int8_t *v, size_t rr,
                            int gs, int groups, const int wide) {
    size_t vl = __riscv_vsetvl_e8m2(rr);
    const int16_t *xq = x->q16;
    const float *xs = x->s16;
    for (int g = 0; g < groups; g++, sc += rr) {
        vint32m8_t ia = __riscv_vmv_v_x_i32m8(0, vl);
        const int16_t *xe = xq + gs;
#if defined(__riscv_xtheadvector)
        (void)wide;
#define COL(c) __riscv_th_vlb_v_i16m4((const int16_t *)(const void *)(v + (c) * rr), vl)
#else
#define COL(c) __riscv_vsext_vf2_i16m4(__riscv_vle8_v_i8m2(v + (c) * rr, vl), vl)
#endif
#if defined(__riscv_xtheadvector)
        /* eight columns a pass: the loop's three bookkeeping instructions over 8 */
        for (; xq + 8 <= xe; xq += 8, v += 8 * rr) {
            ia = __riscv_vwmacc_vx_i32m8(ia, xq[0], COL(0), vl);
            ia = __riscv_vwmacc_vx_i32m8(ia, xq[1], COL(1), vl);
            ia = __riscv_vwmacc_vx_i32m8(ia, xq[2], COL(2), vl);
            ia = __riscv_vwmacc_vx_i32m8(ia, xq[3], COL(3), vl);
            ia = __riscv_vwmacc_vx_i32m8(ia, xq[4], COL(4), vl);
            ia = __riscv_vwmacc_vx_i32m8(ia, xq[5], COL(5), vl);
            ia = __riscv_vwmacc_vx_i32m8(ia, xq[6], COL(6), vl);
            ia = __riscv_vwmacc_vx_i32m8(ia, xq[7], COL(7), vl);
        }
#endif
        for (; xq + 4 <= xe; xq += 4, v += 4 * rr) {
#if !defined(__riscv_xtheadvector)
            if (wide) {
                vint8m8_t c = __riscv_vle8_v_i8m8(v, 4 * vl);
                ia = __riscv_vwmacc_vx_i32m8(ia, xq[0], __riscv_vsext_vf2_i16m4(__riscv_vget_v_i8m8_i8m2(c, 0), vl), vl);
                ia = __riscv_vwmacc_vx_i32m8(ia, xq[1], __riscv_vsext_vf2_i16m4(__riscv_vget_v_i8m8_i8m2(c, 1), vl), vl);
                ia = __riscv_vwmacc_vx_i32m8(ia, xq[2], __riscv_vsext_vf2_i16m4(__riscv_vget_v_i8m8_i8m2(c, 2), vl), vl);
                ia = __riscv_vwmacc_vx_i32m8(ia, xq[3], __riscv_vsext_vf2_i16m4(__riscv_vget_v_i8m8_i8m2(c, 3), vl), vl);
                continue;
            }
#endif
            ia = __riscv_vwmacc_vx_i32m8(ia, xq[0], COL(0), vl);
            ia = __riscv_vwmacc_vx_i32m8(ia, xq[1], COL(1), vl);
            ia = __riscv_vwmacc_vx_i32m8(ia, xq[2], COL(2), vl);
            ia = __riscv_vwmacc_vx_i32m8(ia, xq[3], COL(3), vl);
        }
        for (; xq < xe; xq++, v += rr) ia = __riscv_vwmacc_vx_i32m8(ia, xq[0], COL(0), vl);
#undef COL
        vfloat32m8_t f = __riscv_vfmul_vf_f32m8(__riscv_vfcvt_f_x_v_f32m8(ia, vl), xs[g], vl);
        f = __riscv_vfmul_vv_f32m8(f, __riscv_vle32_v_f32m8(sc, vl), vl);
        if (g) f = __riscv_vfadd_vv_f32m8(__riscv_vle32_v_f32m8(out, vl), f, vl);
        __riscv_vse32_v_f32m8(out, f, vl);
    }
}

/* Scalar blocks: the last, partial block of a matrix on XTheadVector (see the top). */
static void q8_block_scalar(float *out, const sb_qact *x, const float *sc, const int8_t *v, size_t rr, int gs, int groups) {
    for (size_t r = 0; r < rr; r++) {
        float acc = 0.0f;
        for (int g = 0; g < groups; g++) {
            int32_t ia = 0;
            for (int j = 0; j < gs; j++) ia += v[(size_t)(g * gs + j) * rr + r] * x->q16[g * gs + j];
            acc += ((float)ia * x->s16[g]) * sc[(size_t)g * rr + r];
        }
        out[r] = acc;
    }
}

/* Reads one byte of each 64-byte line of p[0..n). A block keeps its scales before
 * its values and the kernels read the two in alternation, so each block began a new
 * access stream 18 lines in, which a stream prefetcher (the C906's D-cache has one)
 * must learn again: c906sim charges the DRAM latency for its first lines, ~1 M cycles
 * a q8 token over 1560 blocks. Reading the scales in order first makes a matrix one
 * ascending run, and the scales are then in the cache when the groups need them. */
static inline void touch_lines(const void *p, size_t n) {
    for (size_t o = 0; o < n; o += 64) {
        unsigned char b = *((const volatile unsigned char *)p + o);
        (void)b;
    }
}

/* VLEN 128: 32 rows are one e8m2 group, a 64-lane e8m4 strip is exactly VLMAX. */
static int vlen128(void) { return __riscv_vsetvlmax_e8m2() == SB_RB; }

/* Whether a block of rr rows may take the vector code. */
static int vector_block(size_t rr) {
    return MIXED_TAILS || (rr == SB_RB && __riscv_vsetvlmax_e8m2() == SB_RB);
}

static void matvec_q8b(float *out, const sb_qact *x, const sb_tensor *w) {
    int gs = w->gs, groups = w->cols / gs, wide = MIXED_TAILS && vlen128();
    const unsigned char *blk = (const unsigned char *)w->q;
    for (int r0 = 0; r0 < w->rows; r0 += SB_RB) {
        size_t rr = (size_t)(w->rows - r0 < SB_RB ? w->rows - r0 : SB_RB);
        const float *sc = (const float *)blk;
        const int8_t *v = (const int8_t *)(blk + rr * groups * 4);
        touch_lines(sc, rr * groups * 4);
        if (rr == SB_RB && wide) q8_block(out + r0, x, sc, v, SB_RB, gs, groups, 1);
        else if (vector_block(rr)) q8_block(out + r0, x, sc, v, rr, gs, groups, 0);
        else q8_block_scalar(out + r0, x, sc, v, rr, gs, groups);
        blk += sb_block_bytes(w, (int)rr);
    }
}

/* ------------------------------------------------------------------ blocked 4-bit */

/* Nibbles are value + 8: multiply unsigned nibbles (vwmaccsu) and start each group's
 * int16 sum at -8 * sum(x) instead of re-centring every nibble. The true group sum
 * fits int16 when gs <= 32 and the arithmetic wraps, so partial sums may overflow
 * harmlessly. Wider groups are summed 32 columns at a time into int32. */
static void q4_block(float *out, const sb_qact *x, const float *sc, const uint8_t *v, size_t rr, int gs, int groups) {
    size_t vl = __riscv_vsetvl_e8m2(rr);
    int half = gs / 2;
    vfloat32m8_t acc = __riscv_vfmv_v_f_f32m8(0.0f, vl);
    for (int g = 0; g < groups; g++, sc += rr) {
        const int8_t *xq = x->q + (size_t)g * gs;
        vfloat32m8_t f;
        if (gs <= 32) {
            vint16m4_t ia = __riscv_vmv_v_x_i16m4((int16_t)(-8 * x->sum[g]), vl);
            for (int p = 0; p < half; p++, v += rr) {
                vuint8m2_t b = __riscv_vle8_v_u8m2(v, vl);
                ia = __riscv_vwmaccsu_vx_i16m4(ia, xq[p], __riscv_vand_vx_u8m2(b, 15, vl), vl);
                ia = __riscv_vwmaccsu_vx_i16m4(ia, xq[p + half], __riscv_vsrl_vx_u8m2(b, 4, vl), vl);
            }
            f = __riscv_vfwcvt_f_x_v_f32m8(ia, vl);
        } else {
            vint32m8_t ia = __riscv_vmv_v_x_i32m8(0, vl);
            for (int p0 = 0; p0 < half; p0 += 16) {
                int pe = p0 + 16 < half ? p0 + 16 : half, xs = 0;
                for (int p = p0; p < pe; p++) xs += xq[p] + xq[p + half];
                vint16m4_t i16 = __riscv_vmv_v_x_i16m4((int16_t)(-8 * xs), vl);
                for (int p = p0; p < pe; p++, v += rr) {
                    vuint8m2_t b = __riscv_vle8_v_u8m2(v, vl);
                    i16 = __riscv_vwmaccsu_vx_i16m4(i16, xq[p], __riscv_vand_vx_u8m2(b, 15, vl), vl);
                    i16 = __riscv_vwmaccsu_vx_i16m4(i16, xq[p + half], __riscv_vsrl_vx_u8m2(b, 4, vl), vl);
                }
                ia = __riscv_vwadd_wv_i32m8(ia, i16, vl);
            }
            f = __riscv_vfcvt_f_x_v_f32m8(ia, vl);
        }
        f = __riscv_vfmul_vf_f32m8(f, x->s[g], vl);
        acc = __riscv_vfadd_vv_f32m8(acc, __riscv_vfmul_vv_f32m8(f, __riscv_vle32_v_f32m8(sc, vl), vl), vl);
    }
    __riscv_vse32_v_f32m8(out, acc, vl);
}

/* The hot path for full blocks and groups of 4..32 (the classifier): 64 lanes at a
 * time, two byte columns of the block (32 rows each) per e8m4 load, multiplied by a
 * vector that holds each column's activation 32 times (x->bcast, built once per call),
 * so one vwmaccsu.vv does what two .vx did. Lane r and lane r + 32 each hold half of
 * row r's group sum, folded at the end of the group. */
static void splat_pairs(const sb_qact *x) {
    const size_t vl = SB_RB;
    int gs = x->gs, half = gs / 2;
    int8_t *d = x->bcast;
    for (int g = 0; g < x->n / gs; g++) {
        const int8_t *xq = x->q + (size_t)g * gs;
        for (int p = 0; p < half; p += 2, d += 4 * SB_RB) {
            __riscv_vse8_v_i8m2(d, __riscv_vmv_v_x_i8m2(xq[p], vl), vl);
            __riscv_vse8_v_i8m2(d + SB_RB, __riscv_vmv_v_x_i8m2(xq[p + 1], vl), vl);
            __riscv_vse8_v_i8m2(d + 2 * SB_RB, __riscv_vmv_v_x_i8m2(xq[p + half], vl), vl);
            __riscv_vse8_v_i8m2(d + 3 * SB_RB, __riscv_vmv_v_x_i8m2(xq[p + half + 1], vl), vl);
        }
    }
}

static void q4_block64(float *out, const sb_qact *x, const float *sc, const uint8_t *v, int gs, int groups) {
    const size_t vl = 2 * SB_RB, vh = SB_RB;
    const int8_t *xb = x->bcast;
    const int32_t *xsum = x->sum;   /* locals: the stores to out could alias x's fields */
    const float *xs = x->s;
    int16_t fold[2 * SB_RB];
    for (int g = 0; g < groups; g++, sc += SB_RB) {
        vint16m8_t ia = __riscv_vmv_v_x_i16m8((int16_t)(-4 * xsum[g]), vl);
        for (const uint8_t *end = v + (size_t)gs / 4 * vl; v < end; v += vl, xb += 2 * vl) {
            vuint8m4_t b = __riscv_vle8_v_u8m4(v, vl);
            ia = __riscv_vwmaccsu_vv_i16m8(ia, __riscv_vle8_v_i8m4(xb, vl), __riscv_vand_vx_u8m4(b, 15, vl), vl);
            ia = __riscv_vwmaccsu_vv_i16m8(ia, __riscv_vle8_v_i8m4(xb + vl, vl), __riscv_vsrl_vx_u8m4(b, 4, vl), vl);
        }
        __riscv_vse16_v_i16m8(fold, ia, vl);
        vint16m4_t s = __riscv_vadd_vv_i16m4(__riscv_vle16_v_i16m4(fold, vh), __riscv_vle16_v_i16m4(fold + SB_RB, vh), vh);
        vfloat32m8_t f = __riscv_vfmul_vf_f32m8(__riscv_vfwcvt_f_x_v_f32m8(s, vh), xs[g], vh);
        f = __riscv_vfmul_vv_f32m8(f, __riscv_vle32_v_f32m8(sc, vh), vh);
        if (g) f = __riscv_vfadd_vv_f32m8(__riscv_vle32_v_f32m8(out, vh), f, vh);
        __riscv_vse32_v_f32m8(out, f, vh);
    }
}


static void q4_block_scalar(float *out, const sb_qact *x, const float *sc, const uint8_t *v, size_t rr, int gs, int groups) {
    int half = gs / 2;
    for (size_t r = 0; r < rr; r++) {
        float acc = 0.0f;
        for (int g = 0; g < groups; g++) {
            const int8_t *xq = x->q + (size_t)g * gs;
            int32_t ia = -8 * x->sum[g];
            for (int p = 0; p < half; p++) {
                unsigned b = v[(size_t)(g * half + p) * rr + r];
                ia += (int)(b & 15) * xq[p] + (int)(b >> 4) * xq[p + half];
            }
            acc += ((float)ia * x->s[g]) * sc[(size_t)g * rr + r];
        }
        out[r] = acc;
    }
}

static void matvec_q4b(float *out, const sb_qact *x, const sb_tensor *w) {
    int gs = w->gs, groups = w->cols / gs, wide = gs <= 32 && gs % 4 == 0 && (MIXED_TAILS || vlen128()) && Q4_WIDE;
    if (wide) splat_pairs(x);
    const unsigned char *blk = (const unsigned char *)w->q;
    for (int r0 = 0; r0 < w->rows; r0 += SB_RB) {
        size_t rr = (size_t)(w->rows - r0 < SB_RB ? w->rows - r0 : SB_RB);
        const float *sc = (const float *)blk;
        const uint8_t *v = blk + rr * groups * 4;
        touch_lines(sc, rr * groups * 4);
        if (rr == SB_RB && wide) q4_block64(out + r0, x, sc, v, gs, groups);
        else if (vector_block(rr)) q4_block(out + r0, x, sc, v, rr, gs, groups);
        else q4_block_scalar(out + r0, x, sc, v, rr, gs, groups);
        blk += sb_block_bytes(w, (int)rr);
    }
}

/* ------------------------------------------------------------------ sampler passes */

/* Over the 32,000 logits of every sampled token. Full VLMAX strips run in vector
 * registers and any tail (none for a 32,000-token vocabulary) in scalar code, so masks,
 * vfirst, vcpop and vcompress never meet a short vl on either ISA. */
static float vmax(const float *x, int n) {
    size_t vl = __riscv_vsetvlmax_e32m8(), N = (size_t)n, i = 0;
    float m = x[0];
    if (N >= vl) {
        vfloat32m8_t acc = __riscv_vle32_v_f32m8(x, vl);
        for (i = vl; i + vl <= N; i += vl) acc = __riscv_vfmax_vv_f32m8(acc, __riscv_vle32_v_f32m8(x + i, vl), vl);
        m = __riscv_vfmv_f_s_f32m1_f32(__riscv_vfredmax_vs_f32m8_f32m1(acc, __riscv_vfmv_v_f_f32m1(m, 1), vl));
    }
    for (; i < N; i++) if (x[i] > m) m = x[i];
    return m;
}

static int vfirst_ge(const float *x, int n, float v) {
    size_t vl = __riscv_vsetvlmax_e32m8(), N = (size_t)n, i = 0;
    for (; i + vl <= N; i += vl) {
        long f = __riscv_vfirst_m_b4(__riscv_vmfge_vf_f32m8_b4(__riscv_vle32_v_f32m8(x + i, vl), v, vl), vl);
        if (f >= 0) return (int)(i + (size_t)f);
    }
    for (; i < N; i++) if (x[i] >= v) return (int)i;
    return n;
}

/* Top-p's pre-filter: most strips hold no candidate and cost five instructions; the
 * others hand their indices over with one vcompress. */
static int vcollect_ge(const float *x, int n, float v, int *idx) {
    size_t vl = __riscv_vsetvlmax_e32m8(), N = (size_t)n, i = 0;
    int c = 0;
    vuint32m8_t lane = __riscv_vid_v_u32m8(vl);
    for (; i + vl <= N; i += vl) {
        vbool4_t m = __riscv_vmfge_vf_f32m8_b4(__riscv_vle32_v_f32m8(x + i, vl), v, vl);
        size_t k = (size_t)__riscv_vcpop_m_b4(m, vl);
        if (!k) continue;
        vuint32m8_t id = __riscv_vcompress_vm_u32m8(__riscv_vadd_vx_u32m8(lane, (uint32_t)i, vl), m, vl);
        __riscv_vse32_v_u32m8((uint32_t *)idx + c, id, k);
        c += (int)k;
    }
    for (; i < N; i++) if (x[i] >= v) idx[c++] = (int)i;
    return c;
}

/* The mass of the head above v: lanes below v are merged to zero, then summed per lane. */
static float vsum_ge(const float *x, int n, float v) {
    size_t vl = __riscv_vsetvlmax_e32m8(), N = (size_t)n, i = 0;
    float sum = 0.0f;
    if (N >= vl) {
        vfloat32m8_t acc = __riscv_vfmv_v_f_f32m8(0.0f, vl);
        for (; i + vl <= N; i += vl) {
            vfloat32m8_t a = __riscv_vle32_v_f32m8(x + i, vl);
            acc = __riscv_vfadd_vv_f32m8(acc, __riscv_vfmerge_vfm_f32m8(a, 0.0f, __riscv_vmflt_vf_f32m8_b4(a, v, vl), vl), vl);
        }
        sum = __riscv_vfmv_f_s_f32m1_f32(__riscv_vfredusum_vs_f32m8_f32m1(acc, __riscv_vfmv_v_f_f32m1(0.0f, 1), vl));
    }
    for (; i < N; i++) if (x[i] >= v) sum += x[i];
    return sum;
}

/* Softmax numerators for quantised models: vexp, and the sum kept per lane until one
 * reduction at the end. */
static float vexp_sum(float *x, int n, float max, float inv_t) {
    size_t vlmax = __riscv_vsetvlmax_e32m8(), N = (size_t)n, i = 0;
    vfloat32m1_t sum = __riscv_vfmv_v_f_f32m1(0.0f, 1);
    if (N >= vlmax) {
        vfloat32m8_t acc = __riscv_vfmv_v_f_f32m8(0.0f, vlmax);
        for (; i + vlmax <= N; i += vlmax) {
            vfloat32m8_t d = __riscv_vfmul_vf_f32m8(__riscv_vfsub_vf_f32m8(__riscv_vle32_v_f32m8(x + i, vlmax), max, vlmax), inv_t, vlmax);
            vfloat32m8_t e = vexp(d, vlmax);
            __riscv_vse32_v_f32m8(x + i, e, vlmax);
            acc = __riscv_vfadd_vv_f32m8(acc, e, vlmax);
        }
        sum = __riscv_vfredusum_vs_f32m8_f32m1(acc, sum, vlmax);
    }
    if (i < N) {
        size_t vl = __riscv_vsetvl_e32m8(N - i);
        vfloat32m8_t d = __riscv_vfmul_vf_f32m8(__riscv_vfsub_vf_f32m8(__riscv_vle32_v_f32m8(x + i, vl), max, vl), inv_t, vl);
        vfloat32m8_t e = vexp(d, vl);
        __riscv_vse32_v_f32m8(x + i, e, vl);
        sum = __riscv_vfredusum_vs_f32m8_f32m1(e, sum, vl);
    }
    return __riscv_vfmv_f_s_f32m1_f32(sum);
}

static const sb_ops rvv = {
#if defined(__riscv_xtheadvector)
    .name = "xtheadvector",
#else
    .name = "rvv1.0",
#endif
    .matvec_f32 = matvec_f32,
    .matvec_q8 = matvec_q8,
    .matvec_q8b = matvec_q8b,
    .matvec_q4b = matvec_q4b,
    .quantize_act = quantize_act,
    .dot = dot,
    .axpy = axpy,
    .rmsnorm = rmsnorm,
    .attention = attention,
    .silu_mul = silu_mul,
    .max = vmax,
    .first_ge = vfirst_ge,
    .collect_ge = vcollect_ge,
    .exp_sum = vexp_sum,
    .sum_ge = vsum_ge,
};

const sb_ops *sb_ops_fast(void) { return &rvv; }
const char *sb_ops_fast_isa(void) { return rvv.name; }
#endif

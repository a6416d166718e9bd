/* forward.c -- one transformer step (llama2.c semantics) through the ops table.
 *
 * All buffers are allocated once per session; a step allocates nothing. */
#define _DEFAULT_SOURCE /* madvise */
#include "sb_internal.h"
#include "guard.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct sb_session {
    const sb_model *m;
    const sb_ops *ops;
    int kernel, flags;
    float *x, *xb, *xb2, *hb, *hb2, *q, *k, *v, *att, *logits;
    float *rope_cos, *rope_sin;
    void *kcache, *vcache;     /* float or uint16_t (fp16) per SB_SESSION_KV_F16 */
    sb_qact qa;                /* quantised copy of whichever vector feeds the next matrices */
    size_t bytes;
    size_t page;               /* for LOW_RSS page releases */
    void *block;
};

static size_t align16(size_t n) { return (n + 15) & ~(size_t)15; }

int sb_session_new(const sb_model *m, int kernel, int flags, sb_session **out, sb_error *err) {
    if (err) { err->code = 0; err->message[0] = 0; }
    if (!m || !out) return sb_fail(err, SB_ERR_ARG, "sb_session_new needs a model and an output pointer");
    *out = NULL;
    if (kernel != SB_KERNEL_NAIVE && kernel != SB_KERNEL_FAST) return sb_fail(err, SB_ERR_ARG, "unknown kernel %d (0 naive, 1 fast)", kernel);
    if (flags & ~(SB_SESSION_KV_F16 | SB_SESSION_LOW_RSS)) return sb_fail(err, SB_ERR_ARG, "unknown session flags 0x%x", flags);
    const sb_config *c = &m->cfg;
    size_t dim = (size_t)c->dim, hid = (size_t)c->hidden_dim, kv = dim / (size_t)c->n_heads * (size_t)c->n_kv_heads;
    size_t hs = dim / (size_t)c->n_heads;
    size_t kvelt = (flags & SB_SESSION_KV_F16) ? 2 : 4;
    size_t cache = (size_t)c->n_layers * (size_t)c->seq_len * kv * kvelt;
    size_t maxn = dim > hid ? dim : hid;
    size_t sizes[] = {
        dim * 4, dim * 4, dim * 4, hid * 4, hid * 4, dim * 4, kv * 4, kv * 4,
        (size_t)c->n_heads * (size_t)c->seq_len * 4, (size_t)c->vocab_size * 4,
        hs / 2 * 4, hs / 2 * 4, cache, cache, maxn, maxn * 4, maxn * 4, maxn * 2, maxn * 4, maxn * SB_RB /* qa.q, .s, .sum, .q16, .s16, .bcast */
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) total += align16(sizes[i]);
    struct sb_session *s = calloc(1, sizeof *s);
    char *b = s ? calloc(1, total) : NULL;
    if (!b) { free(s); return sb_fail(err, SB_ERR_NOMEM, "out of memory: a session for this model needs %zu KB", total / 1024); }
    void **slots[] = {
        (void **)&s->x, (void **)&s->xb, (void **)&s->xb2, (void **)&s->hb, (void **)&s->hb2,
        (void **)&s->q, (void **)&s->k, (void **)&s->v, (void **)&s->att, (void **)&s->logits,
        (void **)&s->rope_cos, (void **)&s->rope_sin, &s->kcache, &s->vcache,
        (void **)&s->qa.q, (void **)&s->qa.s, (void **)&s->qa.sum, (void **)&s->qa.q16, (void **)&s->qa.s16, (void **)&s->qa.bcast
    };
    size_t off = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) { *slots[i] = b + off; off += align16(sizes[i]); }
    s->block = b;
    s->bytes = total + sizeof *s;
    s->m = m;
    s->kernel = kernel;
    s->flags = flags;
    long pg = sysconf(_SC_PAGESIZE);
    s->page = pg > 0 ? (size_t)pg : 4096;
    s->ops = kernel == SB_KERNEL_FAST ? sb_ops_fast() : &sb_ops_naive;
    *out = s;
    return SB_OK;
}

void sb_session_free(sb_session *s) {
    if (!s) return;
    free(s->block);
    free(s);
}

int sb_session_kernel(const sb_session *s) { return s ? s->kernel : -1; }
const sb_ops *sb_session_ops(const sb_session *s) { return s->ops; }
int sb_session_exact(const sb_session *s) { return s->m->cfg.format == SB_FMT_F32; }
const char *sb_isa(void) { return sb_ops_fast_isa(); }
size_t sb_session_bytes(const sb_session *s) { return s ? s->bytes : 0; }

/* out = W x, quantising x first when W is quantised. Matrices that read the same
 * vector come in a row, so the quantised copy is made once and reused. */
/* Rows [r0, r1) of a matrix as a matrix of its own (r0 a multiple of SB_RB). */
static sb_tensor rows_of(const sb_tensor *w, int r0, int r1) {
    sb_tensor t = *w;
    t.rows = r1 - r0;
    if (w->type == SB_W_F32) t.q = (const float *)w->q + (size_t)r0 * w->cols;
    else if (w->blocked) t.q = (const char *)w->q + (size_t)(r0 / SB_RB) * sb_block_bytes(w, SB_RB);
    else {
        t.q = (const int8_t *)w->q + (size_t)r0 * w->cols;
        t.s = w->s + (size_t)r0 * (w->cols / w->gs);
    }
    return t;
}

/* Drops the whole pages inside [p, p + n) from this process's mapping; the file's
 * pages stay in the page cache for the next step. */
static void release(const void *p, size_t n, size_t page) {
    uintptr_t a = ((uintptr_t)p + page - 1) & ~(uintptr_t)(page - 1);
    uintptr_t b = ((uintptr_t)p + n) & ~(uintptr_t)(page - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

static void release_tensor(const sb_tensor *t, size_t page) {
    size_t n = (size_t)t->rows * (size_t)t->cols;
    if (t->type == SB_W_F32) release(t->q, n * 4, page);
    else if (t->blocked) {
        size_t full = (size_t)t->rows / SB_RB, rest = (size_t)t->rows % SB_RB;
        release(t->q, full * sb_block_bytes(t, SB_RB) + (rest ? sb_block_bytes(t, (int)rest) : 0), page);
    } else {
        release(t->q, n, page);
        release(t->s, n / (size_t)t->gs * 4, page);
    }
}

static void linear1(sb_session *s, float *out, const float *x, const sb_tensor *w, int *fresh);

/* In LOW_RSS sessions a matrix is read in slices of rows, each released after use,
 * so the classifier (60 % of the bytes) is never resident all at once. */
#define SB_SLICE_ROWS 1024
static void linear(sb_session *s, float *out, const float *x, const sb_tensor *w, int *fresh) {
    if (!(s->flags & SB_SESSION_LOW_RSS)) { linear1(s, out, x, w, fresh); return; }
    for (int r0 = 0; r0 < w->rows; r0 += SB_SLICE_ROWS) {
        int r1 = r0 + SB_SLICE_ROWS < w->rows ? r0 + SB_SLICE_ROWS : w->rows;
        sb_tensor t = rows_of(w, r0, r1);
        linear1(s, out + r0, x, &t, fresh);
        release_tensor(&t, s->page);
    }
}

static void linear1(sb_session *s, float *out, const float *x, const sb_tensor *w, int *fresh) {
    switch (w->type) {
    case SB_W_F32:
        s->ops->matvec_f32(out, x, (const float *)w->q, w->cols, w->rows);
        return;
    case SB_W_Q8:
    case SB_W_Q4:
        if (!*fresh || s->qa.n != w->cols || s->qa.gs != w->gs) {
            s->qa.n = w->cols;
            s->qa.gs = w->gs;
            s->ops->quantize_act(&s->qa, x);
            *fresh = 1;
        }
        if (w->type == SB_W_Q4) s->ops->matvec_q4b(out, &s->qa, w);
        else if (w->blocked) s->ops->matvec_q8b(out, &s->qa, w);
        else s->ops->matvec_q8(out, &s->qa, w);
        return;
    }
}

static void kv_store(sb_session *s, size_t at, const float *src, size_t n, int which) {
    if (s->flags & SB_SESSION_KV_F16) {
        uint16_t *d = (uint16_t *)(which ? s->vcache : s->kcache) + at;
        for (size_t i = 0; i < n; i++) d[i] = sb_f32_to_f16(src[i]);
    } else {
        memcpy((float *)(which ? s->vcache : s->kcache) + at, src, n * sizeof *src);
    }
}

static const float *kv_row(sb_session *s, size_t at, size_t n, int which, float *tmp) {
    if (s->flags & SB_SESSION_KV_F16) {
        const uint16_t *p = (const uint16_t *)(which ? s->vcache : s->kcache) + at;
        for (size_t i = 0; i < n; i++) tmp[i] = sb_f16_to_f32(p[i]);
        return tmp;
    }
    return (const float *)(which ? s->vcache : s->kcache) + at;
}

static void step(sb_session *s, int token, int pos);

int sb_forward(sb_session *s, int token, int pos, float **logits) {
    if (!s) return SB_ERR_ARG;
    const sb_config *c = &s->m->cfg;
    if (token < 0 || token >= c->vocab_size || pos < 0 || pos >= c->seq_len) return SB_ERR_ARG;
    sb_guard g;
    if (sigsetjmp(g.jb, 0)) return sb_guard_fault(&g);
    sb_guard_enter(&g);
    step(s, token, pos);
    sb_guard_leave(&g);
    if (logits) *logits = s->logits;
    return SB_OK;
}

/* The transformer itself; reads the mapped weights, so only ever runs guarded. */
static void step(sb_session *s, int token, int pos) {
    const sb_model *m = s->m;
    const sb_config *c = &m->cfg;
    const sb_ops *ops = s->ops;
    const int dim = c->dim, hid = c->hidden_dim, hs = dim / c->n_heads;
    const int kv = hs * c->n_kv_heads, kv_mul = c->n_heads / c->n_kv_heads;
    float *x = s->x;

    sb_tensor_row(&m->tok, token, x);

    /* rotary angles depend only on pos and the pair index: compute once per step
     * with run.c's expressions so the values are bit-identical */
    for (int i = 0; i < hs; i += 2) {
        float freq = 1.0f / powf(10000.0f, i / (float)hs);
        float val = pos * freq;
        s->rope_cos[i / 2] = cosf(val);
        s->rope_sin[i / 2] = sinf(val);
    }
    const float scale = sqrtf((float)hs);
    /* fp32 models keep run.c's arithmetic to the token; quantised ones are already
     * approximate, and a table may use a faster exp there */
    const int exact = c->format == SB_FMT_F32;

    for (int l = 0; l < c->n_layers; l++) {
        size_t loff = (size_t)l * c->seq_len * kv;
        int fresh = 0;
        ops->rmsnorm(s->xb, x, m->rms_att + (size_t)l * dim, dim);
        linear(s, s->q, s->xb, &m->wq[l], &fresh);
        linear(s, s->k, s->xb, &m->wk[l], &fresh);
        linear(s, s->v, s->xb, &m->wv[l], &fresh);

        for (int i = 0; i < dim; i += 2) {
            int p = (i % hs) / 2;
            float fr = s->rope_cos[p], fi = s->rope_sin[p];
            float q0 = s->q[i], q1 = s->q[i + 1];
            s->q[i] = q0 * fr - q1 * fi;
            s->q[i + 1] = q0 * fi + q1 * fr;
            if (i < kv) {
                float k0 = s->k[i], k1 = s->k[i + 1];
                s->k[i] = k0 * fr - k1 * fi;
                s->k[i + 1] = k0 * fi + k1 * fr;
            }
        }
        /* The cache is head-major, [layer][kv head][position][hs]: a head's keys and
         * values for every position are one contiguous run, so attention reads each as
         * one stream (the C906's D-cache prefetcher follows ascending streams; reading
         * a 48-float slice of every 288-float row was a new stream per position). */
        for (int kh = 0; kh < c->n_kv_heads; kh++) {
            size_t at = loff + ((size_t)kh * c->seq_len + (size_t)pos) * hs;
            kv_store(s, at, s->k + (size_t)kh * hs, (size_t)hs, 0);
            kv_store(s, at, s->v + (size_t)kh * hs, (size_t)hs, 1);
        }

        for (int h = 0; h < c->n_heads; h++) {
            const float *q = s->q + (size_t)h * hs;
            float *att = s->att + (size_t)h * c->seq_len;
            size_t hoff = (size_t)(h / kv_mul) * c->seq_len * hs;
            if (!(s->flags & SB_SESSION_KV_F16)) {
                ops->attention(s->xb + (size_t)h * hs, q, (const float *)s->kcache + loff + hoff,
                               (const float *)s->vcache + loff + hoff, (size_t)hs, hs, pos + 1, scale, att, exact);
                continue;
            }
            /* half-precision cache: the same steps, one converted row at a time */
            for (int t = 0; t <= pos; t++) {
                const float *k = kv_row(s, loff + hoff + (size_t)t * hs, (size_t)hs, 0, s->xb2);
                att[t] = ops->dot(q, k, hs) / scale;
            }
            float max = att[0];
            for (int t = 1; t <= pos; t++) if (att[t] > max) max = att[t];
            float sum = 0.0f;
            for (int t = 0; t <= pos; t++) { att[t] = expf(att[t] - max); sum += att[t]; }
            for (int t = 0; t <= pos; t++) att[t] /= sum;
            float *xb = s->xb + (size_t)h * hs;
            memset(xb, 0, (size_t)hs * sizeof *xb);
            for (int t = 0; t <= pos; t++) {
                const float *v = kv_row(s, loff + hoff + (size_t)t * hs, (size_t)hs, 1, s->xb2);
                ops->axpy(xb, att[t], v, hs);
            }
        }
        fresh = 0;
        linear(s, s->xb2, s->xb, &m->wo[l], &fresh);
        for (int i = 0; i < dim; i++) x[i] += s->xb2[i];

        fresh = 0;
        ops->rmsnorm(s->xb, x, m->rms_ffn + (size_t)l * dim, dim);
        linear(s, s->hb, s->xb, &m->w1[l], &fresh);
        linear(s, s->hb2, s->xb, &m->w3[l], &fresh);
        ops->silu_mul(s->hb, s->hb2, hid, exact);
        fresh = 0;
        linear(s, s->xb, s->hb, &m->w2[l], &fresh);
        for (int i = 0; i < dim; i++) x[i] += s->xb[i];
    }
    ops->rmsnorm(x, x, m->rms_final, dim);
    int fresh = 0;
    linear(s, s->logits, x, &m->wcls, &fresh);
}

void sb_tensor_row(const sb_tensor *t, int row, float *out) {
    size_t n = (size_t)t->cols, base = (size_t)row * n;
    switch (t->type) {
    case SB_W_F32:
        memcpy(out, (const float *)t->q + base, n * sizeof *out);
        return;
    case SB_W_Q8:
    case SB_W_Q4:
        break;
    default:
        return;
    }
    size_t gs = (size_t)t->gs, half = gs / 2;
    if (!t->blocked) { /* row-major int8 (llama2.c Q8_0) */
        const int8_t *q = (const int8_t *)t->q + base;
        const float *sc = t->s + base / gs;
        for (size_t i = 0; i < n; i++) out[i] = q[i] * sc[i / gs];
        return;
    }
    /* blocked: this row is lane r of its block, every value SB_RB (or rr) bytes apart */
    int b = row / SB_RB, r = row % SB_RB, rr = t->rows - b * SB_RB < SB_RB ? t->rows - b * SB_RB : SB_RB;
    const unsigned char *blk = (const unsigned char *)t->q + (size_t)b * sb_block_bytes(t, SB_RB);
    const float *sc = (const float *)blk;
    const unsigned char *v = blk + (size_t)rr * (n / gs) * sizeof(float);
    for (size_t g = 0; g < n / gs; g++) {
        float s = sc[g * (size_t)rr + (size_t)r];
        float *o = out + g * gs;
        if (t->type == SB_W_Q8) {
            const int8_t *q = (const int8_t *)v + g * gs * (size_t)rr + (size_t)r;
            for (size_t j = 0; j < gs; j++) o[j] = q[j * (size_t)rr] * s;
        } else {
            const unsigned char *q = v + g * half * (size_t)rr + (size_t)r;
            for (size_t j = 0; j < half; j++) {
                unsigned byte = q[j * (size_t)rr];
                o[j] = (float)((int)(byte & 15) - 8) * s;
                o[j + half] = (float)((int)(byte >> 4) - 8) * s;
            }
        }
    }
}

/* IEEE half conversion with round-to-nearest-even; subnormals kept. */
uint16_t sb_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t mant = x & 0x7FFFFFu;
    int exp = (int)((x >> 23) & 0xFF);
    if (exp == 0xFF) return (uint16_t)(sign | 0x7C00u | (mant ? 0x200u : 0));
    int e = exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7C00u);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;
        mant |= 0x800000u;
        int shift = 14 - e;
        uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)e << 10) | (mant >> 13), rem = mant & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

float sb_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1F, mant = h & 0x3FFu, x;
    if (exp == 0) {
        if (!mant) x = sign;
        else {
            int e = -1;
            do { mant <<= 1; e++; } while (!(mant & 0x400u));
            x = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3FFu) << 13);
        }
    } else if (exp == 31) x = sign | 0x7F800000u | (mant << 13);
    else x = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    float f;
    memcpy(&f, &x, 4);
    return f;
}

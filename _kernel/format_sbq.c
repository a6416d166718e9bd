/* format_sbq.c -- storybot's own quantised files (SBQ1, q8 and q8q4): reading them,
 * and writing them from an fp32 checkpoint (sb_quantize). The byte layout is described
 * in docs/formats.md; every size is checked against the mapping before use. */
#define _POSIX_C_SOURCE 200809L
#include "formats.h"
#include "guard.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 2: matrices in SB_RB-row blocks. Version 1 (row-major) never left development, but
 * its files still sit in caches; refusing them beats misreading them. */
#define SBQ_VERSION 2u
#define SBQ_HEADER 256
#define SBQ_ALIGN 64

enum { CLS_Q8 = 1, CLS_Q4 = 2 };

/* ---------------------------------------------------------------- SBQ1 */

typedef struct {
    uint32_t magic, version;
    int32_t shape[7];          /* dim hidden layers heads kv_heads vocab seq */
    uint32_t flags;            /* bit 0: classifier shared with the token table */
    uint32_t format;           /* sb_format: 2 q8, 3 q8 + q4 classifier */
    uint32_t gs_dim, gs_hid, gs_cls;
    uint32_t cls_type;         /* 1 q8, 2 q4 */
    uint64_t file_bytes;
} sbq_header;

static int64_t pad(int64_t n) { return (n + SBQ_ALIGN - 1) / SBQ_ALIGN * SBQ_ALIGN; }

static int64_t sbq_size(const sb_config *c, int gs_dim, int gs_hid, int gs_cls, int cls_type) {
    int64_t dim = c->dim, hid = c->hidden_dim, L = c->n_layers, V = c->vocab_size;
    int64_t kv = dim / c->n_heads * c->n_kv_heads;
    int ct = cls_type == CLS_Q4 ? SB_W_Q4 : SB_W_Q8;
    int64_t n = SBQ_HEADER;
    n += pad(L * dim * 4) * 2 + pad(dim * 4);
    n += pad(sb_weight_bytes(ct, V * dim, gs_cls));                      /* token table (= classifier if shared) */
    n += L * (2 * pad(sb_weight_bytes(SB_W_Q8, dim * dim, gs_dim)) + 2 * pad(sb_weight_bytes(SB_W_Q8, kv * dim, gs_dim))
              + 2 * pad(sb_weight_bytes(SB_W_Q8, hid * dim, gs_dim)) + pad(sb_weight_bytes(SB_W_Q8, dim * hid, gs_hid)));
    if (!c->shared_classifier) n += pad(sb_weight_bytes(ct, V * dim, gs_cls));
    return n;
}

static int check_gs(int gs, int n, const char *what, sb_error *err) {
    if (gs <= 0 || gs % 2 || n % gs)
        return sb_fail(err, SB_ERR_CONFIG, "group size %d for %s does not divide its width %d into even groups", gs, what, n);
    return SB_OK;
}

int sb_load_sbq(struct sb_model *m, sb_error *err) {
    sb_config *c = &m->cfg;
    if (m->map_len < SBQ_HEADER) return sb_fail(err, SB_ERR_TRUNCATED, "the storybot model is only %zu bytes, shorter than its 256-byte header; it is truncated", m->map_len);
    sbq_header h;
    memcpy(&h, m->map, sizeof h);
    if (h.version != SBQ_VERSION) return sb_fail(err, SB_ERR_FORMAT, "the storybot model file has format version %u, but this build reads version %u; quantise it again with this storybot", h.version, SBQ_VERSION);
    c->dim = h.shape[0]; c->hidden_dim = h.shape[1]; c->n_layers = h.shape[2]; c->n_heads = h.shape[3];
    c->n_kv_heads = h.shape[4]; c->vocab_size = h.shape[5]; c->seq_len = h.shape[6];
    c->shared_classifier = h.flags & 1;
    int rc = sb_validate_shape(c, err);
    if (rc) return rc;
    if (h.flags & ~1u) return sb_fail(err, SB_ERR_FORMAT, "the storybot model header has unknown flags 0x%x", h.flags);
    if (!((h.format == SB_FMT_Q8 && h.cls_type == CLS_Q8) || (h.format == SB_FMT_Q8Q4 && h.cls_type == CLS_Q4)))
        return sb_fail(err, SB_ERR_FORMAT, "the storybot model header names format %u with classifier type %u, which this build does not know", h.format, h.cls_type);
    if (h.gs_dim > 65536 || h.gs_hid > 65536 || h.gs_cls > 65536) return sb_fail(err, SB_ERR_CONFIG, "the storybot model header gives an absurd group size");
    if ((rc = check_gs((int)h.gs_dim, c->dim, "dim-wide rows", err))) return rc;
    if ((rc = check_gs((int)h.gs_hid, c->hidden_dim, "hidden-wide rows", err))) return rc;
    if ((rc = check_gs((int)h.gs_cls, c->dim, "the classifier", err))) return rc;
    c->format = (int)h.format;
    c->group_size = (int)h.gs_dim;
    int64_t want = sbq_size(c, (int)h.gs_dim, (int)h.gs_hid, (int)h.gs_cls, (int)h.cls_type);
    if ((int64_t)m->map_len < want) return sb_fail(err, SB_ERR_TRUNCATED, "the storybot model is %zu bytes but its header needs %lld: it is truncated; copy or quantise it again", m->map_len, (long long)want);
    if ((int64_t)m->map_len > want) return sb_fail(err, SB_ERR_FORMAT, "the storybot model is %zu bytes but its header describes %lld: it is damaged", m->map_len, (long long)want);
    if (h.file_bytes != (uint64_t)want) return sb_fail(err, SB_ERR_FORMAT, "the storybot model header records a size of %llu bytes but its shape needs %lld: the header is damaged", (unsigned long long)h.file_bytes, (long long)want);
    if ((rc = sb_model_layer_arrays(m, err))) return rc;

    int64_t dim = c->dim, hid = c->hidden_dim, L = c->n_layers, V = c->vocab_size;
    int64_t kv = dim / c->n_heads * c->n_kv_heads;
    const unsigned char *base = m->map;
    int64_t off = SBQ_HEADER;
    m->rms_att = (const float *)(base + off); off += pad(L * dim * 4);
    m->rms_ffn = (const float *)(base + off); off += pad(L * dim * 4);
    m->rms_final = (const float *)(base + off); off += pad(dim * 4);
    int ct = h.cls_type == CLS_Q4 ? SB_W_Q4 : SB_W_Q8;
#define TAKE(t, ty, r, cc, g) do { (t).type = (ty); (t).rows = (int)(r); (t).cols = (int)(cc); (t).gs = (int)(g); \
        (t).blocked = 1; (t).q = base + off; (t).s = NULL; off += pad(sb_weight_bytes((ty), (int64_t)(r) * (cc), (int)(g))); } while (0)
    TAKE(m->tok, ct, V, dim, h.gs_cls);
    for (int l = 0; l < L; l++) {
        TAKE(m->wq[l], SB_W_Q8, dim, dim, h.gs_dim);
        TAKE(m->wk[l], SB_W_Q8, kv, dim, h.gs_dim);
        TAKE(m->wv[l], SB_W_Q8, kv, dim, h.gs_dim);
        TAKE(m->wo[l], SB_W_Q8, dim, dim, h.gs_dim);
        TAKE(m->w1[l], SB_W_Q8, hid, dim, h.gs_dim);
        TAKE(m->w2[l], SB_W_Q8, dim, hid, h.gs_hid);
        TAKE(m->w3[l], SB_W_Q8, hid, dim, h.gs_dim);
    }
    if (c->shared_classifier) m->wcls = m->tok;
    else TAKE(m->wcls, ct, V, dim, h.gs_cls);
#undef TAKE
    return SB_OK;
}

/* ---------------------------------------------------------------- writer */

static float q8_group(const float *w, int gs, int8_t *q) {
    float amax = 0.0f;
    for (int i = 0; i < gs; i++) { float a = fabsf(w[i]); if (a > amax) amax = a; }
    float scale = amax / 127.0f;
    float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
    for (int i = 0; i < gs; i++) q[i] = (int8_t)lrintf(w[i] * inv);
    return scale;
}

/* Squared error of w against levels round(w/s) clamped to -8..7; *fit gets the scale
 * that least-squares fits w to those same levels. */
static float q4_err(const float *w, int gs, float s, float *fit) {
    float inv = 1.0f / s, num = 0.0f, den = 0.0f, e = 0.0f;
    for (int i = 0; i < gs; i++) {
        float v = rintf(w[i] * inv);
        v = v < -8.0f ? -8.0f : v > 7.0f ? 7.0f : v;
        float d = w[i] - v * s;
        e += d * d;
        num += w[i] * v;
        den += v * v;
    }
    if (fit) *fit = den > 0.0f ? num / den : s;
    return e;
}

/* 4-bit: the levels run -8..7, so the weight of largest magnitude may land on +7 or,
 * with a negative scale, on -8 (one level finer). Try scales around both ends, refit
 * each by least squares to the levels it picked, and keep the least squared error:
 * on stories260K this cuts the classifier's error by a quarter against absmax/7. */
static float q4_group(const float *w, int gs, uint8_t *out) {
    static const float ends[] = {6.5f, 6.75f, 7.0f, 7.25f, 7.5f, 7.75f, 8.0f,
                                 -7.5f, -7.75f, -8.0f, -8.25f, -8.5f, -8.75f, -9.0f};
    float amax = 0.0f, mx = 0.0f;
    for (int i = 0; i < gs; i++) { float a = fabsf(w[i]); if (a > amax) { amax = a; mx = w[i]; } }
    int half = gs / 2;
    memset(out, 0x88, (size_t)half);
    if (amax == 0.0f) return 0.0f;
    float best_s = mx / 7.0f, best_e = q4_err(w, gs, best_s, NULL);
    for (size_t k = 0; k < sizeof ends / sizeof *ends; k++) {
        float s, e;
        q4_err(w, gs, mx / ends[k], &s);
        if (s == 0.0f || !isfinite(s)) continue;
        e = q4_err(w, gs, s, NULL);
        if (e < best_e) { best_e = e; best_s = s; }
    }
    float inv = 1.0f / best_s;
    for (int i = 0; i < gs; i++) {
        float v = rintf(w[i] * inv);
        v = v < -8.0f ? -8.0f : v > 7.0f ? 7.0f : v;
        unsigned u = (unsigned)((int)v + 8);
        if (i < half) out[i] = (uint8_t)((out[i] & 0xF0) | u);
        else out[i - half] = (uint8_t)((out[i - half] & 0x0F) | (u << 4));
    }
    return best_s;
}

static int put(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n ? 0 : -1; }

/* Mapped floats go through a buffer of our own, so a fault while reading them (guard.h)
 * never happens inside stdio. */
static int put_floats(FILE *f, const float *p, size_t n) {
    float buf[1024];
    for (size_t i = 0; i < n; i += 1024) {
        size_t k = n - i < 1024 ? n - i : 1024;
        memcpy(buf, p + i, k * sizeof *buf);
        if (put(f, buf, k * sizeof *buf)) return -1;
    }
    return 0;
}

static int put_pad(FILE *f, int64_t written) {
    static const unsigned char zeros[SBQ_ALIGN];
    int64_t n = pad(written) - written;
    return n ? put(f, zeros, (size_t)n) : 0;
}

/* Writes one fp32 matrix quantised in SB_RB-row blocks (see sb_internal.h): each
 * block's scales as [group][row], then its values as [column][row]. */
static int put_tensor(FILE *f, const sb_tensor *t, int type, int gs) {
    if (gs < 2 || t->cols % gs) return -1;   /* checked by the caller; tells the compiler too */
    int rows = t->rows, cols = t->cols, groups = cols / gs, half = gs / 2;
    size_t vrow = type == SB_W_Q4 ? (size_t)cols / 2 : (size_t)cols;   /* value bytes per row */
    size_t gbytes = type == SB_W_Q4 ? (size_t)half : (size_t)gs;        /* value bytes per group */
    float *sc = malloc((size_t)SB_RB * groups * sizeof *sc), *sct = malloc((size_t)SB_RB * groups * sizeof *sct);
    unsigned char *v = malloc((size_t)SB_RB * vrow), *vt = malloc((size_t)SB_RB * vrow);
    int rc = (!sc || !sct || !v || !vt) ? -2 : 0;
    const float *w = (const float *)t->q;
    for (int r0 = 0; !rc && r0 < rows; r0 += SB_RB) {
        int rr = rows - r0 < SB_RB ? rows - r0 : SB_RB;
        for (int r = 0; r < rr; r++)
            for (int g = 0; g < groups; g++) {
                const float *src = w + (size_t)(r0 + r) * cols + (size_t)g * gs;
                unsigned char *dst = v + (size_t)r * vrow + (size_t)g * gbytes;
                sc[(size_t)r * groups + g] = type == SB_W_Q4 ? q4_group(src, gs, dst) : q8_group(src, gs, (int8_t *)dst);
            }
        /* transpose: rows become the fastest-moving index */
        for (int g = 0; g < groups; g++)
            for (int r = 0; r < rr; r++) sct[(size_t)g * rr + r] = sc[(size_t)r * groups + g];
        for (size_t j = 0; j < vrow; j++)
            for (int r = 0; r < rr; r++) vt[j * rr + (size_t)r] = v[(size_t)r * vrow + j];
        rc = put(f, sct, (size_t)rr * groups * sizeof *sct);
        if (!rc) rc = put(f, vt, (size_t)rr * vrow);
    }
    if (!rc) rc = put_pad(f, sb_weight_bytes(type, (int64_t)rows * cols, gs));
    free(sc); free(sct); free(v); free(vt);
    return rc;
}

/* Everything after the header, in file order. */
static int write_tensors(FILE *f, const sb_model *m, int cls_type, int gs_dim, int gs_hid, int gs_cls) {
    const sb_config *c = &m->cfg;
    int64_t L = c->n_layers, dim = c->dim;
    int w = put_floats(f, m->rms_att, (size_t)(L * dim));
    if (!w) w = put_pad(f, L * dim * 4);
    if (!w) w = put_floats(f, m->rms_ffn, (size_t)(L * dim));
    if (!w) w = put_pad(f, L * dim * 4);
    if (!w) w = put_floats(f, m->rms_final, (size_t)dim);
    if (!w) w = put_pad(f, dim * 4);
    int ct = cls_type == CLS_Q4 ? SB_W_Q4 : SB_W_Q8;
    if (!w) w = put_tensor(f, &m->tok, ct, gs_cls);
    for (int l = 0; !w && l < L; l++) {
        w = put_tensor(f, &m->wq[l], SB_W_Q8, gs_dim);
        if (!w) w = put_tensor(f, &m->wk[l], SB_W_Q8, gs_dim);
        if (!w) w = put_tensor(f, &m->wv[l], SB_W_Q8, gs_dim);
        if (!w) w = put_tensor(f, &m->wo[l], SB_W_Q8, gs_dim);
        if (!w) w = put_tensor(f, &m->w1[l], SB_W_Q8, gs_dim);
        if (!w) w = put_tensor(f, &m->w2[l], SB_W_Q8, gs_hid);
        if (!w) w = put_tensor(f, &m->w3[l], SB_W_Q8, gs_dim);
    }
    if (!w && !c->shared_classifier) w = put_tensor(f, &m->wcls, ct, gs_cls);
    return w;
}

/* Groups of 32 where the width allows (llama2.c's choice for stories15M): wider groups
 * save bytes but missed the q8 quality target (KL <= 0.01 nat, top-1 >= 97 %) on
 * stories15M-shaped models, see docs/formats.md. Otherwise the widest even divisor. */
static int default_gs(int n, int cap) {
    if (cap >= SB_GROUP_DEFAULT && n % SB_GROUP_DEFAULT == 0) return SB_GROUP_DEFAULT;
    for (int g = cap; g >= 2; g -= 2) if (n % g == 0) return g;
    return 0;
}

int sb_quantize(const sb_model *m, const char *out_path, int format, int group_size, sb_error *err) {
    if (err) { err->code = 0; err->message[0] = 0; }
    if (!m || !out_path || !*out_path) return sb_fail(err, SB_ERR_ARG, "sb_quantize needs a model and an output path");
    const sb_config *c = &m->cfg;
    if (c->format != SB_FMT_F32) return sb_fail(err, SB_ERR_ARG, "only fp32 checkpoints can be quantised; this model is already quantised");
    if (format != SB_FMT_Q8 && format != SB_FMT_Q8Q4) return sb_fail(err, SB_ERR_ARG, "unknown output format %d (q8 or q8q4)", format);
    int gs_dim = group_size ? group_size : default_gs(c->dim, SB_GROUP_WIDEST);
    int gs_hid = group_size ? group_size : default_gs(c->hidden_dim, SB_GROUP_WIDEST);
    int cls_type = format == SB_FMT_Q8Q4 ? CLS_Q4 : CLS_Q8;
    int gs_cls = cls_type == CLS_Q4 ? default_gs(c->dim, SB_GROUP_DEFAULT) : gs_dim;
    int rc;
    if ((rc = check_gs(gs_dim, c->dim, "dim-wide rows", err))) return rc;
    if ((rc = check_gs(gs_hid, c->hidden_dim, "hidden-wide rows", err))) return rc;
    if ((rc = check_gs(gs_cls, c->dim, "the classifier", err))) return rc;

    /* write beside the target and rename at the end: a full disk or a crash never
     * leaves a half-written model under the real name */
    size_t plen = strlen(out_path);
    char *tmp = malloc(plen + 16);
    if (!tmp) return sb_fail(err, SB_ERR_NOMEM, "out of memory");
    snprintf(tmp, plen + 16, "%s.partial", out_path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int e = errno;
        sb_fail(err, SB_ERR_IO, "cannot write %s: %s", tmp, strerror(e));
        free(tmp);
        return SB_ERR_IO;
    }
    sbq_header h;
    memset(&h, 0, sizeof h);
    h.magic = SB_SBQ_MAGIC; h.version = SBQ_VERSION;
    h.shape[0] = c->dim; h.shape[1] = c->hidden_dim; h.shape[2] = c->n_layers; h.shape[3] = c->n_heads;
    h.shape[4] = c->n_kv_heads; h.shape[5] = c->vocab_size; h.shape[6] = c->seq_len;
    h.flags = c->shared_classifier ? 1u : 0u;
    h.format = (uint32_t)format;
    h.gs_dim = (uint32_t)gs_dim; h.gs_hid = (uint32_t)gs_hid; h.gs_cls = (uint32_t)gs_cls;
    h.cls_type = (uint32_t)cls_type;
    h.file_bytes = (uint64_t)sbq_size(c, gs_dim, gs_hid, gs_cls, cls_type);
    unsigned char head[SBQ_HEADER];
    memset(head, 0, sizeof head);
    memcpy(head, &h, sizeof h);
    /* the fp32 weights are read from the mapping: a file cut short under us fails
     * the call cleanly (guard.h); put_tensor's scratch is lost then, nothing else */
    sb_guard g;
    if (sigsetjmp(g.jb, 0)) {
        sb_guard_fault(&g);
        fclose(f);
        remove(tmp);
        free(tmp);
        return sb_fail(err, SB_ERR_MODEL_CHANGED, "the model file changed or was truncated while it was being quantised; nothing was written");
    }
    sb_guard_enter(&g);
    int w = put(f, head, sizeof head);
    if (!w) w = write_tensors(f, m, cls_type, gs_dim, gs_hid, gs_cls);
    sb_guard_leave(&g);
    int e = errno;
    if (fflush(f) != 0 && !w) { w = -1; e = errno; }
    if (fclose(f) != 0 && !w) { w = -1; e = errno; }
    if (w) {
        remove(tmp);
        if (w == -2) sb_fail(err, SB_ERR_NOMEM, "out of memory while quantising");
        else sb_fail(err, SB_ERR_IO, "could not write %s: %s; free some space and try again (nothing was written)", out_path, strerror(e));
        free(tmp);
        return err ? err->code : SB_ERR_IO;
    }
    if (rename(tmp, out_path) != 0) {
        e = errno;
        remove(tmp);
        sb_fail(err, SB_ERR_IO, "could not move the quantised model into place at %s: %s", out_path, strerror(e));
        free(tmp);
        return SB_ERR_IO;
    }
    free(tmp);
    return SB_OK;
}

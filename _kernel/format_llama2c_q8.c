/* format_llama2c_q8.c -- llama2.c's int8 export (export.py --version 2, Q8_0): a
 * 256-byte header, fp32 norms, then each matrix row-major as int8 values followed by
 * one fp32 scale per group of gs. Layout in docs/formats.md. */
#include "formats.h"
#include <stdint.h>
#include <string.h>

int sb_load_q8_llama2c(struct sb_model *m, sb_error *err) {
    sb_config *c = &m->cfg;
    const unsigned char *b = m->map;
    if (m->map_len < 256) return sb_fail(err, SB_ERR_TRUNCATED, "the file is a llama2.c int8 export but only %zu bytes long, shorter than its 256-byte header; it is truncated", m->map_len);
    int32_t version, h[7], gs;
    memcpy(&version, b + 4, 4);
    memcpy(h, b + 8, 28);
    memcpy(&gs, b + 37, 4);
    if (version != 2) return sb_fail(err, SB_ERR_FORMAT, "the file is a llama2.c export of version %d; only version 2 (int8) and the legacy fp32 files are supported", (int)version);
    c->dim = h[0]; c->hidden_dim = h[1]; c->n_layers = h[2]; c->n_heads = h[3];
    c->n_kv_heads = h[4]; c->vocab_size = h[5]; c->seq_len = h[6];
    c->shared_classifier = b[36] != 0;
    c->format = SB_FMT_Q8_LLAMA2C;
    int rc = sb_validate_shape(c, err);
    if (rc) return rc;
    if (gs <= 0 || c->dim % gs || c->hidden_dim % gs)
        return sb_fail(err, SB_ERR_CONFIG, "the llama2.c int8 header gives group size %d, which does not divide dim %d and hidden_dim %d", (int)gs, c->dim, c->hidden_dim);
    c->group_size = gs;
    int64_t dim = c->dim, hid = c->hidden_dim, L = c->n_layers, V = c->vocab_size;
    int64_t kv = dim / c->n_heads * c->n_kv_heads;
    int64_t want = 256 + (2 * L * dim + dim) * 4 + sb_weight_bytes(SB_W_Q8, V * dim, gs)
                 + L * (2 * sb_weight_bytes(SB_W_Q8, dim * dim, gs) + 2 * sb_weight_bytes(SB_W_Q8, dim * kv, gs) + 3 * sb_weight_bytes(SB_W_Q8, dim * hid, gs))
                 + (c->shared_classifier ? 0 : sb_weight_bytes(SB_W_Q8, V * dim, gs));
    if ((int64_t)m->map_len < want) return sb_fail(err, SB_ERR_TRUNCATED, "the llama2.c int8 file is %zu bytes but its header needs %lld: it is truncated", m->map_len, (long long)want);
    if ((int64_t)m->map_len > want) return sb_fail(err, SB_ERR_FORMAT, "the llama2.c int8 file is %zu bytes but its header describes %lld: it is damaged or not a version-2 export", m->map_len, (long long)want);
    if ((rc = sb_model_layer_arrays(m, err))) return rc;
    const unsigned char *p = b + 256;   /* the norms: 4-byte aligned after the header */
    m->rms_att = (const float *)p; p += L * dim * 4;
    m->rms_ffn = (const float *)p; p += L * dim * 4;
    m->rms_final = (const float *)p; p += dim * 4;
    /* The scales follow their values, so a matrix whose size is not a multiple of 4
     * leaves every later float misaligned: those get aligned heap copies. */
#define TAKE(t, r, cc) do { int64_t n_ = (int64_t)(r) * (cc); \
        (t).type = SB_W_Q8; (t).rows = (int)(r); (t).cols = (int)(cc); (t).gs = gs; (t).q = p; p += n_; \
        if (!((t).s = sb_aligned_floats(m, p, (size_t)(n_ / gs), err))) return SB_ERR_NOMEM; \
        p += n_ / gs * 4; } while (0)
    TAKE(m->tok, V, dim);
    for (int l = 0; l < L; l++) TAKE(m->wq[l], dim, dim);
    for (int l = 0; l < L; l++) TAKE(m->wk[l], kv, dim);
    for (int l = 0; l < L; l++) TAKE(m->wv[l], kv, dim);
    for (int l = 0; l < L; l++) TAKE(m->wo[l], dim, dim);
    for (int l = 0; l < L; l++) TAKE(m->w1[l], hid, dim);
    for (int l = 0; l < L; l++) TAKE(m->w2[l], dim, hid);
    for (int l = 0; l < L; l++) TAKE(m->w3[l], hid, dim);
    if (c->shared_classifier) m->wcls = m->tok;
    else TAKE(m->wcls, V, dim);
#undef TAKE
    return SB_OK;
}

/* format_f32.c -- llama2.c's legacy fp32 checkpoint: a 7-int32 header, then fp32
 * tensors back to back. It has no magic number, so model.c tries it last. */
#include "formats.h"
#include <stdint.h>
#include <string.h>

static void read_header(sb_config *c, const int32_t h[7]) {
    c->dim = h[0]; c->hidden_dim = h[1]; c->n_layers = h[2]; c->n_heads = h[3];
    c->n_kv_heads = h[4]; c->seq_len = h[6];
    /* a negative vocab size means "separate classifier"; INT32_MIN has no positive
     * counterpart, so it is refused (as -1) before anything negates it */
    c->vocab_size = h[5] == INT32_MIN ? -1 : h[5] < 0 ? -h[5] : h[5];
    c->shared_classifier = h[5] > 0;
    c->format = SB_FMT_F32;
    c->group_size = 0;
}

int sb_load_f32(struct sb_model *m, const char *path, sb_error *err) {
    sb_config *c = &m->cfg;
    if (m->map_len < 7 * sizeof(int32_t))
        return sb_fail(err, SB_ERR_TRUNCATED, "%s is only %zu bytes, too short to hold a model header (28 bytes); the file is truncated or not a model", path, m->map_len);
    int32_t h[7];
    memcpy(h, m->map, sizeof h);
    read_header(c, h);
    int rc = sb_validate_shape(c, err);
    if (rc) {
        /* a foreign file usually fails here: say so rather than blame a field */
        char detail[sizeof err->message];
        if (err) { memcpy(detail, err->message, sizeof detail); }
        return sb_fail(err, rc, "%s is not a usable llama2.c checkpoint: %s", path, err ? detail : "bad header");
    }
    int64_t dim = c->dim, hid = c->hidden_dim, L = c->n_layers, V = c->vocab_size;
    int64_t hs = dim / c->n_heads, kv = hs * c->n_kv_heads;
    int64_t floats = V * dim + L * dim                 /* embeddings, rms_att */
                   + L * dim * dim + 2 * L * dim * kv  /* wq, wk, wv */
                   + L * dim * dim + L * dim           /* wo, rms_ffn */
                   + 3 * L * dim * hid + dim           /* w1 w2 w3, rms_final */
                   + (int64_t)c->seq_len * hs          /* legacy freq_cis real+imag */
                   + (c->shared_classifier ? 0 : V * dim);
    int64_t want = 28 + floats * 4;
    if ((int64_t)m->map_len < want)
        return sb_fail(err, SB_ERR_TRUNCATED, "%s is %zu bytes but its header (dim %d, %d layers, vocab %d) needs %lld: the file is truncated; download it again", path, m->map_len, c->dim, c->n_layers, c->vocab_size, (long long)want);
    if ((int64_t)m->map_len > want)
        return sb_fail(err, SB_ERR_FORMAT, "%s is %zu bytes but its header (dim %d, %d layers, vocab %d) describes %lld: this is not a llama2.c fp32 checkpoint", path, m->map_len, c->dim, c->n_layers, c->vocab_size, (long long)want);
    if ((rc = sb_model_layer_arrays(m, err))) return rc;
    /* 28 bytes in: every float is 4-byte aligned in a page-aligned mapping */
    const float *p = (const float *)((const char *)m->map + 28);
    m->tok = sb_f32_tensor(p, (int)V, (int)dim); p += V * dim;
    m->rms_att = p; p += L * dim;
    for (int l = 0; l < L; l++) { m->wq[l] = sb_f32_tensor(p, (int)dim, (int)dim); p += dim * dim; }
    for (int l = 0; l < L; l++) { m->wk[l] = sb_f32_tensor(p, (int)kv, (int)dim); p += dim * kv; }
    for (int l = 0; l < L; l++) { m->wv[l] = sb_f32_tensor(p, (int)kv, (int)dim); p += dim * kv; }
    for (int l = 0; l < L; l++) { m->wo[l] = sb_f32_tensor(p, (int)dim, (int)dim); p += dim * dim; }
    m->rms_ffn = p; p += L * dim;
    for (int l = 0; l < L; l++) { m->w1[l] = sb_f32_tensor(p, (int)hid, (int)dim); p += dim * hid; }
    for (int l = 0; l < L; l++) { m->w2[l] = sb_f32_tensor(p, (int)dim, (int)hid); p += dim * hid; }
    for (int l = 0; l < L; l++) { m->w3[l] = sb_f32_tensor(p, (int)hid, (int)dim); p += dim * hid; }
    m->rms_final = p; p += dim;
    p += (int64_t)c->seq_len * hs; /* freq_cis_real + freq_cis_imag: RoPE is recomputed */
    m->wcls = c->shared_classifier ? m->tok : sb_f32_tensor(p, (int)V, (int)dim);
    return SB_OK;
}

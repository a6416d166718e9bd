/* model.c -- opening, validating and mapping model files.
 *
 * The file is mapped read-only and the tensors point into the mapping: on a 64 MB
 * board the page cache is the only copy of the weights we can afford. Every size
 * read from the file is checked against the mapping before anything is dereferenced.
 */
#define _POSIX_C_SOURCE 200809L
#include "sb_internal.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SB_VERSION "0.1.0"
#define LLAMA2C_Q8_MAGIC 0x616b3432u
#define SBQ_MAGIC 0x31514253u /* "SBQ1" little-endian */

int sb_fail(sb_error *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

const char *sb_version(void) { return SB_VERSION; }
const char *sb_isa(void) { return sb_ops_fast_isa(); }

const char *sb_status_name(int code) {
    switch (code) {
    case SB_OK: return "ok";
    case SB_ERR_IO: return "i/o error";
    case SB_ERR_FORMAT: return "unknown file format";
    case SB_ERR_TRUNCATED: return "truncated file";
    case SB_ERR_CONFIG: return "impossible model shape";
    case SB_ERR_NOMEM: return "out of memory";
    case SB_ERR_ARG: return "bad argument";
    case SB_ERR_MISMATCH: return "tokenizer does not match model";
    case SB_ERR_PROMPT: return "bad prompt";
    default: return "unknown error";
    }
}

int sb_validate_shape(const sb_config *c, sb_error *err) {
#define BAD(...) return sb_fail(err, SB_ERR_CONFIG, __VA_ARGS__)
    if (c->dim <= 0 || c->dim > SB_MAX_DIM) BAD("the model header gives dim=%d, which is not a usable model width (1..%d)", c->dim, SB_MAX_DIM);
    if (c->hidden_dim <= 0 || c->hidden_dim > SB_MAX_HIDDEN) BAD("the model header gives hidden_dim=%d, outside 1..%d", c->hidden_dim, SB_MAX_HIDDEN);
    if (c->n_layers <= 0 || c->n_layers > SB_MAX_LAYERS) BAD("the model header gives n_layers=%d, outside 1..%d", c->n_layers, SB_MAX_LAYERS);
    if (c->n_heads <= 0 || c->n_heads > c->dim) BAD("the model header gives n_heads=%d, outside 1..dim (%d)", c->n_heads, c->dim);
    if (c->n_kv_heads <= 0 || c->n_kv_heads > c->n_heads) BAD("the model header gives n_kv_heads=%d, outside 1..n_heads (%d)", c->n_kv_heads, c->n_heads);
    if (c->vocab_size <= 0 || c->vocab_size > SB_MAX_VOCAB) BAD("the model header gives vocab_size=%d, outside 1..%d", c->vocab_size, SB_MAX_VOCAB);
    if (c->seq_len <= 0 || c->seq_len > SB_MAX_SEQ) BAD("the model header gives seq_len=%d, outside 1..%d", c->seq_len, SB_MAX_SEQ);
    if (c->dim % c->n_heads) BAD("the model header gives dim=%d, which is not divisible by n_heads=%d", c->dim, c->n_heads);
    if (c->n_heads % c->n_kv_heads) BAD("the model header gives n_heads=%d, which is not a multiple of n_kv_heads=%d", c->n_heads, c->n_kv_heads);
    if ((c->dim / c->n_heads) % 2) BAD("the model header gives an odd head size (%d), which rotary embeddings cannot use", c->dim / c->n_heads);
#undef BAD
    return SB_OK;
}

int sb_model_layer_arrays(struct sb_model *m, sb_error *err) {
    size_t L = (size_t)m->cfg.n_layers;
    sb_tensor *a = calloc(7 * L, sizeof *a);
    if (!a) return sb_fail(err, SB_ERR_NOMEM, "out of memory for %zu layer descriptors", L);
    m->owned = a;
    m->wq = a; m->wk = a + L; m->wv = a + 2 * L; m->wo = a + 3 * L;
    m->w1 = a + 4 * L; m->w2 = a + 5 * L; m->w3 = a + 6 * L;
    return SB_OK;
}

static sb_tensor f32_tensor(const float *p, int rows, int cols) {
    sb_tensor t;
    memset(&t, 0, sizeof t);
    t.type = SB_W_F32; t.rows = rows; t.cols = cols; t.q = p;
    return t;
}

/* llama2.c legacy layout: 7 int32 header, then fp32 tensors back to back. */
static int load_legacy_f32(struct sb_model *m, sb_error *err, const char *path) {
    sb_config *c = &m->cfg;
    if (m->map_len < 7 * sizeof(int32_t))
        return sb_fail(err, SB_ERR_TRUNCATED, "%s is only %zu bytes, too short to hold a model header (28 bytes); the file is truncated or not a model", path, m->map_len);
    int32_t h[7];
    memcpy(h, m->map, sizeof h);
    c->dim = h[0]; c->hidden_dim = h[1]; c->n_layers = h[2]; c->n_heads = h[3];
    c->n_kv_heads = h[4]; c->vocab_size = h[5] < 0 ? -h[5] : h[5]; c->seq_len = h[6];
    c->shared_classifier = h[5] > 0;
    if (h[5] == INT32_MIN) c->vocab_size = -1;
    c->format = SB_FMT_F32;
    c->group_size = 0;
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
    const float *p = (const float *)((const char *)m->map + 28);
    m->tok = f32_tensor(p, (int)V, (int)dim); p += V * dim;
    m->rms_att = p; p += L * dim;
    for (int l = 0; l < L; l++) { m->wq[l] = f32_tensor(p, (int)dim, (int)dim); p += dim * dim; }
    for (int l = 0; l < L; l++) { m->wk[l] = f32_tensor(p, (int)kv, (int)dim); p += dim * kv; }
    for (int l = 0; l < L; l++) { m->wv[l] = f32_tensor(p, (int)kv, (int)dim); p += dim * kv; }
    for (int l = 0; l < L; l++) { m->wo[l] = f32_tensor(p, (int)dim, (int)dim); p += dim * dim; }
    m->rms_ffn = p; p += L * dim;
    for (int l = 0; l < L; l++) { m->w1[l] = f32_tensor(p, (int)hid, (int)dim); p += dim * hid; }
    for (int l = 0; l < L; l++) { m->w2[l] = f32_tensor(p, (int)dim, (int)hid); p += dim * hid; }
    for (int l = 0; l < L; l++) { m->w3[l] = f32_tensor(p, (int)hid, (int)dim); p += dim * hid; }
    m->rms_final = p; p += dim;
    p += (int64_t)c->seq_len * hs; /* freq_cis_real + freq_cis_imag: RoPE is recomputed */
    m->wcls = c->shared_classifier ? m->tok : f32_tensor(p, (int)V, (int)dim);
    return SB_OK;
}

static int64_t tensor_bytes(const sb_tensor *t) {
    int64_t n = (int64_t)t->rows * t->cols;
    switch (t->type) {
    case SB_W_F32: return n * 4;
    case SB_W_Q8: return n + n / t->gs * 4;
    case SB_W_Q4: return n / 2 + n / t->gs * 4;
    }
    return 0;
}

int sb_model_open(const char *path, sb_model **out, sb_error *err) {
    if (err) { err->code = 0; err->message[0] = 0; }
    if (!out) return sb_fail(err, SB_ERR_ARG, "sb_model_open needs an output pointer");
    *out = NULL;
    if (!path || !*path) return sb_fail(err, SB_ERR_ARG, "no model path was given");
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        int e = errno;
        return sb_fail(err, SB_ERR_IO, "cannot open model file %s: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno; close(fd);
        return sb_fail(err, SB_ERR_IO, "cannot read model file %s: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) { close(fd); return sb_fail(err, SB_ERR_IO, "%s is a directory, not a model file; give the path of a .bin checkpoint", path); }
    if (!S_ISREG(st.st_mode)) { close(fd); return sb_fail(err, SB_ERR_IO, "%s is not a regular file; give the path of a .bin checkpoint", path); }
    if (st.st_size == 0) { close(fd); return sb_fail(err, SB_ERR_TRUNCATED, "%s is empty; download the model again", path); }
    struct sb_model *m = calloc(1, sizeof *m);
    if (!m) { close(fd); return sb_fail(err, SB_ERR_NOMEM, "out of memory opening %s", path); }
    m->map_len = (size_t)st.st_size;
    m->map = mmap(NULL, m->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m->map == MAP_FAILED) {
        int e = errno; free(m);
        return sb_fail(err, SB_ERR_IO, "cannot map model file %s: %s", path, strerror(e));
    }
    uint32_t magic = 0;
    if (m->map_len >= 4) memcpy(&magic, m->map, 4);
    int rc;
    if (magic == LLAMA2C_Q8_MAGIC) rc = sb_model_load_q8_llama2c(m, err);
    else if (magic == SBQ_MAGIC) rc = sb_model_load_sbq(m, err);
    else rc = load_legacy_f32(m, err, path);
    if (rc) {
        if (err && (magic == LLAMA2C_Q8_MAGIC || magic == SBQ_MAGIC)) {
            char detail[sizeof err->message];
            memcpy(detail, err->message, sizeof detail);
            sb_fail(err, rc, "%s: %s", path, detail);
        }
        sb_model_close(m);
        return rc;
    }
    m->cfg.file_bytes = (int64_t)m->map_len;
    /* bytes one step reads: every layer matrix, the classifier, one embedding row */
    /* with a shared classifier the embedding row is one of the rows the classifier reads */
    int64_t b = tensor_bytes(&m->wcls) + (m->cfg.shared_classifier ? 0 : tensor_bytes(&m->tok) / m->cfg.vocab_size);
    for (int l = 0; l < m->cfg.n_layers; l++)
        b += tensor_bytes(&m->wq[l]) + tensor_bytes(&m->wk[l]) + tensor_bytes(&m->wv[l]) + tensor_bytes(&m->wo[l])
           + tensor_bytes(&m->w1[l]) + tensor_bytes(&m->w2[l]) + tensor_bytes(&m->w3[l]);
    b += ((int64_t)m->cfg.n_layers * 2 + 1) * m->cfg.dim * 4;
    m->cfg.weight_bytes_per_token = b;
    *out = m;
    return SB_OK;
}

void sb_model_close(sb_model *m) {
    if (!m) return;
    if (m->map && m->map != MAP_FAILED) munmap(m->map, m->map_len);
    free(m->owned);
    free(m);
}

const sb_config *sb_model_config(const sb_model *m) { return m ? &m->cfg : NULL; }

/* weights.c -- what every model-file loader shares: the shape check, the per-layer
 * tensor arrays, tensor sizes and aligned copies. Calls nothing but status.c. */
#include "formats.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

int64_t sb_weight_bytes(int type, int64_t n, int gs) {
    switch (type) {
    case SB_W_F32: return n * 4;
    case SB_W_Q8: return n + n / gs * 4;
    case SB_W_Q4: return n / 2 + n / gs * 4;
    }
    return 0;
}

int64_t sb_tensor_bytes(const sb_tensor *t) {
    return sb_weight_bytes(t->type, (int64_t)t->rows * t->cols, t->gs);
}

sb_tensor sb_f32_tensor(const float *p, int rows, int cols) {
    sb_tensor t;
    memset(&t, 0, sizeof t);
    t.type = SB_W_F32; t.rows = rows; t.cols = cols; t.q = p;
    return t;
}

struct sb_copy { struct sb_copy *next; float data[]; };

const float *sb_aligned_floats(struct sb_model *m, const void *p, size_t n, sb_error *err) {
    if (((uintptr_t)p & (_Alignof(float) - 1)) == 0) return p;
    struct sb_copy *c = malloc(sizeof *c + n * sizeof(float));
    if (!c) { sb_fail(err, SB_ERR_NOMEM, "out of memory for %zu group scales", n); return NULL; }
    memcpy(c->data, p, n * sizeof(float));
    c->next = m->copies;
    m->copies = c;
    return c->data;
}

void sb_free_copies(struct sb_model *m) {
    for (struct sb_copy *c = m->copies, *next; c; c = next) { next = c->next; free(c); }
    m->copies = NULL;
}

/* sb_internal.h -- shared between the kernel's own files; never seen by Python. */
#ifndef SB_INTERNAL_H
#define SB_INTERNAL_H
#include "storybot.h"
#include <stdarg.h>
#include <stdint.h>
#include <stddef.h>

/* Limits that keep every size computation far from overflow and reject
 * headers that are plainly not a TinyStories-class model. */
#define SB_MAX_DIM      65536
#define SB_MAX_HIDDEN   262144
#define SB_MAX_LAYERS   1024
#define SB_MAX_VOCAB    1048576
#define SB_MAX_SEQ      1048576

int sb_fail(sb_error *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* How a weight matrix is stored. Rows are outputs, cols are inputs (y = W x). */
enum { SB_W_F32 = 0, SB_W_Q8 = 1, SB_W_Q4 = 2 };

typedef struct {
    int type;
    int rows, cols;
    int gs;                 /* group size along a row (quantised types) */
    const void *q;          /* f32: float[rows*cols]; q8: int8[rows*cols]; q4: packed nibbles */
    const float *s;         /* one scale per group, row-major (quantised types) */
} sb_tensor;

/* Activations quantised once per input vector and reused by every matrix that reads it. */
typedef struct {
    int n, gs;
    int8_t *q;
    float *s;
} sb_qact;

/* The dispatch table: one per ISA build, one naive. The forward step only ever
 * calls through this. */
typedef struct {
    const char *name;
    void (*matvec_f32)(float *out, const float *x, const float *w, int n, int d);
    void (*matvec_q8)(float *out, const sb_qact *x, const sb_tensor *w);
    void (*matvec_q4)(float *out, const sb_qact *x, const sb_tensor *w);
    void (*quantize_act)(sb_qact *x, const float *v);
    float (*dot)(const float *a, const float *b, int n);
    void (*axpy)(float *y, float a, const float *x, int n);
    void (*rmsnorm)(float *out, const float *x, const float *w, int n);
} sb_ops;

extern const sb_ops sb_ops_naive;
const sb_ops *sb_ops_fast(void);
const char *sb_ops_fast_isa(void);

struct sb_model {
    sb_config cfg;
    void *map;
    size_t map_len;
    sb_tensor tok;          /* token embedding table (vocab x dim) */
    const float *rms_att;   /* n_layers x dim */
    const float *rms_ffn;   /* n_layers x dim */
    const float *rms_final; /* dim */
    sb_tensor *wq, *wk, *wv, *wo, *w1, *w2, *w3; /* n_layers each */
    sb_tensor wcls;
    void *owned;            /* heap block holding the per-layer tensor arrays */
};

/* Reads a quantised storybot/llama2.c file once the mapping is in place. */
int sb_model_load_sbq(struct sb_model *m, sb_error *err);
int sb_model_load_q8_llama2c(struct sb_model *m, sb_error *err);
int sb_validate_shape(const sb_config *c, sb_error *err);
int sb_model_layer_arrays(struct sb_model *m, sb_error *err);

/* Dequantises one row of a matrix (token embedding lookup). */
void sb_tensor_row(const sb_tensor *t, int row, float *out);

/* fp16 <-> fp32 for the optional half-precision KV cache (no ISA support assumed). */
uint16_t sb_f32_to_f16(float f);
float sb_f16_to_f32(uint16_t h);

#endif

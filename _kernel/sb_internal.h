/* sb_internal.h -- shared between the kernel's own files; never seen by Python. */
#ifndef SB_INTERNAL_H
#define SB_INTERNAL_H
#include "storybot.h"
#include <math.h>
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

/* Quantised storybot (SBQ1) matrices are stored in blocks of SB_RB rows so that a
 * vector unit computes SB_RB outputs at once with no horizontal reductions: for each
 * block of rr rows (SB_RB, fewer in the last block), first its fp32 scales as
 * [group][row], then its values as [column][row] (q8: one int8 per weight; q4: one
 * byte per column pair of a group, low nibble column p, high nibble column p + gs/2,
 * each nibble the value + 8). llama2.c's Q8_0 files stay row-major. */
#define SB_RB 32

typedef struct {
    int type;
    int rows, cols;
    int gs;                 /* group size along a row (quantised types) */
    int blocked;            /* 1: SB_RB-row blocks (SBQ1); 0: row-major values then scales */
    const void *q;          /* f32: float[rows*cols]; quantised: values (row-major) or the first block */
    const float *s;         /* row-major quantised: one scale per group, row-major; blocked: unused */
} sb_tensor;

/* Bytes of one block of rr rows of a blocked tensor (scales, then values). */
static inline size_t sb_block_bytes(const sb_tensor *t, int rr) {
    size_t vals = t->type == SB_W_Q4 ? (size_t)t->cols / 2 : (size_t)t->cols;
    return (size_t)rr * ((size_t)(t->cols / t->gs) * sizeof(float) + vals);
}

/* Activations quantised once per input vector and reused by every matrix that reads
 * it, twice over from the same group maxima:
 *   int16 (q16, s16) for the blocked int8 matrices. An int8 x int16 product costs the
 *     C906 nothing more than int8 x int8 (th.vlb already widens each weight column to
 *     int16 for vwmacc.vx), and 16-bit activations take out ~40 % of q8's KL against
 *     fp32 (docs/formats.md). The range is +-SB_Q16_MAX(gs), so a group's int32 sum
 *     cannot overflow even with -128 weights;
 *   int8 (q, s, sum) for the 4-bit classifier (unsigned nibbles times int8 in int16
 *     sums, less 8 * sum once per group) and llama2.c's row-major Q8_0. */
typedef struct {
    int n, gs;
    int8_t *q;
    float *s;
    int32_t *sum;
    int16_t *q16;
    float *s16;
    int8_t *bcast;          /* n * SB_RB bytes of scratch for kernels that splat activations */
} sb_qact;

/* Largest 16-bit activation level for groups of gs: gs * 128 * level < 2^31. */
static inline float sb_q16_max(int gs) {
    return gs <= 512 ? 32767.0f : (float)(int)(2147483647.0 / (128.0 * gs));
}

/* The dispatch table: one per ISA build, one naive. The forward step only ever
 * calls through this, and sb_ops_fast() (ops_portable.c or ops_rvv.c, whichever
 * the build compiled) is the one place that picks the ISA. */
typedef struct {
    const char *name;
    void (*matvec_f32)(float *out, const float *x, const float *w, int n, int d);
    void (*matvec_q8)(float *out, const sb_qact *x, const sb_tensor *w);   /* row-major (llama2.c) */
    void (*matvec_q8b)(float *out, const sb_qact *x, const sb_tensor *w);  /* blocked int8 */
    void (*matvec_q4b)(float *out, const sb_qact *x, const sb_tensor *w);  /* blocked 4-bit */
    void (*quantize_act)(sb_qact *x, const float *v);
    float (*dot)(const float *a, const float *b, int n);
    void (*axpy)(float *y, float a, const float *x, int n);
    void (*rmsnorm)(float *out, const float *x, const float *w, int n);
    /* One head over positions 0..n-1 of an fp32 cache: att[t] = q.k_t / scale, softmax,
     * out = sum_t att[t] v_t. k and v point at the head's slice of position 0, positions
     * `stride` floats apart. With `exact` (fp32 models) exp is libm's expf, as in run.c;
     * otherwise a table may use its own exp (quantised models, measured). */
    void (*attention)(float *out, const float *q, const float *k, const float *v, size_t stride,
                      int hs, int n, float scale, float *att, int exact);
    /* h[i] = silu(h[i]) * g[i] (the SwiGLU gate); `exact` as for attention. */
    void (*silu_mul)(float *h, const float *g, int n, int exact);
    /* The sampler's passes over the vocabulary. max, first_ge and collect_ge only
     * compare, so every table gives identical answers; exp_sum may use its own exp
     * (it serves quantised models only) and add in any order. */
    float (*max)(const float *x, int n);
    int (*first_ge)(const float *x, int n, float v);             /* n if none */
    int (*collect_ge)(const float *x, int n, float v, int *idx);  /* ascending indices, returns count */
    float (*exp_sum)(float *x, int n, float max, float inv_t);    /* x = exp((x - max) * inv_t); sum */
    float (*sum_ge)(const float *x, int n, float v);              /* sum of x[i] >= v, any order */
} sb_ops;

/* Scalar versions of the sampler's passes, for the naive and portable tables. */
static inline float sb_max_loop(const float *x, int n) {
    float m = x[0];
    for (int i = 1; i < n; i++) if (x[i] > m) m = x[i];
    return m;
}

static inline int sb_first_ge_loop(const float *x, int n, float v) {
    for (int i = 0; i < n; i++) if (x[i] >= v) return i;
    return n;
}

static inline int sb_collect_ge_loop(const float *x, int n, float v, int *idx) {
    int c = 0;
    for (int i = 0; i < n; i++) if (x[i] >= v) idx[c++] = i;
    return c;
}

static inline float sb_sum_ge_loop(const float *x, int n, float v) {
    float sum = 0.0f;
    for (int i = 0; i < n; i++) if (x[i] >= v) sum += x[i];
    return sum;
}

static inline float sb_exp_sum_loop(float *x, int n, float max, float inv_t) {
    float sum = 0.0f;
    for (int i = 0; i < n; i++) { x[i] = expf((x[i] - max) * inv_t); sum += x[i]; }
    return sum;
}

/* run.c's gate, for tables that keep libm's expf. */
static inline void sb_silu_mul_loop(float *h, const float *g, int n) {
    for (int i = 0; i < n; i++) {
        float val = h[i];
        val *= (1.0f / (1.0f + expf(-val)));
        h[i] = val * g[i];
    }
}

/* The silu_mul entry of tables that always use libm's expf (exact or not). */
static inline void sb_silu_mul_libm(float *h, const float *g, int n, int exact) {
    (void)exact;
    sb_silu_mul_loop(h, g, n);
}

/* run.c's attention loop over any dot/axpy, for the naive and portable tables. */
static inline void sb_attention_loop(float (*dot)(const float *, const float *, int),
                                     void (*axpy)(float *, float, const float *, int),
                                     float *out, const float *q, const float *k, const float *v,
                                     size_t stride, int hs, int n, float scale, float *att) {
    for (int t = 0; t < n; t++) att[t] = dot(q, k + (size_t)t * stride, hs) / scale;
    float max = att[0];
    for (int t = 1; t < n; t++) if (att[t] > max) max = att[t];
    float sum = 0.0f;
    for (int t = 0; t < n; t++) { att[t] = expf(att[t] - max); sum += att[t]; }
    for (int t = 0; t < n; t++) att[t] /= sum;
    for (int i = 0; i < hs; i++) out[i] = 0.0f;
    for (int t = 0; t < n; t++) axpy(out, att[t], v + (size_t)t * stride, hs);
}

/* RISC-V builds with a vector unit (RVV 1.0 or the C906's XTheadVector) take the
 * intrinsics in ops_rvv.c; everything else takes ops_portable.c. */
#if defined(__riscv_vector) || defined(__riscv_xtheadvector)
#define SB_HAVE_RVV 1
#endif

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
    struct sb_copy *copies; /* aligned copies of misaligned scales (weights.c) */
};

/* What the sampler needs of a session (forward.c). */
const sb_ops *sb_session_ops(const sb_session *s);
int sb_session_exact(const sb_session *s);   /* fp32 model: run.c's arithmetic to the bit */

/* Dequantises one row of a matrix (token embedding lookup). */
void sb_tensor_row(const sb_tensor *t, int row, float *out);

/* fp16 <-> fp32 for the optional half-precision KV cache (no ISA support assumed). */
uint16_t sb_f32_to_f16(float f);
/* Samples with a table's sampler passes; exact = run.c's softmax to the bit (fp32 models). */
int sb_sample_ops(sb_sampler *s, float *logits, const sb_ops *ops, int exact);
long sb_sampler_full_sorts(const sb_sampler *s);
/* sb_encode that also reports its work (pair lookups + heap steps) in *work, for the
 * test that holds the merge loop to O(n log n). */
int sb_encode_counted(const sb_tokenizer *t, const char *text, size_t len, int bos, int eos,
                      int *tokens, int max_tokens, int *n_tokens, sb_error *err, long *work);
float sb_f16_to_f32(uint16_t h);

#endif

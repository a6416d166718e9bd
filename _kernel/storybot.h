/*
 * storybot.h -- the whole contract between the C kernel (_kernel/) and Python (robot/).
 *
 * Everything between CDEF-BEGIN and CDEF-END is also fed verbatim to cffi's cdef(),
 * both by the API-mode build (setup.py) and by the ABI-mode loader used on the board,
 * so that part must stay plain C declarations: no macros, no includes, no inline code.
 *
 * Ownership: every *_open/_new returns an opaque handle the caller frees with the
 * matching *_close/_free. Functions that can fail return an sb_status and, when given
 * an sb_error, fill it with one plain sentence for a human.  Nothing here calls exit(),
 * prints, or keeps global state.
 */
#ifndef STORYBOT_H
#define STORYBOT_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/* CDEF-BEGIN */
typedef enum {
    SB_OK = 0,
    SB_ERR_IO = 1,          /* cannot open, stat, map or write a file */
    SB_ERR_FORMAT = 2,      /* the file is not a model/tokenizer we know */
    SB_ERR_TRUNCATED = 3,   /* the file ends before its header says it should */
    SB_ERR_CONFIG = 4,      /* header values that cannot describe a real model */
    SB_ERR_NOMEM = 5,
    SB_ERR_ARG = 6,         /* a caller passed an impossible argument */
    SB_ERR_MISMATCH = 7,    /* tokenizer and model do not belong together */
    SB_ERR_PROMPT = 8,      /* prompt cannot be encoded (bad UTF-8, too long) */
    SB_ERR_MODEL_CHANGED = 9 /* the mapped model file shrank or was rewritten in place */
} sb_status;

typedef struct {
    int code;
    char message[320];
} sb_error;

/* Weight formats a model file can hold. */
typedef enum {
    SB_FMT_F32 = 0,         /* llama2.c legacy fp32 checkpoint */
    SB_FMT_Q8_LLAMA2C = 1,  /* llama2.c export.py --version 2 (Q8_0) */
    SB_FMT_Q8 = 2,          /* storybot SBQ file, int8 groups everywhere */
    SB_FMT_Q8Q4 = 3         /* storybot SBQ file, int8 layers + 4-bit classifier */
} sb_format;

/* Implementations of the hot ops, chosen per session at run time. */
typedef enum {
    SB_KERNEL_NAIVE = 0,    /* plain loops: the baseline of every benchmark ratio */
    SB_KERNEL_FAST = 1      /* best build for this ISA (portable vectorisable C or RVV) */
} sb_kernel;

/* KV_F16: attention cache in half precision (half the RAM).
 * LOW_RSS: hand each weight range back to the page cache (madvise) once a step has
 * read it, so the process's resident set holds only the slice in use; the pages are
 * faulted back in, cheaply and in 64 KB runs, on the next step. */
enum { SB_SESSION_KV_F16 = 1, SB_SESSION_LOW_RSS = 2 };

/* sb_quantize's group size when given 0: SB_GROUP_DEFAULT where it divides a row's
 * width, else the widest even divisor up to SB_GROUP_WIDEST (`quantize --help` reads
 * these, so the help cannot go stale). */
enum { SB_GROUP_DEFAULT = 32, SB_GROUP_WIDEST = 128 };

typedef struct {
    int dim;
    int hidden_dim;
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int vocab_size;
    int seq_len;
    int shared_classifier;
    int format;             /* sb_format */
    int group_size;         /* quantisation group of the layer matrices, 0 for fp32 */
    int64_t file_bytes;
    int64_t weight_bytes_per_token; /* weight bytes one forward step reads */
} sb_config;

typedef struct sb_model sb_model;
typedef struct sb_tokenizer sb_tokenizer;
typedef struct sb_session sb_session;
typedef struct sb_sampler sb_sampler;

const char *sb_status_name(int code);
const char *sb_version(void);
const char *sb_isa(void);   /* what the FAST kernel was built for: "portable" (C the compiler vectorises) or an RVV flavour */

/* Model: mapped read-only; weights are never copied into the heap. */
int sb_model_open(const char *path, sb_model **out, sb_error *err);
void sb_model_close(sb_model *m);
const sb_config *sb_model_config(const sb_model *m);

/* Tokenizer: llama2.c tokenizer.bin. vocab_size must equal the model's (0: trust the file). */
int sb_tokenizer_open(const char *path, int vocab_size, sb_tokenizer **out, sb_error *err);
void sb_tokenizer_close(sb_tokenizer *t);
int sb_tokenizer_vocab_size(const sb_tokenizer *t);
int sb_tokenizer_max_token_length(const sb_tokenizer *t);  /* longest piece in bytes */
/* Encodes len bytes of UTF-8 text; BOS (1) first when bos, EOS (2) last when eos.
 * Needs room for len + 3 tokens; fails with SB_ERR_PROMPT on invalid UTF-8. */
int sb_encode(const sb_tokenizer *t, const char *text, size_t len, int bos, int eos,
              int *tokens, int max_tokens, int *n_tokens, sb_error *err);
/* The bytes to print when `token` follows `prev` (run.c's decode: the space after
 * BOS dropped, <0xXX> turned into its byte). Not NUL-terminated; length in *len. */
const char *sb_decode(const sb_tokenizer *t, int prev, int token, size_t *len);
/* The raw vocabulary entry and its merge score. */
const char *sb_token_piece(const sb_tokenizer *t, int token, size_t *len);
float sb_token_score(const sb_tokenizer *t, int token);

/* Session: the KV cache and activations of one conversation with a model. */
int sb_session_new(const sb_model *m, int kernel, int flags, sb_session **out, sb_error *err);
void sb_session_free(sb_session *s);
int sb_session_kernel(const sb_session *s);
size_t sb_session_bytes(const sb_session *s);
/* One forward step; *logits points into the session (vocab_size floats) until the next call.
 * The weights are read straight from the mapped file, so a file truncated or rewritten
 * in place while open would kill the process with SIGBUS: the library catches that
 * signal while sb_model_open, sb_forward, sb_next and sb_quantize read the mapping
 * (its own SIGBUS handler, installed on first use; a SIGBUS anywhere else goes to the
 * handler it replaced) and they fail with SB_ERR_MODEL_CHANGED. The model is then
 * unusable: close it and open the file again. Replace model files by renaming a new
 * file over the old one, never by writing into it. A SIGBUS handler installed after the
 * first sb_model_open displaces the library's (install yours first, e.g. Python's
 * faulthandler.enable(), and the library chains to it). */
int sb_forward(sb_session *s, int token, int pos, float **logits);

/* Sampler with run.c's semantics (xorshift64*, greedy at 0, multinomial, top-p). */
int sb_sampler_new(int vocab_size, float temperature, float topp, uint64_t seed,
                   sb_sampler **out, sb_error *err);
void sb_sampler_free(sb_sampler *s);
/* Samples from logits (which it overwrites) exactly as run.c: the same token for the
 * same logits and seed, to the last bit of every probability. */
int sb_sample(sb_sampler *s, float *logits);
/* Samples as sb_next does for this session: run.c-exact for fp32 models; for quantised
 * models the softmax uses the kernel's own exp and summation order (docs/formats.md). */
int sb_sample_with(sb_sampler *s, const sb_session *session, float *logits);
uint64_t sb_sampler_state(const sb_sampler *s);

/* forward + (forced >= 0 ? forced : sample): one FFI crossing per generated token.
 * Returns the next token id, or a negative sb_status. */
int sb_next(sb_session *s, sb_sampler *smp, int token, int pos, int forced);

/* Quantise an fp32 model into a storybot SBQ file (see docs/formats.md). */
int sb_quantize(const sb_model *m, const char *out_path, int format, int group_size, sb_error *err);
/* CDEF-END */

#ifdef __cplusplus
}
#endif
#endif

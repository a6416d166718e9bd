/* fuzz_model.c -- libFuzzer harness: the input is a model file in any of the four
 * formats (llama2.c fp32, llama2.c Q8_0, SBQ q8, SBQ q8q4). Whatever opens is run for
 * two forward steps (kernel and session flags picked by the input) and each step's
 * token is sampled.
 * Built by `make fuzz` (clang -fsanitize=fuzzer,address,undefined) and, with
 * driver.c instead of libFuzzer, by tests/unit/test_fuzz.py to replay corpus/model/.
 * Link with memfile.c. */
#include "storybot.h"
#include <stdint.h>
#include <stdlib.h>

/* sb_model_open takes a path: every input is written over one in-memory file, named
 * through /proc/self/fd (no disk traffic per input). */
const char *sbfuzz_file(const uint8_t *data, size_t size);

/* Sessions are sized by seq_len and the layer count, which a few header bytes can make
 * enormous without a big file: skip those, the loader has already been exercised. */
static int small_enough(const sb_config *c) {
    int64_t kv = (int64_t)c->dim / c->n_heads * c->n_kv_heads;
    return (int64_t)c->n_layers * c->seq_len * kv <= (1 << 20) && (int64_t)c->n_heads * c->seq_len <= (1 << 20);
}

static void run(const sb_model *m, int kernel, int flags, float temperature) {
    sb_session *s;
    sb_sampler *smp;
    sb_error e;
    const sb_config *c = sb_model_config(m);
    if (sb_session_new(m, kernel, flags, &s, &e)) return;
    if (sb_sampler_new(c->vocab_size, temperature, 0.9f, 42, &smp, &e) == SB_OK) {
        int tok = 1 % c->vocab_size;
        for (int pos = 0; pos < 2 && pos < c->seq_len; pos++) {
            tok = sb_next(s, smp, tok, pos, -1);
            if (tok < 0 || tok >= c->vocab_size) abort();   /* a token outside the vocabulary */
        }
        sb_sampler_free(smp);
    }
    sb_session_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sb_model *m;
    sb_error e;
    if (sb_model_open(sbfuzz_file(data, size), &m, &e) != SB_OK) return 0;
    /* one session per input, the kernel and flags picked by the input's last byte */
    unsigned pick = size ? data[size - 1] : 0;
    if (small_enough(sb_model_config(m)))
        run(m, pick & 1 ? SB_KERNEL_NAIVE : SB_KERNEL_FAST, (int)(pick >> 1) & 3, pick & 8 ? 0.0f : 0.8f);
    sb_model_close(m);
    return 0;
}

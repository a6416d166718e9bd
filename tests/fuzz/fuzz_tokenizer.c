/* fuzz_tokenizer.c -- libFuzzer harness for the tokenizer: the first 4 bytes give the
 * length k of a tokenizer.bin that follows; the rest is text to encode (with and
 * without BOS/EOS), whose tokens are then decoded one by one. See fuzz_model.c. */
#include "storybot.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

const char *sbfuzz_file(const uint8_t *data, size_t size);   /* memfile.c */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4) return 0;
    uint32_t k;
    memcpy(&k, data, 4);
    data += 4; size -= 4;
    if (k > size) k = (uint32_t)size;
    sb_tokenizer *t;
    sb_error e;
    if (sb_tokenizer_open(sbfuzz_file(data, k), 0, &t, &e) != SB_OK) return 0;
    const char *text = (const char *)data + k;
    size_t len = size - k;
    int cap = (int)len + 3, n;
    int *tokens = malloc((size_t)cap * sizeof *tokens);
    if (!tokens) abort();
    for (int flags = 0; flags < 2; flags++) {
        if (sb_encode(t, text, len, flags, flags, tokens, cap, &n, &e) != SB_OK) continue;
        if (n < 0 || n > cap) abort();
        int prev = 1;
        for (int i = 0; i < n; i++) {
            if (tokens[i] < 0 || tokens[i] >= sb_tokenizer_vocab_size(t)) abort();
            size_t pl;
            const char *p = sb_decode(t, prev, tokens[i], &pl);
            volatile char sink = pl ? p[pl - 1] : 0;   /* every byte it claims must be readable */
            (void)sink;
            prev = tokens[i];
        }
    }
    free(tokens);
    sb_tokenizer_close(t);
    return 0;
}

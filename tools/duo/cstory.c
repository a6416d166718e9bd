/*
 * cstory.c -- tells a story through libstorybot.so with no Python: the C-only driver.
 *
 * It dlopen()s the very library that goes into the bundle and makes exactly the calls
 * robot/engine.py makes (one sb_next per position), so it serves twice:
 *  - built against musl (-DOWN_START) it proves the bundle's kernel resolves every
 *    symbol it needs from musl, the Duo's C library, although the riscv64 Python we can
 *    emulate here is Debian's glibc. Only musl's libc.so is at hand (no musl headers or
 *    crt files), hence the hand-written _start and the few declarations below;
 *  - built against glibc it is the baseline for the Python overhead per token
 *    (tools/duo/overhead.py): same libm, same malloc as the emulated Python.
 *
 *   cstory LIB MODEL TOKENIZER PROMPT STEPS TEMPERATURE TOPP SEED
 * prints   isa=<sb_isa()>   then   ids=<id,id,...>   (generated ids only, as the CLI's jsonl)
 *
 * Builds (tests/system/test_duo.py and tools/duo/overhead.py do this):
 *   musl:  $G14 -O2 -ffreestanding -nostdlib -no-pie -DOWN_START -I_kernel tools/duo/cstory.c \
 *              -L$RVROOT/usr/lib/riscv64-linux-musl -lc -Wl,--dynamic-linker=/lib/ld-musl-riscv64.so.1
 *   glibc: $G14 -O2 -I_kernel tools/duo/cstory.c
 */
#include "storybot.h"

/* musl's ABI for what we use; declared here because only musl's libc.so is at hand. */
void *dlopen(const char *file, int mode);
void *dlsym(void *handle, const char *name);
char *dlerror(void);
int dprintf(int fd, const char *fmt, ...);
unsigned long long strtoull(const char *s, char **end, int base);
long strtol(const char *s, char **end, int base);
float strtof(const char *s, char **end);
unsigned long strlen(const char *s);
int __libc_start_main(int (*main)(int, char **, char **), int argc, char **argv,
                      void (*init)(void), void (*fini)(void), void (*ldso)(void));
#define RTLD_NOW 2

#ifdef OWN_START
/* The entry point musl's crt1 would provide: set gp, hand the initial stack to C. */
__asm__(".text\n.globl _start\n_start:\n"
        ".option push\n.option norelax\n\tlla gp, __global_pointer$\n.option pop\n"
        "\tmv a0, sp\n\tandi sp, sp, -16\n\tcall start_c\n");

#endif

static int fail(const char *what, const char *detail) {
    dprintf(2, "cstory: %s: %s\n", what, detail ? detail : "?");
    return 2;
}

#define SYM(name) name##_fn = (__typeof__(&name))dlsym(h, #name); if (!name##_fn) return fail("missing symbol", #name)

static int story(int argc, char **argv, char **envp) {
    (void)envp;
    if (argc != 9)
        return fail("usage", "cstory LIB MODEL TOKENIZER PROMPT STEPS TEMPERATURE TOPP SEED");
    void *h = dlopen(argv[1], RTLD_NOW);
    if (!h) return fail("dlopen", dlerror());
    __typeof__(&sb_isa) sb_isa_fn; __typeof__(&sb_model_open) sb_model_open_fn;
    __typeof__(&sb_model_config) sb_model_config_fn; __typeof__(&sb_tokenizer_open) sb_tokenizer_open_fn;
    __typeof__(&sb_encode) sb_encode_fn; __typeof__(&sb_session_new) sb_session_new_fn;
    __typeof__(&sb_sampler_new) sb_sampler_new_fn; __typeof__(&sb_next) sb_next_fn;
    SYM(sb_isa); SYM(sb_model_open); SYM(sb_model_config); SYM(sb_tokenizer_open); SYM(sb_encode);
    SYM(sb_session_new); SYM(sb_sampler_new); SYM(sb_next);

    sb_error err;
    sb_model *m; sb_tokenizer *t; sb_session *s; sb_sampler *smp;
    if (sb_model_open_fn(argv[2], &m, &err)) return fail("model", err.message);
    const sb_config *c = sb_model_config_fn(m);
    if (sb_tokenizer_open_fn(argv[3], c->vocab_size, &t, &err)) return fail("tokenizer", err.message);
    if (sb_session_new_fn(m, SB_KERNEL_FAST, 0, &s, &err)) return fail("session", err.message);
    int steps = (int)strtol(argv[5], 0, 10);
    if (steps <= 0 || steps > c->seq_len) steps = c->seq_len;
    if (sb_sampler_new_fn(c->vocab_size, strtof(argv[6], 0), strtof(argv[7], 0), strtoull(argv[8], 0, 10), &smp, &err))
        return fail("sampler", err.message);
    static int prompt[4096];
    int n = 0;
    unsigned long len = strlen(argv[4]);
    if (len + 3 > sizeof prompt / sizeof prompt[0]) return fail("prompt", "too long");
    if (sb_encode_fn(t, argv[4], len, 1, 0, prompt, (int)(len + 3), &n, &err)) return fail("prompt", err.message);

    dprintf(1, "isa=%s\nids=", sb_isa_fn());
    int token = prompt[0], first = 1;
    for (int pos = 0; pos < steps; pos++) {
        int forced = pos < n - 1 ? prompt[pos + 1] : -1;
        int next = sb_next_fn(s, smp, token, pos, forced);
        if (next < 0) return fail("sb_next", "kernel error");
        if (next == 1) break;   /* BOS ends a story, as in run.c */
        if (forced < 0) { dprintf(1, first ? "%d" : ",%d", next); first = 0; }
        token = next;
    }
    dprintf(1, "\n");
    return 0;
}

#ifdef OWN_START
void start_c(long *sp) {
    __libc_start_main(story, (int)sp[0], (char **)(sp + 1), 0, 0, 0);
}
#else
int main(int argc, char **argv, char **envp) { return story(argc, argv, envp); }
#endif

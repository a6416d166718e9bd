/* kbench -- runs the kernel's forward step through the public API (storybot.h) and
 * reports speed and agreement, with no Python in the way. Built natively by
 * `make kbench` and cross-built as a static RISC-V binary by `make riscv`.
 *
 *   kbench [-n STEPS] [-p POS] [-k naive,fast] [-t TEMP [-P TOPP]] [--dump FILE] [--check TOL] MODEL...
 *       runs STEPS forward steps at positions POS.. for each model and kernel, times
 *       them, and compares every step's logits with the first kernel's. The KV cache
 *       below POS is left at zero: a step's cost depends on its position, not on what
 *       the cache holds, so `-p 128` measures a mid-story token without 128 warm-up
 *       steps. On RISC-V each kernel's steps are bracketed by the rvcount markers, and
 *       a "roi N" line on stdout says which region is which.
 *       With -t TEMP [-P TOPP] each step's token is also sampled (seed 123), in its own
 *       counted region, so the counts are a whole token as `storybot` makes one;
 *       "sampler ms/token" is printed separately.
 *   kbench --compare TOL A B      two --dump files (e.g. scalar vs vector builds)
 *   kbench --quantize IN OUT q8|q8q4
 *   kbench --llama2c-q8 IN OUT    llama2.c's own int8 export (version 2, Q8_0)
 */
#define _POSIX_C_SOURCE 200809L
#include "storybot.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "roi.h"

static const char *FORMAT_NAMES[] = {"f32", "q8-llama2c", "q8", "q8q4"};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int die(const char *what, const sb_error *e) {
    fprintf(stderr, "kbench: %s: %s\n", what, e->message);
    return 2;
}

/* Largest difference between two logit vectors relative to the larger logit scale. */
static double rel_diff(const float *a, const float *b, int n) {
    double d = 0, m = 1e-12;
    for (int i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (e > d) d = e;
        if (fabs(a[i]) > m) m = fabs(a[i]);
    }
    return d / m;
}

static int argmax(const float *a, int n) {
    int k = 0;
    for (int i = 1; i < n; i++) if (a[i] > a[k]) k = i;
    return k;
}

/* ------------------------------------------------------------------ --compare */

static float *read_dump(const char *path, long *n) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "kbench: cannot open %s\n", path); return NULL; }
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    float *p = malloc(bytes > 0 ? (size_t)bytes : 1);
    if (!p || fread(p, 1, (size_t)bytes, f) != (size_t)bytes) { fclose(f); free(p); return NULL; }
    fclose(f);
    *n = bytes / 4;
    return p;
}

static int compare(double tol, const char *pa, const char *pb) {
    long na, nb;
    float *a = read_dump(pa, &na), *b = read_dump(pb, &nb);
    if (!a || !b || na != nb || na == 0) {
        fprintf(stderr, "kbench: %s and %s are not dumps of the same run\n", pa, pb);
        return 2;
    }
    double d = rel_diff(a, b, (int)na);
    printf("compare %s %s: %ld logits, max relative difference %.3g (tolerance %.3g) %s\n",
           pa, pb, na, d, tol, d <= tol ? "OK" : "FAIL");
    free(a); free(b);
    return d <= tol ? 0 : 1;
}

/* ------------------------------------------------------------------ llama2.c Q8_0 */

/* The layout llama2.c's export.py --version 2 writes: a 256-byte header, the fp32
 * norm weights, then every matrix as int8 values followed by one fp32 scale per
 * group, group size the largest power of two <= 64 dividing dim. */
static int q8_write(FILE *f, const float *w, long n, int gs) {
    signed char *q = malloc((size_t)n);
    float *s = malloc((size_t)(n / gs) * sizeof *s);
    if (!q || !s) { free(q); free(s); return -1; }
    for (long g = 0; g < n / gs; g++) {
        float amax = 0;
        for (int i = 0; i < gs; i++) if (fabsf(w[g * gs + i]) > amax) amax = fabsf(w[g * gs + i]);
        float sc = amax / 127.0f;
        s[g] = sc;
        for (int i = 0; i < gs; i++) q[g * gs + i] = (signed char)lrintf(sc > 0 ? w[g * gs + i] / sc : 0);
    }
    int rc = fwrite(q, 1, (size_t)n, f) == (size_t)n && fwrite(s, 4, (size_t)(n / gs), f) == (size_t)(n / gs) ? 0 : -1;
    free(q); free(s);
    return rc;
}

static int export_llama2c_q8(const char *in, const char *out) {
    FILE *fi = fopen(in, "rb");
    if (!fi) { fprintf(stderr, "kbench: cannot open %s\n", in); return 2; }
    int h[7];
    if (fread(h, 4, 7, fi) != 7) { fclose(fi); return 2; }
    int dim = h[0], hid = h[1], L = h[2], heads = h[3], kvh = h[4], V = abs(h[5]), seq = h[6], shared = h[5] > 0;
    long kv = (long)dim / heads * kvh, hs = dim / heads;
    long total = (long)V * dim + 2L * L * dim + 2L * L * dim * dim + 2L * L * dim * kv + 3L * L * dim * hid + dim
               + (long)seq * hs + (shared ? 0 : (long)V * dim);
    float *w = malloc((size_t)total * 4);
    if (!w || fread(w, 4, (size_t)total, fi) != (size_t)total) { fclose(fi); free(w); fprintf(stderr, "kbench: %s is short\n", in); return 2; }
    fclose(fi);
    int gs = 64;
    while (dim % gs || hid % gs) gs /= 2;
    const float *tok = w, *rms_att = tok + (long)V * dim, *wq = rms_att + (long)L * dim, *wk = wq + (long)L * dim * dim,
                *wv = wk + (long)L * dim * kv, *wo = wv + (long)L * dim * kv, *rms_ffn = wo + (long)L * dim * dim,
                *w1 = rms_ffn + (long)L * dim, *w2 = w1 + (long)L * dim * hid, *w3 = w2 + (long)L * dim * hid,
                *rms_final = w3 + (long)L * dim * hid, *cls = rms_final + dim + (long)seq * hs;
    FILE *f = fopen(out, "wb");
    if (!f) { free(w); fprintf(stderr, "kbench: cannot write %s\n", out); return 2; }
    unsigned char head[256] = {0};
    unsigned magic = 0x616b3432u;
    int version = 2, hh[7] = {dim, hid, L, heads, kvh, V, seq};
    memcpy(head, &magic, 4); memcpy(head + 4, &version, 4); memcpy(head + 8, hh, 28);
    head[36] = (unsigned char)shared;
    memcpy(head + 37, &gs, 4);
    int rc = fwrite(head, 1, 256, f) == 256 ? 0 : -1;
    if (!rc) rc = fwrite(rms_att, 4, (size_t)L * dim, f) == (size_t)L * dim ? 0 : -1;
    if (!rc) rc = fwrite(rms_ffn, 4, (size_t)L * dim, f) == (size_t)L * dim ? 0 : -1;
    if (!rc) rc = fwrite(rms_final, 4, (size_t)dim, f) == (size_t)dim ? 0 : -1;
    if (!rc) rc = q8_write(f, tok, (long)V * dim, gs);
    const float *mats[7] = {wq, wk, wv, wo, w1, w2, w3};
    long sizes[7] = {(long)dim * dim, dim * kv, dim * kv, (long)dim * dim, (long)dim * hid, (long)dim * hid, (long)dim * hid};
    for (int m = 0; !rc && m < 7; m++)
        for (int l = 0; !rc && l < L; l++) rc = q8_write(f, mats[m] + l * sizes[m], sizes[m], gs);
    if (!rc && !shared) rc = q8_write(f, cls, (long)V * dim, gs);
    if (fclose(f) != 0) rc = -1;
    free(w);
    if (rc) { fprintf(stderr, "kbench: could not write %s\n", out); return 2; }
    return 0;
}

/* ------------------------------------------------------------------ the bench */

typedef struct {
    int steps, pos, nk, kernels[2];
    const char *dump;
    double check;
    float temp, topp;       /* temp < 0: forward steps only */
} opts;

static int bench_model(const char *path, const opts *o, FILE *dump, double *base_ms, int *roi) {
    sb_error e;
    sb_model *m;
    if (sb_model_open(path, &m, &e)) return die(path, &e);
    const sb_config *c = sb_model_config(m);
    if (o->pos + o->steps > c->seq_len) {
        fprintf(stderr, "kbench: %s: positions %d..%d exceed the model's context of %d\n", path, o->pos, o->pos + o->steps - 1, c->seq_len);
        sb_model_close(m);
        return 2;
    }
    size_t V = (size_t)c->vocab_size;
    float *ref = malloc(V * o->steps * sizeof *ref);
    if (!ref) { sb_model_close(m); fprintf(stderr, "kbench: out of memory\n"); return 2; }
    int rc = 0;
    for (int k = 0; k < o->nk && !rc; k++) {
        int kernel = o->kernels[k];
        sb_session *s;
        if (sb_session_new(m, kernel, 0, &s, &e)) { rc = die(path, &e); break; }
        const char *kname = kernel == SB_KERNEL_NAIVE ? "naive" : sb_isa();
        float *logits;
        double worst = 0, sampling = 0;
        int agree = 0;
        sb_sampler *smp = NULL;
        if (o->temp >= 0 && sb_sampler_new(c->vocab_size, o->temp, o->topp, 123, &smp, &e)) { rc = die(path, &e); sb_session_free(s); break; }
        printf("roi %d: %s %s %s steps %d from pos %d\n", (*roi)++, path, FORMAT_NAMES[c->format], kname, o->steps, o->pos);
        fflush(stdout);
        double t0 = now(), busy = 0;
        ROI_BEGIN();
        for (int i = 0; i < o->steps; i++) {
            int token = (int)((1 + 7919L * i) % c->vocab_size);
            double t1 = now();
            sb_forward(s, token, o->pos + i, &logits);
            busy += now() - t1;
            ROI_END();
            /* keep the comparison outside the counted region */
            float *r = ref + V * i;
            if (k == 0) memcpy(r, logits, V * sizeof *r);
            else {
                double d = rel_diff(r, logits, (int)V);
                if (d > worst) worst = d;
                agree += argmax(r, (int)V) == argmax(logits, (int)V);
            }
            if (dump && kernel == SB_KERNEL_FAST && fwrite(logits, 4, V, dump) != V) rc = 2;
            if (smp) {
                t1 = now();
                ROI_BEGIN();
                sb_sample_with(smp, s, logits);
                ROI_END();
                sampling += now() - t1;
            }
            if (i + 1 < o->steps) ROI_BEGIN();
        }
        (void)t0;
        double ms = busy * 1e3 / o->steps;
        if (*base_ms == 0) *base_ms = ms;
        printf("%-28s %-10s %-12s %9.3f ms/token %8.1f tok/s  x%-6.2f %10lld weight bytes/token",
               path, FORMAT_NAMES[c->format], kname, ms, 1e3 / ms, *base_ms / ms, (long long)c->weight_bytes_per_token);
        if (smp) printf("  sampler %.3f ms/token (t %g, p %g)", sampling * 1e3 / o->steps, (double)o->temp, (double)o->topp);
        if (k > 0) printf("  vs %s: max rel diff %.2e, argmax %d/%d", "first kernel", worst, agree, o->steps);
        printf("\n");
        if (k > 0 && o->check > 0 && (worst > o->check || agree < o->steps)) {
            fprintf(stderr, "kbench: %s: kernel %s disagrees with the first kernel (max rel diff %.3g, tolerance %.3g)\n", path, kname, worst, o->check);
            rc = 1;
        }
        sb_sampler_free(smp);
        sb_session_free(s);
    }
    free(ref);
    sb_model_close(m);
    return rc;
}

int main(int argc, char **argv) {
    opts o = {16, 0, 2, {SB_KERNEL_NAIVE, SB_KERNEL_FAST}, NULL, 0, -1.0f, 0.9f};
    int i = 1;
    if (argc >= 5 && !strcmp(argv[1], "--compare")) return compare(atof(argv[2]), argv[3], argv[4]);
    if (argc == 5 && !strcmp(argv[1], "--quantize")) {
        int fmt = !strcmp(argv[4], "q8") ? SB_FMT_Q8 : !strcmp(argv[4], "q8q4") ? SB_FMT_Q8Q4 : -1;
        if (fmt < 0) { fprintf(stderr, "kbench: format must be q8 or q8q4\n"); return 2; }
        sb_error e;
        sb_model *m;
        if (sb_model_open(argv[2], &m, &e)) return die(argv[2], &e);
        int rc = sb_quantize(m, argv[3], fmt, 0, &e);
        sb_model_close(m);
        return rc ? die(argv[3], &e) : 0;
    }
    if (argc == 4 && !strcmp(argv[1], "--llama2c-q8")) return export_llama2c_q8(argv[2], argv[3]);
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc) o.steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-p") && i + 1 < argc) o.pos = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dump") && i + 1 < argc) o.dump = argv[++i];
        else if (!strcmp(argv[i], "--check") && i + 1 < argc) o.check = atof(argv[++i]);
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) o.temp = (float)atof(argv[++i]);
        else if (!strcmp(argv[i], "-P") && i + 1 < argc) o.topp = (float)atof(argv[++i]);
        else if (!strcmp(argv[i], "-k") && i + 1 < argc) {
            const char *k = argv[++i];
            if (!strcmp(k, "naive")) { o.nk = 1; o.kernels[0] = SB_KERNEL_NAIVE; }
            else if (!strcmp(k, "fast")) { o.nk = 1; o.kernels[0] = SB_KERNEL_FAST; }
            else if (!strcmp(k, "naive,fast")) { o.nk = 2; o.kernels[0] = SB_KERNEL_NAIVE; o.kernels[1] = SB_KERNEL_FAST; }
            else if (!strcmp(k, "fast,naive")) { o.nk = 2; o.kernels[0] = SB_KERNEL_FAST; o.kernels[1] = SB_KERNEL_NAIVE; }
            else { fprintf(stderr, "kbench: -k takes naive, fast, naive,fast or fast,naive\n"); return 2; }
        } else { fprintf(stderr, "kbench: unknown option %s (see the comment at the top of bench/kbench.c)\n", argv[i]); return 2; }
    }
    if (i >= argc || o.steps <= 0 || o.pos < 0) {
        fprintf(stderr, "usage: kbench [-n STEPS] [-p POS] [-k naive,fast] [-t TEMP [-P TOPP]] [--dump FILE] [--check TOL] MODEL...\n"
                        "       kbench --compare TOL A B | --quantize IN OUT q8|q8q4 | --llama2c-q8 IN OUT\n");
        return 2;
    }
    printf("kbench: storybot %s, fast kernel isa %s, %d steps from pos %d\n", sb_version(), sb_isa(), o.steps, o.pos);
    FILE *dump = NULL;
    if (o.dump && !(dump = fopen(o.dump, "wb"))) { fprintf(stderr, "kbench: cannot write %s\n", o.dump); return 2; }
    double base = 0;
    int roi = 0, rc = 0;
    for (; i < argc && rc != 2; i++) {
        int r = bench_model(argv[i], &o, dump, &base, &roi);
        if (r > rc) rc = r;
    }
    if (dump && fclose(dump) != 0) rc = 2;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("peak RSS %ld KB\n", ru.ru_maxrss);
    return rc;
}

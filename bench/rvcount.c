/* rvcount.c -- storybot's instruction-count plugin for QEMU user mode (riscv64).
 *
 * Counts the instructions a program executes in four classes -- scalar, vset
 * (vsetvl/vsetvli/vsetivli), valu (every other OP-V instruction) and vmem (vector
 * loads and stores) -- and, for every region between the markers of bench/roi.h
 *     slti x0,x0,0x7f0   region starts      slti x0,x0,0x7f1   region ends
 * prints one line to stderr (the bench scripts parse it):
 *     roi[N] total=T scalar=S vector=V (vset=A valu=B vmem=C)
 * and at exit the whole run as "total total=... scalar=... vector=... (...)".
 * The markers write x0, so on hardware they do nothing; they are not counted.
 *
 * Options: hist=on adds a per-mnemonic histogram at exit; out=FILE writes there
 * instead of stderr. QEMU 7.2 takes "-plugin rvcount.so,hist=on", xuantie-qemu
 * (QEMU 6.0) "-plugin rvcount.so,arg=hist=on"; both spellings are accepted.
 *
 * Why counts and not time: instructions repeat exactly from run to run, so two
 * kernels can be compared side by side under emulation; C906 cycles they are not.
 *
 * Built by tools/rvtoolbox.sh with the host gcc; QEMU's own header is not needed
 * (Debian ships none): the few API calls used, unchanged from API version 0 (QEMU
 * 6.0) to 1 (QEMU 7.2/8.x), are declared below. QEMU 9 removed the inline calls.
 *
 * How counting stays cheap: at translation, a block's instructions are cut into
 * segments at the markers; each segment's per-class totals are added by inline
 * operations attached to its first instruction (QEMU runs a block start to end in
 * user mode), so no C code runs per instruction. Only markers call back into C.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the subset of QEMU's plugin API (include/qemu/qemu-plugin.h) used here ---- */
typedef uint64_t qemu_plugin_id_t;
typedef struct {
    const char *target_name;
    struct { int min, cur; } version;
    bool system_emulation;
} qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum { CB_NO_REGS = 0 };
enum { INLINE_ADD_U64 = 0 };
typedef void (*vcpu_udata_cb)(unsigned int vcpu, void *udata);
typedef void (*tb_trans_cb)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*atexit_cb)(qemu_plugin_id_t id, void *udata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb cb);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, vcpu_udata_cb cb, int flags, void *udata);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn, int op, void *ptr, uint64_t imm);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, atexit_cb cb, void *udata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
char *qemu_plugin_insn_disas(const struct qemu_plugin_insn *insn);
/* -------------------------------------------------------------------------------- */

#define EXPORT __attribute__((visibility("default")))
EXPORT int qemu_plugin_version = 0; /* the oldest API: both QEMUs load it */

enum cls { SCALAR, VSET, VALU, VMEM, NCLS };
#define ROI_BEGIN 0x7f002013u /* slti x0,x0,0x7f0 */
#define ROI_END 0x7f102013u   /* slti x0,x0,0x7f1 */

static uint64_t counts[NCLS]; /* user mode runs one vCPU here: plain inline adds are exact */
static uint64_t region_start[NCLS];
static int regions;
static FILE *out;

/* the 32-bit word of an instruction, or 0 for a compressed (16-bit) one */
static uint32_t word(const struct qemu_plugin_insn *insn) {
    const uint8_t *b = qemu_plugin_insn_data(insn);
    if (qemu_plugin_insn_size(insn) != 4)
        return 0;
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* The encodings are shared by RVV 1.0 and XTheadVector (RVV 0.7.1): OP-V is major
 * opcode 0x57 with funct3 7 for vset*; vector loads/stores use LOAD-FP/STORE-FP
 * with a width of 0 or 5..7 (scalar flh/flw/fld use 1..4). */
static enum cls classify(uint32_t w) {
    uint32_t opcode = w & 0x7f, funct3 = (w >> 12) & 7;
    if (opcode == 0x57)
        return funct3 == 7 ? VSET : VALU;
    if ((opcode == 0x07 || opcode == 0x27) && (funct3 == 0 || funct3 >= 5))
        return VMEM;
    return SCALAR;
}

static void report(const char *tag, const uint64_t *c) {
    uint64_t vector = c[VSET] + c[VALU] + c[VMEM];
    fprintf(out, "%s total=%llu scalar=%llu vector=%llu (vset=%llu valu=%llu vmem=%llu)\n", tag,
            (unsigned long long)(c[SCALAR] + vector), (unsigned long long)c[SCALAR], (unsigned long long)vector,
            (unsigned long long)c[VSET], (unsigned long long)c[VALU], (unsigned long long)c[VMEM]);
    fflush(out);
}

/* A marker: the instructions before it are already added (their segment's adds ran
 * at its start), so the region is exact; the marker itself is counted outside it. */
static void on_marker(unsigned int vcpu, void *udata) {
    (void)vcpu;
    if ((uintptr_t)udata == ROI_BEGIN) {
        counts[SCALAR]++;
        memcpy(region_start, counts, sizeof counts);
        return;
    }
    uint64_t d[NCLS];
    char tag[32];
    for (int i = 0; i < NCLS; i++)
        d[i] = counts[i] - region_start[i];
    snprintf(tag, sizeof tag, "roi[%d]", regions++);
    report(tag, d);
    counts[SCALAR]++;
}

/* ---- hist=on: executions per mnemonic (a small open-addressing table) ---- */
#define HSLOTS 2048
struct hent {
    char name[24];
    uint64_t n;
};
static struct hent hist[HSLOTS];
static bool want_hist;

static uint64_t *hist_counter(const char *disas) {
    char name[24];
    size_t k = 0;
    /* QEMU writes "mnemonic operands", sometimes after the instruction's hex bytes */
    while (*disas == ' ' || *disas == '\t')
        disas++;
    const char *p = disas;
    while ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))
        p++;
    if ((p - disas == 4 || p - disas == 8) && (*p == ' ' || *p == '\t'))
        for (disas = p; *disas == ' ' || *disas == '\t'; disas++) {
        }
    while (disas[k] && disas[k] != ' ' && disas[k] != '\t' && k < sizeof name - 1) {
        name[k] = disas[k];
        k++;
    }
    name[k] = 0;
    uint32_t h = 5381;
    for (size_t i = 0; i < k; i++)
        h = h * 33 + (uint8_t)name[i];
    for (uint32_t probe = 0; probe < HSLOTS; probe++) {
        uint32_t s = (h + probe) % HSLOTS;
        if (!hist[s].name[0]) {
            memcpy(hist[s].name, name, k + 1);
            return &hist[s].n;
        }
        if (!strcmp(hist[s].name, name))
            return &hist[s].n;
    }
    return &hist[h % HSLOTS].n; /* full: never with real RISC-V code */
}

static int by_count(const void *a, const void *b) {
    uint64_t x = ((const struct hent *)a)->n, y = ((const struct hent *)b)->n;
    return x < y ? 1 : x > y ? -1 : 0;
}
/* ------------------------------------------------------------------------- */

static void add_segment(struct qemu_plugin_insn *first, const uint64_t *seg) {
    for (int c = 0; c < NCLS; c++)
        if (seg[c])
            qemu_plugin_register_vcpu_insn_exec_inline(first, INLINE_ADD_U64, &counts[c], seg[c]);
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    uint64_t seg[NCLS] = {0};
    struct qemu_plugin_insn *first = NULL;
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint32_t w = word(insn);
        if (want_hist) {
            char *d = qemu_plugin_insn_disas(insn);
            qemu_plugin_register_vcpu_insn_exec_inline(insn, INLINE_ADD_U64, hist_counter(d ? d : "?"), 1);
            free(d);
        }
        if (w == ROI_BEGIN || w == ROI_END) {
            if (first)
                add_segment(first, seg);
            memset(seg, 0, sizeof seg);
            first = NULL;
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_marker, CB_NO_REGS, (void *)(uintptr_t)w);
            continue;
        }
        if (!first)
            first = insn;
        seg[w ? classify(w) : SCALAR]++;
    }
    if (first)
        add_segment(first, seg);
}

static void at_exit(qemu_plugin_id_t id, void *udata) {
    (void)id;
    (void)udata;
    report("total", counts);
    if (want_hist) {
        qsort(hist, HSLOTS, sizeof hist[0], by_count);
        for (int i = 0; i < HSLOTS && hist[i].n; i++)
            fprintf(out, "  %-16s %llu\n", hist[i].name, (unsigned long long)hist[i].n);
    }
    if (out != stderr)
        fclose(out);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    (void)info;
    out = stderr;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strncmp(a, "arg=", 4))
            a += 4;
        if (!strcmp(a, "hist=on") || !strcmp(a, "hist=true")) {
            want_hist = true;
        } else if (!strncmp(a, "out=", 4)) {
            if (!(out = fopen(a + 4, "w"))) {
                fprintf(stderr, "rvcount: cannot write %s\n", a + 4);
                return -1;
            }
        } else {
            fprintf(stderr, "rvcount: unknown option %s (known: hist=on, out=FILE)\n", a);
            return -1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}

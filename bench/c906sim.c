/*
 * c906sim.c -- a timing model of the T-Head C906 (Milk-V Duo) as a QEMU TCG plugin
 * (linux-user). It watches every executed instruction and every memory access of a
 * RISC-V program and estimates how many cycles the C906 would take. See
 * docs/performance.md ("A timing model of the C906") for the calibration against
 * real-board figures.
 *
 * Build:  gcc -O2 -shared -fPIC -o c906sim.so bench/c906sim.c      (make riscv-bench)
 * Use:    qemu-riscv64 -plugin c906sim.so,isa=v|xthead[,k=v...] PROG   (QEMU 7.x)
 *         xuantie-qemu -plugin c906sim.so,arg=isa=xthead,arg=k=v PROG  (QEMU 6.0)
 *
 * The model, one in-order single-issue pipeline:
 *  - every instruction issues in `issue` cycles: 1 for scalar ones (plus a 1-cycle
 *    bubble after a taken branch or jump), the rvv-bench C906 table for vector ones (by
 *    class and by the LMUL of the vtype set by the last vsetvl(i) executed);
 *  - a scoreboard over the 32 integer and 32 FP registers delays an instruction until
 *    its sources are ready (latency per class: load 3, mul 4, FP 4-5, ...); the
 *    integer and FP dividers are units that stay busy for their latency;
 *  - data accesses go through a 64 KB, 4-way, 64-byte-line, LRU, write-back,
 *    write-allocate D-cache with no L2. A miss stalls the pipeline. A stream detector
 *    (the C906's D-cache prefetcher) tracks `pf` ascending miss streams: a miss on the
 *    line after a tracked stream's last one was prefetched: it was requested when the
 *    stream was `dist` lines behind, so DRAM latency is hidden once the stream runs and
 *    only bandwidth (one line per `line` cycles, shared with write-backs) holds it up;
 *    any other miss waits `lat` cycles plus its transfer. A stream is learnt after
 *    `train` misses and stops at every 4 KB page (the C906's prefetcher, openc906
 *    aq_lsu_pfb.v, works on physical addresses).
 * Vector instructions cost by LMUL only (rvv-bench measured full-VLMAX strips), and
 * the bytes a vector load or store moves are the element accesses QEMU reports.
 *
 * Regions: `slti x0,x0,0x7f0` starts, `slti x0,x0,0x7f1` ends one (bench/roi.h); each
 * end prints  roi[i] total=... scalar=... vector=... (vset=... valu=... vmem=...)
 *             cycles=... memstall=... depstall=... misses=... writebacks=... bytes=...
 * Options: isa=v (RVV 1.0 vtype layout, default) | isa=xthead (RVV 0.7.1),
 *          lat=CYCLES (default 100), line=CYCLES per 64-byte line (default 56; both
 *          fitted to real-board figures, docs/performance.md),
 *          pf=STREAMS (default 8; 0 = no prefetcher), train=LINES (misses before a stream
 *          is prefetched, default 3), dist=LINES (how far ahead it runs, 1..15, default 8), taken=CYCLES (taken-branch bubble, default 1),
 *          mark=HEXADDR (each execution of that address ends a region and starts one),
 *          out=FILE, prof=FILE (cycles per instruction address, bench/sim_profile.py),
 *          trace=on (every instruction and access, for the tests).
 * lat= and line= take lists, A:B:C: every combination is simulated side by side (the
 * cache is shared, the timing state is not) and printed as grid=lat/line:cycles/stall.
 *
 * Self-contained like ../shared/riscv/plugin/rvcount.c: declares the part of the QEMU
 * plugin API v0/v1 it uses (QEMU 6.0 .. 8.x).
 */
#include <stdint.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the subset of include/qemu/qemu-plugin.h (API v0/v1) used here ---- */
#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))
typedef uint64_t qemu_plugin_id_t;
typedef uint32_t qemu_plugin_meminfo_t;
typedef struct qemu_info_t {
    const char *target_name;
    struct { int min; int cur; } version;
    bool system_emulation;
    union { struct { int smp_vcpus; int max_vcpus; } system; };
} qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_mem_rw { QEMU_PLUGIN_MEM_R = 1, QEMU_PLUGIN_MEM_W, QEMU_PLUGIN_MEM_RW };
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_mem_cb_t)(unsigned int vcpu_index, qemu_plugin_meminfo_t info,
                                          uint64_t vaddr, void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_mem_cb_t cb,
                                      enum qemu_plugin_cb_flags flags, enum qemu_plugin_mem_rw rw,
                                      void *userdata);
unsigned int qemu_plugin_mem_size_shift(qemu_plugin_meminfo_t info);
bool qemu_plugin_mem_is_store(qemu_plugin_meminfo_t info);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
void qemu_plugin_outs(const char *string);
/* ------------------------------------------------------------------------- */

QEMU_PLUGIN_EXPORT int qemu_plugin_version = 0;

/* Instruction classes. Scalar ones issue in one cycle (dividers: `occupy`); vector
 * ones by the table vcost[class][lmul] below. */
enum cls {
    K_ALU, K_BRANCH, K_MUL, K_DIV, K_LOAD, K_STORE, K_FALU, K_FMA, K_FDIV, K_FMISC, K_SYS,
    K_VSET, K_VALU, K_VWIDE, K_VRED, K_VFMUL, K_VFRED, K_VFDIV, K_VTOS, K_VLD, K_VST, K_VLDX,
    NCLS
};
static const char *CLS_NAME[NCLS] = {
    "alu", "branch", "mul", "div", "load", "store", "falu", "fma", "fdiv", "fmisc", "sys",
    "vset", "valu", "vwide", "vred", "vfmul", "vfred", "vfdiv", "vtos", "vld", "vst", "vldx"};

/* Result latency of scalar classes (cycles from issue until a dependant may issue).
 * The dividers are iterative units beside the pipeline: a divide issues in one cycle,
 * holds its unit for its whole latency (the next divide waits), and its result comes
 * after it. The C906's integer divider (openc906 aq_iu_div.v) spends ~4 cycles on
 * set-up and retires 2 quotient bits a cycle, so its time depends on the operands,
 * which a plugin cannot see: 10 stands for a ~12-bit quotient. */
static const uint8_t LAT[NCLS] = {
    [K_ALU] = 1, [K_BRANCH] = 1, [K_MUL] = 4, [K_DIV] = 10, [K_LOAD] = 3, [K_STORE] = 1,
    [K_FALU] = 4, [K_FMA] = 5, [K_FDIV] = 17, [K_FMISC] = 2, [K_SYS] = 1, [K_VSET] = 1,
    [K_VTOS] = 4};
/* Cycles a scalar instruction holds the pipeline. */
static const uint8_t OCCUPY[NCLS] = {
    [K_ALU] = 1, [K_BRANCH] = 1, [K_MUL] = 1, [K_DIV] = 1, [K_LOAD] = 1, [K_STORE] = 1,
    [K_FALU] = 1, [K_FMA] = 1, [K_FDIV] = 1, [K_FMISC] = 1, [K_SYS] = 1, [K_VSET] = 1};
/* Vector issue cycles by LMUL m1, m2, m4, m8 (fractional LMUL counts as m1):
 * rvv-bench's C906 figures (docs/performance.md), and for the classes it does not list,
 * the nearest listed one (loads/stores and divides are assumptions, see the docs). */
static const uint8_t VCOST[NCLS][4] = {
    [K_VALU] = {4, 4, 8, 16}, [K_VWIDE] = {4, 4, 8, 16}, [K_VRED] = {5, 5, 9, 17},
    [K_VFMUL] = {5, 5, 8, 17}, [K_VFRED] = {9, 14, 24, 38}, [K_VFDIV] = {20, 40, 80, 160},
    [K_VTOS] = {4, 4, 4, 4}, [K_VLD] = {4, 4, 8, 16}, [K_VST] = {4, 4, 8, 16},
    [K_VLDX] = {16, 32, 64, 128}};

struct insn {            /* decoded once per translation */
    uint8_t cls, rd, rs[3];  /* registers: 0 none/x0, 1..31 x, 32..63 f */
    uint8_t is_vec;
    uint16_t vtype;      /* vsetvli immediate, 0xffff = from a register (keep the last) */
    uint64_t pc, next;   /* address; for branches and jumps, the fall-through address */
    uint64_t prof_n, prof_cyc;   /* prof=FILE: executions, cycles of timing set 0 */
    struct insn *all;    /* every record, for the profile */
};
static struct insn *all_insns, *cur;
static FILE *prof;

/* ---- state ---- */
static bool xthead = false, trace = false;
static uint64_t P_PF = 8, P_TRAIN = 3, P_TAKEN = 1, P_DIST = 8;
static uint64_t fallthrough;                   /* of the last branch executed, else 0 */
static uint64_t mark_pc;                       /* mark=ADDR: a region boundary, see on_boundary */
static FILE *out;
/* The timing state of one parameter set. Several sets (lat=A:B:..., line=C:D:...: their
 * cross product) run side by side over one execution for calibration; the cache and
 * stream detector do not depend on timing, so they are shared. */
struct timing {
    uint64_t lat, line;                        /* parameters */
    uint64_t cyc, memstall, depstall;          /* cycles so far */
    uint64_t dram_free;                        /* cycle the DRAM channel is free again */
    uint64_t ready[64];                        /* scoreboard: cycle a register is ready */
    uint64_t div_free, fdiv_free;              /* cycle the integer / FP divider is free */
    uint64_t miss_at[64][16];                  /* per stream: cycle of each line's demand miss, by line % 16 */
    uint64_t s_cyc, s_mem, s_dep;              /* at the region's start */
};
#define MAXT 64
static struct timing tm[MAXT];
static unsigned ntm;
static unsigned lmul_ix;                       /* 0..3 = m1..m8 from the last vsetvl(i) */
static uint64_t ncls[NCLS], misses, wbacks, bytes_rd, bytes_wr, pf_hits;
static const uint32_t MARK_START = 0x7f002013u; /* slti x0,x0,0x7f0 */
static const uint32_t MARK_END   = 0x7f102013u; /* slti x0,x0,0x7f1 */

/* D-cache: 256 sets x 4 ways of 64-byte lines, LRU by last-use stamp */
#define SETS 256
#define WAYS 4
struct line { uint64_t tag; uint64_t used; bool valid, dirty; };
static struct line cache[SETS][WAYS];
static uint64_t stamp;
#define MAXPF 64
static uint64_t stream_line[MAXPF], stream_used[MAXPF], stream_len[MAXPF];

/* Is a miss on line `ln` (address / 64) prefetched? It is when it continues a tracked
 * ascending stream of misses that is already `train` lines long: a new stream pays the
 * full latency for its first `train` lines while the prefetcher learns it. "Continues"
 * allows for the order a compiler gives the loads of one pass (a row's second vector
 * load scheduled before its first): up to 4 lines ahead of the stream's front, or 2
 * behind it. Sets *si to the stream (-1: none) and *ahead to how many lines before
 * `ln` the prefetcher asked for it (`dist` once running, fewer just after training). */
static bool streamed(uint64_t ln, int *si, unsigned *ahead) {
    unsigned victim = 0;
    *si = -1;
    for (unsigned i = 0; i < P_PF; i++) {
        if (stream_used[i] && ln + 2 >= stream_line[i] && ln <= stream_line[i] + 4) {
            /* the C906's prefetcher works on physical addresses and stops at a 4 KB
             * page (openc906 aq_lsu_pfb.v): the first line of the next page is a
             * demand miss, which restarts it */
            bool newpage = ln > stream_line[i] && (ln >> 6) != (stream_line[i] >> 6);
            if (ln > stream_line[i]) stream_line[i] = ln;
            stream_used[i] = ++stamp;
            *si = (int)i;
            uint64_t len = ++stream_len[i];
            if (newpage) stream_len[i] = len = P_TRAIN;   /* running again from here */
            *ahead = (unsigned)(len - P_TRAIN < P_DIST ? len - P_TRAIN : P_DIST);
            return len > P_TRAIN && !newpage;
        }
        if (stream_used[i] < stream_used[victim]) victim = i;
    }
    if (P_PF) { stream_line[victim] = ln; stream_used[victim] = ++stamp; stream_len[victim] = 1; *si = (int)victim; }
    return false;
}

/* The stall of a line fill in timing set t. DRAM serves one request at a time: a
 * request made at cycle r transfers from max(channel free, r + lat) for `line` cycles.
 * A demand miss requests at its own cycle; a prefetched line was requested when the
 * stream's demand reached the line `ahead` lines before it (the prefetcher runs `dist`
 * lines ahead). A dirty victim's write-back takes the channel first. */
static void dram_fill(struct timing *t, bool pf, bool wb, int si, unsigned ahead, uint64_t ln) {
    uint64_t now = t->cyc;
    if (wb) t->dram_free = (t->dram_free > now ? t->dram_free : now) + t->line;
    uint64_t req = pf ? t->miss_at[si][(ln - ahead) & 15] : now;
    if (si >= 0) t->miss_at[si][ln & 15] = now;
    uint64_t start = req + t->lat > t->dram_free ? req + t->lat : t->dram_free;
    uint64_t done = start + t->line;
    t->dram_free = done;
    if (done > now) { t->memstall += done - now; t->cyc = done; }
}

static void cache_access(uint64_t addr, bool store) {
    uint64_t ln = addr >> 6;
    struct line *set = cache[ln & (SETS - 1)];
    uint64_t tag = ln / SETS;
    unsigned lru = 0;
    for (unsigned w = 0; w < WAYS; w++) {
        if (set[w].valid && set[w].tag == tag) {
            set[w].used = ++stamp;
            set[w].dirty |= store;
            return;
        }
        if (!set[w].valid || set[w].used < set[lru].used) lru = w;
        if (!set[w].valid) break;
    }
    misses++;
    int si;
    unsigned ahead = 0;
    bool wb = set[lru].valid && set[lru].dirty, pf = streamed(ln, &si, &ahead);
    wbacks += wb;
    pf_hits += pf;
    if (trace) fprintf(out, "  miss line %#llx%s%s\n", (unsigned long long)ln, pf ? " prefetched" : "", wb ? " writeback" : "");
    uint64_t before = tm[0].cyc;
    for (unsigned i = 0; i < ntm; i++) dram_fill(&tm[i], pf, wb, si, ahead, ln);
    if (cur) cur->prof_cyc += tm[0].cyc - before;
    set[lru] = (struct line){tag, ++stamp, true, store};
}

static void on_mem(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *ud) {
    (void)vcpu; (void)ud;
    unsigned size = 1u << qemu_plugin_mem_size_shift(info);
    bool st = qemu_plugin_mem_is_store(info);
    if (st) bytes_wr += size; else bytes_rd += size;
    cache_access(vaddr, st);
    if (((vaddr + size - 1) >> 6) != (vaddr >> 6)) cache_access(vaddr + size - 1, st);
    if (trace) fprintf(out, "  mem %s %#llx %u cyc=%llu\n", st ? "st" : "ld", (unsigned long long)vaddr, size,
                       (unsigned long long)tm[0].cyc);
}

static void on_insn(unsigned int vcpu, void *ud) {
    (void)vcpu;
    const struct insn *in = ud;
    unsigned c = in->cls;
    uint64_t bubble = fallthrough && in->pc != fallthrough ? P_TAKEN : 0;  /* taken branch */
    fallthrough = c == K_BRANCH ? in->next : 0;
    ncls[c]++;
    uint64_t issue;
    if (c == K_VSET) {
        issue = 1;
        if (in->vtype != 0xffff) {
            unsigned lm = xthead ? (in->vtype & 3) : (in->vtype & 7);
            lmul_ix = lm < 4 ? lm : 0;
        }
    } else if (in->is_vec) {
        issue = VCOST[c][lmul_ix];
    } else {
        issue = OCCUPY[c];
    }
    uint64_t lat = in->is_vec ? issue : LAT[c], before = tm[0].cyc;
    for (unsigned k = 0; k < ntm; k++) {
        struct timing *tk = &tm[k];
        uint64_t t = tk->cyc + bubble;
        for (int i = 0; i < 3; i++) if (in->rs[i] && tk->ready[in->rs[i]] > t) t = tk->ready[in->rs[i]];
        if (c == K_DIV) { if (tk->div_free > t) t = tk->div_free; tk->div_free = t + lat; }
        if (c == K_FDIV) { if (tk->fdiv_free > t) t = tk->fdiv_free; tk->fdiv_free = t + lat; }
        tk->depstall += t - tk->cyc;
        tk->cyc = t + issue;
        if (in->rd) tk->ready[in->rd] = t + lat;
    }
    cur = (struct insn *)in;
    cur->prof_n++;
    cur->prof_cyc += tm[0].cyc - before;
    if (trace) fprintf(out, "%s issue=%llu cyc=%llu\n", CLS_NAME[c], (unsigned long long)issue,
                       (unsigned long long)tm[0].cyc);
}

/* ---- decoding ---- */
#define X(r) ((uint8_t)((r) & 31))          /* integer register; x0 is never waited for */
#define F(r) ((uint8_t)(32 + ((r) & 31)))
#define CP(r) ((uint8_t)(8 + ((r) & 7)))    /* compressed 3-bit register field */

static void decode16(uint32_t w, struct insn *d) {
    unsigned op = w & 3, f3 = (w >> 13) & 7, r7 = (w >> 7) & 31, r2 = (w >> 2) & 31;
    d->cls = K_ALU;
    if (op == 0) {
        uint8_t a = CP(w >> 7), b = CP(w >> 2);
        switch (f3) {
        case 0: d->rd = b; d->rs[0] = 2; break;                                   /* c.addi4spn */
        case 1: d->cls = K_LOAD; d->rd = F(b); d->rs[0] = a; break;               /* c.fld */
        case 2: case 3: d->cls = K_LOAD; d->rd = b; d->rs[0] = a; break;          /* c.lw/c.ld */
        case 5: d->cls = K_STORE; d->rs[0] = a; d->rs[1] = F(b); break;           /* c.fsd */
        case 6: case 7: d->cls = K_STORE; d->rs[0] = a; d->rs[1] = b; break;      /* c.sw/c.sd */
        }
    } else if (op == 1) {
        switch (f3) {
        case 0: case 1: d->rd = d->rs[0] = X(r7); break;                          /* c.addi(w) */
        case 2: case 3: d->rd = X(r7); if (r7 == 2) d->rs[0] = 2; break;          /* c.li/lui/addi16sp */
        case 4: d->rd = d->rs[0] = CP(w >> 7);                                    /* c.srli ... c.and */
            if (((w >> 10) & 3) == 3) d->rs[1] = CP(w >> 2);
            break;
        case 5: d->cls = K_BRANCH; break;                                         /* c.j */
        default: d->cls = K_BRANCH; d->rs[0] = CP(w >> 7); break;                 /* c.beqz/bnez */
        }
    } else {
        switch (f3) {
        case 0: d->rd = d->rs[0] = X(r7); break;                                  /* c.slli */
        case 1: d->cls = K_LOAD; d->rd = F(r7); d->rs[0] = 2; break;              /* c.fldsp */
        case 2: case 3: d->cls = K_LOAD; d->rd = X(r7); d->rs[0] = 2; break;      /* c.lwsp/ldsp */
        case 4:
            if (r2 == 0) { d->cls = K_BRANCH; d->rs[0] = X(r7); if (w & 0x1000) d->rd = 1; } /* jr/jalr */
            else if (w & 0x1000) { d->rd = d->rs[0] = X(r7); d->rs[1] = X(r2); }  /* c.add */
            else { d->rd = X(r7); d->rs[0] = X(r2); }                             /* c.mv */
            break;
        case 5: d->cls = K_STORE; d->rs[0] = 2; d->rs[1] = F(r2); break;          /* c.fsdsp */
        default: d->cls = K_STORE; d->rs[0] = 2; d->rs[1] = X(r2); break;         /* c.swsp/sdsp */
        }
    }
}

/* OP-V (0x57), not vset: class by funct6 / funct3; registers only where scalar. */
static void decode_opv(uint32_t w, struct insn *d) {
    unsigned f3 = (w >> 12) & 7, f6 = w >> 26;
    unsigned rd = (w >> 7) & 31, rs1 = (w >> 15) & 31;
    unsigned tos = xthead ? 0x0c : 0x10;   /* vmv.x.s / vfmv.f.s (VWXUNARY0/VWFUNARY0) */
    d->is_vec = 1;
    d->cls = K_VALU;
    if (f3 == 4 || f3 == 6) d->rs[0] = X(rs1);              /* .vx: scalar int operand */
    if (f3 == 5) d->rs[0] = F(rs1);                         /* .vf: scalar FP operand */
    if (f3 == 2) {                                          /* OPMVV */
        if (f6 <= 0x07) d->cls = K_VRED;
        else if (f6 == tos) { d->cls = K_VTOS; d->rd = X(rd); if (xthead) d->rs[0] = X(rs1); }
        else if (f6 >= 0x30) d->cls = K_VWIDE;
    } else if (f3 == 6) {                                   /* OPMVX */
        if (f6 >= 0x30) d->cls = K_VWIDE;
    } else if (f3 == 0) {                                   /* OPIVV */
        if (f6 == 0x30 || f6 == 0x31) d->cls = K_VRED;      /* vwredsum(u) */
        else if (f6 >= 0x2c && f6 <= 0x2f) d->cls = K_VWIDE; /* narrowing shifts/clips */
    } else if (f3 == 3 || f3 == 4) {
        if (f6 >= 0x2c && f6 <= 0x2f) d->cls = K_VWIDE;
    } else if (f3 == 1 || f3 == 5) {                        /* OPFVV / OPFVF */
        if (f3 == 1 && (f6 == 0x01 || f6 == 0x03 || f6 == 0x05 || f6 == 0x07 || f6 == 0x31 || f6 == 0x33))
            d->cls = K_VFRED;
        else if (f3 == 1 && f6 == tos) { d->cls = K_VTOS; d->rd = F(rd); }
        else if (f6 == 0x20 || f6 == 0x21) d->cls = K_VFDIV;
        else if (f6 == 0x24 || (f6 >= 0x28 && f6 <= 0x2f)) d->cls = K_VFMUL;
        else if (f6 >= 0x30) d->cls = K_VWIDE;
    }
}

static void decode32(uint32_t w, struct insn *d) {
    unsigned op = w & 0x7f, f3 = (w >> 12) & 7, f7 = w >> 25;
    uint8_t rd = X(w >> 7), rs1 = X(w >> 15), rs2 = X(w >> 20);
    d->cls = K_ALU;
    switch (op) {
    case 0x03: d->cls = K_LOAD; d->rd = rd; d->rs[0] = rs1; break;
    case 0x07: case 0x27:
        if (f3 == 0 || f3 >= 5) {              /* vector load/store; mop in bits 27:26 */
            unsigned mop = (w >> 26) & 3;
            d->is_vec = 1;
            d->cls = op == 0x07 ? K_VLD : K_VST;
            if (mop & 1) d->cls = K_VLDX;
            d->rs[0] = rs1;
            if (mop == 2) d->rs[1] = rs2;
        } else if (op == 0x07) { d->cls = K_LOAD; d->rd = F(w >> 7); d->rs[0] = rs1; }
        else { d->cls = K_STORE; d->rs[0] = rs1; d->rs[1] = F(w >> 20); }
        break;
    case 0x23: d->cls = K_STORE; d->rs[0] = rs1; d->rs[1] = rs2; break;
    case 0x13: case 0x1b: d->rd = rd; d->rs[0] = rs1; break;
    case 0x37: case 0x17: d->rd = rd; break;
    case 0x33: case 0x3b:
        if (f7 == 1) d->cls = f3 < 4 ? K_MUL : K_DIV;
        d->rd = rd; d->rs[0] = rs1; d->rs[1] = rs2;
        break;
    case 0x63: d->cls = K_BRANCH; d->rs[0] = rs1; d->rs[1] = rs2; break;
    case 0x6f: d->cls = K_BRANCH; d->rd = rd; break;
    case 0x67: d->cls = K_BRANCH; d->rd = rd; d->rs[0] = rs1; break;
    case 0x43: case 0x47: case 0x4b: case 0x4f:
        d->cls = K_FMA; d->rd = F(w >> 7); d->rs[0] = F(w >> 15); d->rs[1] = F(w >> 20); d->rs[2] = F(w >> 27);
        break;
    case 0x53: {
        unsigned f5 = w >> 27;
        d->rd = F(w >> 7); d->rs[0] = F(w >> 15); d->rs[1] = F(w >> 20);
        if (f5 <= 2) d->cls = K_FALU;                          /* fadd fsub fmul */
        else if (f5 == 3 || f5 == 0x0b) { d->cls = K_FDIV; if (f5 == 0x0b) d->rs[1] = 0; }
        else {
            d->cls = K_FMISC;
            if (f5 == 0x14 || f5 == 0x18 || f5 == 0x1c) d->rd = rd;            /* to integer */
            if (f5 == 0x1a || f5 == 0x1e) { d->rs[0] = rs1; d->rs[1] = 0; }    /* from integer */
            if (f5 == 0x18 || f5 == 0x1c || f5 == 0x08) d->rs[1] = 0;
        }
        break;
    }
    case 0x57:
        if (f3 == 7) {
            d->cls = K_VSET; d->rd = rd; d->rs[0] = rs1;
            if (!(w >> 31)) d->vtype = (w >> 20) & 0x7ff;                   /* vsetvli */
            else if ((w >> 30) == 3) { d->vtype = (w >> 20) & 0x3ff; d->rs[0] = 0; } /* vsetivli */
            else { d->vtype = 0xffff; d->rs[1] = rs2; }                     /* vsetvl */
        } else decode_opv(w, d);
        break;
    case 0x2f: d->rd = rd; d->rs[0] = rs1; d->rs[1] = rs2; d->cls = K_SYS; break;
    case 0x73: case 0x0f: d->cls = K_SYS; d->rd = rd; break;
    default: d->rd = rd; d->rs[0] = rs1; break;     /* custom (XThead scalar) extensions */
    }
}

/* ---- regions ---- */
static uint64_t s_ncls[NCLS], s_miss, s_wb, s_rd, s_wr, s_pf;
static int roi_n;

static void report(const char *tag, bool delta) {
    uint64_t n[NCLS], tot = 0, vec = 0;
    for (int i = 0; i < NCLS; i++) {
        n[i] = ncls[i] - (delta ? s_ncls[i] : 0);
        tot += n[i];
        if (i >= K_VSET) vec += n[i];
    }
    uint64_t valu = vec - n[K_VSET] - n[K_VLD] - n[K_VST] - n[K_VLDX];
    char buf[4096];
    const struct timing *t = &tm[0];
    int k = snprintf(buf, sizeof buf,
        "%s total=%llu scalar=%llu vector=%llu (vset=%llu valu=%llu vmem=%llu) cycles=%llu memstall=%llu "
        "depstall=%llu misses=%llu writebacks=%llu prefetched=%llu bytes_read=%llu bytes_written=%llu",
        tag, (unsigned long long)tot, (unsigned long long)(tot - vec), (unsigned long long)vec,
        (unsigned long long)n[K_VSET], (unsigned long long)valu,
        (unsigned long long)(n[K_VLD] + n[K_VST] + n[K_VLDX]),
        (unsigned long long)(t->cyc - (delta ? t->s_cyc : 0)), (unsigned long long)(t->memstall - (delta ? t->s_mem : 0)),
        (unsigned long long)(t->depstall - (delta ? t->s_dep : 0)), (unsigned long long)(misses - (delta ? s_miss : 0)),
        (unsigned long long)(wbacks - (delta ? s_wb : 0)), (unsigned long long)(pf_hits - (delta ? s_pf : 0)),
        (unsigned long long)(bytes_rd - (delta ? s_rd : 0)), (unsigned long long)(bytes_wr - (delta ? s_wr : 0)));
    for (int i = 0; i < NCLS && k < (int)sizeof buf - 40; i++)
        k += snprintf(buf + k, sizeof buf - k, " n_%s=%llu", CLS_NAME[i], (unsigned long long)n[i]);
    /* every parameter set (one unless lat= or line= listed several): lat/line:cycles/memstall */
    for (unsigned i = 0; i < ntm && k < (int)sizeof buf - 80; i++)
        k += snprintf(buf + k, sizeof buf - k, "%s%llu/%llu:%llu/%llu", i ? "," : " grid=",
                      (unsigned long long)tm[i].lat, (unsigned long long)tm[i].line,
                      (unsigned long long)(tm[i].cyc - (delta ? tm[i].s_cyc : 0)),
                      (unsigned long long)(tm[i].memstall - (delta ? tm[i].s_mem : 0)));
    snprintf(buf + k, sizeof buf - k, "\n");
    fputs(buf, out);
    fflush(out);
}

static void on_mark(unsigned int vcpu, void *ud) {
    (void)vcpu;
    if (ud == (void *)1) {
        for (unsigned i = 0; i < ntm; i++) { tm[i].s_cyc = tm[i].cyc; tm[i].s_mem = tm[i].memstall; tm[i].s_dep = tm[i].depstall; }
        s_miss = misses; s_wb = wbacks;
        s_rd = bytes_rd; s_wr = bytes_wr; s_pf = pf_hits;
        memcpy(s_ncls, ncls, sizeof ncls);
        return;
    }
    char tag[32];
    snprintf(tag, sizeof tag, "roi[%d]", roi_n++);
    report(tag, true);
}

/* mark=ADDR (hex), e.g. a program's forward(): every execution of that address ends
 * the running region and starts the next, so one run of a program we cannot add
 * markers to gives one region per call (per token). */
static bool in_region;
static void on_boundary(unsigned int vcpu, void *ud) {
    (void)ud;
    if (in_region) on_mark(vcpu, (void *)2);
    on_mark(vcpu, (void *)1);
    in_region = true;
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *qi = qemu_plugin_tb_get_insn(tb, i);
        const uint8_t *p = qemu_plugin_insn_data(qi);
        size_t sz = qemu_plugin_insn_size(qi);
        /* one record per translated instruction, kept for the life of the process
         * (QEMU may call back into it as long as the translation lives) */
        struct insn *d = calloc(1, sizeof *d);
        if (!d) abort();
        d->pc = qemu_plugin_insn_vaddr(qi);
        d->all = all_insns;
        all_insns = d;
        d->next = d->pc + sz;
        uint32_t w = p[0] | p[1] << 8;
        if (sz == 4) {
            w |= (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            decode32(w, d);
            if (w == MARK_START || w == MARK_END)
                qemu_plugin_register_vcpu_insn_exec_cb(qi, on_mark, QEMU_PLUGIN_CB_NO_REGS,
                                                       (void *)(uintptr_t)(w == MARK_START ? 1 : 2));
        } else {
            decode16(w, d);
        }
        if (mark_pc && d->pc == mark_pc)
            qemu_plugin_register_vcpu_insn_exec_cb(qi, on_boundary, QEMU_PLUGIN_CB_NO_REGS, NULL);
        qemu_plugin_register_vcpu_insn_exec_cb(qi, on_insn, QEMU_PLUGIN_CB_NO_REGS, d);
        if (d->cls == K_LOAD || d->cls == K_STORE || d->cls == K_VLD || d->cls == K_VST ||
            d->cls == K_VLDX || d->cls == K_SYS)
            qemu_plugin_register_vcpu_mem_cb(qi, on_mem, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_RW, NULL);
    }
}

static void at_exit(qemu_plugin_id_t id, void *ud) {
    (void)id; (void)ud;
    report("total", false);
    if (out != stderr) fclose(out);
    if (prof) {   /* address, executions, cycles (set 0) of every instruction executed */
        for (struct insn *d = all_insns; d; d = d->all)
            if (d->prof_n) fprintf(prof, "%llx %llu %llu\n", (unsigned long long)d->pc,
                                   (unsigned long long)d->prof_n, (unsigned long long)d->prof_cyc);
        fclose(prof);
    }
}

/* "A" or "A:B:C" (at most 8 values) */
static unsigned parse_list(const char *s, uint64_t *v) {
    unsigned n = 0;
    while (n < 8) {
        char *end;
        v[n++] = strtoull(s, &end, 10);
        if (end == s) return 0;
        if (*end != ':') return *end ? 0 : n;
        s = end + 1;
    }
    return 0;
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    (void)info;
    out = stderr;
    uint64_t lats[8] = {100}, lines[8] = {56};   /* fitted: docs/performance.md */
    unsigned nlat = 1, nline = 1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strncmp(a, "arg=", 4)) a += 4;           /* QEMU 6.0 spelling arg=k=v */
        if (!strncmp(a, "out=", 4)) { out = fopen(a + 4, "w"); if (!out) { perror(a + 4); return -1; } }
        else if (!strcmp(a, "isa=xthead")) xthead = true;
        else if (!strcmp(a, "isa=v")) xthead = false;
        else if (!strcmp(a, "trace=on")) trace = true;
        else if (!strncmp(a, "prof=", 5)) { prof = fopen(a + 5, "w"); if (!prof) { perror(a + 5); return -1; } }
        else if (!strncmp(a, "lat=", 4)) nlat = parse_list(a + 4, lats);
        else if (!strncmp(a, "line=", 5)) nline = parse_list(a + 5, lines);
        else if (!strncmp(a, "mark=", 5)) mark_pc = strtoull(a + 5, NULL, 16);
        else if (!strncmp(a, "dist=", 5)) { P_DIST = strtoull(a + 5, NULL, 10); if (P_DIST < 1 || P_DIST > 15) P_DIST = 8; }
        else if (!strncmp(a, "train=", 6)) P_TRAIN = strtoull(a + 6, NULL, 10);
        else if (!strncmp(a, "taken=", 6)) P_TAKEN = strtoull(a + 6, NULL, 10);
        else if (!strncmp(a, "pf=", 3)) { P_PF = strtoull(a + 3, NULL, 10); if (P_PF > MAXPF) P_PF = MAXPF; }
        else { fprintf(stderr, "c906sim: unknown option %s\n", a); return -1; }
    }
    if (!nlat || !nline) { fprintf(stderr, "c906sim: bad lat= or line= list\n"); return -1; }
    for (unsigned i = 0; i < nlat; i++)
        for (unsigned j = 0; j < nline; j++) tm[ntm++] = (struct timing){.lat = lats[i], .line = lines[j]};
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}

/* guard.c -- the SIGBUS handler behind guard.h. */
#define _XOPEN_SOURCE 700  /* SA_ONSTACK */
#include "guard.h"
#include "sb_internal.h"
#include <signal.h>
#include <stddef.h>
#include <string.h>

static _Thread_local sb_guard *armed;    /* innermost guard of this thread */
static struct sigaction previous;        /* the handler we displaced, to chain to */
static int installed;

static void on_sigbus(int sig, siginfo_t *info, void *ctx) {
    sb_guard *g = armed;
    /* si_code > 0: the kernel raised it for a faulting access; a SIGBUS sent with
     * kill() or raise() is someone else's business and is passed on */
    if (g && info && info->si_code > 0) {
        armed = g->prev;
        siglongjmp(g->jb, 1);
    }
    /* not ours: hand it on exactly as if we had never been there */
    if (previous.sa_flags & SA_SIGINFO) {
        previous.sa_sigaction(sig, info, ctx);
    } else if (previous.sa_handler == SIG_DFL || previous.sa_handler == SIG_IGN) {
        /* returning re-runs the faulting load, which now meets the default action
         * (sigaction, not signal(): glibc's strict-POSIX headers rename signal() to a
         * symbol musl lacks, and the Duo library is built against those headers) */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(SIGBUS, &dfl, NULL);
    } else {
        previous.sa_handler(sig);
    }
}

static void install(void) {
    if (__atomic_exchange_n(&installed, 1, __ATOMIC_ACQ_REL)) return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    /* NODEFER: the jump leaves the handler without sigreturn, so SIGBUS must not stay
     * blocked (sb_guard_fault unblocks it too, for kernels that ignore the flag) */
    sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &previous);
}

void sb_guard_enter(sb_guard *g) {
    if (!installed) install();
    g->prev = armed;
    armed = g;
}

void sb_guard_leave(sb_guard *g) { armed = g->prev; }

int sb_guard_fault(sb_guard *g) {
    (void)g;   /* the handler already popped it */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGBUS);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    return SB_ERR_MODEL_CHANGED;
}

/* guard.h -- surviving a model file that shrinks under its mapping.
 *
 * A page of a mapped file that no longer exists (the file was truncated, or rewritten
 * in place, while mapped) raises SIGBUS on the next read. Calls that read mapped
 * weights arm a guard first; the library's SIGBUS handler jumps back to the armed
 * guard, and the call returns SB_ERR_MODEL_CHANGED instead of killing the process.
 * A SIGBUS outside any guard, or one sent with kill(), goes to whatever handler was
 * there before (or kills the process as it always did).
 *
 *     sb_guard g;
 *     if (sigsetjmp(g.jb, 0)) return sb_guard_fault(&g);  // SB_ERR_MODEL_CHANGED
 *     sb_guard_enter(&g);
 *     ... read the mapping ...
 *     sb_guard_leave(&g);
 *
 * sigsetjmp must run in the frame that stays alive, hence the open-coded pattern.
 * Guards nest (per thread), and nothing between enter and leave may allocate, lock
 * or otherwise leave state that a jump would strand. */
#ifndef SB_GUARD_H
#define SB_GUARD_H
#include <setjmp.h>

typedef struct sb_guard {
    union {
        sigjmp_buf jb;
        /* room for the libc the library is loaded into: the Duo build is compiled
         * against glibc's headers but runs with musl's sigsetjmp */
        char room[512];
    };
    struct sb_guard *prev;
} sb_guard;

void sb_guard_enter(sb_guard *g);
void sb_guard_leave(sb_guard *g);
int sb_guard_fault(sb_guard *g);   /* after the jump: disarms, returns SB_ERR_MODEL_CHANGED */

#endif

/* ops_rvv.c -- the FAST table for RISC-V vectors (RVV 1.0 and the C906's XTheadVector).
 * Filled in by the RVV kernels; on other ISAs this file compiles to nothing. */
#include "sb_internal.h"

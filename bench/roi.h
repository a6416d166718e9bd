/* roi.h -- the rvcount plugin's region markers (bench/rvcount.c): slti to x0,
 * a no-op on hardware, brackets each counted region under QEMU. */
#ifndef SB_BENCH_ROI_H
#define SB_BENCH_ROI_H
#if defined(__riscv)
#define ROI_BEGIN() __asm__ volatile("slti x0,x0,0x7f0" ::: "memory")
#define ROI_END() __asm__ volatile("slti x0,x0,0x7f1" ::: "memory")
#else
#define ROI_BEGIN() ((void)0)
#define ROI_END() ((void)0)
#endif
#endif

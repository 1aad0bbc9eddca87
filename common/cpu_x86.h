/*
 * cpu_x86.h - run-time CPU feature checks for the x86-only source files
 * (chosen by CMake). __builtin_cpu_supports("f16c") is GCC only: clang 14
 * rejects the name, so F16C is read from CPUID leaf 1 (ECX bit 29).
 */
#ifndef KVTIER_COMMON_CPU_X86_H
#define KVTIER_COMMON_CPU_X86_H

#include <cpuid.h>
#include <stdatomic.h>

/* 1 when the CPU has the F16C conversions (vcvtph2ps / vcvtps2ph).
 * CPUID is slow (in a virtual machine it traps to the hypervisor: it cost
 * 70% of ZipCache decoding when asked per row chunk), so the answer, a
 * fact of the machine that never changes, is kept after the first call
 * (one copy per source file including this header; atomic, so threads
 * asking at once are fine). */
static inline int kvt_cpu_has_f16c(void)
{
	static _Atomic int known = -1;
	int v = atomic_load_explicit(&known, memory_order_relaxed);
	if (v < 0) {
		unsigned a, b, c, d;
		v = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
		atomic_store_explicit(&known, v, memory_order_relaxed);
	}
	return v;
}

#endif /* KVTIER_COMMON_CPU_X86_H */

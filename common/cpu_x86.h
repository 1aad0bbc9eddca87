/*
 * cpu_x86.h - run-time CPU feature checks for the x86-only source files
 * (chosen by CMake). __builtin_cpu_supports("f16c") is GCC only: clang 14
 * rejects the name, so F16C is read from CPUID leaf 1 (ECX bit 29).
 */
#ifndef KVTIER_COMMON_CPU_X86_H
#define KVTIER_COMMON_CPU_X86_H

#include <cpuid.h>

/* 1 when the CPU has the F16C conversions (vcvtph2ps / vcvtps2ph). */
static inline int kvt_cpu_has_f16c(void)
{
	unsigned a, b, c, d;
	return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
}

#endif /* KVTIER_COMMON_CPU_X86_H */

/*
 * contract.h - the tier contract suite: one set of Criterion tests
 * (contract.c) compiled once per tier, linked with that tier's factory file
 * (factory_host.c, factory_disk.c, ...), which defines the functions below.
 */
#ifndef KVTIER_TESTS_CONTRACT_H
#define KVTIER_TESTS_CONTRACT_H

#include "tier.h"

/* Opens the tier under test in directory dir (an empty temp dir made by the
 * suite; memory tiers ignore it) with a byte budget (0 = unlimited). */
int contract_tier_open(const char *dir, uint64_t budget, struct kvt_tier **out);

/* 1 when closing and reopening the tier on the same dir keeps its blocks. */
int contract_tier_persistent(void);

#endif

/* store.c - placeholder: the store core is not implemented yet. */
#include "kvtier/kvtier.h"

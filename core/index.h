/*
 * index.h - cross-file helpers of the index module (core/index.c).
 */
#ifndef SEMD_INDEX_H
#define SEMD_INDEX_H

#include "semd.h"

#endif

// score.cuh - retrieval scoring: queries x keys, then top-k per query.
#ifndef KVTIER_KERNELS_SCORE_CUH
#define KVTIER_KERNELS_SCORE_CUH

#include "common.cuh"

// scores[s][nq][m] = q[s][nq][dim] . keys[s][m][dim], in order, no FMA.
int kvt_score_launch(const float *q, uint32_t sets, uint32_t nq,
		     const float *keys, uint32_t m, uint32_t dim, float *scores,
		     cudaStream_t st);

// Top k of each row of scores[rows][m] (score descending, index ascending).
int kvt_topk_launch(const float *scores, uint32_t rows, uint32_t m, uint32_t k,
		    uint32_t *top_idx, float *top_score, cudaStream_t st);

#endif

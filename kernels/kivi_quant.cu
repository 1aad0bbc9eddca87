// kivi_quant.cu - KIVI quantization on the GPU, bit-identical to the CPU
// codec. One thread per quantization group: a key thread walks the G tokens
// of one channel (neighbouring threads take neighbouring channels, so loads
// coalesce), a value thread the G channels of one token. Each thread scans
// its group in the CPU's order, so min/max ties resolve the same way.
#include "kivi_quant.cuh"

static __global__ void quant_kernel(const struct kivi_plan p,
				    const struct kvt_gpu_item *items,
				    uint32_t ctas_per_item)
{
	const uint32_t item = blockIdx.x / ctas_per_item;
	const uint32_t i = (blockIdx.x % ctas_per_item) * blockDim.x + threadIdx.x;
	if (i < p.work)
		quant_item(p, (const uint8_t *)items[item].src,
			   (uint8_t *)items[item].dst, i);
}

int kvt_kivi_quant_launch(const struct kivi_plan &p,
			  const struct kvt_gpu_item *items, uint32_t n,
			  cudaStream_t st)
{
	const uint64_t cpi = (p.work + QUANT_THREADS - 1) / QUANT_THREADS;
	if (cpi * n > 0x7fffffffull)
		return -EINVAL;
	quant_kernel<<<(unsigned)(cpi * n), QUANT_THREADS, 0, st>>>(p, items,
								 (uint32_t)cpi);
	return kvt_cuda_launched();
}

extern "C" int kvt_kivi_quantize(const struct kvt_kivi_geom *g,
				 struct kvt_gpu_batch *b, uint32_t n,
				 struct kvt_stream *s)
{
	struct kivi_plan p;
	int rc = kvt_kivi_plan(g, 1, &p);
	if (rc)
		return rc;
	if ((rc = kvt_kivi_items_ok(b, n)))
		return rc;
	if (n == 0)
		return 0;
	cudaStream_t st = kvt_cu_stream(s);
	rc = kvt_batch_upload(b, n, st);
	return rc ? rc : kvt_kivi_quant_launch(p, b->dev, n, st);
}

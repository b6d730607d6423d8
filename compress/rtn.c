#include "rtn.h"

int lmc_rtn_quantize(const float *W, int64_t rows, int64_t cols, int bits, int group, int sym,
                     lmc_qresult *q, float *wq, lmc_error *err)
{
    if (rows <= 0 || cols <= 0)
        return lmc_fail(err, "rtn: empty matrix [%lld, %lld]", (long long)rows, (long long)cols);
    if (bits < 2 || bits > 8)
        return lmc_fail(err, "rtn: bits %d out of range 2..8", bits);
    if (group == 0 || group < -1)
        return lmc_fail(err, "rtn: group size %d invalid (positive, or -1)", group);
    if (lmc_qresult_alloc(q, rows, cols, bits, group, sym, err))
        return -1;
    const int maxq = lmc_quant_maxq(bits);
    const int64_t g = group > 0 ? group : cols;
    const int64_t ng = q->ngroups;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t k = 0; k < ng; k++) {
            int64_t c0 = k * g, c1 = c0 + g < cols ? c0 + g : cols;
            const float *x = W + r * cols;
            float s;
            uint8_t z;
            lmc_quant_fit(bits, sym, x + c0, c1 - c0, &s, &z);
            q->scales[r * ng + k] = s;
            q->zeros[r * ng + k] = z;
            for (int64_t c = c0; c < c1; c++) {
                float v = lmc_quant_apply(x[c], s, z, maxq, &q->codes[r * cols + c]);
                if (wq)
                    wq[r * cols + c] = v; /* x[c] already read: wq == W is safe */
            }
        }
    }
    return 0;
}

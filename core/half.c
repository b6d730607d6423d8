#include "half.h"

#include <string.h>

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float lmc_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0) {
        if (man == 0)
            return u2f(sign);
        /* subnormal: value = man * 2^-24 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    if (exp == 31)
        return u2f(sign | 0x7f800000u | (man << 13));
    return u2f(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t lmc_f32_to_f16(float f)
{
    uint32_t u = f2u(f);
    uint32_t sign = (u >> 16) & 0x8000;
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (a > 0x7f800000u ? 0x200 : 0));
    if (a >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    if (a < 0x38800000u) { /* below 2^-14: subnormal or zero */
        float v = u2f(a) * 16777216.0f; /* in units of 2^-24 */
        /* round half to even via float arithmetic: add/sub 2^23 */
        float r = (v + 8388608.0f) - 8388608.0f;
        return (uint16_t)(sign | (uint32_t)r);
    }
    uint32_t mant_odd = (a >> 13) & 1;
    a += 0xfff + mant_odd; /* round to nearest even */
    return (uint16_t)(sign | ((a - 0x38000000u) >> 13));
}

float lmc_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t lmc_f32_to_bf16(float f)
{
    uint32_t u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

/* whole tensors: 8B-class blocks convert ~2e8 values at a time */
void lmc_f16_to_f32_n(const uint16_t *src, float *dst, size_t n)
{
#pragma omp parallel for schedule(static) if (n > 1 << 20)
    for (size_t i = 0; i < n; i++)
        dst[i] = lmc_f16_to_f32(src[i]);
}

void lmc_bf16_to_f32_n(const uint16_t *src, float *dst, size_t n)
{
#pragma omp parallel for schedule(static) if (n > 1 << 20)
    for (size_t i = 0; i < n; i++)
        dst[i] = lmc_bf16_to_f32(src[i]);
}

void lmc_f32_to_f16_n(const float *src, uint16_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = lmc_f32_to_f16(src[i]);
}

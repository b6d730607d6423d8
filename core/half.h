/* IEEE binary16 and bfloat16 <-> float conversion (round to nearest even). */
#ifndef LMC_HALF_H
#define LMC_HALF_H

#include <stddef.h>
#include <stdint.h>

float lmc_f16_to_f32(uint16_t h);
uint16_t lmc_f32_to_f16(float f);
float lmc_bf16_to_f32(uint16_t h);
uint16_t lmc_f32_to_bf16(float f);

void lmc_f16_to_f32_n(const uint16_t *src, float *dst, size_t n);
void lmc_bf16_to_f32_n(const uint16_t *src, float *dst, size_t n);
void lmc_f32_to_f16_n(const float *src, uint16_t *dst, size_t n);

#endif

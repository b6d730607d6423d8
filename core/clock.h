/* Monotonic wall-clock seconds, for timings reported to users. */
#ifndef LMC_CLOCK_H
#define LMC_CLOCK_H

double lmc_now(void);

#endif

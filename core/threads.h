/* One knob for all parallelism: OpenBLAS threads and OpenMP threads. */
#ifndef LMC_THREADS_H
#define LMC_THREADS_H

/* n <= 0: all online cores. Returns the count in effect. */
int lmc_threads_set(int n);
int lmc_threads_get(void);

#endif

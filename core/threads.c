#include "threads.h"

#include <omp.h>
#include <unistd.h>

void openblas_set_num_threads(int);

static int current;

int lmc_threads_set(int n)
{
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    openblas_set_num_threads(n);
    omp_set_num_threads(n);
    current = n;
    return n;
}

int lmc_threads_get(void)
{
    if (!current)
        return lmc_threads_set(0);
    return current;
}

/* The float64 multiply-adds per second of the codec's AVX-512 product kernel alone (`gemm_avx512` of
 * ride_tf/codec/kernels.c, compiled in from that file), on the shapes of the shipped models' products: the ceiling
 * of the exact decoder, whose products are float64 sums of integers (docs/codec.md, "Decoding faster").
 *
 *     PY=.venv/bin/python
 *     gcc -O3 -I"$($PY -c 'import sysconfig; print(sysconfig.get_path("include"))')" benchmarks/gemm_peak.c \
 *         -o /tmp/gemm_peak -L"$($PY -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')" \
 *         -lpython3.11 -lm && LD_LIBRARY_PATH="$($PY -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')" /tmp/gemm_peak
 */
#include "../ride_tf/codec/kernels.c"

#include <stdio.h>
#include <time.h>

int main(void) {
    /* rows k x columns of the products per pixel: the spatial LSTM's and the MCGSM's, gray and rgb 1 x 64 */
    const long shapes[4][2] = {{152, 320}, {88, 64}, {176, 320}, {112, 96}};
    const char *names[4] = {"gray LSTM", "gray MCGSM", "rgb LSTM", "rgb MCGSM"};
#ifndef HAVE_X86_KERNELS
    printf("no x86 kernels in this build\n");
    return 0;
#else
    if (!__builtin_cpu_supports("avx512f")) {
        printf("this CPU has no AVX-512\n");
        return 0;
    }
    for (int s = 0; s < 4; s++) {
        long n = 128, k = shapes[s][0], cols = shapes[s][1];
        double *x = calloc(n * k, 8), *w = calloc(k * cols, 8), *o = calloc(n * cols, 8);
        for (long i = 0; i < n * k; i++) x[i] = (double)(i % 7);
        for (long i = 0; i < k * cols; i++) w[i] = (double)(i % 5);
        long reps = 400000000L / (n * k * cols / 8) + 1;
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (long r = 0; r < reps; r++) gemm_avx512(x, (Py_ssize_t)k, w, (Py_ssize_t)k, (Py_ssize_t)cols, o, (Py_ssize_t)cols, (Py_ssize_t)n);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double seconds = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
        printf("%-11s %3ld x %3ld: %.1f G multiply-adds/s, %.0f pixels/s on one core\n", names[s], k, cols,
               (double)reps * n * k * cols / seconds / 1e9, (double)reps * n / seconds);
        free(x);
        free(w);
        free(o);
    }
    return 0;
#endif
}

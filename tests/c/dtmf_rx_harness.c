/*
 * dtmf_rx_harness: run spandsp's DTMF receiver over raw 16-bit little-endian 8 kHz mono PCM
 * and print what it detects, for comparison with dialback's media::inband detector.
 *
 * usage: dtmf_rx_harness [FILE|-] [REPEATS]
 *   FILE     raw s16le PCM (default or "-": stdin)
 *   REPEATS  run the whole input this many times for timing (default 1); digits are printed
 *            for the first run only
 *
 * Output: one line "digit <c> <sample>" per digit (sample = input position when spandsp
 * reported it, in the first run), then "digits <n>", "samples <n>", "elapsed_ns <n>"
 * (processing time of all runs, clock_gettime(CLOCK_MONOTONIC) around dtmf_rx only).
 * Input is fed in 160-sample (20 ms) frames as from RTP.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <spandsp.h>

struct ctx {
    long digits;
    long position;
    int print;
};

static void on_digits(void *user_data, const char *digits, int len)
{
    struct ctx *c = user_data;
    for (int i = 0; i < len; i++) {
        if (c->print)
            printf("digit %c %ld\n", digits[i], c->position);
        c->digits++;
    }
}

int main(int argc, char **argv)
{
    FILE *in = stdin;
    if (argc > 1 && strcmp(argv[1], "-") != 0) {
        in = fopen(argv[1], "rb");
        if (in == NULL) {
            perror(argv[1]);
            return 2;
        }
    }
    long repeats = argc > 2 ? atol(argv[2]) : 1;
    if (repeats < 1)
        repeats = 1;

    size_t cap = 1 << 20, len = 0;
    int16_t *pcm = malloc(cap * sizeof *pcm);
    if (pcm == NULL)
        return 2;
    for (;;) {
        if (len == cap) {
            cap *= 2;
            int16_t *grown = realloc(pcm, cap * sizeof *pcm);
            if (grown == NULL)
                return 2;
            pcm = grown;
        }
        size_t got = fread(pcm + len, sizeof *pcm, cap - len, in);
        if (got == 0)
            break;
        len += got;
    }

    struct ctx c = { 0, 0, 1 };
    long first_run_digits = 0;
    struct timespec t0, t1;
    long long elapsed = 0;
    for (long r = 0; r < repeats; r++) {
        dtmf_rx_state_t *rx = dtmf_rx_init(NULL, on_digits, &c);
        if (rx == NULL)
            return 2;
        c.digits = 0;
        c.print = r == 0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (size_t off = 0; off < len; off += 160) {
            int n = (int) (len - off < 160 ? len - off : 160);
            c.position = (long) (off + n);
            dtmf_rx(rx, pcm + off, n);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        elapsed += (long long) (t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
        if (r == 0)
            first_run_digits = c.digits;
        dtmf_rx_free(rx);
    }
    printf("digits %ld\nsamples %zu\nelapsed_ns %lld\n", first_run_digits, len, elapsed);
    free(pcm);
    return 0;
}

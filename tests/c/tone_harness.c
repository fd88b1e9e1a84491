/*
 * spandsp 0.0.6 peer for tests/answer_tone_interop.rs: modem connect tones (V.25, V.8).
 *
 * usage: tone_harness gen TYPE SECONDS   -> raw s16 native-endian 8 kHz samples on stdout
 *        tone_harness det TYPE           <- raw samples on stdin; prints one line per report
 *                                           "tone <code-name> level <dBm0> delay <n>"
 * TYPE is a spandsp MODEM_CONNECT_TONES_* number (2 ANS, 3 ANS_PR, 4 ANSAM, 5 ANSAM_PR,
 * 8 BELL_ANS, 9 CALLING_TONE).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <spandsp.h>

static void report(void *user, int code, int level, int delay)
{
    (void) user;
    printf("tone %s level %d delay %d\n", modem_connect_tone_to_str(code), level, delay);
    fflush(stdout);
}

int main(int argc, char *argv[])
{
    int16_t amp[160];
    int type, n;

    if (argc < 3)
        return 2;
    type = atoi(argv[2]);
    if (strcmp(argv[1], "gen") == 0 && argc == 4) {
        modem_connect_tones_tx_state_t *tx = modem_connect_tones_tx_init(NULL, type);
        long total = atol(argv[3]) * 8000L;
        if (tx == NULL)
            return 1;
        while (total > 0) {
            n = modem_connect_tones_tx(tx, amp, 160);
            if (n <= 0)
                break;
            fwrite(amp, sizeof(int16_t), n, stdout);
            total -= n;
        }
        return 0;
    }
    if (strcmp(argv[1], "det") == 0) {
        modem_connect_tones_rx_state_t *rx = modem_connect_tones_rx_init(NULL, type, report, NULL);
        if (rx == NULL)
            return 1;
        while ((n = fread(amp, sizeof(int16_t), 160, stdin)) > 0)
            modem_connect_tones_rx(rx, amp, n);
        printf("end %d\n", modem_connect_tones_rx_get(rx));
        return 0;
    }
    return 2;
}

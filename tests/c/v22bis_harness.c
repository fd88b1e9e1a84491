/*
 * Test harness: spandsp's V.22bis modem (caller or answerer) driven in lock-step over
 * stdin/stdout with 20 ms G.711 frames (160 bytes each way). Every byte the spandsp modem
 * receives (8N1 start-stop, V.14) is echoed back. Status goes to stderr.
 *
 * Our own code; uses only the public spandsp API.
 *
 * usage: v22bis_harness caller|answerer 1200|2400 ulaw|alaw [guard 0|1|2] [log]
 * With V22_HARNESS_NOECHO in the environment nothing is echoed (bit error counting); with
 * V22_HARNESS_COUNT_FROM=N the data_bits/zero_bits counters start at frame N (the frame the
 * measuring harness switches its noise on).
 */
#include <stdint.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <spandsp/telephony.h>
#include <spandsp/logging.h>
#include <spandsp/complex.h>
#include <spandsp/bit_operations.h>
#include <spandsp/async.h>
#include <spandsp/g711.h>
#include <spandsp/v29rx.h> /* qam_report_handler_t */
#include <spandsp/v22bis.h>

#define FRAME 160
#define RING 65536

static uint8_t ring[RING];
static unsigned ring_head, ring_tail;
static v22bis_state_t *modem;
static long frames;

/* Transmit framing state: bits left of the current character (LSB first, start 0, stop 1). */
static int tx_shift, tx_left;
/* Receive framing state. */
static int rx_count = -1, rx_value;
static long rx_chars, rx_framing_errors;
/* Bits received after training; zeros among them are errors while the far end idles. */
static long data_bits, zero_bits;
static int trained;
/* V22_HARNESS_NOECHO set: receive only (idle ones out), for bit error counts. */
static int no_echo;
/* V22_HARNESS_COUNT_FROM: first frame whose received bits are counted. */
static long count_from;

static int get_bit(void *user_data)
{
    (void) user_data;
    if (tx_left == 0) {
        if (ring_head == ring_tail)
            return 1; /* idle mark */
        int c = ring[ring_tail];
        ring_tail = (ring_tail + 1) % RING;
        tx_shift = (c << 1) | 0x200;
        tx_left = 10;
    }
    int bit = tx_shift & 1;
    tx_shift >>= 1;
    tx_left--;
    return bit;
}

static void status(void *user_data, int st)
{
    (void) user_data;
    switch (st) {
    case SIG_STATUS_CARRIER_UP:
        fprintf(stderr, "STATUS carrier_up frame=%ld\n", frames);
        break;
    case SIG_STATUS_CARRIER_DOWN:
        fprintf(stderr, "STATUS carrier_down frame=%ld\n", frames);
        break;
    case SIG_STATUS_TRAINING_SUCCEEDED:
        trained = 1;
        fprintf(stderr, "CONNECT %d frame=%ld\n", v22bis_get_current_bit_rate(modem), frames);
        break;
    case SIG_STATUS_TRAINING_FAILED:
        fprintf(stderr, "STATUS training_failed frame=%ld\n", frames);
        break;
    case SIG_STATUS_MODEM_RETRAIN_OCCURRED:
        fprintf(stderr, "STATUS retrain frame=%ld\n", frames);
        break;
    default:
        fprintf(stderr, "STATUS %d frame=%ld\n", st, frames);
        break;
    }
    fflush(stderr);
}

static void put_bit(void *user_data, int bit)
{
    if (bit < 0) {
        status(user_data, bit);
        return;
    }
    bit &= 1;
    if (trained && frames >= count_from) {
        data_bits++;
        zero_bits += (bit == 0);
    }
    if (rx_count < 0) {
        if (bit == 0) {
            rx_count = 0;
            rx_value = 0;
        }
        return;
    }
    if (rx_count < 8) {
        rx_value |= bit << rx_count;
        rx_count++;
        return;
    }
    rx_count = -1;
    if (bit == 1) {
        rx_chars++;
        if (no_echo)
            return;
        unsigned next = (ring_head + 1) % RING;
        if (next != ring_tail) {
            ring[ring_head] = (uint8_t) rx_value;
            ring_head = next;
        }
    } else {
        rx_framing_errors++;
    }
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s caller|answerer 1200|2400 ulaw|alaw [guard] [log]\n", argv[0]);
        return 2;
    }
    int caller = strcmp(argv[1], "caller") == 0;
    int rate = atoi(argv[2]);
    int alaw = strcmp(argv[3], "alaw") == 0;
    int guard = argc > 4 ? atoi(argv[4]) : 0;
    int log = argc > 5;
    no_echo = getenv("V22_HARNESS_NOECHO") != NULL;
    if (getenv("V22_HARNESS_COUNT_FROM") != NULL)
        count_from = atol(getenv("V22_HARNESS_COUNT_FROM"));

    modem = v22bis_init(NULL, rate, guard, caller, get_bit, NULL, put_bit, NULL);
    if (modem == NULL) {
        fprintf(stderr, "v22bis_init failed\n");
        return 1;
    }
    v22bis_set_modem_status_handler(modem, status, NULL);
    if (log) {
        span_log_set_level(v22bis_get_logging_state(modem), SPAN_LOG_SHOW_SEVERITY | SPAN_LOG_FLOW);
    }

    uint8_t in[FRAME], out[FRAME];
    int16_t amp[FRAME];
    for (;;) {
        size_t got = fread(in, 1, FRAME, stdin);
        if (got < FRAME)
            break;
        for (int i = 0; i < FRAME; i++)
            amp[i] = alaw ? alaw_to_linear(in[i]) : ulaw_to_linear(in[i]);
        v22bis_rx(modem, amp, FRAME);
        int n = v22bis_tx(modem, amp, FRAME);
        for (int i = n; i < FRAME; i++)
            amp[i] = 0;
        for (int i = 0; i < FRAME; i++)
            out[i] = alaw ? linear_to_alaw(amp[i]) : linear_to_ulaw(amp[i]);
        if (fwrite(out, 1, FRAME, stdout) != FRAME)
            break;
        fflush(stdout);
        frames++;
    }
    fprintf(stderr, "DONE frames=%ld rx_chars=%ld framing_errors=%ld data_bits=%ld zero_bits=%ld\n",
            frames, rx_chars, rx_framing_errors, data_bits, zero_bits);
    return 0;
}

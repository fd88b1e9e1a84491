/*
 * spandsp 0.0.6 peer for tests/fsk_interop.rs.
 *
 * usage: fsk_harness ulaw|alaw TX_MARK_HZ TX_SPACE_HZ
 *
 * Plays one end of a 300 bit/s FSK link with spandsp's own modem: the transmit preset is
 * the one whose mark/space match the arguments, the receive preset is its partner channel
 * (V.21 ch1 <-> ch2, Bell 103 ch1 <-> ch2; note spandsp's "Bell103 ch 1" is the
 * 2025/2225 Hz answer band). Lock-step over stdin/stdout: read one 20 ms frame of 160 G.711
 * bytes, demodulate it, write one frame of 160 bytes. Every received character (8N1, via
 * spandsp's async_rx) is queued and echoed back (8N1, idle mark between characters).
 * Carrier changes go to stderr. Exits 0 at end of input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <spandsp.h>

#define FRAME 160
#define QUEUE (1 << 17)

static uint8_t queue[QUEUE];
static size_t q_head, q_tail;
static int tx_frame;     /* current 10-bit frame being sent, LSB first */
static int tx_bits_left;
static long rx_chars;

static void put_byte(void *user, int byte)
{
    (void) user;
    if (byte < 0)
        return;
    rx_chars++;
    if (q_tail - q_head < QUEUE)
        queue[q_tail++ % QUEUE] = (uint8_t) byte;
}

static void put_bit(void *user, int bit)
{
    if (bit < 0)
        fprintf(stderr, "spandsp rx status: %s\n", signal_status_to_str(bit));
    async_rx_put_bit(user, bit);
}

/* 8N1 serialiser: start bit 0, 8 data bits LSB first, stop bit 1; mark when idle. */
static int get_bit(void *user)
{
    int bit;

    (void) user;
    if (tx_bits_left == 0) {
        if (q_head == q_tail)
            return 1;
        tx_frame = (queue[q_head++ % QUEUE] << 1) | (1 << 9);
        tx_bits_left = 10;
    }
    bit = tx_frame & 1;
    tx_frame >>= 1;
    tx_bits_left--;
    return bit;
}

static int find_preset(int mark, int space)
{
    int i;

    for (i = FSK_V21CH1; i <= FSK_BELL103CH2; i++) {
        if (preset_fsk_specs[i].freq_one == mark && preset_fsk_specs[i].freq_zero == space)
            return i;
    }
    return -1;
}

int main(int argc, char *argv[])
{
    uint8_t buf[FRAME];
    int16_t amp[FRAME];
    int alaw, tx_ch, rx_ch, i;
    fsk_tx_state_t *tx;
    fsk_rx_state_t *rx;
    async_rx_state_t *arx;

    if (argc != 4) {
        fprintf(stderr, "usage: %s ulaw|alaw TX_MARK_HZ TX_SPACE_HZ\n", argv[0]);
        return 2;
    }
    alaw = strcmp(argv[1], "alaw") == 0;
    tx_ch = find_preset(atoi(argv[2]), atoi(argv[3]));
    if (tx_ch < 0) {
        fprintf(stderr, "no spandsp preset with mark %s space %s\n", argv[2], argv[3]);
        return 2;
    }
    switch (tx_ch) {
    case FSK_V21CH1: rx_ch = FSK_V21CH2; break;
    case FSK_V21CH2: rx_ch = FSK_V21CH1; break;
    case FSK_BELL103CH1: rx_ch = FSK_BELL103CH2; break;
    case FSK_BELL103CH2: rx_ch = FSK_BELL103CH1; break;
    default:
        fprintf(stderr, "preset %s is not a 300 bit/s duplex channel\n", preset_fsk_specs[tx_ch].name);
        return 2;
    }
    fprintf(stderr, "spandsp tx %s, rx %s\n", preset_fsk_specs[tx_ch].name, preset_fsk_specs[rx_ch].name);

    arx = async_rx_init(NULL, 8, ASYNC_PARITY_NONE, 1, FALSE, put_byte, NULL);
    rx = fsk_rx_init(NULL, &preset_fsk_specs[rx_ch], FSK_FRAME_MODE_ASYNC, put_bit, arx);
    tx = fsk_tx_init(NULL, &preset_fsk_specs[tx_ch], get_bit, NULL);
    if (arx == NULL || rx == NULL || tx == NULL)
        return 1;

    while (fread(buf, 1, FRAME, stdin) == FRAME) {
        for (i = 0; i < FRAME; i++)
            amp[i] = alaw ? alaw_to_linear(buf[i]) : ulaw_to_linear(buf[i]);
        fsk_rx(rx, amp, FRAME);
        fsk_tx(tx, amp, FRAME);
        for (i = 0; i < FRAME; i++)
            buf[i] = alaw ? linear_to_alaw(amp[i]) : linear_to_ulaw(amp[i]);
        if (fwrite(buf, 1, FRAME, stdout) != FRAME)
            return 1;
        fflush(stdout);
    }
    fprintf(stderr, "spandsp received %ld characters\n", rx_chars);
    return 0;
}

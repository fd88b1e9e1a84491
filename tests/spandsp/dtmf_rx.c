/* Reference DTMF detector for tests: reads 8 kHz signed 16-bit little-endian mono samples on
 * stdin, runs spandsp's dtmf_rx over them, prints the detected digits on stdout. */
#include <stdint.h>
#include <stdio.h>
#include <spandsp.h>

int main(void)
{
    dtmf_rx_state_t *rx = dtmf_rx_init(NULL, NULL, NULL);
    int16_t buf[160];
    size_t n;
    char digits[256];
    size_t got;

    if (rx == NULL)
        return 2;
    while ((n = fread(buf, sizeof(buf[0]), 160, stdin)) > 0)
    {
        dtmf_rx(rx, buf, (int) n);
        got = dtmf_rx_get(rx, digits, (int) sizeof(digits) - 1);
        digits[got] = '\0';
        fputs(digits, stdout);
    }
    /* Flush a digit still in progress with some silence. */
    for (n = 0; n < 160; n++)
        buf[n] = 0;
    for (n = 0; n < 10; n++)
        dtmf_rx(rx, buf, 160);
    got = dtmf_rx_get(rx, digits, (int) sizeof(digits) - 1);
    digits[got] = '\0';
    fputs(digits, stdout);
    dtmf_rx_free(rx);
    return 0;
}

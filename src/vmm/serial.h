/* A 16550A UART at 0x3f8 (COM1, IRQ 4): enough for Linux's 8250 driver and
 * early console: THR/RBR, IER, IIR/FCR, LCR, MCR, LSR, MSR, SCR, divisor. */
#pragma once
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define SERIAL_PORT_BASE 0x3f8
#define SERIAL_IRQ 4
#define SERIAL_FIFO 64

struct serial {
    pthread_mutex_t lock;
    int out_fd;            /* -1: output discarded */
    int vm_fd;             /* to raise IRQ 4 */
    uint8_t ier, iir, lcr, mcr, lsr, msr, scr, dll, dlm, fcr;
    uint8_t rx[SERIAL_FIFO];
    unsigned rx_head, rx_len;
    bool thr_irq_pending;
};

/* Reset the UART to power-on state. */
void serial_init(struct serial *s, int out_fd, int vm_fd);

/* A guest access to port base+offset. */
void serial_pio(struct serial *s, unsigned offset, bool out, uint8_t *data);

/* Host input for the guest; returns how many bytes fit in the FIFO. */
size_t serial_input(struct serial *s, const uint8_t *buf, size_t len);

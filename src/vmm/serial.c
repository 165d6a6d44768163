#include "vmm/serial.h"

#include <errno.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/util.h"

enum { RBR_THR = 0, IER = 1, IIR_FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };

#define LCR_DLAB 0x80
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define IER_RDI 0x01
#define IER_THRI 0x02
#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define MCR_LOOP 0x10

static void irq_line(struct serial *s, int level)
{
    if (s->vm_fd < 0)
        return;
    struct kvm_irq_level irq = {.irq = SERIAL_IRQ, .level = (uint32_t)level};
    ioctl(s->vm_fd, KVM_IRQ_LINE, &irq);
}

/* Recompute IIR and pulse the interrupt if one is pending and enabled. */
static void update_irq(struct serial *s)
{
    uint8_t iir = IIR_NONE;
    if ((s->ier & IER_RDI) && s->rx_len)
        iir = IIR_RDI;
    else if ((s->ier & IER_THRI) && s->thr_irq_pending)
        iir = IIR_THRI;
    s->iir = iir | (s->fcr & 0x01 ? 0xc0 : 0);
    if (iir != IIR_NONE) {
        irq_line(s, 1);
        irq_line(s, 0);
    }
}

void serial_init(struct serial *s, int out_fd, int vm_fd)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    s->out_fd = out_fd;
    s->vm_fd = vm_fd;
    s->iir = IIR_NONE;
    s->lsr = LSR_THRE | LSR_TEMT;
    s->msr = 0xb0; /* DCD, DSR, CTS */
    s->mcr = 0x08; /* OUT2 */
    s->dll = 0x0c; /* 9600 baud */
}

void serial_pio(struct serial *s, unsigned off, bool out, uint8_t *data)
{
    pthread_mutex_lock(&s->lock);
    bool dlab = s->lcr & LCR_DLAB;
    if (out) {
        uint8_t v = *data;
        switch (off) {
        case RBR_THR:
            if (dlab) {
                s->dll = v;
            } else if (s->mcr & MCR_LOOP) {
                if (s->rx_len < SERIAL_FIFO)
                    s->rx[(s->rx_head + s->rx_len++) % SERIAL_FIFO] = v;
            } else if (s->out_fd >= 0) {
                /* The guest's console output: a slow reader must not stall
                 * the vCPU forever, but dropping output silently is worse. */
                if (write_all(s->out_fd, &v, 1) < 0 && errno == EBADF)
                    s->out_fd = -1;
            }
            s->thr_irq_pending = true;
            break;
        case IER:
            if (dlab)
                s->dlm = v;
            else {
                s->ier = v & 0x0f;
                if (s->ier & IER_THRI)
                    s->thr_irq_pending = true;
            }
            break;
        case IIR_FCR:
            s->fcr = v;
            if (v & 0x02) { /* clear RX FIFO */
                s->rx_len = 0;
                s->rx_head = 0;
            }
            break;
        case LCR: s->lcr = v; break;
        case MCR: s->mcr = v & 0x1f; break;
        case SCR: s->scr = v; break;
        default: break; /* LSR, MSR are read-only */
        }
    } else {
        uint8_t v = 0;
        switch (off) {
        case RBR_THR:
            if (dlab) {
                v = s->dll;
            } else if (s->rx_len) {
                v = s->rx[s->rx_head];
                s->rx_head = (s->rx_head + 1) % SERIAL_FIFO;
                s->rx_len--;
            }
            break;
        case IER: v = dlab ? s->dlm : s->ier; break;
        case IIR_FCR:
            v = s->iir;
            if ((s->iir & 0x0f) == IIR_THRI)
                s->thr_irq_pending = false; /* reading IIR acknowledges THRE */
            break;
        case LCR: v = s->lcr; break;
        case MCR: v = s->mcr; break;
        case LSR: v = (uint8_t)(LSR_THRE | LSR_TEMT | (s->rx_len ? LSR_DR : 0)); break;
        case MSR: v = s->msr; break;
        case SCR: v = s->scr; break;
        }
        *data = v;
    }
    update_irq(s);
    pthread_mutex_unlock(&s->lock);
}

size_t serial_input(struct serial *s, const uint8_t *buf, size_t len)
{
    pthread_mutex_lock(&s->lock);
    size_t n = 0;
    while (n < len && s->rx_len < SERIAL_FIFO) {
        s->rx[(s->rx_head + s->rx_len++) % SERIAL_FIFO] = buf[n++];
    }
    update_irq(s);
    pthread_mutex_unlock(&s->lock);
    return n;
}

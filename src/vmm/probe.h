/* Host probe: does this host run guest kernel mode (CPL0) natively? Where
 * it does not (nested virtualization with CPL0 emulated in software), a
 * Linux guest cannot boot in useful time; full-boot tests skip there. */
#pragma once
#include <stdbool.h>

struct err;

struct vm_probe {
    double cpl0_mips;       /* guest CPL0 instructions per second, in millions */
    bool cpl0_native;       /* fast enough to be hardware: a Linux guest can boot */
};

/* Time a short loop at guest CPL0 in a throwaway VM. */
int vm_probe_host(struct vm_probe *out, struct err **err);

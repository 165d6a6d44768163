/* Parsing of `cocoon vm run`'s device options into a vm_config. */
#pragma once
#include "vmm/vm.h"

struct err;

/* --rng */
int vm_opt_rng(struct vm_config *cfg, struct err **err);

/* --disk PATH[,ro][,direct][,serial=ID] (spec is split in place). */
int vm_opt_disk(struct vm_config *cfg, char *spec, struct err **err);

/* --pmem PATH[,shared] (spec is split in place). */
int vm_opt_pmem(struct vm_config *cfg, char *spec, struct err **err);

/* --net tap=NAME[,mac=MAC][,netns=PATH] (spec is split in place). */
int vm_opt_net(struct vm_config *cfg, char *spec, struct err **err);

/* --vsock cid=N,uds=PATH (spec is split in place). */
int vm_opt_vsock(struct vm_config *cfg, char *spec, struct err **err);

/* --fs tag=TAG,dir=PATH[,queues=N][,ro][,FS OPTIONS] (spec is split in place). */
int vm_opt_fs(struct vm_config *cfg, char *spec, struct err **err);

/* --virtio-console BACKEND[,port=NAME:BACKEND]..., BACKEND being stdio,
 * none, file:PATH or socket:PATH: port 0, then named extra ports (spec is
 * split in place). A file opened for port 0 is returned in *opened for the
 * caller to close (the device opens the extra ports' files). */
int vm_opt_console(struct vm_config *cfg, char *spec, int *opened, struct err **err);

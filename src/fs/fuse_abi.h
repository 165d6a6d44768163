/* The FUSE ABI: Debian 12's <linux/fuse.h> (7.38) plus what kernels up to
 * 6.18 added that cocoon uses (7.40: passthrough to backing files). The
 * additions only extend reserved fields, so the structs stay the same size. */
#pragma once
#include <linux/fuse.h>
#include <stdint.h>
#include <sys/ioctl.h>

#ifndef FUSE_PASSTHROUGH
#define FUSE_PASSTHROUGH (1ULL << 37)
#endif
#ifndef FOPEN_PASSTHROUGH
#define FOPEN_PASSTHROUGH (1 << 7)
#endif
#ifndef FUSE_TMPFILE
#define FUSE_TMPFILE 51
#endif
#ifndef FUSE_STATX
#define FUSE_STATX 52
#endif

/* fuse_init_out as of 7.40: unused[0] became max_stack_depth. */
struct fs_init_out {
    uint32_t major;
    uint32_t minor;
    uint32_t max_readahead;
    uint32_t flags;
    uint16_t max_background;
    uint16_t congestion_threshold;
    uint32_t max_write;
    uint32_t time_gran;
    uint16_t max_pages;
    uint16_t map_alignment;
    uint32_t flags2;
    uint32_t max_stack_depth;
    uint32_t unused[6];
};
_Static_assert(sizeof(struct fs_init_out) == sizeof(struct fuse_init_out), "init_out size");

/* fuse_open_out as of 7.40: padding became backing_id. */
struct fs_open_out {
    uint64_t fh;
    uint32_t open_flags;
    int32_t backing_id;
};
_Static_assert(sizeof(struct fs_open_out) == sizeof(struct fuse_open_out), "open_out size");

struct fs_backing_map {
    int32_t fd;
    uint32_t flags;
    uint64_t padding;
};
#define FS_DEV_IOC_BACKING_OPEN _IOW(FUSE_DEV_IOC_MAGIC, 1, struct fs_backing_map)
#define FS_DEV_IOC_BACKING_CLOSE _IOW(FUSE_DEV_IOC_MAGIC, 2, uint32_t)

/* The oldest protocol minor cocoon serves (5.4's kernels speak 7.31). */
#define FS_MIN_MINOR 31

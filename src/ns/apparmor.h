/* AppArmor: the profile a container process runs under. */
#pragma once
#include "common/err.h"

/* Ask for AppArmor profile `profile` at this process's next execve. Where
 * the kernel has no AppArmor, or has it disabled, nothing is done (as crun:
 * hosts without AppArmor get configs with profiles from engines). */
int ns_apparmor_on_exec(const char *profile, struct err **err);

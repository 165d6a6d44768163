/* Linux capabilities of the container process (libcap). */
#pragma once

struct oci_caps;
struct err;

/* Check that every name in caps is a capability this kernel knows. */
int caps_validate(const struct oci_caps *caps, struct err **err);

/* Drop every capability not in caps->bounding from the bounding set. */
int caps_drop_bounding(const struct oci_caps *caps, struct err **err);

/* Set the effective, permitted and inheritable sets and raise ambient ones. */
int caps_apply(const struct oci_caps *caps, struct err **err);

/*
 * bad_abi_major - a plugin built for a future ABI major (CCGW_ABI_MAJOR + 1).
 *
 * Exercises: the loader reads abi_major/abi_minor/size FIRST and refuses the
 * plugin (and dlcloses it) before reading any other field. The descriptor is
 * written by hand as a future major might lay it out: after the fixed 8-byte
 * header every field is a poisoned pointer (0x1), so a loader that reads the
 * name, the option table or a callback of a refused plugin crashes instead of
 * passing. Expected: refused with a reason naming both ABIs ("plugin ABI 2.0,
 * gateway ABI 1.0"); the daemon and other plugins keep working.
 */
#include <stdint.h>

#include <ccgw/ccgw.h>

struct future_plugin {
    uint16_t abi_major;
    uint16_t abi_minor;
    uint32_t size;
    uintptr_t fields[16]; /* anything at all in a future major */
};

#define POISON ((uintptr_t)1)

CCGW_EXPORT extern const struct future_plugin ccgw_plugin_descriptor;
CCGW_EXPORT const struct future_plugin ccgw_plugin_descriptor = {
    .abi_major = CCGW_ABI_MAJOR + 1,
    .abi_minor = 0,
    .size = (uint32_t)sizeof(struct future_plugin),
    .fields = {POISON, POISON, POISON, POISON, POISON, POISON, POISON, POISON, POISON, POISON,
               POISON, POISON, POISON, POISON, POISON, POISON},
};

/*
 * ccgw/plugin.h - the plugin descriptor: the one symbol a ccgw plugin exports.
 *
 * A plugin is a shared object exporting one const `ccgw_plugin_t` named
 * `ccgw_plugin_descriptor`, best defined with CCGW_PLUGIN_DEFINE(). The core
 * reads abi_major, abi_minor and size before any other field and refuses
 * (and dlcloses) a plugin whose ABI it cannot serve.
 *
 * ABI rules (docs/sdk.md, "Compatibility"):
 *  - abi_major differs            -> refused.
 *  - plugin abi_minor > core's    -> refused (it may rely on newer calls).
 *  - plugin abi_minor <= core's   -> loaded; fields past `size` read as NULL.
 *  - Structs only grow at the end (reserved slots first); ccgw_option_t,
 *    ccgw_value_t and ccgw_command_spec_t are frozen for ABI major 1.
 *
 * Lifecycle:
 *     check   (optional) runs wherever the configuration is validated - at
 *             load and under --check-config, possibly on the main thread,
 *             before any instance exists; it may touch only `options`.
 *     create -> start -> ... callbacks ... -> stop -> destroy
 *             all on the instance thread, in this order.
 * Failures: if create() fails nothing else is called. If start() fails,
 * destroy() is called but stop() is not, so start() undoes its partial work
 * before returning. Once start() succeeded, stop() is always called before
 * destroy(); after stop() returns the plugin has no threads running and no
 * SDK calls in flight. After stop() the core sets the instance's devices
 * offline ("instance stopped"): stop() need not do it.
 */
#ifndef CCGW_PLUGIN_H
#define CCGW_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "ccgw/types.h"
#include "ccgw/config.h"
#include "ccgw/command.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI this header describes. Bump MINOR when adding calls or fields at
 * the end of a struct; bump MAJOR only when breaking existing plugins. */
#define CCGW_ABI_MAJOR 1
#define CCGW_ABI_MINOR 3

/* The symbol the core looks up with dlsym(). */
#define CCGW_PLUGIN_SYMBOL "ccgw_plugin_descriptor"

#if defined(__GNUC__) || defined(__clang__)
#define CCGW_EXPORT __attribute__((visibility("default")))
#else
#define CCGW_EXPORT
#endif

typedef struct ccgw_plugin {
    /* --- read first, before anything else; never moves --- */
    uint16_t abi_major;          /* CCGW_ABI_MAJOR the plugin was built with */
    uint16_t abi_minor;          /* CCGW_ABI_MINOR the plugin was built with */
    uint32_t size;               /* sizeof(ccgw_plugin_t) as the plugin saw it */

    /* --- identity --- */
    const char *name;            /* [a-z0-9_-]+, equal to the file name without .so */
    const char *version;         /* the plugin's own version, e.g. "1.2.0" */
    const char *description;     /* one line, shown by --list-plugins */

    /* --- declarations the core validates against --- */
    const ccgw_option_t *options;        /* instance options; {0}-terminated; may be NULL */
    const ccgw_command_spec_t *commands; /* commands every device of this plugin takes;
                                            {0}-terminated; may be NULL */

    /* --- lifecycle: all run on the instance thread --- */

    /* Optional. Semantic checks beyond the option table (e.g. overlapping
     * registers), run only when the options passed the table's validation.
     * Report each problem with ccgw_config_error() on the node at fault and
     * return the number of errors (0 = fine). No I/O, no devices, no state. */
    int (*check)(const ccgw_config_t *options);

    /* Required. Build the instance state from validated options (defaults
     * filled in). Declare devices here or later. No blocking I/O.
     * Return 0 and set *state, or a negative CCGW_E* code. */
    int (*create)(ccgw_instance_t *inst, const ccgw_config_t *options, void **state);

    /* Required. Begin work: arm timers, open connections, spawn workers.
     * Returning < 0 marks the instance failed (the others keep running). */
    int (*start)(void *state);

    /* Required. Stop all work: cancel timers, join every thread the plugin
     * started. After it returns no plugin code may run or emit. */
    void (*stop)(void *state);

    /* Required. Free the state. Devices are removed by the core. */
    void (*destroy)(void *state);

    /* Optional (required when any command is declared). Called for each
     * command that passed the core's validation of its name and arguments.
     * The plugin must answer with ccgw_cmd_reply_ok()/ccgw_cmd_reply_error()
     * exactly once, now or later, from any thread. */
    void (*command)(void *state, ccgw_cmd_t *cmd);

    /* Growth happens here: new fields take reserved slots. */
    void *reserved[8];
} ccgw_plugin_t;

/*
 * Define the plugin's descriptor. Usage:
 *
 *   CCGW_PLUGIN_DEFINE(
 *       .name = "modbus", .version = "1.0.0", .description = "Modbus TCP/RTU",
 *       .options = modbus_options, .create = mb_create, .start = mb_start,
 *       .stop = mb_stop, .destroy = mb_destroy);
 */
#define CCGW_PLUGIN_DEFINE(...)                                              \
    CCGW_EXPORT extern const ccgw_plugin_t ccgw_plugin_descriptor;           \
    CCGW_EXPORT const ccgw_plugin_t ccgw_plugin_descriptor = {               \
        .abi_major = CCGW_ABI_MAJOR,                                         \
        .abi_minor = CCGW_ABI_MINOR,                                         \
        .size = (uint32_t)sizeof(ccgw_plugin_t),                             \
        __VA_ARGS__}

/* The ABI of the core the plugin runs in, e.g. to enable optional calls. */
void ccgw_sdk_abi(unsigned *major, unsigned *minor);

#ifdef __cplusplus
}
#endif
#endif /* CCGW_PLUGIN_H */

/*
 * device - the device registry and the typed emit calls of <ccgw/device.h>:
 * envelope (ts, site, class, device, instance, boot, seq), topics, retained
 * state merging, alarms, and command replies' envelope.
 *
 * Threads: the registry has a rwlock (lookups from the MQTT thread, adds
 * from instance threads); each device has a mutex that orders its seq
 * numbers and its publishes.
 */
#ifndef CCGW_DEVICE_INTERNAL_H
#define CCGW_DEVICE_INTERNAL_H

#include <stdbool.h>

#include "bus.h"
#include "ccgw/ccgw.h"
#include "json_writer.h"

struct ccgw_gateway;
typedef struct ccgw_registry ccgw_registry_t;

ccgw_registry_t *ccgw_registry_new(void);
void ccgw_registry_free(ccgw_registry_t *reg);
size_t ccgw_registry_count(ccgw_registry_t *reg);

/* Look up a device and, while the registry is locked, run fn on it (so the
 * device cannot be removed meanwhile). Returns fn's result, or
 * CCGW_ENOTFOUND. */
int ccgw_registry_with(ccgw_registry_t *reg, const char *class_name, const char *id,
                       int (*fn)(ccgw_device_t *dev, void *ctx), void *ctx);

bool ccgw_valid_class(const char *class_name);
bool ccgw_valid_name(const char *s, bool allow_upper); /* [a-z0-9_.-]+ (or A-Z too) */

ccgw_instance_t *ccgw_device_instance(const ccgw_device_t *dev);
const ccgw_command_spec_t *ccgw_device_find_command(const ccgw_device_t *dev, const char *name);

/* Set every device of the instance offline (reason) and publish. */
void ccgw_devices_set_all_offline(ccgw_instance_t *inst, const char *reason);
/* Remove and free every device of the instance. */
void ccgw_devices_remove_all(ccgw_instance_t *inst);

/* Encode a command reply for dev (or, with dev NULL, for class/device from
 * the topic). error_code NULL means ok. Returns a malloc'ed payload. */
char *ccgw_device_encode_reply(struct ccgw_gateway *gw, ccgw_device_t *dev, const char *class_name,
                               const char *device_id, const char *command, const char *error_code,
                               const char *error_message, const ccgw_value_t *data, size_t n,
                               size_t *len);

#endif

/*
 * ccgw/device.h - devices and the typed emit calls: state, telemetry, events, alarms.
 *
 * A device is one thing downstream apps see: `{class}/{device}` in the topic
 * tree (docs/topics.md). The plugin declares it, then reports what it knows;
 * the core stamps the envelope (ts, site, class, device, instance, boot, seq),
 * picks the topic and QoS, keeps retained state and active alarms, and
 * publishes to every north side (MQTT, WebSocket).
 *
 * Threads: every call here is thread-safe and may be made from the instance
 * thread or from any thread the plugin owns, until the plugin's stop()
 * returns. Calls for one device are published in the order they were made.
 *
 * Queue policy (each case is counted in the metrics):
 *  - state and alarms never block: the latest value per topic wins.
 *  - telemetry never blocks: when the gateway queue is full it is dropped
 *    and the call returns CCGW_EFULL.
 *  - events may block the caller while the queue is full (backpressure),
 *    for at most gateway.backpressure_ms; then CCGW_EFULL.
 */
#ifndef CCGW_DEVICE_H
#define CCGW_DEVICE_H

#include "ccgw/types.h"
#include "ccgw/values.h"
#include "ccgw/command.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Declare a device of this instance. `class_name` is one of the normalised
 * classes (ups, hvac, env, door, pbx, sms, fax, incident, conference);
 * `device_id` matches [a-z0-9_.-]+ and is unique per class in the gateway.
 * The device starts offline. `user` is the plugin's pointer, returned by
 * ccgw_device_user(). Returns NULL (and logs why) on a bad or duplicate id. */
ccgw_device_t *ccgw_device_add(ccgw_instance_t *inst, const char *class_name,
                               const char *device_id, void *user);

/* Commands this device takes in addition to the plugin's descriptor table.
 * `specs` is {0}-terminated and must outlive the device. */
int ccgw_device_add_commands(ccgw_device_t *dev, const ccgw_command_spec_t *specs);

const char *ccgw_device_id(const ccgw_device_t *dev);
const char *ccgw_device_class(const ccgw_device_t *dev);
void *ccgw_device_user(const ccgw_device_t *dev);

/* Reachability. Publishes retained state when it changes. `reason` says why a
 * device is offline ("timeout", "connection refused"); NULL when online. */
int ccgw_device_set_online(ccgw_device_t *dev, bool online, const char *reason);

/* Merge state attributes (e.g. status, mode, door, lock) into the device's
 * retained state; published only when something changed. Attribute names
 * must not be envelope keys (ts, site, class, device, instance, boot, seq,
 * online, reason). */
int ccgw_device_update_state(ccgw_device_t *dev, const ccgw_value_t *attrs, size_t n);

/* Both at once, in one retained publish: reachability and attributes.
 * Use it when a device comes back, so the first online state already
 * carries its attributes. `reason` as for ccgw_device_set_online(). */
int ccgw_device_set_state(ccgw_device_t *dev, bool online, const char *reason,
                          const ccgw_value_t *attrs, size_t n);

/* Measurements (not retained). Each value may carry a SenML unit. */
int ccgw_device_telemetry(ccgw_device_t *dev, const ccgw_value_t *values, size_t n);

/* Something happened: `type` is [a-z0-9_.]+ (e.g. "door.forced"). */
int ccgw_device_event(ccgw_device_t *dev, const char *type, const ccgw_value_t *data, size_t n);

/* Alarms: retained on .../alarm/{code} while active. Raising an active alarm
 * again updates it (severity, message, data). Clearing publishes an
 * `alarm.cleared` event, then an empty retained payload; clearing an alarm
 * that is not active returns CCGW_ENOTFOUND and publishes nothing.
 * `code` is [a-z0-9_.-]+. */
int ccgw_alarm_raise(ccgw_device_t *dev, const char *code, ccgw_severity_t severity,
                     const char *message, const ccgw_value_t *data, size_t n);
int ccgw_alarm_clear(ccgw_device_t *dev, const char *code, const char *message);

#ifdef __cplusplus
}
#endif
#endif /* CCGW_DEVICE_H */

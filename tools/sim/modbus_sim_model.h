/* modbus-sim: simulated devices and their register maps.
 *
 * This half of the simulator knows nothing about sockets or serial lines: it
 * owns one libmodbus mapping per device, validates a request PDU against the
 * device's register map (so that libmodbus' modbus_reply() only ever sees
 * requests it can answer without its sleep-and-flush error path), and steps
 * the plant model. See tools/sim/README.md for the register map.
 */
#ifndef CCGW_MODBUS_SIM_MODEL_H
#define CCGW_MODBUS_SIM_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <modbus.h>

typedef enum {
    SIM_KIND_HVAC,   /* precision air conditioner */
    SIM_KIND_SENSOR, /* temperature / humidity / water leak / smoke */
    SIM_KIND_GENERIC, /* many registers that all move (--generic: benchmarks at scale) */
} sim_kind;

/* The generic device's fixed tables (README.md: "Generic devices"). */
#define SIM_GENERIC_HOLDING 16
#define SIM_GENERIC_COILS 16
#define SIM_GENERIC_DISCRETE 16
#define SIM_GENERIC_MAX_INPUT 1000

typedef struct sim_device sim_device;

/* A new device answering `unit`, with its registers at their defaults and its
 * model at steady state. `seed` makes the noise deterministic; `period_ms` is
 * the real time one sim_device_step() stands for (it advances run_time).
 * Returns NULL when out of memory. */
sim_device *sim_device_new(sim_kind kind, int unit, uint64_t seed, unsigned period_ms);
/* A generic device (SIM_KIND_GENERIC) with `n_input` input registers
 * (1..SIM_GENERIC_MAX_INPUT) that move every step. NULL when out of memory. */
sim_device *sim_device_new_generic(int unit, unsigned n_input, uint64_t seed, unsigned period_ms);
void sim_device_free(sim_device *dev);

int sim_device_unit(const sim_device *dev);
const char *sim_device_name(const sim_device *dev);
modbus_mapping_t *sim_device_mapping(sim_device *dev);

/* Checks a request PDU (function code first, `pdu_len` bytes) against the
 * device's register map. Returns 0 when the request may be handed to
 * modbus_reply(), else the Modbus exception code to answer:
 * 0x01 unsupported function, 0x02 address outside the map or a write to a
 * read-only register, 0x03 bad quantity / byte count / value. */
int sim_device_check(const sim_device *dev, const uint8_t *pdu, size_t pdu_len);

/* True when the function code writes coils or holding registers. */
bool sim_function_writes(uint8_t function);

/* Call between a successful sim_device_check() and modbus_reply(): for
 * write-and-read (FC 0x17) it applies the write and its consequences first,
 * so that the registers read back in the same answer (status) are current. */
void sim_device_before_reply(sim_device *dev, const uint8_t *pdu);

/* Recomputes the registers that follow from commands (status bits, discrete
 * inputs) after a write has been applied to the mapping. */
void sim_device_after_write(sim_device *dev);

/* One simulation step: drift, wander, noise, counters; refreshes registers. */
void sim_device_step(sim_device *dev);

/* The length in bytes of a request PDU (function code included) that starts
 * with the `have` bytes at `pdu`; 0 when more bytes are needed to tell.
 * Unknown function codes count as a bare function code (as libmodbus does). */
size_t sim_request_pdu_length(const uint8_t *pdu, size_t have);

#endif

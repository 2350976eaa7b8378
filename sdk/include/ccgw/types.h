/*
 * ccgw/types.h - handles, return codes and small enums shared by the SDK.
 *
 * Every SDK call returns 0 (CCGW_OK) or a negative CCGW_E* code, or a pointer
 * that is NULL on failure; the reason is always written to the log with the
 * instance tag, so a plugin rarely needs to log a failed SDK call again.
 */
#ifndef CCGW_TYPES_H
#define CCGW_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Opaque handles. All are owned by the core. */
typedef struct ccgw_instance ccgw_instance_t; /* one configured plugin instance */
typedef struct ccgw_device ccgw_device_t;     /* one normalised device */
typedef struct ccgw_config ccgw_config_t;     /* a node of validated options or command args */
typedef struct ccgw_cmd ccgw_cmd_t;           /* one command waiting for its reply */
typedef struct ccgw_timer ccgw_timer_t;       /* a timer on the instance loop */
typedef struct ccgw_io ccgw_io_t;             /* a file-descriptor watch on the instance loop */

/* Return codes. */
enum {
    CCGW_OK = 0,
    CCGW_EINVAL = -1,    /* bad argument: name, class, value or state */
    CCGW_ENOMEM = -2,    /* allocation failed */
    CCGW_EFULL = -3,     /* a bounded queue is at its limit (see the call's policy) */
    CCGW_ENOTFOUND = -4, /* no such device, option or timer */
    CCGW_EIO = -5,       /* I/O with the external system failed */
    CCGW_ETIMEDOUT = -6, /* the external system did not answer in time */
    CCGW_ESTATE = -7,    /* call not allowed now (e.g. after stop, or twice) */
    CCGW_EEXIST = -8,    /* already exists (duplicate device id) */
    CCGW_ESTOPPED = -9   /* the gateway or instance is shutting down */
};

/* A short constant name for a return code ("EINVAL"), never NULL. */
const char *ccgw_strerror(int code);

/* Who may do what on the WebSocket/HTTP side (ABI 1.1): a token's role.
 * Commands need at least operator; a command spec may ask for more
 * (ccgw_command_spec_t.min_role). */
typedef enum ccgw_role {
    CCGW_ROLE_NONE = 0,
    CCGW_ROLE_VIEWER = 1,   /* read */
    CCGW_ROLE_OPERATOR = 2, /* read, commands, alarm acknowledgement */
    CCGW_ROLE_ADMIN = 3     /* everything, plus the management API (reload) */
} ccgw_role_t;

typedef enum ccgw_log_level {
    CCGW_LOG_ERROR = 0,
    CCGW_LOG_WARN = 1,
    CCGW_LOG_INFO = 2,
    CCGW_LOG_DEBUG = 3
} ccgw_log_level_t;

typedef enum ccgw_severity {
    CCGW_SEV_INFO = 0,
    CCGW_SEV_MINOR = 1,
    CCGW_SEV_MAJOR = 2,
    CCGW_SEV_CRITICAL = 3
} ccgw_severity_t;

typedef enum ccgw_health {
    CCGW_HEALTH_OK = 0,       /* working */
    CCGW_HEALTH_DEGRADED = 1, /* working, with trouble (a device unreachable, retries) */
    CCGW_HEALTH_FAILED = 2    /* not working; the reason says why */
} ccgw_health_t;

#ifdef __cplusplus
}
#endif
#endif /* CCGW_TYPES_H */

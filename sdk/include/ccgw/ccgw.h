/*
 * ccgw/ccgw.h - the ccgw plugin SDK: include this one header.
 *
 *   plugin.h   the exported descriptor, ABI version and lifecycle
 *   config.h   option tables and read access to validated options
 *   instance.h the instance loop (timers, fd watches, post), health, log,
 *              and the THREADING CONTRACT
 *   device.h   devices and the emit calls (state, telemetry, events, alarms)
 *   command.h  commands and replies
 *   values.h   typed name/value pairs
 *   jobq.h     a bounded job queue to a worker thread (ABI 1.2)
 *   fd.h       descriptors below FD_SETSIZE for select() libraries (ABI 1.3)
 *
 * Build with `pkg-config --cflags ccgw-sdk`; see docs/sdk.md.
 */
#ifndef CCGW_CCGW_H
#define CCGW_CCGW_H

#include "ccgw/types.h"
#include "ccgw/values.h"
#include "ccgw/config.h"
#include "ccgw/command.h"
#include "ccgw/device.h"
#include "ccgw/instance.h"
#include "ccgw/jobq.h"
#include "ccgw/fd.h"
#include "ccgw/plugin.h"

#endif /* CCGW_CCGW_H */

#ifndef SERENDIP_CMODBUS_SHIM_H
#define SERENDIP_CMODBUS_SHIM_H
#include <modbus.h>
#include <errno.h>

// errno is a macro over a thread-local; read it right after a failing libmodbus call, on the
// same thread, so the code we report is the one that call set.
static inline int serendip_modbus_errno(void) { return errno; }

// libmodbus signals "no reply expected/timeout" through errno values; give Swift one name.
static inline int serendip_modbus_timeout_errno(void) { return ETIMEDOUT; }
#endif

#ifndef SERENDIP_CMODBUS_SHIM_H
#define SERENDIP_CMODBUS_SHIM_H
// Only the simulators' Modbus server uses libmodbus; the client frames its requests in Swift
// (LabTransport/ModbusTCPClient.swift says why).
#include <modbus.h>
#endif

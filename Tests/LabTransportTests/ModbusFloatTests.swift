import CModbus
import LabTransport
import Testing

@Suite struct ModbusFloatTests {
    // 123.456 is 0x42F6E979: bytes A=42 B=F6 C=E9 D=79.
    @Test(arguments: [
        (ModbusFloat.Order.abcd, [UInt16(0x42F6), 0xE979]),
        (.cdab, [0xE979, 0x42F6]),
        (.badc, [0xF642, 0x79E9]),
        (.dcba, [0x79E9, 0xF642]),
    ])
    func encodesTheKnownWireLayoutOfEachWordOrder(order: ModbusFloat.Order, registers: [UInt16]) {
        #expect(ModbusFloat.encode(123.456, order) == registers)
        #expect(ModbusFloat.decode(registers, order) == 123.456)
    }

    @Test(arguments: ModbusFloat.Order.allCases)
    func roundTripsAwkwardValuesInEveryOrder(order: ModbusFloat.Order) {
        for value: Float in [0, -0.0, 1, -1, .pi, 1e-38, -3.4e38, .leastNonzeroMagnitude, .infinity] {
            #expect(ModbusFloat.decode(ModbusFloat.encode(value, order), order).bitPattern == value.bitPattern)
        }
    }

    /// libmodbus 3.1.6's float getters are an independent implementation of the same layouts.
    @Test func agreesWithLibmodbusGetters() {
        for value: Float in [123.456, -7.25, 1e10] {
            var abcd = ModbusFloat.encode(value, .abcd)
            var cdab = ModbusFloat.encode(value, .cdab)
            var badc = ModbusFloat.encode(value, .badc)
            var dcba = ModbusFloat.encode(value, .dcba)
            #expect(modbus_get_float_abcd(&abcd) == value)
            #expect(modbus_get_float_cdab(&cdab) == value)
            #expect(modbus_get_float_badc(&badc) == value)
            #expect(modbus_get_float_dcba(&dcba) == value)
        }
    }
}

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

    // -123456789 is 0xF8A432EB; 1.5 as a float64 is 0x3FF8000000000000.
    @Test(arguments: [
        (ModbusFloat.Order.abcd, [UInt16(0xF8A4), 0x32EB], [UInt16(0x3FF8), 0, 0, 0]),
        (.cdab, [0x32EB, 0xF8A4], [0, 0, 0, 0x3FF8]),
        (.badc, [0xA4F8, 0xEB32], [0xF83F, 0, 0, 0]),
        (.dcba, [0xEB32, 0xA4F8], [0, 0, 0, 0xF83F]),
    ])
    func lays32And64BitValuesOutInEachOrder(order: ModbusFloat.Order, int32: [UInt16], float64: [UInt16]) {
        #expect(ModbusFloat.encode(-123456789, as: .int32, order) == int32)
        #expect(ModbusFloat.decode(int32, as: .int32, order) == -123456789)
        #expect(ModbusFloat.decode(int32, as: .uint32, order) == 0xF8A432EB)
        #expect(ModbusFloat.encode(1.5, as: .float64, order) == float64)
        #expect(ModbusFloat.decode(float64, as: .float64, order) == 1.5)
    }

    @Test(arguments: ModbusFloat.Order.allCases)
    func aSixteenBitValueHasOnlyAByteOrder(order: ModbusFloat.Order) {
        let swapped = order == .badc || order == .dcba
        #expect(ModbusFloat.encode(-2, as: .int16, order) == [swapped ? 0xFEFF : 0xFFFE])
        #expect(ModbusFloat.decode([swapped ? 0x3412 : 0x1234], as: .uint16, order) == 0x1234)
    }

    @Test func anIntegerOutOfItsRangeIsSaturatedNeverTrapped() {
        #expect(ModbusFloat.encode(70000, as: .uint16, .abcd) == [0xFFFF])
        #expect(ModbusFloat.encode(-1, as: .uint32, .abcd) == [0, 0])
        #expect(ModbusFloat.encode(.nan, as: .int16, .abcd) == [0])
    }

    @Test func stringsTravelTwoCharactersARegisterPaddedWithNULs() {
        #expect(ModbusFloat.encode(string: "ABC", registers: 2, .abcd) == [0x4142, 0x4300])
        #expect(ModbusFloat.encode(string: "ABC", registers: 2, .badc) == [0x4241, 0x0043])
        #expect(ModbusFloat.encode(string: "ABCDE", registers: 2, .abcd) == nil)
        #expect(ModbusFloat.decodeString([0x4142, 0x4320], .abcd) == "ABC")
        #expect(ModbusFloat.decodeString([0x4241, 0x0043], .dcba) == "ABC")
    }
}

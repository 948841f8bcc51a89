// swift-tools-version:6.1
import PackageDescription

// One settings loop: every Swift target gets the same language mode and upcoming features.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "Serendip",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "serendip", targets: ["serendip"]),
        // For the fuzzing package in Fuzz/.
        .library(name: "LabSpec", targets: ["LabSpec"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        .systemLibrary(name: "CModbus", pkgConfig: "libmodbus",
                       providers: [.apt(["libmodbus-dev"])]),
        .systemLibrary(name: "CSerialPort", pkgConfig: "libserialport",
                       providers: [.apt(["libserialport-dev"])]),
        .target(name: "CPoll"),
        .target(name: "LabCore"),
        .target(name: "LabSpec", dependencies: [
            "LabCore", .product(name: "Yams", package: "Yams"), .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .target(name: "LabTransport", dependencies: ["LabCore", "CModbus", "CSerialPort", "CPoll"]),
        .target(name: "LabDrivers", dependencies: ["LabCore", "LabSpec", "LabTransport", .product(name: "Logging", package: "swift-log")]),
        .target(name: "LabStorage", dependencies: [
            "LabCore", .product(name: "GRDB", package: "GRDB.swift"), .product(name: "GRDBSQLite", package: "GRDB.swift"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .target(name: "LabPlanner", dependencies: ["LabCore"]),
        .target(name: "LabEngine", dependencies: ["LabCore", .product(name: "Logging", package: "swift-log")]),
        // The queue, the instrument locks and the campaigns of the daemon, beside the executor.
        .target(name: "LabScheduler", dependencies: ["LabCore", "LabEngine", .product(name: "Logging", package: "swift-log")]),
        .target(name: "LabAPI", dependencies: ["LabCore"]),
        .target(name: "LabServer", dependencies: [
            "LabAPI", "LabEngine", "LabStorage",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Composition root as a library, so that the CLI and the tests start the same daemon.
        .target(name: "LabDaemon", dependencies: [
            "LabCore", "LabSpec", "LabTransport", "LabDrivers", "LabStorage", "LabPlanner",
            "LabEngine", "LabScheduler", "LabAPI", "LabServer",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .executableTarget(name: "serendip", dependencies: [
            "LabCore", "LabSpec", "LabEngine", "LabDrivers", "LabDaemon", "LabTransport", "LabStorage", "LabPlanner", "LabAPI",
            "LabScheduler", "LabServer",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Yams", package: "Yams"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .testTarget(name: "LabCoreTests", dependencies: ["LabCore"]),
        .testTarget(name: "LabSpecTests", dependencies: ["LabSpec", "LabCore"], exclude: ["Corpus"]),
        .testTarget(name: "LabTransportTests", dependencies: ["LabTransport", "LabCore", "CModbus"]),
        .testTarget(name: "LabPlannerTests", dependencies: ["LabPlanner", "LabCore"]),
        .testTarget(name: "LabSchedulerTests", dependencies: ["LabScheduler", "LabCore"]),
        .testTarget(name: "LabEngineTests", dependencies: ["LabEngine", "LabCore"]),
        .testTarget(name: "LabIntegrationTests", dependencies: [
            "LabCore", "LabSpec", "LabTransport", "LabDrivers", "LabStorage", "LabPlanner",
            "LabEngine", "LabAPI", "LabServer", "LabDaemon",
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "Logging", package: "swift-log"),
        ]),
    ]
)

for target in package.targets where target.type != .system {
    target.swiftSettings = (target.swiftSettings ?? []) + swiftSettings
}

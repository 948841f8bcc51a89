// swift-tools-version:6.1
// The libFuzzer target for the protocol parser and validator. A package of its own so that the
// main build never links an executable without `main`. Built and run by `make fuzz`.
import PackageDescription

let package = Package(
    name: "SerendipFuzz",
    dependencies: [.package(name: "Serendip", path: "..")],
    targets: [
        .executableTarget(name: "ProtocolFuzzer", dependencies: [.product(name: "LabSpec", package: "Serendip")]),
    ]
)

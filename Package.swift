// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "Tide",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "TideCore", targets: ["TideCore"]),
        .library(name: "Tide", targets: ["Tide"]),
        .executable(name: "tide", targets: ["tide"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .target(name: "TideCore"),
        .target(name: "CTide", linkerSettings: [.linkedLibrary("util")]),
        .target(
            name: "Tide",
            dependencies: ["TideCore", "CTide", .product(name: "Logging", package: "swift-log")]
        ),
        .executableTarget(
            name: "tide",
            dependencies: [
                "Tide",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "TideCoreTests", dependencies: ["TideCore"]),
        .testTarget(name: "TideTests", dependencies: ["Tide", "TideCore"]),
    ],
    swiftLanguageModes: [.v6]
)

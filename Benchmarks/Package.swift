// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "TideBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "Tide", path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-async-algorithms", from: "1.1.4"),
    ],
    targets: [
        .executableTarget(
            name: "tide-benchmarks",
            dependencies: [
                .product(name: "Tide", package: "Tide"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "AsyncAlgorithms", package: "swift-async-algorithms"),
            ]
        )
    ],
    swiftLanguageModes: [.v6]
)

// swift-tools-version:6.1
import PackageDescription

// Parley: end-to-end encrypted messaging (Signal v3 protocol), relay and client.
// Dependencies flow down this list only; ParleyCrypto and ParleyProtocol do no I/O.

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "Parley",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "ParleyCrypto", targets: ["ParleyCrypto"]),
        .library(name: "ParleyProtocol", targets: ["ParleyProtocol"]),
        .executable(name: "parley-conformance", targets: ["parley-conformance"]),
        .executable(name: "parley-bench", targets: ["parley-bench"]),
        .executable(name: "parley-crypto-bench", targets: ["parley-crypto-bench"]),
        .executable(name: "parley-fuzz", targets: ["parley-fuzz"]),
        .library(name: "ParleyWire", targets: ["ParleyWire"]),
        .library(name: "ParleyRelay", targets: ["ParleyRelay"]),
        .executable(name: "parley-relay", targets: ["parley-relay"]),
        .executable(name: "parley", targets: ["parley"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.8.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        // MARK: system libraries
        .systemLibrary(
            name: "CSodium", path: "Sources/CSodium", pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"])]),
        .systemLibrary(
            name: "COpenSSL", path: "Sources/COpenSSL", pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]),

        // MARK: crypto core
        // Table-based Ed25519 verification for keys that verify many signatures (sender keys);
        // public data only, checked against libsodium's verification in ParleyCryptoTests.
        .target(name: "CEd25519", path: "Sources/CEd25519"),
        .target(
            name: "ParleyCrypto",
            dependencies: ["CSodium", "COpenSSL", "CEd25519", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict),
        .target(
            name: "ParleyProtocol",
            dependencies: ["ParleyCrypto", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            exclude: ["Proto"],
            swiftSettings: strict),
        .target(name: "ParleyConformance", dependencies: ["ParleyProtocol"], swiftSettings: strict),
        // Fuzz targets: only I/O-free modules, so the instrumented fuzz build stays small.
        .target(name: "ParleyFuzzTargets", dependencies: ["ParleyProtocol", "ParleyFormats", "ParleyWire"], swiftSettings: strict),

        // MARK: executables (thin: argument parsing and wiring only)
        .executableTarget(
            name: "parley-conformance",
            dependencies: ["ParleyConformance", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict),
        .target(
            name: "ParleyCryptoBench",
            dependencies: ["ParleyProtocol", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict),
        .executableTarget(name: "parley-crypto-bench", dependencies: ["ParleyCryptoBench"], swiftSettings: strict),
        .executableTarget(
            name: "parley-bench",
            dependencies: [
                "ParleyProtocol", "ParleyClient", "ParleyRelay", "ParleyWire", "ParleyCryptoBench",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            swiftSettings: strict),
        .executableTarget(name: "parley-fuzz", dependencies: ["ParleyFuzzTargets"], swiftSettings: strict),

        // MARK: relay (wire format, server library, executable)
        .target(name: "ParleyWire", swiftSettings: strict),
        // The C allocator's accounting and trim (glibc's malloc.h is not in Swift's Glibc module).
        .target(name: "CParleyHeap", path: "Sources/CParleyHeap"),
        // The Linux kernel keyring (add_key/keyctl syscalls): `parley unlock` keeps the store key there.
        .target(name: "CParleyKeyring", path: "Sources/CParleyKeyring"),
        .target(
            name: "ParleyRelay",
            dependencies: [
                "ParleyWire", "ParleyCrypto", "CParleyHeap",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            exclude: ["README.md"],
            swiftSettings: strict),
        .executableTarget(
            name: "parley-relay",
            dependencies: ["ParleyRelay", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict),

        // MARK: client
        // The client's pure data formats (content, link strings, provisioning payloads, history
        // archives): no I/O, fuzzed without GRDB or swift-nio.
        .target(
            name: "ParleyFormats",
            dependencies: [
                "ParleyProtocol", "ParleyCrypto", "CSodium", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            exclude: ["Content/Proto"],
            swiftSettings: strict),
        .target(
            name: "ParleyClient",
            dependencies: [
                "ParleyFormats", "ParleyProtocol", "ParleyCrypto", "ParleyWire", "CSodium", "CParleyKeyring",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                // P-256 point validation of the relay's VAPID key (BoringSSL's libcrypto).
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict),
        .executableTarget(
            name: "parley",
            dependencies: ["ParleyClient", "ParleyProtocol", "ParleyWire", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict),

        // MARK: tests
        .target(
            name: "ParleyTestSupport",
            dependencies: [
                // PushReceiver: a local Web Push service for the relay's and the client's tests.
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Tests/ParleyTestSupport",
            swiftSettings: strict),
        .testTarget(
            name: "ParleyClientTests",
            dependencies: [
                "ParleyClient", "ParleyRelay", "ParleyWire", "ParleyTestSupport", .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict),
        .testTarget(name: "ParleyCryptoTests", dependencies: ["ParleyCrypto", "ParleyConformance"], swiftSettings: strict),
        .testTarget(
            name: "ParleyProtocolTests",
            dependencies: [
                "ParleyProtocol", "ParleyConformance", "ParleyFuzzTargets",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: strict),
        .testTarget(
            name: "ParleyRelayTests",
            dependencies: [
                "ParleyRelay", "ParleyWire", "ParleyProtocol", "ParleyCrypto", "ParleyTestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            exclude: ["Fixtures"],  // read from the source tree by path (#filePath), not bundled
            swiftSettings: strict),
    ],
    swiftLanguageModes: [.v6]
)

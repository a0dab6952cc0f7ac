// swift-tools-version:6.2
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "keysmith",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "keysmith", targets: ["keysmith"]),
        .library(name: "KeysmithCore", targets: ["KeysmithCore"]),
        .library(name: "KeysmithDomain", targets: ["KeysmithDomain"]),
        .library(name: "KeysmithServer", targets: ["KeysmithServer"]),
        .library(name: "KeysmithClient", targets: ["KeysmithClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/vapor/sql-kit.git", from: "3.36.0"),
        // VaporCSQLite, the SQLite our driver calls, is a module of sqlite-nio but not one of its products, so its
        // semantic versioning does not cover it: take patch releases only, and let SQLiteEngineTests check the
        // compile options Keysmith relies on.
        .package(url: "https://github.com/vapor/sqlite-nio.git", .upToNextMinor(from: "1.13.2")),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/vapor/postgres-kit.git", from: "2.17.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
    ],
    targets: [
        .target(
            name: "KeysmithCore",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto")
            ],
            swiftSettings: swiftSettings
        ),
        // The domain operations and the store beneath them (Store/: SQLStore, its queries, migrations, and the
        // SQLite and PostgreSQL engines). The store is internal to this target, so no other target can call a write
        // except through Keysmith.
        .target(
            name: "KeysmithDomain",
            dependencies: [
                "KeysmithCore",
                .product(name: "SQLKit", package: "sql-kit"),
                // For the SQLite it vendors (its VaporCSQLite module); see Sources/KeysmithDomain/Store/SQLite.
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                // For its SQLKit dialect only; the store talks to PostgresNIO's PostgresClient directly.
                .product(name: "PostgresKit", package: "postgres-kit"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "KeysmithServer",
            dependencies: [
                "KeysmithCore",
                "KeysmithDomain",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Mustache", package: "swift-mustache"),
                // The gateway's client to the model servers behind it.
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            // The API description (served at GET /v1/openapi.yaml) and the dashboard's templates, stylesheet and script
            // are compiled into the binary: no bundle to ship.
            resources: [
                .embedInCode("Resources/openapi.yaml"),
                .embedInCode("Resources/dashboard/admin-keys.mustache"),
                .embedInCode("Resources/dashboard/audit-log.mustache"),
                .embedInCode("Resources/dashboard/confirm.mustache"),
                .embedInCode("Resources/dashboard/dashboard.js"),
                .embedInCode("Resources/dashboard/error.mustache"),
                .embedInCode("Resources/dashboard/layout.mustache"),
                .embedInCode("Resources/dashboard/pager.mustache"),
                .embedInCode("Resources/dashboard/people.mustache"),
                .embedInCode("Resources/dashboard/project-header.mustache"),
                .embedInCode("Resources/dashboard/project-keys.mustache"),
                .embedInCode("Resources/dashboard/project-members.mustache"),
                .embedInCode("Resources/dashboard/project-service-accounts.mustache"),
                .embedInCode("Resources/dashboard/project-settings.mustache"),
                .embedInCode("Resources/dashboard/projects.mustache"),
                .embedInCode("Resources/dashboard/secret.mustache"),
                .embedInCode("Resources/dashboard/sign-in.mustache"),
                .embedInCode("Resources/dashboard/style.css"),
            ],
            swiftSettings: swiftSettings
        ),
        // A typed Swift client of the admin API, for Swift services and for the CLI's remote commands.
        .target(
            name: "KeysmithClient",
            dependencies: [
                "KeysmithCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "keysmith",
            dependencies: [
                "KeysmithCore",
                "KeysmithDomain",
                "KeysmithServer",
                "KeysmithClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // Seeds databases for scripts/bench through the domain layer; not a product.
        .executableTarget(
            name: "KeysmithBenchSeed",
            dependencies: [
                "KeysmithCore",
                "KeysmithDomain",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // What the test targets share: a database of its own for each test, on each engine.
        .target(
            name: "KeysmithTestSupport",
            dependencies: [
                "KeysmithCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            path: "Tests/KeysmithTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KeysmithCoreTests",
            dependencies: ["KeysmithCore"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KeysmithStoreTests",
            dependencies: ["KeysmithCore", "KeysmithDomain", "KeysmithTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KeysmithServerTests",
            dependencies: [
                "KeysmithCore",
                "KeysmithDomain",
                "KeysmithServer",
                "KeysmithTestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KeysmithClientTests",
            dependencies: [
                "KeysmithCore",
                "KeysmithDomain",
                "KeysmithServer",
                "KeysmithClient",
                "KeysmithTestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)

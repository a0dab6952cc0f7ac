import CoreMetrics
import KeysmithCore
import KeysmithDomain
import Prometheus
import Synchronization

/// Everything `GET /metrics` reports, in Prometheus' text format: swift-metrics handles backed by one
/// swift-prometheus registry per application (so that tests can build many applications in one process), made once
/// and kept, so that the hot paths only increment.
///
/// docs/operations.md lists every metric and what to alert on.
public final class ServerMetrics: Sendable {
    let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory

    private struct RequestLabels: Hashable {
        var route: String
        var method: String
        var status: Int
    }

    private struct RequestHandles: Sendable {
        var count: CoreMetrics.Counter
        var duration: CoreMetrics.Timer
    }

    private let requests = Mutex<[RequestLabels: RequestHandles]>([:])
    private let verificationOutcomes: [VerificationCode: CoreMetrics.Counter]
    private let indexSecrets: (current: CoreMetrics.Gauge, previous: CoreMetrics.Gauge, admin: CoreMetrics.Gauge)

    let changesApplied: CoreMetrics.Counter
    let changesSuspended: CoreMetrics.Counter
    let changeFeedReloads: CoreMetrics.Counter
    let changeFeedErrors: CoreMetrics.Counter
    let changeListenerLosses: CoreMetrics.Counter
    let verificationStale: CoreMetrics.Gauge
    let usageFlushes: CoreMetrics.Counter
    let usageFlushFailures: CoreMetrics.Counter
    let usesWritten: CoreMetrics.Counter
    let statementDuration: CoreMetrics.Timer
    let statementErrors: CoreMetrics.Counter
    let connectionsOpen: CoreMetrics.Meter
    let connectionsRefused: CoreMetrics.Counter
    let connectionsClosedIdle: CoreMetrics.Counter
    let connectionsClosedHeadTimeout: CoreMetrics.Counter
    let connectionsEvicted: CoreMetrics.Counter
    let connectionsClosedBodyTimeout: CoreMetrics.Counter
    let connectionsClosedWriteStalled: CoreMetrics.Counter
    private let gatewayOutcomes: [GatewayOutcome: CoreMetrics.Counter]

    public init() {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // From a check answered from memory (~100 µs) to a slow database statement.
        factory.defaultDurationHistogramBuckets = [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2.5),
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
        ]
        self.registry = registry
        self.factory = factory
        self.verificationOutcomes = Dictionary(
            uniqueKeysWithValues: VerificationCode.allCases.map { code in
                (code, CoreMetrics.Counter(label: "keysmith_verifications_total", dimensions: [("code", code.rawValue)], factory: factory))
            }
        )
        self.indexSecrets = (
            CoreMetrics.Gauge(label: "keysmith_verification_index_secrets", dimensions: [("kind", "current")], factory: factory),
            CoreMetrics.Gauge(label: "keysmith_verification_index_secrets", dimensions: [("kind", "previous")], factory: factory),
            CoreMetrics.Gauge(label: "keysmith_verification_index_secrets", dimensions: [("kind", "admin")], factory: factory)
        )
        self.changesApplied = CoreMetrics.Counter(label: "keysmith_change_log_entries_applied_total", factory: factory)
        self.changesSuspended = CoreMetrics.Counter(label: "keysmith_change_feed_suspended_changes_total", factory: factory)
        self.changeFeedReloads = CoreMetrics.Counter(label: "keysmith_change_feed_reloads_total", factory: factory)
        self.changeFeedErrors = CoreMetrics.Counter(label: "keysmith_change_feed_errors_total", factory: factory)
        self.changeListenerLosses = CoreMetrics.Counter(label: "keysmith_change_feed_listener_losses_total", factory: factory)
        self.verificationStale = CoreMetrics.Gauge(label: "keysmith_verification_stale", factory: factory)
        self.verificationStale.record(0)
        self.usageFlushes = CoreMetrics.Counter(label: "keysmith_usage_flushes_total", dimensions: [("result", "ok")], factory: factory)
        self.usageFlushFailures = CoreMetrics.Counter(label: "keysmith_usage_flushes_total", dimensions: [("result", "error")], factory: factory)
        self.usesWritten = CoreMetrics.Counter(label: "keysmith_usage_last_used_written_total", factory: factory)
        self.statementDuration = CoreMetrics.Timer(label: "keysmith_database_statement_duration_seconds", factory: factory)
        self.statementErrors = CoreMetrics.Counter(label: "keysmith_database_statement_errors_total", factory: factory)
        self.connectionsOpen = CoreMetrics.Meter(label: "keysmith_http_connections_open", factory: factory)
        self.connectionsRefused = CoreMetrics.Counter(label: "keysmith_http_connections_refused_total", factory: factory)
        self.connectionsClosedIdle = CoreMetrics.Counter(
            label: "keysmith_http_connections_closed_total",
            dimensions: [("reason", "idle_timeout")],
            factory: factory
        )
        self.connectionsClosedHeadTimeout = CoreMetrics.Counter(
            label: "keysmith_http_connections_closed_total",
            dimensions: [("reason", "request_head_timeout")],
            factory: factory
        )
        self.connectionsEvicted = CoreMetrics.Counter(
            label: "keysmith_http_connections_closed_total",
            dimensions: [("reason", "evicted_at_limit")],
            factory: factory
        )
        self.connectionsClosedBodyTimeout = CoreMetrics.Counter(
            label: "keysmith_http_connections_closed_total",
            dimensions: [("reason", "request_body_timeout")],
            factory: factory
        )
        self.connectionsClosedWriteStalled = CoreMetrics.Counter(
            label: "keysmith_http_connections_closed_total",
            dimensions: [("reason", "write_stalled")],
            factory: factory
        )
        self.gatewayOutcomes = Dictionary(
            uniqueKeysWithValues: GatewayOutcome.allCases.map { outcome in
                (
                    outcome,
                    CoreMetrics.Counter(label: "keysmith_gateway_requests_total", dimensions: [("outcome", outcome.rawValue)], factory: factory)
                )
            }
        )
        CoreMetrics.Gauge(label: "keysmith_build_info", dimensions: [("version", KeysmithVersion.current)], factory: factory).record(1)
    }

    /// Counts a request and records its duration, by route pattern (`/v1/organization/projects/{project_id}`, never
    /// an id: ids would make a series per object), method and status.
    func recordRequest(route: String, method: String, status: Int, duration: Duration) {
        let labels = RequestLabels(route: route, method: method, status: status)
        let handles = self.requests.withLock { requests in
            if let handles = requests[labels] { return handles }
            let handles = RequestHandles(
                count: CoreMetrics.Counter(
                    label: "keysmith_http_requests_total",
                    dimensions: [("route", route), ("method", method), ("status", String(status))],
                    factory: self.factory
                ),
                duration: CoreMetrics.Timer(
                    label: "keysmith_http_request_duration_seconds",
                    dimensions: [("route", route), ("method", method)],
                    factory: self.factory
                )
            )
            requests[labels] = handles
            return handles
        }
        handles.count.increment()
        handles.duration.record(duration)
    }

    /// Counts a request the gateway proxied, by how it ended.
    func gatewayRequest(_ outcome: GatewayOutcome) {
        self.gatewayOutcomes[outcome]?.increment()
    }

    func recordVerification(_ code: VerificationCode) {
        self.verificationOutcomes[code]?.increment()
    }

    func indexChanged(_ index: VerificationIndex) {
        let counts = index.counts
        self.indexSecrets.current.record(counts.current)
        self.indexSecrets.previous.record(counts.previous)
        self.indexSecrets.admin.record(counts.admin)
    }

    /// Reports the store's statements: their latency and failures.
    var statementObserver: SQLStatementObserver {
        SQLStatementObserver { [statementDuration, statementErrors] duration, failed in
            statementDuration.record(duration)
            if failed { statementErrors.increment() }
        }
    }

    /// The Prometheus text exposition of every metric.
    func exposition() -> [UInt8] {
        self.registry.emitToBuffer()
    }
}

extension CoreMetrics.Timer {
    func record(_ duration: Duration) {
        self.recordNanoseconds(duration.nanoseconds)
    }
}

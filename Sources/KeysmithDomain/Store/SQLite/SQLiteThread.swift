import NIOConcurrencyHelpers
import NIOPosix
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A thread of its own for one SQLite connection, that is also a task executor.
///
/// A transaction is several statements, each a blocking SQLite call that must not run on Swift's cooperative
/// threads. Hopping to a worker thread and back for each one cost two thread wake-ups per statement, and those
/// dominated every write (perf: over half of the seeder's time in the scheduler, 1,300 keys/s). Instead, the engine
/// runs a whole transaction body with this thread as its task executor preference
/// (`withTaskExecutorPreference`): the body's code runs here, and its statements run in place, in between. A
/// transaction then costs two wake-ups in all: onto this thread, and back.
final class SQLiteThread: TaskExecutor, Sendable {
    private let pool: NIOThreadPool
    /// True while jobs wait to run.
    private let signal = ConditionLock(value: false)
    private let state = Mutex(State())
    /// The thread's id, once it runs (0 before).
    private let threadID = Atomic<UInt>(0)

    private struct State {
        var jobs: [UnownedJob] = []
        var isStopping = false
        /// The thread has exited: jobs go to the global executor instead, so that no task waits forever (the
        /// engine's statements then fail as closed).
        var hasStopped = false
    }

    init() {
        self.pool = NIOThreadPool(numberOfThreads: 1)
        self.pool.start()
        self.pool.submit { _ in self.runJobs() }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let queued = self.state.withLock { state in
            guard !state.hasStopped else { return false }
            state.jobs.append(job)
            return true
        }
        guard queued else {
            globalConcurrentExecutor.enqueue(job)
            return
        }
        self.signal.lock()
        self.signal.unlock(withValue: true)
    }

    /// Whether the thread has exited (after ``shutdown()``).
    var hasStopped: Bool { self.state.withLock { $0.hasStopped } }

    /// Whether the caller runs on this thread.
    var isCurrent: Bool { self.threadID.load(ordering: .relaxed) == Self.currentThreadID }

    private static var currentThreadID: UInt {
        #if canImport(Darwin)
            UInt(bitPattern: pthread_self())
        #else
            UInt(pthread_self())
        #endif
    }

    private func runJobs() {
        self.threadID.store(Self.currentThreadID, ordering: .relaxed)
        while true {
            self.signal.lock(whenValue: true)
            let (jobs, isStopping) = self.state.withLock { state in
                defer { state.jobs.removeAll(keepingCapacity: true) }
                if state.isStopping && state.jobs.isEmpty { state.hasStopped = true }
                return (state.jobs, state.isStopping)
            }
            // While stopping, keep going until the queue is empty.
            self.signal.unlock(withValue: isStopping)
            for job in jobs {
                job.runSynchronously(on: self.asUnownedTaskExecutor())
            }
            if isStopping && jobs.isEmpty { return }
        }
    }

    /// Runs the jobs already queued, then stops the thread.
    func shutdown() async throws {
        self.state.withLock { $0.isStopping = true }
        self.signal.lock()
        self.signal.unlock(withValue: true)
        try await self.pool.shutdownGracefully()
    }
}

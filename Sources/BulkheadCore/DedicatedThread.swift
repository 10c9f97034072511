import CBulkheadLinux
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A dedicated OS thread (never Swift's cooperative pool): vCPUs block in KVM_RUN for as long
/// as the guest runs, the console blocks reading stdin.
public final class DedicatedThread: Sendable {
    private let handle: Mutex<pthread_t?>

    private init() { handle = Mutex(nil) }

    private final class Context {
        let body: () -> Void
        let name: String
        init(body: @escaping () -> Void, name: String) { self.body = body; self.name = name }
    }

    /// Starts `body` on a new thread named `name`; nil if the thread cannot be created.
    public static func start(name: String, _ body: @escaping @Sendable () -> Void) -> DedicatedThread? {
        let thread = DedicatedThread()
        let context = Unmanaged.passRetained(Context(body: body, name: name)).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { raw in
            // SAFETY: raw is the retained Context passed below; taken back exactly once here.
            let context = Unmanaged<Context>.fromOpaque(raw!).takeRetainedValue()
            _ = context.name.withCString { bh_set_thread_name($0) }
            context.body()
            return nil
        }, context)
        guard rc == 0 else {
            // Could not create the thread: run nothing, release the context.
            Unmanaged<Context>.fromOpaque(context).release()
            return nil
        }
        thread.handle.withLock { $0 = tid }
        return thread
    }

    /// Sends `signal` to the thread (to interrupt a blocking call).
    public func kick(signal: Int32) {
        handle.withLock { tid in if let tid { _ = pthread_kill(tid, signal) } }
    }

    /// Waits for the thread to finish.
    public func join() {
        guard let tid = handle.withLock({ $0 }) else { return }
        _ = pthread_join(tid, nil)
    }
}

import Synchronization

/// Something that happened to a domain, as `GET /events` streams it.
public struct DomainEvent: Sendable {
    public enum Kind: String, Sendable {
        case started, exited, restarted, recovered, hung, failed
    }

    /// Increasing from 1, so that a reader can ask for what it has not seen.
    public let sequence: UInt64
    public let kind: Kind
    public let domain: String
    /// Seconds since the machine started.
    public let time: Double
    public let detail: String
}

/// The events of every domain of a machine: a bounded in-memory log that readers poll by
/// sequence number.
public final class DomainEventLog: Sendable {
    private struct State {
        var events: [DomainEvent] = []
        var next: UInt64 = 1
    }

    private let state = Mutex(State())
    private let start = monotonicMilliseconds()
    static let capacity = 4096

    public init() {}

    func record(_ kind: DomainEvent.Kind, domain: String, detail: String = "") {
        let time = (monotonicMilliseconds() - start) / 1000
        state.withLock { s in
            s.events.append(DomainEvent(sequence: s.next, kind: kind, domain: domain, time: time, detail: detail))
            s.next += 1
            if s.events.count > Self.capacity { s.events.removeFirst(s.events.count - Self.capacity) }
        }
    }

    /// The events with a sequence number above `after`.
    public func events(after: UInt64) -> [DomainEvent] {
        state.withLock { s in s.events.filter { $0.sequence > after } }
    }
}

extension Sequence where Element: Equatable {
    /// Each distinct element with how many times it occurs, in order of first appearance
    /// (exit reasons in the closing report, `/metrics` and the chaos summary).
    public func occurrenceCounts() -> [(Element, Int)] {
        var counts: [(Element, Int)] = []
        for element in self {
            if let i = counts.firstIndex(where: { $0.0 == element }) { counts[i].1 += 1 } else { counts.append((element, 1)) }
        }
        return counts
    }
}

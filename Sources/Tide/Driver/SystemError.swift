#if canImport(Glibc)
import Glibc
#endif

/// An operating-system call failed.
///
/// `operation` names the call (for example `"epoll_ctl"`), `code` is the `errno` it set. The
/// description spells out both so a log line says what failed and why.
public struct SystemError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The system call that failed.
    public var operation: String
    /// The `errno` value.
    public var code: Int32

    /// Records a failed call with its errno.
    public init(_ operation: String, code: Int32) {
        self.operation = operation
        self.code = code
    }

    /// Records a failed call with the current `errno`.
    static func last(_ operation: String) -> SystemError {
        SystemError(operation, code: errno)
    }

    /// `"<operation> failed: <strerror> (errno N)"`.
    public var description: String {
        let message = String(cString: strerror(code))
        return "\(operation) failed: \(message) (errno \(code))"
    }
}

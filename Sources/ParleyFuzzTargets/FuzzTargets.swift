/// What one fuzz input did to its target. A `violation` is a finding: an invariant of the code under
/// test broke (a failed decrypt changed state, a forgery decrypted, a parser accepted what it cannot
/// re-encode...). The libFuzzer entry point traps on it; the regression tests compare outcomes.
public enum FuzzOutcome: Equatable, Sendable, CustomStringConvertible {
    /// The input was accepted; `detail` says what came out (parsed fields, a decrypted plaintext, ...).
    case accepted(String)
    /// The input was refused with a typed error; `kind` names it (`ProtocolError.kind`, an error case).
    case rejected(String)
    /// An invariant broke.
    case violation(String)

    public var description: String {
        switch self {
        case .accepted(let detail): return detail.isEmpty ? "accepted" : "accepted \(detail)"
        case .rejected(let kind): return "rejected \(kind)"
        case .violation(let what): return "violation \(what)"
        }
    }

    /// For a violation of an invariant that is known to be broken by a defect being fixed elsewhere
    /// (its message starts with one of `FuzzTargets.knownIssues`' tags): that tag.
    public var knownIssue: String? {
        guard case .violation(let what) = self else { return nil }
        return FuzzTargets.knownIssues.keys.first { what.hasPrefix($0 + ":") }
    }

    /// Whether this outcome satisfies `expected`, a string as written in a regression manifest:
    /// the exact description, or just `accepted` / `rejected` to accept any detail.
    public func matches(_ expected: String) -> Bool {
        switch (self, expected) {
        case (.accepted, "accepted"), (.rejected, "rejected"): return true
        default: return description == expected
        }
    }
}

/// One libFuzzer target: a name and a function from arbitrary bytes to an outcome. A target must
/// never crash or hang, whatever the bytes.
public struct FuzzTarget: Sendable {
    public let name: String
    /// What the target feeds and which invariants it checks (shown by `parley-fuzz --list`).
    public let summary: String
    let body: @Sendable ([UInt8]) -> FuzzOutcome

    public func run(_ data: [UInt8]) -> FuzzOutcome { body(data) }
}

/// The targets shared by the `parley-fuzz` executable (built with `-sanitize=fuzzer`) and the
/// regression tests, which replay the inputs kept under `TestVectors/fuzz-regressions/<target>/`
/// and compare each outcome with its manifest.
public enum FuzzTargets {
    public static let all: [FuzzTarget] =
        MessageParserTargets.all + DecryptTargets.all + [RatchetTranscriptTarget.target] + ClientFormatTargets.all
        + WireTargets.all

    public static var names: [String] { all.map(\.name) }

    /// Defects in code another branch is fixing, reported by violations whose message starts with
    /// the tag: the regression tests expect such an input as a known issue, and CI's fuzz run tolerates
    /// the tag when listed in `PARLEY_FUZZ_KNOWN_ISSUES` (scripts/test.sh). Empty: issue 10's defects 1
    /// and 2 (forged PreKey wrappers, non-canonical base keys), which the targets found, are fixed in
    /// ParleyProtocol, and the inputs that reached them are plain regressions now.
    public static let knownIssues: [String: String] = [:]

    public static func target(named name: String) -> FuzzTarget? { all.first { $0.name == name } }

    /// Runs target `name` on `data`. Unknown names are a programming error.
    public static func run(_ name: String, _ data: [UInt8]) -> FuzzOutcome {
        guard let target = target(named: name) else { preconditionFailure("unknown fuzz target \(name)") }
        return target.run(data)
    }
}

/// A symmetric chain that yields one message key per position: the Double Ratchet's `ChainKey`
/// and the sender-key `SenderChainKey`.
protocol SymmetricKeyChain: Sendable {
    associatedtype MessageKey: Sendable
    /// The position of the next message key this chain yields.
    var position: UInt32 { get }
    /// The key at `position` and the chain one position on; `chainExhausted` at
    /// `UInt32.max`.
    func step() throws(ProtocolError) -> (MessageKey, Self)
    /// The chain one position on, without deriving the key at `position`; `chainExhausted` at
    /// `UInt32.max`.
    func next() throws(ProtocolError) -> Self
    static func position(of key: MessageKey) -> UInt32
}

extension ChainKey: SymmetricKeyChain {
    var position: UInt32 { index }
    static func position(of key: MessageKeys) -> UInt32 { key.counter }
}

extension SenderChainKey: SymmetricKeyChain {
    var position: UInt32 { iteration }
    static func position(of key: SenderMessageKey) -> UInt32 { key.iteration }
}

/// Finding the key for a received message on a chain, the same rule for pairwise sessions and
/// sender keys: an earlier position must still have its skipped key (else it is a duplicate);
/// a later one may be at most `maxForwardJumps` ahead; the keys stepped over are kept, newest
/// `Limits.maxMessageKeys` only, oldest dropped first, and keys that would be dropped at once
/// are never derived.
enum SkippedKeyWalk {
    static func messageKey<C: SymmetricKeyChain>(
        chain: inout C, skipped: inout [C.MessageKey], at target: UInt32, maxForwardJumps: UInt32
    ) throws(ProtocolError) -> C.MessageKey {
        let next = chain.position
        if next > target {
            guard let i = skipped.firstIndex(where: { C.position(of: $0) == target }) else {
                throw .duplicateMessage(expected: next, counter: target)
            }
            return skipped.remove(at: i)
        }
        guard target - next <= maxForwardJumps else { throw .tooFarAhead(expected: next, counter: target) }
        var walker = chain
        if target > next {
            let keep = UInt32(Limits.maxMessageKeys)
            let firstKept = target - next > keep ? target - keep : next
            while walker.position < target {
                if walker.position >= firstKept {
                    let (key, following) = try walker.step()
                    skipped.append(key)
                    walker = following
                } else {
                    walker = try walker.next()
                }
            }
            if skipped.count > Limits.maxMessageKeys {
                skipped.removeFirst(skipped.count - Limits.maxMessageKeys)
            }
        }
        // At `target == UInt32.max` this throws `chainExhausted` before anything is kept.
        let (key, following) = try walker.step()
        chain = following
        return key
    }
}

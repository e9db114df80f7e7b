import ParleyProtocol

/// The `rejects` entries of a sender-key vector (v3 `group` and v4 `sender_key`): each ciphertext must be refused
/// with the named reason and leave the receiver's state exactly as it was.
enum RejectVectors {
    static func run<State: Equatable>(
        _ list: [JSONValue], snapshot: () throws -> State, receive: ([UInt8]) throws -> Void
    ) throws {
        for r in list {
            let id = try r["id"].string(), reason = try r["reason"].string()
            let before = try snapshot()
            do {
                try receive(try r["ciphertext"].hex())
                throw VectorError.mismatch("reject \(id) (\(reason)) was accepted")
            } catch let error as ProtocolError {
                guard error.kind == reason else {
                    throw VectorError.mismatch("reject \(id): expected \(reason), got \(error.kind) (\(error))")
                }
            }
            guard try snapshot() == before else { throw VectorError.mismatch("reject \(id) changed the receiver's state") }
        }
    }
}

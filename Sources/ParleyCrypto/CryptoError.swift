/// What went wrong in a primitive. Each case says what a caller needs to act on.
public enum CryptoError: Error, Equatable, Sendable {
    /// libsodium could not be initialised (no entropy source, or the library is broken).
    case libraryInitialisationFailed
    /// A key had the wrong length or encoding; `expected` describes the accepted form.
    case invalidKeyLength(expected: Int, actual: Int)
    /// A serialized public key did not start with the Curve25519 type byte 0x05.
    case invalidKeyType(UInt8)
    /// The Diffie-Hellman output was all zeros (the peer's key has small order).
    case nonContributoryAgreement
    /// A signature was not 64 bytes, had a non-canonical scalar, or did not verify.
    case invalidSignature
    /// AES-CBC input was not a whole number of blocks, or the PKCS#7 padding was wrong.
    case invalidPadding
    /// An IV or nonce had the wrong length.
    case invalidIVLength(Int)
    /// OpenSSL reported a failure inside a cipher operation.
    case cipherFailure
    /// An HKDF output longer than 255 hash blocks was requested.
    case outputTooLong(Int)
    /// OpenSSL reported a failure inside a SHA-3 or SHAKE computation.
    case digestFailure
}

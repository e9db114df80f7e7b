/// The version byte that prefixes every message: (message version << 4) | version.
///
/// Pairwise messages carry their session's version: 0x33 for X3DH (version 3) sessions, 0x44 for
/// PQXDH (version 4). Readers look at the high nibble only, as libsignal does. (libsignal writes
/// its current version, 4, into the low nibble of version-3 messages too, 0x34; Parley writes
/// 0x33 as python-axolotl and older libsignal do; no reader looks at it.)
enum VersionByte {
    /// The byte Parley writes for a message of `version`.
    @inline(__always)
    static func byte(for version: UInt8) -> UInt8 { (version << 4) | version }

    /// Checks a pairwise message's high nibble (3 or 4) and returns it: below 3 is a legacy
    /// format, above 4 a newer one.
    @discardableResult
    static func check(_ byte: UInt8) throws(ProtocolError) -> UInt8 {
        let version = byte >> 4
        if version < Limits.preKyberVersion { throw .legacyVersion(version) }
        if version > Limits.currentVersion { throw .unknownVersion(version) }
        return version
    }

    /// Checks a Sender Key message's high nibble, which must be exactly 3.
    static func checkSenderKey(_ byte: UInt8) throws(ProtocolError) {
        let version = byte >> 4
        if version < Limits.senderKeyVersion { throw .legacyVersion(version) }
        if version > Limits.senderKeyVersion { throw .unknownVersion(version) }
    }
}

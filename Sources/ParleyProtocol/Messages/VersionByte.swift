/// The version byte that prefixes every message: (message version << 4) | current version.
enum VersionByte {
    static let current: UInt8 = (Limits.currentVersion << 4) | Limits.currentVersion

    /// Checks the high nibble: below 3 is a legacy format, above 3 a newer one.
    static func check(_ byte: UInt8) throws(ProtocolError) {
        let version = byte >> 4
        if version < Limits.currentVersion { throw .legacyVersion(version) }
        if version > Limits.currentVersion { throw .unknownVersion(version) }
    }
}

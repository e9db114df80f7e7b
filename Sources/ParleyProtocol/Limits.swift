/// Every bound the protocol enforces, in one place, with the reason for each. The values are
/// libsignal's current ones, so Parley accepts and rejects exactly what libsignal does.
public enum Limits {
    /// A message more than this many steps ahead of its chain's next expected counter is
    /// rejected (`tooFarAhead`): deriving that many keys is the cost a forged counter could
    /// impose. libsignal's MAX_FORWARD_JUMPS.
    public static let maxForwardJumps: UInt32 = 25_000

    /// Skipped message keys kept per receiving chain (and per sender-key state); the oldest is
    /// dropped first. Bounds the memory a long gap can pin. libsignal's MAX_MESSAGE_KEYS.
    public static let maxMessageKeys = 2_000

    /// Receiving chains kept per session; older ones are dropped, and a late message from a
    /// dropped chain fails its MAC. libsignal's MAX_RECEIVER_CHAINS.
    public static let maxReceiverChains = 5

    /// Previous (archived) session states kept per address, so messages from a replaced
    /// session can still be decrypted. libsignal's ARCHIVED_STATES_MAX_LENGTH.
    public static let maxArchivedStates = 40

    /// Sender-key states kept per (group, sender), newest first. libsignal's
    /// MAX_SENDER_KEY_STATES.
    public static let maxSenderKeyStates = 5

    /// Forward jumps accepted in a sender-key chain: the same bound as pairwise sessions.
    public static let maxSenderKeyForwardJumps: UInt32 = maxForwardJumps

    /// The message version of X3DH sessions (libsignal's CIPHERTEXT_MESSAGE_PRE_KYBER_VERSION):
    /// still read and written for sessions made before PQXDH and for peers that publish no
    /// Kyber prekey (python-axolotl), when the policy allows it (`SessionPolicy`).
    public static let preKyberVersion: UInt8 = 3

    /// The message version of PQXDH sessions (X25519 and Kyber1024, libsignal's
    /// CIPHERTEXT_MESSAGE_CURRENT_VERSION): every new session whose peer publishes a Kyber prekey.
    public static let kyberVersion: UInt8 = 4

    /// The highest pairwise message version Parley reads and writes.
    public static let currentVersion: UInt8 = kyberVersion

    /// The version of Sender Key messages (libsignal's SENDERKEY_MESSAGE_CURRENT_VERSION):
    /// unchanged by PQXDH; readers require exactly this high nibble.
    public static let senderKeyVersion: UInt8 = 3

    /// Length of the truncated MAC on a SignalMessage.
    public static let macLength = 8
}

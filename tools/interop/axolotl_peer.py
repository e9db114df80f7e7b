#!/usr/bin/env python3
"""JSON-lines interop peer backed by python-axolotl 0.2.3.

One request object per line on stdin, one response object per line on stdout.
The protocol is documented in Specs/interop.md ("Live interop with
python-axolotl"); roundtrip.py drives two such peers against each other.

All state lives in memory (python-axolotl's in-memory stores). Every remote
address uses device id 1; addresses are the peer names.

Diagnostics go to stderr only; stdout carries nothing but response lines.
"""

import json
import os
import sys
import time
import traceback

# python-axolotl is imported from the virtualenv created by setup.sh.
try:
    from google.protobuf.message import DecodeError

    from axolotl.axolotladdress import AxolotlAddress
    from axolotl.duplicatemessagexception import DuplicateMessageException
    from axolotl.ecc.curve import Curve
    from axolotl.groups.groupcipher import GroupCipher
    from axolotl.groups.groupsessionbuilder import GroupSessionBuilder
    from axolotl.groups.senderkeyname import SenderKeyName
    from axolotl.identitykey import IdentityKey
    from axolotl.identitykeypair import IdentityKeyPair
    from axolotl.invalidkeyexception import InvalidKeyException
    from axolotl.invalidkeyidexception import InvalidKeyIdException
    from axolotl.invalidmessageexception import InvalidMessageException
    from axolotl.invalidversionexception import InvalidVersionException
    from axolotl.legacymessageexception import LegacyMessageException
    from axolotl.nosessionexception import NoSessionException
    from axolotl.protocol import whisperprotos_pb2 as whisperprotos
    from axolotl.protocol.ciphertextmessage import CiphertextMessage
    from axolotl.protocol.prekeywhispermessage import PreKeyWhisperMessage
    from axolotl.protocol.senderkeydistributionmessage import SenderKeyDistributionMessage
    from axolotl.protocol.whispermessage import WhisperMessage
    from axolotl.sessionbuilder import SessionBuilder
    from axolotl.sessioncipher import SessionCipher
    from axolotl.state.prekeybundle import PreKeyBundle
    from axolotl.state.prekeyrecord import PreKeyRecord
    from axolotl.state.signedprekeyrecord import SignedPreKeyRecord
    from axolotl.tests.groups.inmemorysenderkeystore import InMemorySenderKeyStore
    from axolotl.tests.inmemoryaxolotlstore import InMemoryAxolotlStore
    from axolotl.untrustedidentityexception import UntrustedIdentityException
except ImportError as e:  # pragma: no cover - environment problem
    # Started with a python that lacks python-axolotl (e.g. plain `python3
    # tools/interop/axolotl_peer.py`): re-exec under the interop virtualenv
    # created by setup.sh, if it exists.
    _venv_py = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".venv", "bin", "python")
    if os.path.exists(_venv_py) and os.path.realpath(sys.prefix) != os.path.realpath(
            os.path.join(os.path.dirname(_venv_py), "..")) and not os.environ.get("AXOLOTL_PEER_REEXEC"):
        os.environ["AXOLOTL_PEER_REEXEC"] = "1"
        os.execv(_venv_py, [_venv_py, os.path.abspath(__file__)] + sys.argv[1:])
    sys.stderr.write("axolotl_peer: cannot import python-axolotl (%s); run tools/interop/setup.sh "
                     "and use tools/interop/.venv/bin/python\n" % e)
    sys.exit(2)

DEVICE_ID = 1


# --------------------------------------------------------------------------
# Runtime patch (do not edit site-packages).
#
# python-axolotl 0.2.3 parses PreKeyWhisperMessage with
#     self.preKeyId = preKeyWhisperMessage.preKeyId
# i.e. it reads the proto2 optional field without HasField(). When the sender
# used a bundle WITHOUT a one-time prekey the field is absent, protobuf returns
# the default 0, and SessionBuilder.processV3 then tries
# preKeyStore.loadPreKey(0) -> InvalidKeyIdException, so X3DH without a
# one-time prekey can never be received. libsignal treats an absent preKeyId as
# "no one-time prekey", so we restore those semantics: after the original
# constructor has parsed a serialized message, re-check the field presence and
# set preKeyId to None when it is absent.
# --------------------------------------------------------------------------
_orig_pkwm_init = PreKeyWhisperMessage.__init__


def _pkwm_init_with_optional_prekey_id(self, *args, **kwargs):
    _orig_pkwm_init(self, *args, **kwargs)
    serialized = kwargs.get("serialized")
    if serialized is None and len(args) >= 8:
        serialized = args[7]
    if serialized:
        proto = whisperprotos.PreKeyWhisperMessage()
        proto.ParseFromString(bytes(serialized[1:]))
        if not proto.HasField("preKeyId"):
            self.preKeyId = None


PreKeyWhisperMessage.__init__ = _pkwm_init_with_optional_prekey_id


class RequestError(Exception):
    """A malformed request (not a protocol failure)."""


class FixedIdentityStore(InMemoryAxolotlStore):
    """InMemoryAxolotlStore with a caller-chosen registration id."""

    def __init__(self, registration_id):
        InMemoryAxolotlStore.__init__(self)
        self.identityKeyStore.localRegistrationId = registration_id


def h(b):
    return bytes(b).hex()


def unhex(s, field):
    if not isinstance(s, str):
        raise RequestError("field %r must be a hex string" % field)
    try:
        return bytes.fromhex(s)
    except ValueError:
        raise RequestError("field %r is not valid hex" % field)


def need(req, field, typ=None):
    if field not in req:
        raise RequestError("missing field %r" % field)
    v = req[field]
    if typ is not None and not isinstance(v, typ):
        raise RequestError("field %r has wrong type" % field)
    return v


def _exc_text(e):
    parts = [str(e)]
    for a in getattr(e, "args", ())[1:2]:
        if isinstance(a, list):
            parts.extend(str(x) for x in a)
    return " ".join(parts)


def classify(e):
    """Map a python-axolotl exception to a short error-kind string."""
    text = _exc_text(e)
    low = text.lower()
    if isinstance(e, DuplicateMessageException):
        return "duplicate"
    if isinstance(e, UntrustedIdentityException):
        return "untrusted_identity"
    if isinstance(e, NoSessionException):
        return "no_session"
    if isinstance(e, InvalidKeyIdException):
        return "invalid_key_id"
    if isinstance(e, (InvalidVersionException, LegacyMessageException)):
        return "invalid_version"
    if isinstance(e, InvalidKeyException):
        if "signature" in low:
            return "bad_signature"
        return "invalid_key"
    if isinstance(e, InvalidMessageException):
        if "bad mac" in low:
            return "bad_mac"
        if "invalid signature" in low:
            return "bad_signature"
        if "no keys for" in low or "no key state" in low:
            return "no_session"
        if "legacy" in low or "unknown version" in low:
            return "invalid_version"
        if "old counter" in low:
            return "duplicate"
        return "invalid_message"
    if isinstance(e, (DecodeError, ValueError, IndexError, TypeError, AttributeError)):
        # Malformed protobuf / truncated input / bad padding after a valid MAC.
        return "invalid_message"
    return "internal"


class Peer:
    def __init__(self):
        self.name = None
        self.store = None
        self.sender_keys = None
        self.signed_prekey_id = None
        self.prekey_id = None

    # -- helpers -----------------------------------------------------------
    def _require_init(self):
        if self.store is None:
            raise RequestError("peer not initialised (send init first)")

    def _cipher(self, peer):
        s = self.store
        return SessionCipher(s, s, s, s, peer, DEVICE_ID)

    def _sender_key_name(self, group, sender):
        return SenderKeyName(group, AxolotlAddress(sender, DEVICE_ID))

    # -- operations --------------------------------------------------------
    def op_init(self, req):
        self.name = need(req, "name", str)
        reg = need(req, "registration_id", int)
        spk_id = need(req, "signed_prekey_id", int)
        pk_id = need(req, "prekey_id", int)
        self.store = FixedIdentityStore(reg)
        kp = Curve.generateKeyPair()
        ident = IdentityKeyPair(IdentityKey(kp.getPublicKey()), kp.getPrivateKey())
        self.store.identityKeyStore.identityKeyPair = ident
        spk = Curve.generateKeyPair()
        sig = Curve.calculateSignature(ident.getPrivateKey(), spk.getPublicKey().serialize())
        self.store.storeSignedPreKey(spk_id, SignedPreKeyRecord(spk_id, int(time.time() * 1000), spk, sig))
        self.store.storePreKey(pk_id, PreKeyRecord(pk_id, Curve.generateKeyPair()))
        self.sender_keys = InMemorySenderKeyStore()
        self.signed_prekey_id = spk_id
        self.prekey_id = pk_id
        return {}

    def op_bundle(self, req):
        self._require_init()
        with_prekey = bool(req.get("with_prekey", True))
        s = self.store
        spk = s.loadSignedPreKey(self.signed_prekey_id)
        out = {
            "registration_id": s.getLocalRegistrationId(),
            "device_id": DEVICE_ID,
            "identity_key": h(s.getIdentityKeyPair().getPublicKey().serialize()),
            "signed_prekey_id": self.signed_prekey_id,
            "signed_prekey": h(spk.getKeyPair().getPublicKey().serialize()),
            "signed_prekey_signature": h(spk.getSignature()),
            "prekey_id": None,
            "prekey": None,
        }
        if with_prekey:
            if not s.containsPreKey(self.prekey_id):
                raise RequestError("one-time prekey %d already consumed" % self.prekey_id)
            pk = s.loadPreKey(self.prekey_id)
            out["prekey_id"] = self.prekey_id
            out["prekey"] = h(pk.getKeyPair().getPublicKey().serialize())
        return out

    def op_process_bundle(self, req):
        self._require_init()
        peer = need(req, "peer", str)
        b = need(req, "bundle", dict)
        pk_id = b.get("prekey_id")
        pk_hex = b.get("prekey")
        prekey = None
        if pk_hex is not None:
            prekey = Curve.decodePoint(bytearray(unhex(pk_hex, "bundle.prekey")), 0)
        bundle = PreKeyBundle(
            need(b, "registration_id", int),
            b.get("device_id", DEVICE_ID),
            pk_id if prekey is not None else None,
            prekey,
            need(b, "signed_prekey_id", int),
            Curve.decodePoint(bytearray(unhex(need(b, "signed_prekey"), "bundle.signed_prekey")), 0),
            unhex(need(b, "signed_prekey_signature"), "bundle.signed_prekey_signature"),
            IdentityKey(bytearray(unhex(need(b, "identity_key"), "bundle.identity_key")), 0),
        )
        s = self.store
        SessionBuilder(s, s, s, s, peer, DEVICE_ID).processPreKeyBundle(bundle)
        return {}

    def op_encrypt(self, req):
        self._require_init()
        peer = need(req, "peer", str)
        pt = unhex(need(req, "plaintext"), "plaintext")
        if not self.store.containsSession(peer, DEVICE_ID):
            raise NoSessionException("No session for %s" % peer)
        msg = self._cipher(peer).encrypt(pt)
        return {"type": msg.getType(), "ciphertext": h(msg.serialize())}

    def op_decrypt(self, req):
        self._require_init()
        peer = need(req, "peer", str)
        typ = need(req, "type", int)
        ct = unhex(need(req, "ciphertext"), "ciphertext")
        if not ct:
            raise InvalidMessageException("empty message")
        cipher = self._cipher(peer)
        if typ == CiphertextMessage.PREKEY_TYPE:
            pt = cipher.decryptPkmsg(PreKeyWhisperMessage(serialized=ct))
        elif typ == CiphertextMessage.WHISPER_TYPE:
            pt = cipher.decryptMsg(WhisperMessage(serialized=ct))
        else:
            raise RequestError("unknown message type %r" % typ)
        return {"plaintext": h(pt)}

    def op_group_create(self, req):
        self._require_init()
        group = need(req, "group", str)
        skdm = GroupSessionBuilder(self.sender_keys).create(self._sender_key_name(group, self.name))
        return {"distribution": h(skdm.serialize())}

    def op_group_process(self, req):
        self._require_init()
        group = need(req, "group", str)
        sender = need(req, "sender", str)
        raw = unhex(need(req, "distribution"), "distribution")
        if not raw:
            raise InvalidMessageException("empty distribution message")
        skdm = SenderKeyDistributionMessage(serialized=raw)
        GroupSessionBuilder(self.sender_keys).process(self._sender_key_name(group, sender), skdm)
        return {}

    def op_group_encrypt(self, req):
        self._require_init()
        group = need(req, "group", str)
        pt = unhex(need(req, "plaintext"), "plaintext")
        ct = GroupCipher(self.sender_keys, self._sender_key_name(group, self.name)).encrypt(pt)
        return {"ciphertext": h(ct)}

    def op_group_decrypt(self, req):
        self._require_init()
        group = need(req, "group", str)
        sender = need(req, "sender", str)
        ct = unhex(need(req, "ciphertext"), "ciphertext")
        if not ct:
            raise InvalidMessageException("empty message")
        pt = GroupCipher(self.sender_keys, self._sender_key_name(group, sender)).decrypt(ct)
        return {"plaintext": h(pt)}

    def handle(self, req):
        if not isinstance(req, dict):
            raise RequestError("request must be a JSON object")
        op = req.get("op")
        fn = getattr(self, "op_%s" % op, None) if isinstance(op, str) else None
        if fn is None:
            raise RequestError("unknown op %r" % (op,))
        return fn(req)


def main():
    debug = bool(os.environ.get("AXOLOTL_PEER_DEBUG"))
    peer = Peer()
    out = sys.stdout
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        quit_after = False
        try:
            req = json.loads(line)
            if isinstance(req, dict) and req.get("op") == "quit":
                resp = {"ok": True}
                quit_after = True
            else:
                resp = {"ok": True}
                resp.update(peer.handle(req))
        except json.JSONDecodeError as e:
            resp = {"ok": False, "error": "bad_request", "detail": "invalid JSON: %s" % e}
        except RequestError as e:
            resp = {"ok": False, "error": "bad_request", "detail": str(e)}
        except Exception as e:  # protocol failure: report, keep serving
            resp = {"ok": False, "error": classify(e), "detail": "%s: %s" % (type(e).__name__, _exc_text(e))[:500]}
            if debug:
                traceback.print_exc(file=sys.stderr)
        out.write(json.dumps(resp, separators=(",", ":")) + "\n")
        out.flush()
        if quit_after:
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""An independent implementation of rpcc's `rpcc:v1` envelope (PyNaCl's libsodium
XChaCha20-Poly1305 + the standard library's HMAC), for the keyring's cross-checks.

    envelope_reference.py seal <key-b64url> <key-id> <record> <random16-hex>   (value on stdin)
    envelope_reference.py open <key-b64url> <record> <envelope>                (value on stdout)
    envelope_reference.py fernet <fernet-key>                                  (value on stdin)
"""
import base64
import hashlib
import hmac
import sys

from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64e(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def record_tag(key, record):
    sub = hmac.new(key, b"rpcc:v1 record tag", hashlib.sha256).digest()
    return hmac.new(sub, record.encode(), hashlib.sha256).digest()[:8]


def seal(key, key_id, record, random16, value):
    nonce = record_tag(key, record) + random16
    aad = f"rpcc:v1:{key_id}:{record}".encode()
    ct = crypto_aead_xchacha20poly1305_ietf_encrypt(value, aad, nonce, key)
    return f"rpcc:v1:{key_id}:{b64e(nonce + ct)}"


def open_(key, record, envelope):
    prefix, version, key_id, payload = envelope.split(":", 3)
    assert prefix == "rpcc" and version == "v1"
    raw = b64d(payload)
    aad = f"rpcc:v1:{key_id}:{record}".encode()
    return crypto_aead_xchacha20poly1305_ietf_decrypt(raw[24:], aad, raw[:24], key)


def main():
    cmd = sys.argv[1]
    if cmd == "seal":
        key, key_id, record, rnd = b64d(sys.argv[2]), sys.argv[3], sys.argv[4], bytes.fromhex(sys.argv[5])
        print(seal(key, key_id, record, rnd, sys.stdin.buffer.read()))
    elif cmd == "open":
        sys.stdout.buffer.write(open_(b64d(sys.argv[2]), sys.argv[3], sys.argv[4]))
    elif cmd == "fernet":
        from cryptography.fernet import Fernet

        print(Fernet(sys.argv[2].encode()).encrypt(sys.stdin.buffer.read()).decode())
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()

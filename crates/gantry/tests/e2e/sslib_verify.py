"""Verifies Gantry's DSSE envelopes with an independent implementation:
securesystemslib's `dsse.Envelope.verify`, given Gantry's exported public key.

usage: sslib_verify.py PUBLIC_KEY_PEM KEY_ID BUNDLE_JSON...
Prints the predicate type of each bundle verified; exits 1 at the first that is not.
"""

import json
import sys

from cryptography.hazmat.primitives.serialization import load_pem_public_key
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey


def main() -> int:
    pem_path, key_id, *bundles = sys.argv[1:]
    with open(pem_path, "rb") as handle:
        public = load_pem_public_key(handle.read())
    key = SSlibKey.from_crypto(public, keyid=key_id, scheme="ecdsa-sha2-nistp256")
    for path in bundles:
        with open(path, encoding="utf-8") as handle:
            bundle = json.load(handle)
        envelope = Envelope.from_dict(bundle["dsseEnvelope"])
        try:
            accepted = envelope.verify([key], 1)
        except Exception as error:  # noqa: BLE001 - report any refusal
            print(f"{path}: refused: {error}")
            return 1
        if key_id not in accepted:
            print(f"{path}: not verified by {key_id}")
            return 1
        statement = json.loads(envelope.pae().split(b" ", 4)[4])
        print(statement["predicateType"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

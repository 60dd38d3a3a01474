#!/usr/bin/env python3
"""Test tool: make a captured asx-rs AS4 request look like a sender that signs wsu:Timestamp.

It adds a `ds:Reference URI="#<timestamp id>"` (exclusive C14N, SHA-256) to the SignedInfo and
re-signs the SignedInfo with the sender's signing key (ECDSA-SHA256, XMLDSig 1.1 r||s). Every
other byte of the message stays as it was, so the attachment digest, the encryption and the
Timestamp itself are untouched. It is tailored to asx-rs's output (`ds:` prefix, one Signature,
one wsu:Timestamp): it is a fixture maker for tests/as4_oracle.rs, not a general signer.

Usage: sign_timestamp.py BODY CONTENT_TYPE_FILE SIGNING_KEY_PEM OUT_BODY
"""

from __future__ import annotations

import base64
import hashlib
import re
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from lxml import etree

sys.path.insert(0, str(Path(__file__).parent))
import oracle  # noqa: E402  (the MIME and C14N helpers; the oracle itself verifies the result)


def main() -> int:
    body_path, ctype_path, key_path, out_path = sys.argv[1:5]
    body = Path(body_path).read_bytes()
    content_type = Path(ctype_path).read_text().strip()
    key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)

    root_xml, _ = oracle.split_message(body, content_type, oracle.Report(), "request")
    tree = oracle.parse_xml(root_xml, "root")
    ts = tree.getroot().find("S12:Header/wsse:Security/wsu:Timestamp", oracle.NS)
    ts_id = oracle.id_of(ts)
    digest = base64.b64encode(hashlib.sha256(oracle.exc_c14n(ts, [])).digest()).decode()
    reference = (
        f'<ds:Reference URI="#{ts_id}"><ds:Transforms>'
        f'<ds:Transform Algorithm="{oracle.ALG_EXC_C14N}"></ds:Transform></ds:Transforms>'
        f'<ds:DigestMethod Algorithm="{oracle.ALG_SHA256}"></ds:DigestMethod>'
        f"<ds:DigestValue>{digest}</ds:DigestValue></ds:Reference>"
    ).encode()
    assert root_xml.count(b"</ds:SignedInfo>") == 1
    new_xml = root_xml.replace(b"</ds:SignedInfo>", reference + b"</ds:SignedInfo>")

    tree = oracle.parse_xml(new_xml, "root")
    signed_info = tree.getroot().find(".//ds:Signature/ds:SignedInfo", oracle.NS)
    der = key.sign(oracle.exc_c14n(signed_info, []), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    width = (key.curve.key_size + 7) // 8
    value = base64.b64encode(r.to_bytes(width, "big") + s.to_bytes(width, "big"))
    new_xml, n = re.subn(rb"<ds:SignatureValue>[^<]*</ds:SignatureValue>",
                         b"<ds:SignatureValue>" + value + b"</ds:SignatureValue>", new_xml)
    assert n == 1
    assert body.count(root_xml) == 1
    Path(out_path).write_bytes(body.replace(root_xml, new_xml))
    return 0


if __name__ == "__main__":
    sys.exit(main())

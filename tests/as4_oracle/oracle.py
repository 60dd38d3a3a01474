#!/usr/bin/env python3
"""An independent check of one BDEW AS4 exchange as it went over the wire.

It reads the HTTP request body of an AS4 user message (and optionally the HTTP response body,
the receipt), and checks them without asx-rs:

* MIME: `multipart/related` (a leading CRLF before the first boundary is accepted), the SOAP 1.2
  root part and the attachment parts by Content-ID.
* The ebMS3 header against the BDEW AS4 profile; every deviation is reported by a stable code.
* WS-Security signature: signer certificate from the BinarySecurityToken (X509PKIPathv1), every
  `ds:Reference` digest recomputed, the canonical SignedInfo verified (ECDSA-SHA256, XMLDSig 1.1
  raw r||s).
* XML Encryption 1.1 on the SwA attachments: ECDH-ES on the originator's ECKeyValue, ConcatKDF
  (SHA-256), AES key wrap (RFC 3394), AES-128-GCM, then gunzip.
* The receipt: its own signature, `eb:RefToMessageId`, and its `ebbp:NonRepudiationInformation`
  digests against the user message's references.

Which library checks what, and why:

* Exclusive C14N (SignedInfo and `#id` references): lxml, i.e. libxml2's C14N implementation.
  python-xmlsec cannot process the signature as a whole: it has no implementation of the SwA
  profile's `Attachment-Content-Signature-Transform`, and libxmlsec1 refuses a Reference whose
  transform it does not know, so a full `SignatureContext.verify` of an AS4 message is impossible.
* Digests: hashlib over those octets; `cid:` references over the attachment content per SwA 1.1
  section 5.4.2 (Attachment-Content-Signature-Transform: the content octets after transfer
  decoding; MIME content canonicalisation is a no-op for non-text, non-XML types).
* The signature value: checked twice over the same canonical SignedInfo, once by python-xmlsec
  (`SignatureContext.verify_binary`, libxmlsec1's ecdsa-sha256 transform with its own XMLDSig 1.1
  r||s decoding, key loaded from the BST certificate) and once by `cryptography` (r||s converted
  to DER here). Both must accept.
* Decryption: `cryptography` only (ECDH, AES key unwrap, AES-GCM); the ConcatKDF is a few lines
  of hashlib written here from NIST SP 800-56A section 5.8.1 and XML Encryption 1.1 section 5.4.1.
  python-xmlsec is not used here: libxmlsec1 1.3.9 cannot map the brainpool NamedCurve of a
  `dsig11:ECKeyValue` (xmlSecOpenSSLKeyDataEcGetNameFromOid), and has no SwA CipherReference
  transform either.

Exit codes: 0 everything verified and no profile deviation other than those passed with
--allow-deviation; 1 a verification step failed (signature, digest, decryption, receipt);
2 only profile deviations; 64 bad usage or unreadable input files.

The JSON report goes to stdout; a one-line reason per failure goes to stderr.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import re
import sys
import urllib.parse
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap
from lxml import etree

try:  # python-xmlsec is the second signature-value check; its absence is an error, not a skip.
    import xmlsec
except ImportError:  # pragma: no cover - reported in the run
    xmlsec = None

# --- namespaces and algorithm identifiers -------------------------------------------------------

S12 = "http://www.w3.org/2003/05/soap-envelope"
EB = "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/"
EBBP = "http://docs.oasis-open.org/ebxml-bp/ebbp-signals-2.0"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DS = "http://www.w3.org/2000/09/xmldsig#"
DSIG11 = "http://www.w3.org/2009/xmldsig11#"
XENC = "http://www.w3.org/2001/04/xmlenc#"
XENC11 = "http://www.w3.org/2009/xmlenc11#"
EC14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
NS = {"S12": S12, "eb": EB, "ebbp": EBBP, "wsse": WSSE, "wsu": WSU, "ds": DS,
      "dsig11": DSIG11, "xenc": XENC, "xenc11": XENC11, "ec": EC14N}

ALG_EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ALG_ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
ALG_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
ALG_KW_AES128 = "http://www.w3.org/2001/04/xmlenc#kw-aes128"
ALG_AES128_GCM = "http://www.w3.org/2009/xmlenc11#aes128-gcm"
ALG_ECDH_ES = "http://www.w3.org/2009/xmlenc11#ECDH-ES"
ALG_CONCAT_KDF = "http://www.w3.org/2009/xmlenc11#ConcatKDF"
SWA = "http://docs.oasis-open.org/wss/oasis-wss-SwAProfile-1.1"
SWA_CONTENT_SIG = SWA + "#Attachment-Content-Signature-Transform"
SWA_COMPLETE_SIG = SWA + "#Attachment-Complete-Signature-Transform"
SWA_CONTENT_ONLY = SWA + "#Attachment-Content-Only"
SWA_CIPHERTEXT = SWA + "#Attachment-Ciphertext-Transform"
X509_PKIPATH = ("http://docs.oasis-open.org/wss/2004/01/"
                "oasis-200401-wss-x509-token-profile-1.0#X509PKIPathv1")
X509_SKI = ("http://docs.oasis-open.org/wss/2004/01/"
            "oasis-200401-wss-x509-token-profile-1.0#X509SubjectKeyIdentifier")

# XML Encryption 1.1 section 5.4.2 / RFC 5639: NamedCurve URIs of the curves we accept.
CURVES = {
    "urn:oid:1.3.36.3.3.2.8.1.1.7": ec.BrainpoolP256R1,
    "urn:oid:1.2.840.10045.3.1.7": ec.SECP256R1,
}
# Raw r||s width of an XMLDSig 1.1 ECDSA signature value per curve (XMLDSig 1.1 section 6.4.3).
SIG_WIDTH = {"brainpoolP256r1": 64, "secp256r1": 64}

# --- the BDEW profile values (transport.md section 1.2) -----------------------------------------

BDEW_AGREEMENT = "https://www.bdew.de/as4/communication/agreement"
BDEW_SERVICES = {
    "https://www.bdew.de/as4/communication/services/" + s
    for s in ("MP", "FP", "RD", "KW", "SO", "pathSwitch")
}
EBMS_TEST_SERVICE = "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/service"
AS4_ACTION = "http://docs.oasis-open.org/ebxml-msg/as4/200902/action"
BDEW_ACTIONS = {
    AS4_ACTION,
    "https://www.bdew.de/as4/communication/actions/requestSwitch",
    "https://www.bdew.de/as4/communication/actions/confirmSwitch",
    "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/test",
}
PARTY_TYPES = {
    "urn:oasis:names:tc:ebcore:partyid-type:iso6523:0088",
    "urn:oasis:names:tc:ebcore:partyid-type:unregistered:BDEW",
    "urn:oasis:names:tc:ebcore:partyid-type:unregistered:DVGW",
    "urn:oasis:names:tc:ebcore:partyid-type:unregistered:BAHN",
}
ROLE_INITIATOR = "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/initiator"
ROLE_RESPONDER = "http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/responder"

# A decompressed payload larger than this is refused (compression bombs, phase4 issue #318).
MAX_PAYLOAD_BYTES = 256 * 1024 * 1024

EXIT_OK, EXIT_VERIFY, EXIT_PROFILE, EXIT_USAGE = 0, 1, 2, 64


class Failure(Exception):
    """A verification step failed; `step` names it in the report."""

    def __init__(self, step: str, message: str):
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message


@dataclass
class Report:
    errors: list = field(default_factory=list)
    deviations: list = field(default_factory=list)

    def fail(self, step: str, message: str) -> None:
        self.errors.append({"step": step, "message": message})

    def deviate(self, code: str, detail: str) -> None:
        self.deviations.append({"code": code, "detail": detail})


# --- MIME ---------------------------------------------------------------------------------------


@dataclass
class Part:
    headers: dict  # lower-case name -> value
    body: bytes  # after Content-Transfer-Encoding decoding

    @property
    def content_id(self) -> str | None:
        value = self.headers.get("content-id")
        return value.strip().strip("<>") if value else None

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "text/plain")


def parse_content_type(value: str) -> tuple[str, dict]:
    """`type/subtype; a=b; c="d"` -> ("type/subtype", {"a": "b", "c": "d"}), names lower-case."""
    media, _, rest = value.partition(";")
    params = {}
    for m in re.finditer(r';?\s*([A-Za-z0-9!#$%&\'*+.^_`|~-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)',
                         ";" + rest):
        v = m.group(2)
        if v.startswith('"'):
            v = re.sub(r"\\(.)", r"\1", v[1:-1])
        params[m.group(1).lower()] = v
    return media.strip().lower(), params


def parse_headers(block: bytes) -> dict:
    headers: dict = {}
    text = block.decode("latin-1")
    text = re.sub(r"\r\n[ \t]+", " ", text)  # unfold
    for line in text.split("\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise Failure("mime", f"malformed header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


def decode_transfer(headers: dict, body: bytes) -> bytes:
    cte = headers.get("content-transfer-encoding", "binary").strip().lower()
    if cte in ("binary", "8bit", "7bit"):
        return body
    if cte == "base64":
        return base64.b64decode(body)
    raise Failure("mime", f"unsupported Content-Transfer-Encoding {cte!r}")


def parse_multipart(body: bytes, content_type: str) -> tuple[list[Part], dict]:
    media, params = parse_content_type(content_type)
    if media != "multipart/related":
        raise Failure("mime", f"Content-Type is {media!r}, expected multipart/related")
    boundary = params.get("boundary")
    if not boundary:
        raise Failure("mime", "multipart/related without a boundary parameter")
    delim = b"--" + boundary.encode("latin-1")
    # RFC 2046 section 5.1.1: a preamble may precede the first delimiter; Jakarta Mail (phase4)
    # sends a bare CRLF there. The first delimiter is at the start or after a CRLF.
    if body.startswith(delim):
        pos = 0
    else:
        pos = body.find(b"\r\n" + delim)
        if pos < 0:
            raise Failure("mime", "first boundary delimiter not found")
        pos += 2
    parts = []
    pos += len(delim)
    while True:
        if body[pos:pos + 2] == b"--":
            break  # close delimiter
        eol = body.find(b"\r\n", pos)
        if eol < 0 or body[pos:eol].strip(b" \t"):
            raise Failure("mime", f"garbage after boundary delimiter at byte {pos}")
        start = eol + 2
        nxt = body.find(b"\r\n" + delim, start)
        if nxt < 0:
            raise Failure("mime", f"part starting at byte {start} is not terminated")
        raw = body[start:nxt]
        head_end = raw.find(b"\r\n\r\n")
        if raw.startswith(b"\r\n"):
            headers, content = {}, raw[2:]
        elif head_end < 0:
            raise Failure("mime", f"part at byte {start} has no header/body separator")
        else:
            headers, content = parse_headers(raw[:head_end]), raw[head_end + 4:]
        parts.append(Part(headers, decode_transfer(headers, content)))
        pos = nxt + 2 + len(delim)
    if not parts:
        raise Failure("mime", "no MIME parts")
    return parts, params


def split_message(body: bytes, content_type: str, report: Report, label: str):
    """(root XML bytes, {content-id: Part}) of a multipart/related or plain SOAP body."""
    media, _ = parse_content_type(content_type)
    if media == "application/soap+xml":
        if label == "request":
            report.deviate("not-mime", "the request is plain SOAP, the profile wants SwA MIME")
        return body, {}
    parts, params = parse_multipart(body, content_type)
    root = parts[0]
    start = params.get("start")
    if start:
        wanted = start.strip().strip("<>")
        found = [p for p in parts if p.content_id == wanted]
        if len(found) != 1:
            raise Failure("mime", f"start={start!r} names no single part")
        root = found[0]
    if label == "request":
        if params.get("type", "").lower() != "application/soap+xml":
            report.deviate("mime-type-param",
                           f"multipart type parameter is {params.get('type')!r}")
        if not parse_content_type(root.content_type)[0] == "application/soap+xml":
            report.deviate("root-not-soap12", f"root part is {root.content_type!r}")
    attachments = {}
    for p in parts:
        if p is root:
            continue
        cid = p.content_id
        if not cid:
            raise Failure("mime", "attachment part without Content-ID")
        if cid in attachments:
            raise Failure("mime", f"duplicate Content-ID <{cid}>")
        attachments[cid] = p
    return root.body, attachments


# --- XML helpers --------------------------------------------------------------------------------


def parse_xml(data: bytes, what: str) -> etree._ElementTree:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False,
                             huge_tree=False, load_dtd=False)
    try:
        return etree.fromstring(data, parser).getroottree()
    except etree.XMLSyntaxError as e:
        raise Failure("xml", f"{what} is not well-formed XML: {e}") from e


def one(node, path: str, step: str):
    found = node.findall(path, NS)
    if len(found) != 1:
        raise Failure(step, f"expected exactly one {path}, found {len(found)}")
    return found[0]


def text(node) -> str:
    return (node.text or "").strip() if node is not None else ""


def id_of(el) -> str | None:
    for name in (f"{{{WSU}}}Id", "Id", "ID", "{http://www.w3.org/XML/1998/namespace}id"):
        v = el.get(name)
        if v is not None:
            return v
    return None


def element_by_id(tree, ident: str, step: str):
    found = [el for el in tree.iter() if isinstance(el.tag, str) and id_of(el) == ident]
    if len(found) != 1:
        # Two elements with one id is the signature-wrapping pattern: refuse, never pick one.
        raise Failure(step, f"id {ident!r} names {len(found)} elements, expected exactly one")
    return found[0]


def exc_c14n(el, prefixes: list[str]) -> bytes:
    return etree.tostring(el, method="c14n", exclusive=True, with_comments=False,
                          inclusive_ns_prefixes=prefixes or None)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(s: str, step: str) -> bytes:
    try:
        return base64.b64decode("".join(s.split()), validate=True)
    except binascii.Error as e:
        raise Failure(step, f"invalid base64: {e}") from e


# --- certificates -------------------------------------------------------------------------------


def der_sequence_items(data: bytes) -> list[bytes]:
    """The encoded elements of a DER SEQUENCE (enough DER for a PkiPath)."""

    def read_len(buf: bytes, i: int) -> tuple[int, int]:
        first = buf[i]
        if first < 0x80:
            return first, i + 1
        n = first & 0x7F
        if n == 0 or n > 4:
            raise Failure("bst", "unsupported DER length")
        return int.from_bytes(buf[i + 1:i + 1 + n], "big"), i + 1 + n

    if not data or data[0] != 0x30:
        raise Failure("bst", "X509PKIPathv1 token is not a DER SEQUENCE")
    length, i = read_len(data, 1)
    if i + length != len(data):
        raise Failure("bst", "X509PKIPathv1 token has trailing or missing bytes")
    items = []
    while i < len(data):
        start = i
        if data[i] != 0x30:
            raise Failure("bst", "PkiPath element is not a SEQUENCE (Certificate)")
        ln, j = read_len(data, i + 1)
        i = j + ln
        items.append(data[start:i])
    return items


def signer_from_bst(security, token_id: str | None, report: Report, label: str):
    bsts = security.findall("wsse:BinarySecurityToken", NS)
    if token_id is not None:
        bsts = [b for b in bsts if id_of(b) == token_id]
    if len(bsts) != 1:
        raise Failure("bst", f"the signature's token reference names {len(bsts)} tokens")
    bst = bsts[0]
    value_type = bst.get("ValueType", "")
    raw = unb64(text(bst), "bst")
    if value_type == X509_PKIPATH:
        # PkiPath (X.509 token profile 1.1 section 3.1): SEQUENCE OF Certificate, trust-anchor
        # side first, the end entity last.
        certs = [x509.load_der_x509_certificate(c) for c in der_sequence_items(raw)]
        if not certs:
            raise Failure("bst", "empty PkiPath")
    elif value_type.endswith("#X509v3"):
        report.deviate(f"{label}-bst-not-pkipath", f"BinarySecurityToken ValueType {value_type}")
        certs = [x509.load_der_x509_certificate(raw)]
    else:
        raise Failure("bst", f"unsupported BinarySecurityToken ValueType {value_type!r}")
    return certs[-1], certs


def subject_ou(cert) -> list[str]:
    return [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATIONAL_UNIT_NAME)]


def ski_of(cert) -> bytes:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


# --- signature ----------------------------------------------------------------------------------


def transforms_of(ref) -> list[tuple[str, list[str]]]:
    out = []
    for t in ref.findall("ds:Transforms/ds:Transform", NS):
        prefixes = []
        inc = t.find("ec:InclusiveNamespaces", NS)
        if inc is not None:
            prefixes = inc.get("PrefixList", "").split()
        out.append((t.get("Algorithm", ""), prefixes))
    return out


def verify_signature(tree, security, attachment_content, report: Report, label: str) -> dict:
    """Verify the one ds:Signature in `security`. `attachment_content(cid)` returns the octets a
    `cid:` reference was signed over (or raises Failure). Returns the signature section of the
    report; failures are added to `report`."""
    out: dict = {"signature": "invalid", "references": []}
    sigs = security.findall("ds:Signature", NS)
    if len(sigs) != 1:
        raise Failure(f"{label}.signature", f"expected one ds:Signature in wsse:Security, found {len(sigs)}")
    sig = sigs[0]
    signed_info = one(sig, "ds:SignedInfo", f"{label}.signature")
    c14n_alg = one(signed_info, "ds:CanonicalizationMethod", f"{label}.signature").get("Algorithm")
    sig_alg = one(signed_info, "ds:SignatureMethod", f"{label}.signature").get("Algorithm")
    out["c14n"], out["signature_method"] = c14n_alg, sig_alg
    if c14n_alg != ALG_EXC_C14N:
        raise Failure(f"{label}.signature", f"CanonicalizationMethod {c14n_alg!r} is not exclusive C14N")
    if sig_alg != ALG_ECDSA_SHA256:
        raise Failure(f"{label}.signature", f"SignatureMethod {sig_alg!r} is not ecdsa-sha256")

    # Token: KeyInfo/SecurityTokenReference/Reference URI="#bst" (BST_DIRECT_REFERENCE).
    str_ref = sig.find("ds:KeyInfo/wsse:SecurityTokenReference/wsse:Reference", NS)
    token_id = None
    if str_ref is not None and str_ref.get("URI", "").startswith("#"):
        token_id = str_ref.get("URI")[1:]
    else:
        report.deviate(f"{label}-token-not-direct-reference",
                       "the signature's KeyInfo is not a direct reference to the BST")
    signer, chain = signer_from_bst(security, token_id, report, label)
    out["signer_subject"] = signer.subject.rfc4514_string()
    out["signer_ou"] = subject_ou(signer)
    out["signer_chain_length"] = len(chain)
    out["signer"] = signer

    covered = []
    for ref in signed_info.findall("ds:Reference", NS):
        uri = ref.get("URI", "")
        entry = {"uri": uri, "transforms": [t for t, _ in transforms_of(ref)],
                 "digest_method": one(ref, "ds:DigestMethod", f"{label}.reference {uri}").get("Algorithm"),
                 "digest_value": text(one(ref, "ds:DigestValue", f"{label}.reference {uri}"))}
        out["references"].append(entry)
        step = f"{label}.reference {uri}"
        try:
            if entry["digest_method"] != ALG_SHA256:
                raise Failure(step, f"DigestMethod {entry['digest_method']!r} is not SHA-256")
            transforms = transforms_of(ref)
            if uri.startswith("#"):
                target = element_by_id(tree, uri[1:], step)
                if [t for t, _ in transforms] != [ALG_EXC_C14N]:
                    raise Failure(step, f"unsupported transforms {[t for t, _ in transforms]}")
                covered.append(target)
                entry["covers"] = etree.QName(target).localname
                octets = exc_c14n(target, transforms[0][1])
            elif uri.startswith("cid:"):
                algs = [t for t, _ in transforms]
                if algs != [SWA_CONTENT_SIG]:
                    raise Failure(step, f"unsupported transforms {algs} (only {SWA_CONTENT_SIG})")
                cid = urllib.parse.unquote(uri[4:])
                covered.append(cid)
                entry["covers"] = "attachment"
                octets = attachment_content(cid, step)
            else:
                raise Failure(step, "only same-document #id and cid: references are allowed")
            computed = b64(hashlib.sha256(octets).digest())
            entry["digest_computed"] = computed
            entry["digest_ok"] = computed == entry["digest_value"]
            if not entry["digest_ok"]:
                raise Failure(step, f"digest mismatch: signed {entry['digest_value']}, "
                                    f"recomputed {computed}")
        except Failure as f:
            entry["digest_ok"] = False
            report.fail(f.step, f.message)
    out["covered"] = covered

    # The signature value over the canonical SignedInfo.
    prefixes = []
    inc = one(signed_info, "ds:CanonicalizationMethod", label).find("ec:InclusiveNamespaces", NS)
    if inc is not None:
        prefixes = inc.get("PrefixList", "").split()
    canonical = exc_c14n(signed_info, prefixes)
    value = unb64(text(one(sig, "ds:SignatureValue", f"{label}.signature")), f"{label}.signature")
    pub = signer.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey):
        raise Failure(f"{label}.signature", "signer key is not an EC key")
    out["signer_curve"] = pub.curve.name
    width = SIG_WIDTH.get(pub.curve.name)
    out["signature_value_bytes"] = len(value)
    step = f"{label}.signature-value"
    if width is None or len(value) != width:
        report.fail(step, f"SignatureValue is {len(value)} bytes, XMLDSig 1.1 r||s on "
                          f"{pub.curve.name} is {width}")
        return out
    half = width // 2
    der = encode_dss_signature(int.from_bytes(value[:half], "big"),
                               int.from_bytes(value[half:], "big"))
    ok_crypto = True
    try:
        pub.verify(der, canonical, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        ok_crypto = False
        report.fail(step, "cryptography: ECDSA-SHA256 over the canonical SignedInfo does not verify")
    ok_xmlsec = False
    if xmlsec is None:
        report.fail(step, "python-xmlsec is not installed (pip install -r requirements.txt)")
    else:
        try:
            ctx = xmlsec.SignatureContext()
            ctx.key = xmlsec.Key.from_memory(signer.public_bytes(serialization.Encoding.PEM),
                                             xmlsec.constants.KeyDataFormatCertPem)
            ctx.verify_binary(canonical, xmlsec.constants.TransformEcdsaSha256, value)
            ok_xmlsec = True
        except xmlsec.Error as e:
            report.fail(step, f"python-xmlsec: signature value does not verify ({e})")
    out["checked_by"] = {"cryptography": ok_crypto, "xmlsec": ok_xmlsec}
    if ok_crypto and ok_xmlsec and all(r.get("digest_ok") for r in out["references"]):
        out["signature"] = "valid"
    return out


# --- decryption ---------------------------------------------------------------------------------


def kdf_bits(attr: str | None, name: str, step: str) -> bytes:
    """A ConcatKDFParams hexBinary attribute as bytes. XML Encryption 1.1 section 5.4.1: the value
    is a bit string whose first octet counts the padding bits of the last octet; only whole
    octets (padding 00) are meaningful for OtherInfo, and that first octet is not part of it. An
    absent or empty attribute is the empty string."""
    if not attr:
        return b""
    try:
        raw = bytes.fromhex(attr)
    except ValueError as e:
        raise Failure(step, f"ConcatKDFParams/@{name} is not hex") from e
    if raw[0] != 0:
        raise Failure(step, f"ConcatKDFParams/@{name} has {raw[0]} padding bits; only 0 is supported")
    return raw[1:]


def concat_kdf_sha256(z: bytes, other_info: bytes, key_bytes: int) -> bytes:
    """NIST SP 800-56A section 5.8.1: K = H(counter || Z || OtherInfo) for counter = 1, 2, ..."""
    out = b""
    counter = 1
    while len(out) < key_bytes:
        out += hashlib.sha256(counter.to_bytes(4, "big") + z + other_info).digest()
        counter += 1
    return out[:key_bytes]


def unwrap_encrypted_key(ek, recipient_key, recipient_cert, out: dict, report: Report) -> bytes:
    step = "decrypt.encrypted-key"
    method = one(ek, "xenc:EncryptionMethod", step).get("Algorithm")
    out["key_wrap"] = method
    if method != ALG_KW_AES128:
        raise Failure(step, f"EncryptedKey method {method!r} is not kw-aes128")
    agreement = one(ek, "ds:KeyInfo/xenc:AgreementMethod", step)
    out["key_agreement"] = agreement.get("Algorithm")
    if agreement.get("Algorithm") != ALG_ECDH_ES:
        raise Failure(step, f"AgreementMethod {agreement.get('Algorithm')!r} is not ECDH-ES")
    kdm = one(agreement, "xenc11:KeyDerivationMethod", step)
    out["key_derivation"] = kdm.get("Algorithm")
    if kdm.get("Algorithm") != ALG_CONCAT_KDF:
        raise Failure(step, f"KeyDerivationMethod {kdm.get('Algorithm')!r} is not ConcatKDF")
    params = one(kdm, "xenc11:ConcatKDFParams", step)
    digest = one(params, "ds:DigestMethod", step).get("Algorithm")
    if digest != ALG_SHA256:
        raise Failure(step, f"ConcatKDF digest {digest!r} is not SHA-256")
    names = ("AlgorithmID", "PartyUInfo", "PartyVInfo", "SuppPubInfo", "SuppPrivInfo")
    other_info = b"".join(kdf_bits(params.get(n), n, step) for n in names)
    # BDEW AS4-Profil 1.1 section 2.2.6.2.2: AlgorithmID, PartyUInfo and PartyVInfo are empty.
    filled = [n for n in names[:3] if params.get(n)]
    if filled:
        report.deviate("concat-kdf-params-not-empty", f"ConcatKDFParams {filled} are not empty")

    eckv = one(agreement, "xenc:OriginatorKeyInfo/ds:KeyValue/dsig11:ECKeyValue", step)
    curve_uri = one(eckv, "dsig11:NamedCurve", step).get("URI", "")
    out["originator_curve"] = curve_uri
    curve = CURVES.get(curve_uri)
    if curve is None:
        raise Failure(step, f"unsupported NamedCurve {curve_uri!r}")
    point = unb64(text(one(eckv, "dsig11:PublicKey", step)), step)
    try:
        ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(curve(), point)
    except ValueError as e:
        raise Failure(step, f"originator public key is not a point on {curve.name}: {e}") from e
    if recipient_key.curve.name != curve.name:
        raise Failure(step, f"recipient key is on {recipient_key.curve.name}, originator on {curve.name}")

    # Recipient identification: wsse:KeyIdentifier (X509SubjectKeyIdentifier) or ds:X509SKI.
    rki = one(agreement, "xenc:RecipientKeyInfo", step)
    ski = None
    kid = rki.find("wsse:SecurityTokenReference/wsse:KeyIdentifier", NS)
    if kid is not None and kid.get("ValueType") == X509_SKI:
        ski = unb64(text(kid), step)
    elif rki.find("ds:X509Data/ds:X509SKI", NS) is not None:
        ski = unb64(text(rki.find("ds:X509Data/ds:X509SKI", NS)), step)
    out["recipient_ski"] = ski.hex() if ski else None
    if recipient_cert is not None:
        mine = ski_of(recipient_cert)
        out["recipient_ski_matches"] = ski == mine
        if ski != mine:
            raise Failure(step, f"RecipientKeyInfo SKI {ski.hex() if ski else None} is not the "
                                f"given certificate's {mine.hex()}")

    z = recipient_key.exchange(ec.ECDH(), ephemeral)
    kek = concat_kdf_sha256(z, other_info, 16)
    wrapped = unb64(text(one(ek, "xenc:CipherData/xenc:CipherValue", step)), step)
    try:
        return aes_key_unwrap(kek, wrapped)
    except InvalidUnwrap as e:
        raise Failure(step, "AES key unwrap failed (wrong recipient key or KDF input)") from e


def decrypt_attachments(tree, security, attachments, recipient_key, recipient_cert,
                        report: Report) -> tuple[dict, dict]:
    """Decrypt every attachment an EncryptedKey's ReferenceList names. Returns
    ({cid: plaintext Part}, encryption report section)."""
    out: dict = {"encrypted_parts": [], "encrypted_content_ids": []}
    plain: dict = {}
    eks = security.findall("xenc:EncryptedKey", NS)
    out["encrypted_keys"] = len(eks)
    if not eks:
        return plain, out
    for ek in eks:
        try:
            cek = unwrap_encrypted_key(ek, recipient_key, recipient_cert, out, report)
        except Failure as f:
            report.fail(f.step, f.message)
            continue
        for dref in ek.findall("xenc:ReferenceList/xenc:DataReference", NS):
            uri = dref.get("URI", "")
            step = f"decrypt {uri}"
            try:
                if not uri.startswith("#"):
                    raise Failure(step, "DataReference is not a same-document reference")
                ed = element_by_id(tree, uri[1:], step)
                if ed.tag != f"{{{XENC}}}EncryptedData":
                    raise Failure(step, "DataReference does not name an xenc:EncryptedData")
                alg = one(ed, "xenc:EncryptionMethod", step).get("Algorithm")
                if alg != ALG_AES128_GCM:
                    raise Failure(step, f"EncryptionMethod {alg!r} is not aes128-gcm")
                cref = one(ed, "xenc:CipherData/xenc:CipherReference", step)
                curi = cref.get("URI", "")
                algs = [t.get("Algorithm") for t in cref.findall("xenc:Transforms/ds:Transform", NS)]
                if not curi.startswith("cid:") or algs != [SWA_CIPHERTEXT]:
                    raise Failure(step, f"CipherReference {curi!r} with transforms {algs} is not "
                                        "an SwA attachment ciphertext")
                cid = urllib.parse.unquote(curi[4:])
                out["encrypted_content_ids"].append(cid)
                step = f"decrypt cid:{cid}"
                part = attachments.get(cid)
                if part is None:
                    raise Failure(step, "no MIME part has this Content-ID")
                blob = part.body
                if len(blob) < 12 + 16:
                    raise Failure(step, "ciphertext shorter than IV and tag")
                try:
                    clear = AESGCM(cek).decrypt(blob[:12], blob[12:], None)
                except InvalidTag as e:
                    raise Failure(step, "AES-128-GCM authentication failed: the attachment "
                                        "ciphertext or its tag was altered") from e
                etype = ed.get("Type")
                if etype == SWA_CONTENT_ONLY:
                    headers = dict(part.headers)
                    if ed.get("MimeType"):
                        headers["content-type"] = ed.get("MimeType")
                    plain[cid] = Part(headers, clear)
                else:
                    raise Failure(step, f"EncryptedData Type {etype!r} is not Attachment-Content-Only")
                out["encrypted_parts"].append({"content_id": cid, "mime_type": ed.get("MimeType"),
                                               "ciphertext_size": len(blob)})
            except Failure as f:
                report.fail(f.step, f.message)
    return plain, out


def gunzip(data: bytes, step: str) -> bytes:
    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, MAX_PAYLOAD_BYTES + 1)
    except zlib.error as e:
        raise Failure(step, f"not gzip data: {e}") from e
    if len(out) > MAX_PAYLOAD_BYTES:
        raise Failure(step, f"payload decompresses to more than {MAX_PAYLOAD_BYTES} bytes")
    if not d.eof or d.unused_data:
        raise Failure(step, "gzip stream is truncated or has trailing data")
    return out


# --- ebMS profile checks ------------------------------------------------------------------------


def check_party(party, role_uri: str, side: str, report: Report) -> str | None:
    if party is None:
        report.deviate(f"{side}-missing", f"eb:{side} is missing")
        return None
    ids = party.findall("eb:PartyId", NS)
    if len(ids) != 1:
        report.deviate(f"{side}-partyid-count", f"eb:{side} has {len(ids)} PartyId, the profile wants one")
    value = None
    for pid in ids[:1]:
        value = text(pid)
        ptype = pid.get("type")
        if ptype not in PARTY_TYPES:
            report.deviate(f"{side}-partyid-type", f"eb:{side}/PartyId/@type is {ptype!r}")
        if not re.fullmatch(r"\d{13}", value):
            report.deviate(f"{side}-partyid-value", f"eb:{side}/PartyId {value!r} is not a 13-digit MP-ID")
    role = text(party.find("eb:Role", NS))
    if role != role_uri:
        report.deviate(f"{side}-role", f"eb:{side}/Role is {role!r}, expected {role_uri}")
    return value


def check_user_message(envelope, attachments, report: Report) -> dict:
    out: dict = {}
    header = envelope.find("S12:Header", NS)
    body = envelope.find("S12:Body", NS)
    if header is None or body is None:
        raise Failure("ebms", "SOAP 1.2 Envelope without Header or Body")
    messaging = one(header, "eb:Messaging", "ebms")
    if messaging.get(f"{{{S12}}}mustUnderstand") not in ("true", "1"):
        report.deviate("messaging-must-understand", "eb:Messaging is not mustUnderstand")
    ums = messaging.findall("eb:UserMessage", NS)
    if len(ums) != 1:
        raise Failure("ebms", f"expected one eb:UserMessage, found {len(ums)}")
    um = ums[0]
    info = one(um, "eb:MessageInfo", "ebms")
    out["message_id"] = text(info.find("eb:MessageId", NS))
    if not out["message_id"]:
        report.deviate("message-id-missing", "eb:MessageInfo/MessageId is empty")
    if info.find("eb:RefToMessageId", NS) is not None:
        report.deviate("ref-to-message-id", "a UserMessage must not carry RefToMessageId")
    if info.find("eb:Timestamp", NS) is None:
        report.deviate("ebms-timestamp-missing", "eb:MessageInfo/Timestamp is missing")
    out["from"] = check_party(um.find("eb:PartyInfo/eb:From", NS), ROLE_INITIATOR, "From", report)
    out["to"] = check_party(um.find("eb:PartyInfo/eb:To", NS), ROLE_RESPONDER, "To", report)

    collab = one(um, "eb:CollaborationInfo", "ebms")
    agreement = collab.find("eb:AgreementRef", NS)
    if agreement is None or text(agreement) != BDEW_AGREEMENT:
        report.deviate("agreement-ref", f"AgreementRef is {text(agreement)!r}, expected {BDEW_AGREEMENT}")
    elif agreement.get("pmode") is not None or agreement.get("type") is not None:
        report.deviate("agreement-ref-attributes", "AgreementRef carries a pmode or type attribute")
    out["service"] = text(collab.find("eb:Service", NS))
    out["action"] = text(collab.find("eb:Action", NS))
    if out["service"] not in BDEW_SERVICES | {EBMS_TEST_SERVICE}:
        report.deviate("service", f"Service {out['service']!r} is not a BDEW service")
    if out["action"] not in BDEW_ACTIONS:
        report.deviate("action", f"Action {out['action']!r} is not a BDEW action")
    elif out["service"].endswith("/services/MP") and out["action"] != AS4_ACTION:
        report.deviate("action", f"Action {out['action']!r} for the MP service")
    conv = collab.find("eb:ConversationId", NS)
    if conv is None:
        report.deviate("conversation-id-missing", "eb:ConversationId is missing")
    elif (conv.text or "") != "":
        report.deviate("conversation-id-not-empty", f"ConversationId is {conv.text!r}, BDEW wants it empty")

    parts_out = []
    seen = set()
    for pi in um.findall("eb:PayloadInfo/eb:PartInfo", NS):
        href = pi.get("href", "")
        props = {p.get("name"): text(p) for p in pi.findall("eb:PartProperties/eb:Property", NS)}
        parts_out.append({"href": href, "properties": props})
        if not href.startswith("cid:"):
            report.deviate("part-not-attachment", f"PartInfo href {href!r} is not a cid: attachment")
            continue
        cid = urllib.parse.unquote(href[4:])
        seen.add(cid)
        if cid not in attachments:
            report.deviate("part-missing", f"PartInfo {href} names no MIME part")
        if not props.get("MimeType"):
            report.deviate("part-mime-type", f"PartInfo {href} has no MimeType property")
        if props.get("CompressionType") != "application/gzip":
            report.deviate("part-compression",
                           f"PartInfo {href} CompressionType is {props.get('CompressionType')!r}")
    for cid in attachments:
        if cid not in seen:
            report.deviate("attachment-unlisted", f"MIME part <{cid}> has no PartInfo")
    out["parts"] = parts_out
    if len(body) or (body.text or "").strip():
        report.deviate("body-not-empty", "the SOAP Body is not empty")
    out["messaging"], out["body"] = messaging, body
    return out


# --- the two documents --------------------------------------------------------------------------


def security_header(envelope, step: str):
    return one(envelope, "S12:Header/wsse:Security", step)


def check_request(args, report: Report, result: dict) -> list | None:
    body = read(args.body)
    content_type = args.content_type or read(args.content_type_file).decode().strip()
    root_xml, attachments = split_message(body, content_type, report, "request")
    tree = parse_xml(root_xml, "the SOAP root part")
    envelope = tree.getroot()
    if envelope.tag != f"{{{S12}}}Envelope":
        raise Failure("soap", f"root element is {envelope.tag}, expected a SOAP 1.2 Envelope")
    um = check_user_message(envelope, attachments, report)
    security = security_header(envelope, "wss")

    key = serialization.load_pem_private_key(read(args.key), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise Failure("usage", "the recipient key is not an EC private key")
    cert = x509.load_pem_x509_certificate(read(args.cert)) if args.cert else None
    plain, enc = decrypt_attachments(tree, security, attachments, key, cert, report)
    result["encryption"] = enc
    for cid in attachments:
        if cid not in enc["encrypted_content_ids"]:
            report.deviate("attachment-not-encrypted", f"attachment <{cid}> is not encrypted")

    # Which octets a cid: reference signed. WSS 1.1 section 5 makes the order of the security
    # header's children the order of processing for the receiver (each step prepends), and SwA 1.1
    # section 5 ("signing and encryption") relies on it: an EncryptedKey/ReferenceList *before* the
    # ds:Signature means the attachment was signed first and encrypted after, so the reference
    # covers the plaintext (here: the gzip-compressed payload), and the receiver decrypts before
    # verifying. A Signature first means the ciphertext part itself was signed.
    children = [c for c in security if isinstance(c.tag, str)]
    sig_pos = next((i for i, c in enumerate(children) if c.tag == f"{{{DS}}}Signature"), None)
    ek_pos = next((i for i, c in enumerate(children) if c.tag == f"{{{XENC}}}EncryptedKey"), None)
    signed_plaintext = ek_pos is not None and sig_pos is not None and ek_pos < sig_pos
    result["sign_then_encrypt"] = signed_plaintext
    if ek_pos is not None and not signed_plaintext:
        # BDEW AS4-Profil 1.1 section 2.2.6.2: "Die AS4-Nachricht MUSS vor dem Verschlüsseln
        # signiert werden".
        report.deviate("encrypted-before-signing", "the security header says the attachments "
                                                   "were encrypted before they were signed")

    def attachment_content(cid: str, step: str) -> bytes:
        if cid not in attachments:
            raise Failure(step, "no MIME part has this Content-ID")
        if signed_plaintext:
            if cid not in plain:
                raise Failure(step, "the attachment was signed before encryption and could not "
                                    "be decrypted, so its digest cannot be recomputed")
            part = plain[cid]
        else:
            part = attachments[cid]
        media = parse_content_type(part.content_type)[0]
        # SwA 1.1 section 5.4.2: MIME content canonicalisation applies to text/* (CRLF line ends)
        # and XML types (C14N); other types are digested as is.
        if media.startswith("text/"):
            return re.sub(rb"\r?\n", b"\r\n", part.body)
        if media.endswith("/xml") or media.endswith("+xml"):
            raise Failure(step, f"XML attachment canonicalisation ({media}) is not implemented")
        return part.body

    sig = verify_signature(tree, security, attachment_content, report, "request")
    signer = sig.pop("signer")
    covered = sig.pop("covered")
    result.update({k: sig[k] for k in ("signature", "signer_subject", "references")})
    result["signature_detail"] = {k: v for k, v in sig.items()
                                  if k not in ("signature", "signer_subject", "references")}
    if args.trust_anchor:
        check_issued_by(signer, read(args.trust_anchor), "request.signer", report)

    # What the signature covers, by identity (a reference to a look-alike elsewhere does not count).
    if not any(c is um["messaging"] for c in covered):
        report.fail("request.coverage", "eb:Messaging of the header is not signed")
    if not any(c is um["body"] for c in covered):
        report.fail("request.coverage", "the SOAP Body is not signed")
    for cid in attachments:
        if cid not in covered:
            report.fail("request.coverage", f"attachment <{cid}> is not signed")
    timestamps = security.findall("wsu:Timestamp", NS)
    ts_signed = any(c is t for t in timestamps for c in covered)
    result["wsu_timestamp"] = {"present": bool(timestamps), "signed": ts_signed}
    if not timestamps:
        report.deviate("timestamp-missing", "no wsu:Timestamp in wsse:Security")
    elif not ts_signed:
        report.deviate("timestamp-not-signed", "wsu:Timestamp is present but not signed")
    if um["from"] and um["from"] not in sig.get("signer_ou", []):
        report.deviate("signer-ou-mismatch",
                       f"signer OU {sig.get('signer_ou')} does not equal From/PartyId {um['from']}")

    # Payloads: decompress and write out.
    payloads = []
    props = {urllib.parse.unquote(p["href"][4:]): p["properties"] for p in um["parts"]
             if p["href"].startswith("cid:")}
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    for i, (cid, part) in enumerate(sorted(plain.items())):
        step = f"payload cid:{cid}"
        try:
            data = part.body
            compressed = props.get(cid, {}).get("CompressionType") == "application/gzip"
            if compressed:
                data = gunzip(data, step)
            entry = {"content_id": cid, "sha256": hashlib.sha256(data).hexdigest(),
                     "size": len(data), "compressed_size": len(part.body) if compressed else None,
                     "mime_type": props.get(cid, {}).get("MimeType")}
            if out_dir:
                name = f"payload-{i}.bin"
                (out_dir / name).write_bytes(data)
                entry["file"] = name
            payloads.append(entry)
        except Failure as f:
            report.fail(f.step, f.message)
    result["payloads"] = payloads
    result["message"] = {k: um[k] for k in ("message_id", "from", "to", "service", "action", "parts")}
    return sig["references"]


def check_receipt(args, report: Report, result: dict, request_refs, message_id) -> None:
    body = read(args.receipt)
    ctype = args.receipt_content_type or "application/soap+xml"
    root_xml, _ = split_message(body, ctype, report, "receipt")
    tree = parse_xml(root_xml, "the receipt")
    envelope = tree.getroot()
    out: dict = {}
    result["receipt"] = out
    messaging = one(envelope, "S12:Header/eb:Messaging", "receipt")
    signal = one(messaging, "eb:SignalMessage", "receipt")
    if signal.find("eb:Error", NS) is not None:
        errs = [f"{e.get('errorCode')} {e.get('shortDescription')}" for e in signal.findall("eb:Error", NS)]
        raise Failure("receipt", f"the response is an ebMS error signal: {errs}")
    out["ref_to_message_id"] = text(signal.find("eb:MessageInfo/eb:RefToMessageId", NS))
    if message_id and out["ref_to_message_id"] != message_id:
        report.fail("receipt.ref-to-message-id",
                    f"RefToMessageId {out['ref_to_message_id']!r} is not {message_id!r}")
    nri = one(signal, "eb:Receipt/ebbp:NonRepudiationInformation", "receipt")
    nrr = []
    for r in nri.findall("ebbp:MessagePartNRInformation/ds:Reference", NS):
        nrr.append({"uri": r.get("URI", ""),
                    "digest_method": (r.find("ds:DigestMethod", NS).get("Algorithm")
                                      if r.find("ds:DigestMethod", NS) is not None else None),
                    "digest_value": text(r.find("ds:DigestValue", NS))})
    out["nrr_references"] = nrr
    security = security_header(envelope, "receipt.wss")

    def no_attachments(cid: str, step: str) -> bytes:
        raise Failure(step, "a receipt has no attachments")

    sig = verify_signature(tree, security, no_attachments, report, "receipt")
    signer = sig.pop("signer")
    covered = sig.pop("covered")
    out["signature"] = sig["signature"]
    out["signer_subject"] = sig.get("signer_subject")
    out["references"] = sig["references"]
    if not any(c is messaging for c in covered):
        report.fail("receipt.coverage", "the receipt's eb:Messaging is not signed")
    timestamps = security.findall("wsu:Timestamp", NS)
    out["wsu_timestamp"] = {"present": bool(timestamps),
                            "signed": any(c is t for t in timestamps for c in covered)}
    if timestamps and not out["wsu_timestamp"]["signed"]:
        report.deviate("receipt-timestamp-not-signed",
                       "the receipt's wsu:Timestamp is present but not signed")
    if args.trust_anchor:
        check_issued_by(signer, read(args.trust_anchor), "receipt.signer", report)
    to = result.get("message", {}).get("to")
    if to and to not in sig.get("signer_ou", []):
        report.deviate("receipt-signer-ou-mismatch",
                       f"receipt signer OU {sig.get('signer_ou')} does not equal To/PartyId {to}")
    if request_refs is not None:
        want = sorted((r["uri"], r["digest_method"], r["digest_value"]) for r in request_refs)
        got = sorted((r["uri"], r["digest_method"], r["digest_value"]) for r in nrr)
        out["nrr_matches"] = want == got
        if want != got:
            missing = [w[0] for w in want if w not in got]
            extra = [g[0] for g in got if g not in want]
            report.fail("receipt.nrr", f"NonRepudiationInformation differs from the message's "
                                       f"references: missing/different {missing}, extra {extra}")


def check_issued_by(cert, anchor_pem: bytes, step: str, report: Report) -> None:
    anchor = x509.load_pem_x509_certificate(anchor_pem)
    try:
        cert.verify_directly_issued_by(anchor)
    except (ValueError, TypeError, InvalidSignature) as e:
        report.fail(step, f"the signer certificate is not issued by the trust anchor: {e}")


def read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e}") from e


class UsageError(Exception):
    pass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--body", required=True, help="the HTTP request body (raw bytes)")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--content-type", help="the request's Content-Type header value")
    g.add_argument("--content-type-file", help="a file holding the request's Content-Type value")
    ap.add_argument("--key", required=True, help="the recipient's encryption private key (PEM)")
    ap.add_argument("--cert", help="the recipient's encryption certificate (PEM): SKI check")
    ap.add_argument("--trust-anchor", help="CA certificate (PEM) that must have issued the signers")
    ap.add_argument("--receipt", help="the HTTP response body (the receipt)")
    ap.add_argument("--receipt-content-type", help="the response's Content-Type header value")
    ap.add_argument("--out", help="directory for the decrypted, decompressed payloads")
    ap.add_argument("--allow-deviation", action="append", default=[], metavar="CODE",
                    help="a known profile deviation that does not fail the run (repeatable)")
    args = ap.parse_args(argv)

    report = Report()
    result: dict = {"signature": "invalid", "signer_subject": None, "references": [],
                    "payloads": []}
    try:
        refs = None
        message_id = None
        try:
            refs = check_request(args, report, result)
            message_id = result.get("message", {}).get("message_id")
        except Failure as f:
            report.fail(f.step, f.message)
        if args.receipt:
            try:
                check_receipt(args, report, result, refs, message_id)
            except Failure as f:
                report.fail(f.step, f.message)
    except (UsageError, ValueError) as e:
        print(f"oracle: {e}", file=sys.stderr)
        return EXIT_USAGE

    result["profile_deviations"] = report.deviations
    result["errors"] = report.errors
    unexpected = [d for d in report.deviations if d["code"] not in args.allow_deviation]
    result["unexpected_deviations"] = [d["code"] for d in unexpected]
    result["xmlsec_version"] = ".".join(map(str, xmlsec.get_libxmlsec_version())) if xmlsec else None
    print(json.dumps(result, indent=2, default=str))
    for e in report.errors:
        print(f"oracle: FAILED {e['step']}: {e['message']}", file=sys.stderr)
    for d in unexpected:
        print(f"oracle: DEVIATION {d['code']}: {d['detail']}", file=sys.stderr)
    if report.errors:
        return EXIT_VERIFY
    if unexpected:
        return EXIT_PROFILE
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

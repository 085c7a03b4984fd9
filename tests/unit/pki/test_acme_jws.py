"""ACME request signatures: flattened JWS parsing, every supported algorithm, JWK checks, EAB.

Requests are built both by hand with ``cryptography`` (every algorithm, and malformed
variants) and with certbot's own ``acme``/``josepy`` libraries (what a real client sends).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import josepy
import pytest
from acme import jws as acme_jws
from acme import messages
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from strongroom.engines.pki.acme import jws
from strongroom.engines.pki.acme.problems import AcmeProblem

URL = "https://ca.example/v1/pki/acme/new-order"
NONCE = "bm9uY2Vub25jZQ"

RSA_KEY = rsa.generate_private_key(65537, 2048)
RSA_OTHER = rsa.generate_private_key(65537, 2048)
EC_KEYS = {
    "P-256": ec.generate_private_key(ec.SECP256R1()),
    "P-384": ec.generate_private_key(ec.SECP384R1()),
    "P-521": ec.generate_private_key(ec.SECP521R1()),
}
ED25519_KEY = ed25519.Ed25519PrivateKey.generate()
ED448_KEY = ed448.Ed448PrivateKey.generate()

SIZES = {"P-256": 32, "P-384": 48, "P-521": 66}
HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def uint(value: int) -> str:
    return b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def jwk_of(key: Any) -> dict[str, Any]:
    pub = key.public_key() if hasattr(key, "public_key") else key
    if isinstance(pub, rsa.RSAPublicKey):
        numbers = pub.public_numbers()
        return {"kty": "RSA", "n": uint(numbers.n), "e": uint(numbers.e)}
    if isinstance(pub, ec.EllipticCurvePublicKey):
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[pub.curve.name]
        numbers = pub.public_numbers()
        size = SIZES[crv]
        return {
            "kty": "EC",
            "crv": crv,
            "x": b64(numbers.x.to_bytes(size, "big")),
            "y": b64(numbers.y.to_bytes(size, "big")),
        }
    from cryptography.hazmat.primitives import serialization

    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    crv = "Ed25519" if isinstance(pub, ed25519.Ed25519PublicKey) else "Ed448"
    return {"kty": "OKP", "crv": crv, "x": b64(raw)}


def raw_sign(alg: str, key: Any, data: bytes) -> bytes:
    if alg.startswith("RS"):
        return key.sign(data, padding.PKCS1v15(), HASHES[alg[2:]]())
    if alg.startswith("PS"):
        h = HASHES[alg[2:]]
        return key.sign(data, padding.PSS(mgf=padding.MGF1(h()), salt_length=h.digest_size), h())
    if alg.startswith("ES"):
        size = {"256": 32, "384": 48, "512": 66}[alg[2:]]
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(HASHES[alg[2:]]())))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    return key.sign(data)


def make(
    alg: str,
    key: Any,
    payload: bytes | None = b'{"hello":"world"}',
    *,
    header: dict[str, Any] | None = None,
    use_kid: bool = False,
    drop: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A flattened JWS object signed by hand (``header`` entries override the defaults)."""
    protected: dict[str, Any] = {"alg": alg, "nonce": NONCE, "url": URL}
    if use_kid:
        protected["kid"] = "https://ca.example/acct/1"
    else:
        protected["jwk"] = jwk_of(key)
    protected.update(header or {})
    for name in drop:
        protected.pop(name, None)
    p64 = b64(json.dumps(protected).encode())
    body64 = b64(payload or b"")
    return {
        "protected": p64,
        "payload": body64,
        "signature": b64(raw_sign(alg, key, f"{p64}.{body64}".encode())),
    }


def body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def problem(fn: Any, *args: Any, **kwargs: Any) -> AcmeProblem:
    with pytest.raises(AcmeProblem) as info:
        fn(*args, **kwargs)
    return info.value


ALL = [
    ("RS256", RSA_KEY),
    ("RS384", RSA_KEY),
    ("RS512", RSA_KEY),
    ("PS256", RSA_KEY),
    ("PS384", RSA_KEY),
    ("PS512", RSA_KEY),
    ("ES256", EC_KEYS["P-256"]),
    ("ES384", EC_KEYS["P-384"]),
    ("ES512", EC_KEYS["P-521"]),
    ("EdDSA", ED25519_KEY),
    ("EdDSA", ED448_KEY),
]


# -- every algorithm ------------------------------------------------------------------------------


@pytest.mark.parametrize(("alg", "key"), ALL, ids=[f"{a}-{type(k).__name__}" for a, k in ALL])
def test_every_supported_algorithm_verifies(alg: str, key: Any) -> None:
    req = jws.parse(body(make(alg, key)))
    assert (req.alg, req.nonce, req.url, req.kid) == (alg, NONCE, URL, None)
    assert req.jwk == jwk_of(key)
    assert req.payload_json() == {"hello": "world"} and not req.is_post_as_get()
    jws.verify(req, req.jwk)


@pytest.mark.parametrize(("alg", "key"), ALL, ids=[f"{a}-{type(k).__name__}" for a, k in ALL])
def test_tampered_payload_fails(alg: str, key: Any) -> None:
    obj = make(alg, key)
    obj["payload"] = b64(b'{"hello":"mallory"}')
    req = jws.parse(body(obj))
    err = problem(jws.verify, req, req.jwk)
    assert (err.kind, err.detail, err.status) == ("malformed", "JWS verification error", 400)


def test_wrong_key_fails() -> None:
    for alg, key, other in [
        ("RS256", RSA_KEY, RSA_OTHER),
        ("PS256", RSA_KEY, RSA_OTHER),
        ("ES256", EC_KEYS["P-256"], ec.generate_private_key(ec.SECP256R1())),
        ("EdDSA", ED25519_KEY, ed25519.Ed25519PrivateKey.generate()),
    ]:
        req = jws.parse(body(make(alg, key)))
        assert problem(jws.verify, req, jwk_of(other)).detail == "JWS verification error"


def test_truncated_or_der_ecdsa_signature_fails() -> None:
    key = EC_KEYS["P-256"]
    obj = make("ES256", key)
    obj["signature"] = b64(jws.b64url_decode(obj["signature"])[:-1])
    assert problem(jws.verify, jws.parse(body(obj)), jwk_of(key)).kind == "malformed"
    obj = make("ES256", key)
    p64, pl64 = obj["protected"], obj["payload"]
    obj["signature"] = b64(key.sign(f"{p64}.{pl64}".encode(), ec.ECDSA(hashes.SHA256())))  # DER, not r||s
    assert problem(jws.verify, jws.parse(body(obj)), jwk_of(key)).detail == "JWS verification error"


@pytest.mark.parametrize(
    ("alg", "key"),
    [
        ("ES256", RSA_KEY),
        ("RS256", EC_KEYS["P-256"]),
        ("PS256", ED25519_KEY),
        ("EdDSA", RSA_KEY),
        ("EdDSA", EC_KEYS["P-256"]),
        ("ES384", EC_KEYS["P-256"]),
        ("ES256", EC_KEYS["P-384"]),
        ("ES512", EC_KEYS["P-384"]),
    ],
)
def test_algorithm_must_fit_the_key(alg: str, key: Any) -> None:
    # signed with ES256/ES384 where needed so only the alg/key mismatch is wrong
    obj = make("RS256", RSA_KEY, header={"alg": alg, "jwk": jwk_of(key)})
    err = problem(jws.verify, jws.parse(body(obj)), jwk_of(key))
    assert err.kind == "badSignatureAlgorithm"
    assert err.document()["algorithms"] == sorted(jws.SUPPORTED_ALGS)


# -- certbot's own client library ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alg", "key"),
    [
        (josepy.RS256, josepy.JWKRSA(key=RSA_KEY)),
        (josepy.RS512, josepy.JWKRSA(key=RSA_KEY)),
        (josepy.ES256, josepy.JWKEC(key=EC_KEYS["P-256"])),
        (josepy.ES384, josepy.JWKEC(key=EC_KEYS["P-384"])),
        (josepy.ES512, josepy.JWKEC(key=EC_KEYS["P-521"])),
    ],
)
def test_certbot_requests_verify(alg: Any, key: Any) -> None:
    sent = acme_jws.JWS.sign(b'{"termsOfServiceAgreed":true}', key=key, alg=alg, nonce=b"n0nce", url=URL)
    req = jws.parse(sent.json_dumps(indent=2).encode())
    assert req.nonce == b64(b"n0nce") and req.url == URL and req.kid is None
    assert req.jwk is not None
    jws.verify(req, req.jwk)
    assert jws.thumbprint(req.jwk) == b64(key.public_key().thumbprint())  # josepy agrees on RFC 7638

    with_kid = acme_jws.JWS.sign(b"", key=key, alg=alg, nonce=b"n0nce", url=URL, kid="https://ca/acct/7")
    req = jws.parse(with_kid.json_dumps().encode())
    assert req.kid == "https://ca/acct/7" and req.jwk is None and req.is_post_as_get()
    jws.verify(req, key.public_key().to_partial_json())


def test_pss_salt_must_equal_the_hash_length() -> None:
    """RFC 7518 §3.5; josepy signs PS* with the maximum salt length, which is refused."""
    sent = acme_jws.JWS.sign(b"{}", key=josepy.JWKRSA(key=RSA_KEY), alg=josepy.PS256, nonce=b"n", url=URL)
    req = jws.parse(sent.json_dumps().encode())
    assert req.jwk is not None
    assert problem(jws.verify, req, req.jwk).detail == "JWS verification error"


# -- the JWS envelope and protected header ------------------------------------------------------------


def good() -> dict[str, Any]:
    return make("ES256", EC_KEYS["P-256"])


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"\xff\xfe{}",
        b"[]",
        b'"protected"',
        b"null",
        b'{"protected": "a", "payload": "b", "signature": NaN}',
    ],
)
def test_not_a_jws_object(raw: bytes) -> None:
    assert problem(jws.parse, raw).kind == "malformed"


def test_envelope_shapes() -> None:
    obj = good()
    general = {"payload": obj["payload"], "signatures": [{"protected": obj["protected"], "signature": "x"}]}
    assert "general" in problem(jws.parse, body(general)).detail
    assert "unprotected" in problem(jws.parse, body({**obj, "header": {"kid": "x"}})).detail
    assert problem(jws.parse, body({**obj, "extra": 1})).kind == "malformed"
    for member in ("protected", "payload", "signature"):
        missing = {k: v for k, v in obj.items() if k != member}
        assert problem(jws.parse, body(missing)).kind == "malformed"
        assert problem(jws.parse, body({**obj, member: 5})).kind == "malformed"
    duplicated = body(obj)[:-1] + b', "payload": "e30"}'
    assert problem(jws.parse, duplicated).kind == "malformed"
    assert problem(jws.parse, body({**obj, "protected": ""})).kind == "malformed"


@pytest.mark.parametrize("member", ["protected", "payload", "signature"])
def test_base64url_must_be_strict(member: str) -> None:
    obj = good()
    value = obj[member]
    for bad in (value + "=" * (-len(value) % 4 or 4), value[:-1] + "+", value[:-1] + "/", value + " ", "a"):
        assert problem(jws.parse, body({**obj, member: bad})).kind == "malformed", bad


def test_b64url_helpers() -> None:
    for data in (b"", b"\x00", b"\xff\xfe", b"abc", bytes(range(256))):
        assert jws.b64url_decode(jws.b64url_encode(data)) == data
    assert jws.b64url_encode(b"\xfb\xff") == "-_8"
    for bad in ("QQ==", "QR", "Q", "a+b", "a/b", "é", "QQ\n"):
        assert problem(jws.b64url_decode, bad).kind == "malformed", bad  # QR: non-canonical bits


def test_protected_header_requirements() -> None:
    key = EC_KEYS["P-256"]
    cases = {
        "no nonce": make("ES256", key, drop=("nonce",)),
        "numeric nonce": make("ES256", key, header={"nonce": 5}),
        "no url": make("ES256", key, drop=("url",)),
        "empty url": make("ES256", key, header={"url": ""}),
        "no alg": make("ES256", key, drop=("alg",)),
        "neither": make("ES256", key, drop=("jwk",)),
        "jwk not object": make("ES256", key, header={"jwk": "abc"}),
        "kid not string": make("ES256", key, use_kid=True, header={"kid": 7}),
        "crit": make("ES256", key, header={"crit": ["b64"], "b64": False}),
        "crit other": make("ES256", key, header={"crit": ["exp"], "exp": 1}),
        "b64 false": make("ES256", key, header={"b64": False}),
    }
    for name, obj in cases.items():
        assert problem(jws.parse, body(obj)).kind == "malformed", name
    both = make("ES256", key, header={"kid": "https://ca/acct/1"})
    assert problem(jws.parse, body(both)).detail == "jwk and kid are mutually exclusive"
    not_object = {**good(), "protected": b64(b"[1,2]")}
    assert problem(jws.parse, body(not_object)).kind == "malformed"


def test_inner_jws_may_omit_the_nonce() -> None:
    """RFC 8555 §7.3.5: the key-change inner JWS is parsed with require_nonce=False."""
    key = ED25519_KEY
    inner = jws.parse(body(make("EdDSA", key, drop=("nonce",))), require_nonce=False)
    assert inner.nonce == "" and "nonce" not in inner.protected
    assert inner.jwk is not None
    jws.verify(inner, inner.jwk)
    assert jws.parse(body(make("EdDSA", key)), require_nonce=False).nonce == NONCE
    assert problem(jws.parse, body(make("EdDSA", key, drop=("nonce",)))).kind == "malformed"
    missing_url = make("EdDSA", key, drop=("nonce", "url"))
    assert problem(jws.parse, body(missing_url), require_nonce=False).kind == "malformed"


@pytest.mark.parametrize("alg", ["none", "HS256", "HS512", "RS1", "ES256K", "Ed25519", "", "rs256"])
def test_unsupported_outer_algorithms(alg: str) -> None:
    obj = make("ES256", EC_KEYS["P-256"], header={"alg": alg})
    if alg == "none":
        obj["signature"] = ""
    err = problem(jws.parse, body(obj))
    assert err.kind == "badSignatureAlgorithm" and err.status == 400
    assert err.extra["algorithms"] == sorted(
        ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
    )


def test_payload_json() -> None:
    key = EC_KEYS["P-256"]
    req = jws.parse(body(make("ES256", key, payload=None)))
    assert req.is_post_as_get() and req.payload_raw == b""
    assert "POST-as-GET" in problem(req.payload_json).detail
    for raw in (b"[1]", b'"x"', b"1", b"{", b'{"a": NaN}', b"\xff", b'{"a":1,"a":2}'):
        req = jws.parse(body(make("ES256", key, payload=raw)))
        assert problem(req.payload_json).kind == "malformed", raw
    assert jws.parse(body(make("ES256", key, payload=b"{}"))).payload_json() == {}


def test_errors_do_not_quote_keys_or_payloads() -> None:
    secret_payload = b'{"csr":"SECRETSECRET"}'
    obj = make("RS256", RSA_KEY, payload=secret_payload)
    obj["payload"] = b64(b'{"csr":"SECRETSECRET2"}')
    req = jws.parse(body(obj))
    weak = jwk_of(rsa.generate_private_key(65537, 1024))
    for err in (
        problem(jws.verify, req, jwk_of(RSA_KEY)),
        problem(jws.public_key, weak),
        problem(jws.public_key, {**jwk_of(RSA_KEY), "d": "AQAB"}),
        problem(jws.parse, body({**obj, "payload": obj["payload"] + "="})),
    ):
        text = json.dumps(err.document())
        assert "SECRET" not in text and jwk_of(RSA_KEY)["n"][:20] not in text and weak["n"][:20] not in text


# -- JWK checks ---------------------------------------------------------------------------------------


def test_public_key_accepts_each_type() -> None:
    assert isinstance(jws.public_key(jwk_of(RSA_KEY)), rsa.RSAPublicKey)
    for key in EC_KEYS.values():
        assert isinstance(jws.public_key(jwk_of(key)), ec.EllipticCurvePublicKey)
    assert isinstance(jws.public_key(jwk_of(ED25519_KEY)), ed25519.Ed25519PublicKey)
    assert isinstance(jws.public_key(jwk_of(ED448_KEY)), ed448.Ed448PublicKey)


def test_private_members_are_refused() -> None:
    full_rsa = josepy.JWKRSA(key=RSA_KEY).to_partial_json()  # josepy includes d, p, q, ... for a private key
    assert "d" in full_rsa
    assert problem(jws.public_key, full_rsa).kind == "badPublicKey"
    full_ec = josepy.JWKEC(key=EC_KEYS["P-256"]).to_partial_json()
    assert problem(jws.public_key, full_ec).kind == "badPublicKey"
    okp = {**jwk_of(ED25519_KEY), "d": b64(b"\x01" * 32)}
    assert problem(jws.public_key, okp).detail == "JWK contains private key material"
    # and in a request's header, verify refuses it too
    req = jws.parse(body(make("ES256", EC_KEYS["P-256"], header={"jwk": full_ec})))
    assert req.jwk is not None
    assert problem(jws.verify, req, req.jwk).kind == "badPublicKey"


def test_rsa_limits() -> None:
    weak = rsa.generate_private_key(65537, 1024)
    assert "2048" in problem(jws.public_key, jwk_of(weak)).detail
    good_jwk = jwk_of(RSA_KEY)
    huge = {"kty": "RSA", "n": uint((1 << 8200) - 1), "e": "AQAB"}
    assert problem(jws.public_key, huge).kind == "badPublicKey"
    for e in (1, 2, 65536, 1 << 80 | 1):
        assert problem(jws.public_key, {**good_jwk, "e": uint(e)}).kind == "badPublicKey", e
    padded = {**good_jwk, "n": b64(b"\x00" + jws.b64url_decode(good_jwk["n"]))}
    assert problem(jws.public_key, padded).kind == "badPublicKey"  # one key, one spelling
    assert problem(jws.public_key, {**good_jwk, "e": "AQAB="}).kind == "badPublicKey"
    assert problem(jws.public_key, {"kty": "RSA", "e": "AQAB"}).kind == "badPublicKey"


def test_ec_point_checks() -> None:
    good_jwk = jwk_of(EC_KEYS["P-256"])
    y = jws.b64url_decode(good_jwk["y"])
    off_curve = {**good_jwk, "y": b64(y[:-1] + bytes([y[-1] ^ 1]))}
    assert problem(jws.public_key, off_curve).kind == "badPublicKey"
    short = {**good_jwk, "x": b64(jws.b64url_decode(good_jwk["x"])[1:])}
    assert problem(jws.public_key, short).kind == "badPublicKey"
    for crv in ("P-192", "secp256k1", None, "P-384"):  # P-384 with 32-octet coordinates
        assert problem(jws.public_key, {**good_jwk, "crv": crv}).kind == "badPublicKey", crv
    zero = {**good_jwk, "x": b64(bytes(32)), "y": b64(bytes(32))}
    assert problem(jws.public_key, zero).kind == "badPublicKey"


def test_other_key_types_are_refused() -> None:
    for jwk in (
        {"kty": "oct", "k": "c2VjcmV0"},
        {"kty": "OKP", "crv": "X25519", "x": b64(bytes(32))},
        {"kty": "OKP", "crv": "Ed25519", "x": b64(bytes(31))},
        {"kty": "OKP", "crv": "Ed448", "x": b64(bytes(32))},
        {"kty": "DSA"},
        {},
        ["RSA"],
    ):
        assert problem(jws.public_key, jwk).kind == "badPublicKey", jwk


# -- thumbprints -------------------------------------------------------------------------------------------

RFC7638_KEY = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}


def test_rfc7638_example_thumbprint() -> None:
    assert jws.thumbprint(RFC7638_KEY) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    assert jws.canonical_jwk(RFC7638_KEY) == {"e": "AQAB", "kty": "RSA", "n": RFC7638_KEY["n"]}
    assert (
        jws.key_authorization("tok-en_1", RFC7638_KEY)
        == "tok-en_1.NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    )


def test_canonical_members_per_type() -> None:
    for key in (*EC_KEYS.values(), ED25519_KEY, ED448_KEY):
        jwk = {**jwk_of(key), "use": "sig", "kid": "x"}
        canonical = jws.canonical_jwk(jwk)
        assert canonical == {k: v for k, v in jwk.items() if k in ("crv", "kty", "x", "y")}
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
        assert jws.thumbprint(jwk) == b64(hashlib.sha256(text).digest())
    ec_jwk = josepy.JWKEC(key=EC_KEYS["P-384"].public_key())
    assert jws.thumbprint(ec_jwk.to_partial_json()) == b64(ec_jwk.thumbprint())


# -- external account binding --------------------------------------------------------------------------------

NEW_ACCOUNT = "https://ca.example/v1/pki/acme/new-account"
EAB_KID = "kid-1"
EAB_KEY = b"0123456789abcdef0123456789abcdef"


def keys(kid: str) -> bytes | None:
    return EAB_KEY if kid == EAB_KID else None


def certbot_eab(account: josepy.JWK, alg: str = "HS256", kid: str = EAB_KID, key: bytes = EAB_KEY) -> Any:
    return messages.ExternalAccountBinding.from_data(
        account_public_key=account,
        kid=kid,
        hmac_key=b64(key),
        directory={"newAccount": NEW_ACCOUNT},  # type: ignore[arg-type]
        hmac_alg=alg,
    )


def hand_eab(
    protected: dict[str, Any], payload: bytes, key: bytes = EAB_KEY, digest: Any = hashlib.sha256
) -> Any:
    p64, pl64 = b64(json.dumps(protected).encode()), b64(payload)
    return {
        "protected": p64,
        "payload": pl64,
        "signature": b64(hmac.new(key, f"{p64}.{pl64}".encode(), digest).digest()),
    }


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_eab_from_certbot(alg: str) -> None:
    for private in (RSA_KEY, EC_KEYS["P-256"]):
        account = josepy.JWKRSA(key=private) if private is RSA_KEY else josepy.JWKEC(key=private)
        eab = certbot_eab(account.public_key(), alg)
        assert jws.verify_eab(eab, jwk_of(private), NEW_ACCOUNT, keys) == EAB_KID


def test_eab_failures() -> None:
    account_jwk = jwk_of(EC_KEYS["P-256"])
    account = josepy.JWKEC(key=EC_KEYS["P-256"]).public_key()

    err = problem(
        jws.verify_eab,
        certbot_eab(account, key=b"another key, not the right one"),
        account_jwk,
        NEW_ACCOUNT,
        keys,
    )
    assert (err.kind, err.status) == ("unauthorized", 403)
    err = problem(jws.verify_eab, certbot_eab(account, kid="kid-2"), account_jwk, NEW_ACCOUNT, keys)
    assert (err.kind, err.detail) == ("unauthorized", "unknown external account binding key")
    assert (
        problem(jws.verify_eab, certbot_eab(account), account_jwk, NEW_ACCOUNT, lambda kid: b"").kind
        == "unauthorized"
    )

    assert (
        problem(jws.verify_eab, certbot_eab(account), account_jwk, NEW_ACCOUNT + "x", keys).kind
        == "malformed"
    )
    err = problem(jws.verify_eab, certbot_eab(account), jwk_of(EC_KEYS["P-384"]), NEW_ACCOUNT, keys)
    assert err.detail == "EAB payload does not match the account key"

    base = {"alg": "HS256", "kid": EAB_KID, "url": NEW_ACCOUNT}
    payload = json.dumps(account_jwk).encode()
    assert jws.verify_eab(hand_eab(base, payload), account_jwk, NEW_ACCOUNT, keys) == EAB_KID
    with_nonce = hand_eab({**base, "nonce": NONCE}, payload)
    assert problem(jws.verify_eab, with_nonce, account_jwk, NEW_ACCOUNT, keys).kind == "malformed"
    no_kid = hand_eab({"alg": "HS256", "url": NEW_ACCOUNT}, payload)
    assert problem(jws.verify_eab, no_kid, account_jwk, NEW_ACCOUNT, keys).kind == "malformed"
    for bad_payload in (b"", b"[]", b"{}", json.dumps({**account_jwk, "d": "AQAB"}).encode()):
        err = problem(jws.verify_eab, hand_eab(base, bad_payload), account_jwk, NEW_ACCOUNT, keys)
        assert err.kind == "malformed", bad_payload
    mislabeled = hand_eab({**base, "alg": "HS512"}, payload)  # says HS512, MAC'd with SHA-256
    assert problem(jws.verify_eab, mislabeled, account_jwk, NEW_ACCOUNT, keys).kind == "unauthorized"
    for alg in ("RS256", "none", "ES256"):
        err = problem(jws.verify_eab, hand_eab({**base, "alg": alg}, payload), account_jwk, NEW_ACCOUNT, keys)
        assert err.kind == "badSignatureAlgorithm" and err.extra["algorithms"] == ["HS256", "HS384", "HS512"]
    for shape in (None, "x", [], {"protected": "", "payload": "", "signature": ""}):
        assert problem(jws.verify_eab, shape, account_jwk, NEW_ACCOUNT, keys).kind == "malformed", shape
    extra = {**hand_eab(base, payload), "header": {"kid": EAB_KID}}
    assert problem(jws.verify_eab, extra, account_jwk, NEW_ACCOUNT, keys).kind == "malformed"


def test_eab_key_lookup_happens_after_header_checks() -> None:
    looked_up: list[str] = []

    def spy(kid: str) -> bytes | None:
        looked_up.append(kid)
        return EAB_KEY

    account_jwk = jwk_of(ED25519_KEY)
    eab = hand_eab(
        {"alg": "HS256", "kid": EAB_KID, "url": "https://elsewhere/"}, json.dumps(account_jwk).encode()
    )
    problem(jws.verify_eab, eab, account_jwk, NEW_ACCOUNT, spy)
    assert looked_up == []

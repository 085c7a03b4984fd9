"""Client scenarios, each ``scenario_xxx(target, tmp_path)``, independent of which server runs.

``OPEN`` scenarios need a target whose directory does not require EAB; ``EAB`` scenarios need one
that does (``externalAccountRequired``). Each scenario uses fresh names and its own client state, so
they can share one server and run in any order. The test modules are thin parametrizations.
"""

from __future__ import annotations

import base64
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.acme.clients import (
    AcmeProblem,
    Certbot,
    Lego,
    Uacme,
    acme_library_new_account,
    copy_tree,
    expect_failure,
    unique_name,
    verify_issued,
)
from tests.integration.acme.targets import AcmeTarget

Scenario = Callable[[AcmeTarget, Path], None]


# -- certbot (http-01 standalone) --------------------------------------------------------------------


def scenario_certbot_rsa(target: AcmeTarget, tmp_path: Path) -> None:
    """certonly --key-type rsa, two names in one order."""
    base = unique_name("cb-rsa")
    names = [base, "www." + base]
    certbot = Certbot(target, tmp_path / "certbot")
    certbot.certonly(names, key="rsa2048")
    verify_issued(certbot.issued(names), target, key="rsa2048", workdir=tmp_path / "verify")


def scenario_certbot_ecdsa(target: AcmeTarget, tmp_path: Path) -> None:
    """certonly --key-type ecdsa --elliptic-curve secp384r1."""
    names = [unique_name("cb-ec")]
    certbot = Certbot(target, tmp_path / "certbot")
    certbot.certonly(names, key="ec384")
    verify_issued(certbot.issued(names), target, key="ec384", workdir=tmp_path / "verify")


def scenario_certbot_renew(target: AcmeTarget, tmp_path: Path) -> None:
    """renew --force-renewal replaces the certificate with a new one for the same names."""
    names = [unique_name("cb-renew")]
    certbot = Certbot(target, tmp_path / "certbot")
    certbot.certonly(names, key="ec256")
    first = verify_issued(certbot.issued(names), target, key="ec256", workdir=tmp_path / "verify1")
    certbot.renew(force=True)
    second = verify_issued(certbot.issued(names), target, key="ec256", workdir=tmp_path / "verify2")
    assert second.serial_number != first.serial_number, "renewal kept the old certificate"
    archive = certbot.config_dir / "archive" / names[0]
    assert (archive / "cert2.pem").exists(), f"no second certificate in {archive}"


def scenario_certbot_update_account(target: AcmeTarget, tmp_path: Path) -> None:
    """register -m, update_account -m, and show_account reads the new contact back from the server."""
    certbot = Certbot(target, tmp_path / "certbot")
    certbot.register(email="before@example.com")
    assert "before@example.com" in certbot.show_account().output
    certbot.update_account("after@example.com")
    shown = certbot.show_account().output
    assert "after@example.com" in shown and "before@example.com" not in shown, shown


def scenario_certbot_revoke(target: AcmeTarget, tmp_path: Path) -> None:
    """revoke --reason keycompromise (signed by the account): the server reports the serial revoked."""
    names = [unique_name("cb-revoke")]
    certbot = Certbot(target, tmp_path / "certbot")
    certbot.certonly(names, key="ec256")
    issued = certbot.issued(names)
    verify_issued(issued, target, key="ec256", workdir=tmp_path / "verify")
    assert target.cert_status(issued.serial) == "valid"
    certbot.revoke(names[0], reason="keycompromise")
    assert target.is_revoked(issued.pem()), f"serial {issued.serial:x} not revoked on {target.name}"


def scenario_certbot_unregister(target: AcmeTarget, tmp_path: Path) -> None:
    """unregister deactivates the account: a new order signed by its key is refused afterwards."""
    certbot = Certbot(target, tmp_path / "certbot")
    certbot.register(email="gone@example.com")
    saved = copy_tree(certbot.accounts_dir, tmp_path / "accounts-before-unregister")
    certbot.unregister()
    # certbot forgets the account locally; put the files back so that it signs with the deactivated key
    shutil.rmtree(certbot.accounts_dir, ignore_errors=True)
    copy_tree(saved, certbot.accounts_dir)
    run = certbot.certonly([unique_name("cb-gone")], check=False)
    expect_failure(run, "unauthorized", "deactivated")


# -- lego ----------------------------------------------------------------------------------------


def scenario_lego_http01(target: AcmeTarget, tmp_path: Path) -> None:
    """lego run --http with an RSA certificate key (lego's account key is EC P-256, so ES256)."""
    base = unique_name("lego-http")
    names = [base, "www." + base]
    lego = Lego(target, tmp_path / "lego")
    lego.issue_http01(names, key="rsa2048")
    verify_issued(lego.issued(names), target, key="rsa2048", workdir=tmp_path / "verify")


def scenario_lego_dns01_wildcard(target: AcmeTarget, tmp_path: Path) -> None:
    """lego run --dns exec: TXT records through the challtestsrv, for a name and its wildcard."""
    base = unique_name("lego-dns")
    names = [base, "*." + base]
    lego = Lego(target, tmp_path / "lego")
    lego.issue_dns01(names, key="ec256")
    verify_issued(lego.issued(names), target, key="ec256", workdir=tmp_path / "verify")
    presented = [
        line.split()[1] for line in lego.dns_log.read_text().splitlines() if line.startswith("present")
    ]
    assert presented.count(f"_acme-challenge.{base}.") == 2, presented


def scenario_lego_tls_alpn01(target: AcmeTarget, tmp_path: Path) -> None:
    """lego run --tls (tls-alpn-01) with a P-384 certificate key."""
    names = [unique_name("lego-tls")]
    lego = Lego(target, tmp_path / "lego")
    lego.issue_tls_alpn01(names, key="ec384")
    verify_issued(lego.issued(names), target, key="ec384", workdir=tmp_path / "verify")


def scenario_lego_revoke(target: AcmeTarget, tmp_path: Path) -> None:
    """lego revoke --reason 1 (keyCompromise)."""
    names = [unique_name("lego-revoke")]
    lego = Lego(target, tmp_path / "lego")
    lego.issue_http01(names)
    issued = lego.issued(names)
    verify_issued(issued, target, key="ec256", workdir=tmp_path / "verify")
    assert target.cert_status(issued.serial) == "valid"
    lego.revoke(names, reason=1)
    assert target.is_revoked(issued.pem()), f"serial {issued.serial:x} not revoked on {target.name}"


# -- uacme (keyChange) ----------------------------------------------------------------------------


def scenario_uacme_newkey(target: AcmeTarget, tmp_path: Path) -> None:
    """uacme new (RSA account key), issue, newkey (to an EC key), issue again; the old key is refused."""
    uacme = Uacme(target, tmp_path / "uacme")
    uacme.new("uacme@example.com")
    names = [unique_name("uacme")]
    uacme.issue(names, key="ec256")
    first = verify_issued(uacme.issued(names), target, key="ec256", workdir=tmp_path / "verify1")
    old_key = uacme.account_key.read_bytes()
    assert b"BEGIN RSA PRIVATE KEY" in old_key or b"BEGIN PRIVATE KEY" in old_key
    uacme.newkey(key="ec256")
    assert uacme.account_key.read_bytes() != old_key, "newkey left the account key unchanged"
    uacme.issue(names, key="ec256", force=True)
    second = verify_issued(uacme.issued(names), target, key="ec256", workdir=tmp_path / "verify2")
    assert second.serial_number != first.serial_number
    # the replaced key no longer finds the account
    stale = Uacme(target, tmp_path / "uacme-stale")
    stale.account_key.parent.mkdir(parents=True)
    stale.account_key.write_bytes(old_key)
    expect_failure(stale.update("stale@example.com", check=False))


# -- External Account Binding -------------------------------------------------------------------


def scenario_certbot_eab(target: AcmeTarget, tmp_path: Path) -> None:
    """certbot certonly --eab-kid --eab-hmac-key against a directory that requires EAB."""
    names = [unique_name("cb-eab")]
    certbot = Certbot(target, tmp_path / "certbot")
    certbot.certonly(names, key="ec256", email="eab@example.com", eab=target.new_eab())
    verify_issued(certbot.issued(names), target, key="ec256", workdir=tmp_path / "verify")


def scenario_lego_eab(target: AcmeTarget, tmp_path: Path) -> None:
    """lego --eab --kid --hmac run --http."""
    names = [unique_name("lego-eab")]
    lego = Lego(target, tmp_path / "lego")
    lego.issue_http01(names, eab=target.new_eab())
    verify_issued(lego.issued(names), target, key="ec256", workdir=tmp_path / "verify")


def scenario_uacme_eab(target: AcmeTarget, tmp_path: Path) -> None:
    """uacme -e KID:KEY new, then issue."""
    uacme = Uacme(target, tmp_path / "uacme")
    uacme.new("uacme-eab@example.com", eab=target.new_eab())
    names = [unique_name("uacme-eab")]
    uacme.issue(names, key="ec256")
    verify_issued(uacme.issued(names), target, key="ec256", workdir=tmp_path / "verify")


def scenario_eab_required_refuses_plain(target: AcmeTarget, tmp_path: Path) -> None:
    """Without EAB: certbot stops on the directory's ``externalAccountRequired``, and the server itself
    refuses newAccount with ``externalAccountRequired`` (sent through the acme library, because
    certbot, lego and uacme all check the directory first and never send it)."""
    certbot = Certbot(target, tmp_path / "certbot")
    expect_failure(certbot.register(email="plain@example.com", check=False), "external account binding")
    with pytest.raises(AcmeProblem) as refused:
        acme_library_new_account(target, email="plain@example.com")
    assert refused.value.typ == "urn:ietf:params:acme:error:externalAccountRequired", refused.value


def scenario_eab_bad_credentials(target: AcmeTarget, tmp_path: Path) -> None:
    """newAccount with a known kid but a wrong HMAC key (lego), or an unknown kid (acme library), is refused."""
    kid, key = target.new_eab()
    wrong = base64.urlsafe_b64encode(secrets.token_bytes(48)).decode().rstrip("=")
    lego = Lego(target, tmp_path / "lego")
    expect_failure(
        lego.issue_http01([unique_name("lego-badmac")], eab=(kid, wrong), check=False),
        "urn:ietf:params:acme:error:unauthorized",
        "urn:ietf:params:acme:error:malformed",
    )
    with pytest.raises(AcmeProblem) as refused:
        acme_library_new_account(target, eab=("no-such-kid-" + secrets.token_hex(4), key))
    assert refused.value.typ in (
        "urn:ietf:params:acme:error:unauthorized",
        "urn:ietf:params:acme:error:malformed",
    ), refused.value


OPEN: list[Scenario] = [
    scenario_certbot_rsa,
    scenario_certbot_ecdsa,
    scenario_certbot_renew,
    scenario_certbot_update_account,
    scenario_certbot_revoke,
    scenario_certbot_unregister,
    scenario_lego_http01,
    scenario_lego_dns01_wildcard,
    scenario_lego_tls_alpn01,
    scenario_lego_revoke,
    scenario_uacme_newkey,
]

EAB: list[Scenario] = [
    scenario_certbot_eab,
    scenario_lego_eab,
    scenario_uacme_eab,
    scenario_eab_required_refuses_plain,
    scenario_eab_bad_credentials,
]


def scenario_id(scenario: Scenario) -> str:
    return scenario.__name__.removeprefix("scenario_")

"""Files the host modules write, computed on the controller: aliases, sender ownership, and
the version that decides how chasquid signs."""

import ast
import base64

import dkim as dkimpy
from cryptography.hazmat.primitives import serialization
from sample import sample_settings

from mailhost.facts import parse_debian_version
from mailhost.host.users import aliases, sender_owners
from mailhost.keys.dkim import generate_key
from mailhost.operations.files import render
from mailhost.secrets import Secret, Secrets

USERS = {"mail_users": ["alice@example.test", "bob@example.test"],
         "mail_aliases": {"sales@example.test": ["alice@example.test"],
                          "fwd@example.test": ["inbox@example.net"]}}


def secrets(alice="correct horse battery", bob="battery staple horse"):
    return Secrets(None, None, {"alice@example.test": Secret(alice),
                                "bob@example.test": Secret(bob)})


def test_aliases_add_postmaster_and_owners_cover_local_aliases_only():
    settings = sample_settings(**USERS)
    assert aliases(settings)["postmaster@example.test"] == ["alice@example.test"]
    owners = sender_owners(settings)
    assert owners["sales@example.test"] == ["alice@example.test"]
    assert "fwd@example.test" not in owners
    assert owners["bob@example.test"] == ["bob@example.test"]


def test_debian_versions_decide_native_dkim():
    assert parse_debian_version("1.11-2+b2") == (1, 11)
    assert parse_debian_version("1:1.14.0-1") == (1, 14)
    assert parse_debian_version("(none)") is None
    assert parse_debian_version("") is None
    assert parse_debian_version("1.11-2+b2") < (1, 14) <= parse_debian_version("1.15.1-1")


def test_chasquid_hook_hands_dkimpy_a_pkcs1_rsa_key():
    """The post-data hook signs with dkimpy; Ubuntu 22.04's (1.0.5) reads only PKCS#1,
    so the hook unwraps our PKCS#8 key: the same key as PKCS#1, and it signs."""
    hook = render("chasquid/post-data.py.j2", sample_settings(), owners={}, signing={})
    functions = [node for node in ast.parse(hook).body if isinstance(node, ast.FunctionDef)]
    namespace = {"base64": base64}
    exec(compile(ast.Module(functions, type_ignores=[]), "post-data", "exec"), namespace)
    pkcs8 = generate_key("rsa", 2048)
    der = base64.b64decode(b"".join(pkcs8.strip().splitlines()[1:-1]))
    pkcs1 = namespace["pkcs1_pem"](der)
    key = serialization.load_pem_private_key(pkcs8, None)
    wanted = key.private_bytes(serialization.Encoding.DER,
                               serialization.PrivateFormat.TraditionalOpenSSL,
                               serialization.NoEncryption())
    assert pkcs1.splitlines()[0] == b"-----BEGIN RSA PRIVATE " + b"KEY-----"  # PKCS#1 label
    assert base64.b64decode(b"".join(pkcs1.strip().splitlines()[1:-1])) == wanted
    signature = dkimpy.sign(b"From: a@example.test\r\n\r\nhi\r\n", b"mail", b"example.test",
                            pkcs1)
    assert signature.startswith(b"DKIM-Signature:")

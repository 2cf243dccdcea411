"""Sample host data for example.test, as an inventory would give it."""

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from lab.worlds import SAMPLE_HOST
from mailhost.settings import load_settings

BASE = SAMPLE_HOST  # one definition, shared with scripts/bench_dns.py


def sample_settings(**overrides):
    return load_settings({**BASE, **overrides})


def self_signed_pem(name: str, valid_from_days: int, valid_until_days: int):
    """A self-signed certificate for NAME, valid from/until that many days from now (negative:
    in the past): (certificate PEM, private key PEM, the certificate)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now + timedelta(days=valid_from_days))
                   .not_valid_after(now + timedelta(days=valid_until_days))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
                   .sign(key, hashes.SHA256()))
    return (certificate.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
            certificate)

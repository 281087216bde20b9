"""`modelfleet certs`: the fleet's own certificate authority and one certificate per service, from the
topology, into the folder that `TLS_DIR` in the .env names (default `certs` beside the .env).

Each service's certificate names its host's address, and a name its clients check it by whichever
host it is on: `inferrer` (the front checks any gateway by it), `modelhost` (a gateway's nginx checks
any node by it), `nginx`, `front`, `prometheus`. The CA is made once and kept: running the command
again after adding a node issues the missing certificates only (`--renew`: every one again).
Keys are EC P-256, mode 600.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from deploy.topology import Topology
from wire.tls import client_context

CA = "ca"
_CA_USAGE = x509.KeyUsage(
    digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
    key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
    decipher_only=False,
)  # fmt: skip
_VALID_DAYS = 825  # what clients accept for a server certificate at most


@dataclass(frozen=True)
class ServiceCert:
    name: str  # its files: <name>.crt and <name>.key
    names: tuple[str, ...]  # its subject alternative names: addresses and host names


def service_certs(topology: Topology) -> list[ServiceCert]:
    """Every service of the topology that serves TLS, with the names its clients check."""
    certs = [
        ServiceCert(f"inferrer-{i}", (host, "inferrer", "localhost"))
        for i, host in enumerate(topology.gateway_hosts, start=1)
    ]
    certs += [
        ServiceCert(f"nginx-{i}", (host, "nginx", "localhost"))
        for i, host in enumerate(topology.balancer_hosts, start=1)
    ]
    certs += [ServiceCert(node.id, (node.host, "modelhost", "localhost")) for node in topology.nodes]
    if topology.front_host:
        certs.append(ServiceCert("front", (topology.front_host, "front", "localhost")))
    certs.append(ServiceCert("prometheus", (topology.prometheus_host, "prometheus", "localhost")))
    return certs


def ca_file(topology: Topology) -> Path | None:
    """The fleet CA's certificate, when TLS is on."""
    return topology.tls_dir / f"{CA}.crt" if topology.tls_dir else None


def server_files(topology: Topology, service: str) -> tuple[Path, Path] | None:
    """(certificate, key) of a service (`inferrer-1`, `nginx-2`, `modelhost-3`, `front`, `prometheus`),
    when TLS is on."""
    if topology.tls_dir is None:
        return None
    return topology.tls_dir / f"{service}.crt", topology.tls_dir / f"{service}.key"


def verify(topology: Topology) -> ssl.SSLContext | bool:
    """What the command line's own clients verify the fleet's services by."""
    return client_context(ca_file(topology)) or True


def add_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    certs = commands.add_parser("certs", help="make the fleet's CA and a TLS certificate per service")
    certs.add_argument("--renew", action="store_true", help="issue every service's certificate again")


def run(topology: Topology, env_file: Path, renew: bool) -> int:
    directory = topology.tls_dir or (env_file.parent / "certs").resolve()
    made = write_certs(topology, directory, renew)
    print(f"{len(made)} certificates issued in {directory}: {', '.join(made) or 'none needed'}")
    if topology.tls_dir is None:
        print(f"turn TLS on: add TLS_DIR={directory} to {env_file}, and copy the folder to every host")
    return 0


def write_certs(topology: Topology, directory: Path, renew: bool = False) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca_key, ca_cert = _authority(directory)
    made = []
    for service in service_certs(topology):
        if renew or not (directory / f"{service.name}.crt").exists():
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _issue(service, key.public_key(), ca_key, ca_cert)
            _write_pair(directory, service.name, key, cert)
            made.append(service.name)
    return made


def _authority(directory: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key_file, cert_file = directory / f"{CA}.key", directory / f"{CA}.crt"
    if key_file.exists() and cert_file.exists():
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key, x509.load_pem_x509_certificate(cert_file.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "modelfleet fleet CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_pair(directory, CA, key, cert)
    return key, cert


def _issue(
    service: ServiceCert,
    public_key: ec.EllipticCurvePublicKey,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = []
    for name in dict.fromkeys(service.names):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, service.name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _write_pair(directory: Path, name: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
    key_file = directory / f"{name}.key"
    key_file.touch(mode=0o600)
    key_file.chmod(0o600)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (directory / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

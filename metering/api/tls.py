"""TLS server credentials that follow certificate files as they are replaced.

gRPC asks the fetcher for a configuration at each new connection's handshake;
it re-reads the files only when one of their modification times (or sizes)
changed, so a renewed certificate is served on the next connection without a
restart. Connections already open keep the certificate they shook hands with.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import grpc

log = logging.getLogger(__name__)


class CertificateFiles:
    """The certificate, key and optional client CA files, with their last-seen stamps."""

    def __init__(self, cert_file: Path, key_file: Path, client_ca_file: Path | None) -> None:
        self._files = (cert_file, key_file, client_ca_file)
        self._lock = threading.Lock()
        self._stamps = self._stamp()

    def _stamp(self) -> tuple[tuple[int, int] | None, ...]:
        stamps: list[tuple[int, int] | None] = []
        for path in self._files:
            if path is None:
                stamps.append(None)
                continue
            stat = path.stat()
            stamps.append((stat.st_mtime_ns, stat.st_size))
        return tuple(stamps)

    def configuration(self) -> Any:
        cert_file, key_file, ca_file = self._files
        return grpc.ssl_server_certificate_configuration(
            [(key_file.read_bytes(), cert_file.read_bytes())],
            root_certificates=ca_file.read_bytes() if ca_file is not None else None,
        )

    def fetch(self) -> Any:
        """A new configuration if the files changed since the last one, else None."""
        try:
            with self._lock:
                stamps = self._stamp()
                if stamps == self._stamps:
                    return None
                configuration = self.configuration()
                self._stamps = stamps
        except (OSError, ValueError, RuntimeError) as exc:
            # A half-written renewal: keep serving the previous certificate, retry next time.
            log.warning("TLS files changed but cannot be loaded yet: %s", exc)
            return None
        log.info("TLS certificate reloaded from %s", self._files[0])
        return configuration


def server_credentials(cert_file: Path, key_file: Path, client_ca_file: Path | None = None) -> Any:
    """Credentials for ``add_secure_port``; with a client CA, clients must present a
    certificate it signed (mutual TLS)."""
    files = CertificateFiles(cert_file, key_file, client_ca_file)
    return grpc.dynamic_ssl_server_credentials(
        files.configuration(),
        files.fetch,
        require_client_authentication=client_ca_file is not None,
    )


__all__ = ["CertificateFiles", "server_credentials"]

"""Network dependencies checked before work starts: a server that does not
answer is named in one line within seconds, rather than a run that hangs on
a library's retries.

Standard library only, so that the command line checks an address before it
imports the engines that would use it.
"""

from __future__ import annotations

import socket
from urllib.parse import urlparse

from dndx.errors import DndxError

__all__ = ["CONNECT_TIMEOUT_S", "check_reachable"]

#: How long a dependency has to accept a connection.
CONNECT_TIMEOUT_S = 3.0

_DEFAULT_PORTS = {"http": 80, "https": 443, "tcp": 8786, "tls": 8786}


def check_reachable(url: str, what: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse ``url`` (``http(s)://`` or a Dask ``tcp://`` / ``tls://``
    address) unless its host accepts a TCP connection within ``timeout_s``;
    other schemes (files, SQLite) are not network addresses and pass.

    Args:
        url: the address.
        what: where the address comes from, as the user set it (``--tracking-uri``).

    Raises:
        DndxError: the host is unknown, refuses, or does not answer in time.

    >>> check_reachable("sqlite:///mlflow.db", "--tracking-uri")
    >>> check_reachable("http://127.0.0.1:9/", "--tracking-uri")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dndx.errors.DndxError: --tracking-uri http://127.0.0.1:9/: no answer from 127.0.0.1:9 ...
    """
    parsed = urlparse(url)
    if parsed.scheme not in _DEFAULT_PORTS or not parsed.hostname:
        return
    port = parsed.port or _DEFAULT_PORTS[parsed.scheme]
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout_s):
            pass
    except OSError as error:
        reason = "timed out" if isinstance(error, TimeoutError) else error.strerror or error
        raise DndxError(
            f"{what} {url}: no answer from {parsed.hostname}:{port} within {timeout_s:g} s "
            f"({reason}); start the server or correct the address"
        ) from None

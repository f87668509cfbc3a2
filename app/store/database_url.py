"""MIRROR_NEURON_DATABASE_URL as operators write it, and failures told without its password.

SPEC C.3.4 and C.5.12: `postgresql://` and `postgres://` mean asyncpg, `sqlite:///path` means
aiosqlite; libpq-only query parameters are translated where asyncpg has an equivalent and refused
otherwise, naming the parameter. SQLAlchemy's asyncpg dialect hands every query parameter to
`asyncpg.connect()` as a keyword, so a parameter asyncpg does not take would only fail at the
first connection, with a TypeError.
"""

from __future__ import annotations

import contextlib
import re
from urllib.parse import quote, quote_plus

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
SQLITE_SCHEMES = ("sqlite", "sqlite+aiosqlite")
ACCEPTED = "postgresql://, postgres:// or sqlite:///"
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

# libpq parameters (PostgreSQL docs, "Parameter Key Words") that asyncpg.connect() does not take
# as keywords, with what to do instead. `host`, `port`, `passfile`, `target_session_attrs`,
# `krbsrvname` and `gsslib` are taken as they are; `sslmode` becomes `ssl` (same values).
_REFUSED = {
    "sslrootcert": "set the PGSSLROOTCERT environment variable instead",
    "sslcert": "set the PGSSLCERT environment variable instead",
    "sslkey": "set the PGSSLKEY environment variable instead",
    "sslpassword": "use a key without a passphrase",
    "connect_timeout": "asyncpg waits 60 s for a connection",
    "application_name": "it is not supported",
    "fallback_application_name": "it is not supported",
    "options": "set the server settings on the role or database (ALTER ROLE ... SET) instead",
    "client_encoding": "asyncpg always uses UTF8",
    "dbname": "put the database name in the URL's path",
    "user": "put the user name before the host (postgresql://user@host/db)",
    "password": "put the password before the host (postgresql://user:password@host/db)",
}
_LIBPQ_ONLY = (
    "hostaddr", "require_auth", "channel_binding", "keepalives", "keepalives_idle", "keepalives_interval",
    "keepalives_count", "tcp_user_timeout", "replication", "gssencmode", "requiressl", "sslcompression",
    "sslcertmode", "sslcrl", "sslcrldir", "sslsni", "requirepeer", "ssl_min_protocol_version",
    "ssl_max_protocol_version", "gssdelegation", "service", "load_balance_hosts",
)


class DatabaseUrlError(ValueError):
    """A database URL the service cannot use; the message never shows the password."""


def async_url(raw: str) -> str:
    """The SQLAlchemy async URL (asyncpg or aiosqlite) for a URL in any accepted form."""
    try:
        url = make_url(raw.strip())
    except (ArgumentError, ValueError):
        raise DatabaseUrlError(f"must be a {ACCEPTED} URL") from None
    scheme = url.drivername.lower()
    if scheme in SQLITE_SCHEMES:
        wanted = url.set(drivername="sqlite+aiosqlite")
    elif scheme in POSTGRES_SCHEMES:
        wanted = url.set(drivername="postgresql+asyncpg", query=_asyncpg_query(url))
    else:
        raise DatabaseUrlError(f"must be a {ACCEPTED} URL, not {scheme}://")
    if wanted == url:
        return raw.strip()  # already the async form: exactly as given
    return wanted.render_as_string(hide_password=False)


def _asyncpg_query(url: URL) -> dict[str, str | tuple[str, ...]]:
    query = dict(url.query)
    for name in query:
        if name in _REFUSED:
            raise DatabaseUrlError(f"query parameter {name!r} is not accepted by asyncpg: {_REFUSED[name]}")
        if name in _LIBPQ_ONLY:
            raise DatabaseUrlError(f"query parameter {name!r} is a libpq parameter asyncpg does not support")
    if "sslmode" in query:
        mode = query.pop("sslmode")
        if "ssl" in query:
            raise DatabaseUrlError("give either 'sslmode' or 'ssl', not both")
        if mode not in SSL_MODES:
            raise DatabaseUrlError(f"sslmode must be one of {', '.join(SSL_MODES)}, got {mode!r}")
        query["ssl"] = mode
    return query


def shown(url: str) -> str:
    """The URL as it may appear in a log: the password as `***`."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return redact(url, url)


_USERINFO = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def redact(text: str, url: str) -> str:
    """`text` with the URL's password, and the password of any `scheme://user:password@` in it, as `***`."""
    password = None
    with contextlib.suppress(ArgumentError, ValueError):
        password = make_url(url).password
    if password:
        for form in {str(password), quote(str(password), safe=""), quote_plus(str(password))}:
            text = text.replace(form, "***")
    return _USERINFO.sub(r"\1***@", text)


def failure(exc: BaseException, url: str) -> str:
    """What went wrong, for a log line: the innermost cause's type and message, password as `***`."""
    cause, seen = exc, [exc]
    while True:
        inner = getattr(cause, "orig", None) or cause.__cause__
        if not isinstance(inner, BaseException) or any(inner is s for s in seen):
            break
        cause = inner
        seen.append(cause)
    message = str(cause).strip() or "(no message)"
    return redact(f"{type(cause).__name__}: {message}", url)

"""`python -m app.healthcheck`: exit 0 when the node in this container answers ready (the image's HEALTHCHECK).

It asks the operations listener's `/readyz` when `MIRROR_NEURON_METRICS_PORT` is set (SPEC C.3.1),
else the API's `/api/v1/health/ready` (SPEC §2.4: the database answers and is migrated). A worker
with neither (`MIRROR_NEURON_API_ENABLED=0`, no operations listener) has nothing to ask: its container
lives exactly as long as its process (tini exits with it), so it reports healthy.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

_OFF = {"0", "false", "no", "off"}


def _reachable(host: str) -> str:
    """The address to call a listener bound to `host` on: a wildcard means this machine."""
    host = host.strip() or "0.0.0.0"
    if host in ("0.0.0.0", "*"):
        return "127.0.0.1"
    if host.strip("[]") == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def probe_url(env: Mapping[str, str]) -> str | None:
    """The URL that tells whether this container's node is ready, or None when there is none."""
    metrics_port = env.get("MIRROR_NEURON_METRICS_PORT")
    if metrics_port:
        host = _reachable(env.get("MIRROR_NEURON_METRICS_HOST", "127.0.0.1"))
        return f"http://{host}:{metrics_port}/readyz"
    if env.get("MIRROR_NEURON_API_ENABLED", "1").strip().lower() in _OFF:
        return None
    host = _reachable(env.get("MIRROR_NEURON_API_HOST", "127.0.0.1"))
    return f"http://{host}:{env.get('MIRROR_NEURON_API_PORT', '4000')}/api/v1/health/ready"


def main(env: Mapping[str, str] | None = None) -> int:
    """0 when ready (or nothing to ask), 1 otherwise, with the reason on stderr."""
    env = os.environ if env is None else env
    url = probe_url(env)
    if url is None:
        return 0
    request = urllib.request.Request(url)
    token = env.get("MIRROR_NEURON_API_TOKEN")
    if token and url.endswith("/api/v1/health/ready"):
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:
        print(f"not ready: {url} answered {exc.code}: {exc.read()[:300]!r}", file=sys.stderr)
    except (OSError, ValueError) as exc:
        print(f"not ready: {url}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())

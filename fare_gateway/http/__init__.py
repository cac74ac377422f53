"""The gateway's HTTP API (contract section 3): one blueprint per feature.

`create_app` wires them; `auth.require` is the one token check, `errors` the one error
format, `operations` how a view declares itself for `GET /openapi.json`.
"""

from __future__ import annotations

from fare_gateway.http.app import ApiDeps, create_app
from fare_gateway.http.auth import AuthFailures

__all__ = ["ApiDeps", "AuthFailures", "create_app"]

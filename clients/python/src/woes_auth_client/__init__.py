"""Client of the woes-auth service (package ``woes.auth.v1``)."""

ERROR_DOMAIN = "auth.woes"
"""The ``google.rpc.ErrorInfo.domain`` of every error the service returns."""

"""strongroom: a secrets manager and certificate authority that speaks Vault's HTTP API."""

__version__ = "0.1.0"

"""ACME (RFC 8555) inside the PKI engine: directories, accounts, orders, challenges.

Modules: ``problems`` (RFC 7807 documents), ``jws`` (request signatures, EAB),
``nonces`` (single-use Replay-Nonces shared by a node's workers), ``validation``
(http-01, dns-01, tls-alpn-01 with the address policy), ``state`` (stored accounts,
orders, authorizations), ``paths_acme`` (the protocol and operator paths).
"""

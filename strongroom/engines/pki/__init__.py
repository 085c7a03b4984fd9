"""PKI secrets engine (Vault's ``pki``): issuers, keys, roles, issuance, CRLs and OCSP."""

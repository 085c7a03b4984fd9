"""Secrets engines, one package or module per mount type."""

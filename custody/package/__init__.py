"""Evidence packages: BagIt bags (RFC 8493) carrying items with their signed history and proofs.
export writes them, verify checks them offline, importing brings them in; docs/PACKAGES.md."""

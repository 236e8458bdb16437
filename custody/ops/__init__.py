"""The operations (use cases): the only code combining the core with the storage ports and the
metadata readers. The CLI and the service call these."""

"""The HTTP service (`custody serve`): an ASGI app over the library's operations.

A layer above ops/search/report/package and below the CLI (docs/SERVICE.md).
"""

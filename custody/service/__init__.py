"""The HTTP service (`custody serve`): Starlette routes over the library's operations.

Each part is a factory of routes taking its dependencies explicitly (tiles.py: the public log).
"""

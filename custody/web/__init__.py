"""The web interface: server-rendered pages over the same operations as the CLI and the API.

Mounted at `/` by custody/service/app.py; docs/WEB.md says how to add a page.
"""

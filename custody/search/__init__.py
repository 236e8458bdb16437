"""Search and cross-reference over the derived index (the port: store/index_port.py).

indexer      ledger entries and metadata documents -> index rows; keeping the index current
consistency  verify's check of the index against a replay of the ledger
query        `custody search`: filters, and their evaluation through the port
crossref     `custody crossref`: items or incidents near a timed track
trackfile    opening a track file (format, limits, bounded lines); tracks: the parsers (pure)
times        capture-time keys, clocks of unknown offset, incident dates (pure)
render       results as JSON rows, GeoJSON and text tables
"""

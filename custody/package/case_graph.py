"""Items and their custody entries as a CASE 1.x / UCO graph (JSON-LD), for exchange with forensic
tools: pure, values in and a JSON-LD document out, with node IRIs that never change on re-export.

The patterns are CASE's published ones (casework/CASE-Examples, CASE 1.x / UCO 1.x; docs/CASE.md):
an item is a `uco-observable:File` with a `FileFacet` and a `ContentDataFacet` holding its
`uco-types:Hash`es; every ledger entry about an item is a `case-investigation:InvestigativeAction`
whose `uco-action:performer` is the `uco-identity:Identity` of the custodian who signed it, whose
`uco-action:instrument`s are `uco-tool:Tool`s, with its object, result and start time; a first
record's result is a `case-investigation:ProvenanceRecord` of the item.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from custody.core.custodians import Custodian
from custody.core.entry import Entry

CONTEXT = {
    "kb": "",  # set per archive: see base_iri
    "case-investigation": "https://ontology.caseontology.org/case/investigation/",
    "uco-action": "https://ontology.unifiedcyberontology.org/uco/action/",
    "uco-core": "https://ontology.unifiedcyberontology.org/uco/core/",
    "uco-identity": "https://ontology.unifiedcyberontology.org/uco/identity/",
    "uco-observable": "https://ontology.unifiedcyberontology.org/uco/observable/",
    "uco-tool": "https://ontology.unifiedcyberontology.org/uco/tool/",
    "uco-types": "https://ontology.unifiedcyberontology.org/uco/types/",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
}
# UCO's HashNameVocab spelling of the four digests every item carries (docs/FORMAT.md §5.4).
HASH_METHODS = {"md5": "MD5", "sha1": "SHA1", "sha256": "SHA256", "sha512": "SHA512"}
DERIVE_ACTIONS = ("derived", "derive")  # a derivative's first record (FORMAT.md §5.4.1, issue 18)
FIRST_RECORDS = ("ingest", "received", *DERIVE_ACTIONS)
KEY_ID_CONTEXT = ("custody key id: the first 16 bytes of SHA-256 over a tag and the Ed25519 "
                  "public key, hex (docs/FORMAT.md §4.1)")
PUBLIC_KEY_CONTEXT = "Ed25519 public key (RFC 8032), 32 bytes, base64"
ENTRY_CONTEXT = "custody ledger entry: RFC 9162 leaf hash, hex (docs/FORMAT.md §5.3)"


def base_iri(archive_key_id: str) -> str:
    """The namespace of one archive's nodes. `.invalid` (RFC 6761) never resolves and is nobody's
    domain; the archive key id keeps two archives' nodes apart."""
    return f"https://custody.invalid/archive/{archive_key_id}/"


@dataclass(frozen=True, slots=True)
class ItemRecord:
    """What the graph says of one item: its first record's facts and every entry about it."""

    sha256: str
    size: int
    digests: Mapping[str, str]
    mime: str | None
    names: tuple[str, ...]
    entries: tuple[Entry, ...]
    readers: Mapping[str, str] = field(default_factory=dict)  # from its verified metadata document


@dataclass(frozen=True, slots=True)
class Archive:
    """The archive the graph comes from, and the custody that writes the graph."""

    name: str
    origin: str
    key_id: str
    software_version: str
    custodians: Mapping[str, Custodian]
    leaf_hashes: Mapping[int, str]  # seq -> hex leaf hash, for each entry in the graph
    made_now: frozenset[int] = frozenset()  # entries appended by the export that writes the graph


class _Nodes:
    """The graph's nodes by IRI, each IRI a UUIDv5 of what the node stands for (stable)."""

    def __init__(self, archive_key_id: str) -> None:
        self.base = base_iri(archive_key_id)
        self.namespace = uuid.uuid5(uuid.NAMESPACE_URL, self.base)
        self.nodes: dict[str, dict[str, Any]] = {}

    def iri(self, kind: str, name: str) -> str:
        return f"kb:{kind}-{uuid.uuid5(self.namespace, f'{kind}:{name}')}"

    def add(self, node: dict[str, Any]) -> str:
        iri: str = node["@id"]
        self.nodes.setdefault(iri, node)
        return iri


def _ref(iri: str) -> dict[str, str]:
    return {"@id": iri}


def _time(value: str) -> dict[str, str]:
    return {"@type": "xsd:dateTime", "@value": value}


def _hex(value: str) -> dict[str, str]:
    return {"@type": "xsd:hexBinary", "@value": value}


def build(archive: Archive, items: Iterable[ItemRecord], case: str | None = None) -> dict[str, Any]:
    """The JSON-LD document (a CASE 1.x graph) of these items and their custody actions."""
    g = _Nodes(archive.key_id)
    records = list(items)
    known = {r.sha256: r for r in records}
    custody_then = g.add(_tool(g, "custody", None, "the custody release that signed the entry: "
                               "the ledger records the entry format (v1), not the release"))
    custody_now = g.add(_tool(g, "custody", archive.software_version,
                              "the custody release that wrote this graph"))
    about: dict[int, tuple[Entry, ItemRecord]] = {}
    for record in records:
        _file(g, record.sha256, record)
        for e in record.entries:
            about.setdefault(e.seq, (e, record))
    for seq in sorted(about):  # actions in the order of the log
        e, record = about[seq]
        tool = custody_now if seq in archive.made_now else custody_then
        _action(g, archive, e, tool, record, known)
    if case is not None:
        g.add({
            "@id": g.iri("investigation", case),
            "@type": "case-investigation:Investigation",
            "uco-core:name": case,
            "uco-core:description": f"case {case} of the archive {archive.name}",
            "uco-core:object": [_ref(i) for i in sorted(g.nodes)],
        })
    context = dict(CONTEXT, kb=g.base)
    return {"@context": context, "@graph": list(g.nodes.values())}  # made in a fixed order


def _tool(g: _Nodes, name: str, version: str | None, description: str) -> dict[str, Any]:
    node: dict[str, Any] = {
        "@id": g.iri("tool", f"{name}\0{version or ''}"),
        "@type": "uco-tool:Tool",
        "uco-core:name": name,
        "uco-core:description": description,
    }
    if version:
        node["uco-tool:version"] = version
    return node


def _file(g: _Nodes, sha256: str, record: ItemRecord | None) -> str:
    """The item as a File; an item outside the export (a derivative's original) by its SHA-256."""
    digests = dict(record.digests) if record else {"sha256": sha256}
    hashes = [
        {"@id": g.iri("hash", f"{method}:{digests[alg]}"), "@type": "uco-types:Hash",
         "uco-types:hashMethod": method, "uco-types:hashValue": _hex(digests[alg])}
        for alg, method in HASH_METHODS.items() if isinstance(digests.get(alg), str)
    ]
    content: dict[str, Any] = {
        "@id": g.iri("content-data-facet", sha256),
        "@type": "uco-observable:ContentDataFacet",
        "uco-observable:hash": hashes,
    }
    facets = [content]
    if record is not None:
        content["uco-observable:sizeInBytes"] = record.size
        if record.mime:
            content["uco-observable:mimeType"] = record.mime
        if record.names:
            facets.append({
                "@id": g.iri("file-facet", sha256),
                "@type": "uco-observable:FileFacet",
                "uco-observable:fileName": record.names[0],
                "uco-observable:sizeInBytes": record.size,
            })
    node: dict[str, Any] = {
        "@id": g.iri("file", sha256),
        "@type": "uco-observable:File",
        "uco-core:hasFacet": facets,
    }
    if record is not None and len(record.names) > 1:
        node["uco-core:description"] = "also seen at ingest as: " + ", ".join(record.names[1:])
    return g.add(node)


def _identity(g: _Nodes, archive: Archive, key_id: str) -> str:
    """A custodian, named by the key that signs for them (its key id and public key)."""
    who = archive.custodians.get(key_id)
    refs = [{"@id": g.iri("external-reference", f"key-id:{key_id}"),
             "@type": "uco-core:ExternalReference",
             "uco-core:definingContext": KEY_ID_CONTEXT, "uco-core:externalIdentifier": key_id}]
    node: dict[str, Any] = {"@id": g.iri("identity", key_id), "@type": "uco-identity:Identity"}
    if who is not None:
        node["uco-core:name"] = who.name
        node["uco-core:description"] = (
            f"custodian of the archive {archive.name} ({archive.origin}), role {who.role}, "
            f"enrolled by entry {who.enrolled_seq}"
            + (f", revoked by entry {who.revoked_seq}" if who.revoked_seq is not None else ""))
        refs.append({"@id": g.iri("external-reference", f"public-key:{key_id}"),
                     "@type": "uco-core:ExternalReference",
                     "uco-core:definingContext": PUBLIC_KEY_CONTEXT,
                     "uco-core:externalIdentifier": base64.b64encode(who.public_key).decode()})
    node["uco-core:externalReference"] = refs
    return g.add(node)


def _action(
    g: _Nodes, archive: Archive, e: Entry, custody_tool: str, record: ItemRecord,
    known: Mapping[str, ItemRecord],
) -> None:
    d = e.details
    leaf = archive.leaf_hashes.get(e.seq)
    node: dict[str, Any] = {
        "@id": g.iri("action", f"{e.seq}:{leaf or ''}"),
        "@type": "case-investigation:InvestigativeAction",
        "uco-core:name": e.action,
        "uco-core:description": _describe(e),
        "uco-action:startTime": _time(e.time),
        "uco-action:performer": _ref(_identity(g, archive, e.actor)),
        "uco-action:instrument": [_ref(custody_tool)],
        "uco-action:object": [_ref(g.iri("file", record.sha256))],
    }
    if leaf:
        node["uco-core:externalReference"] = [{
            "@id": g.iri("external-reference", f"entry:{e.seq}:{leaf}"),
            "@type": "uco-core:ExternalReference", "uco-core:definingContext": ENTRY_CONTEXT,
            "uco-core:externalIdentifier": leaf}]
    if e.action in FIRST_RECORDS:
        node["uco-action:result"] = [_ref(g.add({
            "@id": g.iri("provenance-record", f"{record.sha256}:{e.seq}"),
            "@type": "case-investigation:ProvenanceRecord",
            "uco-core:description": f"{record.sha256} recorded in {archive.name} "
                                    f"({archive.origin}) by entry {e.seq}",
            "uco-core:object": [_ref(g.iri("file", record.sha256))],
        }))]
        if e.action == "ingest":  # the metadata readers that ran on it, as its document says
            node["uco-action:instrument"] += [
                _ref(g.add(_tool(g, name, version, "metadata reader run by custody at ingest")))
                for name, version in sorted(record.readers.items())]
    if e.action == "transfer-offer" and isinstance(d.get("to"), str):
        node["uco-action:participant"] = [_ref(_identity(g, archive, d["to"]))]
    if e.action in ("transfer-accept", "transfer-withdraw") and isinstance(d.get("offer"), int):
        offer = next((x for x in record.entries if x.seq == d["offer"]), None)
        if offer is not None:
            node["case-investigation:wasInformedBy"] = [
                _ref(g.iri("action", f"{offer.seq}:{archive.leaf_hashes.get(offer.seq) or ''}"))]
            node["uco-action:participant"] = [_ref(_identity(g, archive, offer.actor))]
    if e.action in DERIVE_ACTIONS:
        _derivation(g, e, node, known, custody_tool)
    g.add(node)


def _derivation(
    g: _Nodes, e: Entry, node: dict[str, Any], known: Mapping[str, ItemRecord], custody_tool: str,
) -> None:
    """A derivative's entry: its original is the action's object, the derivative a result beside
    its provenance record, and each tool the entry names, with its version, an instrument (the
    versioned custody it names replaces the unversioned one). Read generically from the entry."""
    d = e.details
    original = next((_sha256_of(d[k]) for k in ("original", "from")
                     if _sha256_of(d.get(k))), None)
    if original and e.item:
        node["uco-action:object"] = [_ref(_file(g, original, known.get(original)))]
        node["uco-action:result"] = [*node.get("uco-action:result", []),
                                     _ref(_file(g, e.item, known.get(e.item)))]
    tools = _named_tools(d)
    if any(name == "custody" and version for name, version in tools):
        node["uco-action:instrument"].remove(_ref(custody_tool))
    for name, version in tools:
        node["uco-action:instrument"].append(_ref(g.add(_tool(
            g, name, version, "a program or library that made the derivative, as its signed "
                              "entry names it"))))


def _sha256_of(value: Any) -> str | None:
    """A SHA-256 named directly or as {"sha256": …}; else None."""
    if isinstance(value, dict):
        value = value.get("sha256")
    hexdigits = "0123456789abcdef"
    if isinstance(value, str) and len(value) == 64 and all(c in hexdigits for c in value):
        return value
    return None


def _named_tools(details: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """Tools an entry names: `tool`/`tools` as {"name", "version"} objects or plain names, and the
    same inside each of its `operations`."""
    found: list[tuple[str, str | None]] = []

    def take(value: Any) -> None:
        if isinstance(value, dict) and not isinstance(value.get("name"), str):  # name -> version
            value = [{"name": k, "version": v} for k, v in value.items()]
        for one in value if isinstance(value, list) else [value]:
            if isinstance(one, dict) and isinstance(one.get("name"), str):
                version = one.get("version")
                found.append((one["name"], str(version) if version is not None else None))
            elif isinstance(one, str) and one:
                found.append((one, None))

    for holder in [details, *(o for o in details.get("operations") or [] if isinstance(o, dict))]:
        take(holder.get("tool"))
        take(holder.get("tools"))
    return list(dict.fromkeys(found))


def _describe(e: Entry) -> str:
    """The entry in a line: what custody recorded besides who, what and when."""
    d = e.details
    parts = [f"custody ledger entry {e.seq} ({e.action})"]
    for key in ("kind", "format", "purpose", "destination", "case", "to", "offer", "reason",
                "attempted", "incident", "tag", "text", "original", "operations", "commands",
                "output"):
        value = d.get(key)
        if value not in (None, "", []):
            parts.append(f"{key}: {value}")
    source = d.get("source")
    if isinstance(source, dict) and source.get("name"):
        parts.append(f"source name (a claim): {source['name']}")
    return "; ".join(parts)

"""`custody export --format case`: a real archive's items and custody (real JPEGs ingested by a
field custodian, read, handed over) as a CASE/UCO graph that `case_validate` (case-utils) accepts,
with the triples a receiving tool relies on."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rdflib import Graph, Literal, Namespace, URIRef
from rdflib.namespace import RDF, XSD

from custody.core.custodians import Custodian
from custody.core.entry import Entry
from custody.package import case_graph

from .conftest import DATA, Cli, one_line_error

PHOTOS = [DATA / "media" / "aleppo-gps.jpg", DATA / "media" / "carbon-south-west.jpg"]
CASE = "ALEPPO-2016"
CORE = Namespace("https://ontology.unifiedcyberontology.org/uco/core/")
ACTION = Namespace("https://ontology.unifiedcyberontology.org/uco/action/")
OBS = Namespace("https://ontology.unifiedcyberontology.org/uco/observable/")
TYPES = Namespace("https://ontology.unifiedcyberontology.org/uco/types/")
TOOL = Namespace("https://ontology.unifiedcyberontology.org/uco/tool/")
INV = Namespace("https://ontology.caseontology.org/case/investigation/")


@pytest.fixture(scope="module")
def story(tmp_path_factory) -> Cli:
    """Alice (admin) enrols Farah (field), Ivan (investigator), Rami (reviewer); Farah ingests two
    photos under a case; Ivan reads one; Alice hands the other over to Ivan, who accepts."""
    tmp = tmp_path_factory.mktemp("case-export")
    cli = Cli(tmp, tmp / "A", tmp / "keys" / "alice.key")
    cli.ids = {"alice": cli("key", "new", "--name", "Alice Admin", "--json", check=True)
               .json()["key_id"]}
    cli("init", "--name", "Syrian Documentation Centre", check=True)
    keys = {}
    for name, role in [("Farah Field", "field"), ("Ivan Investigator", "investigator"),
                       ("Rami Reviewer", "reviewer")]:
        who = name.split()[0].lower()
        keys[who] = tmp / "keys" / f"{who}.key"
        info = cli("key", "new", "--name", name, "-o", keys[who], "--json", check=True).json()
        cli("enroll", str(keys[who]) + ".pub", "--role", role, check=True)
        cli.ids[who] = info["key_id"]
    cli.as_ = lambda who: {"CUSTODY_KEY": str(keys[who])}
    card = tmp / "card"
    card.mkdir()
    for p in PHOTOS:
        shutil.copy(p, card / p.name.upper())
    cli("ingest", card, "--case", CASE, env=cli.as_("farah"), check=True)
    cli.items = [hashlib.sha256(p.read_bytes()).hexdigest() for p in PHOTOS]
    cli("get", cli.items[0][:12], "--purpose", "geolocation check", "-o", tmp / "copy.jpg",
        env=cli.as_("ivan"), check=True)
    offer = cli("transfer", cli.items[1][:12], "--to", "Ivan Investigator", "--purpose",
                "handover to the legal team", "--json", check=True).json()
    cli("accept", str(offer[0]["offer"]), env=cli.as_("ivan"), check=True)
    cli.graph = tmp / "aleppo.jsonld"
    cli.export = cli("export", "--case", CASE, "--purpose", "exchange with the UN mechanism",
                     "--format", "case", "-o", cli.graph, "--json", env=cli.as_("ivan"),
                     check=True).json()
    return cli


@pytest.fixture(scope="module")
def graph(story) -> Graph:
    return Graph().parse(story.graph, format="json-ld")


def _log(cli: Cli) -> list[dict]:
    return [json.loads(x) for x in cli("log", "--json", check=True).stdout.splitlines()]


def _actions(g: Graph, name: str) -> list[URIRef]:
    return [a for a in g.subjects(RDF.type, INV.InvestigativeAction)
            if g.value(a, CORE.name) == Literal(name)]


def _key_id(g: Graph, identity) -> str:
    refs = [g.value(r, CORE.externalIdentifier) for r in g.objects(identity, CORE.externalReference)
            if "key id" in str(g.value(r, CORE.definingContext))]
    assert len(refs) == 1
    return str(refs[0])


def test_the_case_graph_of_a_real_archive_passes_case_validate(story):
    """case-utils' own validator (SHACL, the CASE ontology it ships): run once, it is slow."""
    # the environment's own script (beside this Python), which PATH need not name
    validate = Path(sys.executable).parent / "case_validate"
    done = subprocess.run([str(validate) if validate.exists() else "case_validate",
                           str(story.graph)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "Conforms: True" in done.stdout


def test_every_item_carries_its_four_digests_as_uco_hashes(graph, story):
    for path, sha in zip(PHOTOS, story.items, strict=True):
        data = path.read_bytes()
        want = {"MD5": hashlib.md5(data).hexdigest(), "SHA1": hashlib.sha1(data).hexdigest(),
                "SHA256": sha, "SHA512": hashlib.sha512(data).hexdigest()}
        files = [f for f in graph.subjects(RDF.type, OBS.File)
                 for facet in graph.objects(f, CORE.hasFacet)
                 for h in graph.objects(facet, OBS.hash)
                 if graph.value(h, TYPES.hashValue) == Literal(sha, datatype=XSD.hexBinary)]
        assert len(set(files)) == 1, f"one File with SHA-256 {sha}"
        got = {}
        for facet in graph.objects(files[0], CORE.hasFacet):
            if (facet, RDF.type, OBS.ContentDataFacet) in graph:
                assert graph.value(facet, OBS.sizeInBytes).toPython() == len(data)
                assert str(graph.value(facet, OBS.mimeType)) == "image/jpeg"
                for h in graph.objects(facet, OBS.hash):
                    assert (h, RDF.type, TYPES.Hash) in graph
                    got[str(graph.value(h, TYPES.hashMethod))] = str(graph.value(h, TYPES.hashValue))
            else:
                assert str(graph.value(facet, OBS.fileName)) == path.name.upper()
        assert got == want


def test_each_ingest_action_is_performed_by_the_custodian_who_signed_it(graph, story):
    ingests = _actions(graph, "ingest")
    assert len(ingests) == 2
    for action in ingests:
        performer = graph.value(action, ACTION.performer)
        assert _key_id(graph, performer) == story.ids["farah"]
        assert str(graph.value(performer, CORE.name)) == "Farah Field"
        (result,) = graph.objects(action, ACTION.result)  # the item's provenance record
        assert (result, RDF.type, INV.ProvenanceRecord) in graph
        assert graph.value(result, CORE.object) == graph.value(action, ACTION.object)
        tools = {str(graph.value(t, CORE.name)) for t in graph.objects(action, ACTION.instrument)}
        assert {"custody", "python-magic"} <= tools  # metadata readers, with versions
        # ExifTool for a full reading; exifread and the marker walk on the fast path (its full
        # ExifTool reading comes later, in its own `enriched` entry)
        assert tools & {"exiftool", "exifread"}, tools
        assert graph.value(action, ACTION.startTime).datatype == XSD.dateTime


def test_access_transfer_and_this_export_are_actions_with_their_people(graph, story):
    def one(name, **details):
        found = [a for a in _actions(graph, name)
                 if all(f"{k}: {v}" in str(graph.value(a, CORE.description))
                        for k, v in details.items())]
        assert len(found) == 1, (name, details)
        return found[0]

    def who(action, prop=ACTION.performer):
        return _key_id(graph, graph.value(action, prop))

    get = one("access", kind="get", purpose="geolocation check")
    assert who(get) == story.ids["ivan"]
    offer = one("transfer-offer")
    assert who(offer) == story.ids["alice"] and who(offer, ACTION.participant) == story.ids["ivan"]
    accept = one("transfer-accept")
    assert who(accept) == story.ids["ivan"] and who(accept, ACTION.participant) == story.ids["alice"]
    assert graph.value(accept, INV.wasInformedBy) == offer
    # the export itself: one logged access per item, made with this custody release
    exports = [a for a in _actions(graph, "access") if "format: case" in
               str(graph.value(a, CORE.description))]
    assert len(exports) == 2 and {who(a) for a in exports} == {story.ids["ivan"]}
    for a in exports:
        (tool,) = graph.objects(a, ACTION.instrument)
        assert str(graph.value(tool, CORE.name)) == "custody" and graph.value(tool, TOOL.version)
    log = [e for e in _log(story) if e["action"] == "access" and e["kind"] == "export"]
    assert [e["seq"] for e in log] == story.export["entries"]
    assert {e["details"]["format"] for e in log} == {"case"}
    assert {e["details"]["destination"] for e in log} == {str(story.graph)}
    # every custodian in the graph is named by key id and public key
    for identity in graph.subjects(RDF.type, URIRef(
            "https://ontology.unifiedcyberontology.org/uco/identity/Identity")):
        contexts = {str(graph.value(r, CORE.definingContext))
                    for r in graph.objects(identity, CORE.externalReference)}
        assert any("public key" in c for c in contexts) and any("key id" in c for c in contexts)


def test_a_re_export_keeps_every_node_iri(graph, story):
    again = story.tmp / "again.jsonld"
    story("export", *story.items, "--purpose", "second copy", "--format", "case", "-o", again,
          env=story.as_("ivan"), check=True)
    later = Graph().parse(again, format="json-ld")
    before = set(graph.subjects()) - {s for s in graph.subjects(RDF.type, INV.Investigation)}
    assert before <= set(later.subjects())  # the new access entries add nodes, change none
    for f in graph.subjects(RDF.type, OBS.File):
        assert set(graph.triples((f, None, None))) == set(later.triples((f, None, None)))


def test_case_export_refuses_bad_input_in_one_line_and_records_nothing(story):
    before = len(_log(story))
    ivan = story.as_("ivan")
    bad = story("export", "--case", CASE, "--purpose", "p", "--format", "xml", "-o",
                story.tmp / "x.jsonld", env=ivan)
    assert bad.code == 2 and "unknown --format 'xml'" in one_line_error(bad)
    blocker = story.tmp / "a-file"
    blocker.write_text("not a folder")
    bad = story("export", "--case", CASE, "--purpose", "p", "--format", "case", "-o",
                blocker / "x.jsonld", env=ivan)
    assert bad.code == 3 and "x.jsonld" in one_line_error(bad)
    bad = story("export", "--case", CASE, "--purpose", "p", "--format", "case", "-o",
                Path("/proc/custody-case.jsonld"), env=ivan)
    assert bad.code == 3 and "cannot write /proc/custody-case.jsonld" in one_line_error(bad)
    bad = story("export", "--case", CASE, "--purpose", "p", "--format", "case", "-o",
                story.tmp / "x.txt", env=ivan)
    assert bad.code == 2 and "FILE.jsonld" in one_line_error(bad)
    assert len(_log(story)) == before
    # a reviewer may read content but not send its record away: refused, and the refusal logged
    bad = story("export", "--case", CASE, "--purpose", "p", "--format", "case", "-o",
                story.tmp / "r.jsonld", env=story.as_("rami"))
    assert bad.code == 3 and "may not export" in one_line_error(bad)
    assert [e["action"] for e in _log(story)[before:]] == ["refused"]
    assert not (story.tmp / "r.jsonld").exists()


def test_a_derived_entry_maps_to_original_derivative_and_tools():
    """A `derived` entry as the derive work documents it (docs/FORMAT.md §5.4.1 on its branch),
    read generically: the original is the action's object, the derivative its result beside its
    provenance record, and every tool it names, with its version, an instrument."""
    original, derivative = "a" * 64, "b" * 64
    alice = Custodian("c" * 32, bytes(32), "Alice Admin", "admin", 1)
    derived = Entry("custody.archive/x", 9, "2026-11-29T10:00:00.000000Z", alice.key_id,
                    "derived", derivative,
                    {"digests": {"sha256": derivative}, "size": 10, "mime": "image/png",
                     "original": original, "source": {"name": "IMG_0001.derived.png"},
                     "access": 8, "purpose": "publication: faces redacted",
                     "operations": [{"op": "redact", "boxes": [[1, 2, 3, 4]], "fill": "#000000"},
                                    {"op": "strip-metadata"}],
                     "tools": {"custody": "0.1.0", "Pillow": "13.0.0"}, "commands": [],
                     "output": {"format": "png"}, "case": None}, None)
    record = case_graph.ItemRecord(derivative, 10, {"sha256": derivative}, "image/png",
                                   ("IMG_0001.derived.png",), (derived,))
    doc = case_graph.build(case_graph.Archive("A", "custody.archive/x", "d" * 32, "0.2.0",
                                              {alice.key_id: alice}, {9: "e" * 64}), [record])
    g = Graph().parse(data=json.dumps(doc), format="json-ld")
    (action,) = _actions(g, "derived")
    hashed = {str(g.value(h, TYPES.hashValue)): f for f in g.subjects(RDF.type, OBS.File)
              for facet in g.objects(f, CORE.hasFacet) for h in g.objects(facet, OBS.hash)}
    assert g.value(action, ACTION.object) == hashed[original]  # known by its SHA-256 alone
    results = set(g.objects(action, ACTION.result))
    assert hashed[derivative] in results
    assert any((r, RDF.type, INV.ProvenanceRecord) in g for r in results)
    tools = {(str(g.value(t, CORE.name)), str(g.value(t, TOOL.version)))
             for t in g.objects(action, ACTION.instrument)}
    assert tools == {("custody", "0.1.0"), ("Pillow", "13.0.0")}
    assert _key_id(g, g.value(action, ACTION.performer)) == alice.key_id
    assert "redact" in str(g.value(action, CORE.description))

"""C2PA provenance: a file's Content Credentials read and validated by c2pa-python, in the worker.

`read_c2pa` runs in the metadata worker (offline: no remote manifest, no OCSP, no network host);
the rest are pure functions over the record, used by show, reports and search (docs/METADATA.md).
"""

from __future__ import annotations

import json
from typing import Any

from .record import one_line, safe_text

# What c2pa says when a signer is not on a trust list: information, not a failure (none is set by
# default). Every other `failure` code is shown as a failure.
UNTRUSTED_CODES = frozenset({
    "signingCredential.untrusted", "cawg.x509.credential.untrusted", "timeStamp.untrusted",
})
C2PA_LABEL = b"c2pa"
MAX_STORE_CHARS = 2_000_000  # a manifest store's JSON kept whole up to this size
_SAFE_INT = 2**53 - 1  # RFC 8785 numbers: larger integers are kept as text
VERDICTS = ("trusted", "valid", "invalid", "unreadable", "none")


def settings(trust_anchors: str | None) -> dict[str, Any]:
    """c2pa settings: validate offline, trust only the anchors given (none by default)."""
    config: dict[str, Any] = {
        "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
        "core": {"allowed_network_hosts": []},
    }
    if trust_anchors:
        config["trust"] = {"trust_anchors": trust_anchors}
    return config


def c2pa_version() -> str:
    try:
        from importlib import metadata as dist  # here: importing it costs search ~20 ms

        import c2pa

        return f"{dist.version('c2pa-python')} (c2pa-rs {c2pa.sdk_version()})"
    except Exception as error:  # the native library would not load: said on every file
        return f"unavailable ({one_line(error)})"


def read_c2pa(path: str, trust: dict[str, Any] | None, version: str) -> dict[str, Any]:
    """The worker's C2PA report on one file: {"version", "provenance" (or None), "errors"}."""
    try:
        import c2pa
    except Exception as error:  # e.g. the native library cannot be mapped under the memory limit
        return {"version": None, "provenance": None, "errors": [one_line(error)]}
    anchors = (trust or {}).get("pem")
    try:
        context = _context(c2pa, anchors)
        with open(path, "rb") as stream:
            reader = c2pa.Reader.try_create(None, stream, context=context)  # format from the bytes
            if reader is None:  # no manifest: nothing to record
                return {"version": version, "provenance": None, "errors": []}
            with reader:
                store_json = reader.json()
                certificates = _certificates(reader)
                chain, chain_error = _signer_chain(reader)
    except Exception as error:
        unparsed = "could not be parsed" in str(error)
        if type(error).__name__ == "_C2paNotSupported" or (unparsed and not _mentions_c2pa(path)):
            # A format C2PA does not cover, or a container c2pa cannot parse (damaged, or one it
            # reads more strictly than ExifTool) with no C2PA label anywhere in it: no manifest
            # to report, and the container's damage is ExifTool's to report.
            return {"version": version, "provenance": None, "errors": []}
        # A manifest that cannot be read (damaged, or remote and we stay offline) is recorded
        # as such: a reviewer sees that the file claims provenance nobody could check here.
        found = {"validation_state": None, "error": one_line(error),
                 "trust_anchors": (trust or {}).get("sha256", [])}  # fmt: skip
        return {"version": version, "provenance": found, "errors": [one_line(error)]}
    found = summary(json.loads(store_json), certificates)
    found["signer_chain"] = chain
    found["trust_anchors"] = (trust or {}).get("sha256", [])
    if len(store_json) <= MAX_STORE_CHARS:
        found["manifest_store_json"] = safe_text(store_json)
    else:
        found["manifest_store_json"] = None
        found["manifest_store_skipped"] = f"(skipped: {len(store_json)} characters)"
    return {"version": version, "provenance": found, "errors": chain_error}


_CONTEXTS: dict[str | None, Any] = {}  # c2pa Contexts by trust anchors, one per worker process


def _context(c2pa: Any, anchors: str | None) -> Any:
    """The c2pa Context of these settings, made once: building one parses its settings again
    (about half of c2pa's time on a file without a manifest). c2pa lets Readers share one."""
    context = _CONTEXTS.get(anchors)
    if context is None or not context.is_valid:
        context = _CONTEXTS[anchors] = c2pa.Context.from_dict(settings(anchors))
    return context


def _signer_chain(reader: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """The signing certificates (PEM, subject, issuer, serial, validity), signer first."""
    from . import cose_chain  # cbor2 and X.509 only where a manifest is read (the worker)

    try:
        active = reader.get_active_manifest() or {}
        chain = [cose_chain.describe(pem)
                 for pem in cose_chain.signing_chain(reader, active["label"])]  # fmt: skip
        return chain, [] if chain else ["certificate chain: no x5chain found in the signature"]
    except Exception as error:  # the manifest is still reported; only the chain is missing
        return [], [f"certificate chain: {one_line(error)}"]


def _mentions_c2pa(path: str) -> bool:
    """Whether the bytes hold the label every C2PA manifest store carries ("c2pa", the JUMBF
    label and box type): read only when c2pa failed, in chunks."""
    tail = b""
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                if C2PA_LABEL in tail + chunk:
                    return True
                tail = chunk[-(len(C2PA_LABEL) - 1):]
    except OSError:
        return True  # could not look: say what c2pa said
    return False


def _certificates(reader: Any) -> list[dict[str, Any]]:
    """The active manifest's signing and time-stamp certificates, as c2pa's crJSON describes them
    (c2pa-python gives no certificate bytes: subject, issuer, serial and validity are kept)."""
    try:
        crjson = json.loads(reader.crjson())
    except Exception:  # an older library without crJSON: the signer fields still stand
        return []
    label = reader.get_active_manifest()
    active = label.get("label") if isinstance(label, dict) else None
    out = []
    for manifest in crjson.get("manifests") or []:
        if not isinstance(manifest, dict) or manifest.get("label") != active:
            continue
        signature = manifest.get("signature") or {}
        for role, info in (("signer", signature.get("certificateInfo")),
                           ("timestamp", (signature.get("timeStampInfo") or {})
                            .get("certificateInfo"))):  # fmt: skip
            if isinstance(info, dict):
                validity = info.get("validity") or {}
                out.append({"role": role, "subject": info.get("subject"),
                            "issuer": info.get("issuer"), "serial": info.get("serialNumber"),
                            "not_before": validity.get("notBefore"),
                            "not_after": validity.get("notAfter")})  # fmt: skip
    return _json_safe(out)  # type: ignore[no-any-return]


def summary(store: dict[str, Any], certificates: list[dict[str, Any]]) -> dict[str, Any]:
    """The fields a reviewer reads first, taken from c2pa's manifest store JSON (Reader.json)."""
    label = store.get("active_manifest")
    manifests = store.get("manifests") or {}
    active = manifests.get(label) or {} if isinstance(manifests, dict) else {}
    assertions = [a for a in active.get("assertions") or [] if isinstance(a, dict)]
    actions = [action for a in assertions if str(a.get("label", "")).startswith("c2pa.actions")
               for action in (a.get("data") or {}).get("actions") or []]  # fmt: skip
    identities = [a.get("data") for a in assertions
                  if str(a.get("label", "")).startswith("cawg.identity")]  # fmt: skip
    ingredients = [
        {"title": i.get("title"), "format": i.get("format"),
         "relationship": i.get("relationship"), "active_manifest": i.get("active_manifest"),
         "validation_status": i.get("validation_status") or [],
         "validation_results": i.get("validation_results")}  # fmt: skip
        for i in active.get("ingredients") or [] if isinstance(i, dict)
    ]
    codes = status_codes(store.get("validation_results") or {})
    generator = active.get("claim_generator") or ", ".join(
        " ".join(str(v) for v in (g.get("name"), g.get("version")) if v)
        for g in active.get("claim_generator_info") or [] if isinstance(g, dict)
    ) or None
    return _json_safe({  # type: ignore[no-any-return]
        "validation_state": store.get("validation_state"),
        "validation_status": codes,
        "failures": [c["code"] for c in codes
                     if c["result"] == "failure" and c["code"] not in UNTRUSTED_CODES],
        "active_manifest": label,
        "claim_generator": generator,
        "claim_generator_info": active.get("claim_generator_info"),
        "title": active.get("title"),
        "signer": active.get("signature_info"),
        "certificates": certificates,
        "actions": actions,
        "ingredients": ingredients,
        "identities": identities,
        "manifests": len(manifests) if isinstance(manifests, dict) else 0,
    })


def status_codes(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every validation status code c2pa reported, success and informational included, each with
    its `result` and, for an ingredient's, the ingredient assertion it belongs to."""
    scopes = [(None, results.get("activeManifest") or {})]
    for delta in results.get("ingredientDeltas") or []:
        if isinstance(delta, dict):
            deltas = delta.get("validationDeltas") or {}
            scopes.append((delta.get("ingredientAssertionURI"), deltas))
    out = []
    for ingredient, scope in scopes:
        for result in ("failure", "informational", "success"):
            for status in scope.get(result) or []:
                if isinstance(status, dict):
                    code = {"code": status.get("code"), "url": status.get("url"),
                            "explanation": status.get("explanation"), "result": result}
                    if ingredient:
                        code["ingredient"] = ingredient
                    out.append(code)
    return out


def _json_safe(value: Any) -> Any:
    """Integers beyond RFC 8785's exact range become text, so the record stays signable."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _SAFE_INT:
        return str(value)
    return value


# ---- read by show, reports and search -------------------------------------------------------


def c2pa_of(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    """The C2PA part of a metadata document, or None when the file carries no manifest."""
    found = ((doc or {}).get("provenance") or {}).get("c2pa")
    return found if isinstance(found, dict) else None


def verdict(doc: dict[str, Any] | None) -> str:
    """One word for lists and filters: trusted, valid, invalid, unreadable or none."""
    found = c2pa_of(doc)
    if found is None:
        return "none"
    state = found.get("validation_state")
    if state is None:
        return "unreadable"
    if state == "Invalid" or found.get("failures"):
        return "invalid"
    return "trusted" if state == "Trusted" else "valid"


def describe(found: dict[str, Any]) -> str:
    """One line for people: the state as c2pa said it, what failed, who signed."""
    if found.get("validation_state") is None:
        return f"manifest could not be validated: {found.get('error') or 'unknown reason'}"
    state = str(found["validation_state"])
    failures = found.get("failures") or []
    text = f"INVALID ({state}): {', '.join(failures)}" if failures or state == "Invalid" else state
    signer = found.get("signer") or {}
    who = " / ".join(str(signer[k]) for k in ("common_name", "issuer") if signer.get(k))
    untrusted = any(c.get("code") in UNTRUSTED_CODES and c.get("result") == "failure"
                    for c in found.get("validation_status") or [])  # fmt: skip
    if who:
        text += f"; signed by {who}" + (" (signer not on a trust list)" if untrusted else "")
    return text

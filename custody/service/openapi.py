"""The OpenAPI 3.1 document: built from the operations each route declares beside its handler."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
    }},
}


def error_responses(*statuses: int) -> dict[str, Any]:
    reasons = {400: "Bad request", 401: "Not signed, badly signed, expired, replayed or by no "
               "active custodian", 403: "The caller's role may not do this", 404: "Not found",
               405: "Method not allowed", 413: "Body too large", 422: "Refused (a statement, "
               "a verification)", 429: "Rate limited", 500: "Internal error (no detail)",
               503: "The archive cannot be opened now"}
    return {str(s): {"description": reasons.get(s, "Error"), "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        for s in statuses}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def query(name: str, schema: dict[str, Any], description: str = "",
          required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema,
            "description": description}


def path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "string", "minLength": 1}, "description": description}


@dataclass
class Operation:
    """One route's method, path and OpenAPI operation object."""

    method: str
    path: str
    summary: str
    responses: dict[str, Any]
    parameters: list[dict[str, Any]] = field(default_factory=list)
    request_body: dict[str, Any] | None = None
    signed: bool = True

    def to_json(self) -> dict[str, Any]:
        errors = (400, 401, 403, 404, 413, 422, 429, 500, 503) if self.signed else (400, 404, 500)
        out: dict[str, Any] = {
            "summary": self.summary,
            "operationId": f"{self.method}_{self.path}".replace("/", "_").replace("{", "")
            .replace("}", "").replace("-", "_"),
            "responses": {**error_responses(*errors), **self.responses},
        }
        if self.parameters:
            out["parameters"] = self.parameters
        if self.request_body is not None:
            out["requestBody"] = self.request_body
        if self.signed:
            out["security"] = [{"httpSignature": []}]
        return out


def document(title: str, version: str, operations: list[Operation]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method] = op.to_json()
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "custody's HTTP service (docs/SERVICE.md). Every /api/v1 request "
                 "is signed with RFC 9421 HTTP Message Signatures by a custodian's Ed25519 key."},
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {"httpSignature": {
                "type": "apiKey", "in": "header", "name": "Signature",
                "description": "RFC 9421 signature labelled `custody` with tag "
                "`custody-request`, keyid = custodian key id, alg ed25519, covering @method, "
                "@target-uri and content-digest (RFC 9530) with a body, with created and nonce; "
                "docs/SERVICE.md"}},
        },
    }

"""The facade's OpenAPI 3.1 document, with request schemas generated from the pydantic models."""

from __future__ import annotations


def _envelope(ok: bool, key: str, body: dict) -> dict:
    """{"ok": true, "data": ...} or {"ok": false, "error": ...}."""
    return {"type": "object", "required": ["ok", key], "properties": {"ok": {"const": ok}, key: body}}


_ERROR = _envelope(False, "error", {
    "type": "object",
    "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}},
})

_CREATED = _envelope(True, "data", {
    "type": "object",
    "required": ["publisher", "subscriber", "room_name", "stream_url", "control_url"],
    "properties": {
        "session_id": {"type": "string"},
        "publisher": {"type": "array", "items": {"type": "string"}, "description": "publisher JWTs"},
        "subscriber": {"type": "array", "items": {"type": "string"}, "description": "subscriber JWTs"},
        "room_name": {"type": "string"},
        "stream_url": {"type": "string", "description": "LiveKit URL to connect to with a token"},
        "control_url": {"type": "string", "description": "WebSocket of the translation control API"},
        "expires_at": {"type": "string", "format": "date-time"},
        "worker_ready": {"type": "boolean"},
    },
})


_PALABRA_CREATED = _envelope(True, "data", {
    "type": "object",
    "required": ["id", "publisher", "subscriber", "webrtc_room_name", "webrtc_url", "ws_url"],
    "properties": {
        "id": {"type": "string", "description": "session id (DELETE /session-storage/sessions/{id})"},
        "publisher": {"type": "string", "description": "the publisher JWT"},
        "subscriber": {"type": "array", "items": {"type": "string"}, "description": "subscriber JWTs"},
        "webrtc_room_name": {"type": "string"},
        "webrtc_url": {"type": "string", "description": "LiveKit URL"},
        "ws_url": {"type": "string", "description": "control WebSocket; append ?token=<publisher>"},
        "expires_at": {"type": "string", "format": "date-time"},
    },
})


def _errors(*statuses: int) -> dict:
    return {str(s): {"description": "error", "content": {"application/json": {"schema": _ERROR}}} for s in statuses}


def openapi_document(create_model, palabra_create_model) -> dict:
    auth = [{"ClientID": [], "ClientSecret": []}]
    session_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    ok_any = {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Lingo Operator session storage API", "version": "v1alpha1"},
        "components": {
            "securitySchemes": {
                "ClientID": {"type": "apiKey", "in": "header", "name": "ClientID"},
                "ClientSecret": {"type": "apiKey", "in": "header", "name": "ClientSecret"},
            },
            "schemas": {"CreateSessionRequest": create_model.model_json_schema(by_alias=False),
                        "PalabraCreateSessionRequest": palabra_create_model.model_json_schema(by_alias=False),
                        "Error": _ERROR},
        },
        "paths": {
            "/session-storage/sessions": {
                "post": {
                    "summary": "Create a translation session and return its tokens",
                    "security": auth,
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/CreateSessionRequest"}}}},
                    "responses": {"200": {"description": "session ready to join",
                                          "content": {"application/json": {"schema": _CREATED}}},
                                  **_errors(401, 413, 422, 429, 503)},
                },
                "get": {"summary": "List this client's sessions", "security": auth,
                        "responses": {"200": ok_any, **_errors(401)}},
            },
            "/session-storage/session": {
                "post": {
                    "summary": "Create a session, Palabra's route and shape (for Palabra's SDKs); one publisher "
                               "by default. Wrong credentials are a 404 here, as on Palabra's API",
                    "security": auth,
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/PalabraCreateSessionRequest"}}}},
                    "responses": {"200": {"description": "session ready to join",
                                          "content": {"application/json": {"schema": _PALABRA_CREATED}}},
                                  **_errors(404, 413, 422, 429, 503)},
                },
            },
            "/session-storage/sessions/{id}": {
                "parameters": [session_id],
                "get": {"summary": "Describe one session", "security": auth,
                        "responses": {"200": ok_any, **_errors(401, 403, 404)}},
                "delete": {"summary": "Delete a session (room, tokens and worker go with it)", "security": auth,
                           "responses": {"200": ok_any, **_errors(401, 403, 404)}},
            },
            "/session-storage/sessions/{id}/tokens": {
                "parameters": [session_id],
                "get": {"summary": "The session's publisher and subscriber tokens (as its create answered)",
                        "security": auth, "responses": {"200": ok_any, **_errors(401, 403, 404)}},
            },
            "/session-storage/sessions/{id}/control": {
                "parameters": [session_id, {"name": "token", "in": "query", "schema": {"type": "string"}}],
                "get": {"summary": "WebSocket: translation control API (relayed to the session's worker); "
                                   "errors after the upgrade come as control messages",
                        "responses": {"101": {"description": "switching protocols"}, **_errors(400, 404)}},
            },
            "/session-storage/languages": {"get": {
                "summary": "Language pairs a CPU session can translate, and what each engine knows",
                "responses": {"200": ok_any}}},
            "/healthz": {"get": {"summary": "liveness", "responses": {"200": ok_any}}},
            "/readyz": {"get": {"summary": "readiness (Kubernetes API reachable)",
                                "responses": {"200": ok_any, **_errors(503)}}},
        },
    }

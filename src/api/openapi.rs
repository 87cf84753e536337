//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`, written by
//! hand next to the route table; a test checks that the two name exactly
//! the same operations.

use serde_json::{Value, json};

fn error_ref() -> Value {
    json!({"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn err(description: &str) -> Value {
    let mut v = error_ref();
    v["description"] = json!(description);
    v
}

fn ok_json(description: &str, schema: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

fn id_param(description: &str) -> Value {
    json!({"name": "id", "in": "path", "required": true, "description": description, "schema": {"type": "string"}})
}

fn ticket_id() -> Value {
    id_param("`support_ticket_42` or `42`")
}

fn if_match() -> Value {
    json!({"name": "If-Match", "in": "header", "required": false,
        "description": "The ticket's ETag (its version) as read; a ticket changed since is a 409.",
        "schema": {"type": "string"}})
}

fn act_as() -> Value {
    json!({"name": "X-Ticketd-Act-As", "in": "header", "required": false,
        "description": "With the admin token: act as this agent (the change is attributed to them). An agent token may only name its own agent.",
        "schema": {"type": "string"}})
}

fn ticket_changed(status: &str) -> Value {
    let mut v = json!({
        "400": err("A bad value, an unknown field, or nothing to change"),
        "401": err("No token, or a wrong one"),
        "403": err("X-Ticketd-Act-As with an agent token"),
        "404": err("No such ticket"),
        "409": err("The ticket changed since the If-Match version"),
        "413": err("The body is too large"),
        "415": err("The body is not JSON (or multipart, for replies)"),
    });
    v[status] = json!({"description": "The ticket after the change", "headers": {"ETag": {"schema": {"type": "string"}}},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ticket"}}}});
    v
}

fn schemas() -> Value {
    let vocab = |values: &[&str]| json!({"type": "string", "enum": values});
    json!({
        "Error": {"type": "object", "required": ["error", "message"], "properties": {
            "error": {"type": "string", "description": "A stable code: invalid, unknown_field, unknown_parameter, bad_query, bad_json, bad_body, bad_multipart, unsupported_media_type, unauthorized, forbidden, not_found, no_route, method_not_allowed, conflict, payload_too_large, timeout, store, stopping, internal"},
            "message": {"type": "string"},
            "field": {"type": "string", "description": "The offending field, parameter or header"},
            "errors": {"type": "array", "items": {"type": "object", "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}},
            "current_version": {"type": "integer", "description": "On a 409: the ticket's version now"}
        }},
        "ThreadEntry": {"type": "object", "required": ["author", "message", "timestamp", "type"], "properties": {
            "author": {"type": "string"}, "message": {"type": "string"},
            "timestamp": {"type": "string", "format": "date-time"},
            "type": vocab(&["user", "agent", "system"]),
            "internal": {"type": "boolean", "description": "Present (true) on entries no customer received"}
        }},
        "Attachment": {"type": "object", "required": ["filename", "url", "size", "type"], "properties": {
            "filename": {"type": "string"}, "url": {"type": "string"}, "size": {"type": "integer"}, "type": {"type": "string"}
        }},
        "Ticket": {"type": "object", "description": "The Support Ticket object", "required": ["_id", "title", "description", "status", "priority", "category", "client", "assignedTo", "threads", "attachments", "tags", "resolution", "createdAt", "updatedAt", "resolvedAt", "firstResponseDue", "resolutionDue"], "properties": {
            "_id": {"type": "string", "example": "support_ticket_42"},
            "title": {"type": "string"}, "description": {"type": "string"},
            "status": vocab(&["open", "pending", "in_progress", "resolved", "closed"]),
            "priority": vocab(&["low", "medium", "high", "urgent"]),
            "category": vocab(&["technical", "billing", "account", "feature_request", "general"]),
            "client": {"type": "string", "example": "client_7"},
            "assignedTo": {"type": ["string", "null"]},
            "threads": {"type": "array", "items": {"$ref": "#/components/schemas/ThreadEntry"}},
            "attachments": {"type": "array", "items": {"$ref": "#/components/schemas/Attachment"}},
            "tags": {"type": "array", "items": {"type": "string"}},
            "resolution": {"type": ["string", "null"]},
            "createdAt": {"type": "string", "format": "date-time"},
            "updatedAt": {"type": "string", "format": "date-time"},
            "resolvedAt": {"type": ["string", "null"], "format": "date-time"},
            "number": {"type": "integer"},
            "participants": {"type": "array", "items": {"type": "string"}},
            "firstResponseDue": {"type": ["string", "null"], "format": "date-time", "description": "When the first agent answer is due under the response target in force; null where no target applies or it was met"},
            "resolutionDue": {"type": ["string", "null"], "format": "date-time", "description": "When the resolution is due; null where no target applies or it was met"},
            "mergedInto": {"type": "string", "description": "Present on a ticket merged into another: that ticket's id"}
        }},
        "MergeRequest": {"type": "object", "additionalProperties": false, "required": ["into"], "properties": {
            "into": {"type": ["integer", "string"], "description": "The surviving ticket: 42 or \"support_ticket_42\""}
        }},
        "TicketPage": {"type": "object", "required": ["tickets"], "properties": {
            "tickets": {"type": "array", "items": {"$ref": "#/components/schemas/Ticket"}},
            "next_cursor": {"type": "string", "description": "Absent on the last page"}
        }},
        "TicketPatch": {"type": "object", "additionalProperties": false, "minProperties": 1, "properties": {
            "status": vocab(&["open", "pending", "in_progress", "resolved", "closed"]),
            "priority": vocab(&["low", "medium", "high", "urgent"]),
            "category": vocab(&["technical", "billing", "account", "feature_request", "general"]),
            "assignedTo": {"type": ["string", "null"], "description": "An agent id; null unassigns"},
            "tags": {"type": "array", "items": {"type": "string"}, "description": "The full list (not with tagsAdd or tagsRemove)"},
            "tagsAdd": {"type": "array", "items": {"type": "string"}, "description": "Tags to add; the others stay"},
            "tagsRemove": {"type": "array", "items": {"type": "string"}, "description": "Tags to take off; the others stay"},
            "resolution": {"type": ["string", "null"], "description": "null clears it"}
        }},
        "Client": {"type": "object", "required": ["_id", "address", "name", "tickets"], "properties": {
            "_id": {"type": "string", "example": "client_7"},
            "address": {"type": "string", "description": "Lower-cased, as the client's tickets are keyed"},
            "name": {"type": ["string", "null"], "description": "The display name of the client's latest mail"},
            "tickets": {"type": "array", "description": "Newest first", "items": {"type": "object", "properties": {
                "_id": {"type": "string"}, "number": {"type": "integer"}, "title": {"type": "string"},
                "status": vocab(&["open", "pending", "in_progress", "resolved", "closed"]),
                "updatedAt": {"type": "string", "format": "date-time"}}}}
        }},
        "AgentList": {"type": "object", "properties": {"entries": {"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "string"}, "name": {"type": "string"}, "email": {"type": "string"}}}}}},
        "Text": {"type": "object", "additionalProperties": false, "required": ["text"], "properties": {"text": {"type": "string"}}},
        "ReplyForm": {"type": "object", "properties": {
            "text": {"type": "string"},
            "files": {"type": "array", "items": {"type": "string", "format": "binary"}, "description": "Any part with a filename is a file"}
        }},
        "QuarantineEntry": {"type": "object", "properties": {
            "id": {"type": "integer"}, "reason": {"type": "string"}, "mailbox": {"type": "string"},
            "uid": {"type": "integer"}, "at": {"type": "string", "format": "date-time"}, "raw_sha256": {"type": "string"}
        }},
        "QuarantineDetail": {"allOf": [{"$ref": "#/components/schemas/QuarantineEntry"},
            {"type": "object", "properties": {"raw_base64": {"type": "string", "description": "The raw mail, base64"}}}]},
        "QuarantineList": {"type": "object", "properties": {"entries": {"type": "array", "items": {"$ref": "#/components/schemas/QuarantineEntry"}}}},
        "RetryOutcome": {"type": "object", "required": ["result"], "properties": {
            "result": vocab(&["ingested", "quarantined", "held"]),
            "ticket": {"type": ["integer", "null"]}, "id": {"type": "integer"}, "reason": {"type": "string"}
        }},
        "OutboxEntry": {"type": "object", "properties": {
            "seq": {"type": "integer"}, "ticket": {"type": "integer"},
            "kind": vocab(&["ack", "agent_notify", "relay", "resolved", "command_error", "receipt", "digest", "escalation", "reminder"]),
            "state": vocab(&["queued", "sent", "failed", "dropped"]),
            "to": {"type": "array", "items": {"type": "string"}}, "subject": {"type": "string"},
            "message_id": {"type": "string"}, "attempts": {"type": "integer"},
            "next_attempt": {"type": "string", "format": "date-time"}, "last_error": {"type": ["string", "null"]},
            "created": {"type": "string", "format": "date-time"}, "refused": {"type": "array", "items": {"type": "string"}}
        }},
        "OutboxList": {"type": "object", "properties": {"entries": {"type": "array", "items": {"$ref": "#/components/schemas/OutboxEntry"}}}},
        "Readiness": {"type": "object", "properties": {
            "ready": {"type": "boolean"}, "problems": {"type": "array", "items": {"type": "string"}},
            "store": {"type": "object"}, "writer": {"type": "object"},
            "mailboxes": {"type": "object", "additionalProperties": {"type": "object", "properties": {
                "up": {"type": "boolean"}, "state": {"type": "string"},
                "since": {"type": ["string", "null"], "format": "date-time"},
                "last_fetch": {"type": ["string", "null"], "format": "date-time"},
                "last_error": {"type": "string"}}}},
            "outbox": {"type": "object", "properties": {"waiting": {"type": "integer"}, "oldest_age_seconds": {"type": ["number", "null"]}}}
        }}
    })
}

fn list_parameters() -> Value {
    let q = |name: &str, description: &str, schema: Value| json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema});
    let vocab = |values: &[&str]| json!({"type": "string", "enum": values});
    json!([
        q("status", "", vocab(&["open", "pending", "in_progress", "resolved", "closed"])),
        q("priority", "", vocab(&["low", "medium", "high", "urgent"])),
        q("category", "", vocab(&["technical", "billing", "account", "feature_request", "general"])),
        q("assignedTo", "An agent id, or `none` for unassigned tickets", json!({"type": "string"})),
        q("tag", "", json!({"type": "string"})),
        q("client", "A client id (`client_7`) or address", json!({"type": "string"})),
        q("q", "Case-insensitive text in the title or description", json!({"type": "string", "maxLength": 256})),
        q(
            "sort",
            "Default -number (newest first); due: the earliest running response target first",
            vocab(&["-number", "number", "-updatedAt", "updatedAt", "-createdAt", "createdAt", "due"])
        ),
        q(
            "due",
            "overdue: a running response target is past due; soon: one is due within `within`",
            vocab(&["overdue", "soon"])
        ),
        q("within", "With due=soon: how far ahead (default 1h), e.g. 30m, 4h", json!({"type": "string"})),
        q("limit", "Page size, default 50", json!({"type": "integer", "minimum": 1, "maximum": 500})),
        q("cursor", "The next_cursor of the previous page", json!({"type": "string"})),
    ])
}

pub fn document() -> Value {
    let mut doc = paths_and_schemas();
    spam_paths(&mut doc);
    // Who may call each route comes from the route table, the one place
    // roles are decided, so the document cannot disagree with the server.
    for spec in super::routes::route_table() {
        let method = spec.method.as_str().to_ascii_lowercase();
        if let Some(op) = doc["paths"][spec.path].get_mut(&method) {
            op["x-ticketd-role"] = json!(spec.guard.role());
            if spec.guard == super::routes::Guard::Admin {
                op["responses"]["403"] = err("An agent's token: this is the admin's");
                let summary = op["summary"].as_str().unwrap_or_default().to_owned();
                op["summary"] = json!(format!("{summary} (admin token only)"));
            }
        }
    }
    doc
}

fn paths_and_schemas() -> Value {
    let open = json!([]);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ticketd local API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Tickets in the public Support Ticket shape, changes through the same rules as email commands, health and metrics. Bearer token from api.token_file (admin) or an agent's token_file."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas()
        },
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {"get": {"operationId": "healthz", "summary": "The process answers", "security": open,
                "responses": {"200": {"description": "Alive"}}}},
            "/readyz": {"get": {"operationId": "readyz", "summary": "Store readable, writer running, every mailbox logged in", "security": open,
                "responses": {"200": ok_json("Ready", "Readiness"), "503": ok_json("Not ready (same body)", "Readiness")}}},
            "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus text exposition",
                "responses": {"200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}, "401": err("No token, or a wrong one")}}},
            "/api/v1/openapi.json": {"get": {"operationId": "openapi", "summary": "This document", "security": open,
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}}}},
            "/api/v1/proof": {"get": {"operationId": "proof", "summary": "The daemon proves it holds the admin token before the CLI sends it over TCP: HMAC-SHA256, keyed with SHA-256(admin token), of \"ticketd api proof\\n\" + challenge + \"\\n\" + the address the connection reached", "security": open,
                "parameters": [{"name": "X-Ticketd-Challenge", "in": "header", "required": true, "description": "64 hex digits of fresh randomness", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "The proof", "content": {"application/json": {"schema": {"type": "object", "properties": {"proof": {"type": "string"}, "listener": {"type": "string"}}}}}}, "400": err("No challenge, or a malformed one")}}},
            "/api/v1/tickets": {"get": {"operationId": "listTickets", "summary": "Tickets, filtered, sorted, one page at a time",
                "parameters": list_parameters(),
                "responses": {"200": ok_json("A page", "TicketPage"), "400": err("A bad parameter or cursor"), "401": err("No token, or a wrong one")}}},
            "/api/v1/tickets/{id}": {
                "get": {"operationId": "getTicket", "summary": "One ticket", "parameters": [ticket_id()],
                    "responses": {"200": {"description": "The ticket", "headers": {"ETag": {"schema": {"type": "string"}, "description": "Its version, for If-Match"}},
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ticket"}}}},
                        "401": err("No token, or a wrong one"), "404": err("No such ticket")}},
                "patch": {"operationId": "updateTicket", "summary": "Change status, priority, category, assignment, tags or resolution (same system entries and notices as email commands)",
                    "parameters": [ticket_id(), if_match(), act_as()],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TicketPatch"}}}},
                    "responses": ticket_changed("200")}
            },
            "/api/v1/tickets/{id}/raw": {"get": {"operationId": "getTicketRaw", "summary": "The ticket's original mails as an mboxrd file",
                "parameters": [ticket_id()],
                "responses": {"200": {"description": "mbox", "content": {"application/mbox": {"schema": {"type": "string"}}}}, "401": err("No token, or a wrong one"), "404": err("No such ticket")}}},
            "/api/v1/tickets/{id}/replies": {"post": {"operationId": "replyToTicket", "summary": "An agent's answer, relayed to the customer like an email answer",
                "parameters": [ticket_id(), if_match(), act_as()],
                "requestBody": {"required": true, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Text"}},
                    "multipart/form-data": {"schema": {"$ref": "#/components/schemas/ReplyForm"}}}},
                "responses": ticket_changed("201")}},
            "/api/v1/tickets/{id}/notes": {"post": {"operationId": "addNote", "summary": "An internal note, sent to no one",
                "parameters": [ticket_id(), if_match(), act_as()],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Text"}}}},
                "responses": ticket_changed("201")}},
            "/api/v1/tickets/{id}/merge": {"post": {"operationId": "mergeTicket",
                "summary": "Merge this ticket into another: that one gains its entries, attachments, tags and participants (its customer too); this one is closed and points there, and its later mail lands there. Refused (400 on into) into itself, a closed or merged ticket, or across a merge cycle. Not undone.",
                "parameters": [ticket_id(), act_as()],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/MergeRequest"}}}},
                "responses": ticket_changed("200")}},
            "/api/v1/quarantine": {"get": {"operationId": "listQuarantine", "summary": "Messages that could not become tickets",
                "responses": {"200": ok_json("Entries", "QuarantineList"), "401": err("No token, or a wrong one")}}},
            "/api/v1/quarantine/{id}": {
                "get": {"operationId": "getQuarantine", "summary": "One entry and its raw mail", "parameters": [id_param("The entry's id")],
                    "responses": {"200": ok_json("The entry", "QuarantineDetail"), "401": err("No token, or a wrong one"), "404": err("No such entry")}},
                "delete": {"operationId": "dropQuarantine", "summary": "Forget the message (it is not ingested again)", "parameters": [id_param("The entry's id")],
                    "responses": {"204": {"description": "Dropped"}, "401": err("No token, or a wrong one"), "404": err("No such entry")}}
            },
            "/api/v1/quarantine/{id}/retry": {"post": {"operationId": "retryQuarantine", "summary": "Run the message through ingest again", "parameters": [id_param("The entry's id")],
                "responses": {"200": ok_json("What happened", "RetryOutcome"), "401": err("No token, or a wrong one"), "404": err("No such entry")}}},
            "/api/v1/outbox": {"get": {"operationId": "listOutbox", "summary": "Mail waiting to be sent (with all=true: also sent, failed and dropped)",
                "parameters": [{"name": "all", "in": "query", "required": false, "schema": {"type": "boolean"}}],
                "responses": {"200": ok_json("Entries", "OutboxList"), "400": err("A bad parameter"), "401": err("No token, or a wrong one")}}},
            "/api/v1/outbox/{id}": {"delete": {"operationId": "dropOutbox", "summary": "Take a waiting mail out of the queue, unsent (the ticket says so)",
                "parameters": [id_param("The entry's seq")],
                "responses": {"204": {"description": "Dropped"}, "401": err("No token, or a wrong one"), "404": err("No such waiting entry")}}},
            "/api/v1/outbox/{id}/retry": {"post": {"operationId": "retryOutbox", "summary": "Send a waiting entry now, or queue a failed one again",
                "parameters": [id_param("The entry's seq")],
                "responses": {"204": {"description": "Queued"}, "400": err("It was sent already"), "401": err("No token, or a wrong one"), "404": err("No such entry")}}},
            "/api/v1/clients/{id}": {"get": {"operationId": "getClient", "summary": "A customer: address, display name and their tickets",
                "parameters": [id_param("`client_7` or `7`")],
                "responses": {"200": ok_json("The client", "Client"), "401": err("No token, or a wrong one"), "404": err("No such client")}}},
            "/api/v1/agents": {"get": {"operationId": "listAgents", "summary": "The configured agents",
                "responses": {"200": ok_json("The agents", "AgentList"), "401": err("No token, or a wrong one")}}},
            "/api/v1/backup": {"get": {"operationId": "backup",
                "summary": "A consistent snapshot of the whole desk as a tar, as `ticketd backup` writes (admin token)",
                "responses": {"200": {"description": "The backup", "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}}},
                    "401": err("No token, or a wrong one"), "403": err("An agent's token")}}},
            "/api/v1/store/stats": {"get": {"operationId": "storeStats", "summary": "What the store holds (admin token)",
                "responses": {"200": {"description": "Counts and sizes", "content": {"application/json": {"schema": {"type": "object"}}}},
                    "401": err("No token, or a wrong one"), "403": err("An agent's token")}}},
            "/attachments/{sha256}/{filename}": {"get": {"operationId": "getAttachment",
                "summary": "An attachment's bytes, with the type recorded on the ticket (needs the token unless api.public_attachments)",
                "parameters": [
                    {"name": "sha256", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
                    {"name": "filename", "in": "path", "required": true, "description": "Must be a name the file was recorded under", "schema": {"type": "string"}}
                ],
                "responses": {"200": {"description": "The file", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                    "401": err("No token, or a wrong one"), "404": err("No attachment with that hash and name")}}}
        }
    })
}

/// The spam list, the blocklist and blocking a ticket's sender.
fn spam_paths(doc: &mut Value) {
    let schemas = &mut doc["components"]["schemas"];
    schemas["SpamEntry"] = json!({"type": "object", "required": ["id", "at", "source", "reason"], "properties": {
        "id": {"type": "integer"}, "at": {"type": "string", "format": "date-time"},
        "mailbox": {"type": "string"}, "uid": {"type": "integer"},
        "source": {"type": "string", "enum": ["border_spamassassin", "border_rspamd", "scanner_rspamd", "blocked", "rspamd_unreachable"],
            "description": "Who held it: the border's filter, rspamd asked by ticketd, the blocklist, or rspamd unreachable with spam.unreachable = \"hold\""},
        "score": {"type": ["number", "null"]}, "reason": {"type": "string"},
        "from": {"type": ["string", "null"]}, "subject": {"type": "string"},
        "message_id": {"type": ["string", "null"]}, "raw_sha256": {"type": "string"}
    }});
    schemas["SpamDetail"] = json!({"allOf": [{"$ref": "#/components/schemas/SpamEntry"},
        {"type": "object", "properties": {"raw_base64": {"type": "string", "description": "The raw mail, base64"}}}]});
    schemas["SpamList"] = json!({"type": "object", "properties": {"entries": {"type": "array", "items": {"$ref": "#/components/schemas/SpamEntry"}}}});
    schemas["BlockEntry"] = json!({"type": "object", "required": ["entry", "source"], "properties": {
        "entry": {"type": "string", "description": "name@domain (with or without +detail, any case) or @domain (with its subdomains)"},
        "source": {"type": "string", "enum": ["config", "runtime"]},
        "by": {"type": "string"}, "at": {"type": "string", "format": "date-time"}, "ticket": {"type": "integer"}
    }});
    schemas["Blocklist"] = json!({"type": "object", "properties": {"entries": {"type": "array", "items": {"$ref": "#/components/schemas/BlockEntry"}}}});
    schemas["BlockRequest"] = json!({"type": "object", "additionalProperties": false, "required": ["entry"], "properties": {"entry": {"type": "string"}}});
    schemas["BlockChanged"] =
        json!({"type": "object", "properties": {"entry": {"type": "string"}, "changed": {"type": "boolean"}}});
    let paths = &mut doc["paths"];
    paths["/api/v1/tickets/{id}/block"] = json!({"post": {"operationId": "blockSender",
        "summary": "Block the ticket's sender (as #block by mail): the ticket is closed and tagged spam, their later mail is held on the spam list",
        "parameters": [ticket_id(), if_match(), act_as()],
        "responses": ticket_changed("200")}});
    paths["/api/v1/spam"] = json!({"get": {"operationId": "listSpam",
        "summary": "Mail held for review (spam, blocked senders): no ticket, no acknowledgement, nothing sent",
        "responses": {"200": ok_json("Entries", "SpamList"), "400": err("A parameter"), "401": err("No token, or a wrong one")}}});
    paths["/api/v1/spam/{id}"] = json!({
        "get": {"operationId": "getSpam", "summary": "One held mail and its raw bytes", "parameters": [id_param("The entry's id")],
            "responses": {"200": ok_json("The entry", "SpamDetail"), "401": err("No token, or a wrong one"), "404": err("No such entry")}},
        "delete": {"operationId": "dropSpam", "summary": "Forget the held mail and its raw copy (it is not ingested again)", "parameters": [id_param("The entry's id")],
            "responses": {"204": {"description": "Dropped"}, "401": err("No token, or a wrong one"), "404": err("No such entry")}}
    });
    paths["/api/v1/spam/{id}/release"] = json!({"post": {"operationId": "releaseSpam",
        "summary": "Ingest the held mail as ordinary mail (a ticket, acknowledged if the ordinary rules allow it)",
        "parameters": [id_param("The entry's id")],
        "responses": {"200": ok_json("What happened", "RetryOutcome"), "401": err("No token, or a wrong one"), "404": err("No such entry, or its raw copy is gone")}}});
    paths["/api/v1/blocklist"] = json!({
        "get": {"operationId": "listBlocklist", "summary": "The blocklist: spam.block from the config, then entries added at run time",
            "responses": {"200": ok_json("Entries", "Blocklist"), "400": err("A parameter"), "401": err("No token, or a wrong one")}},
        "post": {"operationId": "addBlock", "summary": "Block an address or a whole domain: their mail is held on the spam list",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BlockRequest"}}}},
            "responses": {"201": ok_json("Added", "BlockChanged"), "200": ok_json("It was blocked already", "BlockChanged"),
                "400": err("Not an address or @domain"), "401": err("No token, or a wrong one"), "415": err("Not JSON")}}
    });
    paths["/api/v1/blocklist/{entry}"] = json!({"delete": {"operationId": "removeBlock",
        "summary": "Unblock a run-time entry (entries of spam.block are removed in the config file)",
        "parameters": [{"name": "entry", "in": "path", "required": true, "description": "name@domain or @domain", "schema": {"type": "string"}}],
        "responses": {"204": {"description": "Removed"}, "400": err("Not an entry, or one of the config file"), "401": err("No token, or a wrong one"), "404": err("Not on the run-time blocklist")}}});
}

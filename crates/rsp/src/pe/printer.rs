//! What a PE of `rsp pe` prints on stdout: one human-readable line per
//! event, or one JSON object per line with `--json`.

use rserpool::PeEvent;
use rserpool_wire::PeId;

/// Prints the lines of PE `id`.
pub struct Printer {
    pub json: bool,
    pub id: PeId,
}

impl Printer {
    /// One event: `json` with `--json`, `text` without.
    pub fn line(&self, json: serde_json::Value, text: String) {
        if self.json {
            println!("{json}");
        } else {
            println!("{text}");
        }
    }

    /// A JSON line only (its human form is part of another line).
    pub fn json_only(&self, json: serde_json::Value) {
        if self.json {
            println!("{json}");
        }
    }

    /// A human-readable line only (its JSON form is part of another event).
    pub fn text_only(&self, text: String) {
        if !self.json {
            println!("{text}");
        }
    }

    /// An event of the library, after the first registration.
    pub fn event(&self, e: &PeEvent) {
        let id = self.id;
        let (json, text) = match e {
            PeEvent::Registered {
                registrar,
                home_server_id,
                ..
            } => (
                serde_json::json!({"event": "reregistered", "identifier": id, "registrar": registrar.to_string(), "home_server_id": home_server_id}),
                format!("PE {id:#010x} registered with {registrar}"),
            ),
            PeEvent::RegistrationRefused {
                registrar,
                cause,
                detail,
                ..
            } => {
                let detail = detail.as_ref().map(ToString::to_string);
                (
                    serde_json::json!({"event": "refused", "identifier": id, "registrar": registrar.to_string(), "cause": cause.name(), "detail": detail}),
                    format!(
                        "PE {id:#010x}: registrar {registrar} refused the registration: {cause}{}",
                        detail.map(|d| format!(": {d}")).unwrap_or_default()
                    ),
                )
            }
            PeEvent::RegistrationFailed { error, .. } => (
                serde_json::json!({"event": "registration_failed", "identifier": id, "error": error.to_string()}),
                format!("PE {id:#010x}: registration failed: {error}"),
            ),
            PeEvent::RegistrarLost { registrar, reason } => (
                serde_json::json!({"event": "registrar_lost", "identifier": id, "registrar": registrar.to_string(), "reason": reason}),
                format!("PE {id:#010x}: lost registrar {registrar}: {reason}; hunting"),
            ),
            PeEvent::NoRegistrar { failures } => (
                serde_json::json!({"event": "no_registrar", "identifier": id, "failures": failures.iter().map(ToString::to_string).collect::<Vec<_>>()}),
                format!(
                    "PE {id:#010x}: {}; retrying",
                    rserpool::ClientError::NoRegistrar(failures.clone())
                ),
            ),
            PeEvent::Rehomed {
                registrar,
                server_id,
            } => (
                serde_json::json!({"event": "rehomed", "identifier": id, "registrar": registrar.to_string(), "server_id": server_id}),
                format!("PE {id:#010x}: new home registrar {server_id:#010x} at {registrar}"),
            ),
            PeEvent::RemovedByRegistrar { registrar, .. } => (
                serde_json::json!({"event": "removed_by_registrar", "identifier": id, "registrar": registrar.to_string()}),
                format!("PE {id:#010x}: registrar {registrar} removed it; registering again"),
            ),
            other => (
                serde_json::json!({"event": "other", "identifier": id, "detail": format!("{other:?}")}),
                format!("PE {id:#010x}: {other:?}"),
            ),
        };
        self.line(json, text);
    }
}

//! `rsp decode`: a one-message Wireshark for operators. Reads a message in
//! hex (argument or stdin, whitespace ignored), decodes it strictly and
//! prints it as JSON; on failure prints the typed error with its offset.

use std::io::Read;

use anyhow::{anyhow, bail, Context, Result};
use clap::ValueEnum;
use rserpool_wire::{hex_bytes, AsapMessage, DecodeError, Decoded, EnrpMessage, Header};
use serde::Serialize;
use serde_json::{Map, Value};

/// Which protocol the message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Proto {
    /// ASAP (RFC 5352): PE/PU <-> registrar, PU <-> PE control.
    Asap,
    /// ENRP (RFC 5353): registrar <-> registrar.
    Enrp,
}

/// Arguments of `rsp decode`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Protocol of the message.
    #[arg(long, value_enum)]
    proto: Proto,
    /// The message in hex (whitespace ignored); read from stdin when absent or "-".
    hex: Option<String>,
}

/// Run `rsp decode`.
pub fn run(args: &Args) -> Result<()> {
    let text = match args.hex.as_deref() {
        Some(h) if h != "-" => h.to_owned(),
        _ => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading hex from stdin")?;
            s
        }
    };
    let bytes = hex_bytes::decode(&text).ok_or_else(|| {
        anyhow!("input is not hex (an odd number of digits or a non-hex character)")
    })?;
    let json = decode_to_json(args.proto, &bytes)?;
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}

/// Decode `bytes` and build the JSON document: protocol, type name, flags,
/// length, the message's fields, and the parameters to report.
pub fn decode_to_json(proto: Proto, bytes: &[u8]) -> Result<Value> {
    let (name, message) = match proto {
        Proto::Asap => {
            let d = AsapMessage::decode(bytes).map_err(|e| explain("ASAP", e))?;
            (d.message.name(), to_json(d)?)
        }
        Proto::Enrp => {
            let d = EnrpMessage::decode(bytes).map_err(|e| explain("ENRP", e))?;
            (d.message.name(), to_json(d)?)
        }
    };
    let header = Header::parse(bytes).map_err(|e| explain("RSerPool", e))?;
    let mut out = Map::new();
    out.insert(
        "protocol".into(),
        Value::from(format!("{proto:?}").to_lowercase()),
    );
    out.insert("type".into(), Value::from(name));
    out.insert("type_code".into(), Value::from(header.msg_type));
    out.insert(
        "flags".into(),
        Value::from(format!("{:#04x}", header.flags)),
    );
    out.insert("length".into(), Value::from(header.length));
    let Value::Object(mut m) = message else {
        bail!("internal error: message did not serialize to an object");
    };
    let unrecognized = m.remove("unrecognized").unwrap_or(Value::Array(vec![]));
    if let Some(Value::Object(fields)) = m.remove("message") {
        for (k, v) in fields {
            if k != "type" {
                out.insert(k, v);
            }
        }
    }
    out.insert("unrecognized_parameters".into(), unrecognized);
    Ok(Value::Object(out))
}

fn to_json<M: Serialize>(d: Decoded<M>) -> Result<Value> {
    serde_json::to_value(d).context("serializing the decoded message")
}

fn explain(proto: &str, e: DecodeError) -> anyhow::Error {
    match e.cause() {
        Some(c) => anyhow!("cannot decode {proto} message: {e}; a receiver answers with cause {c}"),
        None => anyhow!("cannot decode {proto} message: {e}; a receiver discards it silently"),
    }
}

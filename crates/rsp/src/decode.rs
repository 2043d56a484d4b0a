//! `rsp decode`: a one-message Wireshark for operators. Reads a message in
//! hex (argument or stdin, whitespace ignored), decodes it strictly and
//! prints it as JSON; on failure prints the typed error with its offset.

use std::io::Read;

use anyhow::{anyhow, bail, Context, Result};
use clap::ValueEnum;
use rserpool_wire::{hex_bytes, AsapMessage, DecodeError, EnrpMessage, Header, WireMessage};
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
pub fn run(args: &Args, json: bool) -> Result<()> {
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
    let decoded = decode_to_json(args.proto, &bytes)?;
    // The output is JSON either way: indented for people, one line with
    // --json (for pipes and log collectors).
    if json {
        println!("{decoded}");
    } else {
        println!("{}", serde_json::to_string_pretty(&decoded)?);
    }
    Ok(())
}

/// Decode `bytes` and build the JSON document: protocol, type name, flags,
/// length, the message's fields, and the parameters to report.
pub fn decode_to_json(proto: Proto, bytes: &[u8]) -> Result<Value> {
    match proto {
        Proto::Asap => message_json::<AsapMessage>("asap", bytes),
        Proto::Enrp => message_json::<EnrpMessage>("enrp", bytes),
    }
}

fn message_json<M: WireMessage>(proto: &str, bytes: &[u8]) -> Result<Value> {
    let decoded = M::decode(bytes).map_err(|e| explain(proto, e))?;
    // The message decoded, so its header is sound.
    let header = Header::parse(bytes).map_err(|e| explain(proto, e))?;
    let mut out = Map::new();
    out.insert("protocol".into(), Value::from(proto));
    out.insert("type".into(), Value::from(decoded.message.name()));
    out.insert("type_code".into(), Value::from(header.msg_type));
    out.insert(
        "flags".into(),
        Value::from(format!("{:#04x}", header.flags)),
    );
    out.insert("length".into(), Value::from(header.length));
    let Value::Object(fields) =
        serde_json::to_value(&decoded.message).context("serializing the decoded message")?
    else {
        bail!("internal error: message did not serialize to an object");
    };
    out.extend(fields.into_iter().filter(|(k, _)| k != "type"));
    out.insert(
        "unrecognized_parameters".into(),
        serde_json::to_value(&decoded.unrecognized)?,
    );
    Ok(Value::Object(out))
}

fn explain(proto: &str, e: DecodeError) -> anyhow::Error {
    let proto = proto.to_uppercase();
    match e.cause() {
        Some(c) => anyhow!("cannot decode {proto} message: {e}; a receiver answers with cause {c}"),
        None => anyhow!("cannot decode {proto} message: {e}; a receiver discards it silently"),
    }
}

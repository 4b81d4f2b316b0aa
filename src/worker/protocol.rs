//! The worker protocol: length-prefixed frames over the child's stdin (the
//! job) and stdout (the replies).
//!
//! A frame is one tag byte, the payload's length as 8 bytes little-endian,
//! then the payload. The parent sends `J` (the job header, JSON), `C` (the
//! compiled code) and, when the job has one, `I` (the guest's stdin), then
//! closes the pipe. The child answers `R` (its [`WallReport`], JSON) once it
//! has confined itself, then `O` (the [`Outcome`] without its output, JSON),
//! `1` (the guest's stdout) and `2` (its stderr); or `X` (an [`ErrorReply`])
//! at any point instead. Every length is checked against a cap before
//! anything is read, and a payload is read as it arrives, never allocated
//! from the announced length, so a hostile peer can neither make the other
//! side allocate what it claims nor make it read forever.

use super::PolicySource;
use crate::engine::{EngineConfig, LoadError};
use crate::wall::{WallError, WallErrorKind, WallReport};
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};

pub(super) const JOB: u8 = b'J';
pub(super) const CODE: u8 = b'C';
pub(super) const STDIN: u8 = b'I';
pub(super) const REPORT: u8 = b'R';
pub(super) const OUTCOME: u8 = b'O';
pub(super) const STDOUT: u8 = b'1';
pub(super) const STDERR: u8 = b'2';
pub(super) const ERROR: u8 = b'X';

/// The most bytes of a JSON message (job header, wall report, error).
pub(super) const MESSAGE_CAP: u64 = 1 << 20;
/// The most bytes of an outcome without its output: its denials and use
/// counts are bounded far below this.
pub(super) const OUTCOME_CAP: u64 = 8 << 20;
/// The most bytes of compiled code or guest stdin the child accepts.
pub(super) const CODE_CAP: u64 = 4 << 30;

/// What the job says besides its code and stdin.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct JobHeader {
    pub policy: PolicySource,
    pub name: String,
    pub size: u64,
    pub sha256: Option<[u8; 32]>,
    pub signers: Vec<String>,
    pub library: bool,
    pub engine: EngineConfig,
    pub args: Vec<String>,
    pub invoke: Option<String>,
    pub stdin: bool,
    #[serde(default)]
    pub record_uses: bool,
}

/// Why the child could not run the job, as it tells the parent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub(super) enum ErrorReply {
    /// The compiled code did not load.
    Load { message: String },
    /// `wall.mode = "require"` and a layer is missing.
    WallRequired { report: WallReport },
    /// The kernel refused a layer.
    WallApply { message: String },
    /// Anything else.
    Other { message: String },
}

impl ErrorReply {
    /// The reply for an error that stopped the child.
    pub(super) fn from_error(err: &anyhow::Error) -> ErrorReply {
        if let Some(wall) = err.downcast_ref::<WallError>() {
            return match wall.kind() {
                WallErrorKind::Required(report) => ErrorReply::WallRequired { report: report.clone() },
                WallErrorKind::Apply(message) => ErrorReply::WallApply {
                    message: message.clone(),
                },
            };
        }
        if let Some(load) = err.downcast_ref::<LoadError>() {
            return ErrorReply::Load {
                message: load.kind_message(),
            };
        }
        ErrorReply::Other {
            message: format!("{err:#}"),
        }
    }

    /// The same error in the parent: a wall error as the wall's own type,
    /// a load error as a [`LoadError`] of the program `name`.
    pub(super) fn into_error(self, name: &str) -> anyhow::Error {
        match self {
            ErrorReply::Load { message } => LoadError::precompiled(name, message).into(),
            ErrorReply::WallRequired { report } => WallError::new(WallErrorKind::Required(report)).into(),
            ErrorReply::WallApply { message } => WallError::new(WallErrorKind::Apply(message)).into(),
            ErrorReply::Other { message } => anyhow::anyhow!("the worker process could not run the job: {message}"),
        }
    }
}

/// Writes one frame.
pub(super) fn write_frame(out: &mut impl Write, tag: u8, payload: &[u8]) -> io::Result<()> {
    out.write_all(&[tag])?;
    out.write_all(&(payload.len() as u64).to_le_bytes())?;
    out.write_all(payload)
}

/// Writes one frame holding `value` as JSON.
pub(super) fn write_json(out: &mut impl Write, tag: u8, value: &impl Serialize) -> io::Result<()> {
    let json = serde_json::to_vec(value).map_err(io::Error::other)?;
    write_frame(out, tag, &json)
}

/// What went wrong reading a frame, in words that follow "the worker
/// process" (or "the job").
#[derive(Debug)]
pub(super) struct FrameError(pub String);

/// Reads the next frame: `None` at a clean end of input; its tag and
/// payload otherwise, refused unless the tag is one of `expected` and the
/// payload at most `cap` bytes.
pub(super) fn read_frame(
    input: &mut impl Read,
    expected: &[u8],
    cap: u64,
) -> Result<Option<(u8, Vec<u8>)>, FrameError> {
    let mut tag = [0u8; 1];
    match input.read(&mut tag) {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(e) => return Err(FrameError(format!("could not be read from ({e})"))),
    }
    if !expected.contains(&tag[0]) {
        return Err(FrameError(format!(
            "sent a message of type {:?} where one of {:?} was due",
            tag[0].escape_ascii().to_string(),
            String::from_utf8_lossy(expected)
        )));
    }
    let mut len = [0u8; 8];
    input
        .read_exact(&mut len)
        .map_err(|_| FrameError("ended in the middle of a message header".into()))?;
    let len = u64::from_le_bytes(len);
    if len > cap {
        return Err(FrameError(format!(
            "announced a message of {len} bytes, over the {cap} allowed"
        )));
    }
    let mut payload = Vec::new();
    input
        .take(len)
        .read_to_end(&mut payload)
        .map_err(|e| FrameError(format!("could not be read from ({e})")))?;
    if payload.len() as u64 != len {
        return Err(FrameError(format!(
            "ended after {} of the {len} bytes it announced",
            payload.len()
        )));
    }
    Ok(Some((tag[0], payload)))
}

/// Parses a JSON payload as `T`, naming `what` when it is not one.
pub(super) fn parse<T: for<'de> Deserialize<'de>>(payload: &[u8], what: &str) -> Result<T, FrameError> {
    serde_json::from_slice(payload).map_err(|e| FrameError(format!("sent {what} that does not parse ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_ones_are_refused() {
        let mut buf = Vec::new();
        write_frame(&mut buf, REPORT, b"{}").unwrap();
        let got = read_frame(&mut &buf[..], &[REPORT], 10).unwrap();
        assert_eq!(got, Some((REPORT, b"{}".to_vec())));
        assert!(
            read_frame(&mut &buf[..], &[OUTCOME], 10)
                .unwrap_err()
                .0
                .contains("type \"R\"")
        );
        assert!(
            read_frame(&mut &buf[..], &[REPORT], 1)
                .unwrap_err()
                .0
                .contains("over the 1 allowed")
        );
        assert!(
            read_frame(&mut &buf[..3], &[REPORT], 10)
                .unwrap_err()
                .0
                .contains("middle")
        );
        assert!(
            read_frame(&mut &buf[..10], &[REPORT], 10)
                .unwrap_err()
                .0
                .contains("after 1 of the 2")
        );
        assert_eq!(read_frame(&mut &b""[..], &[REPORT], 10).unwrap(), None);
    }
}

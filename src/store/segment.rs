//! Segment files: append-only logs of framed records.
//!
//! Frame: magic (4) | payload length (4) | CRC-32 of the payload (4) | payload. The magic lets
//! recovery find the next record after corruption; the checksum catches torn and flipped
//! bytes. Segments are named by a zero-padded sequence number so they sort in write order.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use bytes::{BufMut, Bytes, BytesMut};

/// Marks the start of every record ("WRN1").
pub(crate) const MAGIC: u32 = 0x5752_4E31;
/// Bytes before each payload.
pub(crate) const FRAME_HEADER: usize = 12;
/// A segment is closed and a new one started once it grows past this size.
pub(crate) const SEGMENT_TARGET_SIZE: u64 = 64 * 1024 * 1024;
/// Largest payload accepted when scanning (a corrupt length must not look valid).
const MAX_PAYLOAD: usize = 256 * 1024 * 1024;

/// Appends one framed record to `out`.
pub(crate) fn frame(payload: &[u8], out: &mut BytesMut) {
    out.reserve(FRAME_HEADER + payload.len());
    out.put_u32(MAGIC);
    out.put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
    out.put_u32(crc32fast::hash(payload));
    out.put_slice(payload);
}

/// The path of segment `number` in `dir`.
pub(crate) fn path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:016}.seg"))
}

/// Every segment number in `dir`, ascending.
pub(crate) fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut numbers = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".seg") {
            if let Ok(number) = stem.parse::<u64>() {
                numbers.push(number);
            }
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// What scanning a segment found.
pub(crate) struct Scan {
    /// Valid payloads with their frame offsets.
    pub(crate) records: Vec<(u64, Bytes)>,
    /// Where the valid data ends (a torn tail starts here).
    pub(crate) valid_end: u64,
    /// Human-readable descriptions of what was skipped.
    pub(crate) damage: Vec<String>,
}

/// Reads every intact record of a segment, skipping corrupt ones (resynchronising on the
/// next magic whose frame checks out) and stopping at a torn tail.
pub(crate) fn scan(data: Bytes) -> Scan {
    let mut records = Vec::new();
    let mut damage = Vec::new();
    let mut position = 0usize;
    let mut valid_end = 0usize;
    while position < data.len() {
        match frame_at(&data, position) {
            Frame::Valid { payload, next } => {
                records.push((position as u64, payload));
                position = next;
                valid_end = next;
            }
            Frame::Incomplete => {
                // A record cut short by a crash: everything after the last good one goes.
                break;
            }
            Frame::Corrupt(what) => match resync(&data, position + 1) {
                Some(next) => {
                    damage.push(format!(
                        "{what} at offset {position}: skipped {} bytes",
                        next - position
                    ));
                    position = next;
                }
                None => {
                    damage.push(format!(
                        "{what} at offset {position}: no intact record follows, {} bytes dropped",
                        data.len() - position
                    ));
                    break;
                }
            },
        }
    }
    if valid_end < data.len() && damage.is_empty() {
        damage.push(format!(
            "torn tail at offset {valid_end}: {} bytes dropped",
            data.len() - valid_end
        ));
    }
    Scan {
        records,
        valid_end: valid_end as u64,
        damage,
    }
}

enum Frame {
    Valid { payload: Bytes, next: usize },
    Incomplete,
    Corrupt(&'static str),
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at + 4)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn frame_at(data: &Bytes, position: usize) -> Frame {
    let (Some(magic), Some(length), Some(crc)) = (
        read_u32(data, position),
        read_u32(data, position + 4),
        read_u32(data, position + 8),
    ) else {
        return Frame::Incomplete;
    };
    if magic != MAGIC {
        return Frame::Corrupt("bad record marker");
    }
    let length = length as usize;
    if length > MAX_PAYLOAD {
        return Frame::Corrupt("impossible record length");
    }
    let start = position + FRAME_HEADER;
    let Some(payload) = data.get(start..start + length) else {
        return Frame::Incomplete;
    };
    if crc32fast::hash(payload) != crc {
        return Frame::Corrupt("checksum mismatch");
    }
    Frame::Valid {
        payload: data.slice(start..start + length),
        next: start + length,
    }
}

/// The offset of the next intact frame at or after `from`.
fn resync(data: &Bytes, from: usize) -> Option<usize> {
    let marker = MAGIC.to_be_bytes();
    let mut at = from;
    while at + FRAME_HEADER <= data.len() {
        let window = data.get(at..)?;
        let found = window.windows(4).position(|w| w == marker)?;
        let candidate = at + found;
        if let Frame::Valid { .. } = frame_at(data, candidate) {
            return Some(candidate);
        }
        at = candidate + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(payloads: &[&[u8]]) -> BytesMut {
        let mut out = BytesMut::new();
        for p in payloads {
            frame(p, &mut out);
        }
        out
    }

    #[test]
    fn intact_log_scans_fully() {
        let data = log(&[b"one", b"two", b"three"]).freeze();
        let scan = scan(data.clone());
        assert_eq!(scan.records.len(), 3);
        assert_eq!(scan.valid_end as usize, data.len());
        assert!(scan.damage.is_empty());
    }

    #[test]
    fn torn_tail_is_cut() {
        let data = log(&[b"one", b"two"]);
        let full = data.len();
        let torn = data.freeze().slice(..full - 2);
        let scan = scan(torn);
        assert_eq!(scan.records.len(), 1);
        assert_eq!(scan.damage.len(), 1);
    }

    #[test]
    fn flipped_byte_in_the_middle_skips_one_record() {
        let mut data = log(&[b"first record", b"second record", b"third record"]);
        let second_payload = FRAME_HEADER + b"first record".len() + FRAME_HEADER + 3;
        data[second_payload] ^= 0xFF;
        let scan = scan(data.freeze());
        let kept: Vec<&[u8]> = scan.records.iter().map(|(_, p)| &p[..]).collect();
        assert_eq!(kept, vec![&b"first record"[..], &b"third record"[..]]);
        assert_eq!(scan.damage.len(), 1);
    }

    #[test]
    fn corrupt_length_resyncs_on_the_next_marker() {
        let mut data = log(&[b"aaaa", b"bbbb", b"cccc"]);
        let second_length = FRAME_HEADER + 4 + 4;
        data[second_length] = 0x7F;
        let scan = scan(data.freeze());
        assert_eq!(scan.records.len(), 2);
    }
}

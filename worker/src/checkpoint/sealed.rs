//! The container of every checkpoint file: a magic header, the payload, and a CRC-32 of
//! both. A file that is truncated, padded or altered fails [`unseal`] with the reason,
//! so a restore can skip a damaged checkpoint instead of reading garbage into state.

/// `STROM`, a format version, and two bytes of room.
const MAGIC: [u8; 8] = *b"STROM\x01\0\0";
const CHECKSUM_LEN: usize = 4;

/// The payload in its container.
pub(crate) fn seal(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + payload.len() + CHECKSUM_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(payload);
    let checksum = crc32fast::hash(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    out
}

/// The payload of a sealed file, or why the file is not whole.
pub(crate) fn unseal(file: &[u8]) -> Result<&[u8], String> {
    if file.len() < MAGIC.len() + CHECKSUM_LEN {
        return Err(format!(
            "{} bytes is shorter than any checkpoint file (truncated?)",
            file.len()
        ));
    }
    let (body, checksum) = file.split_at(file.len() - CHECKSUM_LEN);
    if body[..5] != MAGIC[..5] {
        return Err("not a Strom checkpoint file (no STROM header)".into());
    }
    if body[5] != MAGIC[5] {
        return Err(format!(
            "format version {} is not one this binary reads ({})",
            body[5], MAGIC[5]
        ));
    }
    let expected = u32::from_le_bytes([checksum[0], checksum[1], checksum[2], checksum[3]]);
    let actual = crc32fast::hash(body);
    if actual != expected {
        return Err(format!(
            "checksum mismatch (stored {expected:08x}, computed {actual:08x}): the file was \
             truncated or altered"
        ));
    }
    Ok(&body[MAGIC.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_payload_comes_back() {
        for payload in [&b""[..], b"x", b"state of key group 7"] {
            assert_eq!(unseal(&seal(payload)), Ok(payload));
        }
    }

    #[test]
    fn damaged_files_say_what_is_wrong() {
        let file = seal(b"counts per word");
        let says = |bytes: &[u8]| unseal(bytes).expect_err("damaged");
        assert!(says(&file[..file.len() - 1]).contains("checksum"));
        assert!(says(&[file.as_slice(), b"!"].concat()).contains("checksum"));
        let mut flipped = file.clone();
        flipped[10] ^= 1;
        assert!(says(&flipped).contains("checksum"));
        assert!(says(&file[..6]).contains("truncated"));
        assert!(says(b"PK\x03\x04 a zip file, not ours").contains("not a Strom"));
        let mut newer = file.clone();
        newer[5] = 9;
        assert!(says(&newer).contains("format version 9"));
    }
}

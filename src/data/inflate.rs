//! Decompressing untrusted files: never more bytes than the container declares, and a
//! declaration is believed only up to what its compressed bytes can hold.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// The most bytes one byte of a deflate stream (gzip, zlib) can expand to: a 258-byte
/// match coded in under two bits, 1032:1 at best (RFC 1951's longest match over its
/// shortest code).
const DEFLATE_MAX_RATIO: usize = 1032;

/// Appends at most `n` more bytes of `reader` to `out` (fewer at the end of the
/// stream). The buffer grows with what is read, not with `n`.
pub(crate) fn read_at_most(
    reader: &mut impl Read,
    n: usize,
    out: &mut Vec<u8>,
) -> std::io::Result<()> {
    reader.take(n as u64).read_to_end(out).map(|_| ())
}

/// Checks that `declared` decompressed bytes (what a header inside the stream says)
/// can come out of `compressed` bytes of deflate, before anything is allocated for
/// them; `what` names the header in the error.
pub(crate) fn check_declared(
    path: &Path,
    what: &str,
    declared: usize,
    compressed: usize,
) -> Result<()> {
    if declared / DEFLATE_MAX_RATIO > compressed {
        return Err(Error::format(
            path,
            format!(
                "{what} declares {declared} bytes, more than {compressed} compressed bytes \
                 can hold (deflate expands at most {DEFLATE_MAX_RATIO}:1)"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn the_ratio_bound_holds_for_the_most_compressible_input() {
        // Zeros are deflate's best case: the bound must admit them.
        let zeros = vec![0u8; 4 << 20];
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&zeros).unwrap();
        let compressed = enc.finish().unwrap();
        let path = Path::new("zeros");
        check_declared(path, "header", zeros.len(), compressed.len()).unwrap();
        let msg = check_declared(path, "header", zeros.len(), 10)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("header declares 4194304 bytes"), "{msg}");

        let mut out = vec![7];
        let mut dec = flate2::read::ZlibDecoder::new(&compressed[..]);
        read_at_most(&mut dec, 100, &mut out).unwrap();
        assert_eq!(out.len(), 101);
        read_at_most(&mut dec, usize::MAX, &mut out).unwrap();
        assert_eq!(out.len(), 1 + zeros.len());
    }
}

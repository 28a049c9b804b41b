//! A reader for MATLAB Level-5 MAT-files: numeric arrays, plain or zlib-compressed.
//!
//! Layout (MathWorks, "MAT-File Format", Level 5): a 128-byte header whose last two bytes
//! are the byte-order mark (`IM` read in order means little-endian), then data elements.
//! Each element is an 8-byte tag (u32 type, u32 byte count) and its data padded to 8
//! bytes, or a "small" element with type and count packed in the first u32 (count in the
//! upper 16 bits) and up to 4 data bytes in the second. A top-level element is an
//! `miMATRIX` or an `miCOMPRESSED` holding one zlib-compressed `miMATRIX` (not padded).
//! An `miMATRIX` holds array flags (class in the low byte), dimensions, the name and
//! the real part, whose element type may be narrower than the class (a double array
//! of small integers is stored as `miUINT8`).

pub mod writer;

use std::path::{Path, PathBuf};

use crate::data::inflate::{check_declared, read_at_most};
use crate::error::{Error, Result};
use crate::storage::read_regular_file;

/// Element type codes.
pub(crate) mod mi {
    pub const INT8: u32 = 1;
    pub const UINT8: u32 = 2;
    pub const INT16: u32 = 3;
    pub const UINT16: u32 = 4;
    pub const INT32: u32 = 5;
    pub const UINT32: u32 = 6;
    pub const SINGLE: u32 = 7;
    pub const DOUBLE: u32 = 9;
    pub const INT64: u32 = 12;
    pub const UINT64: u32 = 13;
    pub const MATRIX: u32 = 14;
    pub const COMPRESSED: u32 = 15;
    pub const UTF8: u32 = 16;
}

/// Array classes `mxDOUBLE_CLASS` (6) to `mxUINT64_CLASS` (15) are numeric.
const NUMERIC_CLASSES: std::ops::RangeInclusive<u32> = 6..=15;

/// Byte order of a MAT-file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endian {
    /// `IM` mark.
    Little,
    /// `MI` mark.
    Big,
}

impl Endian {
    fn u32(self, b: &[u8]) -> u32 {
        let b = [b[0], b[1], b[2], b[3]];
        match self {
            Endian::Little => u32::from_le_bytes(b),
            Endian::Big => u32::from_be_bytes(b),
        }
    }

    fn u16(self, b: &[u8]) -> u16 {
        match self {
            Endian::Little => u16::from_le_bytes([b[0], b[1]]),
            Endian::Big => u16::from_be_bytes([b[0], b[1]]),
        }
    }

    fn u64(self, b: &[u8]) -> u64 {
        let b = [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
        match self {
            Endian::Little => u64::from_le_bytes(b),
            Endian::Big => u64::from_be_bytes(b),
        }
    }
}

/// One variable of a MAT-file.
#[derive(Clone, Debug, PartialEq)]
pub struct MatVariable {
    /// Its name.
    pub name: String,
    /// Array class code (6 = double, 9 = uint8, …).
    pub class: u32,
    /// Dimensions, column-major (first index fastest).
    pub dims: Vec<usize>,
    data_type: u32,
    data: Vec<u8>,
    endian: Endian,
}

/// Bytes per value of a numeric element type, `None` if the type is not numeric.
fn value_size(data_type: u32) -> Option<usize> {
    match data_type {
        mi::INT8 | mi::UINT8 => Some(1),
        mi::INT16 | mi::UINT16 => Some(2),
        mi::INT32 | mi::UINT32 | mi::SINGLE => Some(4),
        mi::DOUBLE | mi::INT64 | mi::UINT64 => Some(8),
        _ => None,
    }
}

impl MatVariable {
    /// The values as f64, in storage (column-major) order.
    pub fn to_f64(&self, path: &Path) -> Result<Vec<f64>> {
        let size = value_size(self.data_type).ok_or_else(|| {
            Error::format(
                path,
                format!("variable {} is not a numeric array", self.name),
            )
        })?;
        let e = self.endian;
        Ok(self
            .data
            .chunks_exact(size)
            .map(|b| match self.data_type {
                mi::INT8 => b[0] as i8 as f64,
                mi::UINT8 => b[0] as f64,
                mi::INT16 => e.u16(b) as i16 as f64,
                mi::UINT16 => e.u16(b) as f64,
                mi::INT32 => e.u32(b) as i32 as f64,
                mi::UINT32 => e.u32(b) as f64,
                mi::SINGLE => f32::from_bits(e.u32(b)) as f64,
                mi::DOUBLE => f64::from_bits(e.u64(b)),
                mi::INT64 => e.u64(b) as i64 as f64,
                _ => e.u64(b) as f64,
            })
            .collect())
    }

    /// The values as bytes; an error names the first value that is not an integer in
    /// 0..=255.
    pub fn to_u8(&self, path: &Path) -> Result<Vec<u8>> {
        if self.data_type == mi::UINT8 {
            return Ok(self.data.clone());
        }
        self.to_f64(path)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                if (0.0..=255.0).contains(&v) && v.fract() == 0.0 {
                    Ok(v as u8)
                } else {
                    Err(Error::format(
                        path,
                        format!("value {v} at index {i} of {} is not a byte", self.name),
                    ))
                }
            })
            .collect()
    }
}

/// The variables of a MAT-file.
#[derive(Clone, Debug)]
pub struct MatFile {
    /// Where it was read from (for errors).
    pub path: PathBuf,
    /// Its variables in file order.
    pub variables: Vec<MatVariable>,
}

/// One data element: its type, its data, and where the next one starts.
struct Element<'a> {
    data_type: u32,
    data: &'a [u8],
    next: usize,
}

/// Reads the element at `pos` of `buf`; `context` says where `buf` is, for errors.
fn element<'a>(
    path: &Path,
    buf: &'a [u8],
    pos: usize,
    endian: Endian,
    context: &str,
) -> Result<Element<'a>> {
    let truncated = |what: String| Error::format(path, format!("truncated: {what} ({context})"));
    if buf.len() < pos + 8 {
        return Err(truncated(format!(
            "element tag at offset {pos} needs 8 bytes, {} remain",
            buf.len().saturating_sub(pos)
        )));
    }
    let first = endian.u32(&buf[pos..]);
    if first >> 16 != 0 {
        let count = (first >> 16) as usize;
        if count > 4 {
            return Err(Error::format(
                path,
                format!(
                    "small element at offset {pos} claims {count} bytes, at most 4 fit ({context})"
                ),
            ));
        }
        return Ok(Element {
            data_type: first & 0xffff,
            data: &buf[pos + 4..pos + 4 + count],
            next: pos + 8,
        });
    }
    let count = endian.u32(&buf[pos + 4..]) as usize;
    let start = pos + 8;
    if buf.len() - start < count {
        return Err(truncated(format!(
            "element at offset {pos} declares {count} bytes, {} remain",
            buf.len() - start
        )));
    }
    let end = start + count;
    let next = if first == mi::COMPRESSED {
        end
    } else {
        (start + count.next_multiple_of(8)).min(buf.len())
    };
    Ok(Element {
        data_type: first,
        data: &buf[start..end],
        next,
    })
}

impl MatFile {
    /// Reads and parses a Level-5 MAT-file.
    pub fn read(path: &Path) -> Result<MatFile> {
        let bytes = read_regular_file(path)?;
        MatFile::parse(path, &bytes)
    }

    /// Parses the bytes of a Level-5 MAT-file; `path` is only for errors.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<MatFile> {
        if bytes.len() < 128 {
            return Err(Error::format(
                path,
                format!(
                    "truncated: {} bytes, the MAT-file header needs 128",
                    bytes.len()
                ),
            ));
        }
        let endian = match &bytes[126..128] {
            b"IM" => Endian::Little,
            b"MI" => Endian::Big,
            other => {
                return Err(Error::format(
                    path,
                    format!(
                        "bad byte-order mark {:?} at offset 126: not a Level-5 MAT-file",
                        String::from_utf8_lossy(other)
                    ),
                ))
            }
        };
        let version = endian.u16(&bytes[124..]);
        if version != 0x0100 {
            return Err(Error::format(
                path,
                format!(
                    "MAT-file version 0x{version:04x}: only Level 5 (0x0100) is supported; \
                     v7.3 files are HDF5"
                ),
            ));
        }
        let mut variables = Vec::new();
        let mut pos = 128;
        while pos < bytes.len() {
            let el = element(path, bytes, pos, endian, "top level")?;
            let context = format!("element at offset {pos}");
            match el.data_type {
                mi::MATRIX => variables.push(matrix(path, el.data, endian, &context)?),
                mi::COMPRESSED => {
                    let inflated = inflate_element(path, el.data, endian, &context)?;
                    let context = format!("inside compressed {context}");
                    let inner = element(path, &inflated, 0, endian, &context)?;
                    if inner.data_type != mi::MATRIX {
                        return Err(Error::format(
                            path,
                            format!(
                                "{context}: type {} where miMATRIX (14) was expected",
                                inner.data_type
                            ),
                        ));
                    }
                    variables.push(matrix(path, inner.data, endian, &context)?);
                }
                other => {
                    return Err(Error::format(
                        path,
                        format!(
                            "{context}: unexpected type {other}, expected miMATRIX or miCOMPRESSED"
                        ),
                    ))
                }
            }
            pos = el.next;
        }
        Ok(MatFile {
            path: path.to_path_buf(),
            variables,
        })
    }

    /// The variable called `name`; the error lists the names there are.
    pub fn variable(&self, name: &str) -> Result<&MatVariable> {
        self.variables
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.variables.iter().map(|v| v.name.as_str()).collect();
                Error::format(
                    &self.path,
                    format!("no variable {name:?} (the file has {names:?})"),
                )
            })
    }
}

/// The decompressed bytes of an `miCOMPRESSED` element: one element whose tag declares
/// its size, read no further than that (plus one byte, so that a longer stream is seen
/// as such) and only if the compressed bytes can hold that much.
fn inflate_element(
    path: &Path,
    compressed: &[u8],
    endian: Endian,
    context: &str,
) -> Result<Vec<u8>> {
    let corrupt = |e: std::io::Error| {
        Error::format(
            path,
            format!("compressed {context}: zlib stream is corrupt or truncated: {e}"),
        )
    };
    let mut stream = flate2::read::ZlibDecoder::new(compressed);
    let mut inflated = Vec::new();
    read_at_most(&mut stream, 8, &mut inflated).map_err(corrupt)?;
    if inflated.len() < 8 {
        // Too short for a tag: the element parser says so.
        return Ok(inflated);
    }
    let declared = endian.u32(&inflated[4..]) as usize;
    let what = format!("the element tag inside compressed {context}");
    check_declared(path, &what, declared, compressed.len())?;
    let padded = declared.next_multiple_of(8);
    read_at_most(&mut stream, padded + 1, &mut inflated).map_err(corrupt)?;
    Ok(inflated)
}

/// Parses the contents of an `miMATRIX` element.
fn matrix(path: &Path, content: &[u8], endian: Endian, context: &str) -> Result<MatVariable> {
    let bad = |what: String| Error::format(path, format!("{context}: {what}"));
    let flags = element(path, content, 0, endian, context)?;
    if flags.data_type != mi::UINT32 || flags.data.len() != 8 {
        return Err(bad(format!(
            "array flags have type {} and {} bytes, expected miUINT32 (6) and 8",
            flags.data_type,
            flags.data.len()
        )));
    }
    let class = endian.u32(flags.data) & 0xff;
    let dims_el = element(path, content, flags.next, endian, context)?;
    if dims_el.data_type != mi::INT32 || dims_el.data.len() % 4 != 0 {
        return Err(bad(format!(
            "dimensions have type {}, expected miINT32 (5)",
            dims_el.data_type
        )));
    }
    let dims = dims_el
        .data
        .chunks_exact(4)
        .map(|b| usize::try_from(endian.u32(b) as i32))
        .collect::<std::result::Result<Vec<usize>, _>>()
        .map_err(|_| bad("negative dimension".to_string()))?;
    let name_el = element(path, content, dims_el.next, endian, context)?;
    if name_el.data_type != mi::INT8 && name_el.data_type != mi::UTF8 {
        return Err(bad(format!(
            "array name has type {}, expected miINT8 (1)",
            name_el.data_type
        )));
    }
    let name = String::from_utf8_lossy(name_el.data).into_owned();
    let mut variable = MatVariable {
        name,
        class,
        dims,
        data_type: 0,
        data: Vec::new(),
        endian,
    };
    if !NUMERIC_CLASSES.contains(&class) {
        return Ok(variable);
    }
    let real = element(path, content, name_el.next, endian, context)?;
    let size = value_size(real.data_type).ok_or_else(|| {
        bad(format!(
            "real part of {} has type {}, which is not numeric",
            variable.name, real.data_type
        ))
    })?;
    let count = variable
        .dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {:?} overflow", variable.dims)))?;
    if Some(real.data.len()) != count.checked_mul(size) {
        return Err(bad(format!(
            "count mismatch: {} has dimensions {:?} ({count} values of {size} bytes) but its data holds {} bytes",
            variable.name,
            variable.dims,
            real.data.len()
        )));
    }
    variable.data_type = real.data_type;
    variable.data = real.data.to_vec();
    Ok(variable)
}

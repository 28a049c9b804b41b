//! Writes Level-5 MAT-files the way MATLAB does: for the reader's tests, and for tests
//! elsewhere that need SVHN-format files (the real ones cannot be downloaded there).

use std::io::Write;

use super::mi;

/// Values of one variable and how they are stored.
pub enum Numeric {
    /// Class uint8, stored as miUINT8.
    U8(Vec<u8>),
    /// Class double, stored as miDOUBLE.
    F64(Vec<f64>),
    /// Class double whose values fit a byte, stored as miUINT8 (MATLAB's compact form).
    DoubleAsU8(Vec<u8>),
}

/// Builds a MAT-file in memory.
pub struct MatWriter {
    big_endian: bool,
    out: Vec<u8>,
}

impl MatWriter {
    /// Starts a file with the 128-byte header.
    pub fn new(big_endian: bool) -> Self {
        let mut out = format!(
            "MATLAB 5.0 MAT-file, Platform: test, Created on: {:?}",
            "now"
        )
        .into_bytes();
        out.resize(116, b' ');
        out.extend([0u8; 8]);
        let mut w = MatWriter { big_endian, out };
        let version = w.u16(0x0100);
        let mark = w.u16(u16::from_be_bytes(*b"MI"));
        w.out.extend(version);
        w.out.extend(mark);
        w
    }

    fn u16(&self, v: u16) -> [u8; 2] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn u32(&self, v: u32) -> [u8; 4] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    /// A data element, in the small format when the data fits 4 bytes.
    fn element(&self, data_type: u32, data: &[u8]) -> Vec<u8> {
        let mut e = Vec::new();
        if data.len() <= 4 && data_type != mi::MATRIX {
            e.extend(self.u32(((data.len() as u32) << 16) | data_type));
            e.extend(data);
            e.resize(8, 0);
        } else {
            e.extend(self.u32(data_type));
            e.extend(self.u32(data.len() as u32));
            e.extend(data);
            e.resize(8 + data.len().next_multiple_of(8), 0);
        }
        e
    }

    /// Appends a variable, wrapped in miCOMPRESSED when `compressed`.
    pub fn variable(&mut self, name: &str, dims: &[usize], values: Numeric, compressed: bool) {
        let (class, data_type, bytes) = match values {
            Numeric::U8(v) => (9, mi::UINT8, v),
            Numeric::DoubleAsU8(v) => (6, mi::UINT8, v),
            Numeric::F64(v) => (
                6,
                mi::DOUBLE,
                v.iter()
                    .flat_map(|x| {
                        if self.big_endian {
                            x.to_be_bytes()
                        } else {
                            x.to_le_bytes()
                        }
                    })
                    .collect(),
            ),
        };
        let flags: Vec<u8> = [self.u32(class), self.u32(0)].concat();
        let dims: Vec<u8> = dims.iter().flat_map(|&d| self.u32(d as u32)).collect();
        let content = [
            self.element(mi::UINT32, &flags),
            self.element(mi::INT32, &dims),
            self.element(mi::INT8, name.as_bytes()),
            self.element(data_type, &bytes),
        ]
        .concat();
        let matrix = self.element(mi::MATRIX, &content);
        if compressed {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            z.write_all(&matrix).expect("writing to memory");
            let z = z.finish().expect("writing to memory");
            self.out.extend(self.u32(mi::COMPRESSED));
            self.out.extend(self.u32(z.len() as u32));
            self.out.extend(z);
        } else {
            self.out.extend(matrix);
        }
    }

    /// The file's bytes.
    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

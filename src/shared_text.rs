//! Text of a fixed size, for tables in shared memory (which cannot grow): a value longer
//! than the field is cut at a character boundary.

#[derive(Copy, Clone)]
pub struct Text<const N: usize> {
    len: u16,
    bytes: [u8; N],
}

impl<const N: usize> Text<N> {
    pub const EMPTY: Self = Text { len: 0, bytes: [0; N] };

    /// `value` cut to the field's size at a character boundary.
    pub fn from(value: &str) -> Self {
        let mut end = value.len().min(N);
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        let mut text = Self::EMPTY;
        text.bytes[..end].copy_from_slice(&value.as_bytes()[..end]);
        text.len = end as u16;
        text
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }

    /// The text, or `None` when empty.
    pub fn non_empty(&self) -> Option<String> {
        Some(self.as_str().to_owned()).filter(|t| !t.is_empty())
    }
}

//! Counting, as `wc` does it: lines are newline bytes, words are maximal
//! runs of non-whitespace.

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub lines: u64,
    pub words: u64,
    pub bytes: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.lines += o.lines;
        self.words += o.words;
        self.bytes += o.bytes;
    }
}

pub fn count(data: &[u8]) -> Counts {
    let mut c = Counts {
        bytes: data.len() as u64,
        ..Counts::default()
    };
    let mut in_word = false;
    for &b in data {
        if b == b'\n' {
            c.lines += 1;
        }
        let space = b.is_ascii_whitespace();
        if !space && !in_word {
            c.words += 1;
        }
        in_word = !space;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_like_wc() {
        assert_eq!(
            count(b"hello world\nbye\n"),
            Counts {
                lines: 2,
                words: 3,
                bytes: 16
            }
        );
        assert_eq!(count(b""), Counts::default());
        assert_eq!(
            count(b"  a  "),
            Counts {
                lines: 0,
                words: 1,
                bytes: 5
            }
        );
    }
}

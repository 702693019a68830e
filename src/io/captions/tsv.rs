//! TSV image-caption lists: one `image_path<TAB>caption` per line, image paths relative
//! to the file. Blank lines and lines starting with `#` are ignored; malformed lines are
//! reported with their line number and skipped.

/// One usable line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairLine {
    /// 1-based line number.
    pub line: usize,
    /// Image path as written.
    pub image: String,
    /// Caption.
    pub caption: String,
}

/// Parses a pairs file; returns the usable lines and (line, reason) for the rest.
pub fn parse(text: &str) -> (Vec<PairLine>, Vec<(usize, String)>) {
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim_end_matches('\r');
        if l.trim().is_empty() || l.starts_with('#') {
            continue;
        }
        match l.split_once('\t') {
            Some((img, cap)) if !img.trim().is_empty() && !cap.contains('\t') => {
                ok.push(PairLine {
                    line,
                    image: img.trim().to_string(),
                    caption: cap.to_string(),
                })
            }
            Some((img, _)) if img.trim().is_empty() => bad.push((line, "empty image path".into())),
            Some(_) => bad.push((
                line,
                "more than one tab (expected image<TAB>caption)".into(),
            )),
            None => bad.push((line, "no tab (expected image<TAB>caption)".into())),
        }
    }
    (ok, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_reports() {
        let (ok, bad) =
            parse("a.png\ta cat\n\n# note\nno tab here\n\tcaption only\nb.jpg\tx\ty\nc.png\t\r\n");
        assert_eq!(ok.len(), 2);
        assert_eq!(
            ok[0],
            PairLine {
                line: 1,
                image: "a.png".into(),
                caption: "a cat".into()
            }
        );
        assert_eq!(ok[1].caption, "");
        assert_eq!(bad.iter().map(|b| b.0).collect::<Vec<_>>(), vec![4, 5, 6]);
    }
}

//! CSV image-caption sets (RFC 4180: quoted fields may hold commas, quotes doubled, and
//! line breaks). The header row names the columns; the image and caption columns are
//! chosen by name.

use super::Parsed;
use crate::error::{Error, Result};

/// One CSV record's fields and the 1-based line it starts on.
type Record = (usize, Vec<String>);

/// Splits CSV text into records; an unterminated quote is an error at its line.
fn records(text: &str) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    let (mut field, mut fields) = (String::new(), Vec::new());
    let (mut line, mut start) = (1usize, 1usize);
    let (mut quoted, mut at_start) = (false, true);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' {
            line += 1;
        }
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, _) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => fields.push(std::mem::take(&mut field)),
            (false, '\n') => {
                fields.push(std::mem::take(&mut field));
                let f = std::mem::take(&mut fields);
                if !(f.len() == 1 && f[0].trim().is_empty()) {
                    out.push((start, f));
                }
                start = line;
            }
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, _) => field.push(c),
        }
        at_start = false;
    }
    if quoted {
        return Err(Error::Invalid(format!(
            "line {start}: a quoted field is never closed"
        )));
    }
    if !at_start && (!field.is_empty() || !fields.is_empty()) {
        fields.push(field);
        out.push((start, fields));
    }
    Ok(out)
}

/// Parses a CSV set: (line, image, caption) per usable record, and (line, reason) for
/// the rest. Missing columns are an error for the whole file.
pub fn parse(text: &str, image_column: &str, caption_column: &str) -> Result<Parsed> {
    let recs = records(text.strip_prefix('\u{feff}').unwrap_or(text))?;
    let Some(((_, header), rows)) = recs.split_first() else {
        return Err(Error::Invalid("the CSV file is empty".into()));
    };
    let col = |name: &str| {
        header.iter().position(|h| h.trim() == name).ok_or_else(|| {
            Error::Invalid(format!(
                "the CSV header has no {name:?} column (it has {header:?}); choose the columns with --image-column / --caption-column"
            ))
        })
    };
    let (ic, cc) = (col(image_column)?, col(caption_column)?);
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    for (line, f) in rows {
        match (f.get(ic), f.get(cc)) {
            (Some(img), _) if img.trim().is_empty() => bad.push((*line, "empty image path".into())),
            (Some(img), Some(cap)) => ok.push((*line, img.trim().to_string(), cap.clone())),
            _ => bad.push((
                *line,
                format!("{} fields; the header has {}", f.len(), header.len()),
            )),
        }
    }
    Ok((ok, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_commas_and_line_breaks() {
        let text = "caption,image\n\"a cat, sitting\",a.png\n\"say \"\"hi\"\"\nthere\",b.png\n,\n\"x\",\nlonely\n";
        let (ok, bad) = parse(text, "image", "caption").unwrap();
        assert_eq!(ok[0], (2, "a.png".into(), "a cat, sitting".into()));
        assert_eq!(ok[1], (3, "b.png".into(), "say \"hi\"\nthere".into()));
        assert_eq!(bad.iter().map(|b| b.0).collect::<Vec<_>>(), vec![5, 6, 7]);
        assert!(parse("image,caption\n\"open", "image", "caption").is_err());
        let e = parse("file,text\na,b\n", "image", "caption").unwrap_err();
        assert!(e.to_string().contains("--image-column"), "{e}");
    }
}

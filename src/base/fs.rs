//! Crash-safe file writes (native only): a reader or a resumed job never sees half a file.

use crate::error::{Error, Result};

/// Writes a file through a temporary sibling and a rename, so readers (and a resumed
/// job) never see half a file.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Writes a directory of files as one unit (checkpoints): into `DIR.tmp`, then the old
/// `DIR` is moved to `DIR.old`, the new one renamed into place and the old one removed.
/// A crash leaves either `DIR` or `DIR.old` complete; [`checkpoint_dir`] finds it.
pub fn write_dir_atomic(dir: &std::path::Path, files: &[(&str, Vec<u8>)]) -> Result<()> {
    let io = |p: &std::path::Path| {
        let p = p.display().to_string();
        move |source| Error::Io {
            path: p.clone(),
            source,
        }
    };
    let tmp = dir.with_extension("tmp");
    let old = dir.with_extension("old");
    std::fs::remove_dir_all(&tmp).ok();
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    for (name, bytes) in files {
        std::fs::write(tmp.join(name), bytes).map_err(io(&tmp))?;
    }
    std::fs::remove_dir_all(&old).ok();
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(io(dir))?;
    }
    std::fs::rename(&tmp, dir).map_err(io(dir))?;
    std::fs::remove_dir_all(&old).ok();
    Ok(())
}

/// The complete copy of a directory written by [`write_dir_atomic`]: `DIR`, or `DIR.old`
/// when a crash came between its two renames.
pub fn checkpoint_dir(dir: &std::path::Path) -> std::path::PathBuf {
    if dir.exists() {
        dir.to_path_buf()
    } else {
        dir.with_extension("old")
    }
}

/// Reads a whole file, with the path in the error.
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Creates a directory and its parents, with the path in the error.
pub fn create_dir(dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.display().to_string(),
        source,
    })
}

/// Reads a whole file as UTF-8 text, with the path in the error.
pub fn read_text(path: &std::path::Path) -> Result<String> {
    String::from_utf8(read_file(path)?)
        .map_err(|_| Error::Invalid(format!("{}: not UTF-8 text", path.display())))
}

/// Writes a value as pretty JSON, atomically.
pub fn write_json<T: serde::Serialize + ?Sized>(path: &std::path::Path, value: &T) -> Result<()> {
    write_atomic(path, &to_json_pretty(value)?)
}

/// A value as pretty JSON bytes.
pub fn to_json_pretty<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(|e| Error::Invalid(e.to_string()))
}

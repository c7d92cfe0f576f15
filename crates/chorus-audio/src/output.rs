//! An output file written as it is produced, and complete or absent: `chorus say` streams audio into it chunk by
//! chunk, `chorus artifacts export` its JSON lines.
//!
//! A regular file is written under a temporary name beside it and renamed over the destination only when
//! [`OutputFile::commit`] succeeds, so a failed run never leaves a partial file that looks finished. `-` is
//! standard output; a device, FIFO or socket (`/dev/null`, a named pipe) is written in place, since renaming a
//! file over it would replace it (as root, a regular file would take `/dev/null`'s place for every process).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Where output goes; see the module documentation.
#[derive(Debug)]
pub enum OutputFile {
    Stdout(io::Stdout),
    /// A regular file, written as `tmp` until committed to `dest`.
    File {
        tmp: PathBuf,
        dest: PathBuf,
        file: BufWriter<File>,
    },
    /// A device, FIFO or socket, written in place.
    Special(BufWriter<File>),
}

/// True when `path` exists and is neither a regular file nor a directory: a device, a FIFO, a socket.
pub fn is_special_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

/// An I/O error that names the path it happened on.
fn at(what: &str, path: &Path) -> impl FnOnce(io::Error) -> io::Error {
    let context = format!("cannot {what} {}", path.display());
    move |e| io::Error::new(e.kind(), format!("{context}: {e}"))
}

impl OutputFile {
    /// Opens `dest` (`-` for standard output).
    pub fn open(dest: &Path) -> io::Result<Self> {
        if dest.as_os_str() == "-" {
            return Ok(Self::Stdout(io::stdout()));
        }
        if is_special_file(dest) {
            let file = std::fs::OpenOptions::new().write(true).open(dest).map_err(at("open", dest))?;
            return Ok(Self::Special(BufWriter::new(file)));
        }
        let name = dest
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the output path has no file name"))?;
        let tmp = dest.with_file_name(format!(".{}.partial-{}", name.to_string_lossy(), std::process::id()));
        let file = File::create(&tmp).map_err(at("create", &tmp))?;
        Ok(Self::File { tmp, dest: dest.to_path_buf(), file: BufWriter::new(file) })
    }

    /// Appends `bytes` and flushes them, so a reader of standard output or a pipe gets them at once.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        match self {
            Self::Stdout(out) => {
                let mut lock = out.lock();
                lock.write_all(bytes)?;
                lock.flush()
            }
            Self::File { file, .. } | Self::Special(file) => {
                file.write_all(bytes)?;
                file.flush()
            }
        }
    }

    /// Finishes the output: `finish` may rewrite the regular file before it is synced and renamed into place
    /// (a WAV header's sizes, [`crate::finalize_wav_file`]). On failure the temporary file is removed and the
    /// destination left as it was.
    pub fn commit(self, finish: impl FnOnce(&mut File) -> io::Result<()>) -> io::Result<()> {
        match self {
            Self::Stdout(_) => Ok(()),
            Self::Special(mut file) => file.flush(),
            Self::File { tmp, dest, file } => {
                let committed = (|| {
                    let mut file = file.into_inner().map_err(io::IntoInnerError::into_error)?;
                    finish(&mut file)?;
                    file.sync_all()?;
                    std::fs::rename(&tmp, &dest).map_err(at("write", &dest))
                })();
                if committed.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                }
                committed
            }
        }
    }

    /// Gives up: a temporary file is removed, the destination left as it was.
    pub fn abandon(self) {
        if let Self::File { tmp, .. } = self {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_appears_only_when_committed() {
        let dir = std::env::temp_dir().join(format!("chorus-output-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dest = dir.join("out.bin");
        let mut out = OutputFile::open(&dest).unwrap();
        out.write(b"abc").unwrap();
        assert!(!dest.exists(), "a partial file is not at the destination");
        out.commit(|_| Ok(())).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"abc");

        let mut out = OutputFile::open(&dest).unwrap();
        out.write(b"partial").unwrap();
        out.abandon();
        assert_eq!(std::fs::read(&dest).unwrap(), b"abc", "an abandoned output leaves the old file");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temporary file is left");

        let mut out = OutputFile::open(&dest).unwrap();
        out.write(b"broken").unwrap();
        let failed = out.commit(|_| Err(io::Error::other("finishing failed")));
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&dest).unwrap(), b"abc", "a failed commit leaves the old file");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "a failed commit leaves no temporary file");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_device_is_written_in_place() {
        let dev = Path::new("/dev/null");
        assert!(is_special_file(dev));
        let mut out = OutputFile::open(dev).unwrap();
        out.write(b"x").unwrap();
        out.commit(|_| Ok(())).unwrap();
        assert!(is_special_file(dev), "/dev/null is still a device");
    }
}

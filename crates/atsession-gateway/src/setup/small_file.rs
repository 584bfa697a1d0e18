//! Reading the small files a command is given (key files, password files, JWKS): at most
//! [`MAX_LEN`] bytes, so that `/dev/zero` or a log file given by mistake is refused at once
//! instead of read until memory runs out. Key files must also be private to their owner.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// The longest file read: 64 KiB.
pub const MAX_LEN: u64 = 64 * 1024;

/// Why a file could not be read. Never holds the file's content.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Opening or reading failed.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file holds more than [`MAX_LEN`] bytes (or never ends).
    #[error("{path} is longer than {MAX_LEN} bytes; is it the right file?")]
    TooLong {
        /// The file.
        path: PathBuf,
    },
    /// The file is not UTF-8 text.
    #[error("{path} is not UTF-8 text")]
    NotText {
        /// The file.
        path: PathBuf,
    },
    /// A secret file that others can read (as ssh refuses a private key).
    #[error(
        "{path} has permissions {mode:04o}: a key file must not be readable by group or others (chmod 600 {path})"
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// Reads a text file of at most [`MAX_LEN`] bytes. The buffer is zeroed when dropped.
pub fn read(path: &Path) -> Result<Zeroizing<String>, FileError> {
    let file = open(path)?;
    read_open(path, file)
}

/// [`read`] for a file holding secrets: also refused when readable by group or others.
pub fn read_secret(path: &Path) -> Result<Zeroizing<String>, FileError> {
    let file = open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = file.metadata().map_err(|source| FileError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_file() && mode & 0o077 != 0 {
            return Err(FileError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
    }
    read_open(path, file)
}

fn open(path: &Path) -> Result<std::fs::File, FileError> {
    std::fs::File::open(path).map_err(|source| FileError::Io {
        path: path.to_owned(),
        source,
    })
}

fn read_open(path: &Path, file: std::fs::File) -> Result<Zeroizing<String>, FileError> {
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| FileError::Io {
            path: path.to_owned(),
            source,
        })?;
    if bytes.len() as u64 > MAX_LEN {
        return Err(FileError::TooLong {
            path: path.to_owned(),
        });
    }
    match std::str::from_utf8(&bytes) {
        Ok(text) => Ok(Zeroizing::new(text.to_owned())),
        Err(_) => Err(FileError::NotText {
            path: path.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn an_endless_file_is_refused_at_once() {
        let start = Instant::now();
        let e = read(Path::new("/dev/zero")).unwrap_err();
        assert!(matches!(e, FileError::TooLong { .. }), "{e:?}");
        assert!(e.to_string().contains("/dev/zero"));
        // /dev/zero is readable by everyone, but it is no regular file: too long, not too open.
        assert!(matches!(
            read_secret(Path::new("/dev/zero")),
            Err(FileError::TooLong { .. })
        ));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn small_files_read_and_open_key_files_are_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, "k1:abc\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret(&path).unwrap().as_str(), "k1:abc\n");
        for mode in [0o640, 0o604, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            match read_secret(&path) {
                Err(FileError::TooOpen { mode: m, .. }) => assert_eq!(m, mode),
                other => panic!("{mode:o}: {other:?}"),
            }
            assert_eq!(read(&path).unwrap().as_str(), "k1:abc\n");
        }
        std::fs::write(&path, vec![b'a'; MAX_LEN as usize]).unwrap();
        assert_eq!(read(&path).unwrap().len(), MAX_LEN as usize);
        std::fs::write(&path, vec![b'a'; MAX_LEN as usize + 1]).unwrap();
        assert!(matches!(read(&path), Err(FileError::TooLong { .. })));
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(matches!(read(&path), Err(FileError::NotText { .. })));
    }
}

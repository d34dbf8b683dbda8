//! Files and folders that hold secrets (the store, its key, the signing key): created readable
//! by their owner only, so there is no moment in which another user could open them.

use std::path::Path;

/// Creates a file readable only by its owner (0600), failing if it exists.
pub fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Opens a file for appending, creating it readable only by its owner (0600) when it does not
/// exist; an existing file is made private too (the returned flag says it was not: log it).
pub fn open_private_append(path: &Path) -> std::io::Result<(std::fs::File, bool)> {
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    let loosened = restrict_permissions(path)?;
    Ok((file, loosened))
}

/// Writes `contents` to `path` readable by its owner only (0600), atomically: a new private
/// file beside it, synced, then renamed over it (readers see the old file or the new one).
pub fn write_private_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp); // left by a crash between create and rename
    let mut file = create_private_file(&tmp)?;
    file.write_all(contents).and_then(|_| file.sync_all())?;
    std::fs::rename(&tmp, path)
}

/// Creates a folder (and its parents) that only its owner may enter (0700); an existing
/// folder is left as it is.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Makes an existing file readable only by its owner (0600). Returns whether it was readable
/// by others (the caller says so in the log).
pub fn restrict_permissions(path: &Path) -> std::io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if std::fs::metadata(path)?.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            return Ok(true);
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(false)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_and_folders_are_created_private_and_loosened_files_restricted() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        create_private_dir(&nested).unwrap();
        assert_eq!(mode(&nested), 0o700);

        let file = nested.join("secret");
        drop(create_private_file(&file).unwrap());
        assert_eq!(mode(&file), 0o600);
        assert!(create_private_file(&file).is_err(), "an existing file is never reused");

        assert!(!restrict_permissions(&file).unwrap(), "already private");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(restrict_permissions(&file).unwrap());
        assert_eq!(mode(&file), 0o600);

        let log = nested.join("log");
        let (mut f, loosened) = open_private_append(&log).unwrap();
        std::io::Write::write_all(&mut f, b"a").unwrap();
        assert!(!loosened);
        assert_eq!(mode(&log), 0o600);
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (mut f, loosened) = open_private_append(&log).unwrap();
        std::io::Write::write_all(&mut f, b"b").unwrap();
        assert!(loosened, "a loosened file is reported and restricted");
        assert_eq!((mode(&log), std::fs::read(&log).unwrap()), (0o600, b"ab".to_vec()));
    }

    #[test]
    fn private_files_are_replaced_whole_and_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring.json");
        write_private_atomically(&path, b"one").unwrap();
        write_private_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(mode(&path), 0o600);
        assert!(!path.with_extension("tmp").exists());
    }
}

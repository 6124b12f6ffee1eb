//! WAL segments written ahead of the server, outside its WAL write lock.
//!
//! When PostgreSQL needs a segment that does not exist yet, the backend that crosses into it
//! zero-fills 16 MB and syncs it while holding the WAL write lock, and every commit waits. Until
//! the first checkpoints recycle old segments into future ones (tens of minutes on a new
//! cluster under steady load), that is a stall every few seconds. A segment file already there
//! under the next names is opened and written in place, exactly like a recycled one, so a
//! process that keeps a window of them ready takes the zero-filling off the commit path.
//!
//! Safety: a file is written under a temporary name and linked into place with `link(2)`, which
//! never replaces an existing file, so a segment the server created meanwhile (and may be
//! writing) is left alone. The temporary name is `xlogtemp.<pid>`, the pattern the server
//! removes on its next start, so a crash mid-write leaves nothing behind for long.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Whether `name` is a WAL segment file name (timeline, log, segment: 24 upper-case hex digits).
pub fn is_segment_name(name: &str) -> bool {
    name.len() == 24
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// The names of the `count` segments after `current` (a segment file name), for segments of
/// `segment_bytes`; empty when `current` is not a segment name.
pub fn names_after(current: &str, segment_bytes: u64, count: u64) -> Vec<String> {
    if !is_segment_name(current) || segment_bytes == 0 {
        return Vec::new();
    }
    let field = |range: std::ops::Range<usize>| u64::from_str_radix(&current[range], 16).ok();
    let (Some(timeline), Some(log), Some(seg)) = (field(0..8), field(8..16), field(16..24)) else {
        return Vec::new();
    };
    let per_log = 0x1_0000_0000 / segment_bytes;
    let number = log * per_log + seg;
    (1..=count)
        .map(|i| {
            let n = number + i;
            format!("{timeline:08X}{:08X}{:08X}", n / per_log, n % per_log)
        })
        .collect()
}

/// Writes segment `name` of `segment_bytes` zeros into `pg_wal`, owned as `pg_wal` is, unless a
/// file of that name exists. Returns whether it wrote one. The file is synced before it is
/// linked into place and the folder after, so a name that exists is a whole segment.
pub fn write_ahead(pg_wal: &Path, name: &str, segment_bytes: u64) -> std::io::Result<bool> {
    if !is_segment_name(name) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{name:?} is not a WAL segment name"),
        ));
    }
    let target = pg_wal.join(name);
    if target.exists() {
        return Ok(false);
    }
    let temporary = pg_wal.join(format!("xlogtemp.{}", std::process::id()));
    let written = fill(pg_wal, &temporary, segment_bytes).and_then(|()| {
        match fs::hard_link(&temporary, &target) {
            Ok(()) => Ok(true),
            // The server (or a recycling checkpoint) got there first: its file stays.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    });
    let removed = fs::remove_file(&temporary);
    let written = written?;
    removed?;
    if written {
        fs::File::open(pg_wal)?.sync_all()?;
    }
    Ok(written)
}

/// Zeros into a fresh `path`, owned by `pg_wal`'s owner with the server's file mode, synced.
fn fill(pg_wal: &Path, path: &Path, bytes: u64) -> std::io::Result<()> {
    let folder = fs::metadata(pg_wal)?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    if fs::metadata(path)?.uid() != folder.uid() {
        std::os::unix::fs::chown(path, Some(folder.uid()), Some(folder.gid()))?;
    }
    const CHUNK: usize = 1 << 20;
    let zeros = vec![0u8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_after_cross_a_log_boundary() {
        let next = names_after("0000000100000003000000FE", 16 << 20, 3);
        assert_eq!(
            next,
            [
                "0000000100000003000000FF",
                "000000010000000400000000",
                "000000010000000400000001"
            ]
        );
        // 1 GB segments: four to a log file.
        assert_eq!(
            names_after("000000020000000000000003", 1 << 30, 1),
            ["000000020000000100000000"]
        );
        assert!(names_after("00000001000000030000FE", 16 << 20, 3).is_empty());
        assert!(names_after("0000000100000003000000fe", 16 << 20, 3).is_empty());
    }

    #[test]
    fn a_segment_is_written_whole_and_never_over_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let name = "000000010000000000000002";
        assert!(write_ahead(dir.path(), name, 64 << 10).unwrap());
        let bytes = fs::read(dir.path().join(name)).unwrap();
        assert_eq!(bytes.len(), 64 << 10);
        assert!(bytes.iter().all(|&b| b == 0));
        let mode = fs::metadata(dir.path().join(name)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);

        // A file the server wrote into stays as it is.
        let theirs = "000000010000000000000003";
        fs::write(dir.path().join(theirs), b"WAL the server wrote").unwrap();
        assert!(!write_ahead(dir.path(), theirs, 64 << 10).unwrap());
        assert_eq!(
            fs::read(dir.path().join(theirs)).unwrap(),
            b"WAL the server wrote"
        );
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("xlogtemp."))
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
        assert!(write_ahead(dir.path(), "pg_control", 1).is_err());
    }
}

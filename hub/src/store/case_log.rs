//! The case log ([`CaseLog`]): every version of every case, appended to segment files under
//! `{data_dir}/cases/`, with the location of each case's latest version kept in memory.
//!
//! Why not sled: a case is about 2 KB of JSON and is written two or three times per alert
//! (filed, then its pushes recorded, then its deliveries). In sled each of those writes takes
//! the database's one global write lock, which ingest's transaction needs too, and is
//! rewritten again whenever sled consolidates the page holding it (about 55 KB written to disk
//! per alert). Appended here, a case version costs one `write` of its own bytes, shared by
//! the whole batch, and nothing else waits for it.
//!
//! A segment is `{n:08}.log`; only the highest is appended to, and it is sealed (synced) when
//! it passes [`SEGMENT_BYTES`] and the next is started. A record:
//!
//! ```text
//! 0xC5 | kind (1 put, 2 remove) | id length u16 LE | body length u32 LE | CRC-32 u32 LE | id | body
//! ```
//!
//! the CRC covering kind, both lengths, id and body. A remove (a case gone by retention) is
//! kept while an older segment may still hold a version of that case, so that replaying the
//! segments in order never brings it back.
//!
//! Opening replays every segment in order. A record that does not check out at the end of the
//! last segment is a write torn by a crash: the rest of the file is copied aside
//! (`{n:08}.log.cut-{offset}`, for whoever wants to look) and cut off. In an earlier segment
//! (which was synced before the next began) it is damage: the rest of that segment is skipped,
//! logged and counted ([`LogStats::damaged`]), and the versions before it stand.
//!
//! Compaction: a sealed segment less than half of which is still the latest version of some
//! case is copied forward (its live records appended to the current segment, synced) and
//! deleted; a background thread does it when a segment is sealed and every 30 s, in chunks,
//! so the writer waits at most for a chunk's copy; [`CaseLog::compact`] does it now (the
//! retention sweep, after removing cases, so their space comes back).
//!
//! Durability: [`CaseLog::append`] writes; [`CaseLog::sync`] makes what was written durable.
//! [`super::Cases`] syncs the log before it applies index entries that name a case to sled,
//! so no index on disk ever names a case version the log could lose.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak, mpsc};
use std::time::{Duration, Instant};

use super::StoreError;
use crate::case::CaseId;

/// A segment is sealed once it holds this much.
pub const SEGMENT_BYTES: u64 = 16 << 20;
const HEADER: usize = 12;
const MAGIC: u8 = 0xC5;
const PUT: u8 = 1;
const REMOVE: u8 = 2;
/// No case comes near this; a larger length in a header is damage, not a record.
const MAX_BODY: usize = 64 << 20;
/// How much of a segment compaction copies per hold of the writer's lock.
const CHUNK_BYTES: usize = 1 << 20;
const IDLE_COMPACTION: Duration = Duration::from_secs(30);
/// The largest append buffer kept for the next append.
const KEPT_BUFFER: usize = 8 << 20;

/// Where a case's latest version is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Loc {
    seg: u32,
    /// The record's first byte.
    off: u64,
    id_len: u16,
    body_len: u32,
}

impl Loc {
    fn size(&self) -> u64 {
        HEADER as u64 + u64::from(self.id_len) + u64::from(self.body_len)
    }

    fn body_at(&self) -> u64 {
        self.off + HEADER as u64 + u64::from(self.id_len)
    }
}

#[derive(Debug)]
struct Segment {
    file: Arc<File>,
    len: u64,
    /// Bytes of records that are some case's latest version.
    live: u64,
}

#[derive(Debug, Default)]
struct Index {
    cases: HashMap<CaseId, Loc>,
    segs: BTreeMap<u32, Segment>,
    damaged: u64,
}

impl Index {
    /// Points `id` at `loc` (`None`: removed), keeping the segments' live bytes.
    fn set(&mut self, id: &CaseId, loc: Option<Loc>) {
        let old = match loc {
            Some(l) => self.cases.insert(id.clone(), l),
            None => self.cases.remove(id),
        };
        if let Some(o) = old
            && let Some(s) = self.segs.get_mut(&o.seg)
        {
            s.live = s.live.saturating_sub(o.size());
        }
        if let Some(l) = loc
            && let Some(s) = self.segs.get_mut(&l.seg)
        {
            s.live += l.size();
        }
    }
}

#[derive(Debug)]
struct Writer {
    seg: u32,
    file: Arc<File>,
    len: u64,
    /// Written since the last sync.
    unsynced: bool,
    /// A segment was created since the directory was last synced.
    dir_unsynced: bool,
    /// Where an append's records are put together (kept up to [`KEPT_BUFFER`]).
    buf: Vec<u8>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    /// [`SEGMENT_BYTES`], smaller in tests.
    segment_bytes: u64,
    writer: Mutex<Writer>,
    index: RwLock<Index>,
    /// Held through a segment's compaction: the thread and [`CaseLog::compact`] take turns.
    compacting: Mutex<()>,
    /// Wakes the compaction thread; dropped with the log, which ends the thread.
    wake: Mutex<mpsc::Sender<()>>,
    /// Held (`flock`) while the log is open, so that two stores never append to one log.
    _lock: File,
}

/// The case log: see the module's documentation. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CaseLog {
    inner: Arc<Inner>,
}

/// Sizes for `/metrics` and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    pub segments: usize,
    /// Bytes of all segments.
    pub bytes: u64,
    /// Bytes of the records that are some case's latest version.
    pub live: u64,
    pub cases: usize,
    /// Segments whose rest was skipped at open because a record in them did not check out.
    pub damaged: u64,
}

fn file_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::File { op, path, source }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn seg_path(dir: &Path, seg: u32) -> PathBuf {
    dir.join(format!("{seg:08}.log"))
}

fn encode(buf: &mut Vec<u8>, id: &CaseId, body: Option<&[u8]>) -> Result<(u16, u32), StoreError> {
    let bad = |why: &str| StoreError::Corrupt {
        tree: "cases",
        key: id.to_string(),
        why: why.to_owned(),
    };
    let id_len = u16::try_from(id.len()).map_err(|_| bad("case id too long for the log"))?;
    let body = body.unwrap_or_default();
    if body.len() > MAX_BODY {
        return Err(bad("case record too large for the log"));
    }
    let body_len = body.len() as u32;
    let kind = if body.is_empty() { REMOVE } else { PUT };
    let mut crc = crc32fast::Hasher::new();
    let head = [&[kind][..], &id_len.to_le_bytes(), &body_len.to_le_bytes()].concat();
    crc.update(&head);
    crc.update(id.as_bytes());
    crc.update(body);
    buf.push(MAGIC);
    buf.extend_from_slice(&head);
    buf.extend_from_slice(&crc.finalize().to_le_bytes());
    buf.extend_from_slice(id.as_bytes());
    buf.extend_from_slice(body);
    Ok((id_len, body_len))
}

/// A record read back: its kind, id and lengths; `Err` says why the bytes at that offset
/// are not one.
#[derive(Debug)]
struct Parsed {
    put: bool,
    id: CaseId,
    id_len: u16,
    body_len: u32,
}

fn parse(b: &[u8]) -> Result<Parsed, &'static str> {
    if b.len() < HEADER {
        return Err("short header");
    }
    if b[0] != MAGIC {
        return Err("bad marker byte");
    }
    let kind = b[1];
    if kind != PUT && kind != REMOVE {
        return Err("unknown record kind");
    }
    let id_len = u16::from_le_bytes([b[2], b[3]]);
    let body_len = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let crc = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
    if body_len as usize > MAX_BODY {
        return Err("body length out of range");
    }
    if (kind == PUT) != (body_len > 0) {
        return Err("kind and body length disagree");
    }
    let end = HEADER + id_len as usize + body_len as usize;
    let Some(rest) = b.get(HEADER..end) else {
        return Err("record runs past the end of the file");
    };
    let mut h = crc32fast::Hasher::new();
    h.update(&b[1..8]);
    h.update(rest);
    if h.finalize() != crc {
        return Err("checksum mismatch");
    }
    let id = std::str::from_utf8(&rest[..id_len as usize]).map_err(|_| "case id not UTF-8")?;
    Ok(Parsed {
        put: kind == PUT,
        id: CaseId::from_stored(id.to_owned()),
        id_len,
        body_len,
    })
}

impl CaseLog {
    /// Opens (or creates) the log in `dir`, replaying every segment (see the module's
    /// documentation for what a damaged one costs), and starts its compaction thread.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_inner(dir, SEGMENT_BYTES, true)
    }

    /// [`CaseLog::open`] with segments sealed at `segment_bytes` and no compaction thread:
    /// segments are compacted only by [`CaseLog::compact`] (tests that look at segments).
    #[cfg(test)]
    pub fn open_with(dir: &Path, segment_bytes: u64) -> Result<Self, StoreError> {
        Self::open_inner(dir, segment_bytes, false)
    }

    fn open_inner(dir: &Path, segment_bytes: u64, thread: bool) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(file_err("create", dir))?;
        let lock = take_lock(dir)?;
        let mut segs: Vec<u32> = Vec::new();
        for e in std::fs::read_dir(dir).map_err(file_err("list", dir))? {
            let e = e.map_err(file_err("list", dir))?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name
                .strip_suffix(".log")
                .and_then(|n| n.parse::<u32>().ok())
            {
                segs.push(n);
            }
        }
        segs.sort_unstable();
        let mut ix = Index::default();
        let last = segs.last().copied();
        for &seg in &segs {
            replay(dir, seg, Some(seg) == last, &mut ix)?;
        }
        let (seg, dir_unsynced) = match last {
            Some(s) => (s, false),
            None => {
                let s = 1;
                let file = create_segment(dir, s)?;
                ix.segs.insert(
                    s,
                    Segment {
                        file: Arc::new(file),
                        len: 0,
                        live: 0,
                    },
                );
                (s, true)
            }
        };
        let (file, len) = {
            let s = &ix.segs[&seg];
            (s.file.clone(), s.len)
        };
        let (tx, rx) = mpsc::channel();
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            segment_bytes,
            writer: Mutex::new(Writer {
                seg,
                file,
                len,
                unsynced: false,
                dir_unsynced,
                buf: Vec::new(),
            }),
            index: RwLock::new(ix),
            compacting: Mutex::new(()),
            wake: Mutex::new(tx),
            _lock: lock,
        });
        if thread {
            let weak = Arc::downgrade(&inner);
            std::thread::Builder::new()
                .name("case-log-compact".into())
                .spawn(move || compactor(weak, rx))
                .map_err(file_err("start the compaction thread of", dir))?;
        }
        Ok(Self { inner })
    }

    fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.inner.index()
    }

    /// The latest version of a case (`None`: never written, or removed).
    pub fn get(&self, id: &CaseId) -> Result<Option<Vec<u8>>, StoreError> {
        let (loc, file) = {
            let ix = self.index();
            let Some(loc) = ix.cases.get(id).copied() else {
                return Ok(None);
            };
            let Some(s) = ix.segs.get(&loc.seg) else {
                return Ok(None);
            };
            (loc, s.file.clone())
        };
        // A segment compacted away meanwhile is still readable through its open handle.
        let mut body = vec![0u8; loc.body_len as usize];
        file.read_exact_at(&mut body, loc.body_at())
            .map_err(file_err("read", &seg_path(&self.inner.dir, loc.seg)))?;
        Ok(Some(body))
    }

    /// The length of a case's latest version (0: none).
    pub fn len_of(&self, id: &CaseId) -> u64 {
        self.index()
            .cases
            .get(id)
            .map_or(0, |l| u64::from(l.body_len))
    }

    /// Every case in the log, in id order.
    pub fn ids(&self) -> Vec<CaseId> {
        let mut ids: Vec<CaseId> = self.index().cases.keys().cloned().collect();
        ids.sort_unstable();
        ids
    }

    pub fn stats(&self) -> LogStats {
        let ix = self.index();
        LogStats {
            segments: ix.segs.len(),
            bytes: ix.segs.values().map(|s| s.len).sum(),
            live: ix.segs.values().map(|s| s.live).sum(),
            cases: ix.cases.len(),
            damaged: ix.damaged,
        }
    }

    /// Appends new versions (`Some`) and removals (`None`) in one write. Not durable until
    /// [`CaseLog::sync`]; readable at once. A failed write (a full disk) leaves the log as it
    /// was.
    pub fn append(&self, ops: &[(CaseId, Option<&[u8]>)]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut w = lock(&self.inner.writer);
        let rolled = if w.len >= self.inner.segment_bytes {
            self.inner.roll(&mut w)?;
            true
        } else {
            false
        };
        // The writer's buffer, kept between appends: a fresh one of a batch's size (a megabyte
        // or more at full rate) came from new pages, zeroed by the kernel, every time.
        let mut buf = std::mem::take(&mut w.buf);
        buf.clear();
        let mut locs = Vec::with_capacity(ops.len());
        for (id, body) in ops {
            let off = w.len + buf.len() as u64;
            let (id_len, body_len) = encode(&mut buf, id, *body)?;
            locs.push(body.map(|_| Loc {
                seg: w.seg,
                off,
                id_len,
                body_len,
            }));
        }
        let written = self.inner.write_at_end(&mut w, &buf);
        if buf.capacity() <= KEPT_BUFFER {
            w.buf = buf;
        }
        written?;
        let mut ix = self.inner.index_mut();
        if let Some(s) = ix.segs.get_mut(&w.seg) {
            s.len = w.len;
        }
        for ((id, _), loc) in ops.iter().zip(locs) {
            ix.set(id, loc);
        }
        drop(ix);
        drop(w);
        if rolled {
            let _ = lock(&self.inner.wake).send(());
        }
        Ok(())
    }

    /// Makes everything appended so far durable.
    pub fn sync(&self) -> Result<(), StoreError> {
        let mut w = lock(&self.inner.writer);
        self.inner.sync_locked(&mut w)
    }

    /// Compacts every segment that is less than half live now (the current one too, sealed
    /// first, once it holds a quarter of a segment), as the compaction thread does when woken;
    /// returns how many.
    pub fn compact(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        while compact_one(&self.inner)? {
            n += 1;
        }
        Ok(n)
    }

    /// Has the compaction thread run soon (after retention removed cases).
    pub fn compact_soon(&self) {
        let _ = lock(&self.inner.wake).send(());
    }
}

impl Inner {
    fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn index_mut(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_at_end(&self, w: &mut Writer, buf: &[u8]) -> Result<(), StoreError> {
        let path = seg_path(&self.dir, w.seg);
        if let Err(e) = w.file.write_all_at(buf, w.len) {
            // A partial record would be taken for a torn tail and cut at the next open, with
            // everything appended after it: take it back now.
            if let Err(t) = w.file.set_len(w.len) {
                tracing::error!(file = %path.display(), error = %t, "case log: cannot take back a failed write");
            }
            return Err(file_err("append to", &path)(e));
        }
        w.len += buf.len() as u64;
        w.unsynced = true;
        Ok(())
    }

    /// Seals the current segment (synced, so that only the last one can end torn) and starts
    /// the next.
    fn roll(&self, w: &mut Writer) -> Result<(), StoreError> {
        let path = seg_path(&self.dir, w.seg);
        w.file.sync_data().map_err(file_err("sync", &path))?;
        let seg = w.seg + 1;
        let file = Arc::new(create_segment(&self.dir, seg)?);
        self.index_mut().segs.insert(
            seg,
            Segment {
                file: file.clone(),
                len: 0,
                live: 0,
            },
        );
        w.seg = seg;
        w.file = file;
        w.len = 0;
        w.unsynced = false;
        w.dir_unsynced = true;
        Ok(())
    }

    fn sync_locked(&self, w: &mut Writer) -> Result<(), StoreError> {
        if w.unsynced {
            w.file
                .sync_data()
                .map_err(file_err("sync", &seg_path(&self.dir, w.seg)))?;
            w.unsynced = false;
        }
        if w.dir_unsynced {
            sync_dir(&self.dir)?;
            w.dir_unsynced = false;
        }
        Ok(())
    }
}

fn take_lock(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join("LOCK");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(file_err("open", &path))?;
    // A store just dropped in this process lets go of the lock when its compaction thread
    // finishes a chunk: wait for that, as for sled's own lock; another live hub is refused.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(f),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(file_err("lock", &path)(e.into())),
        }
    }
}

fn create_segment(dir: &Path, seg: u32) -> Result<File, StoreError> {
    let path = seg_path(dir, seg);
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(file_err("create", &path))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(file_err("sync", dir))
}

/// Replays one segment into `ix` (see the module's documentation for a record that does not
/// check out).
fn replay(dir: &Path, seg: u32, last: bool, ix: &mut Index) -> Result<(), StoreError> {
    let path = seg_path(dir, seg);
    let data = std::fs::read(&path).map_err(file_err("read", &path))?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(file_err("open", &path))?;
    ix.segs.insert(
        seg,
        Segment {
            file: Arc::new(file),
            len: data.len() as u64,
            live: 0,
        },
    );
    let mut off = 0usize;
    while off < data.len() {
        match parse(&data[off..]) {
            Ok(p) => {
                let loc = p.put.then_some(Loc {
                    seg,
                    off: off as u64,
                    id_len: p.id_len,
                    body_len: p.body_len,
                });
                ix.set(&p.id, loc);
                off += HEADER + p.id_len as usize + p.body_len as usize;
            }
            Err(why) if last => {
                let aside = dir.join(format!("{seg:08}.log.cut-{off}"));
                // Kept for whoever wants to look; on a full disk the hub still opens (the
                // torn bytes were never synced, indexed or told to anyone).
                if let Err(e) = std::fs::write(&aside, &data[off..]) {
                    tracing::error!(file = %aside.display(), error = %e, "case log: cannot keep the torn tail aside; cut anyway");
                }
                let s = &ix.segs[&seg];
                s.file.set_len(off as u64).map_err(file_err("cut", &path))?;
                s.file.sync_all().map_err(file_err("sync", &path))?;
                tracing::warn!(file = %path.display(), offset = off, bytes = data.len() - off, why, aside = %aside.display(), "case log: torn tail cut off (a write a crash interrupted); the cut bytes are kept aside");
                if let Some(s) = ix.segs.get_mut(&seg) {
                    s.len = off as u64;
                }
                break;
            }
            Err(why) => {
                tracing::error!(file = %path.display(), offset = off, why, "case log: unreadable record in a sealed segment; the rest of the segment is skipped");
                ix.damaged += 1;
                break;
            }
        }
    }
    Ok(())
}

fn compactor(weak: Weak<Inner>, rx: mpsc::Receiver<()>) {
    loop {
        match rx.recv_timeout(IDLE_COMPACTION) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        loop {
            let Some(inner) = weak.upgrade() else { return };
            match compact_one(&inner) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::error!(error = %e, "case log: compaction failed; retried later");
                    break;
                }
            }
        }
    }
}

/// Copies the live records of the emptiest sealed segment that is less than half live
/// forward, then deletes it. `false`: none to do.
fn compact_one(inner: &Inner) -> Result<bool, StoreError> {
    let _turn = lock(&inner.compacting);
    let active = {
        let mut w = lock(&inner.writer);
        let half_dead = inner
            .index()
            .segs
            .get(&w.seg)
            .is_some_and(|s| s.live * 2 < s.len);
        if half_dead && w.len >= inner.segment_bytes / 4 {
            inner.roll(&mut w)?;
        }
        w.seg
    };
    let pick = {
        let ix = inner.index();
        ix.segs
            .iter()
            .filter(|(n, s)| **n != active && s.live * 2 < s.len.max(1))
            .min_by_key(|(_, s)| (s.live * 1000).checked_div(s.len).unwrap_or(0))
            .map(|(n, _)| *n)
    };
    let Some(seg) = pick else { return Ok(false) };
    let path = seg_path(&inner.dir, seg);
    // Sealed: nothing writes to it any more.
    let data = std::fs::read(&path).map_err(file_err("read", &path))?;
    let mut off = 0usize;
    let (mut moved, mut kept_removes) = (0usize, 0usize);
    while off < data.len() {
        let mut w = lock(&inner.writer);
        if w.len >= inner.segment_bytes {
            inner.roll(&mut w)?;
        }
        let chunk_end = off + CHUNK_BYTES;
        let mut buf = Vec::new();
        let mut news: Vec<(CaseId, Loc)> = Vec::new();
        {
            let ix = inner.index();
            let older = ix.segs.range(..seg).next().is_some();
            while off < data.len() && off < chunk_end {
                let Ok(p) = parse(&data[off..]) else {
                    // The damaged rest of a segment (see `replay`): nothing in it is live.
                    off = data.len();
                    break;
                };
                let size = HEADER + p.id_len as usize + p.body_len as usize;
                let here = Loc {
                    seg,
                    off: off as u64,
                    id_len: p.id_len,
                    body_len: p.body_len,
                };
                let record = &data[off..off + size];
                if p.put && ix.cases.get(&p.id) == Some(&here) {
                    news.push((
                        p.id,
                        Loc {
                            seg: w.seg,
                            off: w.len + buf.len() as u64,
                            ..here
                        },
                    ));
                    buf.extend_from_slice(record);
                } else if !p.put && older && !ix.cases.contains_key(&p.id) {
                    // Still hiding a version in an older segment.
                    buf.extend_from_slice(record);
                    kept_removes += 1;
                }
                off += size;
            }
        }
        if buf.is_empty() {
            continue;
        }
        inner.write_at_end(&mut w, &buf)?;
        let mut ix = inner.index_mut();
        if let Some(s) = ix.segs.get_mut(&w.seg) {
            s.len = w.len;
        }
        moved += news.len();
        for (id, loc) in news {
            ix.set(&id, Some(loc));
        }
    }
    // The copies durable before the original goes.
    let mut w = lock(&inner.writer);
    inner.sync_locked(&mut w)?;
    let still_live = inner.index().segs.get(&seg).is_some_and(|s| s.live > 0);
    if still_live {
        // Cannot happen (every live record was moved under the writer's lock); keep the
        // segment rather than lose a case.
        tracing::error!(file = %path.display(), "case log: a compacted segment still holds live records; kept");
        return Ok(false);
    }
    let freed = inner.index_mut().segs.remove(&seg).map_or(0, |s| s.len);
    std::fs::remove_file(&path).map_err(file_err("remove", &path))?;
    sync_dir(&inner.dir)?;
    drop(w);
    tracing::info!(file = %path.display(), moved, kept_removes, freed, "case log: segment compacted");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> CaseId {
        CaseId::parse(&format!("C-{n}")).unwrap()
    }

    fn body(n: u32, version: u32) -> Vec<u8> {
        format!(
            "{{\"case\":{n},\"version\":{version},\"pad\":\"{}\"}}",
            "x".repeat(200)
        )
        .into_bytes()
    }

    fn put(log: &CaseLog, n: u32, version: u32) {
        let b = body(n, version);
        log.append(&[(id(n), Some(&b[..]))]).unwrap();
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "LOCK")
            .collect();
        v.sort();
        v
    }

    fn reopen(dir: &Path, log: CaseLog, seg: u64) -> CaseLog {
        log.sync().unwrap();
        drop(log);
        CaseLog::open_with(dir, seg).unwrap()
    }

    #[test]
    fn the_latest_version_of_each_case_is_read_back_and_survives_a_reopen_removals_too() {
        let dir = tempfile::tempdir().unwrap();
        // Small segments: the versions and the removal spread over several files.
        let log = CaseLog::open_with(dir.path(), 1024).unwrap();
        for v in 0..5 {
            for n in 0..4 {
                put(&log, n, v);
            }
        }
        log.append(&[(id(2), None)]).unwrap();
        assert_eq!(log.get(&id(1)).unwrap(), Some(body(1, 4)));
        assert_eq!(log.get(&id(2)).unwrap(), None);
        assert_eq!(log.ids(), vec![id(0), id(1), id(3)]);
        assert!(log.stats().segments > 3, "{:?}", log.stats());
        let log = reopen(dir.path(), log, 1024);
        assert_eq!(log.get(&id(3)).unwrap(), Some(body(3, 4)));
        assert_eq!(
            log.get(&id(2)).unwrap(),
            None,
            "a removed case stays removed"
        );
        assert_eq!(log.ids(), vec![id(0), id(1), id(3)]);
        assert_eq!(log.len_of(&id(0)), body(0, 4).len() as u64);
    }

    #[test]
    fn a_torn_last_record_is_cut_and_kept_aside_and_what_came_before_stands() {
        let dir = tempfile::tempdir().unwrap();
        let log = CaseLog::open(dir.path()).unwrap();
        put(&log, 1, 0);
        put(&log, 2, 0);
        let log = reopen(dir.path(), log, SEGMENT_BYTES);
        let seg = seg_path(dir.path(), 1);
        let whole = std::fs::metadata(&seg).unwrap().len();
        // A crash in the middle of the third record's write.
        let mut torn = Vec::new();
        encode(&mut torn, &id(3), Some(&body(3, 0))).unwrap();
        torn.truncate(torn.len() / 2);
        let f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all_at(&torn, whole).unwrap();
        drop(f);
        drop(log);
        let log = CaseLog::open(dir.path()).unwrap();
        assert_eq!(log.get(&id(1)).unwrap(), Some(body(1, 0)));
        assert_eq!(log.get(&id(2)).unwrap(), Some(body(2, 0)));
        assert_eq!(log.get(&id(3)).unwrap(), None);
        assert_eq!(
            std::fs::metadata(&seg).unwrap().len(),
            whole,
            "cut where the torn record began"
        );
        let aside = dir.path().join(format!("00000001.log.cut-{whole}"));
        assert_eq!(
            std::fs::read(&aside).unwrap(),
            torn,
            "the cut bytes are kept"
        );
        // Appending goes on after the cut, and is read back after another reopen.
        put(&log, 3, 1);
        let log = reopen(dir.path(), log, SEGMENT_BYTES);
        assert_eq!(log.get(&id(3)).unwrap(), Some(body(3, 1)));
        assert_eq!(log.stats().damaged, 0);
    }

    #[test]
    fn damage_in_a_sealed_segment_costs_the_rest_of_that_segment_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = CaseLog::open_with(dir.path(), 600).unwrap();
        for n in 0..8 {
            put(&log, n, 0);
        }
        let log = reopen(dir.path(), log, 600);
        assert!(log.stats().segments >= 3);
        // Case 0 is the first record of segment 1; flip a byte of its body.
        let seg = seg_path(dir.path(), 1);
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[HEADER + 5] ^= 0xFF;
        std::fs::write(&seg, &bytes).unwrap();
        drop(log);
        let log = CaseLog::open_with(dir.path(), 600).unwrap();
        assert_eq!(log.stats().damaged, 1);
        assert_eq!(
            log.get(&id(0)).unwrap(),
            None,
            "the damaged record is not served"
        );
        assert_eq!(
            log.get(&id(7)).unwrap(),
            Some(body(7, 0)),
            "later segments stand"
        );
    }

    #[test]
    fn compaction_gives_the_space_of_old_versions_and_removed_cases_back_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let seg = 8 * 1024;
        let log = CaseLog::open_with(dir.path(), seg).unwrap();
        for v in 0..20 {
            for n in 0..10 {
                put(&log, n, v);
            }
        }
        // Half the cases removed: their removals must still hide the versions in older
        // segments after those are rewritten.
        for n in 0..5 {
            log.append(&[(id(n), None)]).unwrap();
        }
        let before = log.stats();
        let on_disk = |d: &Path| -> u64 {
            files(d)
                .iter()
                .map(|f| std::fs::metadata(d.join(f)).unwrap().len())
                .sum()
        };
        assert_eq!(on_disk(dir.path()), before.bytes);
        let rewritten = log.compact().unwrap();
        let after = log.stats();
        assert!(rewritten > 0);
        assert!(
            after.bytes * 4 < before.bytes,
            "before {before:?}, after {after:?}"
        );
        assert_eq!(on_disk(dir.path()), after.bytes, "{:?}", files(dir.path()));
        assert_eq!(after.live, before.live);
        let check = |log: &CaseLog| {
            for n in 0..5 {
                assert_eq!(log.get(&id(n)).unwrap(), None, "case {n}");
            }
            for n in 5..10 {
                assert_eq!(log.get(&id(n)).unwrap(), Some(body(n, 19)), "case {n}");
            }
        };
        check(&log);
        let log = reopen(dir.path(), log, seg);
        check(&log);
        assert_eq!(log.ids().len(), 5);
    }

    #[test]
    fn a_reader_holding_a_location_still_reads_after_its_segment_was_compacted_away() {
        let dir = tempfile::tempdir().unwrap();
        let log = CaseLog::open_with(dir.path(), 1024).unwrap();
        put(&log, 1, 0);
        for v in 1..10 {
            put(&log, 2, v);
        }
        let file = log.inner.index().segs[&1].file.clone();
        log.compact().unwrap();
        assert!(!seg_path(dir.path(), 1).exists());
        // The handle taken before still reads (the way `get` reads a location it looked up).
        let mut b = vec![0u8; 4];
        file.read_exact_at(&mut b, 0).unwrap();
        assert_eq!(b[0], MAGIC);
        assert_eq!(log.get(&id(1)).unwrap(), Some(body(1, 0)));
    }

    #[test]
    fn records_that_are_not_records_are_refused_with_the_reason() {
        let mut buf = Vec::new();
        encode(&mut buf, &id(1), Some(b"{}")).unwrap();
        assert!(parse(&buf).is_ok());
        let bad = |i: usize, x: u8| {
            let mut b = buf.clone();
            b[i] ^= x;
            parse(&b).unwrap_err()
        };
        assert_eq!(bad(0, 1), "bad marker byte");
        assert_eq!(bad(1, 0x10), "unknown record kind");
        assert_eq!(bad(buf.len() - 1, 1), "checksum mismatch");
        assert_eq!(bad(7, 0x40), "body length out of range");
        assert_eq!(
            parse(&buf[..buf.len() - 1]).unwrap_err(),
            "record runs past the end of the file"
        );
        assert_eq!(parse(&buf[..5]).unwrap_err(), "short header");
    }
}

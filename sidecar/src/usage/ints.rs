//! Reading integer (and blob) columns through SQLite's C API (the hot loops of report and
//! verify). This module holds
//! no SQL of its own: it runs the ledger's SELECT statements.

use rusqlite::Connection;

use super::UsageError;

/// A query of integer columns stepped through SQLite's C API. A report reads some 10⁷
/// integer columns, and rusqlite's checked accessors (column count, type, conversion) cost
/// more than SQLite's own decoding there; the columns read here are `NOT NULL INTEGER`.
pub struct IntScan<'c> {
    db: &'c Connection,
    stmt: *mut rusqlite::ffi::sqlite3_stmt,
    columns: i32,
}

impl<'c> IntScan<'c> {
    /// Prepares `sql` on `db` and binds `args` to `?1`, `?2`, ...
    pub fn new(db: &'c Connection, sql: &str, args: &[i64]) -> Result<IntScan<'c>, UsageError> {
        use rusqlite::ffi;
        let mut stmt = std::ptr::null_mut();
        let len = i32::try_from(sql.len()).map_err(|_| UsageError::Bad("query too long".into()))?;
        // SAFETY: the connection's handle is valid while `db` is borrowed, and only this
        // thread uses it (a Connection is not Sync); `sql` is valid for `len` bytes; on
        // success `stmt` is a statement we own and finalize in Drop.
        let rc =
            unsafe { ffi::sqlite3_prepare_v2(db.handle(), sql.as_ptr().cast(), len, &mut stmt, std::ptr::null_mut()) };
        let columns = if stmt.is_null() {
            0
        } else {
            // SAFETY: `stmt` was prepared (not null) on this thread.
            unsafe { ffi::sqlite3_column_count(stmt) }
        };
        // A null statement (on error) is fine to finalize in Drop.
        let q = IntScan { db, stmt, columns };
        q.check(rc, ffi::SQLITE_OK)?;
        for (i, v) in args.iter().enumerate() {
            // SAFETY: `stmt` is a prepared statement; SQLite checks the parameter index.
            let rc = unsafe { ffi::sqlite3_bind_int64(q.stmt, i as i32 + 1, *v) };
            q.check(rc, ffi::SQLITE_OK)?;
        }
        Ok(q)
    }

    /// `rc` when it is `ok`, else the connection's error.
    fn check(&self, rc: i32, ok: i32) -> Result<(), UsageError> {
        if rc == ok {
            return Ok(());
        }
        // SAFETY: the handle is valid (see `new`); the message is a NUL-terminated string
        // owned by SQLite, copied before the next call on the connection.
        let msg = unsafe {
            std::ffi::CStr::from_ptr(rusqlite::ffi::sqlite3_errmsg(self.db.handle())).to_string_lossy().into_owned()
        };
        Err(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rc), Some(msg)).into())
    }

    /// The next row: true when there is one.
    pub fn step(&mut self) -> Result<bool, UsageError> {
        // SAFETY: `stmt` is a prepared statement (`new` succeeded), used by this thread only.
        let rc = unsafe { rusqlite::ffi::sqlite3_step(self.stmt) };
        if rc == rusqlite::ffi::SQLITE_ROW {
            return Ok(true);
        }
        self.check(rc, rusqlite::ffi::SQLITE_DONE).map(|()| false)
    }

    /// Column `i` of the current row, as an integer (0 for a NULL).
    pub fn get(&self, i: i32) -> i64 {
        assert!(i < self.columns, "column {i} of {}", self.columns);
        // SAFETY: the statement has a current row (`step` returned true) and `i` is one of
        // its columns.
        unsafe { rusqlite::ffi::sqlite3_column_int64(self.stmt, i) }
    }
}

impl IntScan<'_> {
    /// Whether column `i` of the current row holds an integer (not a NULL, real, text or
    /// blob, which [`IntScan::get`] would convert).
    pub fn is_int(&self, i: i32) -> bool {
        assert!(i < self.columns, "column {i} of {}", self.columns);
        // SAFETY: as in `get`.
        unsafe { rusqlite::ffi::sqlite3_column_type(self.stmt, i) == rusqlite::ffi::SQLITE_INTEGER }
    }

    /// Column `i` of the current row as a blob (empty for a NULL); valid until the next step.
    pub fn blob(&self, i: i32) -> &[u8] {
        assert!(i < self.columns, "column {i} of {}", self.columns);
        // SAFETY: as in `get`; the pointer (taken before the length, as SQLite asks) points
        // at `n` bytes owned by the statement until it is stepped again, which needs `&mut
        // self` and so ends this borrow.
        unsafe {
            let p = rusqlite::ffi::sqlite3_column_blob(self.stmt, i);
            let n = rusqlite::ffi::sqlite3_column_bytes(self.stmt, i);
            if p.is_null() || n <= 0 {
                return &[];
            }
            std::slice::from_raw_parts(p.cast::<u8>(), n as usize)
        }
    }
}

impl Drop for IntScan<'_> {
    fn drop(&mut self) {
        // SAFETY: `stmt` is ours (or null, which SQLite ignores), finalized once.
        unsafe { rusqlite::ffi::sqlite3_finalize(self.stmt) };
    }
}

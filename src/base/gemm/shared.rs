//! An output buffer several threads fill at once, each its own range of columns
//! ([`super::ColumnWriter`], [`super::RowsWriter`]).

use std::ops::Range;
use std::sync::Mutex;

/// Room for `len` f32 values, not zeroed, that threads fill by disjoint column ranges of
/// `cols`: each range is claimed once ([`Claims::claim`]), and the values are handed out
/// ([`Claims::into_vec`]) only once the claimed ranges cover `cols`.
pub(super) struct Claims {
    len: usize,
    cols: Range<usize>,
    /// Room for the values; its length is set once they are all written.
    data: Vec<f32>,
    /// `data`'s buffer, taken once from a unique borrow: every write goes through it (a
    /// pointer from `&self.data` would only permit reads).
    ptr: SharedPtr,
    /// Column ranges claimed so far: a range that overlaps one of them is refused, so two
    /// threads never write one value.
    claimed: Mutex<Vec<Range<usize>>>,
}

/// The buffer's address, shared by the writing threads.
#[derive(Clone, Copy)]
struct SharedPtr(*mut f32);
// SAFETY: threads write only through the ranges they claimed, which never overlap (checked
// in `Claims::claim`; each writer maps a column range to values of its own), nothing reads
// the buffer while they write, and `into_vec` takes the claims by value, after every write.
unsafe impl Send for SharedPtr {}
unsafe impl Sync for SharedPtr {}

impl Claims {
    /// Room for `len` values, written by ranges of columns `cols`.
    pub(super) fn new(len: usize, cols: Range<usize>) -> Self {
        let mut data = Vec::with_capacity(len);
        Self {
            len,
            cols,
            ptr: SharedPtr(data.as_mut_ptr()),
            data,
            claimed: Mutex::new(Vec::new()),
        }
    }

    /// Claims columns `cols` for the caller alone and returns the buffer's start. Panics
    /// where they lie outside the columns given to [`Claims::new`] or overlap a claimed
    /// range.
    pub(super) fn claim(&self, cols: &Range<usize>) -> *mut f32 {
        assert!(
            self.cols.start <= cols.start && cols.start <= cols.end && cols.end <= self.cols.end,
            "columns {cols:?} outside the output's {:?}",
            self.cols
        );
        let mut claimed = self.claimed.lock().unwrap_or_else(|e| e.into_inner());
        assert!(
            claimed
                .iter()
                .all(|c| c.end <= cols.start || cols.end <= c.start),
            "column range {cols:?} written twice"
        );
        claimed.push(cols.clone());
        self.ptr.0
    }

    /// The values. Panics unless the claimed ranges cover every column.
    ///
    /// # Safety
    /// Every claimant wrote all the values its columns map to, and the columns' values are
    /// all `len` values.
    pub(super) unsafe fn into_vec(mut self) -> Vec<f32> {
        let claimed = self.claimed.get_mut().unwrap_or_else(|e| e.into_inner());
        // Claimed ranges lie in `cols` and never overlap (`claim`), so they cover it exactly
        // when their lengths add up to its length.
        let written: usize = claimed.iter().map(ExactSizeIterator::len).sum();
        assert_eq!(
            written,
            self.cols.len(),
            "columns of the output were never written"
        );
        // SAFETY: every value was written (caller).
        unsafe { self.data.set_len(self.len) };
        self.data
    }
}

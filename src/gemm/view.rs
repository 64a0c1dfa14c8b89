//! Bounds-checked strided matrix views: the only way matrices reach a GEMM.

/// An immutable `rows × cols` matrix: element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Debug)]
pub struct MatRef<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<T> Clone for MatRef<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for MatRef<'_, T> {}

/// A mutable `rows × cols` matrix: element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Debug)]
pub struct MatMut<'a, T> {
    data: &'a mut [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

/// Panics unless every element of the view lies inside a slice of length `len` (the offset
/// of the last element computed without overflow).
fn check_bounds(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) {
    if rows > 0 && cols > 0 {
        let last = (rows - 1).checked_mul(rs).zip((cols - 1).checked_mul(cs)).and_then(|(r, c)| r.checked_add(c));
        assert!(
            last.is_some_and(|last| last < len),
            "{rows}×{cols} view with strides ({rs}, {cs}) reaches past the {len} elements of its slice"
        );
    }
}

/// Panics when two elements of a `rows × cols` view with strides `(rs, cs)` would share a
/// place: a mutable view must not write one value through two indices. The sufficient
/// condition checked is the one of every dense layout: the smaller stride is at least 1 and the
/// larger at least the smaller times its dimension.
fn check_distinct(rows: usize, cols: usize, rs: usize, cs: usize) {
    if rows == 0 || cols == 0 || (rows == 1 && cols == 1) {
        return;
    }
    let ((small, small_dim), (large, large_dim)) =
        if rs <= cs { ((rs, rows), (cs, cols)) } else { ((cs, cols), (rs, rows)) };
    let distinct = if small_dim <= 1 {
        large >= 1 || large_dim <= 1
    } else if large_dim <= 1 {
        small >= 1
    } else {
        small >= 1 && small.checked_mul(small_dim).is_some_and(|extent| large >= extent)
    };
    assert!(distinct, "a mutable {rows}×{cols} view with strides ({rs}, {cs}) would write some elements twice");
}

impl<'a, T> MatRef<'a, T> {
    /// A view with explicit strides. Panics when it would reach outside `data`.
    pub fn new(data: &'a [T], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        check_bounds(data.len(), rows, cols, rs, cs);
        MatRef { data, rows, cols, rs, cs }
    }

    /// Row-major (C order) `rows × cols`.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols, 1)
    }

    /// Column-major (Fortran order) `rows × cols`.
    pub fn col_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, 1, rows)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `(row stride, column stride)`.
    pub fn strides(&self) -> (usize, usize) {
        (self.rs, self.cs)
    }

    /// The transpose, without a copy.
    pub fn t(self) -> Self {
        MatRef { data: self.data, rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }

    /// Columns `start..start + len`.
    pub fn columns(self, start: usize, len: usize) -> Self {
        assert!(start <= self.cols && len <= self.cols - start, "columns {start}..+{len} of {}", self.cols);
        // `start < cols`, so `start·cs` is the offset of an element of the view: no overflow.
        let data = if len == 0 { &self.data[..0] } else { &self.data[start * self.cs..] };
        MatRef { data, cols: len, ..self }
    }

    /// Element `(i, j)`.
    pub fn get(&self, i: usize, j: usize) -> T
    where
        T: Copy,
    {
        assert!(i < self.rows && j < self.cols, "({i}, {j}) outside {}×{}", self.rows, self.cols);
        self.data[i * self.rs + j * self.cs]
    }

    pub(crate) fn as_ptr(&self) -> *const T {
        self.data.as_ptr()
    }

    /// The slice the view indexes into (from its first element).
    pub(crate) fn as_slice(&self) -> &'a [T] {
        self.data
    }
}

impl<'a, T> MatMut<'a, T> {
    /// A view with explicit strides. Panics when it would reach outside `data` or when two of
    /// its elements would be the same place.
    pub fn new(data: &'a mut [T], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        check_bounds(data.len(), rows, cols, rs, cs);
        check_distinct(rows, cols, rs, cs);
        MatMut { data, rows, cols, rs, cs }
    }

    /// Row-major (C order) `rows × cols`.
    pub fn row_major(data: &'a mut [T], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols, 1)
    }

    /// Column-major (Fortran order) `rows × cols`.
    pub fn col_major(data: &'a mut [T], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, 1, rows)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `(row stride, column stride)`.
    pub fn strides(&self) -> (usize, usize) {
        (self.rs, self.cs)
    }

    /// The transpose, without a copy.
    pub fn t(self) -> Self {
        MatMut { data: self.data, rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }

    /// The same view, borrowed for a shorter time.
    pub fn reborrow(&mut self) -> MatMut<'_, T> {
        MatMut { data: self.data, rows: self.rows, cols: self.cols, rs: self.rs, cs: self.cs }
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut T {
        self.data.as_mut_ptr()
    }

    /// The slice the view indexes into (from its first element).
    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        self.data
    }
}

//! Bounds-checked strided matrix views: the only way matrices reach a GEMM.

/// An immutable `rows × cols` matrix: element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

/// A mutable `rows × cols` matrix: element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Debug)]
pub struct MatMut<'a, T> {
    data: &'a mut [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

/// Panics unless every element of the view lies inside a slice of length `len`.
fn check_bounds(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) {
    if rows > 0 && cols > 0 {
        let last = (rows - 1) * rs + (cols - 1) * cs;
        assert!(
            last < len,
            "{rows}×{cols} view with strides ({rs}, {cs}) needs {} elements, slice has {len}",
            last + 1
        );
    }
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
        assert!(start + len <= self.cols, "columns {start}..{} of {}", start + len, self.cols);
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
}

impl<'a, T> MatMut<'a, T> {
    /// A view with explicit strides. Panics when it would reach outside `data`.
    pub fn new(data: &'a mut [T], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        check_bounds(data.len(), rows, cols, rs, cs);
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

    pub(crate) fn as_mut_ptr(&mut self) -> *mut T {
        self.data.as_mut_ptr()
    }
}

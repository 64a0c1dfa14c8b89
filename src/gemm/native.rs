//! The engine's own GEMM: `C ← α A B + β C` by the loop nest of Goto and van de Geijn (as in
//! BLIS), around the micro-kernels of [`super::microkernel`].
//!
//! ```text
//! for jc in columns of C, step NC              B block KC×NC (from L3)
//!   for each depth block (KC deep)             pack B[depth, jc..] unless prepacked
//!     for ic in rows of C, step MC             pack A[ic.., depth] unless prepacked (L2)
//!       for jr in the block's columns, step NR   one NR-wide panel of B stays in L1
//!         for ir in the block's rows, step MR    MR×NR tile: micro-kernel
//! ```
//!
//! The micro-kernel writes columns of `C` with vector stores, so `C` must have unit row stride;
//! a product into a row-major `C` is computed as `Cᵀ = Bᵀ Aᵀ` instead. A block's last one or two
//! columns past whole panels join the tile before them (a wide tile, `MR×(NR + 1|2)`) on sets
//! that have one, and a last panel of at most `MR/2` rows in a full tile's columns takes a kernel
//! half as high. Tiles at the edges that the kernel computing them overhangs, and every tile of a
//! `C` with neither stride 1, go through a small buffer.
//!
//! An operand packed beforehand ([`Packed`]) is used in place of packing it again, when it was
//! packed for the role it plays. An operand whose panels are already contiguous along their
//! width (a column-major `A`, a row-major `B`) is read in place with its own stride, unless that
//! stride would crowd a few L1 sets. Any other operand is packed block by block into per-thread
//! buffers that live as long as the thread. Packing buffers start on a cache line, so the `A`
//! panels (`MR` values a step: 128 bytes in both precisions) are read a whole line at a time.

use std::cell::RefCell;

use super::microkernel::{MicroKernel, TileFn};
use super::pack::{self, Format, Lines};
use super::view::{MatMut, MatRef};
use super::Element;

/// An operand of a product: a view, or a view with a packed copy made beforehand.
#[derive(Clone, Copy, Debug)]
pub enum Operand<'a, T> {
    View(MatRef<'a, T>),
    Packed(&'a Packed<'a, T>),
}

impl<'a, T> Operand<'a, T> {
    /// The matrix, as a view.
    pub fn view(&self) -> MatRef<'a, T> {
        match *self {
            Operand::View(view) => view,
            Operand::Packed(packed) => packed.source,
        }
    }
}

impl<'a, T> From<MatRef<'a, T>> for Operand<'a, T> {
    fn from(view: MatRef<'a, T>) -> Self {
        Operand::View(view)
    }
}

impl<'a, T> From<&'a Packed<'a, T>> for Operand<'a, T> {
    fn from(packed: &'a Packed<'a, T>) -> Self {
        Operand::Packed(packed)
    }
}

/// A matrix and its packed copy, made once and used by every product that reads it in the
/// same role (e.g. the weights of one evaluation, shared by every column block and thread).
/// Made by [`super::Gemm::pack_left`] and [`super::Gemm::pack_right`].
#[derive(Debug)]
pub struct Packed<'a, T> {
    pub(crate) source: MatRef<'a, T>,
    /// What was packed and how: `None` when the back-end does its own packing.
    pub(crate) packing: Option<Packing<'a, T>>,
}

#[derive(Debug)]
pub(crate) struct Packing<'a, T> {
    /// Whether the packed matrix is `sourceᵀ` rather than `source`.
    pub transposed: bool,
    pub format: Format,
    pub data: &'a [T],
}

impl<T> Packed<'_, T> {
    /// The packed copy of the matrix `M` the driver needs (`source` or its transpose) in
    /// `format`, if this is one (the layout depends on nothing else).
    fn packed_as(&self, transposed: bool, format: Format) -> Option<&[T]> {
        self.packing.as_ref().filter(|p| p.transposed == transposed && p.format == format).map(|p| p.data)
    }
}

/// Whether a product into `c` is computed as `Cᵀ = Bᵀ Aᵀ`: when `C`'s columns are not
/// contiguous but its rows are.
pub(crate) fn transposes<T>(c: &MatMut<'_, T>) -> bool {
    let (rs, cs) = c.strides();
    rs != 1 && c.rows() > 1 && (cs == 1 || c.cols() == 1)
}

/// One side of the product as the driver reads it: the matrix `M` to cut into panels (`A`, or
/// `Bᵀ` for the right side), its packed copy when there is a usable one, and whether `M` can be
/// read in place instead of packed.
struct Side<'a, T: 'static> {
    matrix: MatRef<'a, T>,
    packed: Option<&'a [T]>,
    format: Format,
    transposes: &'static [pack::Transpose<T>],
    in_place: bool,
}

/// Whether panels whose depth steps are `stride` values of `T` apart can be read in place: their
/// columns must be contiguous, and consecutive steps must spread over the sets of the L1 (64
/// sets of 64-byte lines, 4 KiB a way): 16 consecutive steps in at least 8 sets. A stride of
/// 4 KiB (1024 f32) or just off it would put every step of a panel in one set and evict the
/// panel while it is being read.
fn readable_in_place<T>(rs: usize, stride: usize) -> bool {
    const LINE: usize = 64;
    const WAY: usize = 4096;
    let bytes = stride.saturating_mul(std::mem::size_of::<T>()) % WAY;
    let mut sets = [false; WAY / LINE];
    for step in 0..16 {
        sets[(step * bytes % WAY) / LINE] = true;
    }
    rs == 1 && sets.iter().filter(|&&hit| hit).count() >= 8
}

/// One block of a side as the micro-kernel reads it.
enum Block<'b, T> {
    /// Packed panels of `width × depth` values each.
    Packed { panels: &'b [T], width: usize, depth: usize },
    /// `M` itself: step `p` of panel `q < full` starts at `data[start + q·width + p·stride]`; a
    /// partial last panel is packed in `tail`.
    InPlace { data: &'b [T], start: usize, stride: usize, width: usize, full: usize, tail: &'b [T] },
}

impl<T> Block<'_, T> {
    /// Where panel `q` starts and how far apart its depth steps are.
    fn panel(&self, q: usize) -> (&[T], usize) {
        match *self {
            Block::Packed { panels, width, depth } => (&panels[q * width * depth..], width),
            Block::InPlace { data, start, stride, width, full, tail } => {
                if q < full {
                    (&data[start + q * width..], stride)
                } else {
                    (tail, width)
                }
            }
        }
    }
}

impl<'a, T: Element> Side<'a, T> {
    fn new(operand: Operand<'a, T>, transposed: bool, format: Format, kernel: &MicroKernel<T>) -> Self {
        let view = operand.view();
        let packed = match operand {
            Operand::View(_) => None,
            Operand::Packed(packed) => packed.packed_as(transposed, format),
        };
        let matrix = if transposed { view.t() } else { view };
        let (rs, cs) = matrix.strides();
        let in_place = packed.is_none() && readable_in_place::<T>(rs, cs);
        Side { matrix, packed, format, transposes: kernel.transposes, in_place }
    }

    /// Rows `rows` of depth block `kb` (`depth`) as the kernel reads them: the prepacked slice,
    /// `M` in place, or a copy packed in `buf`.
    fn block<'b>(
        &'b self,
        kb: usize,
        depth: std::ops::Range<usize>,
        rows: std::ops::Range<usize>,
        buf: &'b mut [T],
    ) -> Block<'b, T> {
        let width = self.format.width;
        let steps = depth.len();
        if let Some(packed) = self.packed {
            let panels = pack::block_of(packed, self.matrix.rows(), self.format, kb, steps, rows.start, rows.len());
            return Block::Packed { panels, width, depth: steps };
        }
        if self.in_place {
            let (data, stride) = (self.matrix.as_slice(), self.matrix.strides().1);
            let full = rows.len() / width;
            let start = rows.start + depth.start * stride;
            if full > 0 {
                // The last value any full panel reads, (rows.start + full·width − 1, last step):
                // every other lies at a smaller offset (both strides are non-negative).
                let _ = &data[start + full * width - 1 + (steps - 1) * stride];
            }
            let tail_rows = rows.start + full * width..rows.end;
            let len = pack::packed_len(tail_rows.len(), steps, width);
            if !tail_rows.is_empty() {
                pack::pack_block(self.matrix, tail_rows, depth, width, self.transposes, &mut buf[..len]);
            }
            return Block::InPlace { data, start, stride, width, full, tail: &buf[..len] };
        }
        let len = pack::packed_len(rows.len(), steps, width);
        pack::pack_block(self.matrix, rows, depth, width, self.transposes, &mut buf[..len]);
        Block::Packed { panels: &buf[..len], width, depth: steps }
    }
}

/// The formats in which the left and right sides of a product of depth `k` are packed.
pub(crate) fn formats<T>(kernel: &MicroKernel<T>, k: usize) -> (Format, Format) {
    let kc = pack::block_depth(k, kernel.kc);
    (Format { width: kernel.mr, kc }, Format { width: kernel.nr, kc })
}

thread_local! {
    /// The packing buffers of this thread: one for blocks of `A`, one for `B`.
    static BUFFERS: RefCell<[Lines; 2]> = const { RefCell::new([Lines::new(), Lines::new()]) };
}

/// `C ← α A B + β C` with `kernel` (shapes already checked, none of `m`, `n` zero).
pub(crate) fn gemm<T: Element>(
    kernel: &MicroKernel<T>,
    alpha: T,
    a: Operand<'_, T>,
    b: Operand<'_, T>,
    beta: T,
    c: MatMut<'_, T>,
) {
    let k = a.view().cols();
    if k == 0 || alpha == T::zero() {
        // As BLAS: A and B are not read at all (so their NaNs do not reach C).
        return scale(beta, c);
    }
    let (left, right) = formats(kernel, k);
    let kc = left.kc;
    let (a, b, mut c) = if transposes(&c) {
        // Cᵀ = Bᵀ Aᵀ: the left side's M is Bᵀ, the right side's (M = (Aᵀ)ᵀ) is A.
        (Side::new(b, true, left, kernel), Side::new(a, false, right, kernel), c.t())
    } else {
        (Side::new(a, false, left, kernel), Side::new(b, true, right, kernel), c)
    };
    let (m, n) = (c.rows(), c.cols());
    let (mc, nc) = (kernel.mc, kernel.nc);
    BUFFERS.with_borrow_mut(|[a_buf, b_buf]| {
        let a_buf =
            a_buf.as_mut_slice::<T>(if a.packed.is_some() { 0 } else { pack::padded(mc.min(m), kernel.mr) * kc });
        let b_buf =
            b_buf.as_mut_slice::<T>(if b.packed.is_some() { 0 } else { pack::padded(nc.min(n), kernel.nr) * kc });
        for jc in (0..n).step_by(nc) {
            let columns = jc..(jc + nc).min(n);
            for (kb, depth) in pack::depth_blocks(k, kc).enumerate() {
                let b_block = b.block(kb, depth.clone(), columns.clone(), b_buf);
                let beta = if kb == 0 { beta } else { T::one() };
                for ic in (0..m).step_by(mc) {
                    let rows = ic..(ic + mc).min(m);
                    let a_block = a.block(kb, depth.clone(), rows.clone(), a_buf);
                    macro_kernel(kernel, depth.len(), alpha, &a_block, &b_block, beta, &mut c, rows, columns.clone());
                }
            }
        }
    });
}

/// Every tile of one block: `C[rows, columns] ← α A_block B_block + β C[rows, columns]`.
#[allow(clippy::too_many_arguments)]
fn macro_kernel<T: Element>(
    kernel: &MicroKernel<T>,
    depth: usize,
    alpha: T,
    a_block: &Block<'_, T>,
    b_block: &Block<'_, T>,
    beta: T,
    c: &mut MatMut<'_, T>,
    rows: std::ops::Range<usize>,
    columns: std::ops::Range<usize>,
) {
    let (mr, nr) = (kernel.mr, kernel.nr);
    let (rs, cs) = c.strides();
    let (c_rows, c_cols) = (c.rows(), c.cols());
    let c_data = c.as_mut_slice();
    let (mut jr, mut q_b) = (columns.start, 0);
    while jr < columns.end {
        let (b_panel, ldb) = b_block.panel(q_b);
        let ColumnTile { live: tile_cols, cols, run, half, extra, ld_extra } =
            column_tile(kernel, b_block, q_b, columns.end - jr, depth);
        // The last value of B's first panel the kernel reads (every other lies before it).
        let _ = &b_panel[(depth - 1) * ldb + cols.min(nr) - 1];
        for (q_a, ir) in rows.clone().step_by(mr).enumerate() {
            let tile_rows = mr.min(rows.end - ir);
            debug_assert!(ir + tile_rows <= c_rows && jr + tile_cols <= c_cols);
            let (a_panel, lda) = a_block.panel(q_a);
            let _ = &a_panel[(depth - 1) * lda + mr - 1];
            // The rows the kernel computes: half a tile for a last panel of at most `mr/2` live
            // rows, when the set has that kernel for this tile's columns.
            let (kernel_rows, run) = match half {
                Some(half) if tile_rows <= mr / 2 => {
                    // The half kernel computes exactly `mr/2` rows of the full tile's columns.
                    debug_assert_eq!(cols, nr);
                    (mr / 2, half)
                }
                _ => (mr, run),
            };
            if rs == 1 && tile_rows == kernel_rows && tile_cols == cols {
                let first = ir + jr * cs;
                // The tile's last element, (ir + kernel_rows − 1, jr + cols − 1), lies inside the
                // view, so inside `c_data` (checked when the view was made).
                let _ = &c_data[first + (kernel_rows - 1) + (cols - 1) * cs];
                // SAFETY: every `a_panel[p·lda + i]`, `b_panel[p·ldb + j]` and, for a wide tile,
                // `extra[p·ld_extra + r]` (`p < depth`, `i < kernel_rows ≤ mr`,
                // `j < min(cols, nr)`, `r < cols − nr`; `extra` is null for the other kernels,
                // which do not read it) is at or before the last value indexed above (or in
                // `column_tile`), so inside its slice; every `c[first + i + j·cs]` is an element
                // of the view (bounds-checked above), which is a unique borrow, so it aliases no
                // operand; `run` came from `Element::micro_kernel`, which checked the CPU.
                unsafe {
                    run(
                        depth,
                        alpha,
                        a_panel.as_ptr(),
                        lda,
                        b_panel.as_ptr(),
                        ldb,
                        extra,
                        ld_extra,
                        beta,
                        c_data[first..].as_mut_ptr(),
                        cs,
                    )
                };
            } else {
                // Not initialised: the kernel writes it whole (β = 0 never reads it), and zeroing
                // it for every edge tile was a visible share of S1's time.
                let mut buffer = std::mem::MaybeUninit::<[T; MAX_TILE]>::uninit();
                let written = kernel_rows * cols;
                // SAFETY: as above, with the tile buffer (`MAX_TILE ≥ mr·cols ≥ kernel_rows·cols`
                // values, leading dimension `kernel_rows`) as `C`; with β = 0 the kernel only
                // writes `C`, every one of its `kernel_rows·cols` values, so the first `written`
                // are initialised after it.
                let tile = unsafe {
                    let c = buffer.as_mut_ptr().cast::<T>();
                    let (a, b) = (a_panel.as_ptr(), b_panel.as_ptr());
                    run(depth, T::one(), a, lda, b, ldb, extra, ld_extra, T::zero(), c, kernel_rows);
                    std::slice::from_raw_parts(c, written)
                };
                for (j, tile) in tile.chunks_exact(kernel_rows).take(tile_cols).enumerate() {
                    let first = ir * rs + (jr + j) * cs;
                    if rs == 1 {
                        // A contiguous run of the column: a loop the compiler vectorises.
                        update(&mut c_data[first..first + tile_rows], &tile[..tile_rows], alpha, beta);
                    } else {
                        for (i, &value) in tile[..tile_rows].iter().enumerate() {
                            update(std::slice::from_mut(&mut c_data[first + i * rs]), &[value], alpha, beta);
                        }
                    }
                }
            }
        }
        // A wide tile takes the block's last two panels: the loop ends after it.
        jr += tile_cols;
        q_b += 1;
    }
}

/// The kernel of one tile of columns and what it reads of `B` beyond its panel.
struct ColumnTile<T: 'static> {
    /// Live columns of `C` the tile covers.
    live: usize,
    /// Columns the kernel computes (`live` or more).
    cols: usize,
    run: TileFn<T>,
    /// The kernel of the same columns `MR/2` rows high: for tiles of the full kernel (a partial
    /// last panel of `B` included), not for edge or wide tiles.
    half: Option<TileFn<T>>,
    /// A wide tile's second panel and its stride; null and 0 otherwise.
    extra: *const T,
    ld_extra: usize,
}

/// The tile of `live` remaining columns at panel `q_b` of `b_block`: the last two panels as one
/// wide tile when the last holds one or two live columns, the edge kernel when the live columns
/// fit in it, else the full tile.
fn column_tile<T: Element>(
    kernel: &MicroKernel<T>,
    b_block: &Block<'_, T>,
    q_b: usize,
    live: usize,
    depth: usize,
) -> ColumnTile<T> {
    let nr = kernel.nr;
    let wide = kernel.wide.zip(live.checked_sub(nr)).and_then(|(wide, r)| wide.with_extra_columns(r));
    match (wide, kernel.edge) {
        (Some(run), _) => {
            let (extra, ld_extra) = b_block.panel(q_b + 1);
            // The last value of the second panel the kernel reads.
            let _ = &extra[(depth - 1) * ld_extra + live - nr - 1];
            ColumnTile { live, cols: live, run, half: None, extra: extra.as_ptr(), ld_extra }
        }
        (None, Some(edge)) if live <= edge.cols => {
            ColumnTile { live, cols: edge.cols, run: edge.run, half: None, extra: std::ptr::null(), ld_extra: 0 }
        }
        _ => ColumnTile {
            live: nr.min(live),
            cols: nr,
            run: kernel.run,
            half: Some(kernel.half),
            extra: std::ptr::null(),
            ld_extra: 0,
        },
    }
}

/// `c ← α t + β c` (`c` not read when `β = 0`).
#[inline]
fn update<T: Element>(c: &mut [T], t: &[T], alpha: T, beta: T) {
    if beta == T::zero() {
        c.iter_mut().zip(t).for_each(|(c, &t)| *c = alpha * t);
    } else {
        c.iter_mut().zip(t).for_each(|(c, &t)| *c = alpha * t + beta * *c);
    }
}

/// A bound on `MR·(NR + 2)` of every micro-kernel, the largest a wide tile can be (checked where
/// each is made).
pub(crate) const MAX_TILE: usize = 32 * 14;

/// `C ← β C` (a product of depth 0); with `β = 0`, `C` is set to zero without being read.
fn scale<T: Element>(beta: T, mut c: MatMut<'_, T>) {
    let (rows, cols) = (c.rows(), c.cols());
    let (rs, cs) = c.strides();
    let data = c.as_mut_slice();
    for j in 0..cols {
        for i in 0..rows {
            let c = &mut data[i * rs + j * cs];
            *c = if beta == T::zero() { T::zero() } else { beta * *c };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{column_tile, readable_in_place, Block};
    use crate::gemm::element::Element;
    use crate::kernels::Isa;

    /// Which kernel computes the columns left at a panel of `B`: the choice that the wide and
    /// edge tiles' speed rests on (their sums are tested against their scalar twins elsewhere).
    #[test]
    fn a_thin_last_panel_joins_the_panel_before_it_and_a_narrow_one_takes_the_edge_kernel() {
        for isa in Isa::ALL.into_iter().filter(|isa| isa.is_supported()) {
            let kernel = f64::micro_kernel(isa).expect("every supported set has f64 kernels");
            let (nr, depth) = (kernel.nr, 3);
            let panels = vec![0.0; 3 * nr * depth];
            let block = Block::Packed { panels: &panels, width: nr, depth };
            let tile = |q, live| {
                let tile = column_tile(&kernel, &block, q, live, depth);
                (tile.live, tile.cols, tile.half.is_some(), !tile.extra.is_null())
            };
            // A whole panel and more after it: the full tile, which has a half-height twin.
            assert_eq!(tile(0, 3 * nr), (nr, nr, true, false), "{isa:?}");
            for r in 1..=2 {
                // One or two live columns in the last panel: one tile of `NR + r` columns where
                // the set has the registers for it, else the full tile and an edge tile after.
                let want = match kernel.wide {
                    Some(_) => (nr + r, nr + r, false, true),
                    None => (nr, nr, true, false),
                };
                assert_eq!(tile(1, nr + r), want, "{isa:?}, {r} columns past a panel");
            }
            // A last panel of a few live columns: the edge kernel, when it is wide enough.
            if let Some(edge) = kernel.edge {
                assert_eq!(tile(2, edge.cols), (edge.cols, edge.cols, false, false), "{isa:?}");
            }
            assert_eq!(tile(2, nr).0, nr, "{isa:?}");
        }
    }

    #[test]
    fn strides_that_crowd_l1_sets_are_packed_not_read_in_place() {
        // S2's 784 f32 (3 136 bytes) and S1's 64 f32 (256 bytes) spread over the sets.
        assert!(readable_in_place::<f32>(1, 784));
        assert!(readable_in_place::<f32>(1, 64));
        assert!(readable_in_place::<f64>(1, 33));
        // 4 KiB, just off it, 1 KiB: one or four sets for 16 steps.
        assert!(!readable_in_place::<f32>(1, 1024));
        assert!(!readable_in_place::<f32>(1, 1025));
        assert!(!readable_in_place::<f32>(1, 256));
        // Panels must be contiguous along their width; a huge stride does not overflow.
        assert!(!readable_in_place::<f32>(2, 784));
        let _ = readable_in_place::<f64>(1, usize::MAX);
    }
}

//! Packing: copying a block of an operand into the order the micro-kernel reads it, so that its
//! loads are contiguous and aligned whatever the operand's strides.
//!
//! A matrix `M` (`r×d`) is packed in *panels* of `w` rows: panel `q` holds, for each `p < d`,
//! the `w` values `M[q·w + i, p]` (`i < w`, zeros past row `r`). The left operand `A` of
//! `C = A B` is packed as `M = A` with `w = MR`; the right operand as `M = Bᵀ` with `w = NR`.
//! The depth is cut into blocks of `kc` ([`depth_blocks`]); a whole packed matrix stores its
//! depth blocks one after another, each holding every panel, so the block of rows
//! `ic..ic + mc` of depth block `kb` is one contiguous slice.

use std::marker::PhantomData;
use std::ops::Range;

use super::view::MatRef;

/// A cache line of packing storage: buffers are arrays of these, so that they start on a
/// 64-byte boundary.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Line([u64; 8]);

// SAFETY: a plain array of integers, no padding; any bit pattern is valid.
unsafe impl bytemuck::Zeroable for Line {}
// SAFETY: as above; `Copy` and `'static`.
unsafe impl bytemuck::Pod for Line {}

/// Packing storage that starts on a cache line, grown as needed and reused.
#[derive(Default)]
pub(crate) struct Lines(Vec<Line>);

impl Lines {
    pub const fn new() -> Self {
        Lines(Vec::new())
    }

    /// The first `len` values of `T`, growing the storage when it is shorter.
    pub fn as_mut_slice<T: bytemuck::Pod>(&mut self, len: usize) -> &mut [T] {
        let lines = (len * std::mem::size_of::<T>()).div_ceil(std::mem::size_of::<Line>());
        if self.0.len() < lines {
            self.0.resize(lines, Line([0; 8]));
        }
        &mut bytemuck::cast_slice_mut(&mut self.0[..])[..len]
    }
}

/// A buffer, reused across evaluations, for an operand packed once by
/// [`super::Gemm::pack_left`] or [`super::Gemm::pack_right`].
pub struct PackBuffer<T> {
    lines: Lines,
    element: PhantomData<T>,
}

impl<T> Default for PackBuffer<T> {
    fn default() -> Self {
        PackBuffer { lines: Lines::new(), element: PhantomData }
    }
}

impl<T> std::fmt::Debug for PackBuffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackBuffer({} bytes)", self.lines.0.len() * std::mem::size_of::<Line>())
    }
}

/// How a packed matrix is laid out: its panel width and depth blocking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Format {
    pub width: usize,
    pub kc: usize,
}

/// The depth of the blocks of a product of depth `k` for a kernel whose block depth is `kc`: as
/// few blocks as `kc` allows, of (nearly) equal depth, so that no block is a thin remainder.
pub(crate) fn block_depth(k: usize, kc: usize) -> usize {
    k.div_ceil(k.div_ceil(kc).max(1)).max(1)
}

/// The ranges of the depth blocks of depth `k` cut at `kc` (from [`block_depth`]).
pub(crate) fn depth_blocks(k: usize, kc: usize) -> impl Iterator<Item = Range<usize>> {
    (0..k).step_by(kc.max(1)).map(move |start| start..(start + kc).min(k))
}

/// `rows` rounded up to whole panels of `width`.
pub(crate) fn padded(rows: usize, width: usize) -> usize {
    rows.div_ceil(width) * width
}

/// The length of the packed copy of the rows `rows` of an `r×d` matrix: `padded(rows)·d`.
pub(crate) fn packed_len(rows: usize, depth: usize, width: usize) -> usize {
    padded(rows, width) * depth
}

/// Transposes one `tb×tb` tile: `dst[t·ds + s] = src[s·rs + t]` for `s, t < tb`.
///
/// # Safety
/// `src + s·rs + t` readable and `dst + t·ds + s` writable for `s, t < tb`; they do not
/// overlap; the CPU supports the function's instruction set.
pub(crate) type TransposeFn<T> = unsafe fn(*const T, usize, *mut T, usize);

/// A vector transpose of `size×size` tiles, used to pack operands whose rows are contiguous.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Transpose<T> {
    pub size: usize,
    pub run: TransposeFn<T>,
}

/// Packs `M[rows, depth]` in panels of `width` into `out` (`packed_len` values, see the
/// module's layout), with `transpose` for the tiles of an `M` whose rows are contiguous.
pub(crate) fn pack_block<T: Copy + num_traits::Zero>(
    m: MatRef<'_, T>,
    rows: Range<usize>,
    depth: Range<usize>,
    width: usize,
    transpose: Option<Transpose<T>>,
    out: &mut [T],
) {
    match width {
        4 => pack_panels::<T, 4>(m, rows, depth, transpose, out),
        6 => pack_panels::<T, 6>(m, rows, depth, transpose, out),
        8 => pack_panels::<T, 8>(m, rows, depth, transpose, out),
        12 => pack_panels::<T, 12>(m, rows, depth, transpose, out),
        16 => pack_panels::<T, 16>(m, rows, depth, transpose, out),
        32 => pack_panels::<T, 32>(m, rows, depth, transpose, out),
        _ => panic!("no packing for panels of width {width}"),
    }
}

/// [`pack_block`] for panels of `W` (a constant, so that whole-panel copies are a few vector
/// moves rather than calls to `memcpy`).
fn pack_panels<T: Copy + num_traits::Zero, const W: usize>(
    m: MatRef<'_, T>,
    rows: Range<usize>,
    depth: Range<usize>,
    transpose: Option<Transpose<T>>,
    out: &mut [T],
) {
    let (rs, cs) = m.strides();
    let data = m.as_slice();
    let (r0, d0, dl) = (rows.start, depth.start, depth.len());
    let panels = out[..packed_len(rows.len(), dl, W)].chunks_exact_mut(W * dl);
    for (q, panel) in panels.enumerate() {
        let first = r0 + q * W;
        let live = W.min(rows.end - first);
        if live < W {
            panel.fill(T::zero());
        }
        if rs == 1 {
            // The rows of one column are contiguous: copy runs of `live`.
            for (p, out) in panel.chunks_exact_mut(W).enumerate() {
                let start = first + (d0 + p) * cs;
                if live == W {
                    let out: &mut [T; W] = out.try_into().expect("a panel row");
                    *out = data[start..start + W].try_into().expect("a panel row");
                } else {
                    out[..live].copy_from_slice(&data[start..start + live]);
                }
            }
        } else if cs == 1 {
            pack_rows(data, rs, first, live, d0, dl, transpose, W, panel);
        } else {
            for (p, out) in panel.chunks_exact_mut(W).enumerate() {
                for (i, out) in out[..live].iter_mut().enumerate() {
                    *out = data[(first + i) * rs + (d0 + p) * cs];
                }
            }
        }
    }
}

/// One panel of `width` from `live` contiguous rows (`data[(first + i)·rs + d0 + p]`,
/// `i < live`, `p < dl`): whole `tb×tb` tiles by the vector transpose, the rest one value at a
/// time.
#[allow(clippy::too_many_arguments)]
fn pack_rows<T: Copy>(
    data: &[T],
    rs: usize,
    first: usize,
    live: usize,
    d0: usize,
    dl: usize,
    transpose: Option<Transpose<T>>,
    width: usize,
    panel: &mut [T],
) {
    let tb = transpose.map_or(1, |t| t.size);
    let (tiled_rows, tiled_depth) = if tb > 1 { (live / tb * tb, dl / tb * tb) } else { (0, 0) };
    if let Some(transpose) = transpose.filter(|_| tiled_rows > 0 && tiled_depth > 0) {
        for i in (0..tiled_rows).step_by(tb) {
            for p in (0..tiled_depth).step_by(tb) {
                let src = (first + i) * rs + d0 + p;
                let dst = p * width + i;
                // Both tiles lie inside their slices: their last elements are indexed here.
                let _ = (&data[src + (tb - 1) * rs + tb - 1], &panel[dst + (tb - 1) * width + tb - 1]);
                // SAFETY: every `src + s·rs + t` and `dst + t·width + s` (`s, t < tb`) is at or
                // before the last elements just checked and after the first, so inside `data` and
                // `panel`, which are different slices; `transpose` came from a micro-kernel
                // table, made only for a CPU with its instruction set.
                unsafe { (transpose.run)(data[src..].as_ptr(), rs, panel[dst..].as_mut_ptr(), width) };
            }
        }
    }
    for i in 0..live {
        let row = &data[(first + i) * rs + d0..(first + i) * rs + d0 + dl];
        let from = if i < tiled_rows { tiled_depth } else { 0 };
        for (p, &value) in row.iter().enumerate().skip(from) {
            panel[p * width + i] = value;
        }
    }
}

/// Packs all of `m` in `format` into `out`: its depth blocks one after another.
pub(crate) fn pack_whole<'a, T: bytemuck::Pod + num_traits::Zero>(
    m: MatRef<'_, T>,
    format: Format,
    transpose: Option<Transpose<T>>,
    out: &'a mut PackBuffer<T>,
) -> &'a [T] {
    let (rows, depth) = (m.rows(), m.cols());
    // Every value is written below: whole panels copied, partial ones zero-filled first.
    let packed = out.lines.as_mut_slice::<T>(packed_len(rows, depth, format.width));
    let block = padded(rows, format.width) * format.kc;
    for (kb, range) in depth_blocks(depth, format.kc).enumerate() {
        pack_block(m, 0..rows, range, format.width, transpose, &mut packed[kb * block..]);
    }
    packed
}

/// The slice of a whole packed `r×d` matrix (from [`pack_whole`]) holding rows
/// `first..first + len` (`first` a multiple of the width) of depth block `kb` of depth
/// `depth_len`.
pub(crate) fn block_of<T>(
    packed: &[T],
    rows: usize,
    format: Format,
    kb: usize,
    depth_len: usize,
    first: usize,
    len: usize,
) -> &[T] {
    let start = kb * padded(rows, format.width) * format.kc + first * depth_len;
    &packed[start..start + packed_len(len, depth_len, format.width)]
}

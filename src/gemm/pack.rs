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
use crate::kernels::lanes::prefetch_line;

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
/// module's layout), with `transposes` (largest first) for the tiles of an `M` whose rows are
/// contiguous.
pub(crate) fn pack_block<T: Copy + num_traits::Zero>(
    m: MatRef<'_, T>,
    rows: Range<usize>,
    depth: Range<usize>,
    width: usize,
    transposes: &[Transpose<T>],
    out: &mut [T],
) {
    match width {
        4 => pack_panels::<T, 4>(m, rows, depth, transposes, out),
        6 => pack_panels::<T, 6>(m, rows, depth, transposes, out),
        8 => pack_panels::<T, 8>(m, rows, depth, transposes, out),
        12 => pack_panels::<T, 12>(m, rows, depth, transposes, out),
        16 => pack_panels::<T, 16>(m, rows, depth, transposes, out),
        32 => pack_panels::<T, 32>(m, rows, depth, transposes, out),
        _ => panic!("no packing for panels of width {width}"),
    }
}

/// [`pack_block`] for panels of `W` (a constant, so that whole-panel copies are a few vector
/// moves rather than calls to `memcpy`).
fn pack_panels<T: Copy + num_traits::Zero, const W: usize>(
    m: MatRef<'_, T>,
    rows: Range<usize>,
    depth: Range<usize>,
    transposes: &[Transpose<T>],
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
            let rows = PanelRows { data, rs, first, d0, dl, width: W };
            let mut done = 0;
            for &transpose in transposes {
                while live - done >= transpose.size {
                    rows.transpose(done, transpose, panel);
                    done += transpose.size;
                }
            }
            rows.copy(done..live, 0, panel);
        } else {
            for (p, out) in panel.chunks_exact_mut(W).enumerate() {
                for (i, out) in out[..live].iter_mut().enumerate() {
                    *out = data[(first + i) * rs + (d0 + p) * cs];
                }
            }
        }
    }
}

/// The contiguous rows `data[(first + i)·rs + d0 + p]` (`p < dl`) that make one panel of
/// `width`: value `(i, p)` goes to `panel[p·width + i]`.
struct PanelRows<'a, T> {
    data: &'a [T],
    rs: usize,
    first: usize,
    d0: usize,
    dl: usize,
    width: usize,
}

impl<T: Copy> PanelRows<'_, T> {
    /// Rows `i0..i0 + tb` (`tb` the transpose's size): whole `tb×tb` tiles by the vector
    /// transpose, the depth past the last whole tile one value at a time.
    ///
    /// Each tile asks for the lines of the same tile of the next panel (`width` rows below):
    /// a panel reads `width` short runs at once, more streams than the hardware prefetcher
    /// follows, and the operand (the data in the forward pass) often comes from memory (S2
    /// 4–6 % faster in alternating rounds, S1, whose data is in L3, unchanged: PERF.md). Past
    /// the matrix's last panel those lines are not read: a prefetch never faults.
    fn transpose(&self, i0: usize, transpose: Transpose<T>, panel: &mut [T]) {
        let (tb, width) = (transpose.size, self.width);
        let tiled_depth = self.dl / tb * tb;
        for p in (0..tiled_depth).step_by(tb) {
            let src = (self.first + i0) * self.rs + self.d0 + p;
            let dst = p * width + i0;
            // Both tiles lie inside their slices: their last elements are indexed here.
            let _ = (&self.data[src + (tb - 1) * self.rs + tb - 1], &panel[dst + (tb - 1) * width + tb - 1]);
            // SAFETY: every `src + s·rs + t` and `dst + t·width + s` (`s, t < tb`) is at or
            // before the last elements just checked and after the first, so inside `data` and
            // `panel`, which are different slices; `transpose` came from a micro-kernel table,
            // made only for a CPU with its instruction set.
            unsafe { (transpose.run)(self.data[src..].as_ptr(), self.rs, panel[dst..].as_mut_ptr(), width) };
            let next_panel = self.data.as_ptr().wrapping_add(src + width * self.rs);
            for s in 0..tb {
                prefetch_line(next_panel.wrapping_add(s * self.rs));
            }
        }
        self.copy(i0..i0 + tb, tiled_depth, panel);
    }

    /// Rows `rows` from depth `from` on, one value at a time.
    fn copy(&self, rows: Range<usize>, from: usize, panel: &mut [T]) {
        for i in rows {
            let start = (self.first + i) * self.rs + self.d0;
            for (p, &value) in self.data[start..start + self.dl].iter().enumerate().skip(from) {
                panel[p * self.width + i] = value;
            }
        }
    }
}

/// Packs all of `m` in `format` into `out`: its depth blocks one after another.
pub(crate) fn pack_whole<'a, T: bytemuck::Pod + num_traits::Zero>(
    m: MatRef<'_, T>,
    format: Format,
    transposes: &[Transpose<T>],
    out: &'a mut PackBuffer<T>,
) -> &'a [T] {
    let (rows, depth) = (m.rows(), m.cols());
    // Every value is written below: whole panels copied, partial ones zero-filled first.
    let packed = out.lines.as_mut_slice::<T>(packed_len(rows, depth, format.width));
    let block = padded(rows, format.width) * format.kc;
    for (kb, range) in depth_blocks(depth, format.kc).enumerate() {
        pack_block(m, 0..rows, range, format.width, transposes, &mut packed[kb * block..]);
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

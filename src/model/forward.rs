//! A trained model applied to data: the encoder `a2 = f(W1 x + b1)` (the features, the
//! "embedding" use) and the decoder `a3 = g(W2 a2 + b2)` (the reconstruction), each a GEMM
//! and an activation pass per block of examples, the blocks in parallel.

use rayon::prelude::*;

use super::{Activation, HyperParams, ModelFile, Parameters, Reconstruction};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gemm::{gemm, Backend, MatMut, MatRef};
use crate::kernels::Kernels;
use crate::real::Real;

/// Examples per parallel task.
const BLOCK: usize = 512;

/// The layers of a model, ready to apply.
#[derive(Debug)]
pub struct Forward<'p, T: Real> {
    parameters: &'p Parameters<T>,
    /// `f` of the hidden layer, and `g` of the output layer (`None`: linear).
    hidden_activation: fn(&mut [T], T) -> f64,
    output_activation: Option<fn(&mut [T], T) -> f64>,
    backend: Backend,
}

impl<'p, T: Real> Forward<'p, T> {
    /// The model of `hyper` with `parameters`: its hidden and output units are those `hyper`
    /// records. Fails when the parameters are not of `hyper`'s shape.
    pub fn new(hyper: &HyperParams, parameters: &'p Parameters<T>) -> Result<Self> {
        let (n, h) = (parameters.b2().len(), parameters.b1().len());
        if (n, h) != (hyper.visible(), hyper.hidden()) {
            return Err(Error::shape_mismatch(
                "parameters of the model",
                format!("n = {}, h = {}", hyper.visible(), hyper.hidden()),
                format!("n = {n}, h = {h}"),
            ));
        }
        Ok(Self::with_units(parameters, hyper.activation(), hyper.reconstruction()))
    }

    /// A model whose hidden units are `activation` and whose output units are those of
    /// `reconstruction` (as recorded in its [`HyperParams`]).
    pub fn with_units(parameters: &'p Parameters<T>, activation: Activation, reconstruction: Reconstruction) -> Self {
        let kernels = Kernels::detect();
        let sigmoid = kernels.hidden(Activation::Sigmoid).activate_sum;
        Forward {
            parameters,
            hidden_activation: kernels.hidden(activation).activate_sum,
            output_activation: (!reconstruction.is_linear()).then_some(sigmoid),
            backend: Backend::preferred(),
        }
    }

    /// `a2 = f(W1 x + b1)` for every example of `data`, into `hidden`: `m×h`, one example per
    /// row.
    pub fn encode(&self, data: &Dataset<'_, T>, hidden: &mut [T]) -> Result<()> {
        let (n, h, m) = (data.features(), self.parameters.b1().len(), data.examples());
        check_len("data features", n, self.parameters.b2().len())?;
        check_len("encoded output values (m·h)", hidden.len(), m * h)?;
        self.layer(self.parameters.w1(), self.parameters.b1(), data.x(), hidden, Some(self.hidden_activation));
        Ok(())
    }

    /// `a3 = g(W2 a2 + b2)` for `m` examples' hidden activations (`m×h`, one per row), into
    /// `output`: `m×n`, one example per row.
    pub fn decode(&self, hidden: &[T], output: &mut [T]) -> Result<()> {
        let (n, h) = (self.parameters.b2().len(), self.parameters.b1().len());
        if !hidden.len().is_multiple_of(h) {
            return Err(Error::shape_mismatch("hidden activations", format!("a multiple of h = {h}"), hidden.len()));
        }
        let m = hidden.len() / h;
        check_len("decoded output values (m·n)", output.len(), m * n)?;
        self.layer(
            self.parameters.w2(),
            self.parameters.b2(),
            MatRef::col_major(hidden, h, m),
            output,
            self.output_activation,
        );
        Ok(())
    }

    /// `activation(W input + b)` with `W: rows×k`, `input: k×m`, into `out`: `rows×m`
    /// column-major (`m×rows` row-major).
    fn layer(
        &self,
        w: MatRef<'_, T>,
        b: &[T],
        input: MatRef<'_, T>,
        out: &mut [T],
        activation: Option<fn(&mut [T], T) -> f64>,
    ) {
        let rows = w.rows();
        out.par_chunks_mut(BLOCK * rows).enumerate().for_each(|(block, out)| {
            let width = out.len() / rows;
            for column in out.chunks_exact_mut(rows) {
                column.copy_from_slice(b);
            }
            let input = input.columns(block * BLOCK, width);
            gemm(self.backend, T::one(), w, input, T::one(), MatMut::col_major(&mut *out, rows, width));
            if let Some(activation) = activation {
                activation(out, T::zero());
            }
        });
    }
}

impl<T: Real> ModelFile<T> {
    /// The model ready to apply, with the units its file records.
    pub fn forward(&self) -> Forward<'_, T> {
        // Only the units come from the hyper-parameters; the shapes are the parameters' own.
        Forward::with_units(&self.parameters, self.hyper.activation(), self.hyper.reconstruction())
    }
}

fn check_len(what: &'static str, got: usize, expected: usize) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(Error::shape_mismatch(what, expected, got))
    }
}

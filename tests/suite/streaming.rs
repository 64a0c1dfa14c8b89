//! The streaming objective (SPEC §2.2), in both modes, gives the in-memory result whatever the
//! chunking, and reports a source that misbehaves.

use crate::common::*;
use sae::data::stream::{ExampleSource, SliceSource};
use sae::objective::{StreamMode, StreamingObjective};
use sae::{Dataset, Error, Objective, Result};

fn in_memory(values: &[f64], m: usize, n: usize, h: usize, theta: &[f64]) -> (f64, Vec<f64>) {
    let data = Dataset::examples_by_features(values, m, n).unwrap();
    let mut grad = vec![0.0; theta.len()];
    let cost = Objective::new(hyper(n, h), data).unwrap().evaluate(theta, &mut grad).unwrap();
    (cost, grad)
}

const MODES: [StreamMode; 2] = [StreamMode::OnePass, StreamMode::TwoPass];

fn streaming_equals_in_memory_for_every_chunking(mode: StreamMode) {
    let (m, n, h) = (1001, 37, 23);
    let values = uniform_data(m, n, 31);
    let theta = theta(n, h, 32);
    let (cost, grad) = in_memory(&values, m, n, h, &theta);
    for chunk in [1, 7, 256, 1000, 1001, 5000] {
        let source = SliceSource::new(&values, n).unwrap();
        let mut streaming = StreamingObjective::new(hyper(n, h), source, chunk, mode).unwrap();
        let mut streamed_grad = vec![0.0; theta.len()];
        // Twice: the second evaluation must start from clean sums.
        for _ in 0..2 {
            let streamed_cost = streaming.evaluate(&theta, &mut streamed_grad).unwrap();
            let cost_error = (streamed_cost - cost).abs() / cost;
            let grad_error = relative_error(&streamed_grad, &grad);
            assert!(cost_error <= 1e-10, "{mode:?}, chunk {chunk}: cost error {cost_error:e}");
            assert!(grad_error <= 1e-10, "{mode:?}, chunk {chunk}: gradient error {grad_error:e}");
        }
    }
}

#[test]
fn one_pass_streaming_equals_in_memory_for_every_chunking() {
    streaming_equals_in_memory_for_every_chunking(StreamMode::OnePass);
}

#[test]
fn two_pass_streaming_equals_in_memory_for_every_chunking() {
    streaming_equals_in_memory_for_every_chunking(StreamMode::TwoPass);
}

#[test]
fn one_pass_streaming_in_f32_matches_the_f64_reference_to_1e_4() {
    let (m, n, h) = (700, 20, 9);
    let values = uniform_data(m, n, 41);
    let theta = theta(n, h, 42);
    let (cost, grad) = in_memory(&values, m, n, h, &theta);
    let values32: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    let theta32: Vec<f32> = theta.iter().map(|&v| v as f32).collect();
    let source = SliceSource::new(&values32, n).unwrap();
    let mut streaming = StreamingObjective::new(hyper(n, h), source, 64, StreamMode::OnePass).unwrap();
    let mut grad32 = vec![0.0f32; theta.len()];
    let cost32 = streaming.evaluate(&theta32, &mut grad32).unwrap();
    let grad32: Vec<f64> = grad32.iter().map(|&g| g as f64).collect();
    assert!((cost32 - cost).abs() / cost <= 1e-4);
    assert!(relative_error(&grad32, &grad) <= 1e-4, "{:e}", relative_error(&grad32, &grad));
}

#[test]
fn the_one_pass_gradient_passes_the_central_difference_check() {
    let (m, n, h) = (60, 9, 5);
    let values = uniform_data(m, n, 43);
    let theta = theta(n, h, 44);
    let mut streaming =
        StreamingObjective::new(hyper(n, h), SliceSource::new(&values, n).unwrap(), 17, StreamMode::OnePass).unwrap();
    let mut analytic = vec![0.0; theta.len()];
    streaming.evaluate(&theta, &mut analytic).unwrap();
    let mut scratch = vec![0.0; theta.len()];
    let numeric =
        sae::objective::gradcheck::numerical_gradient(|t| streaming.evaluate(t, &mut scratch).unwrap(), &theta, 1e-4);
    let difference = sae::objective::gradcheck::relative_difference(&numeric, &analytic);
    assert!(difference < 1e-9, "{difference:e}");
}

/// Yields its examples, but one fewer after the first rewind.
struct Shrinking<'a> {
    inner: SliceSource<'a, f64>,
    values: &'a [f64],
    rewinds: usize,
}

impl ExampleSource<f64> for Shrinking<'_> {
    fn features(&self) -> usize {
        self.inner.features()
    }

    fn rewind(&mut self) -> Result<()> {
        self.rewinds += 1;
        let n = self.features();
        let keep = if self.rewinds > 1 { self.values.len() - n } else { self.values.len() };
        self.inner = SliceSource::new(&self.values[..keep], n)?;
        Ok(())
    }

    fn read_chunk(&mut self, buffer: &mut [f64]) -> Result<usize> {
        self.inner.read_chunk(buffer)
    }
}

#[test]
fn a_source_that_changes_between_passes_is_an_error() {
    let (m, n, h) = (50, 6, 4);
    let values = uniform_data(m, n, 1);
    let source = Shrinking { inner: SliceSource::new(&values, n).unwrap(), values: &values, rewinds: 0 };
    let mut streaming = StreamingObjective::new(hyper(n, h), source, 16, StreamMode::TwoPass).unwrap();
    let theta = theta(n, h, 1);
    let err = streaming.evaluate(&theta, &mut vec![0.0; theta.len()]).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }) && err.to_string().contains("changed"), "{err}");
}

#[test]
fn non_finite_values_are_named_by_their_row_in_the_whole_data_set() {
    let (m, n, h) = (50, 6, 4);
    let mut values = uniform_data(m, n, 2);
    values[37 * n + 4] = f64::NAN;
    let theta = theta(n, h, 2);
    for mode in MODES {
        let source = SliceSource::new(&values, n).unwrap();
        let mut streaming = StreamingObjective::new(hyper(n, h), source, 16, mode).unwrap();
        let err = streaming.evaluate(&theta, &mut vec![0.0; theta.len()]).unwrap_err();
        assert!(matches!(err, Error::NonFiniteData { row: 37, column: 4, .. }), "{mode:?}: {err}");
    }
}

#[test]
fn an_empty_source_is_an_error() {
    let theta = theta(6, 4, 3);
    for mode in MODES {
        let source = SliceSource::<f64>::new(&[], 6).unwrap();
        let mut streaming = StreamingObjective::new(hyper(6, 4), source, 16, mode).unwrap();
        let err = streaming.evaluate(&theta, &mut vec![0.0; theta.len()]).unwrap_err();
        assert!(matches!(err, Error::EmptyData { .. }), "{mode:?}: {err}");
    }
}

#[test]
fn a_source_of_the_wrong_width_or_a_zero_chunk_is_rejected() {
    let values = uniform_data(10, 6, 4);
    let source = SliceSource::new(&values, 6).unwrap();
    let err = StreamingObjective::new(hyper(5, 4), source, 16, StreamMode::OnePass).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { what: "source features", .. }), "{err}");
    let source = SliceSource::new(&values, 6).unwrap();
    let err = StreamingObjective::new(hyper(6, 4), source, 0, StreamMode::OnePass).unwrap_err();
    assert!(matches!(err, Error::InvalidHyperParameter { name: "chunk", .. }), "{err}");
}

/// Claims to have read more examples than fit in the buffer.
struct Overclaiming;

impl ExampleSource<f64> for Overclaiming {
    fn features(&self) -> usize {
        6
    }

    fn rewind(&mut self) -> Result<()> {
        Ok(())
    }

    fn read_chunk(&mut self, buffer: &mut [f64]) -> Result<usize> {
        buffer.fill(0.5);
        Ok(buffer.len() / 6 + 1)
    }
}

#[test]
fn a_source_claiming_more_examples_than_its_buffer_holds_is_an_error() {
    let theta = theta(6, 4, 5);
    let mut streaming = StreamingObjective::new(hyper(6, 4), Overclaiming, 16, StreamMode::OnePass).unwrap();
    let err = streaming.evaluate(&theta, &mut vec![0.0; theta.len()]).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }) && err.to_string().contains("read_chunk"), "{err}");
}

/// Fails its `failure`-th read (counting from 1) with an I/O error; reads normally otherwise.
struct FailingOnce<'a> {
    inner: SliceSource<'a, f64>,
    reads: usize,
    failure: usize,
}

impl ExampleSource<f64> for FailingOnce<'_> {
    fn features(&self) -> usize {
        self.inner.features()
    }

    fn rewind(&mut self) -> Result<()> {
        self.inner.rewind()
    }

    fn read_chunk(&mut self, buffer: &mut [f64]) -> Result<usize> {
        self.reads += 1;
        if self.reads == self.failure {
            let source = std::io::Error::other("disk went away");
            return Err(Error::Io { path: "failing".into(), source });
        }
        self.inner.read_chunk(buffer)
    }
}

#[test]
fn a_read_error_mid_pass_is_returned_and_the_next_evaluation_is_exact() {
    let (m, n, h) = (200, 7, 5);
    let values = uniform_data(m, n, 6);
    let theta = theta(n, h, 6);
    let (cost, grad) = in_memory(&values, m, n, h, &theta);
    for mode in MODES {
        let source = FailingOnce { inner: SliceSource::new(&values, n).unwrap(), reads: 0, failure: 3 };
        let mut streaming = StreamingObjective::new(hyper(n, h), source, 16, mode).unwrap();
        let mut streamed_grad = vec![0.0; theta.len()];
        let err = streaming.evaluate(&theta, &mut streamed_grad).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{mode:?}: {err}");
        let streamed_cost = streaming.evaluate(&theta, &mut streamed_grad).unwrap();
        assert!((streamed_cost - cost).abs() <= 1e-10 * cost, "{mode:?}");
        assert!(relative_error(&streamed_grad, &grad) <= 1e-10, "{mode:?}");
    }
}

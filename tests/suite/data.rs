//! Data sets are read in place in either layout, and `.npy` files round-trip and are written
//! atomically.

use ndarray::{Array2, ShapeBuilder};
use sae::data::npy;
use sae::{Dataset, Error, Layout};

fn array(m: usize, n: usize) -> Array2<f64> {
    Array2::from_shape_fn((m, n), |(i, k)| 0.1 + (i * n + k) as f64 / (m * n) as f64)
}

#[test]
fn a_c_order_array_is_read_in_place_as_examples_by_features() {
    let rows = array(5, 3);
    let data = Dataset::from_rows(rows.view()).unwrap();
    assert_eq!(data.layout(), Layout::ExamplesByFeatures);
    assert_eq!(data.values().as_ptr(), rows.as_ptr());
    assert_eq!(data.x().get(2, 4), rows[(4, 2)]);
}

#[test]
fn a_fortran_order_array_is_read_in_place_as_features_by_examples() {
    let mut rows = Array2::<f64>::zeros((5, 3).f());
    rows.assign(&array(5, 3));
    let data = Dataset::from_rows(rows.view()).unwrap();
    assert_eq!(data.layout(), Layout::FeaturesByExamples);
    assert_eq!(data.values().as_ptr(), rows.as_ptr());
    assert_eq!((data.examples(), data.features()), (5, 3));
    assert_eq!(data.x().get(2, 4), rows[(4, 2)]);
}

#[test]
fn a_strided_view_is_rejected_rather_than_copied() {
    let rows = array(6, 4);
    let every_other = rows.slice(ndarray::s![..;2, ..]);
    assert!(matches!(Dataset::from_rows(every_other), Err(Error::ShapeMismatch { .. })));
}

#[test]
fn npy_matrices_round_trip_and_convert_between_precisions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    let original = array(7, 4);
    npy::write_matrix(&path, &original).unwrap();
    assert_eq!(npy::read_matrix::<f64>(&path).unwrap(), original);
    let single: Array2<f32> = npy::read_matrix(&path).unwrap();
    assert_eq!(single, original.mapv(|v| v as f32));
}

#[test]
fn a_column_vector_is_read_as_a_vector() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("theta.npy");
    npy::write_matrix(&path, &array(6, 1)).unwrap();
    assert_eq!(npy::read_vector::<f64>(&path).unwrap(), array(6, 1).into_raw_vec_and_offset().0);
}

#[test]
fn a_matrix_is_not_accepted_as_a_vector() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("theta.npy");
    npy::write_matrix(&path, &array(3, 2)).unwrap();
    let err = npy::read_vector::<f64>(&path).unwrap_err();
    assert!(err.to_string().contains("theta.npy") && err.to_string().contains("[3, 2]"), "{err}");
}

#[test]
fn a_failed_write_leaves_the_existing_file_intact_and_no_temporary_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grad.npy");
    npy::write_vector(&path, &[1.0f64, 2.0, 3.0]).unwrap();
    let err = sae::files::write_with(&path, |_| Err("disk full".into())).unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");
    assert_eq!(npy::read_vector::<f64>(&path).unwrap(), vec![1.0, 2.0, 3.0]);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

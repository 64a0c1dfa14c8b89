//! A trained model applied to data (encode, decode) matches the plain formulas, and the
//! picture of its features has one tile per hidden unit whose pixels follow the weights.

use crate::common::*;
use sae::model::picture::{feature_tiles, features_picture, PixelOrder, TileGrid};
use sae::model::Forward;
use sae::{Dataset, Parameters};

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

#[test]
fn encode_and_decode_compute_the_two_layers_for_every_example() {
    let (m, n, h) = (1100, 9, 4);
    let values = uniform_data(m, n, 1);
    let parameters = Parameters::from_theta(n, h, theta(n, h, 2)).unwrap();
    let forward = Forward::new(&hyper(n, h), &parameters).unwrap();
    let mut hidden = vec![0.0; m * h];
    forward.encode(&Dataset::examples_by_features(&values, m, n).unwrap(), &mut hidden).unwrap();
    let mut output = vec![0.0; m * n];
    forward.decode(&hidden, &mut output).unwrap();
    let (w1, w2, b1, b2) = (parameters.w1(), parameters.w2(), parameters.b1(), parameters.b2());
    for e in [0, 1, 511, 512, 1099] {
        let x = &values[e * n..(e + 1) * n];
        let a2: Vec<f64> = (0..h).map(|i| sigmoid(b1[i] + (0..n).map(|j| w1.get(i, j) * x[j]).sum::<f64>())).collect();
        for i in 0..h {
            assert!((hidden[e * h + i] - a2[i]).abs() < 1e-14, "a2[{e}, {i}]");
        }
        for k in 0..n {
            let a3 = sigmoid(b2[k] + (0..h).map(|i| w2.get(k, i) * a2[i]).sum::<f64>());
            assert!((output[e * n + k] - a3).abs() < 1e-14, "a3[{e}, {k}]");
        }
    }
}

/// `f(W1 x + b1)` of example `e`, computed plainly.
fn hidden_of(parameters: &Parameters<f64>, x: &[f64], f: impl Fn(f64) -> f64) -> Vec<f64> {
    let (w1, b1) = (parameters.w1(), parameters.b1());
    (0..b1.len()).map(|i| f(b1[i] + (0..x.len()).map(|j| w1.get(i, j) * x[j]).sum::<f64>())).collect()
}

#[test]
fn a_tanh_model_encodes_with_tanh_through_every_public_path() {
    use sae::model::{Activation, ModelFile, Reconstruction};
    use sae::objective::{StreamMode, StreamingObjective};
    use sae::optim::{LbfgsOptions, StepRule};
    use sae::train::{MinibatchOptions, MinibatchTrainer, Trainer};
    let (m, n, h) = (40, 6, 3);
    let values = uniform_data(m, n, 1);
    let data = Dataset::examples_by_features(&values, m, n).unwrap();
    let tanh = sae::HyperParams::builder(n, h)
        .activation(Activation::Tanh)
        .reconstruction(Reconstruction::LinearSquaredError)
        .build()
        .unwrap();
    let encodes_with_tanh = |model: &ModelFile<f64>, path: &str| {
        assert_eq!(model.hyper, tanh, "{path}: the model records the units it was trained with");
        let (mut hidden, mut output) = (vec![0.0; m * h], vec![0.0; m * n]);
        model.forward().encode(&data, &mut hidden).unwrap();
        model.forward().decode(&hidden, &mut output).unwrap();
        let via_hyper = Forward::new(&model.hyper, &model.parameters).unwrap();
        let mut again = vec![0.0; m * h];
        via_hyper.encode(&data, &mut again).unwrap();
        assert_eq!(again, hidden, "{path}: Forward::new reads the units of the hyper-parameters");
        let (p, x) = (&model.parameters, &values[..n]);
        let expected = hidden_of(p, x, f64::tanh);
        for (got, want) in hidden[..h].iter().zip(&expected) {
            assert!((got - want).abs() < 1e-14, "{path}: {got} is not tanh's {want} (sigmoid: {})", sigmoid(*want));
        }
        // The linear decoder: no sigmoid on the output.
        let a3 = p.b2()[0] + (0..h).map(|i| p.w2().get(0, i) * hidden[i]).sum::<f64>();
        assert!((output[0] - a3).abs() < 1e-14, "{path}: output {} is not the linear {a3}", output[0]);
    };

    let init = Parameters::<f64>::init(n, h, 2);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tanh.safetensors");
    ModelFile::new(tanh, init.clone()).save(&file).unwrap();
    encodes_with_tanh(&ModelFile::load(&file).unwrap(), "a loaded model file");

    let options = LbfgsOptions { max_iterations: 3, ..LbfgsOptions::default() };
    let mut objective = sae::Objective::new(tanh, data).unwrap();
    encodes_with_tanh(&Trainer::new(options).fit(&mut objective, &init, |_| {}).unwrap().model, "L-BFGS");
    let source = sae::data::stream::SliceSource::new(&values, n).unwrap();
    let mut streaming = StreamingObjective::new(tanh, source, 16, StreamMode::OnePass).unwrap();
    encodes_with_tanh(&Trainer::new(options).fit(&mut streaming, &init, |_| {}).unwrap().model, "L-BFGS, streamed");
    let minibatch = MinibatchOptions { rule: StepRule::adam(1e-3), batch_size: 10, epochs: 1, ..Default::default() };
    let trained = MinibatchTrainer::new(tanh, minibatch).unwrap().fit(&data, &init, |_| {}).unwrap();
    encodes_with_tanh(&trained.model, "Adam");
}

#[test]
fn a_forward_pass_of_parameters_of_another_shape_than_its_model_is_refused() {
    let parameters = Parameters::<f64>::init(9, 4, 1);
    assert!(Forward::new(&hyper(9, 5), &parameters).is_err());
    assert!(Forward::new(&hyper(8, 4), &parameters).is_err());
}

#[test]
fn encode_refuses_data_of_another_width() {
    let parameters = Parameters::<f64>::init(9, 4, 1);
    let values = uniform_data(3, 8, 1);
    let mut hidden = vec![0.0; 12];
    assert!(Forward::new(&hyper(9, 4), &parameters)
        .unwrap()
        .encode(&Dataset::examples_by_features(&values, 3, 8).unwrap(), &mut hidden)
        .is_err());
}

#[test]
fn the_features_png_has_a_tile_per_unit_whose_pixels_follow_the_weights() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("features.png");
    let (n, h, side) = (64, 10, 8);
    let parameters = Parameters::<f64>::init(n, h, 3);
    features_picture(&parameters, PixelOrder::RowMajor).unwrap().save_png(&path).unwrap();

    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    // 10 tiles: a grid of 4 columns and 3 rows of (8 + 1)-pixel cells plus a border, × 6.
    let scale = 6;
    assert_eq!((info.width as usize, info.height as usize), ((4 * 9 + 1) * scale, (3 * 9 + 1) * scale));

    let w1 = parameters.w1();
    for unit in 0..h {
        let (top, left) = ((unit / 4) * 9 + 1, (unit % 4) * 9 + 1);
        let norm = (0..n).map(|j| w1.get(unit, j).powi(2)).sum::<f64>().sqrt();
        let peak = (0..n).map(|j| (w1.get(unit, j) / norm).abs()).fold(0.0, f64::max);
        for j in 0..n {
            let expected = 127.5 * (w1.get(unit, j) / norm / peak + 1.0);
            let (r, c) = (j / side, j % side);
            let byte = pixels[((top + r) * scale + scale / 2) * info.width as usize + (left + c) * scale + scale / 2];
            assert!((byte as f64 - expected).abs() <= 0.5, "unit {unit}, pixel {j}: {byte} vs {expected}");
        }
    }
    // The borders between tiles are black.
    assert_eq!(pixels[0], 0);
}

#[test]
fn inputs_of_three_squares_are_drawn_in_colour_and_others_are_refused() {
    let grid = TileGrid::for_inputs(3 * 25, PixelOrder::RowMajor).unwrap();
    assert_eq!((grid.side, grid.channels), (5, 3));
    let picture = features_picture(&Parameters::<f64>::init(75, 4, 1), PixelOrder::RowMajor).unwrap();
    assert_eq!(picture.channels, 3);
    assert!(TileGrid::for_inputs(50, PixelOrder::RowMajor).is_err());
}

#[test]
fn column_major_order_transposes_each_tile() {
    let parameters = Parameters::<f64>::init(16, 1, 5);
    let tiles = feature_tiles(&parameters);
    let row = TileGrid { side: 4, channels: 1, scale: 1, order: PixelOrder::RowMajor }.draw(&tiles);
    let column = TileGrid { side: 4, channels: 1, scale: 1, order: PixelOrder::ColumnMajor }.draw(&tiles);
    let width = row.width;
    for r in 0..4 {
        for c in 0..4 {
            assert_eq!(row.pixels[(1 + r) * width + 1 + c], column.pixels[(1 + c) * width + 1 + r]);
        }
    }
}

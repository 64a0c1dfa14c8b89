//! Checkpoints: a model file holding, besides the model at the current point, the optimiser's
//! whole state (float64 tensors `lbfgs.*` and metadata `lbfgs.*`), enough to continue the run
//! exactly as if it had not stopped.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::model::{HyperParams, ModelFile, Parameters};
use crate::optim::{LbfgsState, Stop};
use crate::real::Real;

const STOPS: [(Stop, &str); 7] = [
    (Stop::MaxIterations, "max-iterations"),
    (Stop::MaxEvaluations, "max-evaluations"),
    (Stop::GradientTolerance, "gradient-tolerance"),
    (Stop::FunctionChange, "function-change"),
    (Stop::StepSize, "step-size"),
    (Stop::DirectionalDerivative, "directional-derivative"),
    (Stop::LineSearchFailed, "line-search-failed"),
];

pub(crate) fn stop_name(stop: Stop) -> &'static str {
    STOPS.iter().find(|(s, _)| *s == stop).map(|(_, name)| *name).expect("every stop is named")
}

/// The model at the state's point, with the state itself.
pub fn lbfgs_checkpoint<T: Real>(hyper: HyperParams, state: &LbfgsState) -> Result<ModelFile<T>> {
    let (n, h) = (hyper.visible(), hyper.hidden());
    let theta = state.x.iter().map(|&v| T::cast(v)).collect();
    let mut model = ModelFile::new(hyper, Parameters::from_theta(n, h, theta)?);
    let (len, pairs) = (state.x.len(), state.pairs());
    let metadata = [
        ("optimizer", "lbfgs".to_string()),
        ("lbfgs.f", state.f.to_string()),
        ("lbfgs.gamma", state.gamma.to_string()),
        ("lbfgs.oldest", state.oldest.to_string()),
        ("lbfgs.iteration", state.iteration.to_string()),
        ("lbfgs.evaluations", state.evaluations.to_string()),
        ("lbfgs.stopped", state.stopped.map_or("no", stop_name).to_string()),
    ];
    model.metadata = metadata.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let tensors = [
        ("lbfgs.x", vec![len], state.x.clone()),
        ("lbfgs.g", vec![len], state.g.clone()),
        ("lbfgs.s", vec![pairs, len], state.s.clone()),
        ("lbfgs.y", vec![pairs, len], state.y.clone()),
        ("lbfgs.ys", vec![pairs], state.ys.clone()),
    ];
    model.extra = tensors.into_iter().map(|(k, shape, v)| (k.to_string(), (shape, v))).collect::<BTreeMap<_, _>>();
    Ok(model)
}

/// The L-BFGS state stored in a checkpoint read from `path`.
pub fn lbfgs_state<T: Real>(model: &ModelFile<T>, path: &Path) -> Result<LbfgsState> {
    let bad = |reason: String| Error::BadFile { path: path.to_path_buf(), reason };
    if !model.extra.contains_key("lbfgs.x") {
        return Err(bad("a model file without L-BFGS state, not a checkpoint".into()));
    }
    let text = |key: &str| model.metadata.get(key).ok_or_else(|| bad(format!("checkpoint metadata lacks {key:?}")));
    let number = |key: &str| -> Result<f64> {
        let value = text(key)?;
        value.parse().map_err(|_| bad(format!("checkpoint metadata {key} = {value:?} is not a number")))
    };
    let count = |key: &str| -> Result<usize> {
        let value = text(key)?;
        value.parse().map_err(|_| bad(format!("checkpoint metadata {key} = {value:?} is not a count")))
    };
    let tensor = |key: &str| {
        model
            .extra
            .get(key)
            .map(|(_, values)| values.clone())
            .ok_or_else(|| bad(format!("checkpoint lacks tensor {key:?}")))
    };
    let stopped = match text("lbfgs.stopped")?.as_str() {
        "no" => None,
        name => Some(
            STOPS
                .iter()
                .find(|(_, n)| *n == name)
                .map(|(s, _)| *s)
                .ok_or_else(|| bad(format!("unknown stop {name:?}")))?,
        ),
    };
    let state = LbfgsState {
        x: tensor("lbfgs.x")?,
        f: number("lbfgs.f")?,
        g: tensor("lbfgs.g")?,
        s: tensor("lbfgs.s")?,
        y: tensor("lbfgs.y")?,
        ys: tensor("lbfgs.ys")?,
        oldest: count("lbfgs.oldest")?,
        gamma: number("lbfgs.gamma")?,
        iteration: count("lbfgs.iteration")?,
        evaluations: count("lbfgs.evaluations")?,
        stopped,
    };
    if state.x.len() != model.parameters.theta().len() {
        return Err(bad(format!(
            "optimiser state of {} parameters for a model of {}",
            state.x.len(),
            model.parameters.theta().len()
        )));
    }
    Ok(state)
}

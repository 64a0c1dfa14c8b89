//! `sae plot`: a trained model's run as a PNG — the training cost and the held-out costs
//! against iterations (or epochs), and the distribution of `rho_hat` across the hidden units
//! against the target `ρ` — from what `sae train` records in the model file (`curve.training`,
//! `curve.validation`, `rho_hat`; see docs/format.md).

use std::ops::Range;
use std::path::PathBuf;

use clap::Args;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use super::CliResult;
use sae::files::FilePlan;
use sae::model::picture::Picture;
use sae::model::ModelFile;

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// The model file, as `sae train` writes it.
    model: PathBuf,
    /// Where to write the picture.
    #[arg(short, long, default_value = "curves.png")]
    output: PathBuf,
    /// The picture's width and height in pixels.
    #[arg(long, num_args = 2, value_names = ["WIDTH", "HEIGHT"], default_values_t = [1200, 450])]
    size: Vec<u32>,
}

/// The font of every label: DejaVu Sans Mono, embedded so that the picture needs no font
/// installed (its licence is in assets/fonts/LICENSE).
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");

/// What the picture draws, read from the model's metadata.
struct Run {
    /// `(at, cost)`
    training: Vec<(usize, f64)>,
    /// `(at, reconstruction, cost)`
    validation: Vec<(usize, f64, f64)>,
    rho_hat: Vec<f64>,
    /// `ρ`, when the penalty pulls `rho_hat` towards it (KL).
    target: Option<f64>,
    /// "iteration" or "epoch".
    unit: &'static str,
}

pub fn run(args: PlotArgs) -> CliResult<()> {
    let _locks = FilePlan::new().input("model", &args.model).output("--output", &args.output).check()?;
    let [width, height] = args.size[..] else { unreachable!("clap takes two values") };
    if !(200..=8000).contains(&width) || !(150..=8000).contains(&height) {
        return Err(format!("--size {width} {height}: from 200×150 to 8000×8000 pixels").into());
    }
    let run = read_run(&args)?;
    let picture = draw(&run, width, height).map_err(|e| format!("drawing {}: {e}", args.output.display()))?;
    picture.save_png(&args.output)?;
    println!("{} written ({width}×{height})", args.output.display());
    Ok(())
}

fn read_run(args: &PlotArgs) -> CliResult<Run> {
    let path = &args.model;
    let model = ModelFile::<f64>::load(path)?;
    let metadata = &model.metadata;
    let Some(training) = recorded::<Vec<(usize, f64)>>(&model, "curve.training", path)? else {
        return Err(format!(
            "{}: no training curve (metadata curve.training): a model written by `sae train` records it",
            path.display()
        )
        .into());
    };
    // `null`: an infinite held-out cost (a unit saturated there).
    let validation = recorded::<Vec<(usize, Option<f64>, Option<f64>)>>(&model, "curve.validation", path)?
        .unwrap_or_default()
        .into_iter()
        .map(|(at, r, c)| (at, r.unwrap_or(f64::INFINITY), c.unwrap_or(f64::INFINITY)))
        .collect::<Vec<_>>();
    let rho_hat = recorded::<Vec<f64>>(&model, "rho_hat", path)?.unwrap_or_default();
    // Only the held-out costs may be infinite.
    let finite = training.iter().map(|p| p.1).chain(rho_hat.iter().copied());
    if let Some(value) = finite.into_iter().find(|v| !v.is_finite()) {
        return Err(format!("{}: the recorded curves hold {value}", path.display()).into());
    }
    let hyper = model.hyper;
    let target = hyper.sparsity_target();
    let unit = if metadata.get("optimizer").is_some_and(|o| o == "lbfgs") { "iteration" } else { "epoch" };
    Ok(Run { training, validation, rho_hat, target, unit })
}

/// The metadata `key` of `model` (read from `path`) as JSON of type `V`, if present.
fn recorded<V: serde::de::DeserializeOwned>(
    model: &ModelFile<f64>,
    key: &str,
    path: &std::path::Path,
) -> CliResult<Option<V>> {
    model
        .metadata
        .get(key)
        .map(|text| serde_json::from_str(text).map_err(|e| format!("{}: metadata {key}: {e}", path.display()).into()))
        .transpose()
}

/// The picture: the curves on the left, the histogram of `rho_hat` on the right.
fn draw(run: &Run, width: u32, height: u32) -> Result<Picture, Box<dyn std::error::Error + Send + Sync>> {
    // Registering twice (a second plot in one process) is harmless.
    register_font("sans-serif", FontStyle::Normal, FONT).map_err(|_| "the embedded font does not load")?;
    let mut pixels = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (left, right) = root.split_horizontally(width * 3 / 5);
        draw_curves(run, &left).map_err(|e| e.to_string())?;
        draw_rho_hat(run, &right).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(Picture { width: width as usize, height: height as usize, channels: 3, pixels })
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
/// A curve: its label, colour and points.
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);
type Drawn = Result<(), DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>>;

/// The training cost, and the held-out cost and reconstruction term, on a log scale.
fn draw_curves(run: &Run, area: &Area<'_>) -> Drawn {
    let xs = run.training.iter().map(|p| p.0).chain(run.validation.iter().map(|p| p.0));
    let x_end = xs.max().unwrap_or(1).max(1) as f64;
    let values = run.training.iter().map(|p| p.1).chain(run.validation.iter().flat_map(|p| [p.1, p.2]));
    let y = log_range(values.filter(|v| v.is_finite()));
    let mut chart = ChartBuilder::on(area)
        .caption("cost", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_end, y.log_scale())?;
    chart
        .configure_mesh()
        .x_desc(run.unit)
        .y_desc("J")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.3e}"))
        .label_style(("sans-serif", 13))
        .draw()?;
    let series: [Series<'_>; 3] = [
        ("training J", BLUE, run.training.iter().map(|&(at, c)| (at as f64, c)).collect()),
        ("held-out J", RGBColor(230, 120, 0), run.validation.iter().map(|&(at, _, c)| (at as f64, c)).collect()),
        (
            "held-out reconstruction",
            RGBColor(0, 150, 60),
            run.validation.iter().map(|&(at, r, _)| (at as f64, r)).collect(),
        ),
    ];
    for (label, color, points) in series {
        // A log scale has no place for 0 (or an infinite held-out cost, recorded as such).
        let points: Vec<(f64, f64)> = points.into_iter().filter(|&(_, y)| y > 0.0 && y.is_finite()).collect();
        if points.is_empty() {
            continue;
        }
        // A point alone has no line: a marker shows it.
        let markers = points.iter().map(|&p| Circle::new(p, 3, color.filled())).collect::<Vec<_>>();
        chart.draw_series(if points.len() == 1 { markers } else { Vec::new() })?;
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    if let Some(&(at, _, cost)) = run.validation.iter().filter(|p| p.2.is_finite()).min_by(|a, b| a.2.total_cmp(&b.2)) {
        chart.draw_series([Circle::new((at as f64, cost), 5, RGBColor(230, 120, 0).filled())])?;
    }
    draw_legend(&mut chart)
}

/// The histogram of `rho_hat` over the hidden units, with the target `ρ` marked.
fn draw_rho_hat(run: &Run, area: &Area<'_>) -> Drawn {
    let bins = 30;
    let top = run.rho_hat.iter().copied().chain(run.target).fold(0.0f64, f64::max).max(1e-12) * 1.05;
    let width = top / bins as f64;
    let mut counts = vec![0usize; bins];
    for &r in &run.rho_hat {
        counts[((r / width) as usize).min(bins - 1)] += 1;
    }
    let highest = counts.iter().copied().max().unwrap_or(0).max(1);
    let caption = match run.rho_hat.len() {
        0 => "no rho_hat recorded".to_string(),
        units => format!("rho_hat of the {units} hidden units"),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..top, 0usize..highest + highest / 10 + 1)?;
    chart.configure_mesh().x_desc("mean activation").y_desc("units").label_style(("sans-serif", 13)).draw()?;
    chart.draw_series(
        counts.iter().enumerate().filter(|(_, &c)| c > 0).map(|(k, &c)| {
            Rectangle::new([(k as f64 * width, 0), ((k + 1) as f64 * width, c)], BLUE.mix(0.6).filled())
        }),
    )?;
    if let Some(rho) = run.target {
        chart
            .draw_series(LineSeries::new([(rho, 0), (rho, highest + highest / 10 + 1)], RED.stroke_width(2)))?
            .label(format!("target ρ = {rho}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
        draw_legend(&mut chart)?;
    }
    Ok(())
}

/// The histogram of the latents' firing frequencies (the fraction of examples each fired on)
/// on a log scale, as a picture of `width × height`; the latents that never fired are counted
/// in the caption.
pub(crate) fn frequency_histogram(
    frequencies: &[f64],
    width: u32,
    height: u32,
) -> Result<Picture, Box<dyn std::error::Error + Send + Sync>> {
    register_font("sans-serif", FontStyle::Normal, FONT).map_err(|_| "the embedded font does not load")?;
    let fired: Vec<f64> = frequencies.iter().map(|&f| f.log10()).filter(|f| f.is_finite()).collect();
    let dead = frequencies.len() - fired.len();
    let bins = 40;
    let (low, high) = fired.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &f| (l.min(f), h.max(f)));
    let (low, high) =
        if fired.is_empty() { (-1.0, 0.0) } else { (low.floor().min(high - 1.0), high.ceil().max(low + 1.0)) };
    let step = (high - low) / bins as f64;
    let mut counts = vec![0usize; bins];
    for &f in &fired {
        counts[(((f - low) / step) as usize).min(bins - 1)] += 1;
    }
    let highest = counts.iter().copied().max().unwrap_or(0).max(1);
    let mut pixels = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let caption = format!("firing frequency of {} latents ({dead} never fired)", frequencies.len());
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(low..high, 0usize..highest + highest / 10 + 1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("log10 of the fraction of examples")
            .y_desc("latents")
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(counts.iter().enumerate().filter(|(_, &c)| c > 0).map(|(b, &c)| {
                let left = low + b as f64 * step;
                Rectangle::new([(left, 0), (left + step, c)], BLUE.mix(0.6).filled())
            }))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(Picture { width: width as usize, height: height as usize, channels: 3, pixels })
}

/// The labels of a chart's series, in its upper right corner.
fn draw_legend<'a, X: Ranged, Y: Ranged>(chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>) -> Drawn {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
}

/// A range holding every (positive) value for a log scale, a little wider.
fn log_range(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (low, high) = values.filter(|v| *v > 0.0).fold((f64::INFINITY, 0.0f64), |(l, h), v| (l.min(v), h.max(v)));
    if low > high {
        return 0.1..1.0;
    }
    let (low, high) = if low == high { (low / 2.0, high * 2.0) } else { (low, high) };
    low / 1.3..high * 1.3
}

//! Drawing with plotters into an RGB buffer, then PNG encoding.

use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use super::scale::{Unit, byte_unit, off_the_chart, time_unit, x_range, y_range};
use super::{ChartError, ChartInput, HEIGHT, WIDTH};
use crate::dump::Reason;
use crate::units::human_bytes;

/// A subset of DejaVu Sans (assets/fonts/LICENSE-DejaVu).
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-subset.ttf");
/// The family name plotters looks fonts up by.
const FAMILY: &str = "sans-serif";

const CURVE: RGBColor = RGBColor(31, 119, 180);
const P50: RGBColor = RGBColor(127, 127, 127);
const SPIKE: RGBColor = RGBColor(255, 127, 14);
const LEAK: RGBColor = RGBColor(148, 103, 189);
const LIMIT: RGBColor = RGBColor(214, 39, 40);
const MARKER: RGBColor = RGBColor(0, 0, 0);

/// Registers the embedded font with plotters, once per process.
fn font_loaded() -> bool {
    static LOADED: OnceLock<bool> = OnceLock::new();
    *LOADED.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).is_ok())
}

/// A horizontal line across the chart: its value, label and colour.
struct Level {
    bytes: u64,
    label: String,
    colour: RGBColor,
    dashed: bool,
}

/// The horizontal lines the input has, and the labels of those too high to
/// draw (named in the legend instead): a limit more than twice the curve
/// (and the fired rule's own limit) would flatten the curve into the bottom
/// of the chart. The fired rule's limit is always drawn.
fn levels(input: &ChartInput) -> (Vec<Level>, Vec<String>) {
    let fired = match input.reason {
        Reason::Spike => input.spike_limit,
        Reason::SlowLeak => input.leak_limit,
        Reason::NearOom => input.memory_limit,
        Reason::Baseline | Reason::Manual => None,
    };
    let core = input
        .samples
        .iter()
        .map(|p| p.1)
        .chain(input.p50)
        .chain(fired)
        .fold(input.detection, u64::max);
    let mut levels = Vec::new();
    let mut above = Vec::new();
    let mut add = |bytes: Option<u64>, label: &dyn Fn(u64) -> String, colour, dashed| {
        let Some(bytes) = bytes else { return };
        if Some(bytes) != fired && off_the_chart(bytes, core) {
            above.push(format!("{} (far above)", label(bytes)));
        } else {
            levels.push(Level {
                bytes,
                label: label(bytes),
                colour,
                dashed,
            });
        }
    };
    add(
        input.p50,
        &|b| format!("window P50 {}", human_bytes(b)),
        P50,
        true,
    );
    add(
        input.spike_limit,
        &|b| {
            format!(
                "spike limit: P95 × {} = {}",
                input.spike_multiplier,
                human_bytes(b)
            )
        },
        SPIKE,
        true,
    );
    add(
        input.leak_limit,
        &|b| {
            format!(
                "leak limit: baseline P50 + {} = {}",
                human_bytes(input.leak_threshold),
                human_bytes(b)
            )
        },
        LEAK,
        true,
    );
    add(
        input.memory_limit,
        &|b| format!("memory limit {}", human_bytes(b)),
        LIMIT,
        false,
    );
    (levels, above)
}

/// Renders the chart as a [`WIDTH`] × [`HEIGHT`] PNG titled `title`.
///
/// Any input draws: one sample, all samples equal, no limits, values up to
/// `u64::MAX`. Errors mean a broken build (font) or a plotters failure.
pub fn render(input: &ChartInput, title: &str) -> Result<Vec<u8>, ChartError> {
    if !font_loaded() {
        return Err(ChartError::Font);
    }
    let mut rgb = vec![0u8; WIDTH as usize * HEIGHT as usize * 3];
    draw(input, title, &mut rgb).map_err(ChartError::Draw)?;
    encode(&rgb)
}

fn draw(input: &ChartInput, title: &str, rgb: &mut [u8]) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let (levels, above) = levels(input);
    let (x0, x1) = x_range(input.samples.iter().map(|p| p.0));
    let (y0, y1) = y_range(
        input
            .samples
            .iter()
            .map(|p| p.1)
            .chain(levels.iter().map(|l| l.bytes))
            .chain([input.detection]),
    );
    let tu = time_unit(x1 - x0);
    let bu = byte_unit(y1);
    let (x0, x1, y0, y1) = (x0 / tu.size, x1 / tu.size, y0 / bu.size, y1 / bu.size);
    let at = |secs: f64, bytes: u64| (secs / tu.size, bytes as f64 / bu.size);

    let root = BitMapBackend::with_buffer(rgb, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .light_line_style(WHITE.mix(0.0))
        .x_desc(format!("{} relative to the detection", unit_name(tu)))
        .y_desc(format!("RssAnon ({})", bu.name))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| compact(*y))
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 14))
        .draw()
        .map_err(|e| err(&e))?;

    for level in &levels {
        let y = level.bytes as f64 / bu.size;
        let style = level.colour.stroke_width(2);
        let line = [(x0, y), (x1, y)];
        let drawn = if level.dashed {
            chart.draw_series(DashedLineSeries::new(line, 8, 5, style))
        } else {
            chart.draw_series(LineSeries::new(line, style))
        };
        let colour = level.colour;
        drawn
            .map_err(|e| err(&e))?
            .label(level.label.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2)));
    }

    // The curve, through the detection sample when it did not join the
    // window (an event between ticks).
    let mut curve: Vec<(f64, f64)> = input.samples.iter().map(|p| at(p.0, p.1)).collect();
    if input.samples.last().is_none_or(|p| p.0 < 0.0) {
        curve.push(at(0.0, input.detection));
    }
    chart
        .draw_series(LineSeries::new(
            curve.iter().copied(),
            CURVE.stroke_width(2),
        ))
        .map_err(|e| err(&e))?
        .label("RssAnon")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], CURVE.stroke_width(2)));
    if curve.len() <= 60 {
        chart
            .draw_series(curve.iter().map(|&p| Circle::new(p, 2, CURVE.filled())))
            .map_err(|e| err(&e))?;
    }

    // The detection: a vertical line at 0 and a ring on the sample.
    let marker = at(0.0, input.detection);
    chart
        .draw_series(DashedLineSeries::new(
            [(0.0, y0), (0.0, y1)],
            4,
            4,
            MARKER.stroke_width(1),
        ))
        .map_err(|e| err(&e))?;
    chart
        .draw_series([Circle::new(marker, 6, LIMIT.stroke_width(3))])
        .map_err(|e| err(&e))?
        .label(format!(
            "{} detected at {}",
            input.reason,
            human_bytes(input.detection)
        ))
        .legend(|(x, y)| Circle::new((x + 9, y), 5, LIMIT.stroke_width(2)));
    for text in &above {
        // A legend entry without a line: a limit too high to draw.
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
            .map_err(|e| err(&e))?
            .label(text.as_str())
            .legend(|(x, y)| {
                PathElement::new([(x + 9, y + 5), (x + 9, y - 5)], P50.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FAMILY, 12))
        .background_style(WHITE.mix(0.85))
        .border_style(P50)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

/// The time unit in words for the axis.
fn unit_name(u: Unit) -> &'static str {
    match u.name {
        "s" => "seconds",
        "min" => "minutes",
        _ => "hours",
    }
}

/// An axis number: no decimals from 100 up, one below.
fn compact(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// RGB buffer → PNG.
fn encode(rgb: &[u8]) -> Result<Vec<u8>, ChartError> {
    let mut out = Vec::with_capacity(64 * 1024);
    let mut encoder = png::Encoder::new(&mut out, WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Balanced);
    let mut writer = encoder.write_header().map_err(ChartError::Png)?;
    writer.write_image_data(rgb).map_err(ChartError::Png)?;
    writer.finish().map_err(ChartError::Png)?;
    Ok(out)
}

//! Charts as inline SVG, drawn with plotters: lines over time, and bars.

use plotters::prelude::*;

/// Width and height of every chart, in SVG pixels.
const SIZE: (u32, u32) = (880, 320);

/// Colours of successive series (colour-blind-safe, from the Okabe–Ito palette).
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
    RGBColor(240, 228, 66),
];

/// One named line: (x, y) points in x order.
pub(crate) struct Series {
    /// The legend's label.
    pub name: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed and grey (a limit, such as maxmemory), not in the palette's order.
    pub limit: bool,
}

/// A line chart of `series` over `x_label`, as an SVG document.
pub(crate) fn lines(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let x_max = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .fold(0.0f64, f64::max)
            .max(1e-3);
        let y_max = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0f64, f64::max)
            .max(1.0)
            * 1.08;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(72)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .y_label_formatter(&|v| short_number(*v))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(draw_error)?;
        let mut colour = 0;
        for s in series {
            let style = if s.limit {
                ShapeStyle::from(&RGBColor(120, 120, 120)).stroke_width(2)
            } else {
                colour += 1;
                ShapeStyle::from(&PALETTE[(colour - 1) % PALETTE.len()]).stroke_width(2)
            };
            let drawn = if s.limit {
                chart.draw_series(DashedLineSeries::new(s.points.iter().copied(), 8, 5, style))
            } else {
                chart.draw_series(LineSeries::new(s.points.iter().copied(), style))
            };
            drawn
                .map_err(draw_error)?
                .label(s.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

/// A bar chart of `(label, value)`, as an SVG document.
pub(crate) fn bars(title: &str, y_label: &str, values: &[(String, f64)]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let y_max = values.iter().map(|v| v.1).fold(0.0f64, f64::max).max(1.0) * 1.1;
        let count = values.len().max(1) as u32;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(72)
            .build_cartesian_2d((0..count).into_segmented(), 0.0..y_max)
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc(y_label)
            .y_label_formatter(&|v| short_number(*v))
            .x_label_formatter(&|segment| match segment {
                SegmentValue::CenterOf(i) => values
                    .get(*i as usize)
                    .map(|v| v.0.clone())
                    .unwrap_or_default(),
                _ => String::new(),
            })
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(draw_error)?;
        chart
            .draw_series(values.iter().enumerate().map(|(i, (_, value))| {
                let i = i as u32;
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), *value),
                    ],
                    PALETTE[0].filled(),
                );
                bar.set_margin(0, 0, 12, 12);
                bar
            }))
            .map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

/// 1234567 → "1.2M", 4096 → "4.1k".
pub(crate) fn short_number(value: f64) -> String {
    let abs = value.abs();
    if abs >= 1e9 {
        format!("{:.1}G", value / 1e9)
    } else if abs >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if abs >= 1e3 {
        format!("{:.1}k", value / 1e3)
    } else if abs == abs.trunc() {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

fn draw_error<E: std::fmt::Display>(error: E) -> String {
    format!("cannot draw the chart: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_chart_is_an_svg_with_its_title_labels_and_legend() {
        let series = [
            Series {
                name: "carts".into(),
                points: vec![(0.0, 0.0), (1.0, 5000.0), (2.0, 12000.0)],
                limit: false,
            },
            Series {
                name: "maxmemory".into(),
                points: vec![(0.0, 10000.0), (2.0, 10000.0)],
                limit: true,
            },
        ];
        let svg = lines("Keys per second", "seconds", "keys/s", &series).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        for text in [
            "Keys per second",
            "seconds",
            "keys/s",
            "carts",
            "maxmemory",
            "10.0k",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
    }

    #[test]
    fn a_bar_chart_labels_each_bar() {
        let svg = bars(
            "Keys per primary",
            "keys",
            &[
                ("127.0.0.1:7000".into(), 3300.0),
                ("127.0.0.1:7001".into(), 3400.0),
            ],
        )
        .unwrap();
        assert!(svg.contains("127.0.0.1:7001") && svg.contains("Keys per primary"));
        // The background and one rectangle per bar.
        assert_eq!(svg.matches("<rect").count(), 3, "{svg}");
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(short_number(1_234_567.0), "1.2M");
        assert_eq!(short_number(4096.0), "4.1k");
        assert_eq!(short_number(12.0), "12");
        assert_eq!(short_number(2.5e9), "2.5G");
    }
}

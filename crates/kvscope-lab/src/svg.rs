//! A tiny SVG writer: escaped text, shapes, arrow markers, axes with ticks
//! and a generic line chart. Everything kvscope draws goes through here, so
//! every picture is self-contained, valid XML and uses one font.

#![allow(clippy::too_many_arguments)]

use std::fmt::Write;

/// Escapes text for XML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Formats a number compactly (no trailing zeros, at most 3 decimals).
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "0".into();
    }
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// A tick label: integers without decimals, small values with enough digits.
pub fn tick_label(v: f64, step: f64) -> String {
    let mut decimals = 0;
    while decimals < 6
        && ((step * 10f64.powi(decimals as i32)).round() - step * 10f64.powi(decimals as i32)).abs() > 1e-6
    {
        decimals += 1;
    }
    let s = format!("{v:.decimals$}");
    if s.starts_with('-') && s.trim_start_matches(['-', '0', '.']).is_empty() {
        s[1..].to_string()
    } else {
        s
    }
}

/// Round tick positions covering `[lo, hi]`, about `n` of them.
pub fn nice_ticks(lo: f64, hi: f64, n: usize) -> (Vec<f64>, f64) {
    let (lo, hi) = if hi > lo { (lo, hi) } else { (lo, lo + 1.0) };
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let start = (lo / step).ceil() * step;
    let mut ticks = Vec::new();
    let mut v = start;
    while v <= hi + step * 1e-9 {
        ticks.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        v += step;
    }
    (ticks, step)
}

/// Text anchor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

impl Anchor {
    fn as_str(self) -> &'static str {
        match self {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        }
    }
}

/// An SVG document being written.
pub struct Svg {
    pub width: f64,
    pub height: f64,
    defs: String,
    body: String,
    markers: Vec<String>,
}

impl Svg {
    pub fn new(width: f64, height: f64) -> Svg {
        Svg { width, height, defs: String::new(), body: String::new(), markers: Vec::new() }
    }

    /// Defines (once) an arrowhead marker of this colour; returns its id.
    pub fn arrow_marker(&mut self, color: &str) -> String {
        let id = format!("arrow-{}", color.trim_start_matches('#').replace(|c: char| !c.is_ascii_alphanumeric(), ""));
        if !self.markers.contains(&id) {
            let _ = write!(
                self.defs,
                r#"<marker id="{id}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{c}"/></marker>"#,
                c = esc(color)
            );
            self.markers.push(id.clone());
        }
        id
    }

    /// Appends raw, already-valid SVG.
    pub fn raw(&mut self, s: &str) {
        self.body.push_str(s);
        self.body.push('\n');
    }

    pub fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str, stroke: Option<&str>, rx: f64) {
        let stroke = stroke.map_or(String::new(), |s| format!(r#" stroke="{}" stroke-width="1.5""#, esc(s)));
        let _ = writeln!(
            self.body,
            r#"<rect x="{}" y="{}" width="{}" height="{}" rx="{}" fill="{}"{stroke}/>"#,
            num(x),
            num(y),
            num(w.max(0.0)),
            num(h.max(0.0)),
            num(rx),
            esc(fill)
        );
    }

    /// A rectangle with a tooltip (`<title>`).
    pub fn rect_titled(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str, title: &str) {
        let _ = writeln!(
            self.body,
            r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}</title></rect>"#,
            num(x),
            num(y),
            num(w.max(0.0)),
            num(h.max(0.0)),
            esc(fill),
            esc(title)
        );
    }

    pub fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str, width: f64, dash: Option<&str>) {
        let dash = dash.map_or(String::new(), |d| format!(r#" stroke-dasharray="{}""#, esc(d)));
        let _ = writeln!(
            self.body,
            r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="{}"{dash}/>"#,
            num(x1),
            num(y1),
            num(x2),
            num(y2),
            esc(stroke),
            num(width)
        );
    }

    /// A straight arrow from (x1,y1) to (x2,y2).
    pub fn arrow(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str, width: f64) {
        let m = self.arrow_marker(stroke);
        let _ = writeln!(
            self.body,
            r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="{}" marker-end="url(#{m})"/>"#,
            num(x1),
            num(y1),
            num(x2),
            num(y2),
            esc(stroke),
            num(width)
        );
    }

    /// A path (`d` attribute) with an optional arrowhead at its end.
    pub fn path(&mut self, d: &str, stroke: &str, width: f64, arrow: bool, dash: Option<&str>) {
        let marker =
            if arrow { format!(r#" marker-end="url(#{})""#, self.arrow_marker(stroke)) } else { String::new() };
        let dash = dash.map_or(String::new(), |d| format!(r#" stroke-dasharray="{}""#, esc(d)));
        let _ = writeln!(
            self.body,
            r#"<path d="{}" fill="none" stroke="{}" stroke-width="{}"{marker}{dash}/>"#,
            esc(d),
            esc(stroke),
            num(width)
        );
    }

    pub fn polyline(&mut self, points: &[(f64, f64)], stroke: &str, width: f64, dash: Option<&str>) {
        if points.is_empty() {
            return;
        }
        let pts: Vec<String> = points.iter().map(|(x, y)| format!("{},{}", num(*x), num(*y))).collect();
        let dash = dash.map_or(String::new(), |d| format!(r#" stroke-dasharray="{}""#, esc(d)));
        let _ = writeln!(
            self.body,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="{}" stroke-linejoin="round"{dash}/>"#,
            pts.join(" "),
            esc(stroke),
            num(width)
        );
    }

    pub fn circle(&mut self, cx: f64, cy: f64, r: f64, fill: &str) {
        let _ =
            writeln!(self.body, r#"<circle cx="{}" cy="{}" r="{}" fill="{}"/>"#, num(cx), num(cy), num(r), esc(fill));
    }

    /// Text; `size` in px. Bold when `bold`.
    pub fn text(&mut self, x: f64, y: f64, s: &str, size: f64, anchor: Anchor, fill: &str, bold: bool) {
        let weight = if bold { r#" font-weight="bold""# } else { "" };
        let _ = writeln!(
            self.body,
            r#"<text x="{}" y="{}" font-size="{}" text-anchor="{}" fill="{}"{weight}>{}</text>"#,
            num(x),
            num(y),
            num(size),
            anchor.as_str(),
            esc(fill),
            esc(s)
        );
    }

    /// Text rotated by -90° around its anchor (vertical axis labels).
    pub fn text_vertical(&mut self, x: f64, y: f64, s: &str, size: f64, fill: &str) {
        let _ = writeln!(
            self.body,
            r#"<text x="{x}" y="{y}" font-size="{}" text-anchor="middle" fill="{}" transform="rotate(-90 {x} {y})">{}</text>"#,
            num(size),
            esc(fill),
            esc(s),
            x = num(x),
            y = num(y)
        );
    }

    /// Text on a white halo so it stays readable over lines.
    pub fn label(&mut self, x: f64, y: f64, s: &str, size: f64, anchor: Anchor, fill: &str) {
        self.haloed(x, y, s, size, anchor, fill, "");
    }

    /// Bold text on a white halo.
    pub fn label_bold(&mut self, x: f64, y: f64, s: &str, size: f64, anchor: Anchor, fill: &str) {
        self.haloed(x, y, s, size, anchor, fill, r#" font-weight="bold""#);
    }

    /// The halo is its own white-stroked copy of the text, drawn first, and
    /// the label is drawn over it: renderers that ignore `paint-order` (e.g.
    /// cairosvg) would otherwise paint the stroke over the letters and
    /// hide them.
    #[allow(clippy::too_many_arguments)]
    fn haloed(&mut self, x: f64, y: f64, s: &str, size: f64, anchor: Anchor, fill: &str, weight: &str) {
        let at = format!(
            r#"x="{}" y="{}" font-size="{}"{weight} text-anchor="{}""#,
            num(x),
            num(y),
            num(size),
            anchor.as_str()
        );
        let text = esc(s);
        let _ = writeln!(
            self.body,
            r#"<text {at} fill="white" stroke="white" stroke-width="3" stroke-linejoin="round">{text}</text>"#
        );
        let _ = writeln!(self.body, r#"<text {at} fill="{}">{text}</text>"#, esc(fill));
    }

    /// The finished document.
    pub fn finish(self) -> String {
        format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">
<defs>{defs}</defs>
<rect x="0" y="0" width="{w}" height="{h}" fill="white"/>
{body}</svg>
"#,
            w = num(self.width),
            h = num(self.height),
            defs = self.defs,
            body = self.body
        )
    }
}

/// A linear map from data to pixels.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    pub d0: f64,
    pub d1: f64,
    pub p0: f64,
    pub p1: f64,
}

impl Scale {
    pub fn map(&self, v: f64) -> f64 {
        if (self.d1 - self.d0).abs() < f64::EPSILON {
            return self.p0;
        }
        self.p0 + (v - self.d0) / (self.d1 - self.d0) * (self.p1 - self.p0)
    }
}

/// Draws a horizontal axis at pixel row `y` with ticks and an optional label.
pub fn x_axis(svg: &mut Svg, sx: Scale, y: f64, label: &str, grid_top: Option<f64>) {
    x_axis_ticks(svg, sx, y, label, grid_top, &[]);
}

/// [`x_axis`] with the ticks at `at` (the data's own x values, e.g. a
/// sweep's lengths, so a reader sees where the points were measured);
/// evenly spaced round ticks when `at` is empty.
pub fn x_axis_ticks(svg: &mut Svg, sx: Scale, y: f64, label: &str, grid_top: Option<f64>, at: &[f64]) {
    let (ticks, step) = if at.is_empty() {
        nice_ticks(sx.d0, sx.d1, ((sx.p1 - sx.p0) / 70.0).max(2.0) as usize)
    } else {
        (at.to_vec(), 1.0)
    };
    svg.line(sx.p0, y, sx.p1, y, "#333", 1.0, None);
    for t in ticks {
        let x = sx.map(t);
        if let Some(top) = grid_top {
            svg.line(x, top, x, y, "#e6e6e6", 1.0, None);
        }
        svg.line(x, y, x, y + 4.0, "#333", 1.0, None);
        svg.text(x, y + 16.0, &tick_label(t, step), 11.0, Anchor::Middle, "#333", false);
    }
    if !label.is_empty() {
        svg.text((sx.p0 + sx.p1) / 2.0, y + 32.0, label, 12.0, Anchor::Middle, "#222", false);
    }
}

/// Draws a vertical axis at pixel column `x` (`sy.p0` is the bottom).
pub fn y_axis(svg: &mut Svg, sy: Scale, x: f64, label: &str, grid_right: Option<f64>) {
    let (ticks, step) = nice_ticks(sy.d0, sy.d1, ((sy.p0 - sy.p1) / 35.0).max(2.0) as usize);
    svg.line(x, sy.p0, x, sy.p1, "#333", 1.0, None);
    for t in ticks {
        let y = sy.map(t);
        if let Some(right) = grid_right {
            svg.line(x, y, right, y, "#e6e6e6", 1.0, None);
        }
        svg.line(x - 4.0, y, x, y, "#333", 1.0, None);
        svg.text(x - 6.0, y + 4.0, &tick_label(t, step), 11.0, Anchor::End, "#333", false);
    }
    if !label.is_empty() {
        svg.text_vertical(x - 44.0, (sy.p0 + sy.p1) / 2.0, label, 12.0, "#222");
    }
}

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub color: String,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
    /// Draw as a step function (value holds until the next point).
    pub step: bool,
    /// Mark each point with a dot.
    pub dots: bool,
    /// The dots' radius (px).
    pub dot_radius: f64,
    /// The dots' shape.
    pub marker: Marker,
    /// Dots outlined in the series' colour on white, not filled.
    pub hollow: bool,
    /// Join the points with a line (off for marks that are no trend).
    pub joined: bool,
}

/// A series' dot shape: conditions that coincide stay told apart by shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    Circle,
    Square,
    Diamond,
    /// Pointing down: "here or lower" (an upper bound).
    TriangleDown,
}

/// Draws one marker of radius `r` centred on (cx, cy).
pub fn marker(svg: &mut Svg, m: Marker, cx: f64, cy: f64, r: f64, color: &str, hollow: bool) {
    let paint = if hollow {
        format!(r#"fill="white" stroke="{}" stroke-width="1.8""#, esc(color))
    } else {
        format!(r#"fill="{}""#, esc(color))
    };
    let (x, y) = (num(cx), num(cy));
    let _ = match m {
        Marker::Circle => writeln!(svg.body, r#"<circle cx="{x}" cy="{y}" r="{}" {paint}/>"#, num(r)),
        Marker::Square => writeln!(
            svg.body,
            r#"<rect x="{}" y="{}" width="{}" height="{}" {paint}/>"#,
            num(cx - r),
            num(cy - r),
            num(2.0 * r),
            num(2.0 * r)
        ),
        Marker::Diamond => {
            let d = r * 1.3;
            writeln!(
                svg.body,
                r#"<path d="M{x},{} L{},{y} L{x},{} L{},{y} Z" {paint}/>"#,
                num(cy - d),
                num(cx + d),
                num(cy + d),
                num(cx - d)
            )
        }
        Marker::TriangleDown => {
            let d = r * 1.3;
            writeln!(
                svg.body,
                r#"<path d="M{},{} L{},{} L{x},{} Z" {paint}/>"#,
                num(cx - d),
                num(cy - d * 0.7),
                num(cx + d),
                num(cy - d * 0.7),
                num(cy + d)
            )
        }
    };
}

impl Series {
    pub fn new(label: &str, color: &str, points: Vec<(f64, f64)>) -> Series {
        Series {
            label: label.into(),
            color: color.into(),
            points,
            dashed: false,
            step: false,
            dots: false,
            dot_radius: 3.5,
            marker: Marker::Circle,
            hollow: false,
            joined: true,
        }
    }
    /// Dots of this shape (and dots on).
    pub fn marker(mut self, m: Marker) -> Series {
        self.dots = true;
        self.marker = m;
        self
    }
    /// Outlined dots: e.g. simulated points beside real, filled ones.
    pub fn hollow(mut self) -> Series {
        self.hollow = true;
        self
    }
    /// Dots only, no line between them.
    pub fn unjoined(mut self) -> Series {
        self.joined = false;
        self
    }
    pub fn dashed(mut self) -> Series {
        self.dashed = true;
        self
    }
    pub fn stepped(mut self) -> Series {
        self.step = true;
        self
    }
    pub fn dotted(mut self) -> Series {
        self.dots = true;
        self
    }
    /// Dots of radius `r`: series drawn with shrinking radii stay visible
    /// where their points coincide.
    pub fn dot_radius(mut self, r: f64) -> Series {
        self.dot_radius = r;
        self
    }
}

/// Titles and fixed bounds of a chart panel.
#[derive(Clone, Debug, Default)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Fixed y range; otherwise 0 ..= max of the data (with headroom).
    pub y_min: Option<f64>,
    pub y_max: Option<f64>,
    pub x_min: Option<f64>,
    pub x_max: Option<f64>,
    /// Ticks at these x values (empty: round values).
    pub x_ticks: Vec<f64>,
}

/// Draws a line chart in the panel whose outer box is (x, y, w, h): title on
/// top, axes with ticks, the series, and a legend under the title.
/// Returns the x scale (for callers that overlay marks).
pub fn line_chart(svg: &mut Svg, x: f64, y: f64, w: f64, h: f64, chart: &Chart, series: &[Series]) -> Scale {
    let legend_rows = legend_rows(series, w - 70.0);
    let top = y + 24.0 + 16.0 * legend_rows as f64 + 6.0;
    let left = x + 62.0;
    let right = x + w - 12.0;
    let bottom = y + h - 40.0;
    let all = || series.iter().flat_map(|s| s.points.iter());
    let xmin = chart.x_min.unwrap_or_else(|| all().map(|p| p.0).fold(f64::INFINITY, f64::min));
    let xmax = chart.x_max.unwrap_or_else(|| all().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max));
    let (xmin, xmax) = if xmin.is_finite() && xmax.is_finite() { (xmin, xmax) } else { (0.0, 1.0) };
    let (xmin, xmax) = if xmax > xmin { (xmin, xmax) } else { (xmin - 0.5, xmin + 0.5) };
    let ymin = chart.y_min.unwrap_or(0.0);
    let ymax = chart.y_max.unwrap_or_else(|| {
        let m = all().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        if m.is_finite() && m > ymin {
            ymin + (m - ymin) * 1.08
        } else {
            ymin + 1.0
        }
    });
    let sx = Scale { d0: xmin, d1: xmax, p0: left, p1: right };
    let sy = Scale { d0: ymin, d1: ymax, p0: bottom, p1: top };
    svg.text(x + w / 2.0, y + 16.0, &chart.title, 14.0, Anchor::Middle, "#111", true);
    y_axis(svg, sy, left, &chart.y_label, Some(right));
    x_axis_ticks(svg, sx, bottom, &chart.x_label, Some(top), &chart.x_ticks);
    for s in series {
        let mut pts: Vec<(f64, f64)> = Vec::new();
        for (i, &(px, py)) in s.points.iter().enumerate() {
            let (cx, cy) = (sx.map(px), sy.map(py.clamp(ymin, ymax)));
            if s.step && i > 0 {
                let prev_y = pts.last().map(|p| p.1).unwrap_or(cy);
                pts.push((cx, prev_y));
            }
            pts.push((cx, cy));
        }
        if s.joined {
            svg.polyline(&pts, &s.color, 2.0, if s.dashed { Some("6 4") } else { None });
        }
        if s.dots {
            for &(px, py) in &s.points {
                marker(svg, s.marker, sx.map(px), sy.map(py.clamp(ymin, ymax)), s.dot_radius, &s.color, s.hollow);
            }
        }
    }
    // Legend, wrapped under the title.
    let mut lx = x + 70.0;
    let mut ly = y + 36.0;
    for s in series {
        let wlen = legend_width(s);
        if lx + wlen > x + w && lx > x + 70.0 {
            lx = x + 70.0;
            ly += 16.0;
        }
        if s.joined {
            svg.line(lx, ly - 4.0, lx + 22.0, ly - 4.0, &s.color, 2.5, if s.dashed { Some("6 4") } else { None });
        }
        if s.dots {
            marker(svg, s.marker, lx + 11.0, ly - 4.0, s.dot_radius.min(5.0), &s.color, s.hollow);
        }
        svg.text(lx + 27.0, ly, &s.label, 11.0, Anchor::Start, "#222", false);
        lx += wlen;
    }
    sx
}

fn legend_width(s: &Series) -> f64 {
    34.0 + text_width(&s.label, 11.0) + 14.0
}

/// About how wide `text` is at `size` px: an ideograph or fullwidth mark
/// takes a full em, a Latin character a bit over half of one (a zh legend
/// counted as Latin would overlap its neighbour).
pub fn text_width(text: &str, size: f64) -> f64 {
    text.chars().map(|c| if is_wide(c) { size } else { size * 0.573 }).sum()
}

fn is_wide(c: char) -> bool {
    matches!(u32::from(c), 0x2E80..=0x9FFF | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFF60)
}

fn legend_rows(series: &[Series], avail: f64) -> usize {
    let mut rows = if series.is_empty() { 0 } else { 1 };
    let mut used = 0.0;
    for s in series {
        let w = legend_width(s);
        if used + w > avail && used > 0.0 {
            rows += 1;
            used = 0.0;
        }
        used += w;
    }
    rows
}

#[cfg(test)]
pub(crate) fn assert_wellformed(svg: &str) {
    assert!(svg.starts_with("<svg"), "starts with <svg");
    assert!(svg.trim_end().ends_with("</svg>"), "ends with </svg>");
    assert!(svg.contains("viewBox=") && svg.contains("width=") && svg.contains("height="));
    // No unescaped '&'.
    for (i, _) in svg.match_indices('&') {
        let rest = &svg[i..];
        let ok = ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"].iter().any(|e| rest.starts_with(e));
        assert!(ok, "unescaped & at {i}: {}", &rest[..rest.len().min(20)]);
    }
    // Balanced tags (a tiny tag-stack checker; no comments or CDATA here).
    let mut stack: Vec<String> = Vec::new();
    let mut rest = svg;
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').expect("tag closes") + start;
        let tag = &rest[start + 1..end];
        assert!(!tag.contains('<'), "no '<' inside a tag: {tag}");
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().expect("closing tag has an opener");
            assert_eq!(open, name.trim(), "tags nest");
        } else if !tag.ends_with('/') {
            let name = tag.split_whitespace().next().unwrap_or("").to_string();
            stack.push(name);
        }
        rest = &rest[end + 1..];
        // Text between tags must not contain a raw '>'.
        let next = rest.find('<').unwrap_or(rest.len());
        assert!(!rest[..next].contains('>'), "raw '>' in text");
    }
    assert!(stack.is_empty(), "unclosed tags: {stack:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A haloed label is a white copy under the coloured text, never one
    /// element relying on `paint-order` (which some renderers ignore, and
    /// then the halo hides the letters).
    #[test]
    fn labels_draw_their_halo_under_the_text_without_paint_order() {
        let mut svg = Svg::new(100.0, 50.0);
        svg.label(10.0, 20.0, "queue <wait>", 11.0, Anchor::Start, "#123456");
        svg.label_bold(10.0, 40.0, "TTFT", 11.0, Anchor::Middle, "#654321");
        let doc = svg.finish();
        assert_wellformed(&doc);
        assert!(!doc.contains("paint-order"), "{doc}");
        for (text, fill) in [("queue &lt;wait&gt;", "#123456"), ("TTFT", "#654321")] {
            let lines: Vec<&str> = doc.lines().filter(|l| l.contains(&format!(">{text}</text>"))).collect();
            assert_eq!(lines.len(), 2, "halo and label for {text}: {lines:?}");
            assert!(lines[0].contains(r#"stroke="white""#) && lines[0].contains(r#"fill="white""#), "{}", lines[0]);
            assert!(lines[1].contains(&format!(r#"fill="{fill}""#)) && !lines[1].contains("stroke"), "{}", lines[1]);
        }
    }

    #[test]
    fn escapes_and_wellformed() {
        assert_eq!(esc("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
        let mut s = Svg::new(400.0, 300.0);
        s.text(10.0, 10.0, "R&D <x>", 12.0, Anchor::Start, "#000", false);
        let chart = Chart { title: "t & u".into(), x_label: "x".into(), y_label: "y".into(), ..Default::default() };
        line_chart(
            &mut s,
            0.0,
            0.0,
            400.0,
            300.0,
            &chart,
            &[Series::new("a", "#f00", vec![(0.0, 1.0), (1.0, 2.0)]).stepped()],
        );
        let out = s.finish();
        assert_wellformed(&out);
        assert!(out.contains("R&amp;D &lt;x&gt;"));
    }

    #[test]
    fn ticks_are_round() {
        let (t, step) = nice_ticks(0.0, 10.0, 5);
        assert_eq!(step, 2.0);
        assert_eq!(t, vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(tick_label(0.25, 0.05), "0.25");
        assert_eq!(tick_label(0.025, 0.025), "0.025");
        assert_eq!(tick_label(20.0, 5.0), "20");
    }
}

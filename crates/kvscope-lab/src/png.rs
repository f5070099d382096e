//! A PNG beside every SVG, rendered in-process (resvg), for handing in
//! where an SVG is not accepted.
//!
//! The font is embedded (DejaVu Sans, `fonts/`, Bitstream Vera licence):
//! a clean machine may have no fonts at all, and a renderer without a font
//! silently drops every label. Bold text uses the same face (no bold file:
//! it would double the binary's font weight for a heavier stroke).
//!
//! The zh figures' characters come from a subset of Noto Sans CJK SC
//! (`fonts/NotoSansCJKsc-subset.otf`, SIL OFL 1.1): only the characters of
//! `figure_text.rs`, so it costs tens of kilobytes rather than the full
//! font's 16 MB. Latin text stays DejaVu (the primary family); resvg falls
//! back per character to the first face that has it, so a zh label's
//! ideographs come from the subset and its digits from DejaVu.

use resvg::tiny_skia;
use resvg::usvg;
use std::sync::{Arc, OnceLock};

static FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
const FAMILY: &str = "DejaVu Sans";
static CJK_FONT: &[u8] = include_bytes!("../fonts/NotoSansCJKsc-subset.otf");

/// Pixels per SVG unit: sharp enough to print and to read on a slide.
pub const SCALE: f32 = 2.0;

fn fonts() -> Arc<usvg::fontdb::Database> {
    static DB: OnceLock<Arc<usvg::fontdb::Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = usvg::fontdb::Database::new();
        db.load_font_data(FONT.to_vec());
        db.load_font_data(CJK_FONT.to_vec());
        // Every generic family the SVGs could name resolves to it.
        db.set_sans_serif_family(FAMILY);
        db.set_serif_family(FAMILY);
        db.set_monospace_family(FAMILY);
        Arc::new(db)
    })
    .clone()
}

#[derive(Debug, thiserror::Error)]
#[error("cannot render the SVG as PNG: {0}")]
pub struct PngError(String);

/// The SVG as a PNG on white, at [`SCALE`].
pub fn svg_to_png(svg: &str) -> Result<Vec<u8>, PngError> {
    let pixmap = render(svg)?;
    pixmap.encode_png().map_err(|e| PngError(e.to_string()))
}

/// The SVG rendered on white, at [`SCALE`].
pub fn render(svg: &str) -> Result<tiny_skia::Pixmap, PngError> {
    let options = usvg::Options { font_family: FAMILY.into(), fontdb: fonts(), ..Default::default() };
    let tree = usvg::Tree::from_str(svg, &options).map_err(|e| PngError(e.to_string()))?;
    let size = tree.size().to_int_size().scale_by(SCALE).ok_or_else(|| PngError("empty picture".into()))?;
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| PngError(format!("{}×{} pixels is too large", size.width(), size.height())))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(&tree, tiny_skia::Transform::from_scale(SCALE, SCALE), &mut pixmap.as_mut());
    Ok(pixmap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::svg::{Anchor, Svg};

    /// Near-black pixels (the labels are #111; the chart lines are lighter) in the box (x0, y0)–(x1, y1), SVG units.
    fn dark_in(p: &tiny_skia::Pixmap, (x0, y0, x1, y1): (f64, f64, f64, f64)) -> usize {
        let s = f64::from(SCALE);
        let mut n = 0;
        for y in (y0 * s) as u32..(y1 * s) as u32 {
            for x in (x0 * s) as u32..(x1 * s) as u32 {
                let px = p.pixel(x, y).expect("inside");
                if u32::from(px.red()) + u32::from(px.green()) + u32::from(px.blue()) < 3 * 80 {
                    n += 1;
                }
            }
        }
        n
    }

    /// Everything but the text of an SVG.
    fn without_text(svg: &str) -> String {
        let mut out = String::new();
        let mut rest = svg;
        while let Some(start) = rest.find("<text") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find("</text>").expect("closed") + start + "</text>".len();
            rest = &rest[end..];
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn a_haloed_label_renders_dark_glyphs_inside_its_box() {
        let mut svg = Svg::new(200.0, 60.0);
        // A label over a line: the halo must not hide the glyphs.
        svg.line(0.0, 30.0, 200.0, 30.0, "#2f6fbf", 3.0, None);
        svg.label(100.0, 36.0, "admitted ×42", 16.0, Anchor::Middle, "#111");
        let picture = svg.finish();
        let png = render(&picture).unwrap();
        assert_eq!((png.width(), png.height()), (400, 120));
        let text_box = (45.0, 18.0, 155.0, 40.0);
        let with = dark_in(&png, text_box);
        let without = dark_in(&render(&without_text(&picture)).unwrap(), text_box);
        assert!(with > 300 && without == 0, "glyph pixels: {with} with the label, {without} without");
        assert!(svg_to_png(&picture).unwrap().starts_with(b"\x89PNG"));
    }

    #[test]
    fn the_lifecycle_diagram_keeps_its_labels_in_the_png() {
        let run = crate::lifecycle::tests::small_run(20);
        let svg = crate::lifecycle::LifecycleGraph::from_events(&run.events).to_svg(crate::lang::Lang::En);
        let with = render(&svg).unwrap();
        let bare = render(&without_text(&svg)).unwrap();
        let whole = (0.0, 0.0, f64::from(with.width()) / 2.0, f64::from(with.height()) / 2.0);
        let text_pixels = dark_in(&with, whole).saturating_sub(dark_in(&bare, whole));
        let labels = svg.matches("<text").count();
        // Each label contributes at least a few dozen glyph pixels.
        assert!(text_pixels > 40 * labels, "{text_pixels} text pixels for {labels} text elements");
    }

    /// Characters of `text` that neither embedded font maps to a glyph.
    fn missing_glyphs(text: &str) -> Vec<char> {
        let faces: Vec<ttf_parser::Face> =
            [FONT, CJK_FONT].iter().map(|f| ttf_parser::Face::parse(f, 0).expect("an embedded font parses")).collect();
        text.chars().filter(|&c| !c.is_whitespace() && faces.iter().all(|f| f.glyph_index(c).is_none())).collect()
    }

    #[test]
    fn every_zh_label_has_a_glyph() {
        use crate::figure_text::{LIFECYCLE_ZH, ZH};
        let labels = ZH.all().into_iter().chain(LIFECYCLE_ZH.iter().map(|p| p.1));
        let mut missing: Vec<char> = labels.flat_map(missing_glyphs).collect();
        missing.sort_unstable();
        missing.dedup();
        let missing: String = missing.into_iter().collect();
        assert!(missing.is_empty(), "no glyph for {missing:?}: rerun fonts/subset-cjk.sh");
        // The check itself: a character outside the subset is reported.
        assert_eq!(missing_glyphs("等待鑫"), vec!['鑫']);
    }

    #[test]
    fn a_zh_label_renders_its_ideographs() {
        // Ideographs only: DejaVu has none of them, so every dark pixel
        // comes from the CJK subset through resvg's per-character fallback.
        let mut svg = Svg::new(200.0, 60.0);
        svg.label(100.0, 36.0, crate::figure_text::ZH.state_waiting, 20.0, Anchor::Middle, "#111");
        let picture = svg.finish();
        let pixels = dark_in(&render(&picture).unwrap(), (0.0, 0.0, 200.0, 60.0));
        assert!(pixels > 150, "{pixels} glyph pixels for 等待");
    }
}

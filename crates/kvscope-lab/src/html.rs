//! report.html: report.md as one self-contained page — the SVGs inline,
//! the tables styled — that opens in any browser and can be handed in as
//! a single file.

use pulldown_cmark::{html, Event, Options, Parser, Tag, TagEnd};

const STYLE: &str = r#"
body { font-family: -apple-system, "Segoe UI", "Noto Sans", "PingFang SC", "Microsoft YaHei", sans-serif;
       max-width: 1180px; margin: 2em auto; padding: 0 1.2em; line-height: 1.55; color: #1b1b1b; }
h1 { border-bottom: 2px solid #2f6fbf; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .9em; display: block; overflow-x: auto; }
th, td { border: 1px solid #c8ccd2; padding: .35em .6em; vertical-align: top; }
th { background: #eef2f7; }
tr:nth-child(even) td { background: #fafbfc; }
code { background: #f2f2f2; padding: .1em .3em; border-radius: 3px; font-size: .92em; }
blockquote { border-left: 4px solid #e08a1e; margin: 1em 0; padding: .2em 1em; background: #fff8ef; }
figure { margin: 1.2em 0; overflow-x: auto; }
figure svg { max-width: 100%; height: auto; }
"#;

/// The page. `svg` gives the content of an image the markdown links to
/// (`![alt](name.svg)`), which is then inlined; other images stay links.
pub fn render(markdown: &str, title: &str, svg: &dyn Fn(&str) -> Option<String>) -> String {
    let mut events = Vec::new();
    let mut inside_image = false;
    for event in Parser::new_ext(markdown, Options::ENABLE_TABLES) {
        match event {
            Event::Start(Tag::Image { ref dest_url, .. }) => match svg(dest_url) {
                Some(content) => {
                    // The image's alt text follows until its end tag: dropped.
                    inside_image = true;
                    events.push(Event::Html(format!("<figure>{content}</figure>").into()));
                }
                None => events.push(event),
            },
            Event::End(TagEnd::Image) if inside_image => inside_image = false,
            _ if inside_image => {}
            other => events.push(other),
        }
    }
    let mut body = String::new();
    html::push_html(&mut body, events.into_iter());
    format!(
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        crate::svg::esc(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inlines_svgs_and_renders_tables() {
        let md = "# T\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n![chain](chain.svg)\n\n![other](missing.svg)\n";
        let page = render(md, "T", &|name| (name == "chain.svg").then(|| "<svg id=\"c\"></svg>".to_string()));
        assert!(page.contains("<table>") && page.contains("<td>2</td>"));
        assert!(page.contains("<figure><svg id=\"c\"></svg></figure>"));
        assert!(!page.contains("src=\"chain.svg\""), "inlined, not linked");
        assert!(page.contains("src=\"missing.svg\""), "unknown images stay links");
        assert!(page.starts_with("<!DOCTYPE html>") && page.contains("charset=\"utf-8\""));
    }
}

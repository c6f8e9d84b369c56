//! Escaping for the text formats. Every string that comes from a report goes
//! through one of these before it reaches XML, HTML or Markdown.

use std::fmt::Write as _;

/// Characters XML 1.0 forbids even as character references, and the C1
/// controls that have no business in a report: written as `\u{XXXX}` text so
/// that nothing is lost and the document stays well-formed.
fn is_forbidden_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{fffe}' | '\u{ffff}')
}

fn push_control(out: &mut String, c: char) {
    let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
}

/// Escapes text content (between tags) for XML and HTML: `& < >`, `\r` as a
/// reference, forbidden controls as `\u{XXXX}`; newlines and tabs are kept.
/// Not for attribute values: use [`attr`].
pub(crate) fn text(s: &str) -> String {
    escape(s, false)
}

/// Escapes an attribute value (single- or double-quoted): like [`text`],
/// plus both quotes, and newlines and tabs as references so that parsers
/// keep them.
pub(crate) fn attr(s: &str) -> String {
    escape(s, true)
}

fn escape(s: &str, in_attr: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            '"' if in_attr => out.push_str("&quot;"),
            '\'' if in_attr => out.push_str("&#39;"),
            '\n' if in_attr => out.push_str("&#10;"),
            '\t' if in_attr => out.push_str("&#9;"),
            c if is_forbidden_control(c) => push_control(&mut out, c),
            c => out.push(c),
        }
    }
    out
}

/// Markdown inline text: one line (line breaks become spaces), with every
/// character that could start markup backslash-escaped and `< > &` as
/// entities, so that report text never becomes links, HTML or table cells.
pub(crate) fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        match c {
            // An underscore inside a word (`VD_E_OPEN`) cannot start or end
            // emphasis in CommonMark/GFM; leave it readable.
            '_' if i > 0
                && chars[i - 1].is_alphanumeric()
                && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric()) =>
            {
                out.push('_');
            }
            '\n' | '\r' | '\t' => out.push(' '),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '~' | '!' | '{' | '}' | '$' => {
                out.push('\\');
                out.push(c);
            }
            c if is_forbidden_control(c) => push_control(&mut out, c),
            c => out.push(c),
        }
    }
    out
}

/// A Markdown code span holding `s` literally: fenced with one more backtick
/// than the longest run inside, padded when `s` starts or ends with one.
/// Line breaks become spaces; `|` is escaped so that the span is safe inside
/// a table cell (GitHub and GitLab unescape it there).
pub(crate) fn md_code(s: &str, in_table: bool) -> String {
    let mut body = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\r' | '\t' => body.push(' '),
            '|' if in_table => body.push_str("\\|"),
            c if is_forbidden_control(c) => push_control(&mut body, c),
            c => body.push(c),
        }
    }
    let mut longest = 0usize;
    let mut run = 0usize;
    for c in body.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    if body.is_empty() {
        return "` `".to_string();
    }
    let fence = "`".repeat(longest + 1);
    let pad = if body.starts_with('`') || body.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{body}{pad}{fence}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_escapes_markup_and_controls() {
        assert_eq!(
            text("<a href=\"x\">'&'</a>"),
            "&lt;a href=\"x\"&gt;'&amp;'&lt;/a&gt;"
        );
        assert_eq!(
            text("a\u{1}b\u{0}c\u{7f}"),
            "a\\u{0001}b\\u{0000}c\\u{007f}"
        );
        assert_eq!(text("line\nnext\ttab"), "line\nnext\ttab");
        assert_eq!(text("]]>"), "]]&gt;");
    }

    #[test]
    fn attr_keeps_line_breaks_as_references() {
        assert_eq!(attr("a\nb\tc\r"), "a&#10;b&#9;c&#13;");
        assert_eq!(attr("\"'<>&"), "&quot;&#39;&lt;&gt;&amp;");
    }

    #[test]
    fn markdown_text_cannot_make_markup() {
        assert_eq!(
            md("*a* _b_ [c](d) <e> | f\ng"),
            "\\*a\\* \\_b\\_ \\[c\\](d) &lt;e&gt; \\| f g"
        );
        assert_eq!(md("VD_E_OPEN _x a_ b__c"), "VD_E_OPEN \\_x a\\_ b\\_\\_c");
    }

    #[test]
    fn code_spans_survive_backticks() {
        assert_eq!(md_code("vdisim run", false), "`vdisim run`");
        assert_eq!(md_code("a`b", false), "``a`b``");
        assert_eq!(md_code("`x`", false), "`` `x` ``");
        assert_eq!(md_code("a|b", true), "`a\\|b`");
        assert_eq!(md_code("", false), "` `");
    }
}

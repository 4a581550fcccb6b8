//! Reading the Prometheus text exposition format that the gateway's own
//! recorder renders (`PrometheusHandle::render`): one sample per line,
//! `name{label="value",...} number`, comments skipped.
//!
//! Only what that renderer writes is understood (it escapes `\\`, `"` and
//! newlines in label values); a line that does not parse is skipped, so a
//! malformed line costs its sample, never the rest.

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sample<'a> {
    /// The series name (`pike_push_total`, `pike_uplink_ack_seconds_bucket`).
    pub(crate) name: &'a str,
    /// Label pairs in the order written, values unescaped.
    pub(crate) labels: Vec<(&'a str, String)>,
    /// The value (`+Inf`, `-Inf` and `NaN` included).
    pub(crate) value: f64,
}

impl Sample<'_> {
    /// The value of label `name`, if the sample has it.
    pub(crate) fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The samples of `text`, in order.
pub(crate) fn samples(text: &str) -> impl Iterator<Item = Sample<'_>> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(sample)
}

/// One line: `name value`, `name{labels} value`, either with an optional
/// timestamp after the value.
fn sample(line: &str) -> Option<Sample<'_>> {
    let (name, labels, rest) = match line.find(['{', ' ']) {
        Some(at) if line.as_bytes()[at] == b'{' => {
            let (labels, rest) = label_pairs(&line[at + 1..])?;
            (&line[..at], labels, rest)
        }
        Some(at) => (&line[..at], Vec::new(), &line[at..]),
        None => return None,
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// The pairs after a `{` up to its `}`, and what follows the `}`.
fn label_pairs(mut text: &str) -> Option<(Vec<(&str, String)>, &str)> {
    let mut pairs = Vec::new();
    loop {
        text = text.trim_start_matches([',', ' ']);
        if let Some(rest) = text.strip_prefix('}') {
            return Some((pairs, rest));
        }
        let (name, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (at, '"') => break at,
                (_, c) => value.push(c),
            }
        };
        pairs.push((name.trim(), value));
        text = &rest[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_labels_and_values() {
        let text = "# HELP pike_push_total Push requests.\n\
                    # TYPE pike_push_total counter\n\
                    pike_push_total{delivery=\"reliable\"} 12\n\
                    pike_rooms 3\n\
                    pike_x_bucket{le=\"+Inf\",a=\"q\\\"uo\\\\te\"} 7 1700000000\n\
                    broken{le=\"1\" 3\n\
                    pike_y_bucket{le=\"0.5\"} +Inf\n";
        let all: Vec<Sample<'_>> = samples(text).collect();
        assert_eq!(all.len(), 4, "{all:?}");
        assert_eq!(all[0].name, "pike_push_total");
        assert_eq!(all[0].label("delivery"), Some("reliable"));
        assert_eq!(all[0].value, 12.0);
        assert_eq!(all[1].name, "pike_rooms");
        assert!(all[1].labels.is_empty());
        assert_eq!(all[2].label("le"), Some("+Inf"));
        assert_eq!(all[2].label("a"), Some("q\"uo\\te"));
        assert_eq!(all[2].value, 7.0);
        assert_eq!(all[3].value, f64::INFINITY);
    }
}
